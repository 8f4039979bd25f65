"""The memory and search commands, in process."""

from __future__ import annotations

import json

from metanas.cli.main import main


def test_search_then_inspect_the_memory(tmp_path, capsys):
    mem = tmp_path / "mem"
    for task in ("hpobench/car", "hpobench/kc1", "hpobench/vehicle"):
        assert main(["search", task, "--memory", str(mem), "--budget", "12"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [d["task"] for d in lines] == ["hpobench/car", "hpobench/kc1", "hpobench/vehicle"]
    assert all(d["evaluations"] == 12 and 0 <= d["normalised_regret"] for d in lines)

    assert main(["memory", "stats", str(mem)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["records"] == 3 and stats["families"] == {"hpobench": 3}

    assert main(["memory", "ls", str(mem)]) == 0
    keys = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert len(keys) == 3

    assert main(["memory", "query", str(mem), keys[0], "-k", "2"]) == 0
    hits = capsys.readouterr().out.splitlines()
    assert len(hits) == 2 and keys[0] not in "".join(hits)

    assert main(["memory", "show", str(mem), keys[1]]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["key"] == keys[1] and len(shown["trials"]) == 12

    assert main(["memory", "export", str(mem), str(tmp_path / "all.parquet")]) == 0
    assert (tmp_path / "all.parquet").stat().st_size > 0
    capsys.readouterr()

    assert main(["memory", "compact", str(mem)]) == 0
    assert capsys.readouterr().out.strip() == "3 records in one part (3 parts before)"
    assert len(list((mem / "parts").glob("*.parquet"))) == 1
    assert main(["memory", "show", str(mem), keys[1]]) == 0 and json.loads(capsys.readouterr().out) == shown

    assert main(["predict", "hpobench/segment", "--memory", str(mem), "-n", "3", "--json"]) == 0
    proposals = json.loads(capsys.readouterr().out)["proposals"]
    assert len(proposals) == 3 and all(0 <= p["predicted"] <= 1 and p["regret"] >= 0 for p in proposals)
    assert main(["predict", "hpobench/segment", "--memory", str(mem), "-n", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "predicted" in table[0] and len(table) == 3
    assert (mem / "models").is_dir()  # the surrogate was kept next to the memory


def test_bad_memory_commands_fail_with_one_line(tmp_path, capsys):
    assert main(["memory", "ls", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["predict", "hpobench/car", "--memory", str(tmp_path / "missing")]) == 2
    assert main(["predict", "nope/car", "--memory", str(tmp_path)]) == 2
    assert main(["predict", "hpobench/car", "--memory", str(tmp_path), "-n", "0"]) == 2
    assert main(["search", "nope/none", "--memory", str(tmp_path)]) == 2
    assert "unknown" in capsys.readouterr().err


def test_bench_memory_small(capsys):
    assert main(["bench", "memory", "--records", "3000", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {
        "records",
        "dim",
        "insert_per_s",
        "query_p50_ms",
        "query_p99_ms",
        "recall_at_10",
        "reload_s",
        "nprobe",
        "warm_start_read_ms",
        "model_plan_ms",
        "surrogate_train_s",
        "surrogate_updates",
        "data",
    }
    assert result["records"] == 3000 and result["recall_at_10"] >= 0.95


def test_an_approximate_index_is_calibrated_to_the_recall_target_on_overlapping_embeddings():
    from metanas.bench.memory import bench_memory

    # 30,000 records: above the exact threshold, so an IVF index whose nprobe is calibrated
    result = bench_memory(30_000, "overlapping", dim=32, queries=100)
    assert result["nprobe"] > 0 and result["recall_at_10"] >= 0.93  # (calibrated on other queries for 0.95)
