package dev.liveinference;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.util.Map;
import org.apache.beam.sdk.coders.Coder;
import org.apache.beam.sdk.coders.RowCoder;
import org.apache.beam.sdk.extensions.python.PythonExternalTransform;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.schemas.Schema.FieldType;
import org.apache.beam.sdk.transforms.PTransform;
import org.apache.beam.sdk.values.KV;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.PCollectionTuple;
import org.apache.beam.sdk.values.POutput;
import org.apache.beam.sdk.values.Row;
import org.apache.beam.sdk.values.TupleTag;
import org.joda.time.Duration;

/**
 * Runs a model on every element of a {@code PCollection} with liveinference's RunInference,
 * expanded by the liveinference expansion service ({@code liveinference serve}).
 *
 * <p>The transform only builds the request: model loading, batching, pre- and
 * post-processing, model refresh and dead letters all happen in Python, exactly as for a Python
 * pipeline. The output is one {@link Row} {@code (example, inference, model_id)} per element
 * (a {@code KV<key, Row>} for {@link #ofKVs}).
 *
 * <pre>{@code
 * PCollection<Row> predictions =
 *     lines.apply(
 *         RunInference.of("sklearn_numpy", FieldType.array(FieldType.DOUBLE), FieldType.INT64)
 *             .withHandlerArg("model_uri", "/models/classifier.pkl")
 *             .withPreprocess("liveinference_expansion.functions.parse_csv_floats")
 *             .withExpansionService("localhost:8097"));
 * }</pre>
 *
 * <p>Each {@code with*} method returns a new transform; a transform is never changed.
 *
 * @param <OutputT> {@link Row} or {@code KV<key, Row>}
 */
public final class RunInference<OutputT>
    extends PTransform<PCollection<?>, PCollection<OutputT>> {

  /** The qualified name of the Python transform the expansion service exposes. */
  public static final String TRANSFORM_NAME =
      "liveinference_expansion.transform.ConfiguredRunInference";

  /** Where {@code liveinference serve} listens by default. */
  public static final String DEFAULT_EXPANSION_SERVICE = "localhost:8097";

  /** The output tag of the predictions, as named by the Python transform. */
  static final String PREDICTIONS = "predictions";

  /** The output tag of the dead letters, as named by the Python transform. */
  static final String DEAD_LETTERS = "dead_letters";

  /** The schema of a dead letter: the element (as text), the stage it failed at, the error. */
  public static final Schema DEAD_LETTER_SCHEMA =
      Schema.builder()
          .addStringField("element")
          .addStringField("stage")
          .addStringField("error")
          .build();

  private final Config config;

  private RunInference(Config config) {
    this.config = config;
  }

  /**
   * Runs a model on unkeyed examples.
   *
   * @param handler the Python handler name: {@code sklearn_numpy}, {@code sklearn_pandas},
   *     {@code pytorch_tensor}, {@code pytorch_keyed_tensor}, {@code tf_numpy}, {@code tf_tensor}
   * @param exampleType the type of {@code example} in the output (after preprocessing): INT64,
   *     INT32, INT16, DOUBLE, FLOAT, STRING, BOOLEAN, BYTES, or an array of one of them
   * @param inferenceType the type of {@code inference} in the output, likewise
   * @return the transform, reading the expansion service at {@link #DEFAULT_EXPANSION_SERVICE}
   * @throws IllegalArgumentException if the handler name is empty or malformed, or a type is
   *     not supported
   */
  public static RunInference<Row> of(
      String handler, FieldType exampleType, FieldType inferenceType) {
    return new RunInference<>(Config.of(handler, exampleType, inferenceType));
  }

  /**
   * Runs a model on {@code KV<key, example>} pairs; the output keeps each key.
   *
   * @param handler the Python handler name, as for {@link #of}
   * @param keyType the type of the keys: STRING or INT64
   * @param exampleType the type of {@code example} in the output, as for {@link #of}
   * @param inferenceType the type of {@code inference} in the output, as for {@link #of}
   * @param <KeyT> {@code String} for STRING keys, {@code Long} for INT64 keys
   * @return the transform, producing {@code KV<key, Row>}
   * @throws IllegalArgumentException if the handler name is malformed or a type is not
   *     supported
   */
  public static <KeyT> RunInference<KV<KeyT, Row>> ofKVs(
      String handler, FieldType keyType, FieldType exampleType, FieldType inferenceType) {
    return new RunInference<>(Config.of(handler, exampleType, inferenceType).keyed(keyType));
  }

  /**
   * The schema of a prediction: {@code example}, {@code inference}, and a nullable {@code
   * model_id} naming the model version that made it.
   *
   * @param exampleType the type of {@code example}
   * @param inferenceType the type of {@code inference}
   * @return the schema
   */
  public static Schema predictionSchema(FieldType exampleType, FieldType inferenceType) {
    return Schema.builder()
        .addField("example", exampleType)
        .addField("inference", inferenceType)
        .addNullableField("model_id", FieldType.STRING)
        .build();
  }

  /**
   * Passes a keyword argument to the Python handler, such as {@code model_uri} or {@code
   * max_batch_size}.
   *
   * @param name the argument's Python name
   * @param value a String, Long, Integer, Double, Float, Boolean or Row (for a dict); callables
   *     are given as qualified names, enums by member name
   * @return a new transform with the argument
   * @throws IllegalArgumentException if the name is malformed or already set, or the value's
   *     type cannot cross to Python
   */
  public RunInference<OutputT> withHandlerArg(String name, Object value) {
    return new RunInference<>(config.withHandlerArg(name, value));
  }

  /**
   * Adds a Python function applied to each element before inference, after those added before.
   *
   * @param qualifiedName {@code package.module.function} from a module the service allows (or
   *     inline Python source, if the service was started with {@code --allow-inline-source})
   * @return a new transform with the function
   * @throws IllegalArgumentException if the name is empty
   */
  public RunInference<OutputT> withPreprocess(String qualifiedName) {
    return new RunInference<>(config.withPreprocess(qualifiedName));
  }

  /**
   * Adds a Python function applied to each PredictionResult after inference, after those added
   * before; it must return a PredictionResult.
   *
   * @param qualifiedName {@code package.module.function} from a module the service allows
   * @return a new transform with the function
   * @throws IllegalArgumentException if the name is empty
   */
  public RunInference<OutputT> withPostprocess(String qualifiedName) {
    return new RunInference<>(config.withPostprocess(qualifiedName));
  }

  /**
   * Watches a file pattern for new model versions and swaps them in while the pipeline runs;
   * every prediction names the {@code model_id} that made it.
   *
   * @param filePattern the pattern to watch, such as {@code /models/*.pkl}
   * @param interval how often to look
   * @return a new transform with model refresh
   * @throws IllegalArgumentException if the pattern is empty, the interval is not positive, or
   *     refresh was already configured
   */
  public RunInference<OutputT> withModelRefresh(String filePattern, Duration interval) {
    return new RunInference<>(config.withModelRefresh(filePattern, interval));
  }

  /**
   * Uses the expansion service at {@code host:port} instead of {@link
   * #DEFAULT_EXPANSION_SERVICE}.
   *
   * @param hostAndPort the address {@code liveinference serve} printed
   * @return a new transform using that service
   * @throws IllegalArgumentException if the address is not {@code host:port}
   */
  public RunInference<OutputT> withExpansionService(String hostAndPort) {
    return new RunInference<>(config.withExpansionService(hostAndPort));
  }

  /**
   * How long to wait for the expansion service to accept a connection before failing with a
   * message that says how to start it (default 10 seconds).
   *
   * @param timeout the longest wait
   * @return a new transform with that timeout
   * @throws IllegalArgumentException if the timeout is negative
   */
  public RunInference<OutputT> withExpansionServiceTimeout(Duration timeout) {
    if (timeout == null || timeout.getMillis() < 0) {
      throw new IllegalArgumentException("the timeout must not be negative, got " + timeout);
    }
    return new RunInference<>(config.withConnectTimeoutMillis(timeout.getMillis()));
  }

  /**
   * Sends elements that fail (in preprocessing, model loading, inference or postprocessing) to
   * a dead-letter output instead of failing the pipeline.
   *
   * @return a transform whose output holds the predictions and the dead letters
   */
  public WithExceptionHandling<OutputT> withExceptionHandling() {
    return new WithExceptionHandling<>(config.withExceptionHandling());
  }

  /**
   * The keyword arguments sent to the Python transform (for inspection and tests).
   *
   * @return the arguments as a Row, one field per argument
   */
  public Row kwargs() {
    return config.kwargs();
  }

  /**
   * The expansion service this transform will call.
   *
   * @return {@code host:port}
   */
  public String expansionService() {
    return config.expansionService();
  }

  @Override
  public PCollection<OutputT> expand(PCollection<?> input) {
    PythonExternalTransform<PCollection<?>, PCollection<OutputT>> external =
        PythonExternalTransform.<PCollection<?>, PCollection<OutputT>>from(
                TRANSFORM_NAME, config.expansionService())
            .withKwargs(config.kwargs());
    PCollection<OutputT> output = applyExternal(input, external, config);
    @SuppressWarnings("unchecked")
    Coder<OutputT> coder = (Coder<OutputT>) config.predictionCoder();
    return output.setCoder(coder);
  }

  /**
   * Applies the external transform, turning an unreachable service or a refused request into an
   * error that names the cause.
   */
  static <T extends POutput> T applyExternal(
      PCollection<?> input, PythonExternalTransform<PCollection<?>, T> external, Config config) {
    checkReachable(config.expansionService(), config.connectTimeoutMillis());
    try {
      return input.apply(external);
    } catch (RuntimeException error) {
      if (!fromPython(error)) {
        throw error;
      }
      throw new IllegalArgumentException(
          "the liveinference expansion service at "
              + config.expansionService()
              + " refused RunInference("
              + config.describe()
              + "): "
              + lastLine(error),
          error);
    }
  }

  /** Whether the error carries a Python traceback, i.e. the service refused the request. */
  private static boolean fromPython(Throwable error) {
    for (Throwable cause = error; cause != null; cause = cause.getCause()) {
      String message = cause.getMessage();
      if (message != null && message.contains("Traceback (most recent call last)")) {
        return true;
      }
    }
    return false;
  }

  private static String lastLine(Throwable error) {
    for (Throwable cause = error; cause != null; cause = cause.getCause()) {
      String message = cause.getMessage();
      if (message != null && message.contains("Traceback (most recent call last)")) {
        String[] lines = message.strip().split("\n");
        for (int i = lines.length - 1; i >= 0; i--) {
          if (!lines[i].isBlank()) {
            return lines[i].strip();
          }
        }
      }
    }
    return String.valueOf(error.getMessage());
  }

  static void checkReachable(String hostAndPort, long timeoutMillis) {
    int colon = hostAndPort.lastIndexOf(':');
    String host = hostAndPort.substring(0, colon);
    int port = Integer.parseInt(hostAndPort.substring(colon + 1));
    long deadline = System.currentTimeMillis() + timeoutMillis;
    IOException last;
    do {
      try (Socket socket = new Socket()) {
        socket.connect(new InetSocketAddress(host, port), 1000);
        return;
      } catch (IOException error) {
        last = error;
      }
      try {
        Thread.sleep(200);
      } catch (InterruptedException interrupted) {
        Thread.currentThread().interrupt();
        break;
      }
    } while (System.currentTimeMillis() < deadline);
    throw new IllegalStateException(
        "cannot reach the liveinference expansion service at "
            + hostAndPort
            + " ("
            + last.getMessage()
            + "); start it with `liveinference serve --port "
            + port
            + "` (or `python -m liveinference_expansion serve`), or point"
            + " withExpansionService(\"host:port\") at a running one",
        last);
  }

  /**
   * {@link RunInference} with a dead-letter output; see {@link RunInference#withExceptionHandling}.
   *
   * @param <OutputT> {@link Row} or {@code KV<key, Row>}
   */
  public static final class WithExceptionHandling<OutputT>
      extends PTransform<PCollection<?>, InferenceResult<OutputT>> {

    private final Config config;

    private WithExceptionHandling(Config config) {
      this.config = config;
    }

    /**
     * See {@link RunInference#withHandlerArg}.
     *
     * @param name the argument's Python name
     * @param value a String, Long, Integer, Double, Float, Boolean or Row
     * @return a new transform with the argument
     * @throws IllegalArgumentException as {@link RunInference#withHandlerArg}
     */
    public WithExceptionHandling<OutputT> withHandlerArg(String name, Object value) {
      return new WithExceptionHandling<>(config.withHandlerArg(name, value));
    }

    /**
     * See {@link RunInference#withPreprocess}.
     *
     * @param qualifiedName the function's qualified name
     * @return a new transform with the function
     * @throws IllegalArgumentException if the name is empty
     */
    public WithExceptionHandling<OutputT> withPreprocess(String qualifiedName) {
      return new WithExceptionHandling<>(config.withPreprocess(qualifiedName));
    }

    /**
     * See {@link RunInference#withPostprocess}.
     *
     * @param qualifiedName the function's qualified name
     * @return a new transform with the function
     * @throws IllegalArgumentException if the name is empty
     */
    public WithExceptionHandling<OutputT> withPostprocess(String qualifiedName) {
      return new WithExceptionHandling<>(config.withPostprocess(qualifiedName));
    }

    /**
     * See {@link RunInference#withModelRefresh}.
     *
     * @param filePattern the pattern to watch
     * @param interval how often to look
     * @return a new transform with model refresh
     * @throws IllegalArgumentException as {@link RunInference#withModelRefresh}
     */
    public WithExceptionHandling<OutputT> withModelRefresh(String filePattern, Duration interval) {
      return new WithExceptionHandling<>(config.withModelRefresh(filePattern, interval));
    }

    /**
     * See {@link RunInference#withExpansionService}.
     *
     * @param hostAndPort the service's address
     * @return a new transform using that service
     * @throws IllegalArgumentException if the address is not {@code host:port}
     */
    public WithExceptionHandling<OutputT> withExpansionService(String hostAndPort) {
      return new WithExceptionHandling<>(config.withExpansionService(hostAndPort));
    }

    /**
     * The keyword arguments sent to the Python transform.
     *
     * @return the arguments as a Row
     */
    public Row kwargs() {
      return config.kwargs();
    }

    @Override
    public InferenceResult<OutputT> expand(PCollection<?> input) {
      PythonExternalTransform<PCollection<?>, PCollectionTuple> external =
          PythonExternalTransform.<PCollection<?>, PCollectionTuple>from(
                  TRANSFORM_NAME, config.expansionService())
              .withKwargs(config.kwargs());
      PCollectionTuple outputs = applyExternal(input, external, config);
      TupleTag<OutputT> predictionsTag = new TupleTag<>(PREDICTIONS);
      TupleTag<Row> deadLettersTag = new TupleTag<>(DEAD_LETTERS);
      Map<TupleTag<?>, PCollection<?>> all = outputs.getAll();
      if (!all.containsKey(predictionsTag) || !all.containsKey(deadLettersTag)) {
        throw new IllegalStateException(
            "the expansion service returned outputs "
                + all.keySet()
                + ", expected "
                + PREDICTIONS
                + " and "
                + DEAD_LETTERS
                + "; is it a liveinference service of the same version?");
      }
      @SuppressWarnings("unchecked")
      Coder<OutputT> coder = (Coder<OutputT>) config.predictionCoder();
      PCollection<OutputT> predictions = outputs.get(predictionsTag).setCoder(coder);
      PCollection<Row> deadLetters =
          outputs.get(deadLettersTag).setCoder(RowCoder.of(DEAD_LETTER_SCHEMA));
      return new InferenceResult<>(
          input.getPipeline(), predictionsTag, predictions, deadLettersTag, deadLetters);
    }
  }
}
