"""The campaign loop: meta-training on Ray workers, checkpoints, resume, meta-test, report.

Driver-side only. Per iteration the driver asks the MetaLearner for ObjectRefs of the
current meta-parameters, hands them to the TaskWorkers, collects only small outcome dicts,
and passes the workers' update refs straight back to the MetaLearner.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from metanas.platform.checkpoint import atomic_write_bytes, load_tensors
from metanas.platform.config import Campaign, ConfigError, parse_campaign

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    iteration: int
    state: dict[str, Any]
    tensors_path: Path

    @cached_property
    def _tensors(self) -> dict:
        # One file holds every learner: read it once, however many learners are asked for.
        return load_tensors(self.tensors_path)

    def params(self, learner: str) -> dict:
        prefix = f"{learner}/"
        return {k[len(prefix):]: v for k, v in self._tensors.items() if k.startswith(prefix)}


class RunDir:
    """Layout of a campaign's output directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.campaign_file = self.root / "campaign.yaml"
        self.summary_file = self.root / "summary.json"
        self.curve_png = self.root / "meta_train.png"

    def save_campaign(self, campaign: Campaign) -> None:
        atomic_write_bytes(self.campaign_file, yaml.safe_dump(campaign.model_dump(mode="json"), sort_keys=False).encode())

    def load_campaign(self) -> Campaign:
        if not self.campaign_file.is_file():
            raise FileNotFoundError(f"{self.root} is not a campaign directory (no campaign.yaml)")
        return parse_campaign(yaml.safe_load(self.campaign_file.read_text()), str(self.campaign_file))

    def checkpoint_paths(self, iteration: int) -> tuple[Path, Path]:
        stem = self.checkpoints / f"iter_{iteration:06d}"
        return stem.with_suffix(".safetensors"), stem.with_suffix(".json")

    def latest_checkpoint(self) -> Checkpoint | None:
        """The newest checkpoint whose state file and tensors are both complete. The state
        file is written last, so its presence means the tensors were already on disk."""
        for state_path in sorted(self.checkpoints.glob("iter_*.json"), reverse=True):
            tensors = state_path.with_suffix(".safetensors")
            try:
                state = json.loads(state_path.read_text())
            except (OSError, json.JSONDecodeError) as err:
                log.warning("skipping unreadable checkpoint %s: %s", state_path, err)
                continue
            if tensors.is_file():
                return Checkpoint(int(state["iteration"]), state, tensors)
        return None

    @staticmethod
    def image_size(campaign: Campaign) -> tuple[int, int]:
        if campaign.data.source == "digits":
            return (8, 8)
        return (campaign.data.image_size, campaign.data.image_size)


def _same_campaign(a: Campaign, b: Campaign) -> bool:
    return a.model_dump(mode="json") == b.model_dump(mode="json")


def run_campaign(
    campaign: Campaign,
    out_dir: str | Path,
    resume: bool = False,
    address: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) a campaign into `out_dir`; return the summary that was written."""
    from metanas.cluster.driver import CampaignDriver

    run = RunDir(Path(out_dir))
    checkpoint = None
    if run.campaign_file.exists():
        if not resume:
            raise ConfigError(f"{run.root} already holds a campaign: pass --resume to continue it, or choose another --out")
        previous = run.load_campaign()
        if not _same_campaign(previous, campaign):
            raise ConfigError(f"{run.root} holds a different campaign than the one given; use another --out")
        checkpoint = run.latest_checkpoint()
    run.root.mkdir(parents=True, exist_ok=True)
    run.save_campaign(campaign)
    started = time.time()
    driver = CampaignDriver(campaign, run, address=address, progress=progress)
    try:
        return driver.run(checkpoint, started)
    finally:
        driver.close()


__all__ = ["RunDir", "Checkpoint", "run_campaign"]
