package dev.liveinference.examples;

import dev.liveinference.AbstractRunInference;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import org.apache.beam.sdk.transforms.DoFn;
import org.apache.beam.sdk.transforms.MapElements;
import org.apache.beam.sdk.transforms.ParDo;
import org.apache.beam.sdk.transforms.SerializableFunction;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.Row;
import org.apache.beam.sdk.values.TypeDescriptors;

/**
 * What the example programs share: pointing a transform at its expansion service, and writing
 * predictions and dead letters as tab-separated lines appended to local files.
 */
final class ExampleFiles {

  private ExampleFiles() {}

  /** Appends each line to a file, a bundle at a time; works for bounded and unbounded input. */
  static final class AppendLines extends DoFn<String, Void> {
    private static final long serialVersionUID = 1L;
    private static final Object LOCK = new Object();
    private final String path;
    private transient StringBuilder buffer;

    AppendLines(String path) {
      this.path = path;
    }

    /** Starts an empty buffer for the bundle. */
    @StartBundle
    public void startBundle() {
      buffer = new StringBuilder();
    }

    /**
     * Buffers one line.
     *
     * @param line the line, without its newline
     */
    @ProcessElement
    public void processElement(@Element String line) {
      buffer.append(line).append('\n');
    }

    /**
     * Appends the bundle's lines to the file.
     *
     * @throws IOException if the file cannot be written
     */
    @FinishBundle
    public void finishBundle() throws IOException {
      if (buffer.length() == 0) {
        return;
      }
      synchronized (LOCK) {
        Files.write(
            Paths.get(path),
            buffer.toString().getBytes(StandardCharsets.UTF_8),
            StandardOpenOption.CREATE,
            StandardOpenOption.APPEND);
      }
      buffer.setLength(0);
    }
  }

  /**
   * A value as one tab-separated field: tabs and newlines become spaces.
   *
   * @param value any value
   * @return its text, on one line, without tabs
   */
  static String clean(Object value) {
    return String.valueOf(value).replace('\t', ' ').replace('\n', ' ');
  }

  /**
   * Points a transform at the given expansion service, or at a Python to start one with.
   *
   * @param transform the transform
   * @param expansionService host:port, or empty to start a service
   * @param python the Python to start it with, or empty for the default
   * @param <T> the transform's type
   * @return the transform, pointed at its service
   */
  static <T extends AbstractRunInference<?, T>> T withService(
      T transform, String expansionService, String python) {
    if (!expansionService.isEmpty()) {
      return transform.withExpansionService(expansionService);
    }
    return python.isEmpty() ? transform : transform.withPython(python);
  }

  /**
   * Appends each prediction {@code (example, inference, model_id)} with an INT64 inference to a
   * file, one tab-separated line each.
   *
   * @param predictions the predictions
   * @param path the file
   */
  static void writePredictions(PCollection<Row> predictions, String path) {
    appendLines(
        predictions,
        "Predictions",
        path,
        row ->
            line(row.getArray("example"), row.getInt64("inference"), row.getString("model_id")));
  }

  /**
   * Appends each dead letter {@code (element, stage, error)} to a file, one tab-separated line
   * each.
   *
   * @param deadLetters the dead letters
   * @param path the file
   */
  static void writeDeadLetters(PCollection<Row> deadLetters, String path) {
    appendLines(
        deadLetters,
        "DeadLetters",
        path,
        row -> line(row.getString("element"), row.getString("stage"), row.getString("error")));
  }

  /** Formats each row as a line and appends it to the file, in steps named after {@code what}. */
  private static void appendLines(
      PCollection<Row> rows, String what, String path, SerializableFunction<Row, String> format) {
    rows.apply("Format" + what, MapElements.into(TypeDescriptors.strings()).via(format))
        .apply("Write" + what, ParDo.of(new AppendLines(path)));
  }

  /** The values as one line of tab-separated {@link #clean} fields. */
  private static String line(Object... values) {
    StringBuilder line = new StringBuilder();
    for (Object value : values) {
      if (line.length() > 0) {
        line.append('\t');
      }
      line.append(clean(value));
    }
    return line.toString();
  }
}
