package dev.liveinference;

import java.util.Map;
import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.transforms.PTransform;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.PInput;
import org.apache.beam.sdk.values.POutput;
import org.apache.beam.sdk.values.PValue;
import org.apache.beam.sdk.values.Row;
import org.apache.beam.sdk.values.TupleTag;

/**
 * The output of {@link RunInference#withExceptionHandling()}: the predictions, and one dead
 * letter {@code Row(element, stage, error)} per element that failed.
 *
 * <p>Every input element is in exactly one of the two.
 *
 * @param <OutputT> {@link Row} or {@code KV<key, Row>}
 */
public final class InferenceResult<OutputT> implements POutput {

  private final Pipeline pipeline;
  private final TupleTag<OutputT> predictionsTag;
  private final PCollection<OutputT> predictions;
  private final TupleTag<Row> deadLettersTag;
  private final PCollection<Row> deadLetters;

  InferenceResult(
      Pipeline pipeline,
      TupleTag<OutputT> predictionsTag,
      PCollection<OutputT> predictions,
      TupleTag<Row> deadLettersTag,
      PCollection<Row> deadLetters) {
    this.pipeline = pipeline;
    this.predictionsTag = predictionsTag;
    this.predictions = predictions;
    this.deadLettersTag = deadLettersTag;
    this.deadLetters = deadLetters;
  }

  /**
   * The predictions: {@code Row(example, inference, model_id)}, or {@code KV<key, Row>}.
   *
   * @return the predictions
   */
  public PCollection<OutputT> getPredictions() {
    return predictions;
  }

  /**
   * The dead letters: {@code Row(element, stage, error)} with the schema {@link
   * RunInference#DEAD_LETTER_SCHEMA}; {@code stage} is {@code preprocess[i]}, {@code
   * load_model}, {@code inference} or {@code postprocess[i]}.
   *
   * @return the dead letters
   */
  public PCollection<Row> getDeadLetters() {
    return deadLetters;
  }

  @Override
  public Pipeline getPipeline() {
    return pipeline;
  }

  @Override
  public Map<TupleTag<?>, PValue> expand() {
    return Map.of(predictionsTag, predictions, deadLettersTag, deadLetters);
  }

  @Override
  public void finishSpecifyingOutput(
      String transformName, PInput input, PTransform<?, ?> transform) {}
}
