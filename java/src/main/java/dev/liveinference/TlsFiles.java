package dev.liveinference;

import com.google.auto.value.AutoValue;
import java.io.File;
import java.io.IOException;
import java.io.Serializable;
import org.apache.beam.sdk.util.construction.DefaultExpansionServiceClientFactory;
import org.apache.beam.sdk.util.construction.ExpansionServiceClientFactory;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.ChannelCredentials;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.TlsChannelCredentials;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.netty.NettyChannelBuilder;
import org.checkerframework.checker.nullness.qual.Nullable;

/**
 * The PEM files of a TLS connection to the expansion service (a CA certificate, and optionally
 * a client certificate and key for mutual TLS), and the expansion-service client that uses them
 * through Beam's vendored gRPC. Beam's own {@code External} only speaks plaintext.
 */
@AutoValue
abstract class TlsFiles implements Serializable {

  private static final long serialVersionUID = 1L;

  abstract String caCert();

  abstract @Nullable String clientCert();

  abstract @Nullable String clientKey();

  /**
   * The files, checked by reading them once.
   *
   * @throws IllegalArgumentException if a file is missing, unreadable or not what it should be
   */
  static TlsFiles of(
      @Nullable String caCert, @Nullable String clientCert, @Nullable String clientKey) {
    checkFile(caCert, "caCertFile");
    if (clientCert != null || clientKey != null) {
      checkFile(clientCert, "clientCertFile");
      checkFile(clientKey, "clientKeyFile");
    }
    TlsFiles files = new AutoValue_TlsFiles(caCert, clientCert, clientKey);
    files.credentials();
    return files;
  }

  /** gRPC channel credentials that trust only {@link #caCert()} and present the client key. */
  ChannelCredentials credentials() {
    TlsChannelCredentials.Builder builder = TlsChannelCredentials.newBuilder();
    try {
      builder.trustManager(new File(caCert()));
    } catch (IOException | RuntimeException error) {
      throw unusable("caCertFile", caCert(), "a PEM CA certificate", error);
    }
    String cert = clientCert();
    String key = clientKey();
    if (cert != null && key != null) {
      try {
        builder.keyManager(new File(cert), new File(key));
      } catch (IOException | RuntimeException error) {
        throw unusable(
            "clientCertFile/clientKeyFile",
            cert + ", " + key,
            "a PEM certificate chain and its unencrypted PKCS#8 PEM key",
            error);
      }
    }
    return builder.build();
  }

  /**
   * A client factory for Beam's {@code External} that opens TLS channels with these files; the
   * caller closes it after the expansion.
   */
  ExpansionServiceClientFactory clientFactory() {
    ChannelCredentials credentials = credentials();
    return DefaultExpansionServiceClientFactory.create(
        endpoint ->
            NettyChannelBuilder.forTarget(endpoint.getUrl(), credentials)
                .maxInboundMessageSize(Integer.MAX_VALUE)
                .build());
  }

  private static void checkFile(@Nullable String path, String argument) {
    if (path == null || path.isBlank()) {
      throw new IllegalArgumentException(
          "withExpansionServiceTls: " + argument + " must name a PEM file, got "
              + Config.quote(path));
    }
    File file = new File(path);
    if (!file.isFile() || !file.canRead()) {
      throw new IllegalArgumentException(
          "withExpansionServiceTls: "
              + argument
              + " "
              + Config.quote(path)
              + " is not a readable file; give the path of a PEM file");
    }
  }

  private static IllegalArgumentException unusable(
      String argument, String paths, String expected, Exception error) {
    return new IllegalArgumentException(
        "withExpansionServiceTls: "
            + argument
            + " ("
            + paths
            + ") does not hold "
            + expected
            + ": "
            + error,
        error);
  }
}
