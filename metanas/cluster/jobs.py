"""Ray Jobs: submit a campaign to a cluster's job server and watch, read or stop it.

The job's runtime_env carries the metanas package (py_modules) and the campaign file
(working_dir), so the cluster needs only the dependencies, not a checkout. The caller
validates the campaign before anything is uploaded (`metanas submit` does).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import urllib.parse
from pathlib import Path

log = logging.getLogger(__name__)

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def _token() -> str | None:
    """The Ray auth token from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    return path.read_text().strip() if path.is_file() else None


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """A job server address is http(s)://HOST:PORT and something listens there; else a
    ValueError saying which, within `timeout_s` (Ray's client would retry for a minute
    and print pages of connection errors)."""
    from metanas.cluster.connect import unreachable

    parsed = urllib.parse.urlparse(address)
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:  # a port that is not a number
        port = None
    if parsed.scheme not in ("http", "https") or not parsed.hostname or port is None:
        raise ValueError(f"--address: expected the job server as http://HOST:PORT, got {address!r}")
    reason = unreachable(parsed.hostname, port, timeout_s)
    if reason:
        raise ValueError(f"--address: no Ray job server answers at {address} ({reason})")


def client(address: str):
    """A job client that authenticates when a Ray token is at hand: clusters started by
    current Ray require one, and Ray's own client sends it only when RAY_AUTH_MODE=token.
    The header is passed explicitly rather than by changing this process's environment,
    which would also change how it talks to any other Ray it uses."""
    from ray.job_submission import JobSubmissionClient

    token = _token()
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        return JobSubmissionClient(address, headers=headers)
    except (RuntimeError, ConnectionError) as err:  # something answered, but not Ray's job server
        raise ValueError(
            f"--address: {address} is not a Ray job server ({str(err).splitlines()[0]})"
        ) from None


def _submit_with_retry(address: str, timeout_s: float = 60.0, **kwargs) -> str:
    """A head that has just started answers 'No available agent to submit job' for a few
    seconds: retry that (only that) until `timeout_s`."""
    deadline = time.time() + timeout_s
    while True:
        try:
            return client(address).submit_job(**kwargs)
        except RuntimeError as err:
            if "No available agent" not in str(err) or time.time() > deadline:
                raise
            time.sleep(1.0)


def submit(
    config: Path, address: str, out: str, gpus: float = 0.0, wait: bool = True, timeout_s: float = 3600.0
) -> tuple[str, str]:
    """Submit `config` (already validated) as a Ray job; return (job id, final or current
    status)."""
    package = Path(__file__).resolve().parents[1]  # the metanas package
    with tempfile.TemporaryDirectory(prefix="metanas-job-") as staging:
        shutil.copy(config, Path(staging) / "campaign.yaml")
        job_id = _submit_with_retry(
            address,
            entrypoint=f"python -m metanas run campaign.yaml --out {out}",
            runtime_env={"working_dir": staging, "py_modules": [str(package)]},
            entrypoint_num_gpus=gpus or None,
            metadata={"campaign": str(config)},
        )
    log.info("submitted job %s to %s", job_id, address)
    if not wait:
        return job_id, status(job_id, address)
    deadline = time.time() + timeout_s
    while (state := status(job_id, address)) not in TERMINAL:
        if time.time() > deadline:
            raise TimeoutError(
                f"job {job_id} still {state} after {timeout_s:g} s; `metanas status {job_id}` to check later"
            )
        time.sleep(1.0)
    return job_id, state


def status(job_id: str, address: str) -> str:
    return str(client(address).get_job_status(job_id).value)


def logs(job_id: str, address: str) -> str:
    return client(address).get_job_logs(job_id)


def stop(job_id: str, address: str) -> bool:
    return bool(client(address).stop_job(job_id))
