package dev.liveinference;

import com.google.auto.value.AutoValue;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.regex.Pattern;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.schemas.Schema.FieldType;
import org.apache.beam.sdk.schemas.Schema.TypeName;
import org.apache.beam.sdk.values.Row;
import org.checkerframework.checker.nullness.qual.Nullable;
import org.joda.time.Duration;

/**
 * The immutable configuration behind {@link RunInference}: each {@code with*} method checks its
 * value and returns a copy made through {@link #toBuilder()}; {@link #kwargs()} turns it into
 * the keyword arguments of the Python {@code ConfiguredRunInference}.
 */
@AutoValue
abstract class Config implements Serializable {

  private static final long serialVersionUID = 1L;
  private static final Pattern HANDLER = Pattern.compile("[A-Za-z_][A-Za-z0-9_.]*");
  private static final Pattern HOST_PORT =
      Pattern.compile("(\\[[0-9a-fA-F:.]+\\]|[^:\\s]+):(\\d{1,5})");
  private static final Duration DEFAULT_CONNECT_TIMEOUT = Duration.standardSeconds(10);

  /** The handler name; null for a model per key ({@link #keyModels()}). */
  abstract @Nullable String handler();

  abstract FieldType exampleType();

  abstract FieldType inferenceType();

  abstract @Nullable FieldType keyType();

  abstract HandlerArgs handlerArgs();

  abstract List<KeyModelMapping> keyModels();

  abstract @Nullable Integer maxModelsPerWorker();

  abstract List<String> preprocess();

  abstract List<String> postprocess();

  abstract @Nullable String watchPattern();

  abstract @Nullable Duration refreshInterval();

  abstract @Nullable Canaries canaries();

  abstract @Nullable String refreshChannel();

  abstract @Nullable CrossingBatch crossingBatch();

  abstract boolean exceptionHandling();

  /** The service's host:port; null to start {@code liveinference serve} from {@link #python}. */
  abstract @Nullable String expansionService();

  /** The Python that runs a started service; null: system property, environment, python3. */
  abstract @Nullable String python();

  abstract List<String> serviceArgs();

  abstract Duration connectTimeout();

  abstract @Nullable TlsFiles tls();

  abstract Builder toBuilder();

  /** The one way to make a changed copy; only {@link Config}'s own methods use it. */
  @AutoValue.Builder
  abstract static class Builder {
    abstract Builder setHandler(@Nullable String handler);

    abstract Builder setExampleType(FieldType exampleType);

    abstract Builder setInferenceType(FieldType inferenceType);

    abstract Builder setKeyType(@Nullable FieldType keyType);

    abstract Builder setHandlerArgs(HandlerArgs handlerArgs);

    abstract Builder setKeyModels(List<KeyModelMapping> keyModels);

    abstract Builder setMaxModelsPerWorker(@Nullable Integer maxModelsPerWorker);

    abstract Builder setPreprocess(List<String> preprocess);

    abstract Builder setPostprocess(List<String> postprocess);

    abstract Builder setWatchPattern(@Nullable String watchPattern);

    abstract Builder setRefreshInterval(@Nullable Duration refreshInterval);

    abstract Builder setCanaries(@Nullable Canaries canaries);

    abstract Builder setRefreshChannel(@Nullable String refreshChannel);

    abstract Builder setCrossingBatch(@Nullable CrossingBatch crossingBatch);

    abstract Builder setExceptionHandling(boolean exceptionHandling);

    abstract Builder setExpansionService(@Nullable String expansionService);

    abstract Builder setPython(@Nullable String python);

    abstract Builder setServiceArgs(List<String> serviceArgs);

    abstract Builder setConnectTimeout(Duration connectTimeout);

    abstract Builder setTls(@Nullable TlsFiles tls);

    abstract Config build();
  }

  static Config of(String handler, FieldType exampleType, FieldType inferenceType) {
    if (handler == null || !HANDLER.matcher(handler).matches()) {
      throw new IllegalArgumentException(
          "handler must be the name of a handler the expansion service knows, such as"
              + " \"sklearn_numpy\" (a Python identifier, dots allowed), got "
              + quote(handler));
    }
    return start(exampleType, inferenceType).setHandler(handler).build();
  }

  static Config ofKeyModels(
      FieldType keyType,
      FieldType exampleType,
      FieldType inferenceType,
      List<KeyModelMapping> keyModels) {
    Config config =
        start(exampleType, inferenceType).setKeyModels(List.of()).build().keyed(keyType);
    return config.toBuilder().setKeyModels(KeyModelMapping.checked(keyModels, keyType)).build();
  }

  private static Builder start(FieldType exampleType, FieldType inferenceType) {
    PythonTypes.name(exampleType, "exampleType");
    PythonTypes.name(inferenceType, "inferenceType");
    return new AutoValue_Config.Builder()
        .setExampleType(exampleType)
        .setInferenceType(inferenceType)
        .setHandlerArgs(HandlerArgs.NONE)
        .setKeyModels(List.of())
        .setPreprocess(List.of())
        .setPostprocess(List.of())
        .setExceptionHandling(false)
        .setServiceArgs(List.of())
        .setConnectTimeout(DEFAULT_CONNECT_TIMEOUT);
  }

  Config keyed(FieldType keyType) {
    if (keyType == null
        || !(keyType.getTypeName() == TypeName.STRING || keyType.getTypeName() == TypeName.INT64)) {
      throw new IllegalArgumentException(
          "keyType must be FieldType.STRING or FieldType.INT64, got " + keyType);
    }
    return toBuilder().setKeyType(keyType).build();
  }

  Config withHandlerArg(String name, Object value) {
    if (handler() == null) {
      throw new IllegalArgumentException(
          "withHandlerArg(\""
              + name
              + "\", ...): this transform serves a model per key; give each handler's arguments"
              + " to its KeyModelMapping with KeyModelMapping.withHandlerArg");
    }
    return toBuilder().setHandlerArgs(handlerArgs().with(name, value)).build();
  }

  Config withMaxModelsPerWorker(int maxModels) {
    if (keyModels().isEmpty() || maxModels < 1) {
      throw new IllegalArgumentException(
          "withMaxModelsPerWorker("
              + maxModels
              + "): give at least 1, on a transform made by ofKVs with KeyModelMappings");
    }
    return toBuilder().setMaxModelsPerWorker(maxModels).build();
  }

  Config withPreprocess(String qualifiedName) {
    return toBuilder()
        .setPreprocess(appended(preprocess(), checkFunction(qualifiedName, "withPreprocess")))
        .build();
  }

  Config withPostprocess(String qualifiedName) {
    return toBuilder()
        .setPostprocess(appended(postprocess(), checkFunction(qualifiedName, "withPostprocess")))
        .build();
  }

  Config withModelRefresh(String filePattern, Duration interval) {
    if (watchPattern() != null) {
      throw new IllegalArgumentException(
          "model refresh is already set to watch " + quote(watchPattern()) + "; set it once");
    }
    if (filePattern == null || filePattern.isBlank()) {
      throw new IllegalArgumentException(
          "withModelRefresh needs a file pattern such as \"/models/*.pkl\", got "
              + quote(filePattern));
    }
    checkPositive(interval, "interval", "withModelRefresh");
    return toBuilder().setWatchPattern(filePattern).setRefreshInterval(interval).build();
  }

  Config withModelValidation(List<?> canaryExamples) {
    if (canaries() != null) {
      throw new IllegalArgumentException(
          "withModelValidation: the canary examples are already set to " + canaries());
    }
    return toBuilder().setCanaries(Canaries.of(canaryExamples, keyType())).build();
  }

  Config withRefreshChannel(String folder) {
    if (folder == null || folder.isBlank()) {
      throw new IllegalArgumentException(
          "withRefreshChannel needs a folder every worker can read and write, such as"
              + " \"gs://bucket/liveinference\", got "
              + quote(folder));
    }
    return toBuilder().setRefreshChannel(folder).build();
  }

  Config withCrossingBatch(CrossingBatch batch) {
    if (keyType() != null) {
      throw new IllegalArgumentException(
          "withCrossingBatch groups unkeyed examples (RunInference.of); ofKVs sends one row"
              + " per element");
    }
    return toBuilder().setCrossingBatch(batch).build();
  }

  Config withExceptionHandling() {
    return toBuilder().setExceptionHandling(true).build();
  }

  Config withExpansionService(String hostAndPort) {
    if (hostAndPort == null || !HOST_PORT.matcher(hostAndPort).matches()) {
      throw new IllegalArgumentException(
          "the expansion service must be given as host:port, such as \"localhost:8097\", got "
              + quote(hostAndPort));
    }
    int port = Integer.parseInt(hostAndPort.substring(hostAndPort.lastIndexOf(':') + 1));
    if (port < 1 || port > 65535) {
      throw new IllegalArgumentException(
          "the expansion service port must be between 1 and 65535, got " + port);
    }
    return toBuilder().setExpansionService(hostAndPort).build();
  }

  Config withPython(String executable) {
    if (executable == null || executable.isBlank()) {
      throw new IllegalArgumentException(
          "withPython needs the path of a Python that has liveinference installed, got "
              + quote(executable));
    }
    return toBuilder().setPython(executable).build();
  }

  Config withServiceArgs(List<String> args) {
    for (String arg : args) {
      if (arg == null || arg.isBlank()) {
        throw new IllegalArgumentException(
            "withServiceArgs: every argument of liveinference serve must be non-blank, got "
                + args);
      }
    }
    List<String> all = new ArrayList<>(serviceArgs());
    all.addAll(args);
    return toBuilder().setServiceArgs(Collections.unmodifiableList(all)).build();
  }

  Config withConnectTimeout(Duration timeout) {
    checkPositive(timeout, "timeout", "withExpansionServiceTimeout");
    return toBuilder().setConnectTimeout(timeout).build();
  }

  Config withTls(TlsFiles tls) {
    return toBuilder().setTls(tls).build();
  }

  /** A short description for error messages. */
  String describe() {
    if (handler() == null) {
      return "key_models=" + keyModels();
    }
    return "handler=" + handler() + ", handler_args=" + handlerArgs();
  }

  /** The keyword arguments of {@code ConfiguredRunInference}, as a Row. */
  Row kwargs() {
    Schema.Builder schema = Schema.builder();
    List<Object> values = new ArrayList<>();
    if (handler() != null) {
      schema.addStringField("handler");
      values.add(handler());
    }
    if (!handlerArgs().isEmpty()) {
      Row args = handlerArgs().toRow();
      schema.addRowField("handler_args", args.getSchema());
      values.add(args);
    }
    schema.addStringField("example_type").addStringField("inference_type");
    values.add(PythonTypes.name(exampleType(), "exampleType"));
    values.add(PythonTypes.name(inferenceType(), "inferenceType"));
    if (!preprocess().isEmpty()) {
      schema.addArrayField("preprocess", FieldType.STRING);
      values.add(preprocess());
    }
    if (!postprocess().isEmpty()) {
      schema.addArrayField("postprocess", FieldType.STRING);
      values.add(postprocess());
    }
    Duration interval = refreshInterval();
    if (watchPattern() != null && interval != null) {
      schema.addStringField("watch_model_pattern").addDoubleField("interval");
      values.add(watchPattern());
      values.add(interval.getMillis() / 1000.0);
    }
    Canaries canaries = canaries();
    if (canaries != null) {
      schema.addField("canary_examples", canaries.fieldType());
      values.add(canaries.values());
    }
    if (refreshChannel() != null) {
      schema.addStringField("refresh_channel");
      values.add(refreshChannel());
    }
    schema.addBooleanField("exception_handling");
    values.add(exceptionHandling());
    if (crossingBatch() != null) {
      schema.addBooleanField("crossing_batch");
      values.add(true);
    }
    FieldType keyType = keyType();
    if (keyType != null) {
      schema.addBooleanField("keyed").addStringField("key_type");
      values.add(true);
      values.add(PythonTypes.name(keyType, "keyType"));
      if (!keyModels().isEmpty()) {
        Row mappings = KeyModelMapping.toRow(keyModels(), keyType);
        schema.addRowField("key_models", mappings.getSchema());
        values.add(mappings);
      }
    }
    Integer maxModels = maxModelsPerWorker();
    if (maxModels != null) {
      schema.addInt64Field("max_models_per_worker_hint");
      values.add(maxModels.longValue());
    }
    return Row.withSchema(schema.build()).addValues(values).build();
  }

  /** Refuses a missing, zero or negative duration, naming the argument and the method. */
  private static void checkPositive(@Nullable Duration value, String argument, String method) {
    if (value == null || value.getMillis() <= 0) {
      throw new IllegalArgumentException(String.format(
          "%s: %s must be a positive duration (at least one millisecond), got %s",
          method, argument, value));
    }
  }

  private static List<String> appended(List<String> functions, String function) {
    List<String> all = new ArrayList<>(functions);
    all.add(function);
    return Collections.unmodifiableList(all);
  }

  private static String checkFunction(String qualifiedName, String method) {
    if (qualifiedName == null || qualifiedName.isBlank()) {
      throw new IllegalArgumentException(
          method
              + " needs a qualified Python function name such as"
              + " \"liveinference_expansion.functions.parse_csv_floats\", got "
              + quote(qualifiedName));
    }
    return qualifiedName;
  }

  static String quote(@Nullable String text) {
    return text == null ? "null" : "\"" + text + "\"";
  }
}
