"""A campaign's output directory: its campaign file, checkpoints, summary and plots.

A checkpoint is a safetensors file holding every learner's parameters ('learner/param')
plus a JSON state file written after it, so the state file's presence marks a complete
checkpoint and a crash mid-write leaves the previous one in force.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from metanas.cluster.schema import Campaign
from metanas.memory.atomic import atomic_write_bytes, load_tensors

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

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.campaign_file = self.root / "campaign.yaml"
        self.summary_file = self.root / "summary.json"
        self.curve_png = self.root / "meta_train.png"

    def save_campaign(self, campaign: Campaign) -> None:
        atomic_write_bytes(self.campaign_file, yaml.safe_dump(campaign.model_dump(mode="json"), sort_keys=False).encode())

    def load_campaign(self) -> Campaign:
        """The campaign this directory was written by (validated: it was valid when saved)."""
        if not self.campaign_file.is_file():
            raise FileNotFoundError(f"{self.root} is not a campaign directory (no campaign.yaml)")
        return Campaign.model_validate(yaml.safe_load(self.campaign_file.read_text()))

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
