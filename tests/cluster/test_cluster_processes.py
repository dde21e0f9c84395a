"""The cluster's layout and processes: own ports and directories per TaskManager, loopback only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cluster import config, flink
from examples.xlang_runtime import ROOT

# Beam's job server binds its job and artifact ports on every interface whatever --job-host
# says (its gRPC servers are built with NettyServerBuilder.forPort); nothing of ours can change it.
_BEAM_BINDS_EVERYWHERE = {"job_port", "artifact_port"}


def _settings(conf_dir: Path) -> dict:
    lines = (conf_dir / "flink-conf.yaml").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line)


def test_each_taskmanager_gets_its_own_ports_directories_and_id(tmp_path):
    layout = config.plan(tmp_path, taskmanagers=2)
    confs = config.write_flink_conf(layout)
    tm1, tm2 = _settings(confs["tm-1"]), _settings(confs["tm-2"])
    jm = _settings(confs["jobmanager"])
    for key in ("taskmanager.resource-id", "taskmanager.rpc.port", "taskmanager.data.port",
                "metrics.internal.query-service.port", "io.tmp.dirs", "blob.storage.directory"):
        assert tm1[key] != tm2[key], key
    assert tm1["io.tmp.dirs"] == str(tmp_path / "tm-1" / "tmp")
    for settings in (jm, tm1, tm2):
        assert settings["classloader.resolve-order"] == "parent-first"
        assert settings["cluster.evenly-spread-out-slots"] == "true"
        assert settings["jobmanager.bind-host"] == settings["taskmanager.bind-host"] == "127.0.0.1"
        assert settings["rest.port"] == jm["rest.port"]
    ports = [value for name, value in vars(layout).items() if name.endswith("_port")]
    ports += [port for tm in layout.taskmanagers for port in (tm.rpc_port, tm.data_port,
                                                               tm.metrics_port)]
    assert len(set(ports)) == len(ports) == 13


def test_no_taskmanager_is_refused_and_none_is_empty():
    with pytest.raises(ValueError, match="at least one TaskManager"):
        config.plan(Path("/nonexistent"), taskmanagers=0)
    with pytest.raises(ValueError, match="at least one slot"):
        config.plan(Path("/nonexistent"), slots=0)


def test_slots_as_asked_and_a_heartbeat_timeout_a_stalled_machine_survives(tmp_path):
    # A 10 s timeout dropped live TaskManagers when this machine stalled; the job failed
    # over and, without checkpoints, its sources started again (rows came out twice).
    confs = config.write_flink_conf(config.plan(tmp_path, taskmanagers=2, slots=1))
    for settings in map(_settings, confs.values()):
        assert settings["taskmanager.numberOfTaskSlots"] == "1"
        assert int(settings["heartbeat.timeout"]) >= 50_000


def _outside_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            address = probe.getsockname()[0]
        except OSError:
            return ""
    return "" if address.startswith("127.") else address


def test_both_taskmanagers_register_and_flink_listens_on_loopback_only(flink_cluster):
    assert flink.registered_taskmanagers(flink_cluster.rest_port) == ["tm-1", "tm-2"]
    address = _outside_address()
    if not address:
        pytest.skip(reason="this machine has no address besides loopback to probe from")
    for name, port in flink_cluster.ports.items():
        if name in _BEAM_BINDS_EVERYWHERE:
            continue
        with socket.socket() as probe:
            probe.settimeout(2)
            assert probe.connect_ex((address, port)) != 0, f"{name} {port} open on {address}"
            with socket.socket() as local:
                assert local.connect_ex(("127.0.0.1", port)) == 0 or "metrics" in name, name


def test_the_boot_program_imports_what_its_writer_imports_and_what_the_runner_adds(tmp_path):
    writer, runner = tmp_path / "writer", tmp_path / "runner"
    for folder, module in ((writer / "mine", "from_writer"), (runner / "theirs", "from_runner")):
        folder.mkdir(parents=True)
        (folder / f"{module}.py").write_text("")
    (tmp_path / "bin").mkdir()
    write = ("import sys; from liveinference_expansion.boot import write_boot_command; "
             f"print(write_boot_command({str(tmp_path / 'bin')!r}))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["mine", str(ROOT / "expansion")])}
    script = subprocess.run([sys.executable, "-c", write], cwd=writer, env=env, text=True,
                            capture_output=True, check=True).stdout.strip()
    # Run the script's own shell line, with a probe in place of the boot module.
    probe = "-c 'import from_writer, from_runner, liveinference_expansion'"
    text = Path(script).read_text().replace("-m liveinference_expansion.boot", probe)
    Path(script).write_text(text)
    env = {**os.environ, "PYTHONPATH": "theirs"}
    done = subprocess.run(["sh", script], cwd=runner, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
