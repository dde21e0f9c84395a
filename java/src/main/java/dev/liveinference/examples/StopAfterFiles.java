package dev.liveinference.examples;

import org.apache.beam.sdk.coders.Coder;
import org.apache.beam.sdk.coders.InstantCoder;
import org.apache.beam.sdk.coders.KvCoder;
import org.apache.beam.sdk.coders.VarIntCoder;
import org.apache.beam.sdk.transforms.Watch;
import org.apache.beam.sdk.values.KV;
import org.joda.time.Duration;
import org.joda.time.Instant;

/**
 * Stops watching the input pattern once a number of polls found new files and a short grace
 * passed, or once no new file came for a longer idle time; whichever is first.
 *
 * <p>State: how many polls found new files, and when the last one did.
 */
final class StopAfterFiles<InputT>
    implements Watch.Growth.TerminationCondition<InputT, KV<Integer, Instant>> {

  private static final long serialVersionUID = 1L;
  private static final Duration GRACE = Duration.standardSeconds(2);
  private final int expectedPolls;
  private final Duration idle;

  StopAfterFiles(int expectedPolls, Duration idle) {
    this.expectedPolls = expectedPolls;
    this.idle = idle;
  }

  @Override
  public Coder<KV<Integer, Instant>> getStateCoder() {
    return KvCoder.of(VarIntCoder.of(), InstantCoder.of());
  }

  @Override
  public KV<Integer, Instant> forNewInput(Instant now, InputT input) {
    return KV.of(0, now);
  }

  @Override
  public KV<Integer, Instant> onSeenNewOutput(Instant now, KV<Integer, Instant> state) {
    return KV.of(state.getKey() + 1, now);
  }

  @Override
  public boolean canStopPolling(Instant now, KV<Integer, Instant> state) {
    Duration quiet = new Duration(state.getValue(), now);
    boolean allSeen = expectedPolls > 0 && state.getKey() >= expectedPolls;
    return (allSeen && quiet.isLongerThan(GRACE)) || quiet.isLongerThan(idle);
  }

  @Override
  public String toString(KV<Integer, Instant> state) {
    return "StopAfterFiles{seen=" + state.getKey() + " of " + expectedPolls + ", last new at "
        + state.getValue() + ", idle limit " + idle + "}";
  }
}
