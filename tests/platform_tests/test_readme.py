"""The README as a user reads it: every file its commands name exists, every `metanas`
command it shows is one the CLI knows, every example campaign validates, and every fenced
Python snippet runs as written (with a tiny budget)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from metanas.cli.main import build_parser, demo_config_path, main

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
BLOCKS = [(lang, body) for lang, body in FENCE.findall(README)]
COMMANDS = [
    line.split("#")[0].strip() for lang, body in BLOCKS if lang == "bash" for line in body.splitlines()
]
SNIPPETS = [body for lang, body in BLOCKS if lang == "python"]
# a path into the repository, as the README's commands name them
REPO_PATH = re.compile(r"(?<![\w/.])((?:examples|docs|scripts|metanas|tests)/[\w./{}-]+)")


def test_the_readme_has_commands_and_snippets_to_check():
    assert len(COMMANDS) >= 10
    # each snippet has its test below: a new one needs one too
    kinds = sorted(
        ("metanas.search(" in s, "metanas.load(" in s, "MemoryCallback(" in s, "duckdb.sql(" in s)
        for s in SNIPPETS
    )
    assert kinds == [
        (False, False, False, True),
        (False, False, True, False),
        (False, True, False, False),
        (True, False, False, False),
    ]


def test_every_file_a_readme_command_names_exists():
    named = {m for command in COMMANDS for m in REPO_PATH.findall(command)}
    assert "examples/digits.yaml" in named
    missing = [path for path in sorted(named) if not (REPO / path).exists()]  # (exists() follows a symlink)
    assert not missing, f"the README's commands name files that do not exist: {missing}"


def test_every_linked_file_and_image_exists():
    links = re.findall(r"\]\(((?!https?:)[^)#]+)\)", README)
    assert links and not [link for link in links if not (REPO / link).exists()]


def test_every_metanas_command_in_the_readme_is_one_the_cli_knows():
    choices = next(a for a in build_parser()._actions if a.dest == "command").choices
    used = [shlex.split(c)[1] for c in COMMANDS if c.startswith("metanas ")]
    assert used and not [c for c in used if c not in choices], used


@pytest.mark.parametrize(
    "campaign", sorted(str(p.relative_to(REPO)) for p in (REPO / "examples").glob("*.yaml"))
)
def test_every_example_campaign_validates_with_its_data(campaign, capsys):
    assert main(["run", str(REPO / campaign), "--check"]) == 0
    assert "a valid campaign" in capsys.readouterr().out


def test_the_packaged_demo_is_the_examples_digits_file():
    assert (REPO / "examples" / "digits.yaml").resolve() == demo_config_path().resolve()


def _run_snippet(source: str, namespace: dict) -> None:
    tiny = re.sub(r"(budget|n_trials)=\d+", r"\1=8", source)
    exec(compile(tiny, "README.md snippet", "exec"), namespace)


def test_the_search_snippet_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    snippet = next(s for s in SNIPPETS if "metanas.search(" in s)
    namespace: dict = {}
    _run_snippet(snippet, namespace)
    assert len(namespace["result"].evaluated) == 8
    assert (tmp_path / "mem").is_dir()


def test_the_optuna_snippet_runs_as_written_after_the_search_snippet(tmp_path, monkeypatch):
    """The study reads the record the search snippet left, and writes its own back."""
    import warnings

    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    _run_snippet(next(s for s in SNIPPETS if "metanas.search(" in s), namespace)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _run_snippet(next(s for s in SNIPPETS if "MemoryCallback(" in s), namespace)
    study = namespace["study"]
    assert len(study.trials) == 8
    assert study.trials[0].system_attrs["metanas:why"] == {
        "source": "memory model (portfolio)",
        "tasks": {"dataset-17": 1.0},
    }
    assert any("drop (the memory does not know it)" in str(w.message) for w in caught)
    from metanas.memory.store import MemoryStore

    assert sorted(r.task_id for r in MemoryStore(tmp_path / "mem").records()) == ["dataset-17", "dataset-18"]

    _run_snippet(next(s for s in SNIPPETS if "duckdb.sql(" in s), namespace)  # the query, over that memory
    rows = namespace["best"].fetchall()
    assert {r[0] for r in rows} == {"dataset-17", "dataset-18"} and len(
        rows
    ) == 16  # 8 trials each: all of them
    scores = [r[2] for r in rows if r[0] == "dataset-18"]
    assert scores == sorted(scores, reverse=True) and scores[0] == study.best_value


@pytest.mark.timeout(300)
def test_the_load_snippet_runs_on_a_finished_campaign(ray_session, tmp_path, monkeypatch):
    from metanas.platform.campaign import run_campaign
    from metanas.platform.config import parse_campaign
    from tests.conftest import TINY_CAMPAIGN

    monkeypatch.chdir(tmp_path)
    run_campaign(parse_campaign(TINY_CAMPAIGN), tmp_path / "runs" / "mine", progress=False)
    snippet = next(s for s in SNIPPETS if "metanas.load(" in s)
    rng = np.random.default_rng(0)
    # the names the README's prose defines: a 3-way 1-shot task of 8x8 images in [0, 1]
    namespace = {
        "support_images": rng.random((3, 8, 8)),
        "support_labels": np.array([7, 3, 5]),
        "query_images": rng.random((6, 8, 8)),
    }
    _run_snippet(snippet, namespace)
    assert set(namespace["model"].predict(namespace["query_images"])) <= {7, 3, 5}
