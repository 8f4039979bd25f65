"""The model-based transfer: the cross-task surrogate, task weighting, the greedy portfolio,
the surrogate kept next to the memory."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest

from metanas.memory.acquisition import MIN_CHANCE_TEST, greedy_portfolio, task_weights
from metanas.memory.cross_task import CrossTaskSurrogate, TaskData
from metanas.memory.gp import GP, rank_normalise
from metanas.memory.memory_model import MemoryModel, train_surrogate
from metanas.memory.records import PastTask
from metanas.searchers.space import Categorical, Ordinal, SearchSpace

GRID = tuple(round(v, 1) for v in np.linspace(0, 1, 11))
SPACE = SearchSpace(
    (Ordinal("x", GRID), Ordinal("y", GRID), Categorical("act", ("relu", "tanh", "gelu"))), name="family"
)
CONFIGS = [dict(zip(SPACE.names, c)) for c in itertools.product(GRID, GRID, ("relu", "tanh", "gelu"))]


def member(h: float):
    """A task of the family: its best config moves with the hidden parameter h."""
    return lambda c: (
        -((c["x"] - h) ** 2 + (c["y"] - (1 - h)) ** 2) * 10 + (0.5 if c["act"] == "gelu" else 0.0)
    )


def stored(h: float, n: int = 40, seed: int = 0) -> TaskData:
    rng = np.random.default_rng(seed)
    picks = [CONFIGS[i] for i in rng.choice(len(CONFIGS), n, replace=False)]
    scores = np.asarray([member(h)(c) for c in picks])
    X = np.asarray([SPACE.encode(c) for c in picks], dtype=np.float32)
    return TaskData(f"h={h:.2f}", X, rank_normalise(scores), np.asarray([h], dtype=np.float32))


FAMILY = [stored(h, seed=i) for i, h in enumerate(np.linspace(0.1, 0.9, 9)) if abs(h - 0.5) > 0.01]


def test_rank_normalise_shares_ties_and_puts_the_best_at_one():
    assert rank_normalise([3, 1, 2, 2, 5]).tolist() == [0.75, 0.0, 0.375, 0.375, 1.0]


def test_the_surrogate_ranks_an_unseen_members_true_best_config_in_its_top_5():
    model = CrossTaskSurrogate(len(SPACE.encode(CONFIGS[0])), 1, seed=0).fit(FAMILY)
    X = np.asarray([SPACE.encode(c) for c in CONFIGS], dtype=np.float32)
    for h in (0.5, 0.35):  # never stored
        truth = np.asarray([member(h)(c) for c in CONFIGS])
        predicted, spread = model.predict(X, np.asarray([h], dtype=np.float32))
        top5 = np.argsort(-predicted)[:5]
        assert int(np.argmax(truth)) in top5, (h, [CONFIGS[i] for i in top5])
        assert spread.shape == predicted.shape and (spread >= 0).all()


def test_the_order_of_the_records_does_not_change_the_predictions():
    X = np.asarray([SPACE.encode(c) for c in CONFIGS[:50]], dtype=np.float32)
    a = CrossTaskSurrogate(X.shape[1], 1, seed=3).fit(FAMILY).predict(X)[0]
    shuffled = [FAMILY[i] for i in np.random.default_rng(1).permutation(len(FAMILY))]
    b = CrossTaskSurrogate(X.shape[1], 1, seed=3).fit(shuffled).predict(X)[0]
    assert np.allclose(a, b, atol=1e-6)


def test_stored_tasks_are_weighted_by_how_they_rank_the_evaluations():
    rng = np.random.default_rng(0)
    y = rng.normal(size=12)
    right, inverted, noise = y + 0.1 * rng.normal(size=12), -y, rng.normal(size=12)
    w = task_weights(np.stack([right, inverted, noise]), y)
    assert w[0] > 0.9 and w[1] == 0.0 and w.sum() == pytest.approx(1.0)
    # nobody better than chance: every weight 0, a cold search
    assert task_weights(np.stack([inverted, -y + 0.01 * rng.normal(size=12)]), y).sum() == 0.0
    # too little evidence to judge: every task counts the same
    assert task_weights(np.stack([right[:2], inverted[:2]]), y[:2]).tolist() == [0.5, 0.5]
    assert MIN_CHANCE_TEST <= 12


def test_the_greedy_portfolio_covers_the_tasks_one_config_cannot():
    F = np.asarray([[1.0, 0.0, 0.7, 0.1], [0.0, 1.0, 0.7, 0.1], [0.0, 0.0, 0.6, 1.0]])
    assert greedy_portfolio(F, 3) == [2, 3, 0]  # 2 is best on average, then 3 fills task 3's gap


def test_the_gp_fits_what_it_saw_and_is_unsure_far_away():
    X = np.asarray([[0.0], [0.5], [1.0]])
    gp = GP(X, np.asarray([0.0, 1.0, 0.0]))
    mu, sd = gp.predict(np.asarray([[0.5], [3.0]]))
    assert mu[0] > 0.8 and sd[1] > sd[0]
    assert len(gp.loo_mean()) == 3


def _past(n_tasks: int = 4) -> list[PastTask]:
    out = []
    for i, h in enumerate(np.linspace(0.2, 0.8, n_tasks)):
        picks = [CONFIGS[j] for j in np.random.default_rng(i).choice(len(CONFIGS), 30, replace=False)]
        out.append(PastTask(f"t{i}", [{"config": c, "score": member(h)(c)} for c in picks], embedding=[h]))
    return out


def test_the_surrogate_is_kept_next_to_the_memory_and_retrained_only_when_needed(tmp_path, caplog):
    past = _past()
    first = MemoryModel(SPACE, past, directory=tmp_path, embedder="meta")
    files = list((tmp_path / "models").glob("surrogate-*.safetensors"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    # same records: loaded
    again = MemoryModel(SPACE, list(reversed(past)), directory=tmp_path, embedder="meta")
    assert files[0].stat().st_mtime_ns == stamp
    assert np.allclose(first.predict_stored(first.X[:20]), again.predict_stored(first.X[:20]), atol=1e-6)
    more = MemoryModel(SPACE, _past(5), directory=tmp_path, embedder="meta")  # a new record of five: updated
    assert files[0].stat().st_mtime_ns != stamp and more.surrogate.fingerprint != first.surrogate.fingerprint
    stamp = files[0].stat().st_mtime_ns
    # tasks it knows: used as it is
    subset = MemoryModel(SPACE, _past(5)[1:], directory=tmp_path, embedder="meta")
    assert files[0].stat().st_mtime_ns == stamp and subset.surrogate.fingerprint == more.surrogate.fingerprint
    MemoryModel(SPACE, _past(10), directory=tmp_path, embedder="meta")  # half of them new: updated
    stamp = files[0].stat().st_mtime_ns
    # one in 11 new (under STALE): used as it is
    MemoryModel(SPACE, _past(11), directory=tmp_path, embedder="meta")
    assert files[0].stat().st_mtime_ns == stamp
    files[0].write_bytes(b"not safetensors")  # corrupt: retrained with a warning, never used
    with caplog.at_level(logging.WARNING):
        MemoryModel(SPACE, _past(5), directory=tmp_path, embedder="meta")
    assert any("retraining" in m for m in caplog.messages)
    other = SearchSpace((Ordinal("x", GRID), Ordinal("y", GRID), Categorical("act", ("relu", "gelu"))))
    meta = next((tmp_path / "models").glob("*.json"))
    (tmp_path / "models" / "copied.json").write_text(meta.read_text())
    from metanas.memory.cross_task import SurrogateFile

    with pytest.raises(ValueError, match="holds a surrogate for search space"):
        SurrogateFile(tmp_path / "models" / "copied").load(other.signature)


def test_proposals_start_from_the_family_s_good_region():
    model = MemoryModel(SPACE, _past(), seed=0)
    proposals = model.portfolio(3)
    assert len(proposals) == 3 and len({str(c) for c, _, _ in proposals}) == 3
    first = proposals[0][0]
    assert first["act"] == "gelu" and 0.2 <= first["x"] <= 0.8
    assert train_surrogate(SPACE, model.tasks).embedding_dims == 1


def test_a_known_embedding_weights_the_stored_tasks_by_similarity():
    """Two kinds of stored task with optima at opposite corners: the new task's embedding
    says which kind it is, and the first proposal goes to that kind's corner."""
    past = []
    for i, h in enumerate((0.1, 0.12, 0.88, 0.9)):
        picks = [CONFIGS[j] for j in np.random.default_rng(i).choice(len(CONFIGS), 60, replace=False)]
        picks.append({"x": round(h, 1), "y": round(1 - h, 1), "act": "gelu"})  # each task found its optimum
        past.append(PastTask(f"t{i}", [{"config": c, "score": member(h)(c)} for c in picks], embedding=[h]))
    for h in (0.1, 0.9):
        model = MemoryModel(SPACE, past, seed=0, embedding=[h])
        first = model.portfolio(1)[0][0]
        assert abs(first["x"] - h) <= 0.1 and abs(first["y"] - (1 - h)) <= 0.1, (
            h,
            first,
            model.prior_weights,
        )
        near = model.prior_weights[[0, 1]] if h < 0.5 else model.prior_weights[[2, 3]]
        assert near.sum() > 0.8
        # before the task has shown anything, its evaluations keep these weights
        assert np.allclose(model.suggest([], []).weights, model.prior_weights)
    with pytest.raises(ValueError, match="has 2 dimensions"):
        MemoryModel(SPACE, past, seed=0, embedding=[0.1, 0.2])
