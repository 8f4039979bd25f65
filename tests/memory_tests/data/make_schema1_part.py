"""How `schema1-part-*.parquet` and `schema1-records.json` were made: by the schema-1
writer itself (`metanas/memory/records.py` at commit f42a772), so the test that reads them
reads what memories written before schema 2 hold. Run from the repository root:
    git show f42a772:metanas/memory/records.py > /tmp/records_v1.py
    PYTHONPATH=/tmp python tests/memory_tests/data/make_schema1_part.py
"""

import io
import json

import numpy as np
import pyarrow.parquet as pq
import records_v1 as v1

recs = [
    v1.TaskRecord(
        key="search/t1/optuna/model/0/b3",
        task_id="t1",
        family="default",
        embedder="estimated_landmarks_8",
        embedding=np.asarray([0.1, 0.5, -0.2], np.float32),
        space_signature="0fdde80762ee66a2",
        best_config={"lr": 0.01, "width": 64, "act": "gelu"},
        best_score=0.91,
        trials=[
            {
                "config": {"lr": 0.01, "width": 64, "act": "gelu"},
                "score": 0.91,
                "budget": None,
                "source": "search",
                "why": {"source": "memory model (portfolio)", "tasks": {"t0": 0.7}},
            },
            {
                "config": {"lr": 0.1, "width": 16, "act": "relu"},
                "score": float("-inf"),
                "budget": None,
                "source": "search",
            },
            {
                "config": {"lr": 0.001, "width": 512, "act": "relu"},
                "score": 0.5,
                "budget": 3.0,
                "source": "warm_start",
            },
        ],
        searcher="optuna",
        campaign_id="",
        created_at=1764800000.25,
    ),
    v1.TaskRecord(
        key="tiny-seed3/meta_train/0/1",
        task_id="tiny-seed3/meta_train/0/1",
        family="digits",
        embedder="support_features",
        embedding=np.asarray([1.0, 2.0, 3.0, 4.0], np.float32),
        space_signature="abcd",
        best_config={"e0": "sep_conv_3x3"},
        best_score=0.6,
        trials=[{"config": {"e0": "sep_conv_3x3"}, "score": 0.6, "budget": 2.0}],
        searcher="darts",
        campaign_id="tiny",
        created_at=1764800100.5,
    ),
    v1.TaskRecord(
        key="search/mo",
        task_id="mo",
        family="nas",
        embedder="e",
        embedding=np.asarray([0.3], np.float32),
        space_signature="s2",
        best_config={"x": 1},
        best_score=2.0,
        trials=[
            {
                "config": {"x": 1},
                "score": 2.0,
                "budget": None,
                "source": "search",
                "metrics": {"acc": 2.0, "lat": 1.5},
            },
            {"config": {"x": 2}, "score": float("-inf"), "budget": None, "source": "search", "metrics": None},
        ],
        searcher="optuna_multi_objective",
        campaign_id="",
        created_at=1764800200.0,
    ),
]
table = v1.records_to_table(recs)
buf = io.BytesIO()
pq.write_table(table, buf, compression="zstd")
open("tests/memory_tests/data/schema1-part-00000000-000000000000.parquet", "wb").write(buf.getvalue())
expected = [
    {
        **{
            k: getattr(r, k)
            for k in (
                "key",
                "task_id",
                "family",
                "embedder",
                "space_signature",
                "best_config",
                "best_score",
                "searcher",
                "campaign_id",
                "created_at",
            )
        },
        "embedding": r.embedding.tolist(),
        "trials": r.trials,
    }
    for r in recs
]
open("tests/memory_tests/data/schema1-records.json", "w").write(json.dumps(expected, indent=1))
