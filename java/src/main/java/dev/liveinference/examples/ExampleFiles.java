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
    predictions
        .apply(
            "FormatPredictions",
            MapElements.into(TypeDescriptors.strings())
                .via(
                    (Row row) ->
                        clean(row.getArray("example"))
                            + "\t"
                            + row.getInt64("inference")
                            + "\t"
                            + clean(row.getString("model_id"))))
        .apply("WritePredictions", ParDo.of(new AppendLines(path)));
  }

  /**
   * Appends each dead letter {@code (element, stage, error)} to a file, one tab-separated line
   * each.
   *
   * @param deadLetters the dead letters
   * @param path the file
   */
  static void writeDeadLetters(PCollection<Row> deadLetters, String path) {
    deadLetters
        .apply(
            "FormatDeadLetters",
            MapElements.into(TypeDescriptors.strings())
                .via(
                    (Row row) ->
                        clean(row.getString("element"))
                            + "\t"
                            + clean(row.getString("stage"))
                            + "\t"
                            + clean(row.getString("error"))))
        .apply("WriteDeadLetters", ParDo.of(new AppendLines(path)));
  }
}
