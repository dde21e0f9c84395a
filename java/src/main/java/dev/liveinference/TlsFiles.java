package dev.liveinference;

import com.google.auto.value.AutoValue;
import java.io.ByteArrayInputStream;
import java.io.File;
import java.io.IOException;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.cert.Certificate;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Base64;
import java.util.Collection;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.ChannelCredentials;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.TlsChannelCredentials;
import org.checkerframework.checker.nullness.qual.Nullable;

/**
 * The PEM files of a TLS connection to the expansion service (a CA certificate, and optionally
 * a client certificate and key for mutual TLS), as gRPC channel credentials of Beam's vendored
 * gRPC; {@link TlsExpansion} uses them.
 */
@AutoValue
abstract class TlsFiles implements Serializable {

  private static final long serialVersionUID = 1L;
  private static final Pattern PKCS8 =
      Pattern.compile("-----BEGIN PRIVATE KEY-----([A-Za-z0-9+/=\\s]+)-----END PRIVATE KEY-----");
  private static final List<String> KEY_ALGORITHMS = List.of("RSA", "EC", "Ed25519");

  abstract String caCert();

  abstract @Nullable String clientCert();

  abstract @Nullable String clientKey();

  /**
   * The files, checked by parsing them: the certificates as X.509, the key as PKCS#8.
   *
   * @throws IllegalArgumentException if a file is missing, unreadable or not what it should be
   */
  static TlsFiles of(
      @Nullable String caCert, @Nullable String clientCert, @Nullable String clientKey) {
    checkCertificates(caCert, "caCertFile", "a PEM CA certificate");
    if (clientCert != null || clientKey != null) {
      checkCertificates(clientCert, "clientCertFile", "a PEM certificate chain");
      checkKey(clientKey);
    }
    return new AutoValue_TlsFiles(caCert, clientCert, clientKey);
  }

  /** gRPC channel credentials that trust only {@link #caCert()} and present the client key. */
  ChannelCredentials credentials() {
    TlsChannelCredentials.Builder builder = TlsChannelCredentials.newBuilder();
    String cert = clientCert();
    String key = clientKey();
    try {
      builder.trustManager(new File(caCert()));
      if (cert != null && key != null) {
        builder.keyManager(new File(cert), new File(key));
      }
    } catch (IOException error) {
      throw new UncheckedIOException(
          "withExpansionServiceTls: cannot read the TLS files " + this + ": " + error, error);
    }
    return builder.build();
  }

  private static void checkCertificates(@Nullable String path, String argument, String what) {
    byte[] pem = read(path, argument);
    Collection<? extends Certificate> certificates;
    try {
      certificates =
          CertificateFactory.getInstance("X.509")
              .generateCertificates(new ByteArrayInputStream(pem));
    } catch (CertificateException error) {
      throw notHolding(argument, path, what, error.getMessage());
    }
    if (certificates.isEmpty()) {
      throw notHolding(argument, path, what, "no certificate found");
    }
  }

  private static void checkKey(@Nullable String path) {
    String what = "an unencrypted PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----; convert"
        + " others with `openssl pkcs8 -topk8 -nocrypt`)";
    Matcher pem = PKCS8.matcher(new String(read(path, "clientKeyFile"), StandardCharsets.US_ASCII));
    if (!pem.find()) {
      throw notHolding("clientKeyFile", path, what, "no PRIVATE KEY block");
    }
    PKCS8EncodedKeySpec spec;
    try {
      spec = new PKCS8EncodedKeySpec(Base64.getMimeDecoder().decode(pem.group(1)));
    } catch (IllegalArgumentException error) {
      throw notHolding("clientKeyFile", path, what, error.getMessage());
    }
    for (String algorithm : KEY_ALGORITHMS) {
      try {
        KeyFactory.getInstance(algorithm).generatePrivate(spec);
        return;
      } catch (GeneralSecurityException error) {
        // not a key of this algorithm; the next one may fit
      }
    }
    throw notHolding("clientKeyFile", path, what, "not an " + KEY_ALGORITHMS + " key");
  }

  private static byte[] read(@Nullable String path, String argument) {
    if (path == null || path.isBlank()) {
      throw new IllegalArgumentException(
          "withExpansionServiceTls: " + argument + " must name a PEM file, got "
              + Config.quote(path));
    }
    File file = new File(path);
    try {
      if (!file.isFile()) {
        throw new IOException("not a file");
      }
      return Files.readAllBytes(file.toPath());
    } catch (IOException error) {
      throw new IllegalArgumentException(
          "withExpansionServiceTls: "
              + argument
              + " "
              + Config.quote(path)
              + " is not a readable file ("
              + error.getMessage()
              + "); give the path of a PEM file",
          error);
    }
  }

  private static IllegalArgumentException notHolding(
      String argument, @Nullable String path, String what, String why) {
    return new IllegalArgumentException(
        "withExpansionServiceTls: "
            + argument
            + " "
            + Config.quote(path)
            + " does not hold "
            + what
            + ": "
            + why);
  }
}
