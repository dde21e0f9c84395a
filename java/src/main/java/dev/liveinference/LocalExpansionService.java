package dev.liveinference;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.checkerframework.checker.nullness.qual.Nullable;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A {@code liveinference serve} started by this JVM on a free loopback port, from a configured
 * Python, as Beam's Java starts Python expansion services for its own cross-language transforms.
 *
 * <p>A transform given no expansion service address starts one itself: one per Python and
 * arguments, shared by every transform that asks for the same, stopped when the JVM exits. The
 * service also runs the pipeline's Python workers (its worker pool), so it must live until the
 * pipeline has finished, not only while the pipeline is built. To stop it as soon as the
 * pipeline finishes, start one yourself and close it after {@code waitUntilFinish()}:
 *
 * <pre>{@code
 * try (LocalExpansionService service = LocalExpansionService.start("/opt/venv/bin/python")) {
 *   lines.apply(RunInference.of(...).withExpansionService(service.address()));
 *   pipeline.run().waitUntilFinish();
 * }
 * }</pre>
 */
public final class LocalExpansionService implements AutoCloseable {

  /** The system property that names the Python to start the service with. */
  static final String PYTHON_PROPERTY = "liveinference.python";

  /** The environment variable that names the Python, when the property is not set. */
  static final String PYTHON_ENV = "LIVEINFERENCE_PYTHON";

  private static final Logger LOG = LoggerFactory.getLogger(LocalExpansionService.class);
  private static final long STARTUP_SECONDS = 180;
  private static final long STOP_SECONDS = 15;
  private static final Pattern ADDRESS = Pattern.compile("listening on (\\S+?)(?:;|$)");
  private static final Map<List<String>, LocalExpansionService> STARTED = new HashMap<>();

  private final Process process;
  private final String address;
  private final Thread stopAtExit;

  private LocalExpansionService(Process process, String address, Thread stopAtExit) {
    this.process = process;
    this.address = address;
    this.stopAtExit = stopAtExit;
  }

  /**
   * Starts {@code liveinference serve} on a free loopback port; the caller stops it with {@link
   * #close()} (or it stops when the JVM exits).
   *
   * @param python a Python that has liveinference installed
   * @param args further arguments of {@code liveinference serve}, such as {@code
   *     "--allow-module", "mypkg.features"}
   * @return the running service
   * @throws IllegalArgumentException if {@code python} is null or blank
   * @throws IllegalStateException if the service cannot be started, or prints no address within
   *     three minutes
   */
  public static LocalExpansionService start(String python, String... args) {
    if (python == null || python.isBlank()) {
      throw new IllegalArgumentException(
          "LocalExpansionService.start needs the path of a Python that has liveinference"
              + " installed, got "
              + Config.quote(python));
    }
    return launch(command(python, List.of(args)));
  }

  /**
   * The address to give {@link AbstractRunInference#withExpansionService}.
   *
   * @return {@code host:port} on loopback
   */
  public String address() {
    return address;
  }

  /** Stops the service (and the Python workers it started); does nothing if it has stopped. */
  @Override
  public void close() {
    stop(process);
    try {
      Runtime.getRuntime().removeShutdownHook(stopAtExit);
    } catch (IllegalStateException shuttingDown) {
      // The JVM is exiting and runs the hook anyway.
    }
  }

  /**
   * The address of the service started with this Python and these arguments, starting it if
   * this JVM has none running yet.
   *
   * @param python the configured Python, or null for the property, the environment, python3
   * @param args further arguments of {@code liveinference serve}
   * @return the service's {@code host:port}
   * @throws IllegalStateException if the service cannot be started, or prints no address within
   *     three minutes
   */
  static synchronized String addressFor(@Nullable String python, List<String> args) {
    List<String> command = command(resolvePython(python), args);
    LocalExpansionService running = STARTED.get(command);
    if (running == null || !running.process.isAlive()) {
      running = launch(command);
      STARTED.put(command, running);
    }
    return running.address;
  }

  /** The Python to use: the configured one, else the system property, the environment, python3. */
  static String resolvePython(@Nullable String configured) {
    if (configured != null) {
      return configured;
    }
    String property = System.getProperty(PYTHON_PROPERTY);
    if (property != null && !property.isBlank()) {
      return property;
    }
    String environment = System.getenv(PYTHON_ENV);
    return environment != null && !environment.isBlank() ? environment : "python3";
  }

  /** The command line that starts the service on a free loopback port. */
  static List<String> command(String python, List<String> args) {
    List<String> command = new ArrayList<>();
    command.add(python);
    command.addAll(
        List.of(
            "-m", "liveinference_expansion", "serve", "--host", "127.0.0.1", "--port", "0",
            "--stop-on-stdin-eof"));
    command.addAll(args);
    return List.copyOf(command);
  }

  private static LocalExpansionService launch(List<String> command) {
    String python = command.get(0);
    Path log;
    Process process;
    try {
      log = Files.createTempFile("liveinference-serve-", ".log");
      process =
          new ProcessBuilder(command)
              .redirectError(log.toFile())
              .redirectInput(ProcessBuilder.Redirect.PIPE)
              .start();
    } catch (IOException error) {
      throw new IllegalStateException(
          "cannot start the liveinference expansion service with "
              + String.join(" ", command)
              + " ("
              + error.getMessage()
              + "); name a Python that has liveinference installed with withPython(path), -D"
              + PYTHON_PROPERTY
              + "=path or "
              + PYTHON_ENV
              + ", or start `liveinference serve` yourself and give withExpansionService"
              + "(\"host:port\")",
          error);
    }
    Thread stopAtExit = new Thread(() -> stop(process), "liveinference-serve-stop");
    Runtime.getRuntime().addShutdownHook(stopAtExit);
    String line = firstLine(process, command, log);
    Matcher match = ADDRESS.matcher(line.strip());
    if (!match.find()) {
      stop(process);
      throw new IllegalStateException(
          "the liveinference expansion service started with " + python + " printed \""
              + line.strip() + "\" instead of its address; see " + log);
    }
    String address = match.group(1);
    LOG.info(
        "started liveinference serve (pid {}) at {} with {}; its log: {}",
        process.pid(),
        address,
        python,
        log);
    return new LocalExpansionService(process, address, stopAtExit);
  }

  /**
   * The first line the service prints (its address); a daemon thread then keeps reading its
   * output so that the service never blocks on a full pipe.
   */
  private static String firstLine(Process process, List<String> command, Path log) {
    CompletableFuture<String> first = new CompletableFuture<>();
    Thread reader =
        new Thread(
            () -> {
              try (BufferedReader out =
                  new BufferedReader(
                      new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
                String line = out.readLine();
                first.complete(line == null ? "" : line);
                while (out.readLine() != null) {
                  // Keep draining: the service prints one more line when it stops.
                }
              } catch (IOException error) {
                first.complete("");
              }
            },
            "liveinference-serve-output");
    reader.setDaemon(true);
    reader.start();
    try {
      String line = first.get(STARTUP_SECONDS, TimeUnit.SECONDS);
      if (line.isEmpty()) {
        stop(process);
        throw new IllegalStateException(
            "the liveinference expansion service exited ("
                + exitStatus(process)
                + ") before printing its address: "
                + String.join(" ", command)
                + "\n"
                + tail(log)
                + "\nis liveinference installed in that Python? name another with withPython"
                + "(path), -D"
                + PYTHON_PROPERTY
                + " or "
                + PYTHON_ENV);
      }
      return line;
    } catch (TimeoutException | ExecutionException error) {
      stop(process);
      throw new IllegalStateException(
          "the liveinference expansion service printed no address within "
              + STARTUP_SECONDS
              + " s: "
              + String.join(" ", command)
              + "\n"
              + tail(log),
          error);
    } catch (InterruptedException interrupted) {
      Thread.currentThread().interrupt();
      stop(process);
      throw new IllegalStateException("interrupted while starting the expansion service");
    }
  }

  private static String exitStatus(Process process) {
    try {
      return process.waitFor(STOP_SECONDS, TimeUnit.SECONDS)
          ? "status " + process.exitValue()
          : "still running";
    } catch (InterruptedException interrupted) {
      Thread.currentThread().interrupt();
      return "unknown status";
    }
  }

  /** The last lines of the service's log, for error messages. */
  private static String tail(Path log) {
    try {
      List<String> lines = Files.readAllLines(log, StandardCharsets.UTF_8);
      return String.join("\n", lines.subList(Math.max(0, lines.size() - 20), lines.size()));
    } catch (IOException error) {
      return "(its log " + log + " cannot be read: " + error.getMessage() + ")";
    }
  }

  /** Stops the service (SIGTERM, which also stops its workers), then kills it if it hangs. */
  private static void stop(Process process) {
    if (!process.isAlive()) {
      return;
    }
    process.destroy();
    try {
      if (!process.waitFor(STOP_SECONDS, TimeUnit.SECONDS)) {
        process.destroyForcibly();
      }
    } catch (InterruptedException interrupted) {
      process.destroyForcibly();
      Thread.currentThread().interrupt();
    }
    LOG.info("stopped liveinference serve (pid {})", process.pid());
  }
}
