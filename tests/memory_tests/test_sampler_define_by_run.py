"""An Optuna user's own idiom: define-by-run objectives, `MemoryCallback` writing the memory,
`MemorySampler` reading it, no metanas space anywhere (issue 28)."""

from __future__ import annotations

import math
import warnings

import optuna
import pytest

import metanas
from metanas.memory.callback import study_record
from metanas.memory.sampler import PROPOSAL_ATTR, WHY_ATTR, MemorySampler
from metanas.memory.store import MemoryStore
from metanas.searchers.optuna_search import optuna_distributions
from metanas.searchers.space import Categorical, Float, Int, SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


def objective_for(shift: float, extra: bool = True, prune: bool = False):
    """A task of one family: the best lr moves with `shift`; `drop` is conditional on the
    activation; `extra` is a parameter the memory never saw."""

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        layers = trial.suggest_int("layers", 4, 32, step=4)
        act = trial.suggest_categorical("act", ["relu", "tanh", "gelu"])
        score = -abs(math.log10(lr) + 2 + shift) - abs(layers - 16) / 16 + 0.3 * (act == "gelu")
        if act == "relu":
            score += 0.1 * trial.suggest_float("drop", 0.0, 0.5)
        if extra:
            score += 0.01 * trial.suggest_int("extra", 0, 3)
        if prune:
            trial.report(score - 1.0, 0)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return score

    return objective


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    """Three past studies of the family, written by the callback alone."""
    path = tmp_path_factory.mktemp("memory")
    for i, shift in enumerate((-0.3, 0.0, 0.3)):
        study = optuna.create_study(
            direction="maximize", study_name=f"past{i}", sampler=optuna.samplers.TPESampler(seed=i)
        )
        study.optimize(
            objective_for(shift, extra=False), n_trials=25, callbacks=[metanas.MemoryCallback(path)]
        )
    return path


def test_the_callback_stores_each_study_once_with_its_space_and_trials(memory):
    store = MemoryStore(memory)
    assert sorted(r.task_id for r in store.records()) == ["past0", "past1", "past2"]
    record = store.get("optuna/past1")
    assert len(record.trials) == 25 and record.revision == 25
    space = SearchSpace.from_spec(record.space)
    assert space["lr"] == Float("lr", 1e-4, 1e-1, log=True) and space["layers"] == Int(
        "layers", 4, 32, step=4
    )
    assert space["act"] == Categorical("act", ("relu", "tanh", "gelu")) and "drop" in space.names
    assert record.best_score == max(t["score"] for t in record.trials)
    assert len(list((memory / "parts").glob("*.parquet"))) == 3  # one part per study, not one per trial


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
@pytest.mark.parametrize("mode", ["n_jobs=2", "pruner"])
def test_a_define_by_run_study_runs_without_error(memory, warm, mode):
    sampler = MemorySampler(memory=memory if warm else None, task_id="new", seed=0)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3) if mode == "pruner" else None
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study.optimize(
            objective_for(0.1, prune=mode == "pruner"),
            n_trials=30,
            n_jobs=2 if mode == "n_jobs=2" else 1,
            catch=(),
        )
    assert len(study.trials) == 30 and not [
        t for t in study.trials if t.state == optuna.trial.TrialState.FAIL
    ]
    if mode == "pruner":
        assert any(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    if warm:
        assert sampler.history and "extra" not in sampler.model.space.names  # the model never chose `extra`
        named = [str(w.message) for w in caught if "MemorySampler" in str(w.message)]
        assert named and "extra (the memory does not know it)" in named[0]
    else:
        assert not sampler.history


def test_a_related_study_starts_from_the_stored_studies(memory):
    """Study 2's first trials are the model's, leaning on the stored studies (their `why`);
    it finds a good config sooner than TPE from scratch."""
    study = optuna.create_study(
        direction="maximize", sampler=MemorySampler(memory=memory, task_id="new", seed=0)
    )
    study.optimize(objective_for(0.1), n_trials=10)
    whys = [t.system_attrs[WHY_ATTR] for t in study.trials]
    assert all(w["source"].startswith("memory model") for w in whys)
    assert set(whys[0]["tasks"]) <= {"past0", "past1", "past2"} and whys[0]["tasks"]
    cold = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    cold.optimize(objective_for(0.1), n_trials=10)
    assert study.best_value > cold.best_value


def test_a_resumed_study_updates_its_record(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    memory = tmp_path / "memory"
    for n in (4, 3):  # a study, then the same study resumed by another process
        study = optuna.create_study(
            study_name="s", storage=storage, direction="maximize", load_if_exists=True
        )
        study.optimize(
            objective_for(0.0), n_trials=n, callbacks=[metanas.MemoryCallback(memory, task_id="t")]
        )
    store = MemoryStore(memory)
    assert len(store) == 1 and len(store.get("optuna/s").trials) == 7
    assert len(store.records(exclude_task="other")) == 1


def test_enqueued_trials_keep_their_values_and_pruned_trials_are_no_evidence(memory):
    sampler = MemorySampler(memory=memory, task_id="new", seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial({"lr": 0.05, "layers": 8, "act": "tanh"})
    study.optimize(objective_for(0.0, extra=False), n_trials=3)
    assert study.trials[0].params == {"lr": 0.05, "layers": 8, "act": "tanh"}
    assert PROPOSAL_ATTR not in study.trials[0].system_attrs and PROPOSAL_ATTR in study.trials[1].system_attrs
    configs, _, taken, finished = sampler._history(study, study.trials[-1], sampler.model.space)
    assert finished == 2 and len(configs) == 2 and not taken  # the enqueued trial is evidence like any other

    pruned = optuna.trial.create_trial(
        params={"lr": 0.01, "layers": 16, "act": "gelu"},
        distributions=study.trials[0].distributions,
        state=optuna.trial.TrialState.PRUNED,
        intermediate_values={0: 5.0},
    )
    study.add_trial(pruned)
    study.optimize(objective_for(0.0, extra=False), n_trials=1)
    configs, _, taken, finished = sampler._history(study, study.trials[-1], sampler.model.space)
    assert finished == 4 and len(configs) == 3 and taken == [{"lr": 0.01, "layers": 16, "act": "gelu"}]
    # (a pruned trial: its config taken, its partial value no evidence)
    assert study.trials[-1].params != taken[0]


def _two_objectives(trial: optuna.Trial) -> tuple[float, float]:
    layers = trial.suggest_int("layers", 4, 32, step=4)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    return -abs(math.log10(lr) + 2) + layers / 32, layers * 1.5  # accuracy up with layers, latency too


def test_a_multi_objective_study_starts_from_the_stored_pareto_sets(tmp_path):
    memory = tmp_path / "memory"
    fronts = []
    for i in range(2):
        study = optuna.create_study(
            directions=["maximize", "minimize"],
            study_name=f"mo{i}",
            sampler=optuna.samplers.RandomSampler(seed=i),
        )
        study.set_metric_names(["acc", "latency_ms"])
        study.optimize(_two_objectives, n_trials=20, callbacks=[metanas.MemoryCallback(memory)])
        fronts += [t.params for t in study.best_trials]
    sampler = MemorySampler(
        memory=memory, task_id="new", seed=0, fallback=optuna.samplers.NSGAIISampler(seed=0)
    )
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.set_metric_names(["acc", "latency_ms"])
    study.optimize(_two_objectives, n_trials=14)
    warm = [t for t in study.trials if t.system_attrs.get(WHY_ATTR, {}).get("source") == "pareto set"]
    assert 2 <= len(warm) <= 10 and [t.number for t in warm] == list(range(len(warm)))  # the first trials
    assert all(t.params in fronts for t in warm)  # each a point of a stored front
    # round-robin over the stored tasks
    assert {t.system_attrs[WHY_ATTR]["task"] for t in warm} == {
        "mo0",
        "mo1",
    }
    assert len(study.trials) == 14 and len(sampler.history) == len(warm)


def test_a_multi_objective_study_without_stored_fronts_is_the_fallbacks(memory):
    # (single-objective records: no metrics to front)
    sampler = MemorySampler(memory=memory, task_id="new", seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(lambda t: (objective_for(0.0, extra=False)(t), t.params["layers"]), n_trials=6)
    assert len(study.trials) == 6 and not sampler.history


def test_a_study_record_matches_a_search_record_of_the_same_space(tmp_path):
    """The next warm start cannot tell a study's record from `metanas.search`'s: the same
    signature, embedder and embedding for the same trials."""
    space = SearchSpace(
        (
            Float("lr", 1e-4, 1e-1, log=True),
            Int("layers", 4, 32, step=4),
            Categorical("act", ("relu", "tanh")),
        )
    )

    def score(c):
        return -abs(math.log10(c["lr"]) + 2) - abs(c["layers"] - 16) / 16 + 0.2 * (c["act"] == "tanh")

    result = metanas.search(score, space, task_id="t", memory=tmp_path / "m", budget=8, warm_start="none")
    study = optuna.create_study(direction="maximize")
    for trial in result.evaluated:
        study.add_trial(
            optuna.trial.create_trial(
                params=trial.config, distributions=optuna_distributions(space), value=trial.score
            )
        )
    ours = study_record(study, "t")
    theirs = MemoryStore(tmp_path / "m").records()[0]
    assert ours.space_signature == theirs.space_signature and ours.embedder == theirs.embedder
    assert ours.embedding.tolist() == pytest.approx(theirs.embedding.tolist())
    assert [t["config"] for t in ours.trials] == [t["config"] for t in theirs.trials]
    assert [t["score"] for t in ours.trials] == [t["score"] for t in theirs.trials]


def test_bad_memory_paths_fail_before_any_trial(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a memory directory"):
        metanas.MemoryCallback(tmp_path / "file")
    with pytest.raises(ValueError, match="task_id: a non-empty name"):
        metanas.MemoryCallback(tmp_path / "mem", task_id="")


def test_the_callback_pickles_and_reopens_its_memory(tmp_path):
    import pickle

    callback = pickle.loads(pickle.dumps(metanas.MemoryCallback(tmp_path / "mem", task_id="t")))
    study = optuna.create_study(direction="maximize", study_name="p")
    study.optimize(objective_for(0.0), n_trials=2, callbacks=[callback])
    assert callback.stored == 2 and len(MemoryStore(tmp_path / "mem")) == 1
