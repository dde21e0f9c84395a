package dev.liveinference;

import java.util.List;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PortablePipelineOptions;

/**
 * What a portable Java pipeline stages with its job.
 *
 * <p>Beam's {@code PortableRunner} stages the whole class path (for this project's examples, 57
 * jars, 61 MB) with every job unless {@code --filesToStage} says otherwise. With a {@code
 * LOOPBACK} Java environment the Java steps run inside the launching JVM, which already has
 * every class, so the runner never starts a Java worker and the jars are never read: staging
 * them only costs time (about 2 seconds a job on Prism).
 */
public final class Staging {

  /** Beam's name of the environment that runs the Java steps in the launching JVM. */
  static final String LOOPBACK = "LOOPBACK";

  private Staging() {}

  /**
   * Stages nothing for a pipeline whose Java steps run in the launching JVM: with {@code
   * --defaultEnvironmentType=LOOPBACK} and no {@code --filesToStage} given, sets the files to
   * stage to an empty list. Any other environment, or a list the user gave, is left as it is.
   *
   * @param options the pipeline's options, before {@code Pipeline.create}
   * @return {@code options}, for chaining
   * @throws IllegalArgumentException if {@code options} is null
   */
  public static PipelineOptions skipForLoopback(PipelineOptions options) {
    if (options == null) {
      throw new IllegalArgumentException(
          "skipForLoopback needs the pipeline's options, got null");
    }
    PortablePipelineOptions portable = options.as(PortablePipelineOptions.class);
    if (LOOPBACK.equals(portable.getDefaultEnvironmentType())
        && portable.getFilesToStage() == null) {
      portable.setFilesToStage(List.of());
    }
    return options;
  }
}
