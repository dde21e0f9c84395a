package dev.liveinference;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.util.List;
import org.apache.beam.sdk.schemas.Schema.FieldType;
import org.apache.beam.sdk.values.KV;
import org.apache.beam.sdk.values.Row;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.junit.runners.JUnit4;

/** The request of a transform with a model per key, and what it refuses at construction. */
@RunWith(JUnit4.class)
public class KeyModelMappingTest {

  private static final FieldType DOUBLES = FieldType.array(FieldType.DOUBLE);

  private static RunInference<KV<String, Row>> perKey() {
    return RunInference.ofKVs(
        FieldType.STRING,
        DOUBLES,
        FieldType.INT64,
        List.of(
            KeyModelMapping.of(List.of("a", "b"), "sklearn_numpy")
                .withHandlerArg("model_uri", "/m/v1.pkl"),
            KeyModelMapping.of(List.of("c"), "xgboost_numpy")
                .withHandlerArg("model_class", "xgboost.XGBClassifier")
                .withHandlerArg("model_state", "/m/c.json")
                .withHandlerArg("max_batch_size", 8)));
  }

  private static void assertRefused(Runnable build, String... fragments) {
    IllegalArgumentException error = assertThrows(IllegalArgumentException.class, build::run);
    for (String fragment : fragments) {
      assertTrue(
          "message '" + error.getMessage() + "' should contain '" + fragment + "'",
          error.getMessage().contains(fragment));
    }
  }

  @Test
  public void requestCarriesOneRowPerMappingWithItsOwnArgumentsAndNoHandler() {
    Row kwargs = perKey().withMaxModelsPerWorker(1).kwargs();
    assertFalse(kwargs.getSchema().hasField("handler"));
    assertEquals(true, kwargs.getBoolean("keyed"));
    assertEquals("string", kwargs.getString("key_type"));
    assertEquals(Long.valueOf(1), kwargs.getInt64("max_models_per_worker_hint"));
    Row mappings = kwargs.getRow("key_models");
    assertEquals(List.of("mapping_0", "mapping_1"), mappings.getSchema().getFieldNames());
    Row first = mappings.getRow("mapping_0");
    assertEquals(List.of("a", "b"), List.copyOf(first.getArray("keys")));
    assertEquals("sklearn_numpy", first.getString("handler"));
    assertEquals("/m/v1.pkl", first.getRow("handler_args").getString("model_uri"));
    Row second = mappings.getRow("mapping_1");
    assertEquals(
        List.of("model_class", "model_state", "max_batch_size"),
        second.getRow("handler_args").getSchema().getFieldNames());
    assertEquals(Integer.valueOf(8), second.getRow("handler_args").getInt32("max_batch_size"));
  }

  @Test
  public void int64KeysCrossAsLongs() {
    Row kwargs =
        RunInference.ofKVs(
                FieldType.INT64,
                DOUBLES,
                FieldType.INT64,
                List.of(KeyModelMapping.of(List.of(7L, 9L), "onnx_numpy")))
            .kwargs();
    assertEquals("int64", kwargs.getString("key_type"));
    Row mapping = kwargs.getRow("key_models").getRow("mapping_0");
    assertEquals(List.of(7L, 9L), List.copyOf(mapping.getArray("keys")));
    assertFalse(mapping.getSchema().hasField("handler_args"));
  }

  @Test
  public void refusesMappingsThatCannotBeSent() {
    assertRefused(() -> KeyModelMapping.of(List.of(), "sklearn_numpy"), "at least one key");
    assertRefused(() -> KeyModelMapping.of(List.of(1), "sklearn_numpy"),
        "Strings or Longs", "java.lang.Integer");
    assertRefused(() -> KeyModelMapping.of(List.of("a", 2L), "sklearn_numpy"),
        "all Strings or all Longs");
    assertRefused(() -> KeyModelMapping.of(List.of("a"), "no handler"), "\"no handler\"");
    assertRefused(
        () -> KeyModelMapping.of(List.of("a"), "onnx_numpy").withHandlerArg("x", Double.NaN),
        "finite number");
    assertRefused(
        () -> RunInference.ofKVs(FieldType.STRING, DOUBLES, FieldType.INT64, List.of()),
        "at least one KeyModelMapping");
    assertRefused(
        () ->
            RunInference.ofKVs(
                FieldType.INT64,
                DOUBLES,
                FieldType.INT64,
                List.of(KeyModelMapping.of(List.of("a"), "onnx_numpy"))),
        "do not match keyType INT64");
  }

  @Test
  public void handlerArgumentsAndTheModelBoundBelongWhereTheyApply() {
    assertRefused(() -> perKey().withHandlerArg("model_uri", "/m.pkl"),
        "serves a model per key", "KeyModelMapping.withHandlerArg");
    assertRefused(() -> perKey().withMaxModelsPerWorker(0), "at least 1");
    assertRefused(
        () -> RunInference.of("sklearn_numpy", DOUBLES, FieldType.INT64).withMaxModelsPerWorker(2),
        "ofKVs with KeyModelMappings");
  }

  @Test
  public void mappingsAreValuesAndTheBuilderLeavesThemAlone() {
    KeyModelMapping base = KeyModelMapping.of(List.of("a"), "onnx_numpy");
    KeyModelMapping withArg = base.withHandlerArg("model_uri", "/m.onnx");
    assertEquals(base, KeyModelMapping.of(List.of("a"), "onnx_numpy"));
    assertFalse(base.equals(withArg));
    assertEquals(List.of("a"), withArg.keys());
    assertEquals("onnx_numpy", withArg.handler());
  }
}
