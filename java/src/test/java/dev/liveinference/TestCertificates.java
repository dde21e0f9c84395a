package dev.liveinference;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * PEM files for TLS tests, made with the {@code openssl} command: a CA, a server certificate
 * for {@code localhost} and {@code 127.0.0.1} signed by it, a client certificate signed by it,
 * and a second CA that signed neither.
 */
final class TestCertificates {

  final File caCert;
  final File serverCert;
  final File serverKey;
  final File clientCert;
  final File clientKey;
  final File otherCaCert;

  private final File directory;

  private TestCertificates(File directory) {
    this.directory = directory;
    this.caCert = new File(directory, "ca.pem");
    this.serverCert = new File(directory, "server.pem");
    this.serverKey = new File(directory, "server.key");
    this.clientCert = new File(directory, "client.pem");
    this.clientKey = new File(directory, "client.key");
    this.otherCaCert = new File(directory, "other-ca.pem");
  }

  /**
   * Makes the files in {@code directory}.
   *
   * @param directory an empty directory
   * @return the files
   * @throws IOException if openssl is missing or fails
   * @throws InterruptedException if interrupted while openssl runs
   */
  static TestCertificates make(File directory) throws IOException, InterruptedException {
    TestCertificates files = new TestCertificates(directory);
    files.selfSignedCa("ca", "liveinference test CA");
    files.selfSignedCa("other-ca", "some other CA");
    files.signed("server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        + "extendedKeyUsage=serverAuth\n");
    files.signed("client", "java-client", "extendedKeyUsage=clientAuth\n");
    return files;
  }

  /**
   * Whether the {@code openssl} command can be run.
   *
   * @return true if {@code openssl version} succeeds
   */
  static boolean opensslAvailable() {
    try {
      Process process = new ProcessBuilder("openssl", "version").redirectErrorStream(true).start();
      process.getInputStream().readAllBytes();
      return process.waitFor(30, TimeUnit.SECONDS) && process.exitValue() == 0;
    } catch (IOException error) {
      return false;
    } catch (InterruptedException error) {
      Thread.currentThread().interrupt();
      return false;
    }
  }

  private void selfSignedCa(String name, String commonName)
      throws IOException, InterruptedException {
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", name + ".key", "-out", name + ".pem", "-days", "1",
        "-subj", "/CN=" + commonName);
  }

  private void signed(String name, String commonName, String extensions)
      throws IOException, InterruptedException {
    Files.writeString(new File(directory, name + ".ext").toPath(), extensions,
        StandardCharsets.US_ASCII);
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + commonName);
    openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", name + ".pem", "-days", "1", "-extfile", name + ".ext");
  }

  private void openssl(String... args) throws IOException, InterruptedException {
    List<String> command = new ArrayList<>();
    command.add("openssl");
    command.addAll(List.of(args));
    Process process =
        new ProcessBuilder(command).directory(directory).redirectErrorStream(true).start();
    String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!process.waitFor(60, TimeUnit.SECONDS) || process.exitValue() != 0) {
      throw new IOException(String.join(" ", command) + " failed:\n" + output);
    }
  }
}
