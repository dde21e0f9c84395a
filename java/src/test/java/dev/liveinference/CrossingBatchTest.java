package dev.liveinference;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import org.apache.beam.sdk.schemas.Schema.FieldType;
import org.apache.beam.sdk.values.Row;
import org.joda.time.Duration;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.junit.runners.JUnit4;

/** The request of a transform that crosses in batches, and what it refuses. */
@RunWith(JUnit4.class)
public class CrossingBatchTest {

  private static final FieldType DOUBLES = FieldType.array(FieldType.DOUBLE);

  private static RunInference<Row> classifier() {
    return RunInference.of("sklearn_numpy", DOUBLES, FieldType.INT64);
  }

  @Test
  public void requestAsksPythonForBatchesOnlyWhenConfigured() {
    assertFalse(classifier().kwargs().getSchema().hasField("crossing_batch"));
    Row kwargs =
        classifier()
            .withCrossingBatch(256, Duration.millis(50))
            .withExceptionHandling()
            .withHandlerArg("model_uri", "/models/v1.pkl")
            .kwargs();
    assertEquals(true, kwargs.getBoolean("crossing_batch"));
    assertEquals(true, kwargs.getBoolean("exception_handling"));
  }

  @Test
  public void refusesEmptyBatchesWaitsThatAreNotPositiveAndKeyedInput() {
    assertRefused(
        () -> classifier().withCrossingBatch(0, Duration.millis(50)), "at least 1", "got 0");
    assertRefused(() -> classifier().withCrossingBatch(10, null), "positive duration");
    assertRefused(() -> classifier().withCrossingBatch(10, Duration.ZERO), "positive duration");
    assertRefused(
        () ->
            RunInference.ofKVs("sklearn_numpy", FieldType.STRING, DOUBLES, FieldType.INT64)
                .withCrossingBatch(10, Duration.millis(50)),
        "unkeyed examples");
  }

  private static void assertRefused(Runnable build, String... fragments) {
    IllegalArgumentException error = assertThrows(IllegalArgumentException.class, build::run);
    for (String fragment : fragments) {
      assertTrue(
          "message '" + error.getMessage() + "' should contain '" + fragment + "'",
          error.getMessage().contains(fragment));
    }
  }
}
