package dev.liveinference;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.schemas.Schema.FieldType;
import org.apache.beam.sdk.values.KV;
import org.apache.beam.sdk.values.Row;
import org.checkerframework.checker.nullness.qual.Nullable;

/**
 * The canary examples of {@link AbstractRunInference#withModelValidation}: input elements every
 * new model version must predict before it may serve. Checked when given (at least one, none
 * null, all of one type that can cross to Python, finite numbers), never changed, and sent as
 * an array field of the request.
 */
final class Canaries implements Serializable {

  private static final long serialVersionUID = 1L;
  private static final String METHOD = "withModelValidation";

  private final List<Object> examples;

  /** The type of one example, as it crosses to Python. */
  private final FieldType type;

  private Canaries(List<Object> examples, FieldType type) {
    this.examples = examples;
    this.type = type;
  }

  /**
   * Checks the examples.
   *
   * @param examples elements of the transform's input type: String, Long, Integer, Double,
   *     Float, Boolean, byte[], Row, a List of one of those; {@code KV<key, example>} for a keyed
   *     transform
   * @param keyType the transform's key type; null for unkeyed input
   * @throws IllegalArgumentException naming the example, if there is none, one is null, of a type
   *     that cannot cross, of another type than the first, or a NaN or infinite number
   */
  static Canaries of(@Nullable List<?> examples, @Nullable FieldType keyType) {
    if (examples == null || examples.isEmpty()) {
      throw new IllegalArgumentException(
          METHOD + " needs at least one canary example (an input element), got " + examples);
    }
    List<Object> values = new ArrayList<>();
    FieldType first = null;
    for (int index = 0; index < examples.size(); index++) {
      String where = METHOD + ": canary example " + index;
      Object example = examples.get(index);
      if (keyType != null) {
        if (!(example instanceof KV)) {
          throw new IllegalArgumentException(
              where + " is " + describe(example) + "; this transform takes KVs, so give KV<key,"
                  + " example> canaries");
        }
        KV<?, ?> pair = (KV<?, ?>) example;
        FieldType key = fieldType(pair.getKey(), where + " key");
        if (key.getTypeName() != keyType.getTypeName()) {
          throw new IllegalArgumentException(
              where + " has key " + describe(pair.getKey()) + ", not of the key type " + keyType);
        }
        FieldType value = fieldType(pair.getValue(), where);
        Schema schema = Schema.builder().addField("key", key).addField("value", value).build();
        example = Row.withSchema(schema).addValues(pair.getKey(), pair.getValue()).build();
      } else if (example instanceof KV) {
        throw new IllegalArgumentException(
            where + " is a KV, but this transform's input is not keyed; use RunInference.ofKVs");
      }
      FieldType type = fieldType(example, where);
      if (first != null && !first.equals(type)) {
        throw new IllegalArgumentException(
            where + " is " + describe(example) + " (" + type + "), but canary example 0 is "
                + first + "; give every canary the input's type");
      }
      first = type;
      values.add(example);
    }
    return new Canaries(Collections.unmodifiableList(values), first);
  }

  /** The examples as the request sends them (a KV as a Row {@code (key, value)}). */
  List<Object> values() {
    return examples;
  }

  /** The type of the request's {@code canary_examples} field: an array of the examples. */
  FieldType fieldType() {
    return FieldType.array(type);
  }

  private static String describe(@Nullable Object value) {
    return value == null ? "null" : "a " + value.getClass().getName() + " " + value;
  }

  /** The type an example crosses as; checks its numbers are finite. */
  private static FieldType fieldType(@Nullable Object value, String where) {
    if (value instanceof Double || value instanceof Float) {
      double number = ((Number) value).doubleValue();
      if (!Double.isFinite(number)) {
        throw new IllegalArgumentException(where + " holds " + value + "; give finite numbers");
      }
      return value instanceof Double ? FieldType.DOUBLE : FieldType.FLOAT;
    }
    if (value instanceof String) {
      return FieldType.STRING;
    }
    if (value instanceof Long) {
      return FieldType.INT64;
    }
    if (value instanceof Integer) {
      return FieldType.INT32;
    }
    if (value instanceof Boolean) {
      return FieldType.BOOLEAN;
    }
    if (value instanceof byte[]) {
      return FieldType.BYTES;
    }
    if (value instanceof Row) {
      Row row = (Row) value;
      for (int field = 0; field < row.getFieldCount(); field++) {
        Object item = row.getValue(field);
        if (item instanceof Double || item instanceof Float) {
          fieldType(item, where + " field " + row.getSchema().getField(field).getName());
        }
      }
      return FieldType.row(row.getSchema());
    }
    if (value instanceof List && !((List<?>) value).isEmpty()) {
      FieldType item = null;
      for (Object element : (List<?>) value) {
        FieldType next = fieldType(element, where + " item");
        if (item != null && !item.equals(next)) {
          throw new IllegalArgumentException(
              where + " mixes " + item + " and " + next + " items; give a list of one type");
        }
        item = next;
      }
      return FieldType.array(item);
    }
    throw new IllegalArgumentException(
        where + " is " + describe(value) + "; give a String, Long, Integer, Double, Float,"
            + " Boolean, byte[], Row or a non-empty List of one of them (the input's type)");
  }

  @Override
  public boolean equals(@Nullable Object other) {
    return other instanceof Canaries && examples.equals(((Canaries) other).examples);
  }

  @Override
  public int hashCode() {
    return examples.hashCode();
  }

  @Override
  public String toString() {
    return examples.toString();
  }
}
