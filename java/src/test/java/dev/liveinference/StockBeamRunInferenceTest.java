package dev.liveinference;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.StreamSupport;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.coders.DoubleCoder;
import org.apache.beam.sdk.coders.IterableCoder;
import org.apache.beam.sdk.coders.KvCoder;
import org.apache.beam.sdk.coders.VarLongCoder;
import org.apache.beam.sdk.extensions.python.transforms.RunInference;
import org.apache.beam.sdk.io.TextIO;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.schemas.Schema.Field;
import org.apache.beam.sdk.schemas.Schema.FieldType;
import org.apache.beam.sdk.transforms.Create;
import org.apache.beam.sdk.transforms.MapElements;
import org.apache.beam.sdk.values.KV;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.Row;
import org.apache.beam.sdk.values.TypeDescriptors;
import org.junit.AfterClass;
import org.junit.Assume;
import org.junit.BeforeClass;
import org.junit.ClassRule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;
import org.junit.runner.RunWith;
import org.junit.runners.JUnit4;

/**
 * Beam's own Java RunInference ({@link RunInference} from beam-sdks-java-extensions-python,
 * unchanged) against {@code liveinference serve --allow-inline-source}, on Prism: every row is
 * predicted as scikit-learn predicts it, through Beam's source-script model loader and its keyed
 * form ({@code ofKVs} with a {@code KeyedModelHandler}). Runs when {@code -Dliveinference.python}
 * (the Python with liveinference), {@code -Dliveinference.model} (a pickled scikit-learn
 * classifier of four features), {@code -Dliveinference.service} (a service without the flag) and
 * {@code -Dliveinference.jobEndpoint} (a Prism job server) are given, as
 * tests/xlang/test_java_pipelines.py does; skipped otherwise.
 */
@RunWith(JUnit4.class)
public class StockBeamRunInferenceTest {

  private static final String PYTHON = System.getProperty("liveinference.python", "");
  private static final String MODEL = System.getProperty("liveinference.model", "");
  private static final String SERVICE = System.getProperty("liveinference.service", "");
  private static final String JOB_ENDPOINT = System.getProperty("liveinference.jobEndpoint", "");
  private static final Pattern LISTENING = Pattern.compile("listening on (\\S+?)(;|$)");
  private static final int ROWS = 40;

  /** What a Beam user writes: Beam's module names, which the service maps to liveinference. */
  private static final String LOADER =
      "from apache_beam.ml.inference.sklearn_inference import SklearnModelHandlerNumpy\n"
          + "\n"
          + "def get_model_handler(model_uri):\n"
          + "  return SklearnModelHandlerNumpy(model_uri)\n";

  private static final String KEYED_LOADER =
      "from apache_beam.ml.inference.sklearn_inference import SklearnModelHandlerNumpy\n"
          + "from apache_beam.ml.inference.base import KeyedModelHandler\n"
          + "def get_model_handler(model_uri):\n"
          + "  return KeyedModelHandler(SklearnModelHandlerNumpy(model_uri))\n";

  private static final Schema SCHEMA =
      Schema.of(
          Field.of("example", FieldType.array(FieldType.DOUBLE)),
          Field.of("inference", FieldType.INT64));

  @ClassRule public static final TemporaryFolder FOLDER = new TemporaryFolder();

  private static Process service;
  private static String address;

  @BeforeClass
  public static void startServiceWithInlineSource() throws IOException {
    Assume.assumeFalse("no -Dliveinference.python given", PYTHON.isEmpty());
    File log = FOLDER.newFile("serve.log");
    service =
        new ProcessBuilder(
                PYTHON, "-m", "liveinference_expansion", "serve", "--port", "0",
                "--allow-inline-source")
            .redirectError(log)
            .start();
    BufferedReader stdout =
        new BufferedReader(
            new InputStreamReader(service.getInputStream(), StandardCharsets.UTF_8));
    String line = stdout.readLine();
    Matcher match = LISTENING.matcher(line == null ? "" : line);
    if (!match.find()) {
      service.destroyForcibly();
      throw new IllegalStateException(
          "liveinference serve printed " + line + "; its log:\n" + Files.readString(log.toPath()));
    }
    address = match.group(1);
  }

  @AfterClass
  public static void stopService() throws InterruptedException {
    if (service != null) {
      service.destroy();
      if (!service.waitFor(30, TimeUnit.SECONDS)) {
        service.destroyForcibly();
      }
    }
  }

  private static List<List<Double>> examples() {
    Random random = new Random(7);
    List<List<Double>> rows = new ArrayList<>();
    for (int i = 0; i < ROWS; i++) {
      rows.add(
          Arrays.asList(
              random.nextGaussian(), random.nextGaussian(), random.nextGaussian(),
              random.nextGaussian()));
    }
    return rows;
  }

  private static String csv(Iterable<?> values) {
    return StreamSupport.stream(values.spliterator(), false)
        .map(String::valueOf)
        .collect(Collectors.joining(","));
  }

  /** The model's own predictions, from scikit-learn in the configured Python. */
  private static List<String> scikitLearnPredictions(List<List<Double>> rows)
      throws IOException, InterruptedException {
    Process python =
        new ProcessBuilder(
                PYTHON, "-c",
                "import pickle, sys, numpy\n"
                    + "model = pickle.load(open(sys.argv[1], 'rb'))\n"
                    + "rows = numpy.loadtxt(sys.stdin, delimiter=',', ndmin=2)\n"
                    + "print(' '.join(str(int(label)) for label in model.predict(rows)))\n",
                MODEL)
            .redirectError(ProcessBuilder.Redirect.INHERIT)
            .start();
    try (Writer stdin = new OutputStreamWriter(python.getOutputStream(), StandardCharsets.UTF_8)) {
      for (List<Double> row : rows) {
        stdin.write(csv(row) + "\n");
      }
    }
    String labels = new String(python.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertEquals("scikit-learn's predictions", 0, python.waitFor());
    return Arrays.asList(labels.trim().split(" "));
  }

  private static TreeMap<String, String> read(File file) throws IOException {
    TreeMap<String, String> lines = new TreeMap<>();
    for (String line : Files.readAllLines(file.toPath())) {
      String[] parts = line.split("\t", 2);
      assertEquals("a second output for " + parts[0], null, lines.put(parts[0], parts[1]));
    }
    return lines;
  }

  /**
   * A pipeline on the Prism job server with a LOOPBACK Java environment. Each test runs one of
   * Beam's RunInference transforms per job: Prism 2.77 keeps one map of metric short ids per job
   * while each Python worker numbers its metrics on its own, so two Python environments in one
   * job can report a counter under an id Prism decodes as the other's distribution, and Prism
   * panics ("error decoding metrics").
   */
  private static Pipeline prismPipeline() throws IOException {
    return TestPipelines.prismPipeline(JOB_ENDPOINT);
  }

  @Test
  public void everyRowIsPredictedAsScikitLearnPredicts() throws Exception {
    Assume.assumeFalse("no -Dliveinference.model given", MODEL.isEmpty());
    Assume.assumeFalse("no -Dliveinference.jobEndpoint given", JOB_ENDPOINT.isEmpty());
    List<List<Double>> rows = examples();
    List<String> expected = scikitLearnPredictions(rows);
    Pipeline pipeline = prismPipeline();
    List<Iterable<Double>> plain = new ArrayList<>(rows);
    File plainOut = new File(FOLDER.getRoot(), "plain.tsv");

    PCollection<Row> predictions =
        pipeline
            .apply("Rows", Create.of(plain).withCoder(IterableCoder.of(DoubleCoder.of())))
            .apply(
                "Beam's RunInference",
                RunInference.of(LOADER, SCHEMA)
                    .withKwarg("model_uri", MODEL)
                    .withExpansionService(address));
    assertEquals(SCHEMA, predictions.getSchema());
    predictions
        .apply(
            "Plain lines",
            MapElements.into(TypeDescriptors.strings())
                .via(row -> csv(row.getArray("example")) + "\t" + row.getInt64("inference")))
        .apply("Write plain", TextIO.write().to(plainOut.getPath()).withoutSharding());

    assertEquals(PipelineResult.State.DONE, pipeline.run().waitUntilFinish());

    TreeMap<String, String> byExample = read(plainOut);
    assertEquals(ROWS, byExample.size());
    for (int i = 0; i < ROWS; i++) {
      String example = csv(rows.get(i));
      assertEquals("row " + i + " " + example, expected.get(i), byExample.get(example));
    }
  }

  @Test
  public void everyKeyedRowIsPredictedAsScikitLearnPredicts() throws Exception {
    Assume.assumeFalse("no -Dliveinference.model given", MODEL.isEmpty());
    Assume.assumeFalse("no -Dliveinference.jobEndpoint given", JOB_ENDPOINT.isEmpty());
    List<List<Double>> rows = examples();
    List<String> expected = scikitLearnPredictions(rows);
    Pipeline pipeline = prismPipeline();
    List<KV<Long, Iterable<Double>>> keyed = new ArrayList<>();
    for (int i = 0; i < rows.size(); i++) {
      keyed.add(KV.of((long) i, rows.get(i)));
    }
    File keyedOut = new File(FOLDER.getRoot(), "keyed.tsv");

    pipeline
        .apply(
            "Keyed rows",
            Create.of(keyed)
                .withCoder(KvCoder.of(VarLongCoder.of(), IterableCoder.of(DoubleCoder.of()))))
        .apply(
            "Beam's keyed RunInference",
            RunInference.ofKVs(KEYED_LOADER, SCHEMA, VarLongCoder.of())
                .withKwarg("model_uri", MODEL)
                .withExpansionService(address))
        .apply(
            "Keyed lines",
            MapElements.into(TypeDescriptors.strings())
                .via(
                    kv ->
                        kv.getKey()
                            + "\t"
                            + csv(kv.getValue().getArray("example"))
                            + "\t"
                            + kv.getValue().getInt64("inference")))
        .apply("Write keyed", TextIO.write().to(keyedOut.getPath()).withoutSharding());

    assertEquals(PipelineResult.State.DONE, pipeline.run().waitUntilFinish());

    TreeMap<String, String> byKey = read(keyedOut);
    assertEquals(ROWS, byKey.size());
    for (int i = 0; i < ROWS; i++) {
      String example = csv(rows.get(i));
      assertEquals("key " + i, example + "\t" + expected.get(i), byKey.get(String.valueOf(i)));
    }
  }

  @Test
  public void withoutAllowInlineSourceTheRefusalSaysToPassIt() {
    Assume.assumeFalse("no -Dliveinference.service given", SERVICE.isEmpty());
    Pipeline pipeline =
        Pipeline.create(
            PipelineOptionsFactory.fromArgs("--runner=PortableRunner", "--jobEndpoint=localhost:1")
                .create());
    PCollection<Iterable<Double>> rows =
        pipeline.apply(
            Create.<Iterable<Double>>of(Arrays.asList(1.0, 2.0, 3.0, 4.0))
                .withCoder(IterableCoder.of(DoubleCoder.of())));
    RuntimeException refused =
        assertThrows(
            RuntimeException.class,
            () ->
                rows.apply(
                    RunInference.of(LOADER, SCHEMA)
                        .withKwarg("model_uri", MODEL)
                        .withExpansionService(SERVICE)));
    String message = refused.getMessage();
    assertTrue(message, message.contains("Beam's stock Java RunInference"));
    assertTrue(message, message.contains("--allow-inline-source"));
  }
}
