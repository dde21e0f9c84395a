package dev.liveinference;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.util.UUID;
import org.apache.beam.model.pipeline.v1.ExternalTransforms.ExternalConfigurationPayload;
import org.apache.beam.sdk.coders.CoderException;
import org.apache.beam.sdk.coders.RowCoder;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.schemas.SchemaTranslation;
import org.apache.beam.sdk.util.CoderUtils;
import org.apache.beam.sdk.util.construction.External;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.PCollectionTuple;
import org.apache.beam.sdk.values.Row;
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

  /** How Beam's {@code External} begins the message of a response that carries an error. */
  private static final String REFUSED = "expansion service error:";

  private ExpansionCall() {}

  /**
   * Expands the Python transform on {@code input}.
   *
   * @return every output of the expanded transform, by the tag Python gave it
   * @throws IllegalStateException if the service cannot be reached within the connect timeout,
   *     or (without an address) cannot be started
   * @throws IllegalArgumentException if the service refused the request (with its message), or
   *     TLS was asked for a service the transform starts itself
   */
  static PCollectionTuple expand(PCollection<?> input, Config config) {
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
          input,
          External.<PCollection<?>, Row>of(PYTHON_NAMED_URN, payload, address).withMultiOutputs(),
          config,
          address);
    }
    try (TlsExpansion expansion = TlsExpansion.open(tls, address)) {
      return apply(
          input,
          External.<PCollection<?>, Row>of(
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

  private static PCollectionTuple apply(
      PCollection<?> input,
      External.MultiOutputExpandableTransform<PCollection<?>> external,
      Config config,
      String address) {
    try {
      return input.apply("ConfiguredRunInference", external);
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
