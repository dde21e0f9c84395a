package dev.liveinference;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertSame;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.util.Arrays;
import java.util.List;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.coders.RowCoder;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.schemas.Schema.FieldType;
import org.apache.beam.sdk.transforms.Create;
import org.apache.beam.sdk.util.construction.PipelineTranslation;
import org.apache.beam.sdk.values.KV;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.Row;
import org.junit.Assume;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.junit.runners.JUnit4;

/**
 * Event-mode refresh and model validation from Java: the request {@code withModelValidation} and
 * {@code withRefreshChannel} produce, the values they refuse, and (with {@code
 * -Dliveinference.service} and {@code -Dliveinference.model}) update messages crossing to the
 * service as a second input, from Strings and from Rows.
 */
@RunWith(JUnit4.class)
public class ModelUpdatesTest {

  private static final String SERVICE = System.getProperty("liveinference.service", "");
  private static final String MODEL = System.getProperty("liveinference.model", "");
  private static final FieldType DOUBLES = FieldType.array(FieldType.DOUBLE);
  private static final Schema UPDATE =
      Schema.builder().addStringField("model_path").addNullableField("model_name",
          FieldType.STRING).build();

  private static RunInference<Row> classifier() {
    return RunInference.of("sklearn_numpy", DOUBLES, FieldType.INT64);
  }

  private static Pipeline pipeline() {
    return Pipeline.create(
        PipelineOptionsFactory.fromArgs("--runner=PortableRunner", "--jobEndpoint=localhost:1")
            .create());
  }

  @Test
  public void canariesAndChannelCrossAsTypedFields() {
    Row strings =
        classifier()
            .withModelValidation(List.of("1,2,3,4", "0,0,0,0"))
            .withRefreshChannel("gs://bucket/events")
            .kwargs();
    assertEquals(FieldType.array(FieldType.STRING),
        strings.getSchema().getField("canary_examples").getType());
    assertEquals(List.of("1,2,3,4", "0,0,0,0"), List.copyOf(strings.getArray("canary_examples")));
    assertEquals("gs://bucket/events", strings.getString("refresh_channel"));

    Row lists = classifier().withModelValidation(List.of(List.of(1.0, 2.0))).kwargs();
    assertEquals(FieldType.array(DOUBLES),
        lists.getSchema().getField("canary_examples").getType());

    Schema point = Schema.builder().addDoubleField("x").addStringField("label").build();
    Row row = Row.withSchema(point).addValues(0.5, "a").build();
    Row rows = classifier().withModelValidation(List.of(row)).kwargs();
    assertEquals(List.of(row), List.copyOf(rows.getArray("canary_examples")));

    Row keyed =
        RunInference.<String>ofKVs("sklearn_numpy", FieldType.STRING, DOUBLES, FieldType.INT64)
            .withModelValidation(List.of(KV.of("eu", "1,2,3,4")))
            .kwargs();
    Row pair = (Row) keyed.getArray("canary_examples").iterator().next();
    assertEquals("eu", pair.getString("key"));
    assertEquals("1,2,3,4", pair.getString("value"));
    assertFalse(classifier().kwargs().getSchema().hasField("canary_examples"));
  }

  @Test
  public void badCanariesAreRefusedNamingTheExample() {
    String[][] cases = {
      {"empty", "needs at least one canary example"},
      {"null", "canary example 1 is null"},
      {"mixed", "canary example 1 is a java.lang.Long 3 ("},
      {"nan", "canary example 0 item holds NaN; give finite numbers"},
      {"kv", "canary example 0 is a KV, but this transform's input is not keyed"},
      {"object", "canary example 0 is a java.lang.Object"},
    };
    for (String[] testCase : cases) {
      List<?> canaries;
      switch (testCase[0]) {
        case "empty":
          canaries = List.of();
          break;
        case "null":
          canaries = Arrays.asList("1,2", null);
          break;
        case "mixed":
          canaries = List.of("1,2", 3L);
          break;
        case "nan":
          canaries = List.of(List.of(Double.NaN));
          break;
        case "kv":
          canaries = List.of(KV.of("a", "1,2"));
          break;
        default:
          canaries = List.of(new Object());
      }
      IllegalArgumentException error =
          assertThrows(IllegalArgumentException.class,
              () -> classifier().withModelValidation(canaries));
      assertTrue(error.getMessage(), error.getMessage().contains(testCase[1]));
    }
    IllegalArgumentException notKv =
        assertThrows(IllegalArgumentException.class,
            () -> RunInference.<Long>ofKVs("sklearn_numpy", FieldType.INT64, DOUBLES,
                FieldType.INT64).withModelValidation(List.of(KV.of("a", "1"))));
    assertTrue(notKv.getMessage(), notKv.getMessage().contains("not of the key type"));
    IllegalArgumentException twice =
        assertThrows(IllegalArgumentException.class,
            () -> classifier().withModelValidation(List.of("1")).withModelValidation(
                List.of("2")));
    assertTrue(twice.getMessage(), twice.getMessage().contains("already set to [1]"));
    assertThrows(IllegalArgumentException.class, () -> classifier().withRefreshChannel(" "));
  }

  @Test
  public void updatesStayThroughEveryBuilderMethodAndAreGivenOnce() {
    PCollection<String> updates = pipeline().apply(Create.of("{\"model_path\": \"/m/v2.pkl\"}"));
    RunInference.WithExceptionHandling<Row> transform =
        classifier().withModelUpdates(updates).withHandlerArg("model_uri", "/m/v1.pkl")
            .withExceptionHandling().withModelValidation(List.of("1,2,3,4"));
    assertSame(updates, transform.modelUpdates);
    IllegalArgumentException twice =
        assertThrows(IllegalArgumentException.class, () -> transform.withModelUpdates(updates));
    assertTrue(twice.getMessage(), twice.getMessage().contains("updates are already"));
    assertThrows(IllegalArgumentException.class, () -> classifier().withModelUpdates(null));
    RunInference<KV<String, Row>> perKey =
        RunInference.ofKVs(FieldType.STRING, DOUBLES, FieldType.INT64,
            List.of(KeyModelMapping.of(List.of("a"), "sklearn_numpy")));
    IllegalArgumentException keyModels =
        assertThrows(IllegalArgumentException.class, () -> perKey.withModelUpdates(updates));
    assertTrue(keyModels.getMessage(), keyModels.getMessage().contains("a model per key"));
  }

  @Test
  public void updatesOfAnotherTypeOrPipelineAreRefusedWhenApplied() {
    Pipeline pipeline = pipeline();
    PCollection<String> lines = pipeline.apply("Lines", Create.of("1,2,3,4"));
    PCollection<Integer> numbers = pipeline.apply("Numbers", Create.of(1));
    RunInference<Row> unreachable = classifier().withExpansionService("localhost:1");
    IllegalArgumentException wrongType =
        assertThrows(IllegalArgumentException.class,
            () -> lines.apply(unreachable.withModelUpdates(numbers)));
    assertTrue(wrongType.getMessage(), wrongType.getMessage().contains(
        "give JSON Strings (or UTF-8 byte[]s)"));
    PCollection<String> elsewhere = pipeline().apply(Create.of("/m/v2.pkl"));
    IllegalArgumentException otherPipeline =
        assertThrows(IllegalArgumentException.class,
            () -> lines.apply("Other", unreachable.withModelUpdates(elsewhere)));
    assertTrue(otherPipeline.getMessage(),
        otherPipeline.getMessage().contains("belongs to another pipeline"));
  }

  @Test
  public void stringAndRowUpdatesExpandAsASecondInput() {
    Assume.assumeFalse("no -Dliveinference.service given", SERVICE.isEmpty());
    Pipeline pipeline = pipeline();
    PCollection<String> lines = pipeline.apply("Lines", Create.of("1,2,3,4"));
    PCollection<String> json =
        pipeline.apply("Json", Create.of("{\"model_path\": \"" + MODEL + "\"}"));
    PCollection<Row> rows =
        pipeline.apply("Rows",
            Create.of(Row.withSchema(UPDATE).addValues(MODEL, "v1").build())
                .withRowSchema(UPDATE));
    RunInference.WithExceptionHandling<Row> classify =
        classifier()
            .withExpansionService(SERVICE)
            .withHandlerArg("model_uri", MODEL)
            .withPreprocess("liveinference_expansion.functions.parse_csv_floats")
            .withModelValidation(List.of("1,2,3,4"))
            .withExceptionHandling();
    InferenceResult<Row> fromJson = lines.apply("Json updates", classify.withModelUpdates(json));
    InferenceResult<Row> fromRows = lines.apply("Row updates", classify.withModelUpdates(rows));
    for (InferenceResult<Row> result : List.of(fromJson, fromRows)) {
      assertEquals(RunInference.DEAD_LETTER_SCHEMA,
          ((RowCoder) result.getDeadLetters().getCoder()).getSchema());
    }
    long twoInputs =
        PipelineTranslation.toProto(pipeline).getComponents().getTransformsMap().values().stream()
            .filter(t -> t.getUniqueName().endsWith("/ConfiguredRunInference"))
            .filter(t -> t.getInputsCount() == 2)
            .count();
    assertEquals(2, twoInputs);
  }
}
