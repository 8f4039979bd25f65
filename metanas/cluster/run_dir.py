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

from metanas._util.atomic import atomic_write_bytes, load_tensors
from metanas.cluster.schema import Campaign

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
        return {k[len(prefix) :]: v for k, v in self._tensors.items() if k.startswith(prefix)}


class RunDir:
    """Layout of a campaign's output directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.campaign_file = self.root / "campaign.yaml"
        self.summary_file = self.root / "summary.json"
        self.curve_png = self.root / "meta_train.png"
        self.validation_png = self.root / "validation.png"

    def save_campaign(self, campaign: Campaign) -> None:
        atomic_write_bytes(
            self.campaign_file, yaml.safe_dump(campaign.model_dump(mode="json"), sort_keys=False).encode()
        )

    def load_campaign(self) -> Campaign:
        """The campaign this directory was written by (validated: it was valid when saved)."""
        if not self.campaign_file.is_file():
            raise FileNotFoundError(f"{self.root} is not a campaign directory (no campaign.yaml)")
        return Campaign.model_validate(yaml.safe_load(self.campaign_file.read_text()))

    def checkpoint_paths(self, iteration: int) -> tuple[Path, Path]:
        stem = self.checkpoints / f"iter_{iteration:06d}"
        return stem.with_suffix(".safetensors"), stem.with_suffix(".json")

    def _complete(self, state_path: Path) -> Checkpoint | None:
        """The checkpoint of `state_path` if its state file and tensors are both complete.
        The state file is written last, so its presence means the tensors were on disk."""
        try:
            state = json.loads(state_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            log.warning("skipping unreadable checkpoint %s: %s", state_path, err)
            return None
        tensors = state_path.with_suffix(".safetensors")
        return Checkpoint(int(state["iteration"]), state, tensors) if tensors.is_file() else None

    def checkpoints_list(self) -> list[Checkpoint]:
        """Every complete checkpoint, oldest first."""
        found = (self._complete(p) for p in sorted(self.checkpoints.glob("iter_*.json")))
        return [c for c in found if c is not None]

    def latest_checkpoint(self) -> Checkpoint | None:
        """The newest complete checkpoint."""
        for state_path in sorted(self.checkpoints.glob("iter_*.json"), reverse=True):
            checkpoint = self._complete(state_path)
            if checkpoint is not None:
                return checkpoint
        return None
