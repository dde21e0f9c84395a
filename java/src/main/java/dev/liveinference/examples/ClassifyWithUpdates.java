package dev.liveinference.examples;

import dev.liveinference.InferenceResult;
import dev.liveinference.JobCompletion;
import dev.liveinference.RunInference;
import dev.liveinference.Staging;
import java.util.Arrays;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.io.TextIO;
import org.apache.beam.sdk.options.Default;
import org.apache.beam.sdk.options.Description;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.options.Validation;
import org.apache.beam.sdk.schemas.Schema.FieldType;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.Row;
import org.joda.time.Duration;

/**
 * A streaming pipeline whose model changes on events sent from Java: classifies CSV rows from
 * files that appear in a folder, and takes model update messages (one JSON object per line,
 * such as {@code {"model_path": "/models/v2.pkl", "model_name": "v2"}}) from files that appear
 * in another. Each new model must predict the canary rows before it serves; a rejected model,
 * and a malformed message, land in the dead letters.
 *
 * <pre>
 * java -cp ... dev.liveinference.examples.ClassifyWithUpdates \
 *   --input='/data/in/*.csv' --updates='/data/updates/*.json' --model=/models/v1.pkl \
 *   --canaries='0.1,0.2,0.3,0.4;1,0,0,1' --predictions=predictions.tsv --deadLetters=dead.tsv \
 *   --python=/path/to/venv/bin/python --runner=PortableRunner --jobEndpoint=localhost:8073 ...
 * </pre>
 *
 * <p>The pipeline ends once neither folder got a new file for {@code --idleSeconds}.
 */
public final class ClassifyWithUpdates {

  private ClassifyWithUpdates() {}

  /** Options of the example. */
  public interface Options extends ExampleOptions.Liveinference, ExampleOptions.ModelFile {
    /**
     * The pattern of the input files: one comma-separated row of numbers per line.
     *
     * @return the pattern
     */
    @Description("Pattern of input files, one CSV row of numbers per line (watched)")
    @Validation.Required
    String getInput();

    /**
     * Sets the input pattern.
     *
     * @param value the pattern
     */
    void setInput(String value);

    /**
     * The pattern of the update files: one JSON message per line.
     *
     * @return the pattern
     */
    @Description("Pattern of model update files, one JSON message per line (watched)")
    @Validation.Required
    String getUpdates();

    /**
     * Sets the update pattern.
     *
     * @param value the pattern
     */
    void setUpdates(String value);

    /**
     * Canary rows every new model must predict, separated by semicolons; empty for none.
     *
     * @return the rows
     */
    @Description("Canary CSV rows, separated by ';' (empty: no validation)")
    @Default.String("")
    String getCanaries();

    /**
     * Sets the canary rows.
     *
     * @param value the rows, separated by semicolons
     */
    void setCanaries(String value);

    /**
     * Seconds without a new file after which a watched pattern ends.
     *
     * @return seconds
     */
    @Description("Stop watching a pattern after this many seconds without a new file")
    @Default.Long(30)
    Long getIdleSeconds();

    /**
     * Sets the idle limit.
     *
     * @param value seconds
     */
    void setIdleSeconds(Long value);
  }

  private static PCollection<String> watch(
      Pipeline pipeline, String name, String pattern, Duration idle) {
    return pipeline.apply(
        name,
        TextIO.read()
            .from(pattern)
            .watchForNewFiles(Duration.millis(500), new StopAfterFiles<>(0, idle)));
  }

  /**
   * Builds the pipeline.
   *
   * @param options the options
   * @return the pipeline, not yet run
   */
  public static Pipeline build(Options options) {
    Pipeline pipeline = Pipeline.create(options);
    Duration idle = Duration.standardSeconds(options.getIdleSeconds());
    PCollection<String> lines = watch(pipeline, "WatchRows", options.getInput(), idle);
    PCollection<String> updates = watch(pipeline, "WatchUpdates", options.getUpdates(), idle);

    RunInference.WithExceptionHandling<Row> classify =
        RunInference.of("sklearn_numpy", FieldType.array(FieldType.DOUBLE), FieldType.INT64)
            .withHandlerArg("model_uri", options.getModel())
            .withPreprocess("liveinference_expansion.functions.parse_csv_floats")
            .withModelUpdates(updates)
            .withExceptionHandling();
    if (!options.getCanaries().isEmpty()) {
      classify = classify.withModelValidation(Arrays.asList(options.getCanaries().split(";")));
    }
    classify =
        ExampleFiles.withService(classify, options.getExpansionService(), options.getPython());
    InferenceResult<Row> result = lines.apply("Classify", classify);
    ExampleFiles.writePredictions(result.getPredictions(), options.getPredictions());
    ExampleFiles.writeDeadLetters(result.getDeadLetters(), options.getDeadLetters());
    return pipeline;
  }

  /**
   * Runs the example and waits for it to finish.
   *
   * @param args pipeline options, see {@link Options}
   */
  public static void main(String[] args) {
    Options options = PipelineOptionsFactory.fromArgs(args).withValidation().as(Options.class);
    Staging.skipForLoopback(options);
    PipelineResult.State state = JobCompletion.waitUntilFinish(build(options).run());
    System.out.println("ClassifyWithUpdates finished: " + state);
    if (state != PipelineResult.State.DONE) {
      System.exit(1);
    }
  }
}
