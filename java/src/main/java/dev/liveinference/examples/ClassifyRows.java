package dev.liveinference.examples;

import dev.liveinference.InferenceResult;
import dev.liveinference.JobCompletion;
import dev.liveinference.RunInference;
import dev.liveinference.Staging;
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
 * Classifies CSV rows with a scikit-learn model through liveinference: reads rows from a file,
 * parses them in Python, writes predictions and dead letters to two files (one line each,
 * tab-separated).
 *
 * <pre>
 * java -cp ... dev.liveinference.examples.ClassifyRows \
 *   --input=rows.csv --model=/models/v1.pkl \
 *   --predictions=predictions.tsv --deadLetters=dead.tsv \
 *   --python=/path/to/venv/bin/python \
 *   --runner=PortableRunner --jobEndpoint=localhost:8099 ...
 * </pre>
 *
 * <p>Without {@code --expansionService}, the transform starts {@code liveinference serve} with
 * {@code --python} (or {@code -Dliveinference.python}, {@code LIVEINFERENCE_PYTHON}, {@code
 * python3}) and stops it when the program ends.
 *
 * <p>With {@code --watchInputSeconds=N}, {@code --input} is a file pattern watched for new files
 * (an unbounded, streaming pipeline) until no new file came for N seconds (or {@code
 * --expectFiles} files came), and a model dropped
 * into {@code --watchPattern} mid-run takes over from the next batch on.
 */
public final class ClassifyRows {

  private ClassifyRows() {}

  /** Options of the example. */
  public interface Options extends ExampleOptions.Liveinference, ExampleOptions.ModelFile {
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
     * A file pattern watched for new model versions; empty for none.
     *
     * @return the pattern
     */
    @Description("File pattern watched for new models (empty: no refresh)")
    @Default.String("")
    String getWatchPattern();

    /**
     * Sets the watched pattern.
     *
     * @param value the pattern
     */
    void setWatchPattern(String value);

    /**
     * Seconds between two looks at the watched pattern.
     *
     * @return seconds
     */
    @Description("Seconds between two looks at --watchPattern")
    @Default.Double(1.0)
    Double getRefreshSeconds();

    /**
     * Sets the refresh interval.
     *
     * @param value seconds
     */
    void setRefreshSeconds(Double value);

    /**
     * Seconds without a new input file after which a watched input ends; 0 reads the input
     * pattern once (batch).
     *
     * @return seconds
     */
    @Description("Watch --input for new files, ending after this many seconds without one"
        + " (0: read it once)")
    @Default.Long(0)
    Long getWatchInputSeconds();

    /**
     * Sets how long a watched input waits for new files.
     *
     * @param value seconds
     */
    void setWatchInputSeconds(Long value);

    /**
     * With a watched input, stop once this many polls found new files (0: only the idle limit).
     *
     * @return the number of files (polls with new files) to wait for
     */
    @Description("With --watchInputSeconds, stop once this many new files were seen (0: never)")
    @Default.Integer(0)
    Integer getExpectFiles();

    /**
     * Sets the number of files to wait for.
     *
     * @param value files
     */
    void setExpectFiles(Integer value);

    /**
     * The largest batch the Python side makes (0: its default).
     *
     * @return rows
     */
    @Description("max_batch_size of the handler (0: default)")
    @Default.Integer(0)
    Integer getMaxBatchSize();

    /**
     * Sets the largest batch.
     *
     * @param value rows
     */
    void setMaxBatchSize(Integer value);

    /**
     * Rows that cross to Python in one element (0: one row per element).
     *
     * @return rows
     */
    @Description("Rows per cross-language element (0: one row each), see withCrossingBatch")
    @Default.Integer(0)
    Integer getCrossingBatch();

    /**
     * Sets the rows per cross-language element.
     *
     * @param value rows
     */
    void setCrossingBatch(Integer value);

    /**
     * How long the first row of a crossing batch waits for more, in milliseconds.
     *
     * @return milliseconds
     */
    @Description("Longest wait of a crossing batch's first row, in milliseconds")
    @Default.Long(100)
    Long getCrossingWaitMillis();

    /**
     * Sets the longest wait of a crossing batch.
     *
     * @param value milliseconds
     */
    void setCrossingWaitMillis(Long value);

    /**
     * The CA certificate (PEM) that signed the expansion service's TLS certificate; empty for a
     * plaintext service on loopback.
     *
     * @return the file's path
     */
    @Description("CA certificate (PEM) of a TLS expansion service (empty: plaintext)")
    @Default.String("")
    String getTlsCaCert();

    /**
     * Sets the CA certificate of a TLS expansion service.
     *
     * @param value the file's path
     */
    void setTlsCaCert(String value);

    /**
     * This client's certificate chain (PEM) for mutual TLS; empty for none.
     *
     * @return the file's path
     */
    @Description("Client certificate (PEM) for mutual TLS, with --tlsClientKey")
    @Default.String("")
    String getTlsClientCert();

    /**
     * Sets the client certificate for mutual TLS.
     *
     * @param value the file's path
     */
    void setTlsClientCert(String value);

    /**
     * This client's unencrypted PKCS#8 PEM private key for mutual TLS; empty for none.
     *
     * @return the file's path
     */
    @Description("Client private key (PKCS#8 PEM) for mutual TLS, with --tlsClientCert")
    @Default.String("")
    String getTlsClientKey();

    /**
     * Sets the client key for mutual TLS.
     *
     * @param value the file's path
     */
    void setTlsClientKey(String value);
  }

  /**
   * Builds the pipeline.
   *
   * @param options the options
   * @return the pipeline, not yet run
   */
  public static Pipeline build(Options options) {
    Pipeline pipeline = Pipeline.create(options);
    PCollection<String> lines;
    if (options.getWatchInputSeconds() > 0) {
      lines =
          pipeline.apply(
              "Watch",
              TextIO.read()
                  .from(options.getInput())
                  .watchForNewFiles(
                      Duration.millis(500),
                      new StopAfterFiles<>(
                          options.getExpectFiles(),
                          Duration.standardSeconds(options.getWatchInputSeconds()))));
    } else {
      lines = pipeline.apply("Read", TextIO.read().from(options.getInput()));
    }

    RunInference.WithExceptionHandling<Row> classify =
        RunInference.of("sklearn_numpy", FieldType.array(FieldType.DOUBLE), FieldType.INT64)
            .withHandlerArg("model_uri", options.getModel())
            .withPreprocess("liveinference_expansion.functions.parse_csv_floats")
            .withExceptionHandling();
    classify = ExampleFiles.withService(classify, options.getExpansionService(), options.getPython());
    if (!options.getTlsClientCert().isEmpty() || !options.getTlsClientKey().isEmpty()) {
      classify =
          classify.withExpansionServiceTls(
              options.getTlsCaCert(), options.getTlsClientCert(), options.getTlsClientKey());
    } else if (!options.getTlsCaCert().isEmpty()) {
      classify = classify.withExpansionServiceTls(options.getTlsCaCert());
    }
    if (options.getMaxBatchSize() > 0) {
      classify = classify.withHandlerArg("max_batch_size", options.getMaxBatchSize());
    }
    if (options.getCrossingBatch() > 0) {
      classify =
          classify.withCrossingBatch(
              options.getCrossingBatch(), Duration.millis(options.getCrossingWaitMillis()));
    }
    if (!options.getWatchPattern().isEmpty()) {
      classify =
          classify.withModelRefresh(
              options.getWatchPattern(),
              Duration.millis(Math.round(options.getRefreshSeconds() * 1000)));
    }
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
    System.out.println("ClassifyRows finished: " + state);
    if (state != PipelineResult.State.DONE) {
      System.exit(1);
    }
  }
}
