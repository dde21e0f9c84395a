package dev.liveinference;

import org.apache.beam.sdk.schemas.Schema.FieldType;

/** The names Python's {@code ConfiguredRunInference} knows Beam field types by. */
final class PythonTypes {

  private PythonTypes() {}

  /**
   * The name Python knows a field type by: int64, int32, int16, double, float, string, boolean,
   * bytes, or array&lt;...&gt; of those.
   */
  static String name(FieldType type, String what) {
    if (type == null) {
      throw new IllegalArgumentException(what + " must not be null");
    }
    switch (type.getTypeName()) {
      case INT64:
        return "int64";
      case INT32:
        return "int32";
      case INT16:
        return "int16";
      case DOUBLE:
        return "double";
      case FLOAT:
        return "float";
      case STRING:
        return "string";
      case BOOLEAN:
        return "boolean";
      case BYTES:
        return "bytes";
      case ARRAY:
      case ITERABLE:
        return "array<" + name(type.getCollectionElementType(), what) + ">";
      default:
        throw new IllegalArgumentException(
            what
                + " "
                + type
                + " cannot cross to Python; use INT64, INT32, INT16, DOUBLE, FLOAT, STRING,"
                + " BOOLEAN, BYTES or an array of one of them");
    }
  }
}
