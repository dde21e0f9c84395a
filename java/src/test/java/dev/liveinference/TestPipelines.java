package dev.liveinference;

import static org.junit.Assert.assertEquals;

import java.io.IOException;
import java.net.ServerSocket;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.coders.RowCoder;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.schemas.Schema.FieldType;
import org.apache.beam.sdk.transforms.Create;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.Row;

/** What the expansion tests share: an input to expand against, the classifier, its schemas. */
final class TestPipelines {

  /** The examples' type: an array of doubles. */
  static final FieldType DOUBLES = FieldType.array(FieldType.DOUBLE);

  /** The Python function that parses a CSV line into doubles. */
  static final String PARSE = "liveinference_expansion.functions.parse_csv_floats";

  private TestPipelines() {}

  /**
   * One CSV line in a new pipeline for a portable runner, which is expanded but never run.
   *
   * @return the line
   */
  static PCollection<String> lines() {
    Pipeline pipeline =
        Pipeline.create(
            PipelineOptionsFactory.fromArgs("--runner=PortableRunner", "--jobEndpoint=localhost:1")
                .create());
    return pipeline.apply(Create.of("1,2,3,4"));
  }

  /**
   * A pipeline for the Prism job server at {@code jobEndpoint}, its Java steps in a LOOPBACK
   * environment on a free port.
   *
   * @param jobEndpoint the job server's host:port
   * @return the empty pipeline
   * @throws IOException if no free port can be found
   */
  static Pipeline prismPipeline(String jobEndpoint) throws IOException {
    int port;
    try (ServerSocket socket = new ServerSocket(0)) {
      port = socket.getLocalPort();
    }
    return Pipeline.create(
        PipelineOptionsFactory.fromArgs(
                "--runner=PortableRunner",
                "--jobEndpoint=" + jobEndpoint,
                "--defaultEnvironmentType=LOOPBACK",
                "--defaultEnvironmentConfig=localhost:" + port)
            .create());
  }

  /**
   * A scikit-learn classifier of CSV lines: doubles in, an INT64 label out.
   *
   * @param model the pickled model's path
   * @return the transform, with no expansion service set
   */
  static RunInference<Row> csvClassifier(String model) {
    return RunInference.of("sklearn_numpy", DOUBLES, FieldType.INT64)
        .withHandlerArg("model_uri", model)
        .withPreprocess(PARSE);
  }

  /**
   * Asserts that the predictions carry the classifier's prediction schema.
   *
   * @param predictions the expanded output
   */
  static void assertPredictionSchema(PCollection<Row> predictions) {
    assertEquals(
        RunInference.predictionSchema(DOUBLES, FieldType.INT64),
        ((RowCoder) predictions.getCoder()).getSchema());
  }

  /**
   * Asserts that the dead letters carry the dead-letter schema.
   *
   * @param deadLetters the expanded output
   */
  static void assertDeadLetterSchema(PCollection<Row> deadLetters) {
    assertEquals(
        RunInference.DEAD_LETTER_SCHEMA, ((RowCoder) deadLetters.getCoder()).getSchema());
  }
}
