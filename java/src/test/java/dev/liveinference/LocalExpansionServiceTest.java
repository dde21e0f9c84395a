package dev.liveinference;

import static dev.liveinference.TestPipelines.DOUBLES;
import static dev.liveinference.TestPipelines.assertPredictionSchema;
import static dev.liveinference.TestPipelines.csvClassifier;
import static dev.liveinference.TestPipelines.lines;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.nio.file.Files;
import java.util.List;
import org.apache.beam.sdk.schemas.Schema.FieldType;
import org.apache.beam.sdk.values.Row;
import org.junit.Assume;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.junit.runners.JUnit4;

/**
 * Without an expansion service address the transform starts {@code liveinference serve} itself.
 * The test that starts one runs when {@code -Dliveinference.python} (a Python with liveinference)
 * and {@code -Dliveinference.model} (a pickled scikit-learn model) are given, as
 * tests/xlang/test_java_pipelines.py does; skipped otherwise.
 */
@RunWith(JUnit4.class)
public class LocalExpansionServiceTest {

  private static final String PYTHON = System.getProperty("liveinference.python", "");
  private static final String MODEL = System.getProperty("liveinference.model", "");

  @Test
  public void withoutAnAddressTheTransformStartsOneServiceAndSharesIt() {
    Assume.assumeFalse("no -Dliveinference.python given", PYTHON.isEmpty());
    RunInference<Row> classifier = csvClassifier(MODEL).withPython(PYTHON);
    assertPredictionSchema(lines().apply(classifier));
    String address = LocalExpansionService.addressFor(PYTHON, List.of());
    assertTrue(address, address.matches("(localhost|127\\.0\\.0\\.1):\\d+"));
    lines().apply(classifier.withHandlerArg("max_batch_size", 4));
    assertEquals(address, LocalExpansionService.addressFor(PYTHON, List.of()));
    IllegalArgumentException refused =
        assertThrows(
            IllegalArgumentException.class,
            () -> lines().apply(RunInference.of("no_such", DOUBLES, FieldType.INT64)
                .withPython(PYTHON)));
    assertTrue(refused.getMessage(), refused.getMessage().contains(
        "refused RunInference(handler=no_such"));
    assertTrue(refused.getMessage(), refused.getMessage().contains("onnx_numpy"));
  }

  @Test
  public void aServiceStartedByTheCallerStopsWhenClosed() {
    Assume.assumeFalse("no -Dliveinference.python given", PYTHON.isEmpty());
    String address;
    try (LocalExpansionService service = LocalExpansionService.start(PYTHON)) {
      address = service.address();
      assertPredictionSchema(lines().apply(csvClassifier(MODEL).withExpansionService(address)));
    }
    IllegalStateException gone =
        assertThrows(
            IllegalStateException.class, () -> ExpansionCall.checkReachable(address, 300));
    assertTrue(gone.getMessage(), gone.getMessage().contains("cannot reach"));
    assertThrows(IllegalArgumentException.class, () -> LocalExpansionService.start(" "));
  }

  @Test
  public void aPythonThatCannotStartTheServiceFailsNamingTheFix() {
    IllegalStateException error =
        assertThrows(
            IllegalStateException.class,
            () -> lines().apply(RunInference.of("sklearn_numpy", DOUBLES, FieldType.INT64)
                .withPython("/no/such/python")));
    assertTrue(error.getMessage(), error.getMessage().contains(
        "cannot start the liveinference expansion service with /no/such/python"));
    assertTrue(error.getMessage(), error.getMessage().contains("withPython(path)"));
  }

  @Test
  public void thePythonComesFromTheBuilderThenThePropertyThenTheEnvironment() {
    assertEquals("/opt/py", LocalExpansionService.resolvePython("/opt/py"));
    String saved = System.getProperty(LocalExpansionService.PYTHON_PROPERTY);
    try {
      System.setProperty(LocalExpansionService.PYTHON_PROPERTY, "/from/property");
      assertEquals("/from/property", LocalExpansionService.resolvePython(null));
    } finally {
      if (saved == null) {
        System.clearProperty(LocalExpansionService.PYTHON_PROPERTY);
      } else {
        System.setProperty(LocalExpansionService.PYTHON_PROPERTY, saved);
      }
    }
    assertEquals(
        List.of("py", "-m", "liveinference_expansion", "serve", "--host", "127.0.0.1", "--port",
            "0", "--stop-on-stdin-eof", "--allow-module", "m"),
        LocalExpansionService.command("py", List.of("--allow-module", "m")));
  }

  @Test
  public void tlsNeedsAnAddress() throws Exception {
    Assume.assumeTrue("openssl is needed to make a CA certificate",
        TestCertificates.opensslAvailable());
    File directory = Files.createTempDirectory("liveinference-tls").toFile();
    TestCertificates certificates = TestCertificates.make(directory);
    IllegalArgumentException error =
        assertThrows(
            IllegalArgumentException.class,
            () -> lines().apply(RunInference.of("sklearn_numpy", DOUBLES, FieldType.INT64)
                .withExpansionServiceTls(certificates.caCert.getPath())));
    assertTrue(error.getMessage(), error.getMessage().contains(
        "withExpansionServiceTls needs withExpansionService"));
  }
}
