"""Every combination of `supernet.Speed` against the all-off reference, run as a program so
that the test that starts it survives a crash (`test_speed_equivalence.py`):

    python -m tests.searchers_tests.speed_equivalence [--cases NAME,...] [--guard]

Each case builds its network with one seed, for every combination, and compares with the
reference built the same way with every switch off. With --guard the fast paths run
under `unsafe_kernels.KernelGuard` (a known unsafe library kernel is refused, not run;
its patterns do not depend on the processor, so one run with it is enough; it doubles
the time). It prints `START name` before a case and one
JSON line after it, so a crash names the case it died in. The thread count comes from
the environment (OMP_NUM_THREADS), as does the instruction set (ONEDNN_MAX_CPU_ISA).

Tolerances (float32): a forward pass or a gradient within 1e-5 + 1e-4 * |reference|;
the parameters after an `adapt` run (3 Adam steps of 0.01) within 2e-4 + 1e-3 * |reference|:
Adam divides by the root of the squared gradient, so for a near-zero gradient a rounding
difference can move a parameter by up to its step size times the gradient's relative
rounding error.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from metanas.searchers.darts.adaptation import AdaptSettings, adapt
from metanas.searchers.darts.cell_space import CellSpace
from metanas.searchers.darts.supernet import DiscreteNet, Speed, Supernet
from metanas.searchers.darts.unsafe_kernels import KernelGuard

REFERENCE = Speed(channels_last=False, shared_relu=False, own_cpu_kernels=False, fused_sum=False)
ALL_SPEEDS = [Speed(*flags) for flags in itertools.product((False, True), repeat=4)]
PASS_TOL = (1e-5, 1e-4)  # (absolute, relative) for outputs and gradients
ADAPT_TOL = (2e-4, 1e-3)  # for parameters after adaptation


@dataclass(frozen=True)
class Case:
    name: str
    space: CellSpace
    size: int = 8  # image side
    genotype: tuple[str, ...] | None = None  # None: the supernet
    adapt: AdaptSettings | None = None  # None: one forward and backward pass
    joint: bool = True  # adapt: alpha steps on the support set too (meta-test)
    batch: int = 6
    extra: dict = field(default_factory=dict)


def _settings(**kw) -> AdaptSettings:
    return AdaptSettings(steps=3, lr_w=0.01, lr_alpha=0.01, **kw)


SMALL = CellSpace(nodes=2, channels=4, cells=2)
REDUCE = CellSpace(nodes=2, channels=4, cells=2, reduction=True, input_cells=2)
PARTIAL = CellSpace(nodes=2, channels=8, cells=2, partial_channels=2, edge_normalization=True, reduction=True)
# REDUCE's 5 normal edges, then its 5 reduction edges (skip_connect there: FactorizedReduce)
GENOTYPE = ("dil_conv_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "max_pool_3x3") + (
    "skip_connect",
    "conv_3x3",
    "dil_conv_3x3",
    "skip_connect",
    "avg_pool_3x3",
)

CASES = [
    Case("pass_small", SMALL),
    Case("pass_reduction_two_inputs", REDUCE),
    Case("pass_partial_channels_edge_norm", PARTIAL),
    Case("pass_batch_norm", CellSpace(nodes=2, channels=4, cells=2, norm="batch", reduction=True)),
    Case("pass_28px_own_group_norm", CellSpace(nodes=2, channels=8, cells=1), size=28, batch=4),
    Case("pass_derived_network", REDUCE, genotype=GENOTYPE),
    Case(
        "pass_derived_network_28px",
        CellSpace(nodes=2, channels=8, cells=2),
        size=28,
        batch=4,
        genotype=GENOTYPE[:3],
    ),
    Case("adapt_joint", SMALL, adapt=_settings()),
    Case("adapt_split_alpha_fraction", SMALL, adapt=_settings(alpha_fraction=0.5), joint=False),
    Case("adapt_alpha_frozen", REDUCE, adapt=_settings(update_alpha=False)),
    Case("adapt_pruning", REDUCE, adapt=_settings(prune_threshold=0.2)),
    Case("adapt_reduction_split", REDUCE, adapt=_settings(alpha_fraction=0.5), joint=False),
    Case("adapt_partial_channels", PARTIAL, adapt=_settings()),
    Case("adapt_derived_network", REDUCE, genotype=GENOTYPE, adapt=_settings()),
]


def _data(case: Case, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(case.batch, 1, case.size, case.size, generator=g), torch.arange(case.batch) % 3


def _build(case: Case, speed: Speed) -> torch.nn.Module:
    torch.manual_seed(0)
    if case.genotype is None:
        return Supernet(case.space, 1, 3, speed)
    return DiscreteNet(case.space, case.genotype, 1, 3, speed)


def _run(case: Case, speed: Speed) -> dict[str, torch.Tensor]:
    """The tensors a case compares: output and every gradient, or every parameter after adapt."""
    net = _build(case, speed)
    x, y = _data(case, 1)
    if case.adapt is None:
        out = net(x)
        F.cross_entropy(out, y).backward()
        return {
            "output": out.detach(),
            **{f"grad:{n}": p.grad for n, p in net.named_parameters() if p.grad is not None},
        }
    qx, qy = (x, y) if case.joint else _data(case, 2)
    adapt(net, x, y, qx, qy, case.adapt)
    return {n: p.detach().clone() for n, p in net.named_parameters()}


def _worst(
    got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], tol: tuple[float, float]
) -> tuple[float, str]:
    """The largest |got - want| / (atol + rtol |want|) over every tensor (<= 1 passes)."""
    if got.keys() != want.keys():
        return float("inf"), f"tensors differ: {sorted(got.keys() ^ want.keys())}"
    atol, rtol = tol
    worst, where = 0.0, ""
    for name, ref in want.items():
        a, b = got[name].double(), ref.double()
        both_inf = torch.isinf(a) & torch.isinf(b) & (a == b)  # pruned ops are -inf in both
        ratio = ((a - b).abs() / (atol + rtol * b.abs())).masked_fill(both_inf, 0.0)
        ratio = ratio.nan_to_num(nan=float("inf"))
        if ratio.numel() and float(ratio.max()) > worst:
            worst, where = float(ratio.max()), name
    return worst, where


def run_case(case: Case, guard: bool = False) -> dict:
    reference = _run(case, REFERENCE)
    tol = PASS_TOL if case.adapt is None else ADAPT_TOL
    results = {}
    with KernelGuard() if guard else contextlib.nullcontext():
        for speed in ALL_SPEEDS:
            worst, where = _worst(_run(case, speed), reference, tol)
            results[_label(speed)] = {"worst": round(worst, 4), "at": where}
    return {"case": case.name, "threads": torch.get_num_threads(), "tolerance": tol, "speeds": results}


def _label(speed: Speed) -> str:
    on = [name for name, value in vars(speed).items() if value]
    return "+".join(on) or "all_off"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--guard", action="store_true", help="refuse known unsafe library kernels")
    args = parser.parse_args(argv)
    wanted = set(filter(None, args.cases.split(",")))
    for case in CASES:
        if wanted and case.name not in wanted:
            continue
        print(f"START {case.name}", flush=True)
        print(json.dumps(run_case(case, args.guard)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
