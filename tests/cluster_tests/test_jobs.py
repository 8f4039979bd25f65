"""Ray Jobs against a real head started by the test (`ray start --head`, 127.0.0.1 only)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from metanas.cli.main import main

pytestmark = [pytest.mark.ray, pytest.mark.timeout(400)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_head(extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int, int]:
    """A Ray head of its own (process group, ports) on 127.0.0.1, its dashboard up. With
    `extra_env` (e.g. a token) its node is 127.0.0.1 too, for a driver that joins it."""
    port, dashboard = _free_port(), _free_port()
    ray_bin = Path(sys.executable).parent
    # jobs run `python -m metanas`
    env = {
        **os.environ,
        "PATH": f"{ray_bin}:{os.environ['PATH']}",
        **(extra_env or {}),
    }
    node = ["--node-ip-address=127.0.0.1"] if extra_env else []
    head = subprocess.Popen(
        [
            str(ray_bin / "ray"),
            "start",
            "--head",
            *node,
            f"--port={port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            "--num-cpus=4",
            "--include-dashboard=true",
            "--block",
            # the session's embedded Ray already holds the default agent ports on this machine
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--dashboard-agent-grpc-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}",
            f"--metrics-export-port={_free_port()}",
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 90
    while True:
        try:
            with socket.create_connection(("127.0.0.1", dashboard), timeout=1):
                break
        except OSError:
            assert time.time() < deadline and head.poll() is None, "the Ray head did not come up"
            time.sleep(0.5)
    time.sleep(2)  # the job agent starts a moment after the dashboard port opens
    return head, port, dashboard


def _stop_head(head: subprocess.Popen) -> None:
    # this head only: never `ray stop`, which kills every Ray here. `ray start --block` stops
    # its processes on SIGINT in about a second (on SIGTERM it waits about 30 s)
    os.killpg(head.pid, signal.SIGINT)
    try:
        head.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    try:  # whatever of its session is left
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    head.wait()


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    head, _, dashboard = _start_head()
    yield f"http://127.0.0.1:{dashboard}"
    _stop_head(head)


def _config(tmp_path, tiny, iterations: int) -> Path:
    tiny["meta_train"].update(iterations=iterations, checkpoint_every=1)
    tiny["meta_test"]["tasks"] = 4
    path = tmp_path / f"c{iterations}.yaml"
    path.write_text(yaml.safe_dump(tiny))
    return path


def test_submit_status_logs_and_stop(ray_head, tmp_path, tiny_campaign_dict, capsys):
    out = tmp_path / "job-out"
    assert (
        main(
            [
                "submit",
                str(_config(tmp_path, dict(tiny_campaign_dict), 3)),
                "--address",
                ray_head,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    job_id, state = capsys.readouterr().out.strip().split("\t")
    assert state == "SUCCEEDED"
    assert json.loads((out / "summary.json").read_text())["meta_train"]["tasks_completed"] == 3 * 2 * 2
    assert main(["status", job_id, "--address", ray_head]) == 0
    assert capsys.readouterr().out.strip() == "SUCCEEDED"
    assert main(["logs", job_id, "--address", ray_head]) == 0
    assert "metanas" in capsys.readouterr().out  # the results table the job printed

    long_config = _config(tmp_path, dict(tiny_campaign_dict), 5000)
    assert (
        main(
            ["submit", str(long_config), "--address", ray_head, "--out", str(tmp_path / "long"), "--no-wait"]
        )
        == 0
    )
    second = capsys.readouterr().out.strip().split("\t")[0]
    marker = str(tmp_path / "long")
    deadline = time.time() + 60
    while not _drivers(marker):  # (the job's driver has started)
        assert time.time() < deadline, "the second job's driver never started"
        time.sleep(0.2)
    stopped = time.time()
    assert main(["stop", second, "--address", ray_head]) == 0
    while _drivers(marker):  # metanas stop ends the job's driver within 10 s
        assert time.time() - stopped < 10, f"the stopped job's driver {_drivers(marker)} is still alive"
        time.sleep(0.2)
    deadline = time.time() + 60
    while True:
        assert main(["status", second, "--address", ray_head]) == 0
        if capsys.readouterr().out.strip() == "STOPPED":
            break
        assert time.time() < deadline, "the second job did not stop"
        time.sleep(1)


def _drivers(marker: str) -> list[int]:
    """Processes whose command line names `marker` (the job's output directory)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return [pid for pid in pids if pid != os.getpid()]


def test_a_driver_whose_cluster_goes_away_says_so_in_one_line_and_exits(tmp_path, tiny_campaign_dict):
    # the head's token, given to the driver that joins it; both on loopback (see connect.py)
    token = {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": os.urandom(16).hex(),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    head, port, _ = _start_head(token)
    out = tmp_path / "out"
    try:
        driver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "metanas",
                "run",
                str(_config(tmp_path, dict(tiny_campaign_dict), 5000)),
                "--address",
                f"127.0.0.1:{port}",
                "--out",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **token},
        )
        deadline = time.time() + 120
        while not list((out / "checkpoints").glob("*")):  # meta-training is under way
            assert time.time() < deadline and driver.poll() is None, (
                driver.stderr.read() if driver.poll() is not None else "the campaign never checkpointed"
            )
            time.sleep(0.5)
    finally:
        _stop_head(head)
    lost = time.time()
    try:
        driver.wait(timeout=10)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert time.time() - lost < 10
    last = driver.stderr.read().strip().splitlines()[-1]
    assert driver.returncode == 1 and last.startswith(
        f"metanas: error: lost the Ray cluster at 127.0.0.1:{port}"
    ), last


def test_submit_rejects_a_bad_campaign_before_uploading(tmp_path, tiny_campaign_dict, capsys):
    tiny_campaign_dict["episodes"]["k_shot"] = -1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny_campaign_dict))
    assert main(["submit", str(path), "--address", "http://127.0.0.1:1"]) == 2
    assert "episodes.k_shot" in capsys.readouterr().err
