"""Starts and stops the pieces of a cross-language run on one machine.

The Java pipeline (built by Maven) asks the liveinference expansion service to expand
RunInference at construction time, then submits the whole pipeline to a portable runner
(Prism, or Beam's Flink job server in local mode); the runner starts the Python steps on the
service's worker pool and the Java steps in the Java process (LOOPBACK).

Used by `examples/java_demo.py`, the cross-language tests and `benchmarks/xlang.py`. Every
process started here is stopped by its context manager. Where each piece comes from:
`make java-build` (classes and class path), `make prism`, `make flink-jobserver`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

__all__ = [
    "FLINK_CLASSPATH",
    "JAVA_CLASSPATH",
    "PRISM",
    "ROOT",
    "Running",
    "class_archive",
    "free_port",
    "java_command",
    "missing_pieces",
    "record_class_archive",
    "runner_args",
    "start_flink",
    "start_prism",
    "start_service",
]

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("LIVEINFERENCE_CACHE", Path.home() / ".cache" / "liveinference"))
BEAM_JAVA = "2.62.0"
PRISM = Path(os.environ.get("LIVEINFERENCE_PRISM", CACHE / "prism" / "v2.77.0" / "prism"))
FLINK_CLASSPATH = CACHE / f"flink-jobserver-{BEAM_JAVA}.classpath"
JAVA_CLASSPATH = CACHE / f"java-{BEAM_JAVA}.classpath"
JAVA_CLASSES = ROOT / "java" / "target" / "classes"
JAVA_JAR = ROOT / "java" / "target" / "liveinference-0.1.0.jar"

# Flink 1.19 on Java 17 needs these (Flink's own start scripts pass the same), or jobs fail
# with InaccessibleObjectException.
ADD_OPENS = [
    f"--add-opens=java.base/{package}=ALL-UNNAMED"
    for package in (
        "java.util", "java.lang", "java.lang.reflect", "java.lang.invoke", "java.io", "java.nio",
        "sun.nio.ch", "java.net", "java.util.concurrent", "java.util.concurrent.atomic",
        "java.text", "java.time", "java.math",
    )
]


def free_port() -> int:
    """Returns a TCP port that was free on loopback a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}; see {log}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listened on port {port} within {seconds}s; see {log}")


class Running:
    """A started process with its log file; `stop()` ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, process: subprocess.Popen, log: Path, address: str = "") -> None:
        self.process = process
        self.log = log
        self.address = address
        self.extra: dict = {}

    def stop(self, timeout: float = 15) -> Optional[int]:
        """Stops the process and returns its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_tail(self, lines: int = 30) -> str:
        """The end of the process's log, for failure messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _popen(command: Sequence[str], log: Path, env: Optional[dict] = None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        return subprocess.Popen(
            list(command), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=ROOT,
        )


@contextlib.contextmanager
def start_service(log_dir: Path, *extra: str, port: int = 0,
                  stdin: int = subprocess.DEVNULL) -> Iterator[Running]:
    """Runs `python -m liveinference_expansion serve` on loopback until the block ends.

    Args:
        log_dir: Where the service's log goes.
        *extra: More `serve` flags, e.g. `--process-workers` for Beam's Flink job server,
            which cannot dial the worker pool's Unix socket.
        port: The expansion port; 0 picks a free one.
        stdin: The service's standard input: `subprocess.PIPE` gives the caller
            `.process.stdin` (for `--stop-on-stdin-eof`).

    Yields:
        The running service; `.address` is what it printed, `.extra["workers"]` the
        `unix://` address of its private worker pool (None with `--process-workers`).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "python"), str(ROOT / "expansion"), str(ROOT), env.get("PYTHONPATH", "")]
    )
    env.setdefault("PYTHONWARNINGS", "ignore")
    log = log_dir / "service.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "liveinference_expansion", "serve", "--port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=open(log, "wb"), stdin=stdin,
        env=env, cwd=ROOT, text=True,
    )
    running = Running(process, log)
    try:
        line = process.stdout.readline() if process.stdout else ""
        match = re.search(r"listening on (\S+?)(?:;|$).*?(?:workers at (\S+))?$", line.strip())
        if not match:
            running.stop()
            raise RuntimeError(f"the service printed {line!r}, not its address; see {log}")
        running.address = match.group(1)
        running.extra["workers"] = match.group(2)
        yield running
    finally:
        running.stop()


@contextlib.contextmanager
def start_prism(log_dir: Path) -> Iterator[Running]:
    """Runs Prism's job server on a free loopback port until the block ends."""
    if not PRISM.exists():
        raise FileNotFoundError(f"no Prism binary at {PRISM}; run `make prism`")
    port = free_port()
    log = log_dir / "prism.log"
    process = _popen([str(PRISM), f"--job_port={port}", "--serve_http=false"], log)
    running = Running(process, log, f"localhost:{port}")
    try:
        _wait_for_port(port, process, 60, log)
        yield running
    finally:
        running.stop()


@contextlib.contextmanager
def start_flink(log_dir: Path, flink_master: str = "[local]") -> Iterator[Running]:
    """Runs Beam's Flink job server (Flink in local mode by default) until the block ends."""
    if not FLINK_CLASSPATH.exists():
        raise FileNotFoundError(f"no Flink job server class path at {FLINK_CLASSPATH}; "
                                "run `make flink-jobserver`")
    job, artifact, expansion = free_port(), free_port(), free_port()
    log = log_dir / "flink-jobserver.log"
    process = _popen(
        ["java", *ADD_OPENS, "-cp", FLINK_CLASSPATH.read_text().strip(),
         "org.apache.beam.runners.flink.FlinkJobServerDriver",
         f"--job-port={job}", f"--artifact-port={artifact}", f"--expansion-port={expansion}",
         f"--flink-master={flink_master}"],
        log,
    )
    running = Running(process, log, f"localhost:{job}")
    try:
        _wait_for_port(job, process, 120, log)
        yield running
    finally:
        running.stop()


def runner_args(kind: str, endpoint: str) -> List[str]:
    """The Java pipeline options that submit to `endpoint` ("prism" or "flink")."""
    args = [
        "--runner=PortableRunner",
        f"--jobEndpoint={endpoint}",
        "--defaultEnvironmentType=LOOPBACK",
        f"--defaultEnvironmentConfig=localhost:{free_port()}",
    ]
    if kind == "flink":
        # Without environment caching Flink drops the Java environment after one stage.
        args += ["--environmentCacheMillis=600000"]
    return args


def missing_pieces(*need: str) -> List[str]:
    """Names what `make` has not built yet, of "java", "prism", "flink"."""
    missing = []
    if "java" in need and not (JAVA_CLASSPATH.exists() and JAVA_CLASSES.exists()):
        missing.append(f"the Java build ({JAVA_CLASSES}, {JAVA_CLASSPATH}): run `make java-build`")
    if "prism" in need and not PRISM.exists():
        missing.append(f"Prism ({PRISM}): run `make prism`")
    if "flink" in need and not FLINK_CLASSPATH.exists():
        missing.append(f"the Flink job server ({FLINK_CLASSPATH}): run `make flink-jobserver`")
    return missing


def _current_jar() -> Optional[Path]:
    """The Maven jar when it holds exactly the compiled classes, else None.

    `mvn test` recompiles target/classes without repackaging the jar; the jar still counts
    when every class file in the folder is in it with the same bytes (javac writes the same
    bytes for the same sources), so a recompile alone does not unpack it. When a class
    differs, the folder is the truth, and a folder cannot go into a class-data archive.
    """
    if not JAVA_JAR.exists():
        return None
    with zipfile.ZipFile(JAVA_JAR) as jar:
        packed = {info.filename: info.CRC for info in jar.infolist()}
    for path in JAVA_CLASSES.rglob("*.class"):
        name = path.relative_to(JAVA_CLASSES).as_posix()
        if packed.get(name) != zlib.crc32(path.read_bytes()):
            return None
    return JAVA_JAR


def class_archive() -> Optional[Path]:
    """Where the JVM's class-data archive for the current Java build lives (cached), or None.

    The archive holds the classes a Java job loads, already parsed and verified, so a JVM
    that maps it starts faster. Its name is a digest of the class path and the jar's size
    and time, so a rebuild or a new dependency gets a new archive (the JVM refuses one made
    for other jars). None when the jar does not hold the compiled classes (see
    `_current_jar`). `record_class_archive` makes it; `java_command` uses it once it exists.
    """
    jar = _current_jar()
    if jar is None or not JAVA_CLASSPATH.exists():
        return None
    stat = jar.stat()
    key = f"{JAVA_CLASSPATH.read_text().strip()}|{stat.st_size}|{stat.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return CACHE / f"java-{BEAM_JAVA}-{digest}.jsa"


# Only the JIT's first tier (C1): C2's compiler threads cost these jobs more CPU than its code
# saves. Measured on Prism, 200,000 rows, 3 jobs each: the JVM's CPU 5.8-6.0 -> 3.5 s one row
# per element, 6.5-7.4 -> 3.4 s batched; wall 7.7 -> 7.2 s and 7.1 -> 4.9 s (medians).
_JIT = ["-XX:TieredStopAtLevel=1"]


def _java(main_class: str, jvm_flags: Sequence[str], args: Sequence[str]) -> List[str]:
    jar = _current_jar()
    classpath = f"{jar or JAVA_CLASSES}{os.pathsep}{JAVA_CLASSPATH.read_text().strip()}"
    return ["java", *_JIT, *jvm_flags, "-cp", classpath, main_class, *args]


def java_command(main_class: str, *args: str) -> List[str]:
    """The command that runs `main_class` of the Java build with `args`.

    It maps the class-data archive (`class_archive`) when one was recorded for this build.
    """
    archive = class_archive()
    flags = [f"-XX:SharedArchiveFile={archive}"] if archive and archive.exists() else []
    return _java(main_class, flags, args)


def record_class_archive(main_class: str, *args: str, log: Path,
                         timeout: float) -> Tuple[int, str]:
    """Runs one Java job that writes the class-data archive for the current build at its exit.

    Args:
        main_class: A Java main that runs a representative job (its classes go in).
        *args: Its arguments.
        log: Where the job's output goes.
        timeout: Seconds before the job is killed.

    Returns:
        (exit status, log tail), as `run_logged`. The archive is moved into place only when
        the job succeeded, so a concurrent job never maps a half-written one; archives of
        earlier builds are deleted then (about 50 MB each).

    Raises:
        RuntimeError: The jar does not hold the compiled classes (`make java-build` packs them).
    """
    archive = class_archive()
    if archive is None:
        raise RuntimeError(f"{JAVA_JAR} is missing or differs from {JAVA_CLASSES}: run "
                           "`make java-build` so the classes are packed into the jar")
    partial = archive.with_name(f"{archive.name}.{os.getpid()}.partial")
    status, tail = run_logged(_java(main_class, [f"-XX:ArchiveClassesAtExit={partial}"], args),
                              log, timeout)
    if status == 0 and partial.exists():
        os.replace(partial, archive)
        for stale in archive.parent.glob(f"java-{BEAM_JAVA}-*.jsa"):
            if stale != archive:
                stale.unlink(missing_ok=True)
    else:
        partial.unlink(missing_ok=True)
    return status, tail


def run_logged(command: Sequence[str], log: Path, timeout: float) -> Tuple[int, str]:
    """Runs a command to completion with its output in `log`; returns (status, log tail)."""
    process = _popen(command, log)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    running = Running(process, log)
    return process.returncode, running.log_tail()
