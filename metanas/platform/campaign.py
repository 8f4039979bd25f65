"""What a user calls to run a campaign and to use its result:

    summary = metanas.run_campaign(campaign, "runs/x")      # or `metanas run FILE --out DIR`
    learner = metanas.load("runs/x")                         # adapt it to a new task

`run_campaign` checks the output directory, hands the campaign to the cluster side
(`metanas.cluster.runner`) and writes the report from what it returns.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from metanas.cluster.run_dir import RunDir
from metanas.cluster.schema import LEARNERS
from metanas.platform.config import Campaign, ConfigError
from metanas.searchers.darts.learner import Learner


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
    from metanas.cluster.runner import CampaignRunner
    from metanas.platform.report import write_report

    run = RunDir(Path(out_dir))
    checkpoint = None
    if run.campaign_file.exists():
        if not resume:
            raise ConfigError(f"{run.root} already holds a campaign: pass --resume to continue it, or choose another --out")
        if not _same_campaign(run.load_campaign(), campaign):
            raise ConfigError(f"{run.root} holds a different campaign than the one given; use another --out")
        checkpoint = run.latest_checkpoint()
    run.root.mkdir(parents=True, exist_ok=True)
    run.save_campaign(campaign)
    started = time.time()
    runner = CampaignRunner(campaign, run, address=address, progress=progress)
    try:
        result = runner.run(checkpoint)
    finally:
        runner.close()
    return write_report(run, campaign, result, time.time() - started)


def load(run_dir: str | Path, which: str = "metanas", device: str = "cpu") -> Learner:
    """Load the meta-learned model of a finished or checkpointed campaign.

    `which` is 'metanas' (the supernet) or 'reptile_fixed' (the fixed-architecture baseline).
    """
    if which not in LEARNERS:
        raise ValueError(f"which: expected one of {', '.join(LEARNERS)}, got {which!r}")
    run = RunDir(Path(run_dir))
    campaign = run.load_campaign()
    checkpoint = run.latest_checkpoint()
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint yet; has meta-training run?")
    spec = campaign.model_spec(which)
    return Learner(
        spec.space, checkpoint.params(which), campaign.meta_test.adapt.settings(), campaign.image_size, spec.genotype, device
    )
