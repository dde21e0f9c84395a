package dev.liveinference.examples;

import dev.liveinference.JobCompletion;
import dev.liveinference.Staging;
import java.util.ArrayList;
import java.util.List;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.coders.DoubleCoder;
import org.apache.beam.sdk.coders.IterableCoder;
import org.apache.beam.sdk.extensions.python.transforms.RunInference;
import org.apache.beam.sdk.io.TextIO;
import org.apache.beam.sdk.options.Description;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.options.Validation;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.schemas.Schema.Field;
import org.apache.beam.sdk.schemas.Schema.FieldType;
import org.apache.beam.sdk.transforms.MapElements;
import org.apache.beam.sdk.transforms.ParDo;
import org.apache.beam.sdk.values.Row;
import org.apache.beam.sdk.values.TypeDescriptor;
import org.apache.beam.sdk.values.TypeDescriptors;

/**
 * Classifies CSV rows with Beam's own Java {@code RunInference} (extensions-python), unchanged,
 * against {@code liveinference serve --allow-inline-source}: what a Beam user's pipeline does
 * today, for comparison with {@link ClassifyRows} (benchmarks/xlang.py). Rows are parsed in
 * Java into lists of doubles, as Beam's examples do; predictions are appended to a file as
 * {@code example TAB inference} lines. Beam's transform has no dead letters: a bad row fails
 * the pipeline.
 *
 * <pre>
 * java -cp ... dev.liveinference.examples.StockBeamClassify --input=rows.csv \
 *   --model=/models/v1.pkl --predictions=predictions.tsv --expansionService=localhost:8097 \
 *   --runner=PortableRunner --jobEndpoint=localhost:8099 ...
 * </pre>
 */
public final class StockBeamClassify {

  /** The model loader Beam's Java class sends, with Beam's module names. */
  static final String LOADER =
      "from apache_beam.ml.inference.sklearn_inference import SklearnModelHandlerNumpy\n"
          + "\n"
          + "def get_model_handler(model_uri):\n"
          + "  return SklearnModelHandlerNumpy(model_uri)\n";

  private static final Schema PREDICTION =
      Schema.of(
          Field.of("example", FieldType.array(FieldType.DOUBLE)),
          Field.of("inference", FieldType.INT64));

  private StockBeamClassify() {}

  /** Options of the example. */
  public interface Options extends ExampleOptions.Predictions, ExampleOptions.ModelFile {
    /**
     * The input file: one comma-separated row of numbers per line.
     *
     * @return the path
     */
    @Description("Input file, one CSV row of numbers per line")
    @Validation.Required
    String getInput();

    /**
     * Sets the input file.
     *
     * @param value the path
     */
    void setInput(String value);

    /**
     * The expansion service, started with {@code --allow-inline-source}.
     *
     * @return host:port
     */
    @Description("liveinference serve --allow-inline-source, host:port")
    @Validation.Required
    String getExpansionService();

    /**
     * Sets the expansion service.
     *
     * @param value host:port
     */
    void setExpansionService(String value);
  }

  /**
   * Parses one CSV line into doubles.
   *
   * @param line the line
   * @return its numbers
   */
  static List<Double> parse(String line) {
    List<Double> values = new ArrayList<>();
    for (String part : line.split(",")) {
      values.add(Double.parseDouble(part.strip()));
    }
    return values;
  }

  /**
   * Builds the pipeline.
   *
   * @param options the options
   * @return the pipeline, not yet run
   */
  public static Pipeline build(Options options) {
    Pipeline pipeline = Pipeline.create(options);
    pipeline
        .apply("Read", TextIO.read().from(options.getInput()))
        .apply(
            "Parse",
            MapElements.into(new TypeDescriptor<Iterable<Double>>() {})
                .via((String line) -> parse(line)))
        .setCoder(IterableCoder.of(DoubleCoder.of()))
        .apply(
            "RunInference",
            RunInference.of(LOADER, PREDICTION)
                .withKwarg("model_uri", options.getModel())
                .withExpansionService(options.getExpansionService()))
        .apply(
            "Format",
            MapElements.into(TypeDescriptors.strings())
                .via(
                    (Row row) ->
                        ExampleFiles.clean(row.getArray("example"))
                            + "\t"
                            + row.getInt64("inference")))
        .apply("Write", ParDo.of(new ExampleFiles.AppendLines(options.getPredictions())));
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
    System.out.println("StockBeamClassify finished: " + state);
    if (state != PipelineResult.State.DONE) {
      System.exit(1);
    }
  }
}
