package dev.liveinference;

import java.util.List;
import java.util.Map;
import org.apache.beam.sdk.coders.Coder;
import org.apache.beam.sdk.coders.KvCoder;
import org.apache.beam.sdk.coders.RowCoder;
import org.apache.beam.sdk.coders.StringUtf8Coder;
import org.apache.beam.sdk.coders.VarLongCoder;
import org.apache.beam.sdk.schemas.Schema;
import org.apache.beam.sdk.schemas.Schema.FieldType;
import org.apache.beam.sdk.schemas.Schema.TypeName;
import org.apache.beam.sdk.values.KV;
import org.apache.beam.sdk.values.PCollection;
import org.apache.beam.sdk.values.PCollectionTuple;
import org.apache.beam.sdk.values.Row;
import org.apache.beam.sdk.values.TupleTag;
import org.checkerframework.checker.nullness.qual.Nullable;

/**
 * Runs a model on every element of a {@code PCollection} with liveinference's RunInference,
 * expanded by the liveinference expansion service ({@code liveinference serve}).
 *
 * <p>The transform only builds the request: model loading, batching, pre- and
 * post-processing, model refresh and dead letters all happen in Python, exactly as for a Python
 * pipeline. The output is one {@link Row} {@code (example, inference, model_id)} per element
 * (a {@code KV<key, Row>} for {@link #ofKVs}).
 *
 * <pre>{@code
 * PCollection<Row> predictions =
 *     lines.apply(
 *         RunInference.of("sklearn_numpy", FieldType.array(FieldType.DOUBLE), FieldType.INT64)
 *             .withHandlerArg("model_uri", "/models/classifier.pkl")
 *             .withPreprocess("liveinference_expansion.functions.parse_csv_floats"));
 * }</pre>
 *
 * <p>Without {@link #withExpansionService} the transform starts {@code liveinference serve}
 * itself, from the Python given by {@link #withPython} (or the {@code liveinference.python}
 * system property, the {@code LIVEINFERENCE_PYTHON} environment variable, or {@code python3}),
 * and stops it when the JVM exits.
 *
 * <p>The builder methods are those of {@link AbstractRunInference}; each returns a new
 * transform, and a transform is never changed. {@link #withExceptionHandling()} turns the
 * transform into one whose output also holds the dead letters; the same builder methods stay
 * available on it.
 *
 * @param <OutputT> {@link Row} or {@code KV<key, Row>}
 */
public final class RunInference<OutputT>
    extends AbstractRunInference<PCollection<OutputT>, RunInference<OutputT>> {

  private static final long serialVersionUID = 1L;

  /** The qualified name of the Python transform the expansion service exposes. */
  public static final String TRANSFORM_NAME =
      "liveinference_expansion.transform.ConfiguredRunInference";

  /** The output tag of the predictions, as named by the Python transform. */
  static final String PREDICTIONS = "predictions";

  /** The output tag of the dead letters, as named by the Python transform. */
  static final String DEAD_LETTERS = "dead_letters";

  /** The schema of a dead letter: the element (as text), the stage it failed at, the error. */
  public static final Schema DEAD_LETTER_SCHEMA =
      Schema.builder()
          .addStringField("element")
          .addStringField("stage")
          .addStringField("error")
          .build();

  private RunInference(Config config, @Nullable PCollection<?> modelUpdates) {
    super(config, modelUpdates);
  }

  /**
   * Runs a model on unkeyed examples.
   *
   * @param handler the name of a handler the expansion service knows, such as {@code
   *     sklearn_numpy}; a service that does not know it refuses the request at {@code apply}
   *     time, listing the names it knows
   * @param exampleType the type of {@code example} in the output (after preprocessing): INT64,
   *     INT32, INT16, DOUBLE, FLOAT, STRING, BOOLEAN, BYTES, or an array of one of them
   * @param inferenceType the type of {@code inference} in the output, likewise
   * @return the transform, starting its own expansion service unless given one
   * @throws IllegalArgumentException if the handler name is not a Python identifier (dots
   *     allowed), or a type is null or not supported
   */
  public static RunInference<Row> of(
      String handler, FieldType exampleType, FieldType inferenceType) {
    return new RunInference<>(Config.of(handler, exampleType, inferenceType), null);
  }

  /**
   * Runs a model on {@code KV<key, example>} pairs; the output keeps each key.
   *
   * @param handler the handler name, as for {@link #of}
   * @param keyType the type of the keys: STRING or INT64
   * @param exampleType the type of {@code example} in the output, as for {@link #of}
   * @param inferenceType the type of {@code inference} in the output, as for {@link #of}
   * @param <KeyT> {@code String} for STRING keys, {@code Long} for INT64 keys
   * @return the transform, producing {@code KV<key, Row>}
   * @throws IllegalArgumentException if the handler name is malformed or a type is null or not
   *     supported
   */
  public static <KeyT> RunInference<KV<KeyT, Row>> ofKVs(
      String handler, FieldType keyType, FieldType exampleType, FieldType inferenceType) {
    return new RunInference<>(
        Config.of(handler, exampleType, inferenceType).keyed(keyType), null);
  }

  /**
   * Runs a model per key on {@code KV<key, example>} pairs: each key's examples go to the model
   * of the {@link KeyModelMapping} that lists the key (models load on first use; see {@link
   * #withMaxModelsPerWorker}). The output keeps each key, and each prediction's {@code model_id}
   * names its key's model.
   *
   * <pre>{@code
   * RunInference.<String>ofKVs(FieldType.STRING, FieldType.array(FieldType.DOUBLE),
   *     FieldType.INT64,
   *     List.of(
   *         KeyModelMapping.of(List.of("eu"), "onnx_numpy").withHandlerArg("model_uri", eu),
   *         KeyModelMapping.of(List.of("us"), "xgboost_numpy")
   *             .withHandlerArg("model_class", "xgboost.XGBClassifier")
   *             .withHandlerArg("model_state", us)))
   * }</pre>
   *
   * @param keyType the type of the keys: STRING or INT64
   * @param exampleType the type of {@code example} in the output, as for {@link #of}
   * @param inferenceType the type of {@code inference} in the output, as for {@link #of}
   * @param keyModels which model serves which keys; a key may appear in one mapping only (the
   *     service refuses a key listed twice)
   * @param <KeyT> {@code String} for STRING keys, {@code Long} for INT64 keys
   * @return the transform, producing {@code KV<key, Row>}
   * @throws IllegalArgumentException if there is no mapping, a mapping's keys do not match
   *     {@code keyType}, or a type is null or not supported
   */
  public static <KeyT> RunInference<KV<KeyT, Row>> ofKVs(
      FieldType keyType,
      FieldType exampleType,
      FieldType inferenceType,
      List<KeyModelMapping> keyModels) {
    return new RunInference<>(
        Config.ofKeyModels(keyType, exampleType, inferenceType, keyModels), null);
  }

  /**
   * The schema of a prediction: {@code example}, {@code inference}, and a nullable {@code
   * model_id} naming the model version that made it.
   *
   * @param exampleType the type of {@code example}
   * @param inferenceType the type of {@code inference}
   * @return the schema
   */
  public static Schema predictionSchema(FieldType exampleType, FieldType inferenceType) {
    return Schema.builder()
        .addField("example", exampleType)
        .addField("inference", inferenceType)
        .addNullableField("model_id", FieldType.STRING)
        .build();
  }

  /**
   * Sends elements that fail (in preprocessing, model loading, inference or postprocessing),
   * rejected model versions and malformed model updates to a dead-letter output instead of
   * failing the pipeline.
   *
   * @return a transform with the same settings whose output holds the predictions and the dead
   *     letters
   */
  public WithExceptionHandling<OutputT> withExceptionHandling() {
    return new WithExceptionHandling<>(config.withExceptionHandling(), modelUpdates);
  }

  @Override
  RunInference<OutputT> with(Config changed, @Nullable PCollection<?> updates) {
    return new RunInference<>(changed, updates);
  }

  /**
   * Expands the transform through the expansion service.
   *
   * @param input the examples
   * @return the predictions
   * @throws IllegalStateException if the service cannot be reached
   * @throws IllegalArgumentException if the service refused the request
   */
  @Override
  public PCollection<OutputT> expand(PCollection<?> input) {
    PCollectionTuple outputs = ExpansionCall.expand(input, modelUpdates, config);
    Map<TupleTag<?>, PCollection<?>> all = outputs.getAll();
    if (all.size() != 1) {
      throw new IllegalStateException(
          "the expansion service returned outputs "
              + all.keySet()
              + ", expected one; is it a liveinference service of the same version?");
    }
    @SuppressWarnings("unchecked")
    Coder<OutputT> coder = (Coder<OutputT>) predictionCoder(config);
    return CrossingBatch.predictions(
        all.values().iterator().next(), coder, config.crossingBatch());
  }

  /**
   * {@link RunInference} with a dead-letter output; see {@link
   * RunInference#withExceptionHandling}. It has the same builder methods, so they may be called
   * before or after {@code withExceptionHandling()}.
   *
   * @param <OutputT> {@link Row} or {@code KV<key, Row>}
   */
  public static final class WithExceptionHandling<OutputT>
      extends AbstractRunInference<InferenceResult<OutputT>, WithExceptionHandling<OutputT>> {

    private static final long serialVersionUID = 1L;

    private WithExceptionHandling(Config config, @Nullable PCollection<?> modelUpdates) {
      super(config, modelUpdates);
    }

    @Override
    WithExceptionHandling<OutputT> with(Config changed, @Nullable PCollection<?> updates) {
      return new WithExceptionHandling<>(changed, updates);
    }

    /**
     * Expands the transform through the expansion service.
     *
     * @param input the examples
     * @return the predictions and the dead letters
     * @throws IllegalStateException if the service cannot be reached or returns other outputs
     * @throws IllegalArgumentException if the service refused the request
     */
    @Override
    public InferenceResult<OutputT> expand(PCollection<?> input) {
      PCollectionTuple outputs = ExpansionCall.expand(input, modelUpdates, config);
      TupleTag<OutputT> predictionsTag = new TupleTag<>(PREDICTIONS);
      TupleTag<Row> deadLettersTag = new TupleTag<>(DEAD_LETTERS);
      Map<TupleTag<?>, PCollection<?>> all = outputs.getAll();
      if (!all.containsKey(predictionsTag) || !all.containsKey(deadLettersTag)) {
        throw new IllegalStateException(
            "the expansion service returned outputs "
                + all.keySet()
                + ", expected "
                + PREDICTIONS
                + " and "
                + DEAD_LETTERS
                + "; is it a liveinference service of the same version?");
      }
      @SuppressWarnings("unchecked")
      Coder<OutputT> coder = (Coder<OutputT>) predictionCoder(config);
      PCollection<OutputT> predictions =
          CrossingBatch.predictions(outputs.get(predictionsTag), coder, config.crossingBatch());
      PCollection<Row> deadLetters =
          outputs.get(deadLettersTag).setCoder(RowCoder.of(DEAD_LETTER_SCHEMA));
      return new InferenceResult<>(
          input.getPipeline(), predictionsTag, predictions, deadLettersTag, deadLetters);
    }
  }

  /** The coder of one prediction: RowCoder, or KvCoder of the key and a RowCoder. */
  static Coder<?> predictionCoder(Config config) {
    RowCoder rows = RowCoder.of(predictionSchema(config.exampleType(), config.inferenceType()));
    FieldType keyType = config.keyType();
    if (keyType == null) {
      return rows;
    }
    Coder<?> keys =
        keyType.getTypeName() == TypeName.STRING ? StringUtf8Coder.of() : VarLongCoder.of();
    return KvCoder.of(keys, rows);
  }
}
