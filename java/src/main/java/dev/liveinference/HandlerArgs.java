package dev.liveinference;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.values.Row;

/**
 * The keyword arguments of one Python handler: checked when added (a Python identifier, set
 * once, a type that can cross to Python, a finite number), never changed, and sent as a Row with
 * one field per argument.
 */
final class HandlerArgs implements Serializable {

  private static final long serialVersionUID = 1L;
  private static final Pattern IDENTIFIER = Pattern.compile("[A-Za-z_][A-Za-z0-9_]*");
  private static final List<Class<?>> ARG_TYPES =
      List.of(
          String.class,
          Long.class,
          Integer.class,
          Double.class,
          Float.class,
          Boolean.class,
          Row.class);

  /** No arguments. */
  static final HandlerArgs NONE = new HandlerArgs(Map.of());

  private final Map<String, Object> args;

  private HandlerArgs(Map<String, Object> args) {
    this.args = args;
  }

  /**
   * These arguments and one more.
   *
   * @throws IllegalArgumentException if the name is malformed or already set, the value's type
   *     cannot cross to Python, or the value is NaN or infinite
   */
  HandlerArgs with(String name, Object value) {
    if (name == null || !IDENTIFIER.matcher(name).matches()) {
      throw new IllegalArgumentException(
          "a handler argument name must be a Python identifier, got " + Config.quote(name));
    }
    if (args.containsKey(name)) {
      throw new IllegalArgumentException(
          "handler argument '"
              + name
              + "' is already set to "
              + args.get(name)
              + "; set each argument once");
    }
    if (value == null || !ARG_TYPES.contains(value.getClass())) {
      throw new IllegalArgumentException(
          "handler argument '"
              + name
              + "' is "
              + (value == null ? "null" : "a " + value.getClass().getName())
              + "; give a String, Long, Integer, Double, Float, Boolean or Row (callables by"
              + " qualified name, enums by member name)");
    }
    if ((value instanceof Double && !Double.isFinite((Double) value))
        || (value instanceof Float && !Float.isFinite((Float) value))) {
      throw new IllegalArgumentException(
          "handler argument '" + name + "' is " + value + "; give a finite number");
    }
    Map<String, Object> more = new LinkedHashMap<>(args);
    more.put(name, value);
    return new HandlerArgs(Collections.unmodifiableMap(more));
  }

  boolean isEmpty() {
    return args.isEmpty();
  }

  /** The argument names, in the order they were set. */
  List<String> names() {
    return new ArrayList<>(args.keySet());
  }

  /** The arguments as a Row, one field per argument, in the order they were set. */
  Row toRow() {
    Schema.Builder schema = Schema.builder();
    for (Map.Entry<String, Object> arg : args.entrySet()) {
      Object value = arg.getValue();
      String name = arg.getKey();
      if (value instanceof String) {
        schema.addStringField(name);
      } else if (value instanceof Long) {
        schema.addInt64Field(name);
      } else if (value instanceof Integer) {
        schema.addInt32Field(name);
      } else if (value instanceof Double) {
        schema.addDoubleField(name);
      } else if (value instanceof Float) {
        schema.addFloatField(name);
      } else if (value instanceof Boolean) {
        schema.addBooleanField(name);
      } else {
        schema.addRowField(name, ((Row) value).getSchema());
      }
    }
    return Row.withSchema(schema.build()).addValues(new ArrayList<>(args.values())).build();
  }

  @Override
  public boolean equals(Object other) {
    return other instanceof HandlerArgs && args.equals(((HandlerArgs) other).args);
  }

  @Override
  public int hashCode() {
    return args.hashCode();
  }

  @Override
  public String toString() {
    return args.keySet().toString();
  }
}
