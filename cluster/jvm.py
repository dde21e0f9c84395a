"""Java command lines for the cluster's processes, from the Flink job server's class path.

`make flink-jobserver` resolves Beam 2.62.0's Flink runner with Maven and writes its class path
(Flink 1.19 included) to ~/.cache/liveinference/flink-jobserver-2.62.0.classpath; the
JobManager, the TaskManagers and the job server all run from it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import List, Tuple

from examples.xlang_runtime import ADD_OPENS, FLINK_CLASSPATH

__all__ = [
    "ADD_OPENS",
    "JOBMANAGER_MAIN",
    "JOB_SERVER_MAIN",
    "TASKMANAGER_MAIN",
    "classpath",
    "java_command",
    "memory_flags",
]

JOBMANAGER_MAIN = "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint"
TASKMANAGER_MAIN = "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"
JOB_SERVER_MAIN = "org.apache.beam.runners.flink.FlinkJobServerDriver"
_BASH_JAVA_UTILS = "org.apache.flink.runtime.util.bash.BashJavaUtils"
_RESULT_PREFIX = "BASH_JAVA_UTILS_EXEC_RESULT:"


def classpath() -> str:
    """The Flink job server's class path.

    Raises:
        FileNotFoundError: `make flink-jobserver` has not run.
    """
    if not FLINK_CLASSPATH.exists():
        raise FileNotFoundError(
            f"no Flink class path at {FLINK_CLASSPATH}; run `make flink-jobserver` first"
        )
    return FLINK_CLASSPATH.read_text().strip()


def java_command(main_class: str, jvm_args: List[str], args: List[str]) -> List[str]:
    """`java <--add-opens> <jvm_args> -cp <class path> main_class <args>`."""
    return ["java", *ADD_OPENS, *jvm_args, "-cp", classpath(), main_class, *args]


def memory_flags(kind: str, conf_dir: Path) -> Tuple[List[str], List[str]]:
    """Flink's JVM memory flags for a process, as Flink's start scripts compute them.

    Args:
        kind: "jobmanager" or "taskmanager".
        conf_dir: the process's Flink configuration directory.

    Returns:
        (JVM flags such as -Xmx, the `-D key=value` arguments the entry point needs).

    Raises:
        ValueError: an unknown kind.
        RuntimeError: BashJavaUtils failed (its output is in the message).
    """
    command = {"jobmanager": "GET_JM_RESOURCE_PARAMS", "taskmanager": "GET_TM_RESOURCE_PARAMS"}
    if kind not in command:
        raise ValueError(f"kind must be 'jobmanager' or 'taskmanager', got {kind!r}")
    done = subprocess.run(
        ["java", "-cp", classpath(), _BASH_JAVA_UTILS, command[kind], "--configDir", str(conf_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    results = [
        line[len(_RESULT_PREFIX):].strip()
        for line in done.stdout.splitlines() if line.startswith(_RESULT_PREFIX)
    ]
    if done.returncode != 0 or len(results) < 2:
        raise RuntimeError(
            f"Flink's BashJavaUtils {command[kind]} failed for {conf_dir} "
            f"(status {done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}; "
            f"check the memory settings in {conf_dir / 'flink-conf.yaml'}"
        )
    jvm_flags = results[-2].split()
    dynamic = results[-1].split()
    return jvm_flags, dynamic
