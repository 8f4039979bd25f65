"""Connecting to Ray: an embedded local Ray by default, or an existing cluster by address.

The embedded Ray binds everything it serves to 127.0.0.1 and starts no dashboard: nothing is
reachable from another machine unless the user starts Ray that way themselves.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def connect(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Start (or join) Ray once per process; later calls are no-ops."""
    import ray

    if ray.is_initialized():
        return
    # Worker processes import the package from wherever the driver found it.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    address = address or os.environ.get("RAY_ADDRESS")  # set when running as a Ray job
    if address:
        log.info("joining Ray cluster at %s", address)
        ray.init(address=address, logging_level=logging.WARNING)
        return
    log.info("starting an embedded local Ray (127.0.0.1 only)")
    ray.init(
        # "local" always starts a new embedded Ray, even when `ray start` left a cluster
        # running on this machine (plain ray.init() would silently join that one).
        address="local",
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        include_dashboard=False,
        dashboard_host="127.0.0.1",
        logging_level=logging.WARNING,
        configure_logging=True,
    )


def shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
