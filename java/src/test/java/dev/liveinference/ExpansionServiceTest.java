package dev.liveinference;

import static dev.liveinference.TestPipelines.DOUBLES;
import static dev.liveinference.TestPipelines.assertDeadLetterSchema;
import static dev.liveinference.TestPipelines.assertPredictionSchema;
import static dev.liveinference.TestPipelines.csvClassifier;
import static dev.liveinference.TestPipelines.lines;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import org.apache.beam.sdk.schemas.Schema.FieldType;
import org.apache.beam.sdk.values.Row;
import org.junit.Assume;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.junit.runners.JUnit4;

/**
 * Against a running expansion service: a good request expands into typed outputs, a bad one
 * fails at construction with the service's message. Runs when {@code -Dliveinference.service}
 * (host:port) and {@code -Dliveinference.model} (a pickled scikit-learn model) are given, as
 * tests/xlang/test_java_pipelines.py does; skipped otherwise.
 */
@RunWith(JUnit4.class)
public class ExpansionServiceTest {

  private static final String SERVICE = System.getProperty("liveinference.service", "");
  private static final String MODEL = System.getProperty("liveinference.model", "");

  private static RunInference<Row> classifier() {
    return RunInference.of("sklearn_numpy", DOUBLES, FieldType.INT64)
        .withExpansionService(SERVICE);
  }

  @Test
  public void goodRequestExpandsIntoPredictionsAndDeadLetters() {
    Assume.assumeFalse("no -Dliveinference.service given", SERVICE.isEmpty());
    InferenceResult<Row> result =
        lines().apply(csvClassifier(MODEL).withExpansionService(SERVICE).withExceptionHandling());
    assertPredictionSchema(result.getPredictions());
    assertDeadLetterSchema(result.getDeadLetters());
    assertPredictionSchema(lines().apply(csvClassifier(MODEL).withExpansionService(SERVICE)));
  }

  @Test
  public void refusedRequestsFailAtConstructionWithTheServicesMessage() {
    Assume.assumeFalse("no -Dliveinference.service given", SERVICE.isEmpty());
    IllegalArgumentException unknown =
        assertThrows(
            IllegalArgumentException.class,
            () ->
                lines()
                    .apply(
                        RunInference.of("sklearn_numpyy", FieldType.DOUBLE, FieldType.INT64)
                            .withExpansionService(SERVICE)));
    assertTrue(unknown.getMessage(), unknown.getMessage().contains(
        "unknown handler 'sklearn_numpyy'"));
    // The service checks model paths only inside its --model-root, the folder of MODEL.
    String absent = new java.io.File(new java.io.File(MODEL).getParentFile(), "missing.pkl")
        .getPath();
    IllegalArgumentException missing =
        assertThrows(
            IllegalArgumentException.class,
            () -> lines().apply(classifier().withHandlerArg("model_uri", absent)));
    assertTrue(missing.getMessage(), missing.getMessage().contains(
        "no model file at '" + absent + "'"));
    IllegalArgumentException outside =
        assertThrows(
            IllegalArgumentException.class,
            () -> lines().apply(
                classifier().withHandlerArg("model_uri", MODEL).withPreprocess("os.system")));
    assertTrue(outside.getMessage(), outside.getMessage().contains(
        "preprocess[0] 'os.system' is not in an allowed module"));
    IllegalArgumentException wrongType =
        assertThrows(
            IllegalArgumentException.class,
            () -> lines().apply(
                classifier().withHandlerArg("model_uri", MODEL)
                    .withHandlerArg("max_batch_size", "ten")));
    assertTrue(wrongType.getMessage(), wrongType.getMessage().contains(
        "'max_batch_size' must be an integer, got str 'ten'"));
  }
}
