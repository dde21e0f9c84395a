package dev.liveinference;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.beam.sdk.coders.Coder;
import org.apache.beam.sdk.coders.IterableCoder;
import org.apache.beam.sdk.transforms.DoFn;
import org.apache.beam.sdk.transforms.Flatten;
import org.apache.beam.sdk.transforms.ParDo;
import org.apache.beam.sdk.transforms.windowing.BoundedWindow;
import org.apache.beam.sdk.values.PCollection;
import org.checkerframework.checker.nullness.qual.Nullable;
import org.joda.time.Duration;

/**
 * How many rows cross to Python in one element (see {@link
 * AbstractRunInference#withCrossingBatch}): the rows of a bundle are grouped, per window, into
 * batches of at most {@code maxRows} rows; a batch also leaves once its first row has waited
 * {@code maxWait} (checked as rows arrive) and when the bundle ends. Python returns each batch
 * as one element of prediction Rows, flattened here.
 */
final class CrossingBatch implements Serializable {

  private static final long serialVersionUID = 1L;

  private final int maxRows;
  private final Duration maxWait;

  private CrossingBatch(int maxRows, Duration maxWait) {
    this.maxRows = maxRows;
    this.maxWait = maxWait;
  }

  /** Checks and holds the limits; see {@link AbstractRunInference#withCrossingBatch}. */
  static CrossingBatch of(int maxRows, @Nullable Duration maxWait) {
    if (maxRows < 1 || maxWait == null || maxWait.getMillis() <= 0) {
      throw new IllegalArgumentException(
          "withCrossingBatch: maxRows must be at least 1 and maxWait a positive duration, got "
              + maxRows
              + " and "
              + maxWait
              + "; for example withCrossingBatch(500, Duration.millis(100))");
    }
    return new CrossingBatch(maxRows, maxWait);
  }

  /** The input grouped into batches, one element each, coded as Python reads a list. */
  <T> PCollection<Iterable<T>> group(PCollection<T> input) {
    return input
        .apply("CrossingBatches", ParDo.of(new BatchRows<T>(maxRows, maxWait.getMillis())))
        .setCoder(IterableCoder.of(input.getCoder()));
  }

  /**
   * The predictions, one per element: {@code output} as Python returns it (a batch of
   * predictions per element when {@code batch} is given, flattened here) with {@code coder}.
   */
  static <T> PCollection<T> predictions(
      PCollection<?> output, Coder<T> coder, @Nullable CrossingBatch batch) {
    @SuppressWarnings("unchecked")
    PCollection<T> predictions = (PCollection<T>) output;
    if (batch == null) {
      return predictions.setCoder(coder);
    }
    @SuppressWarnings("unchecked")
    PCollection<Iterable<T>> batches = (PCollection<Iterable<T>>) output;
    return batches
        .setCoder(IterableCoder.of(coder))
        .apply("FlattenCrossingBatches", Flatten.iterables());
  }

  @Override
  public String toString() {
    return "CrossingBatch{maxRows=" + maxRows + ", maxWait=" + maxWait + "}";
  }

  /** Groups the rows of a bundle, per window, into lists of at most {@code maxRows}. */
  static final class BatchRows<T> extends DoFn<T, Iterable<T>> {

    private static final long serialVersionUID = 1L;

    private final int maxRows;
    private final long maxWaitMillis;
    private transient @Nullable Map<BoundedWindow, Open<T>> open;

    BatchRows(int maxRows, long maxWaitMillis) {
      this.maxRows = maxRows;
      this.maxWaitMillis = maxWaitMillis;
    }

    /** Starts a bundle with no open batch. */
    @StartBundle
    public void startBundle() {
      open = new HashMap<>();
    }

    /**
     * Adds the row to its window's batch; emits the batch once full or old enough.
     *
     * @param row the row
     * @param window its window
     * @param out where full batches go
     */
    @ProcessElement
    public void processElement(
        @Element T row, BoundedWindow window, OutputReceiver<Iterable<T>> out) {
      Map<BoundedWindow, Open<T>> batches = openBatches();
      Open<T> batch = batches.computeIfAbsent(window, unused -> new Open<>());
      batch.rows.add(row);
      if (batch.rows.size() >= maxRows
          || System.currentTimeMillis() - batch.startedMillis >= maxWaitMillis) {
        batches.remove(window);
        out.output(batch.rows);
      }
    }

    /**
     * Emits every batch still open, at the end of its window.
     *
     * @param context where they go
     */
    @FinishBundle
    public void finishBundle(FinishBundleContext context) {
      for (Map.Entry<BoundedWindow, Open<T>> entry : openBatches().entrySet()) {
        BoundedWindow window = entry.getKey();
        context.output(entry.getValue().rows, window.maxTimestamp(), window);
      }
      openBatches().clear();
    }

    private Map<BoundedWindow, Open<T>> openBatches() {
      Map<BoundedWindow, Open<T>> batches = open;
      if (batches == null) {
        batches = new HashMap<>();
        open = batches;
      }
      return batches;
    }
  }

  /** A batch being filled: its rows, and when its first row came. */
  private static final class Open<T> {
    final List<T> rows = new ArrayList<>();
    final long startedMillis = System.currentTimeMillis();
  }
}
