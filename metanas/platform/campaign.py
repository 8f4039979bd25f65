"""What a user calls to run a campaign and to use its result:

    summary = metanas.run_campaign(campaign, "runs/x")      # or `metanas run FILE --out DIR`
    learner = metanas.load("runs/x")                         # adapt it to a new task

`run_campaign` checks the output directory, hands the campaign to the cluster side
(`metanas.cluster.campaign_driver`) and writes the report from what it returns.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from metanas.cluster.hardware import campaign_limits, load_limits
from metanas.cluster.run_dir import RunDir
from metanas.cluster.schema import DERIVED
from metanas.platform.config import Campaign, ConfigError
from metanas.platform.data_check import check_campaign_data
from metanas.searchers.darts.cost import genotype_within
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
    check_campaign_data(campaign)  # before Ray is imported or anything written
    if address:
        from metanas.cluster.connect import check_reachable

        check_reachable(address)  # (likewise: nothing written for a cluster that is not there)
    from metanas.cluster.campaign_driver import CampaignDriver
    from metanas.platform.campaign_outputs import write_report

    run = RunDir(Path(out_dir))
    checkpoint = None
    if run.campaign_file.exists():
        if not resume:
            raise ConfigError(
                f"{run.root} already holds a campaign: pass --resume to continue it, or choose another --out"
            )
        if not _same_campaign(run.load_campaign(), campaign):
            raise ConfigError(f"{run.root} holds a different campaign than the one given; use another --out")
        checkpoint = run.latest_checkpoint()
    run.root.mkdir(parents=True, exist_ok=True)
    try:  # a bad or untrusted latency table fails here, before Ray starts
        campaign_limits(campaign, run.root)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    run.save_campaign(campaign)
    started = time.time()
    runner = CampaignDriver(campaign, run, address=address, progress=progress)
    try:
        result = runner.run(checkpoint)
    finally:
        runner.close()
    return write_report(run, campaign, result, time.time() - started)


def load(
    run_dir: str | Path, which: str = "metanas", device: str = "cpu", threads: int | None = 1
) -> Learner:
    """Load a meta-learned model of a finished or checkpointed campaign: 'metanas' (the
    supernet), 'metanas_derived' (the network of the architecture it found), or a
    meta-trained baseline ('reptile_fixed', 'reptile_conv4').

    The Learner takes images as the campaign's data source holds them, at any size: it
    resizes them to the campaign's (e.g. 105x105 Omniglot drawings to 28x28), averages
    colour channels to grey and inverts them if the campaign's folders were read with
    invert: true. `threads`: torch's CPU threads while it adapts and predicts (default 1:
    these networks are small, and one thread does not fight whatever else the machine
    runs; None leaves torch's setting)."""
    run = RunDir(Path(run_dir))
    campaign = run.load_campaign()
    if which not in campaign.meta_trained():
        raise ValueError(
            f"which: this campaign meta-trained {', '.join(campaign.meta_trained())}; got {which!r}"
        )
    first = run.latest_checkpoint()
    if first is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint yet; has meta-training run?")
    settings = replace(campaign.meta_test.adapt.settings(), limits=load_limits(run.root))
    derived = genotype_within(campaign.space.cell_space(), first.params("metanas"), settings.limits)
    checkpoint = first
    if which == DERIVED:
        checkpoint = RunDir(run.root / "derived").latest_checkpoint()
        if checkpoint is None:
            raise FileNotFoundError(
                f"{run_dir}: the derived network has no checkpoint yet (its stage follows the first)"
            )
    spec = campaign.model_spec(which, tuple(derived))
    # Users pass images as they come (the folders' own), so the learner inverts them as the
    # campaign's data source did; meta-test passes the already inverted episodes.
    invert = getattr(campaign.data, "invert", False)
    return Learner.from_spec(
        spec, checkpoint.params(which), settings, campaign.image_size, device, invert, threads
    )
