package dev.liveinference;

import java.util.Arrays;
import java.util.List;
import org.apache.beam.sdk.schemas.Schema.FieldType;
import org.apache.beam.sdk.transforms.PTransform;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.POutput;
import org.apache.beam.sdk.values.Row;
import org.checkerframework.checker.nullness.qual.Nullable;
import org.joda.time.Duration;

/**
 * The builder methods shared by {@link RunInference} and {@link
 * RunInference.WithExceptionHandling}: each returns a new transform of the same type, holding a
 * changed copy of one immutable {@link Config}; a transform is never changed.
 *
 * <p>Use it through {@link RunInference#of} or {@link RunInference#ofKVs}; it cannot be
 * subclassed outside this package.
 *
 * @param <ResultT> what the transform produces: a {@code PCollection} of predictions, or an
 *     {@link InferenceResult} with predictions and dead letters
 * @param <SelfT> the concrete transform type, which every {@code with*} method returns
 */
public abstract class AbstractRunInference<
        ResultT extends POutput, SelfT extends AbstractRunInference<ResultT, SelfT>>
    extends PTransform<PCollection<?>, ResultT> {

  private static final long serialVersionUID = 1L;

  /** Everything the transform was configured with; never changed. */
  final Config config;

  /**
   * The model update messages of {@link #withModelUpdates}, or null; a second input of the
   * expansion, not part of the serialized configuration.
   */
  final transient @Nullable PCollection<?> modelUpdates;

  AbstractRunInference(Config config, @Nullable PCollection<?> modelUpdates) {
    this.config = config;
    this.modelUpdates = modelUpdates;
  }

  /** A transform of the same type as this one, holding {@code changed} and {@code updates}. */
  abstract SelfT with(Config changed, @Nullable PCollection<?> updates);

  private SelfT with(Config changed) {
    return with(changed, modelUpdates);
  }

  /**
   * Passes a keyword argument to the Python handler, such as {@code model_uri} or {@code
   * max_batch_size}.
   *
   * @param name the argument's Python name
   * @param value a String, Long, Integer, Double, Float, Boolean or Row (for a dict); callables
   *     are given as qualified names, enums by member name; numbers must be finite
   * @return a new transform with the argument
   * @throws IllegalArgumentException if the name is malformed or already set, the value's type
   *     cannot cross to Python, or the value is NaN or infinite
   */
  public SelfT withHandlerArg(String name, Object value) {
    return with(config.withHandlerArg(name, value));
  }

  /**
   * Adds a Python function applied to each element before inference, after those added before.
   *
   * @param qualifiedName {@code package.module.function} from a module the service allows (or
   *     inline Python source, if the service was started with {@code --allow-inline-source})
   * @return a new transform with the function
   * @throws IllegalArgumentException if the name is null or blank
   */
  public SelfT withPreprocess(String qualifiedName) {
    return with(config.withPreprocess(qualifiedName));
  }

  /**
   * Adds a Python function applied to each PredictionResult after inference, after those added
   * before; it must return a PredictionResult.
   *
   * @param qualifiedName {@code package.module.function} from a module the service allows
   * @return a new transform with the function
   * @throws IllegalArgumentException if the name is null or blank
   */
  public SelfT withPostprocess(String qualifiedName) {
    return with(config.withPostprocess(qualifiedName));
  }

  /**
   * Watches a file pattern for new model versions and swaps them in while the pipeline runs;
   * every prediction names the {@code model_id} that made it.
   *
   * @param filePattern the pattern to watch, such as {@code /models/*.pkl}
   * @param interval how often to look: a positive duration
   * @return a new transform with model refresh
   * @throws IllegalArgumentException if the pattern is null or blank, the interval is null, zero
   *     or negative, or refresh was already configured
   */
  public SelfT withModelRefresh(String filePattern, Duration interval) {
    return with(config.withModelRefresh(filePattern, interval));
  }

  /**
   * Swaps models on events: each message of {@code updates}, from any Java source (Kafka,
   * Pub/Sub, files, {@code Create}), names the model to serve from then on. Python loads it off
   * the inference path, validates it (see {@link #withModelValidation}) and swaps it in between
   * batches; predictions after the swap carry its {@code model_id}. A model that fails to load
   * or validate never serves: the last good one keeps serving, and with {@link
   * RunInference#withExceptionHandling()} the rejection is a dead letter at stage {@code
   * load_model} or {@code validate}, and a malformed message one at stage {@code model_update}
   * (without it, a malformed message fails the pipeline).
   *
   * @param updates JSON strings such as {@code {"model_path": "/models/v2.pkl", "model_name":
   *     "v2"}} (or a plain path), as {@code String}s or UTF-8 {@code byte[]}s; or Rows with a
   *     STRING field {@code model_path} and optionally a STRING field {@code model_name}; in the
   *     same pipeline as the input
   * @return a new transform that takes model updates from {@code updates}
   * @throws IllegalArgumentException if {@code updates} is null, updates were already given, or
   *     the transform serves a model per key; its element type is checked when the transform is
   *     applied
   */
  public SelfT withModelUpdates(PCollection<?> updates) {
    if (updates == null || modelUpdates != null || config.handler() == null) {
      throw new IllegalArgumentException(
          "withModelUpdates("
              + updates
              + "): give one PCollection of update messages, once, to a transform with one"
              + " handler (a model per key takes no update messages from Java yet"
              + (modelUpdates != null ? "; updates are already " + modelUpdates : "")
              + ")");
    }
    return with(config, updates);
  }

  /**
   * Makes every new model version pass canary examples before it may serve: the candidate must
   * predict each of them (after the transform's preprocess functions) without raising. A
   * version that fails keeps the last good model serving and, with exception handling, is a
   * dead letter at stage {@code validate}.
   *
   * @param canaryExamples input elements, of the input's type: String, Long, Integer, Double,
   *     Float, Boolean, byte[], Row, or a List of one of those; {@code KV<key, example>} for
   *     {@link RunInference#ofKVs}; numbers must be finite
   * @return a new transform with model validation
   * @throws IllegalArgumentException if there is no example, one is null, of a type that cannot
   *     cross to Python or other than the first one's, holds a NaN or infinite number, or
   *     validation was already set
   */
  public SelfT withModelValidation(List<?> canaryExamples) {
    return with(config.withModelValidation(canaryExamples));
  }

  /**
   * Where the Python side relays model updates to its workers: a folder every worker can read
   * and write. Without it, the pipeline's {@code --tempLocation} or a private local folder,
   * which suits runners whose workers share one machine (Prism, Flink in local mode).
   *
   * @param folder a folder on any filesystem the Python workers read, such as {@code
   *     gs://bucket/liveinference}
   * @return a new transform relaying updates through {@code folder}
   * @throws IllegalArgumentException if the folder is null or blank
   */
  public SelfT withRefreshChannel(String folder) {
    return with(config.withRefreshChannel(folder));
  }

  /**
   * Sends rows to Python in batches rather than one by one: the rows of each bundle are
   * grouped (per window) into one cross-language element of at most {@code maxRows} rows,
   * Python scores each batch with one model call and returns its predictions as one element,
   * and the transform flattens them again. The output is the same as without batching: one
   * prediction per row, each with its {@code model_id}, and one dead letter per failed row. A
   * batch leaves when full, when its first row has waited {@code maxWait} (checked as rows
   * arrive), and when the bundle ends. Preprocessed rows must be numeric arrays of one length
   * (rows of another length are dead-lettered by the model); no postprocess functions.
   *
   * @param maxRows the most rows in one batch, at least 1
   * @param maxWait how long the first row of a batch may wait for more: a positive duration
   * @return a new transform that crosses in batches
   * @throws IllegalArgumentException if {@code maxRows} is below 1, {@code maxWait} is null,
   *     zero or negative, or the transform takes KVs ({@link RunInference#ofKVs})
   */
  public SelfT withCrossingBatch(int maxRows, Duration maxWait) {
    return with(config.withCrossingBatch(CrossingBatch.of(maxRows, maxWait)));
  }

  /**
   * Uses the expansion service at {@code host:port}. Without it, the transform starts {@code
   * liveinference serve} itself (see {@link #withPython}).
   *
   * @param hostAndPort the address {@code liveinference serve} printed
   * @return a new transform using that service
   * @throws IllegalArgumentException if the address is not {@code host:port} with a port from 1
   *     to 65535
   */
  public SelfT withExpansionService(String hostAndPort) {
    return with(config.withExpansionService(hostAndPort));
  }

  /**
   * The Python that runs {@code liveinference serve} when no expansion service address is
   * given: the transform then starts the service on a free loopback port when it is applied,
   * shares it with every other transform of this JVM that asks for the same Python and
   * arguments, and stops it when the JVM exits. Without this method the Python is the system
   * property {@code liveinference.python}, else the environment variable {@code
   * LIVEINFERENCE_PYTHON}, else {@code python3} on the PATH.
   *
   * @param executable the path of a Python that has liveinference installed
   * @return a new transform that starts its service with that Python
   * @throws IllegalArgumentException if the path is null or blank
   */
  public SelfT withPython(String executable) {
    return with(config.withPython(executable));
  }

  /**
   * Adds arguments to the {@code liveinference serve} command of a service the transform
   * starts itself, such as {@code "--allow-module", "mypkg.features"}, or {@code
   * "--process-workers"} for Flink. Ignored with {@link #withExpansionService}.
   *
   * @param args arguments of {@code liveinference serve}, after those added before
   * @return a new transform with the arguments
   * @throws IllegalArgumentException if an argument is null or blank
   */
  public SelfT withServiceArgs(String... args) {
    return with(config.withServiceArgs(Arrays.asList(args)));
  }

  /**
   * With a model per key ({@link RunInference#ofKVs(FieldType, FieldType, FieldType, List)}),
   * the most models each Python worker keeps loaded; the least recently used
   * goes first.
   *
   * @param maxModels at least 1
   * @return a new transform with the bound
   * @throws IllegalArgumentException if {@code maxModels} is below 1, or the transform does not
   *     serve a model per key
   */
  public SelfT withMaxModelsPerWorker(int maxModels) {
    return with(config.withMaxModelsPerWorker(maxModels));
  }

  /**
   * How long to wait for the expansion service to accept a connection before failing with a
   * message that says how to start it (default 10 seconds).
   *
   * @param timeout the longest wait: a positive duration
   * @return a new transform with that timeout
   * @throws IllegalArgumentException if the timeout is null, zero or negative
   */
  public SelfT withExpansionServiceTimeout(Duration timeout) {
    return with(config.withConnectTimeout(timeout));
  }

  /**
   * Reaches the expansion service over TLS, trusting only the given CA: for a service started
   * with {@code liveinference serve --tls-cert C --tls-key K}. The service's certificate must
   * name the host given to {@link #withExpansionService}.
   *
   * @param caCertFile a PEM file with the certificate(s) of the CA that signed the service's
   *     certificate
   * @return a new transform that expands over TLS
   * @throws IllegalArgumentException if the file is missing or holds no PEM certificate
   */
  public SelfT withExpansionServiceTls(String caCertFile) {
    return with(config.withTls(TlsFiles.of(caCertFile, null, null)));
  }

  /**
   * Reaches the expansion service over mutual TLS: as {@link #withExpansionServiceTls(String)},
   * and presents a client certificate, for a service started with {@code --tls-client-ca}.
   *
   * @param caCertFile a PEM file with the certificate(s) of the CA that signed the service's
   *     certificate
   * @param clientCertFile a PEM file with this client's certificate chain
   * @param clientKeyFile a PEM file with this client's unencrypted PKCS#8 private key ({@code
   *     openssl pkcs8 -topk8 -nocrypt} converts other formats)
   * @return a new transform that expands over mutual TLS
   * @throws IllegalArgumentException if a file is missing or does not hold what it should
   */
  public SelfT withExpansionServiceTls(
      String caCertFile, String clientCertFile, String clientKeyFile) {
    if (clientCertFile == null || clientKeyFile == null) {
      throw new IllegalArgumentException(
          "withExpansionServiceTls: mutual TLS needs both clientCertFile and clientKeyFile, got "
              + Config.quote(clientCertFile)
              + " and "
              + Config.quote(clientKeyFile)
              + "; for server-only TLS call withExpansionServiceTls(caCertFile)");
    }
    return with(config.withTls(TlsFiles.of(caCertFile, clientCertFile, clientKeyFile)));
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
   * @return {@code host:port}, or null when the transform starts its own service
   */
  public @Nullable String expansionService() {
    return config.expansionService();
  }
}
