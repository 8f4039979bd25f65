"""Connecting to Ray: an embedded local Ray by default, or an existing cluster by address.

The embedded Ray listens on 127.0.0.1 only and starts no dashboard: nothing is reachable
from another machine unless the user starts Ray that way themselves. Ray binds its servers
(GCS, raylet, workers, agents) to the node's IP, and resolves 127.0.0.1 to the machine's
reachable address unless multi-node clusters are off, its setting for single-machine
macOS and Windows (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`). For the embedded Ray they are
off while it starts, so its node IP is 127.0.0.1 and every server listens there (a test
lists the sockets); afterwards the setting is restored, so a cluster started later in the
same process is unaffected. `--address` clusters are the user's to configure.

A joined cluster is watched: when its GCS stops answering, the driver says so in one line
and exits (Ray's own exit, a few seconds later, prints a core-worker log instead).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from contextlib import contextmanager

log = logging.getLogger(__name__)

WATCH_EVERY_S = 1.0
LOST_AFTER = 3  # consecutive unanswered checks: a cluster gone, not a busy one
_watching: threading.Event | None = None  # set to stop the watch (a deliberate shutdown)


def connect(
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_bytes: int | None = None,
) -> None:
    """Start (or join) Ray once per process; later calls are no-ops. `object_store_bytes`
    sizes an embedded Ray's object store (Ray's default otherwise: 30% of memory)."""
    import ray

    if ray.is_initialized():
        return
    # Worker processes import the package from wherever the driver found it.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    address = address or os.environ.get("RAY_ADDRESS")  # set when running as a Ray job
    if address:
        log.info("joining Ray cluster at %s", address)
        check_reachable(address)
        ray.init(address=address, logging_level=logging.WARNING)
        _watch(ray.get_runtime_context().gcs_address if address == "auto" else address)
    else:
        log.info("starting an embedded local Ray (127.0.0.1 only)")
        with _loopback_only():
            _init_local(num_cpus, num_gpus, object_store_bytes)
    _stop_on_sigterm()


def _watch(address: str) -> None:
    """Exit this process, with one line, once the cluster at `address` stops answering."""
    global _watching
    host, port = _host_port(address)
    stop = _watching = threading.Event()

    def watch() -> None:
        misses = 0
        while not stop.wait(WATCH_EVERY_S):
            misses = misses + 1 if unreachable(host, port, timeout_s=1.0) else 0
            if misses >= LOST_AFTER and not stop.is_set():
                print(
                    f"metanas: error: lost the Ray cluster at {address} (nothing answers there); "
                    "a campaign's last complete checkpoint is kept: rerun with --resume",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(1)  # (the main thread may be blocked inside Ray, deaf to anything gentler)

    threading.Thread(target=watch, name="metanas-cluster-watch", daemon=True).start()


def unreachable(host: str, port: int, timeout_s: float = 5.0) -> str | None:
    """Why nothing answers at host:port within `timeout_s`, or None when something does."""
    import socket

    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        return err.strerror or str(err) or type(err).__name__
    return None


def _host_port(address: str) -> tuple[str, int]:
    """(host, port) of HOST:PORT or ray://HOST:PORT (host 127.0.0.1 when left out)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        raise ConnectionError(f"--address: expected HOST:PORT or ray://HOST:PORT, got {address!r}")
    return host or "127.0.0.1", int(port)


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Something listens at a cluster address (HOST:PORT or ray://HOST:PORT), or a
    ConnectionError within `timeout_s`: `ray.init` would retry an address with nothing
    behind it for minutes, deaf to SIGTERM."""
    if address == "auto":
        return
    reason = unreachable(*_host_port(address), timeout_s)
    if reason:
        raise ConnectionError(f"--address: no Ray cluster answers at {address} ({reason})")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt: the driver
    unwinds the same way (actors killed, in-flight tasks with them, the last complete
    checkpoint kept) and exits with 143."""


def _stop_on_sigterm() -> None:
    """Replace the handler `ray.init` installs (`sys.exit`, which code waiting on Ray can
    swallow) with one that raises `Terminated`."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def terminated(signum, frame):
        raise Terminated("terminated (SIGTERM)")

    signal.signal(signal.SIGTERM, terminated)


def _init_local(num_cpus: int | None, num_gpus: int | None, object_store_bytes: int | None) -> None:
    import ray

    ray.init(
        # "local" always starts a new embedded Ray, even when `ray start` left a cluster
        # running on this machine (plain ray.init() would silently join that one).
        address="local",
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        object_store_memory=object_store_bytes,
        include_dashboard=False,
        dashboard_host="127.0.0.1",
        logging_level=logging.WARNING,
        configure_logging=True,
    )


CLUSTERS_SETTING = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextmanager
def _loopback_only():
    """Ray's single-machine setting while the embedded Ray starts (see the module's doc):
    the environment for the processes it spawns, the constant for this one (read when
    Ray resolves the node IP; Ray may have been imported before)."""
    from ray._private import ray_constants

    before_env, before = os.environ.get(CLUSTERS_SETTING), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[CLUSTERS_SETTING] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before
        if before_env is None:
            os.environ.pop(CLUSTERS_SETTING, None)
        else:
            os.environ[CLUSTERS_SETTING] = before_env


def shutdown() -> None:
    import ray

    if _watching is not None:
        _watching.set()
    if ray.is_initialized():
        ray.shutdown()


def object_store_capacity() -> float:
    """The running Ray's object store memory, all nodes together."""
    import ray

    return ray.cluster_resources().get("object_store_memory", 0.0)


def is_connected() -> bool:
    """Whether this process has started or joined Ray already."""
    import ray

    return ray.is_initialized()


@contextmanager
def simulated_cluster(nodes: int, cpus_per_node: int = 1, gpus_per_node: float = 0, head_cpus: int = 0):
    """A multi-node Ray cluster on this machine (`ray.cluster_utils.Cluster`), joined by
    this process; yields the `Cluster` (`.address`; `.list_all_nodes()`, the head first;
    `.remove_node`). The head holds no GPUs and `head_cpus` CPUs (none by default: only
    the 0-CPU central actors), so workers land on the other nodes and every parameter and
    update crosses between object stores. `gpus_per_node`: GPUs each other node declares
    (none is real: placement only). A process joins one Ray cluster in its life: run this
    in a process of its own."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        # no dashboard: its head starts ten Python processes the simulation never uses
        initialize_head=True,
        head_node_args={"num_cpus": head_cpus, "num_gpus": 0, "include_dashboard": False},
    )
    for _ in range(nodes):
        cluster.add_node(num_cpus=cpus_per_node, num_gpus=gpus_per_node)
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address, logging_level="ERROR")
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
