"""One error path for the command line: every user error is one line on stderr and exit
code 2; --help documents every option; every command the README shows exists."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from metanas.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def _one_line_error(capsys, argv: list[str], expected: str) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert expected in lines[0], lines[0]


@pytest.fixture
def files(tmp_path):
    png = tmp_path / "image.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    ordinary = tmp_path / "ordinary"
    ordinary.mkdir()
    (ordinary / "notes.txt").write_text("not a memory")
    return {
        "png": str(png),
        "dir": str(ordinary),
        "tmp": str(tmp_path),
        "digits": str(REPO / "examples" / "digits.yaml"),
    }


CASES = [
    (["run"], "required: config"),
    (["run", "{digits}"], "run: --out is required (or --check"),
    (["run", "{png}", "--out", "{tmp}/o"], "cannot be read as a campaign file (not a text file)"),
    (["search", "nasbench201/cifar10", "--memory", "{tmp}/m", "--budget", "0"], "--budget: must be >= 1"),
    (["search", "nasbench201/cifar10", "--memory", "{tmp}/m", "--budget", "-1"], "--budget: must be >= 1"),
    (["search", "nasbench201/cifar10", "--memory", "{tmp}/m", "--seed", "-5"], "--seed: must be >= 0"),
    (["search", "nasbench201/cifar10", "--memory", "{png}"], "is a file, not a memory directory"),
    (["search", "nasbench201/cifar10", "--memory", "{dir}"], "not a memory (no parts/)"),
    (["search", "nowhere/x", "--memory", "{tmp}/m"], "task: unknown 'nowhere/x'"),
    (["memory", "ls", "{dir}"], "is not a memory directory (no parts/)"),
    (["memory", "ls", "{tmp}/missing"], "does not exist"),
    (["status", "x", "--address", "http://127.0.0.1:1"], "no Ray job server answers at http://127.0.0.1:1"),
    (["status", "x", "--address", "127.0.0.1:8265"], "expected the job server as http://HOST:PORT"),
    (
        ["run", "metanas/platform/demo_campaign.yaml", "--out", "{tmp}/o", "--address", "127.0.0.1:1"],
        "--address: no Ray cluster answers at 127.0.0.1:1",
    ),
    (["explain"], "give a run directory, or --memory MEM --key KEY"),
    (["explain", "{dir}"], "is not a campaign directory"),
    (
        [
            "hw",
            "predict",
            "metanas/platform/demo_campaign.yaml",
            "--genotype",
            "conv_3x3",
            "--table",
            "{tmp}/t.parquet",
        ],
        "--genotype: genotype has 1 ops",
    ),
    (["bench", "warmstart", "--objectives", "val_acc,speed"], "--objectives: expected two of"),
    (
        ["bench", "latency", "metanas/platform/demo_campaign.yaml", "--networks", "0"],
        "--networks: must be >= 1",
    ),
    (
        [
            "hw",
            "check",
            "metanas/platform/demo_campaign.yaml",
            "--table",
            "{tmp}/t.parquet",
            "--networks",
            "0",
        ],
        "--networks: must be >= 1",
    ),
    (
        ["hw", "check", "metanas/platform/demo_campaign.yaml", "--table", "{tmp}/none.parquet"],
        "none.parquet does not exist; write one with `metanas hw profile`",
    ),
]


@pytest.mark.parametrize(
    "argv, expected", CASES, ids=[" ".join(a[:2]) + f" #{i}" for i, (a, _) in enumerate(CASES)]
)
def test_every_user_error_is_one_line_and_exit_2(capsys, files, argv, expected, monkeypatch):
    monkeypatch.chdir(REPO)
    _one_line_error(capsys, [a.format(**files) for a in argv], expected)


def test_memory_commands_create_nothing_in_a_directory_that_is_not_a_memory(capsys, files):
    _one_line_error(capsys, ["memory", "stats", files["dir"]], "is not a memory directory")
    assert sorted(p.name for p in Path(files["dir"]).iterdir()) == ["notes.txt"]


@pytest.fixture
def memory(tmp_path):
    import metanas
    from metanas.searchers.space import Float, SearchSpace

    path = tmp_path / "mem"
    metanas.search(
        lambda c: -(c["x"] ** 2),
        SearchSpace((Float("x", -1.0, 1.0),)),
        task_id="t",
        memory=path,
        budget=4,
        warm_start="none",
    )
    return path


def test_memory_commands_refuse_bad_arguments_in_one_line(capsys, memory, files):
    key = "search/t/optuna/none/0/b4"
    _one_line_error(capsys, ["memory", "query", str(memory), key, "-k", "-3"], "-k: must be >= 1, got -3")
    _one_line_error(
        capsys, ["memory", "export", str(memory), files["dir"]], "already exists; name a new file"
    )
    _one_line_error(capsys, ["memory", "show", str(memory), "nope"], "no record with key 'nope'")


def test_a_reader_that_goes_away_ends_the_command_quietly(memory):
    """`metanas memory show ... | head`: the reader is gone before the output (here `true`
    exits while Python is still importing), and there is no BrokenPipeError traceback."""
    import subprocess
    import sys

    cmd = f"{sys.executable} -m metanas memory show {memory} search/t/optuna/none/0/b4 | true"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, (
        done.stderr
    )


def _parsers(parser: argparse.ArgumentParser, path: str = "metanas"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_help_explains_every_option():
    missing = []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(
                action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)
            ):
                continue
            if not action.help:
                missing.append(f"{path} {action.dest}")
            # an option with a default the user may not guess names it
            elif (
                action.option_strings and action.default not in (None, False) and "default" not in action.help
            ):
                missing.append(f"{path} {action.option_strings[0]} (no default shown)")
    assert not missing, missing


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and re.match(r"metanas \d+\.\d+", capsys.readouterr().out)


def test_every_command_the_readme_shows_exists(capsys):
    """Each `metanas ...` line in the README's code blocks parses up to its subcommand and
    answers --help (the arguments themselves are placeholders like DIR)."""
    commands, fence = [], None
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].strip()
        elif fence in ("bash", "sh") and line.strip().startswith("metanas "):
            commands.append(line.strip())
        elif fence is None:
            commands += re.findall(r"`(metanas [^`]+)`", line)
    assert len(commands) >= 15
    parser = build_parser()
    for line in commands:
        words = shlex.split(line.split("#")[0].replace("|", " "))[1:]
        path, sub = [], parser
        for word in words:  # walk down the subcommands the line names
            choices = next((a.choices for a in sub._actions if isinstance(a, argparse._SubParsersAction)), {})
            if word not in choices:
                break
            path.append(word)
            sub = choices[word]
        assert path, f"README: {line!r} names no metanas command"
        with pytest.raises(SystemExit) as exit_:
            main(path + ["--help"])
        assert exit_.value.code == 0, line
    capsys.readouterr()
