package dev.liveinference.examples;

import dev.liveinference.InferenceResult;
import dev.liveinference.JobCompletion;
import dev.liveinference.KeyModelMapping;
import dev.liveinference.RunInference;
import dev.liveinference.Staging;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.coders.KvCoder;
import org.apache.beam.sdk.coders.StringUtf8Coder;
import org.apache.beam.sdk.io.TextIO;
import org.apache.beam.sdk.options.Description;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.options.Validation;
import org.apache.beam.sdk.schemas.Schema.FieldType;
import org.apache.beam.sdk.transforms.MapElements;
import org.apache.beam.sdk.transforms.ParDo;
import org.apache.beam.sdk.values.KV;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.Row;
import org.apache.beam.sdk.values.TypeDescriptors;

/**
 * Classifies keyed CSV rows with a model per key: lines {@code key;1.0,2.0,3.0,4.0}, each key's
 * rows scored by the model its mapping names, with any handler the service knows (scikit-learn,
 * ONNX, ...). Writes one tab-separated line per prediction (key, example, inference, model_id)
 * and per dead letter (element, stage, error).
 *
 * <pre>
 * java -cp ... dev.liveinference.examples.ClassifyByKey \
 *   --input=rows.txt --predictions=predictions.tsv --deadLetters=dead.tsv \
 *   --keyModels="eu,uk=onnx_numpy=/models/eu.onnx;us=sklearn_numpy=/models/us.pkl" \
 *   --runner=PortableRunner --jobEndpoint=localhost:8099 ...
 * </pre>
 *
 * <p>As {@link ClassifyRows}, it starts its own expansion service unless given {@code
 * --expansionService}.
 */
public final class ClassifyByKey {

  private ClassifyByKey() {}

  /** Options of the example. */
  public interface Options extends ExampleOptions.Liveinference {
    /**
     * The input file: {@code key;comma-separated numbers} per line.
     *
     * @return the path
     */
    @Description("Input file, one key;CSV row of numbers per line")
    @Validation.Required
    String getInput();

    /**
     * Sets the input file.
     *
     * @param value the path
     */
    void setInput(String value);

    /**
     * The model of each key: {@code keys=handler=model_uri} entries separated by {@code ;},
     * the keys separated by commas.
     *
     * @return the mappings
     */
    @Description("keys=handler=model_uri;..., e.g. a,b=sklearn_numpy=/a.pkl;c=onnx_numpy=/c.onnx")
    @Validation.Required
    String getKeyModels();

    /**
     * Sets the model of each key.
     *
     * @param value the mappings
     */
    void setKeyModels(String value);
  }

  /**
   * Parses {@code keys=handler=model_uri;...} into mappings.
   *
   * @param spec the mappings, as {@link Options#getKeyModels()} describes them
   * @return one mapping per entry
   * @throws IllegalArgumentException if an entry does not have three parts
   */
  static List<KeyModelMapping> parseKeyModels(String spec) {
    List<KeyModelMapping> mappings = new ArrayList<>();
    for (String entry : spec.split(";")) {
      String[] parts = entry.strip().split("=", 3);
      if (parts.length != 3) {
        throw new IllegalArgumentException(
            "--keyModels entry \"" + entry + "\" is not keys=handler=model_uri");
      }
      mappings.add(
          KeyModelMapping.of(Arrays.asList(parts[0].split(",")), parts[1])
              .withHandlerArg("model_uri", parts[2]));
    }
    return mappings;
  }

  /**
   * Builds the pipeline.
   *
   * @param options the options
   * @return the pipeline, not yet run
   */
  public static Pipeline build(Options options) {
    Pipeline pipeline = Pipeline.create(options);
    PCollection<KV<String, String>> rows =
        pipeline
            .apply("Read", TextIO.read().from(options.getInput()))
            .apply(
                "SplitKey",
                MapElements.into(
                        TypeDescriptors.kvs(TypeDescriptors.strings(), TypeDescriptors.strings()))
                    .via(
                        (String line) ->
                            KV.of(
                                line.substring(0, Math.max(0, line.indexOf(';'))),
                                line.substring(line.indexOf(';') + 1))))
            .setCoder(KvCoder.of(StringUtf8Coder.of(), StringUtf8Coder.of()));
    RunInference.WithExceptionHandling<KV<String, Row>> classify =
        RunInference.<String>ofKVs(
                FieldType.STRING,
                FieldType.array(FieldType.DOUBLE),
                FieldType.INT64,
                parseKeyModels(options.getKeyModels()))
            .withPreprocess("liveinference_expansion.functions.parse_csv_floats")
            .withExceptionHandling();
    classify =
        ExampleFiles.withService(classify, options.getExpansionService(), options.getPython());
    InferenceResult<KV<String, Row>> result = rows.apply("Classify", classify);
    result
        .getPredictions()
        .apply(
            "FormatPredictions",
            MapElements.into(TypeDescriptors.strings())
                .via(
                    (KV<String, Row> kv) ->
                        ExampleFiles.clean(kv.getKey())
                            + "\t"
                            + ExampleFiles.clean(kv.getValue().getArray("example"))
                            + "\t"
                            + kv.getValue().getInt64("inference")
                            + "\t"
                            + ExampleFiles.clean(kv.getValue().getString("model_id"))))
        .apply(
            "WritePredictions", ParDo.of(new ExampleFiles.AppendLines(options.getPredictions())));
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
    System.out.println("ClassifyByKey finished: " + state);
    if (state != PipelineResult.State.DONE) {
      System.exit(1);
    }
  }
}
