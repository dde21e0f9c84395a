package dev.liveinference;

import static dev.liveinference.TestPipelines.assertDeadLetterSchema;
import static dev.liveinference.TestPipelines.assertPredictionSchema;
import static dev.liveinference.TestPipelines.csvClassifier;
import static dev.liveinference.TestPipelines.lines;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.beam.model.jobmanagement.v1.ArtifactApi.GetArtifactRequest;
import org.apache.beam.model.jobmanagement.v1.ArtifactApi.ResolveArtifactsRequest;
import org.apache.beam.model.jobmanagement.v1.ArtifactRetrievalServiceGrpc;
import org.apache.beam.model.pipeline.v1.RunnerApi.ArtifactFilePayload;
import org.apache.beam.model.pipeline.v1.RunnerApi.ArtifactInformation;
import org.apache.beam.sdk.schemas.Schema.FieldType;
import org.apache.beam.sdk.values.Row;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.ManagedChannel;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.ManagedChannelBuilder;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.Status;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.StatusRuntimeException;
import org.junit.AfterClass;
import org.junit.Assume;
import org.junit.BeforeClass;
import org.junit.ClassRule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;
import org.junit.runner.RunWith;
import org.junit.runners.JUnit4;

/**
 * {@link AbstractRunInference#withExpansionServiceTls} against real {@code liveinference serve}
 * processes started with {@code --tls-cert}/{@code --tls-key} (one also with {@code
 * --tls-client-ca}), using certificates made by openssl. Runs when {@code
 * -Dliveinference.python} names the Python that has liveinference installed, as
 * tests/xlang/test_java_pipelines.py gives it; skipped otherwise.
 */
@RunWith(JUnit4.class)
public class ExpansionServiceTlsTest {

  private static final String PYTHON = System.getProperty("liveinference.python", "");
  private static final Pattern LISTENING = Pattern.compile("listening on (\\S+?)(;|$)");

  @ClassRule public static final TemporaryFolder FOLDER = new TemporaryFolder();

  private static TestCertificates certs;
  private static String model;
  private static Serve mutual;
  private static Serve serverOnly;

  /** A {@code liveinference serve} process, stopped by {@link #close}. */
  private static final class Serve implements AutoCloseable {
    final Process process;
    final String address;

    private Serve(Process process, String address) {
      this.process = process;
      this.address = address;
    }

    static Serve start(File log, String... flags) throws IOException {
      List<String> command =
          new ArrayList<>(List.of(PYTHON, "-m", "liveinference_expansion", "serve", "--port", "0"));
      command.addAll(List.of(flags));
      Process process = new ProcessBuilder(command).redirectError(log).start();
      BufferedReader stdout =
          new BufferedReader(
              new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
      String line = stdout.readLine();
      Matcher match = LISTENING.matcher(line == null ? "" : line);
      if (!match.find()) {
        process.destroyForcibly();
        throw new IllegalStateException(
            "liveinference serve printed "
                + line
                + " instead of its address; its log:\n"
                + Files.readString(log.toPath()));
      }
      return new Serve(process, match.group(1));
    }

    @Override
    public void close() throws InterruptedException {
      process.destroy();
      if (!process.waitFor(30, TimeUnit.SECONDS)) {
        process.destroyForcibly();
      }
    }
  }

  @BeforeClass
  public static void startServices() throws Exception {
    Assume.assumeFalse(
        "no -Dliveinference.python given (the Python that runs liveinference serve)",
        PYTHON.isEmpty());
    Assume.assumeTrue("no openssl command to make test certificates",
        TestCertificates.opensslAvailable());
    certs = TestCertificates.make(FOLDER.newFolder("pki"));
    model = writeModel(new File(FOLDER.getRoot(), "model.pkl"));
    mutual =
        Serve.start(FOLDER.newFile("mutual.log"),
            "--tls-cert", certs.serverCert.getPath(), "--tls-key", certs.serverKey.getPath(),
            "--tls-client-ca", certs.caCert.getPath());
    serverOnly =
        Serve.start(FOLDER.newFile("server-only.log"),
            "--tls-cert", certs.serverCert.getPath(), "--tls-key", certs.serverKey.getPath());
  }

  @AfterClass
  public static void stopServices() throws InterruptedException {
    for (Serve serve : new Serve[] {mutual, serverOnly}) {
      if (serve != null) {
        serve.close();
      }
    }
  }

  private static String writeModel(File path) throws IOException, InterruptedException {
    Process process =
        new ProcessBuilder(
                PYTHON, "-c",
                "import pickle, sys, numpy\n"
                    + "from sklearn.linear_model import LogisticRegression\n"
                    + "x = numpy.array([[0.0, 0, 0, 0], [1.0, 1, 1, 1]])\n"
                    + "pickle.dump(LogisticRegression().fit(x, [0, 1]), open(sys.argv[1], 'wb'))\n",
                path.getPath())
            .redirectErrorStream(true)
            .start();
    String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!process.waitFor(120, TimeUnit.SECONDS) || process.exitValue() != 0) {
      throw new IOException("could not write a test model with " + PYTHON + ":\n" + output);
    }
    return path.getPath();
  }

  private static RunInference<Row> classifier(Serve serve) {
    return csvClassifier(model).withExpansionService(serve.address);
  }

  /** The whole chain of messages, for asserting on what gRPC reported. */
  private static String messages(Throwable error) {
    StringBuilder all = new StringBuilder();
    for (Throwable cause = error; cause != null; cause = cause.getCause()) {
      all.append(cause.getClass().getSimpleName()).append(": ").append(cause.getMessage())
          .append('\n');
    }
    return all.toString();
  }

  @Test
  public void mutualTlsExpandsAndCarriesTheServicesRefusals() {
    InferenceResult<Row> result =
        lines()
            .apply(
                classifier(mutual)
                    .withExpansionServiceTls(
                        certs.caCert.getPath(),
                        certs.clientCert.getPath(),
                        certs.clientKey.getPath())
                    .withExceptionHandling());
    assertPredictionSchema(result.getPredictions());
    assertDeadLetterSchema(result.getDeadLetters());

    IllegalArgumentException unknown =
        assertThrows(
            IllegalArgumentException.class,
            () ->
                lines()
                    .apply(
                        RunInference.of("no_such_handler", FieldType.DOUBLE, FieldType.INT64)
                            .withExpansionService(mutual.address)
                            .withExpansionServiceTls(
                                certs.caCert.getPath(),
                                certs.clientCert.getPath(),
                                certs.clientKey.getPath())));
    assertTrue(unknown.getMessage(), unknown.getMessage().contains(
        "unknown handler 'no_such_handler'"));
    assertTrue("the service lists the names it knows: " + unknown.getMessage(),
        unknown.getMessage().contains("'sklearn_numpy'"));
  }

  @Test
  public void serverOnlyTlsExpandsTrustingTheGivenCa() {
    assertPredictionSchema(
        lines().apply(classifier(serverOnly).withExpansionServiceTls(certs.caCert.getPath())));
  }

  @Test
  public void connectionsWithoutTheRightCredentialsAreRefusedByTls() {
    RuntimeException plaintext =
        assertThrows(RuntimeException.class, () -> lines().apply(classifier(serverOnly)));
    RuntimeException noClientCert =
        assertThrows(
            RuntimeException.class,
            () ->
                lines()
                    .apply(classifier(mutual).withExpansionServiceTls(certs.caCert.getPath())));
    RuntimeException otherCa =
        assertThrows(
            RuntimeException.class,
            () ->
                lines()
                    .apply(
                        classifier(serverOnly)
                            .withExpansionServiceTls(certs.otherCaCert.getPath())));
    for (RuntimeException error : List.of(plaintext, noClientCert, otherCa)) {
      String all = messages(error);
      assertTrue(all, all.contains("UNAVAILABLE"));
      assertTrue("no request reached Python: " + all, !all.contains("Traceback"));
    }
  }

  @Test
  public void theArtifactRelayServesOnlyWhatTheServiceNamed() {
    ArtifactInformation passwd =
        ArtifactInformation.newBuilder()
            .setTypeUrn("beam:artifact:type:file:v1")
            .setTypePayload(
                ArtifactFilePayload.newBuilder().setPath("/etc/passwd").build().toByteString())
            .build();
    TlsFiles tls =
        TlsFiles.of(
            certs.caCert.getPath(), certs.clientCert.getPath(), certs.clientKey.getPath());
    try (TlsExpansion expansion = TlsExpansion.open(tls, mutual.address)) {
      ManagedChannel plaintext =
          ManagedChannelBuilder.forTarget(expansion.artifactEndpoint()).usePlaintext().build();
      try {
        ArtifactRetrievalServiceGrpc.ArtifactRetrievalServiceBlockingStub relay =
            ArtifactRetrievalServiceGrpc.newBlockingStub(plaintext);
        StatusRuntimeException resolve =
            assertThrows(
                StatusRuntimeException.class,
                () ->
                    relay.resolveArtifacts(
                        ResolveArtifactsRequest.newBuilder().addArtifacts(passwd).build()));
        StatusRuntimeException get =
            assertThrows(
                StatusRuntimeException.class,
                () ->
                    relay
                        .getArtifact(GetArtifactRequest.newBuilder().setArtifact(passwd).build())
                        .hasNext());
        for (StatusRuntimeException error : List.of(resolve, get)) {
          assertEquals(Status.Code.PERMISSION_DENIED, error.getStatus().getCode());
          assertTrue(error.getMessage(), error.getMessage().contains(
              "serves only the artifacts the expansion response named"));
        }
      } finally {
        plaintext.shutdownNow();
      }
    }
  }
}
