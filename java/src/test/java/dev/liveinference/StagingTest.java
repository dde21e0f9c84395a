package dev.liveinference;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;

import java.util.List;
import org.apache.beam.sdk.options.PipelineOptions;
import org.apache.beam.sdk.options.PipelineOptionsFactory;
import org.apache.beam.sdk.options.PortablePipelineOptions;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.junit.runners.JUnit4;

/** Nothing is staged for a LOOPBACK Java environment; anything else is left alone. */
@RunWith(JUnit4.class)
public class StagingTest {

  private static List<String> staged(String... args) {
    PipelineOptions options = PipelineOptionsFactory.fromArgs(args).create();
    return Staging.skipForLoopback(options).as(PortablePipelineOptions.class).getFilesToStage();
  }

  @Test
  public void loopbackStagesNothing() {
    assertEquals(List.of(), staged("--defaultEnvironmentType=LOOPBACK"));
  }

  @Test
  public void filesTheUserListedAndOtherEnvironmentsAreLeftAlone() {
    assertEquals(
        List.of("/jars/a.jar"),
        staged("--defaultEnvironmentType=LOOPBACK", "--filesToStage=/jars/a.jar"));
    assertNull(staged("--defaultEnvironmentType=DOCKER"));
    assertNull(staged());
  }
}
