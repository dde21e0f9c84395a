package dev.liveinference;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import org.apache.beam.sdk.Pipeline;
import org.apache.beam.sdk.PipelineResult;
import org.apache.beam.sdk.transforms.Create;
import org.apache.beam.sdk.transforms.DoFn;
import org.apache.beam.sdk.transforms.ParDo;
import org.joda.time.Duration;
import org.junit.Assume;
import org.junit.Test;

/**
 * {@link JobCompletion} returns a job's final state once the job has ended, and a failed job's
 * error, on a real portable runner: the Prism job server named by {@code
 * -Dliveinference.jobEndpoint} (tests/xlang/test_java_pipelines.py passes it).
 */
public class JobCompletionTest {

  private static final String JOB_ENDPOINT = System.getProperty("liveinference.jobEndpoint", "");

  /** Takes a while per element, so the job is still running when the wait begins. */
  static class Slowly extends DoFn<Integer, Integer> {
    @ProcessElement
    public void process(@Element Integer element, OutputReceiver<Integer> out)
        throws InterruptedException {
      Thread.sleep(300);
      out.output(element);
    }
  }

  /** Fails on the element 2, naming it. */
  static class FailsOnTwo extends DoFn<Integer, Integer> {
    @ProcessElement
    public void process(@Element Integer element, OutputReceiver<Integer> out) {
      if (element == 2) {
        throw new IllegalStateException("element two is refused by this test");
      }
      out.output(element);
    }
  }

  @Test
  public void returnsTheFinalStateOnceTheJobHasEnded() throws Exception {
    Assume.assumeFalse("no -Dliveinference.jobEndpoint given", JOB_ENDPOINT.isEmpty());
    Pipeline pipeline = TestPipelines.prismPipeline(JOB_ENDPOINT);
    pipeline.apply(Create.of(1, 2, 3)).apply(ParDo.of(new Slowly()));
    PipelineResult result = pipeline.run();

    PipelineResult.State state = JobCompletion.waitUntilFinish(result, Duration.millis(20));

    assertEquals(PipelineResult.State.DONE, state);
    assertTrue(result.getState().isTerminal());
  }

  @Test
  public void reportsTheErrorOfAFailedJob() throws Exception {
    Assume.assumeFalse("no -Dliveinference.jobEndpoint given", JOB_ENDPOINT.isEmpty());
    Pipeline pipeline = TestPipelines.prismPipeline(JOB_ENDPOINT);
    pipeline.apply(Create.of(1, 2, 3)).apply(ParDo.of(new FailsOnTwo()));
    PipelineResult result = pipeline.run();

    RuntimeException error =
        assertThrows(RuntimeException.class, () -> JobCompletion.waitUntilFinish(result));

    assertTrue(error.toString(), error.toString().contains("element two is refused"));
  }
}
