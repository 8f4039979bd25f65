"""The embedded Ray listens on 127.0.0.1 only: every listening socket of every process a
running `metanas run` started (GCS, raylet, agents, TaskWorkers, MetaLearner,
MemoryWriter, the driver), read from `ss` while the campaign runs."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import descendants

pytestmark = pytest.mark.ray  # (a subprocess starts it: `make test-fast` leaves it out)

LOOPBACK = re.compile(r"^(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]|\[::1\]):\d+$")


def _listening(pids: set[int]) -> dict[str, str]:
    """address -> process name, for the TCP and UDP sockets these processes listen on."""
    out = subprocess.run(["ss", "-H", "-ltnup"], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        if {int(p) for p in re.findall(r"pid=(\d+)", line)} & pids:
            found[line.split()[4]] = (re.findall(r'\("([^"]+)"', line) or ["?"])[0]
    return found


@pytest.mark.timeout(240)
def test_every_socket_of_a_running_campaign_listens_on_loopback_only(tiny_campaign_dict, tmp_path):
    config = tmp_path / "c.yaml"
    tiny_campaign_dict["meta_train"]["iterations"] = 30  # long enough to look at while it runs
    config.write_text(yaml.safe_dump(tiny_campaign_dict))
    proc = subprocess.Popen(
        [sys.executable, "-m", "metanas", "run", str(config), "--out", str(tmp_path / "out")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: dict[str, str] = {}
    try:
        while proc.poll() is None:
            seen.update(_listening(descendants(proc.pid)))
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read()[-2000:]
    names = set(seen.values())
    assert {"gcs_server", "raylet"} <= names and any(n.startswith("ray::TaskWorker") for n in names), seen
    exposed = {addr: name for addr, name in seen.items() if not LOOPBACK.match(addr)}
    assert not exposed, f"listening beyond loopback: {exposed}"
