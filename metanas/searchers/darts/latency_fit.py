"""A latency table's prediction, calibrated on measured whole networks.

An op timed alone costs what it costs in a network only roughly: in a network it shares
caches with its neighbours, and the per-call overhead that dominates small tensors is paid
differently (nn-Meter and HELP fit their predictors on whole networks for this reason).
So each op `o` of the space gets a scale `a_o` on its table latency and a cost `b_o` per
place it runs, and the network a constant `c`:

    latency(g) = c + sum over the genotype's edges e of  a_{op(e)} * table(e) + b_{op(e)}

fitted by least squares on the measured networks, pulled towards the plain sum (a = 1,
b = 0) with a ridge penalty so that a handful of networks cannot run away with it. It is
still a sum over slots, so the supernet's expected cost and the constrained derivation use
it unchanged. Measured on the digits demo and Omniglot shapes (120-150 networks, fitted on
k, checked on 50 others, 20 draws): the plain sum plus a median constant ranked at
Spearman 0.93 / 0.96 with 12-14% error whatever k; this fit 0.97 / 0.95 at k = 16 and
0.98 / 0.97 at k = 32 with 4-7% error, little more at 64 (README "Hardware budgets").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from metanas._util.stats import spearman

if TYPE_CHECKING:  # (torch loads where a cost is built, not for the CLI's defaults)
    from metanas.searchers.darts.cost import LinearCost

RIDGE = 1.0  # weight of the pull towards a = 1, b = 0 (against squared ms of error)
# Whole networks a table is calibrated on: measured on the digits demo and Omniglot shapes,
# 32 reach within 0.01 of the Spearman that 64 reach (`metanas bench latency`).
CALIBRATION_NETWORKS = 32
CHECK_NETWORKS = 30  # fresh networks a check measures (about 2 s on a CPU)
TRUSTED_SPEARMAN = 0.9  # a table that ranks fresh networks worse is not to be trusted there
# A table that ranks well but whose latencies are this far off (a busier machine than when
# it was profiled: measured 37-45% on this shared machine an hour later) moves a limit.
SCALE_WARNING_MAPE = 0.25


def _features(
    genotype: Sequence[str], ops: Sequence[str], table: np.ndarray, places: np.ndarray
) -> np.ndarray:
    """[1, each op's summed table latency in the genotype, each op's number of places]."""
    x, n = np.zeros(len(ops)), np.zeros(len(ops))
    for slot, op in enumerate(genotype):
        o = ops.index(op)
        x[o] += table[slot, o]
        n[o] += places[slot, o]
    return np.concatenate([[1.0], x, n])


def fit_latency(
    ops: Sequence[str],
    table: np.ndarray,
    places: np.ndarray,
    networks: Sequence[tuple[Sequence[str], float]],
) -> LinearCost:
    """The calibrated cost. `table[slot, op]`: the op's table latency summed over the places
    the slot puts it; `places[slot, op]`: how many places that is (0 for 'none');
    `networks`: (genotype, measured ms) pairs."""
    from metanas.searchers.darts.cost import LinearCost

    if not networks:
        raise ValueError("no measured networks to calibrate the latency table on")
    k = len(ops)
    X = np.array([_features(g, ops, table, places) for g, _ in networks])
    y = np.array([ms for _, ms in networks])
    prior = np.concatenate([np.ones(k), np.zeros(k)])
    penalty = np.sqrt(RIDGE) * np.eye(2 * k + 1)[1:]  # every coefficient but the constant
    theta = np.linalg.lstsq(np.vstack([X, penalty]), np.concatenate([y, np.sqrt(RIDGE) * prior]), rcond=None)[
        0
    ]
    scale, per_place = theta[1 : k + 1], theta[k + 1 :]
    per_slot = table * scale + places * per_place
    constant = float(theta[0])
    # Each genotype has one op per slot, so a slot's costs may move by a common amount into
    # the constant: moved so none is below 0, 'none' (never derived, 0 in the supernet's
    # expected cost) stays the cheapest choice.
    real = places.sum(axis=0) > 0
    for slot in range(len(per_slot)):
        low = min(per_slot[slot, real].min(), 0.0)
        per_slot[slot, real] -= low
        constant += low
    return LinearCost("latency_ms", tuple(ops), per_slot, constant)


def agreement(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Rank correlation and mean absolute percentage error of a prediction."""
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return {"spearman": round(spearman(p, m), 4), "mape": round(float(np.mean(np.abs(p - m) / m)), 4)}


def trusted(check: dict) -> bool:
    """Whether a table's check on fresh networks (`check_table`) ranks them well enough."""
    return check["spearman"] >= TRUSTED_SPEARMAN


def check_problem(check: dict) -> str | None:
    """What is wrong with a latency table, by its check on fresh networks (`check_table`),
    in words that follow "the latency table": it ranks them below `TRUSTED_SPEARMAN`, or
    ranks them well but is over `SCALE_WARNING_MAPE` off; None when neither."""
    n, rho, off = check["networks"], check["spearman"], 100 * check["mape"]
    if not trusted(check):
        return (
            f"ranks {n} fresh networks measured here at Spearman {rho} (< {TRUSTED_SPEARMAN}), "
            f"error {off:.0f}%"
        )
    if check["mape"] > SCALE_WARNING_MAPE:
        return (
            f"is {off:.0f}% off on {n} fresh networks measured here (it ranks them well, Spearman {rho}): "
            "a latency limit binds on the table's scale"
        )
    return None
