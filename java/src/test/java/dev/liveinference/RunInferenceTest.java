package dev.liveinference;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.io.IOException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.schemas.Schema.FieldType;
import org.apache.beam.sdk.transforms.Create;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.Row;
import org.joda.time.Duration;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.junit.runners.JUnit4;

/** The request the builder produces, and the combinations it refuses at construction. */
@RunWith(JUnit4.class)
public class RunInferenceTest {

  private static final FieldType DOUBLES = FieldType.array(FieldType.DOUBLE);

  private static RunInference<Row> classifier() {
    return RunInference.of("sklearn_numpy", DOUBLES, FieldType.INT64);
  }

  @Test
  public void minimalRequestNamesHandlerTypesAndNoExceptionHandling() {
    Row kwargs = classifier().kwargs();
    assertEquals(
        List.of("handler", "example_type", "inference_type", "exception_handling"),
        kwargs.getSchema().getFieldNames());
    assertEquals("sklearn_numpy", kwargs.getString("handler"));
    assertEquals("array<double>", kwargs.getString("example_type"));
    assertEquals("int64", kwargs.getString("inference_type"));
    assertEquals(false, kwargs.getBoolean("exception_handling"));
    assertNull(classifier().expansionService());
  }

  @Test
  public void fullRequestCarriesEveryValueWithItsType() {
    Row kwargs =
        classifier()
            .withHandlerArg("model_uri", "/models/v1.pkl")
            .withHandlerArg("max_batch_size", 64)
            .withHandlerArg("large_model", true)
            .withPreprocess("liveinference_expansion.functions.parse_csv_floats")
            .withPreprocess("mypkg.features.scale")
            .withPostprocess("liveinference_expansion.functions.argmax_inference")
            .withModelRefresh("/models/*.pkl", Duration.millis(2500))
            .withExpansionService("127.0.0.1:9000")
            .withExceptionHandling()
            .kwargs();
    Row handlerArgs = kwargs.getRow("handler_args");
    assertEquals("/models/v1.pkl", handlerArgs.getString("model_uri"));
    assertEquals(Integer.valueOf(64), handlerArgs.getInt32("max_batch_size"));
    assertEquals(true, handlerArgs.getBoolean("large_model"));
    assertEquals(
        List.of("liveinference_expansion.functions.parse_csv_floats", "mypkg.features.scale"),
        List.copyOf(kwargs.getArray("preprocess")));
    assertEquals(
        List.of("liveinference_expansion.functions.argmax_inference"),
        List.copyOf(kwargs.getArray("postprocess")));
    assertEquals("/models/*.pkl", kwargs.getString("watch_model_pattern"));
    assertEquals(2.5, kwargs.getDouble("interval"), 0.0);
    assertEquals(true, kwargs.getBoolean("exception_handling"));
    assertFalse(kwargs.getSchema().hasField("keyed"));
  }

  @Test
  public void keyedRequestNamesTheKeyType() {
    Row kwargs =
        RunInference.<String>ofKVs("sklearn_numpy", FieldType.STRING, DOUBLES, FieldType.DOUBLE)
            .kwargs();
    assertEquals(true, kwargs.getBoolean("keyed"));
    assertEquals("string", kwargs.getString("key_type"));
    assertEquals("double", kwargs.getString("inference_type"));
  }

  @Test
  public void withMethodsReturnNewTransformsAndLeaveTheOriginalAlone() {
    RunInference<Row> base = classifier();
    RunInference<Row> withArg = base.withHandlerArg("model_uri", "/m.pkl");
    RunInference<Row> withService = base.withExpansionService("localhost:1234");
    assertFalse(base.kwargs().getSchema().hasField("handler_args"));
    assertTrue(withArg.kwargs().getSchema().hasField("handler_args"));
    assertNull(base.expansionService());
    assertEquals("localhost:1234", withService.expansionService());
  }

  @Test
  public void typeNamesCoverArraysAndScalars() {
    assertEquals("array<array<float>>",
        PythonTypes.name(FieldType.array(FieldType.array(FieldType.FLOAT)), "t"));
    assertEquals("string", PythonTypes.name(FieldType.STRING, "t"));
    assertEquals("array<int32>", PythonTypes.name(FieldType.iterable(FieldType.INT32), "t"));
  }

  @Test
  public void predictionSchemaHasANullableModelId() {
    Schema schema = RunInference.predictionSchema(DOUBLES, FieldType.INT64);
    assertEquals(List.of("example", "inference", "model_id"), schema.getFieldNames());
    assertTrue(schema.getField("model_id").getType().getNullable());
  }

  private static void assertRefused(Runnable build, String... fragments) {
    IllegalArgumentException error = assertThrows(IllegalArgumentException.class, build::run);
    for (String fragment : fragments) {
      assertTrue(
          "message '" + error.getMessage() + "' should contain '" + fragment + "'",
          error.getMessage().contains(fragment));
    }
  }

  @Test
  public void refusesMalformedHandlerNames() {
    assertRefused(() -> RunInference.of("", DOUBLES, FieldType.INT64), "handler", "\"\"");
    assertRefused(() -> RunInference.of("Sklearn Numpy", DOUBLES, FieldType.INT64),
        "\"Sklearn Numpy\"");
    assertRefused(() -> RunInference.of(null, DOUBLES, FieldType.INT64), "null");
  }

  @Test
  public void refusesTypesThatCannotCrossToPython() {
    assertRefused(() -> RunInference.of("sklearn_numpy", FieldType.DATETIME, FieldType.INT64),
        "exampleType", "cannot cross to Python");
    assertRefused(
        () -> RunInference.of("sklearn_numpy", DOUBLES,
            FieldType.map(FieldType.STRING, FieldType.INT64)),
        "inferenceType");
    assertRefused(() -> RunInference.of("sklearn_numpy", null, FieldType.INT64),
        "exampleType must not be null");
    assertRefused(
        () -> RunInference.ofKVs("sklearn_numpy", FieldType.DOUBLE, DOUBLES, FieldType.INT64),
        "keyType must be FieldType.STRING or FieldType.INT64");
  }

  @Test
  public void refusesBadHandlerArguments() {
    assertRefused(() -> classifier().withHandlerArg("model_uri", List.of("a", "b")),
        "'model_uri'", "java.util", "give a String, Long");
    assertRefused(() -> classifier().withHandlerArg("model_uri", null), "null");
    assertRefused(() -> classifier().withHandlerArg("model-uri", "x"), "Python identifier");
    assertRefused(
        () -> classifier().withHandlerArg("model_uri", "a").withHandlerArg("model_uri", "b"),
        "'model_uri' is already set");
  }

  @Test
  public void refusesBadRefreshAndFunctionSettings() {
    assertRefused(() -> classifier().withModelRefresh(" ", Duration.standardSeconds(1)),
        "file pattern");
    assertRefused(
        () -> classifier()
            .withModelRefresh("/a/*.pkl", Duration.standardSeconds(1))
            .withModelRefresh("/b/*.pkl", Duration.standardSeconds(1)),
        "already set to watch \"/a/*.pkl\"");
    assertRefused(() -> classifier().withPreprocess(""), "withPreprocess");
    assertRefused(() -> classifier().withExceptionHandling().withPostprocess(null),
        "withPostprocess");
  }

  @Test
  public void refusesRefreshIntervalsThatAreNotPositive() {
    for (Duration interval : new Duration[] {Duration.ZERO, Duration.millis(-1), null}) {
      assertRefused(() -> classifier().withModelRefresh("/m/*.pkl", interval),
          "withModelRefresh: interval must be a positive duration", String.valueOf(interval));
      assertRefused(
          () -> classifier().withExceptionHandling().withModelRefresh("/m/*.pkl", interval),
          "withModelRefresh: interval must be a positive duration");
    }
  }

  @Test
  public void refusesExpansionServiceTimeoutsThatAreNotPositive() {
    for (Duration timeout : new Duration[] {Duration.ZERO, Duration.standardSeconds(-5), null}) {
      assertRefused(() -> classifier().withExpansionServiceTimeout(timeout),
          "withExpansionServiceTimeout: timeout must be a positive duration",
          String.valueOf(timeout));
      assertRefused(
          () -> classifier().withExceptionHandling().withExpansionServiceTimeout(timeout),
          "withExpansionServiceTimeout: timeout must be a positive duration");
    }
  }

  @Test
  public void refusesHandlerArgumentsThatAreNotFiniteNumbers() {
    Object[] values = {Double.NaN, Double.POSITIVE_INFINITY, Float.NaN, Float.NEGATIVE_INFINITY};
    for (Object value : values) {
      assertRefused(() -> classifier().withHandlerArg("max_batch_duration_secs", value),
          "'max_batch_duration_secs'", String.valueOf(value), "finite number");
    }
    assertEquals(Double.valueOf(0.5),
        classifier().withHandlerArg("max_batch_duration_secs", 0.5).kwargs()
            .getRow("handler_args").getDouble("max_batch_duration_secs"));
  }

  @Test
  public void exceptionHandlingKeepsEverySettingAndTheBuilderMethodsStayAvailable() {
    Row before =
        classifier()
            .withHandlerArg("model_uri", "/models/v1.pkl")
            .withPreprocess("liveinference_expansion.functions.parse_csv_floats")
            .withModelRefresh("/models/*.pkl", Duration.standardSeconds(3))
            .withExpansionService("127.0.0.1:9000")
            .withExceptionHandling()
            .kwargs();
    RunInference.WithExceptionHandling<Row> after =
        classifier()
            .withExceptionHandling()
            .withHandlerArg("model_uri", "/models/v1.pkl")
            .withPreprocess("liveinference_expansion.functions.parse_csv_floats")
            .withModelRefresh("/models/*.pkl", Duration.standardSeconds(3))
            .withExpansionService("127.0.0.1:9000")
            .withExpansionServiceTimeout(Duration.standardSeconds(1));
    assertEquals(before, after.kwargs());
    assertEquals("127.0.0.1:9000", after.expansionService());
  }

  @Test
  public void withExceptionHandlingDeclaresNoBuilderMethodsOfItsOwn() {
    List<String> declared = new ArrayList<>();
    for (Method method : RunInference.WithExceptionHandling.class.getDeclaredMethods()) {
      if (Modifier.isPublic(method.getModifiers()) && !method.isSynthetic()) {
        declared.add(method.getName());
      }
    }
    assertEquals(List.of("expand"), declared);
  }

  @Test
  public void refusesTlsFilesThatAreMissingOrNotPem() throws IOException {
    File notPem = File.createTempFile("not-a-certificate", ".pem");
    notPem.deleteOnExit();
    Files.writeString(notPem.toPath(), "hello\n");
    assertRefused(() -> classifier().withExpansionServiceTls(null),
        "withExpansionServiceTls: caCertFile must name a PEM file");
    assertRefused(() -> classifier().withExpansionServiceTls("/no/such/ca.pem"),
        "caCertFile \"/no/such/ca.pem\" is not a readable file");
    assertRefused(() -> classifier().withExpansionServiceTls(notPem.getPath()),
        "caCertFile", notPem.getPath(), "does not hold a PEM CA certificate");
    assertRefused(
        () -> classifier().withExceptionHandling()
            .withExpansionServiceTls(notPem.getPath(), notPem.getPath(), null),
        "mutual TLS needs both clientCertFile and clientKeyFile");
  }

  @Test
  public void refusesMalformedExpansionServiceAddresses() {
    assertRefused(() -> classifier().withExpansionService("localhost"), "host:port");
    assertRefused(() -> classifier().withExpansionService("localhost:70000"), "65535");
    assertRefused(() -> classifier().withExceptionHandling().withExpansionService(":80"),
        "host:port");
  }

  @Test
  public void unreachableExpansionServiceFailsAtConstructionNamingAddressAndFix()
      throws IOException {
    int port;
    try (ServerSocket socket = new ServerSocket(0)) {
      port = socket.getLocalPort();
    }
    Pipeline pipeline =
        Pipeline.create(PipelineOptionsFactory.fromArgs("--runner=PortableRunner", "--jobEndpoint=localhost:1").create());
    PCollection<String> lines = pipeline.apply(Create.of("1,2,3,4"));
    RunInference<Row> transform =
        classifier()
            .withExpansionService("localhost:" + port)
            .withExpansionServiceTimeout(Duration.millis(300));
    IllegalStateException error =
        assertThrows(IllegalStateException.class, () -> lines.apply(transform));
    assertTrue(error.getMessage(),
        error.getMessage().contains("cannot reach the liveinference expansion service at"
            + " localhost:" + port));
    assertTrue(error.getMessage(), error.getMessage().contains("liveinference serve --port"));
  }
}
