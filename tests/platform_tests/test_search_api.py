"""metanas.search with a plain Python objective, warm-started from a memory of related tasks."""

from __future__ import annotations

import numpy as np
import pytest

import metanas
from metanas.memory.store import MemoryStore
from metanas.searchers.space import Categorical, Float, SearchSpace

SPACE = SearchSpace(
    (Float("x", 0.0, 1.0), Float("y", 0.0, 1.0), Categorical("act", ("relu", "tanh", "gelu"))), name="family"
)


def family_member(h: float):
    """A task whose best config depends on a hidden parameter h."""

    def objective(config):
        return -((config["x"] - h) ** 2 + (config["y"] - (1 - h)) ** 2) * 10 + (
            0.5 if config["act"] == "gelu" else 0.0
        )

    return objective


def evals_to_target(result, objective_optimum: float, tol: float = 0.2) -> int:
    for i, best in enumerate(result.best_so_far()):
        if best >= objective_optimum - tol:
            return i + 1
    return len(result.best_so_far()) + 1


def test_memory_warm_start_reaches_the_target_sooner_than_cold_tpe(tmp_path):
    memory = tmp_path / "mem"
    for i, h in enumerate(np.linspace(0.55, 0.8, 6)):
        metanas.search(
            family_member(h), SPACE, task_id=f"past{i}", memory=memory, budget=30, warm_start="none", seed=i
        )
    assert len(MemoryStore(memory)) == 6
    warm, cold = [], []
    for seed, h in enumerate((0.6, 0.7, 0.75)):
        objective = family_member(h)
        w = metanas.search(
            objective, SPACE, task_id=f"new{seed}", memory=memory, budget=25, seed=seed, key=f"w{seed}"
        )
        c = metanas.search(objective, SPACE, task_id=f"new{seed}", budget=25, warm_start="none", seed=seed)
        assert len(w.evaluated) == len(c.evaluated) == 25  # probes included in the budget
        warm.append(evals_to_target(w, 0.5))
        cold.append(evals_to_target(c, 0.5))
    print("evals to target: warm", warm, "cold", cold)
    assert np.mean(warm) < np.mean(cold), (warm, cold)
    # the new searches were appended to the memory under their keys, and every black-box
    # record of the space shares one (estimated landmark) embedder, so FAISS can compare them
    store = MemoryStore(memory)
    assert "w0" in store and len({store.get(k).embedder for k in store.keys()}) == 1
    assert len(store.nearest(store.get("w0").embedding, 3, SPACE.signature, store.get("w0").embedder)) == 3


def test_search_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="warm_start"):
        metanas.search(family_member(0.5), SPACE, task_id="t", warm_start="magic")
    with pytest.raises(ValueError, match="budget"):
        metanas.search(family_member(0.5), SPACE, task_id="t", budget=0)
    with pytest.raises(ValueError, match="searcher"):
        metanas.search(family_member(0.5), SPACE, task_id="t", searcher="grid", budget=10)


def test_a_search_whose_every_evaluation_fails_raises_one_clear_error_and_leaves_the_memory_alone(tmp_path):
    memory = tmp_path / "mem"
    metanas.search(family_member(0.6), SPACE, task_id="past", memory=memory, budget=10, warm_start="none")
    for warm_start in ("none", "model", "memory"):  # (the NaN of issue 10 crashed the memory's embedding)
        with pytest.raises(metanas.SearchFailed, match="every one of the 5 trials failed") as err:
            metanas.search(
                lambda c: float("nan"), SPACE, task_id="t", memory=memory, budget=5, warm_start=warm_start
            )
        assert len(err.value.trials) == 5
    store = MemoryStore(memory)
    assert store.keys() == ["search/past/optuna/none/0/b10"] and not store.problems


def test_the_model_policy_is_the_default_and_proposals_come_from_the_memory(tmp_path):
    memory = tmp_path / "mem"
    for i, h in enumerate(np.linspace(0.55, 0.8, 5)):
        metanas.search(
            family_member(h), SPACE, task_id=f"past{i}", memory=memory, budget=20, warm_start="none", seed=i
        )
    result = metanas.search(family_member(0.7), SPACE, task_id="new", memory=memory, budget=12)
    assert result.searcher == "optuna+MemorySampler" and len(result.evaluated) == 12
    assert evals_to_target(result, 0.5) <= 6
    proposals = metanas.propose(SPACE, memory, task_id="new", n=3)
    assert len(proposals) == 3
    for config, predicted, uncertainty in proposals:
        assert SPACE.validate(config) == config and 0 <= predicted <= 1 and uncertainty >= 0
    assert proposals[0][0]["act"] == "gelu"
    with pytest.raises(ValueError, match="not a memory directory"):
        metanas.propose(SPACE, tmp_path / "nope")
    with pytest.raises(ValueError, match="searcher='optuna'"):
        metanas.search(
            family_member(0.7), SPACE, task_id="new", searcher="random", budget=5, warm_start="model"
        )


def test_a_precomputed_embedding_steers_every_policy_to_the_similar_tasks(tmp_path):
    memory = tmp_path / "mem"
    for i, h in enumerate((0.15, 0.2, 0.8, 0.85)):  # two kinds of task, optima at opposite corners
        metanas.search(
            family_member(h),
            SPACE,
            task_id=f"past{i}",
            memory=memory,
            budget=25,
            warm_start="none",
            seed=i,
            embedding=("meta", [h]),
        )
    for h in (0.18, 0.82):
        for warm_start in ("model", "memory", "portfolio"):
            result = metanas.search(
                family_member(h),
                SPACE,
                task_id="new",
                budget=3,
                memory=memory,
                warm_start=warm_start,
                embedding=("meta", [h]),
                key=f"{warm_start}{h}",
            )
            first = result.evaluated[0].config
            assert abs(first["x"] - h) < 0.3 and abs(first["y"] - (1 - h)) < 0.3, (warm_start, h, first)
    assert list((memory / "models").glob("surrogate-*.safetensors"))  # trained once, kept in the memory
    # an Optuna user's study, through the sampler
    import optuna

    study = optuna.create_study(
        direction="maximize", sampler=metanas.MemorySampler(SPACE, memory, embedding=("meta", [0.82]))
    )
    study.optimize(
        lambda trial: family_member(0.82)(
            {
                n: trial.suggest_float(n, 0, 1)
                if n != "act"
                else trial.suggest_categorical(n, ["relu", "tanh", "gelu"])
                for n in SPACE.names
            }
        ),
        n_trials=1,
    )
    first = study.trials[0].params
    assert abs(first["x"] - 0.82) < 0.3 and abs(first["y"] - 0.18) < 0.3, first
    with pytest.raises(ValueError, match="use 'meta', not 'other'"):
        metanas.search(
            family_member(0.5), SPACE, task_id="t", memory=memory, budget=3, embedding=("other", [0.5])
        )


def speed_accuracy(h: float):
    """A task with two metrics: accuracy peaks at x = h; latency grows with x."""

    def objective(config):
        return {
            "acc": 1.0 - (config["x"] - h) ** 2 - 0.1 * config["y"],
            "ms": 1.0 + 3.0 * config["x"] + config["y"],
        }

    return objective


def test_multi_objective_search_stores_every_metric_and_warm_starts_from_stored_fronts(tmp_path):
    memory, objectives = tmp_path / "mem", {"acc": "max", "ms": "min"}
    for i, h in enumerate((0.55, 0.65)):
        metanas.search(
            speed_accuracy(h),
            SPACE,
            task_id=f"past{i}",
            memory=memory,
            budget=15,
            objectives=objectives,
            seed=i,
        )
    stored = MemoryStore(memory).records()
    assert len(stored) == 2 and all(set(t["metrics"]) == {"acc", "ms"} for r in stored for t in r.trials)
    fronts = {(t["config"]["x"], t["config"]["y"]) for r in stored for t in r.trials}
    result = metanas.search(
        speed_accuracy(0.6),
        SPACE,
        task_id="new",
        memory=memory,
        budget=12,
        objectives=objectives,
        constraints={"ms": 3.0},
    )
    warm = [t for t in result.trials if t.source == "warm_start"]
    assert warm and all((t.config["x"], t.config["y"]) in fronts for t in warm)
    assert result.pareto and all(t.metrics["ms"] <= 3.0 for t in result.pareto)
    with pytest.raises(ValueError, match="multi-objective search takes one of"):
        metanas.search(speed_accuracy(0.6), SPACE, task_id="x", objectives=objectives, warm_start="model")
    with pytest.raises(metanas.SearchFailed):  # nothing feasible: nothing stored
        metanas.search(
            speed_accuracy(0.6),
            SPACE,
            task_id="x",
            memory=memory,
            budget=4,
            objectives=objectives,
            constraints={"ms": 0.5},
        )
    assert len(MemoryStore(memory).records()) == 3
    with pytest.raises(ValueError, match="pareto: this was a single-objective search"):
        _ = metanas.search(family_member(0.5), SPACE, task_id="s", budget=3, warm_start="none").pareto


def test_a_search_recorded_in_an_optuna_storage_opens_as_a_study(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 'searches.db'}"
    metanas.search(family_member(0.5), SPACE, task_id="one", budget=6, warm_start="none", storage=url)
    metanas.search(
        speed_accuracy(0.5),
        SPACE,
        task_id="two",
        budget=5,
        objectives={"acc": "max", "ms": "min"},
        storage=url,
    )
    one, two = (
        optuna.load_study(study_name="one", storage=url),
        optuna.load_study(study_name="two", storage=url),
    )
    assert len(one.trials) == 6 and one.best_value == max(t.value for t in one.trials)
    assert len(two.trials) == 5 and two.metric_names == ["acc", "ms"] and two.best_trials
    with pytest.raises(ValueError, match="storage"):
        metanas.search(
            family_member(0.5),
            SPACE,
            task_id="t",
            budget=3,
            searcher="random",
            warm_start="none",
            storage=url,
        )


def test_explain_shows_where_each_evaluation_came_from_and_the_weights_behind_it(tmp_path):
    from metanas.platform.explain_search import explain_record

    memory = tmp_path / "mem"
    for i, h in enumerate((0.3, 0.6, 0.8)):
        metanas.search(
            family_member(h), SPACE, task_id=f"past{i}", memory=memory, budget=12, warm_start="none", seed=i
        )
    result = metanas.search(family_member(0.55), SPACE, task_id="new", memory=memory, budget=10)
    whys = [t.why for t in result.trials]
    assert all(w["source"].startswith("memory model") for w in whys)  # 10 < the model's hand-off to TPE
    assert [w["evaluations_before"] for w in whys] == list(range(10))
    assert set(whys[0]["tasks"]) == {"past0", "past1", "past2"} and sum(
        whys[0]["tasks"].values()
    ) == pytest.approx(1.0, abs=1e-3)
    page = explain_record(memory, "search/new/optuna/model/0/b10", tmp_path / "why.html").read_text()
    assert page.count("<img ") == 2 and page.count("memory model (") >= 10
    assert 'data-key="trials.9.score"' in page
    path = metanas.explain_search(result, tmp_path / "r.html", title="new")
    assert path.read_text().count("data:image/png;base64,") == 2
    with pytest.raises(FileNotFoundError, match="no record with key"):
        explain_record(memory, "nope", tmp_path / "x.html")


def test_an_objective_that_raises_costs_a_trial_not_the_search(tmp_path):
    calls = []

    def sometimes(config):
        calls.append(config)
        if len(calls) % 3 == 0:
            raise RuntimeError("out of memory")
        return family_member(0.5)(config)

    memory = tmp_path / "mem"
    result = metanas.search(sometimes, SPACE, task_id="t", memory=memory, budget=12, warm_start="none")
    assert len(result.evaluated) == 12 and result.failed == 4
    stored = MemoryStore(memory).get("search/t/optuna/none/0/b12")
    assert sum(t["score"] == float("-inf") for t in stored.trials) == 4
    with pytest.raises(RuntimeError, match="out of memory"):
        calls.clear()
        metanas.search(sometimes, SPACE, task_id="t", budget=12, warm_start="none", fail_fast=True)
    with pytest.raises(TypeError, match="returned '0.5' for"):
        metanas.search(lambda c: "0.5", SPACE, task_id="t", budget=3, warm_start="none")
    # a rerun with a larger budget is a record of its own, never silently dropped
    metanas.search(family_member(0.5), SPACE, task_id="t", memory=memory, budget=15, warm_start="none")
    assert sorted(MemoryStore(memory).keys()) == ["search/t/optuna/none/0/b12", "search/t/optuna/none/0/b15"]


def test_ctrl_c_keeps_the_finished_evaluations(tmp_path):
    calls = []

    def interrupted_at_seven(config):
        calls.append(config)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return family_member(0.5)(config)

    memory = tmp_path / "mem"
    with pytest.raises(metanas.SearchInterrupted, match="after 6 finished evaluations") as err:
        metanas.search(interrupted_at_seven, SPACE, task_id="t", memory=memory, budget=20, warm_start="none")
    assert len(err.value.trials) == 6 and err.value.key == "search/t/optuna/none/0/b20/interrupted"
    assert len(MemoryStore(memory).get(err.value.key).trials) == 6


def test_a_log_scaled_learning_rate_whose_best_lies_at_its_top_bound_stays_in_range(tmp_path):
    """Issue 27: exp(log(0.1)) is 0.10000000000000006, so the model policy's local search
    around a best config at the bound proposed a value outside the range and crashed."""
    space = SearchSpace(
        (Float("lr", 1e-4, 1e-1, log=True), Categorical("act", ("relu", "gelu"))), name="readme"
    )

    def objective(config):  # the higher the learning rate the better: every best lies at 0.1
        return float(np.log10(config["lr"])) + (0.1 if config["act"] == "gelu" else 0.0)

    memory = tmp_path / "mem"
    for i in range(4):
        metanas.search(
            objective, space, task_id=f"past{i}", memory=memory, budget=15, warm_start="none", seed=i
        )
    for warm_start in ("model", "memory", "portfolio"):
        result = metanas.search(
            objective, space, task_id="new", memory=memory, budget=30, warm_start=warm_start
        )
        assert len(result.evaluated) == 30
        assert all(1e-4 <= t.config["lr"] <= 0.1 for t in result.evaluated)
