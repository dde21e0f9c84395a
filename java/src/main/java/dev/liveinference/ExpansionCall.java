package dev.liveinference;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.util.UUID;
import org.apache.beam.model.pipeline.v1.ExternalTransforms.ExternalConfigurationPayload;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.coders.ByteArrayCoder;
import org.apache.beam.sdk.coders.Coder;
import org.apache.beam.sdk.coders.CoderException;
import org.apache.beam.sdk.coders.RowCoder;
import org.apache.beam.sdk.coders.StringUtf8Coder;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.schemas.Schema.TypeName;
import org.apache.beam.sdk.schemas.SchemaTranslation;
import org.apache.beam.sdk.util.CoderUtils;
import org.apache.beam.sdk.util.construction.External;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.PCollectionTuple;
import org.apache.beam.sdk.values.PInput;
import org.apache.beam.sdk.values.Row;
import org.apache.beam.sdk.values.TupleTag;
import org.apache.beam.vendor.grpc.v1p60p1.com.google.protobuf.ByteString;
import org.checkerframework.checker.nullness.qual.Nullable;

/**
 * One call to the liveinference expansion service: checks that it is reachable, sends the
 * {@link Config} as a request for the Python {@code ConfiguredRunInference} (over TLS when the
 * config says so), and turns a refusal into an error that carries the service's message.
 */
final class ExpansionCall {

  /** Beam's URN for a Python transform named by its qualified name. */
  static final String PYTHON_NAMED_URN = "beam:transforms:python:fully_qualified_named";

  /** The input tag of the examples, when model updates come as a second input. */
  static final String EXAMPLES = "examples";

  /** The input tag of the model update messages. */
  static final String MODEL_UPDATES = "model_updates";

  private static final String PATH_FIELD = "model_path";
  private static final String NAME_FIELD = "model_name";

  /** How Beam's {@code External} begins the message of a response that carries an error. */
  private static final String REFUSED = "expansion service error:";

  private ExpansionCall() {}

  /**
   * Expands the Python transform on {@code input}, and on {@code updates} when given (then the
   * two inputs are tagged {@value #EXAMPLES} and {@value #MODEL_UPDATES}).
   *
   * @return every output of the expanded transform, by the tag Python gave it
   * @throws IllegalStateException if the service cannot be reached within the connect timeout,
   *     or (without an address) cannot be started
   * @throws IllegalArgumentException if the service refused the request (with its message),
   *     TLS was asked for a service the transform starts itself, or the updates are not update
   *     messages of this pipeline
   */
  static PCollectionTuple expand(
      PCollection<?> input, @Nullable PCollection<?> updates, Config config) {
    CrossingBatch batch = config.crossingBatch();
    PCollection<?> examples = batch == null ? input : batch.group(input);
    PInput inputs = examples;
    if (updates != null) {
      checkUpdates(input, updates);
      inputs =
          PCollectionTuple.of(new TupleTag<>(EXAMPLES), examples)
              .and(new TupleTag<>(MODEL_UPDATES), updates);
    }
    TlsFiles tls = config.tls();
    String address = config.expansionService();
    if (address == null) {
      if (tls != null) {
        throw new IllegalArgumentException(
            "withExpansionServiceTls needs withExpansionService(\"host:port\"): a service the"
                + " transform starts itself listens on loopback, without TLS");
      }
      address = LocalExpansionService.addressFor(config.python(), config.serviceArgs());
    }
    checkReachable(address, config.connectTimeout().getMillis());
    byte[] payload = payload(config.kwargs());
    if (tls == null) {
      return apply(
          inputs,
          External.<PInput, Row>of(PYTHON_NAMED_URN, payload, address).withMultiOutputs(),
          config,
          address);
    }
    try (TlsExpansion expansion = TlsExpansion.open(tls, address)) {
      return apply(
          inputs,
          External.<PInput, Row>of(
                  PYTHON_NAMED_URN, payload, expansion.artifactEndpoint(), expansion)
              .withMultiOutputs(),
          config,
          address);
    }
  }

  /** The payload Beam's Python expansion service reads: the transform's name and kwargs. */
  static byte[] payload(Row kwargs) {
    Schema schema =
        Schema.builder()
            .addStringField("constructor")
            .addRowField("kwargs", kwargs.getSchema())
            .build();
    schema.setUUID(UUID.randomUUID());
    Row row = Row.withSchema(schema).addValues(RunInference.TRANSFORM_NAME, kwargs).build();
    try {
      return ExternalConfigurationPayload.newBuilder()
          .setSchema(SchemaTranslation.schemaToProto(schema, true))
          .setPayload(ByteString.copyFrom(CoderUtils.encodeToByteArray(RowCoder.of(schema), row)))
          .build()
          .toByteArray();
    } catch (CoderException error) {
      throw new IllegalArgumentException(
          "the request " + kwargs + " cannot be encoded for Python: " + error.getMessage(), error);
    }
  }

  /**
   * Refuses update messages Python cannot read: they must be Strings, byte[]s, or Rows with a
   * STRING {@code model_path} (and a STRING {@code model_name}, if any), of the input's
   * pipeline.
   */
  static void checkUpdates(PCollection<?> input, PCollection<?> updates) {
    if (updates.getPipeline() != input.getPipeline()) {
      throw new IllegalArgumentException(
          "withModelUpdates: " + updates + " belongs to another pipeline than the input");
    }
    Coder<?> coder = updates.getCoder();
    if (coder instanceof StringUtf8Coder || coder instanceof ByteArrayCoder) {
      return;
    }
    Schema schema = updates.hasSchema() ? updates.getSchema() : null;
    if (schema != null
        && schema.hasField(PATH_FIELD)
        && schema.getField(PATH_FIELD).getType().getTypeName() == TypeName.STRING
        && (!schema.hasField(NAME_FIELD)
            || schema.getField(NAME_FIELD).getType().getTypeName() == TypeName.STRING)) {
      return;
    }
    throw new IllegalArgumentException(
        "withModelUpdates: "
            + updates
            + " holds elements with coder "
            + coder
            + (schema == null ? "" : " and schema " + schema)
            + "; give JSON Strings (or UTF-8 byte[]s) such as {\"model_path\": \"/models/v2.pkl\"}"
            + ", or Rows with a STRING field model_path and optionally a STRING field model_name");
  }

  private static PCollectionTuple apply(
      PInput input,
      External.MultiOutputExpandableTransform<PInput> external,
      Config config,
      String address) {
    try {
      return Pipeline.applyTransform("ConfiguredRunInference", input, external);
    } catch (RuntimeException error) {
      String refusal = refusal(error);
      if (refusal == null) {
        throw error;
      }
      throw new IllegalArgumentException(
          "the liveinference expansion service at "
              + address
              + " refused RunInference("
              + config.describe()
              + "): "
              + refusal,
          error);
    }
  }

  /**
   * The service's reason when {@code error} is its refusal (Beam's {@code External} reports the
   * response's error as {@value #REFUSED}...): the last line of a Python traceback, or the
   * whole reason; null for any other error.
   */
  private static @Nullable String refusal(Throwable error) {
    for (Throwable cause = error; cause != null; cause = cause.getCause()) {
      String message = cause.getMessage();
      if (message == null || !message.contains(REFUSED)) {
        continue;
      }
      String reason = message.substring(message.indexOf(REFUSED) + REFUSED.length()).strip();
      if (!reason.contains("Traceback (most recent call last)")) {
        return reason;
      }
      String[] lines = reason.split("\n");
      for (int i = lines.length - 1; i >= 0; i--) {
        if (!lines[i].isBlank()) {
          return lines[i].strip();
        }
      }
    }
    return null;
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
}
