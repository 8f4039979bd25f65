"""Every network a campaign trains, on the task path the workers run (`TaskWorkerCore`, no Ray),
never calls a library kernel known to corrupt memory (`unsafe_kernels.KernelGuard`
refuses one before it runs): the example campaign files as they are, and the digits
campaign with reduction cells of 4 channels, where oneDNN's strided 1x1 kernel used to be
reached."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from metanas.cluster.messages import TestTask, TrainTask
from metanas.cluster.task_worker import TaskWorkerCore
from metanas.cluster.wire import pack
from metanas.platform.config import load_campaign, parse_campaign
from metanas.searchers.darts.adaptation import get_params
from metanas.searchers.darts.unsafe_kernels import KernelGuard

REPO = Path(__file__).resolve().parents[2]


def _reduction_digits():
    data = yaml.safe_load((REPO / "examples" / "digits.yaml").read_text())
    data["space"].update(channels=4, reduction=True, input_cells=2)
    data["meta_test"]["baselines"] = ["metanas_derived", "reptile_fixed", "reptile_conv4", "scratch"]
    return parse_campaign(data)


CAMPAIGNS = {
    "digits": lambda: load_campaign(REPO / "examples" / "digits.yaml"),
    "omniglot": lambda: load_campaign(REPO / "examples" / "omniglot.yaml"),
    "digits_reduction_4_channels": _reduction_digits,
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(CAMPAIGNS))
def test_every_learner_of_the_campaign_trains_and_tests_without_an_unsafe_kernel(name):
    campaign = CAMPAIGNS[name]()
    runner = TaskWorkerCore(campaign)
    edges = len(campaign.space.cell_space().edges) * (2 if campaign.space.reduction else 1)
    genotype = ("skip_connect", "dil_conv_3x3", "avg_pool_3x3", "sep_conv_3x3", "conv_3x3")
    # skip_connect reduces in a reduction cell
    derived = tuple(genotype[i % len(genotype)] for i in range(edges))
    learners = list(campaign.first_stage()) + (
        ["metanas_derived"] if "metanas_derived" in campaign.meta_trained() else []
    )
    params = {}
    with KernelGuard() as guard:
        for learner in learners:
            genotype_of = derived if learner == "metanas_derived" else None
            theta = get_params(runner._net(learner, genotype_of))
            delta, result = runner.meta_train_task(TrainTask(learner, 1, 0, True, genotype_of), pack(theta))
            assert delta.names == tuple(theta) and 0.0 <= result.query_accuracy_after <= 1.0
            params[learner] = theta
        tested = runner.meta_test_task(TestTask(0, 0, derived), params)
    assert set(learners) <= set(tested.accuracy)
    assert guard.calls > 1000  # the guard saw the work
