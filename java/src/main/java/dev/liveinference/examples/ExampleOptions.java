package dev.liveinference.examples;

import org.apache.beam.sdk.options.Default;
import org.apache.beam.sdk.options.Description;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.Validation;

/**
 * The options the examples share; each example's {@code Options} extends the groups it uses
 * and declares its own input (a file, a watched pattern, keyed rows).
 */
public final class ExampleOptions {

  private ExampleOptions() {}

  /** Where an example appends its predictions. */
  public interface Predictions extends PipelineOptions {
    /**
     * Where predictions are appended, one tab-separated line each.
     *
     * @return the path
     */
    @Description("Predictions output file (appended)")
    @Validation.Required
    String getPredictions();

    /**
     * Sets the predictions file.
     *
     * @param value the path
     */
    void setPredictions(String value);
  }

  /** The scikit-learn model an example starts with. */
  public interface ModelFile extends PipelineOptions {
    /**
     * The scikit-learn model file (pickle).
     *
     * @return the path
     */
    @Description("scikit-learn model file (pickle)")
    @Validation.Required
    String getModel();

    /**
     * Sets the model file.
     *
     * @param value the path
     */
    void setModel(String value);
  }

  /**
   * The options of an example on liveinference's Java RunInference: its dead letters, and the
   * expansion service to use or the Python to start one with.
   */
  public interface Liveinference extends Predictions {
    /**
     * Where dead letters are appended: element, stage, error per line.
     *
     * @return the path
     */
    @Description("Dead-letter output file (appended)")
    @Validation.Required
    String getDeadLetters();

    /**
     * Sets the dead-letter file.
     *
     * @param value the path
     */
    void setDeadLetters(String value);

    /**
     * The liveinference expansion service; empty to start one.
     *
     * @return host:port, or empty
     */
    @Description("liveinference expansion service, host:port (empty: start one with --python)")
    @Default.String("")
    String getExpansionService();

    /**
     * Sets the expansion service.
     *
     * @param value host:port
     */
    void setExpansionService(String value);

    /**
     * The Python that runs the expansion service this program starts (without {@code
     * --expansionService}); empty for the default.
     *
     * @return the Python executable, or empty
     */
    @Description("Python with liveinference, to start the expansion service (empty: default)")
    @Default.String("")
    String getPython();

    /**
     * Sets the Python that runs the started expansion service.
     *
     * @param value the Python executable
     */
    void setPython(String value);
  }
}
