package dev.liveinference;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.schemas.Schema.FieldType;
import org.apache.beam.sdk.values.Row;

/**
 * Which model serves which keys, for {@link RunInference#ofKVs(FieldType, FieldType, FieldType,
 * List)}: the keys, a handler name and that handler's arguments, as Python's {@code
 * KeyModelMapping(keys, handler)}. Immutable: {@link #withHandlerArg} returns a new mapping.
 *
 * <pre>{@code
 * KeyModelMapping.of(List.of("eu", "uk"), "onnx_numpy")
 *     .withHandlerArg("model_uri", "/models/eu.onnx")
 * }</pre>
 */
public final class KeyModelMapping implements Serializable {

  private static final long serialVersionUID = 1L;
  private static final Pattern HANDLER = Pattern.compile("[A-Za-z_][A-Za-z0-9_.]*");

  /** The keys this model serves: all Strings or all Longs. */
  private final List<Object> keys;

  /** The handler name, such as {@code onnx_numpy}. */
  private final String handler;

  /** The handler's keyword arguments. */
  private final HandlerArgs handlerArgs;

  private KeyModelMapping(List<Object> keys, String handler, HandlerArgs handlerArgs) {
    this.keys = keys;
    this.handler = handler;
    this.handlerArgs = handlerArgs;
  }

  /**
   * A mapping of {@code keys} to a model of the named handler.
   *
   * @param keys the keys this model serves: Strings (for STRING keys) or Longs (for INT64
   *     keys), at least one, none null
   * @param handler the name of a handler the expansion service knows, such as {@code
   *     onnx_numpy}
   * @return the mapping, without handler arguments yet
   * @throws IllegalArgumentException if there are no keys, a key is null or neither a String nor
   *     a Long, the keys mix the two, or the handler name is not a Python identifier
   */
  public static KeyModelMapping of(List<?> keys, String handler) {
    if (keys == null || keys.isEmpty()) {
      throw new IllegalArgumentException(
          "a KeyModelMapping needs at least one key, got " + keys + " (handler " + handler + ")");
    }
    Class<?> kind = null;
    for (Object key : keys) {
      if (!(key instanceof String || key instanceof Long)) {
        throw new IllegalArgumentException(
            "the keys of a KeyModelMapping must be Strings or Longs, got "
                + (key == null ? "null" : "a " + key.getClass().getName() + " " + key));
      }
      if (kind != null && kind != key.getClass()) {
        throw new IllegalArgumentException(
            "the keys of a KeyModelMapping must be all Strings or all Longs, got " + keys);
      }
      kind = key.getClass();
    }
    if (handler == null || !HANDLER.matcher(handler).matches()) {
      throw new IllegalArgumentException(
          "a KeyModelMapping's handler must be the name of a handler the expansion service"
              + " knows, such as \"sklearn_numpy\", got "
              + Config.quote(handler));
    }
    return new KeyModelMapping(List.copyOf(keys), handler, HandlerArgs.NONE);
  }

  /**
   * Passes a keyword argument to this mapping's handler, such as {@code model_uri}.
   *
   * @param name the argument's Python name
   * @param value a String, Long, Integer, Double, Float, Boolean or Row (for a dict); callables
   *     are given as qualified names, enums by member name; numbers must be finite
   * @return a new mapping with the argument
   * @throws IllegalArgumentException if the name is malformed or already set, the value's type
   *     cannot cross to Python, or the value is NaN or infinite
   */
  public KeyModelMapping withHandlerArg(String name, Object value) {
    return new KeyModelMapping(keys, handler, handlerArgs.with(name, value));
  }

  /**
   * The keys this model serves.
   *
   * @return the keys, Strings or Longs
   */
  public List<Object> keys() {
    return keys;
  }

  /**
   * The handler name.
   *
   * @return the name, such as {@code onnx_numpy}
   */
  public String handler() {
    return handler;
  }

  /**
   * An unmodifiable copy of {@code keyModels}, checked against the key type.
   *
   * @throws IllegalArgumentException if there is no mapping, or a mapping's keys are not of
   *     {@code keyType} (STRING: Strings; INT64: Longs)
   */
  static List<KeyModelMapping> checked(List<KeyModelMapping> keyModels, FieldType keyType) {
    if (keyModels == null || keyModels.isEmpty()) {
      throw new IllegalArgumentException(
          "ofKVs needs at least one KeyModelMapping (keys -> handler), got " + keyModels);
    }
    Class<?> expected =
        keyType.getTypeName() == Schema.TypeName.STRING ? String.class : Long.class;
    for (KeyModelMapping mapping : keyModels) {
      if (mapping.keys.get(0).getClass() != expected) {
        throw new IllegalArgumentException(
            "the keys of KeyModelMapping "
                + mapping
                + " do not match keyType "
                + keyType.getTypeName()
                + "; give Strings for STRING keys and Longs for INT64 keys");
      }
    }
    return List.copyOf(keyModels);
  }

  /**
   * The mappings as Python reads them: one Row with a field per mapping ({@code mapping_0},
   * ...), since a Java array holds Rows of one schema and each mapping's handler arguments have
   * their own.
   */
  static Row toRow(List<KeyModelMapping> keyModels, FieldType keyType) {
    Schema.Builder schema = Schema.builder();
    List<Object> values = new ArrayList<>();
    for (int index = 0; index < keyModels.size(); index++) {
      Row mapping = keyModels.get(index).toRow(keyType);
      schema.addRowField("mapping_" + index, mapping.getSchema());
      values.add(mapping);
    }
    return Row.withSchema(schema.build()).addValues(values).build();
  }

  /** The mapping as Python reads it: a Row (keys, handler, handler_args). */
  private Row toRow(FieldType keyType) {
    Schema.Builder schema =
        Schema.builder().addArrayField("keys", keyType).addStringField("handler");
    if (handlerArgs.isEmpty()) {
      return Row.withSchema(schema.build()).addValues(keys, handler).build();
    }
    Row args = handlerArgs.toRow();
    schema.addRowField("handler_args", args.getSchema());
    return Row.withSchema(schema.build()).addValues(keys, handler, args).build();
  }

  @Override
  public boolean equals(Object other) {
    if (!(other instanceof KeyModelMapping)) {
      return false;
    }
    KeyModelMapping that = (KeyModelMapping) other;
    return keys.equals(that.keys)
        && handler.equals(that.handler)
        && handlerArgs.equals(that.handlerArgs);
  }

  @Override
  public int hashCode() {
    return (keys.hashCode() * 31 + handler.hashCode()) * 31 + handlerArgs.hashCode();
  }

  @Override
  public String toString() {
    return keys + " -> " + handler + handlerArgs;
  }
}
