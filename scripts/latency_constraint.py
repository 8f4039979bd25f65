"""A latency budget on the digits demo, measured end to end (issue 12's acceptance):

    python scripts/latency_constraint.py --out runs/latency [--percentile 30 | --limit-ms 0.3]

1. the demo campaign with `constraints: {device: cpu}` (nothing limited: every genotype
   the meta-test tasks derive is measured on this CPU);
2. the same campaign with `max_latency_ms` at the given percentile of those tasks'
   measured latencies;
then prints both campaigns' accuracies and the share of meta-test tasks whose genotype's
measured latency is within the limit, as JSON. About 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from metanas.cli.main import demo_config_path  # noqa: E402
from metanas.platform.campaign import run_campaign  # noqa: E402
from metanas.platform.config import load_campaign  # noqa: E402


def _brief(summary: dict, limit: float | None) -> dict:
    hw = summary["hardware"]
    per_task = [g["latency_ms"] for g in hw["genotypes"] for _ in range(g["tasks"])]
    return {
        "accuracy": summary["meta_test"]["accuracy"],
        "derived": {
            k: hw["derived"][k] for k in ("genotype", "latency_ms", "predicted_latency_ms", "params")
        },
        "task_latency_ms": {
            "p10": round(float(np.percentile(per_task, 10)), 4),
            "median": round(float(np.median(per_task)), 4),
            "p90": round(float(np.percentile(per_task, 90)), 4),
        },
        "tasks_within_limit": None
        if limit is None
        else round(float(np.mean([lat <= limit for lat in per_task])), 4),
        "tasks_within_limit_predicted": None
        if limit is None
        else round(
            float(
                np.mean(
                    [g["predicted_latency_ms"] <= limit for g in hw["genotypes"] for _ in range(g["tasks"])]
                )
            ),
            4,
        ),
        "distinct_genotypes": len(hw["genotypes"]),
        "wall_s": summary["wall_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="a new directory for the two runs")
    parser.add_argument(
        "--percentile", type=float, default=30.0, help="of the free campaign's task latencies (default 30)"
    )
    parser.add_argument(
        "--limit-ms",
        type=float,
        help="this limit instead of the percentile (the free run is reused if --out holds it)",
    )
    args = parser.parse_args()
    base = load_campaign(demo_config_path())
    free = type(base).model_validate(
        {**base.model_dump(), "name": "digits-latency-free", "constraints": {"device": "cpu"}}
    )
    done = args.out / "free" / "summary.json"
    summary = json.loads(done.read_text()) if done.exists() else run_campaign(free, args.out / "free")
    hw = summary["hardware"]
    per_task = [g["latency_ms"] for g in hw["genotypes"] for _ in range(g["tasks"])]
    limit = args.limit_ms or round(float(np.percentile(per_task, args.percentile)), 4)
    limited = type(base).model_validate(
        {
            **free.model_dump(),
            "name": "digits-latency-limited",
            "constraints": {"device": "cpu", "max_latency_ms": limit},
        }
    )
    name = f"limited-{limit:g}ms" if args.limit_ms else "limited"
    summary_limited = run_campaign(limited, args.out / name)
    result = {
        "percentile": None if args.limit_ms else args.percentile,
        "max_latency_ms": limit,
        "free": _brief(summary, limit),
        "limited": _brief(summary_limited, limit),
    }
    print(json.dumps(result, indent=2))
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
