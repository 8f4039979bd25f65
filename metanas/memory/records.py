"""One row of the task memory, and its explicit Arrow schema (Arrow + JSON, no pickles)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

ARROW_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),  # idempotency key: one record per key
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("family", pa.string(), nullable=False),
        pa.field("embedder", pa.string(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32()), nullable=False),
        pa.field("space_signature", pa.string(), nullable=False),
        pa.field("best_config", pa.string(), nullable=False),  # JSON
        pa.field("best_score", pa.float64(), nullable=False),
        pa.field("trials", pa.string(), nullable=False),  # JSON list of {config, score, budget}
        pa.field("searcher", pa.string(), nullable=False),
        pa.field("campaign_id", pa.string(), nullable=False),
        pa.field("created_at", pa.float64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class TaskRecord:
    key: str
    task_id: str
    family: str
    embedder: str
    embedding: np.ndarray
    space_signature: str
    best_config: dict[str, Any]
    best_score: float
    trials: list[dict[str, Any]] = field(default_factory=list)
    searcher: str = ""
    campaign_id: str = ""
    created_at: float = 0.0

    def __post_init__(self) -> None:
        for name in ("key", "task_id", "family", "embedder", "space_signature"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"TaskRecord.{name} must be a non-empty string, got {value!r}")
        if not isinstance(self.best_config, dict):
            raise ValueError(f"TaskRecord.best_config must be a dict (record {self.key!r})")
        if not isinstance(self.trials, list) or not all(isinstance(t, dict) for t in self.trials):
            raise ValueError(f"TaskRecord.trials must be a list of dicts (record {self.key!r})")
        emb = np.asarray(self.embedding, dtype=np.float32)
        if emb.ndim != 1 or len(emb) == 0 or not np.isfinite(emb).all():
            raise ValueError(f"TaskRecord.embedding must be a non-empty finite 1-D vector (record {self.key!r})")
        object.__setattr__(self, "embedding", emb)
        if not math.isfinite(self.best_score):
            raise ValueError(f"TaskRecord.best_score must be finite (record {self.key!r})")


def records_to_table(records: Sequence[TaskRecord]) -> pa.Table:
    """Column-wise construction: the embeddings go in as one flat float32 buffer."""
    lengths = np.fromiter((len(r.embedding) for r in records), dtype=np.int32, count=len(records))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = np.concatenate([r.embedding for r in records]) if records else np.zeros(0, np.float32)
    embedding = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.float32()))
    cols = {
        "key": [r.key for r in records],
        "task_id": [r.task_id for r in records],
        "family": [r.family for r in records],
        "embedder": [r.embedder for r in records],
        "embedding": embedding,
        "space_signature": [r.space_signature for r in records],
        "best_config": [json.dumps(r.best_config, sort_keys=True) for r in records],
        "best_score": [float(r.best_score) for r in records],
        "trials": [json.dumps(r.trials) for r in records],
        "searcher": [r.searcher for r in records],
        "campaign_id": [r.campaign_id for r in records],
        "created_at": [float(r.created_at) for r in records],
    }
    return pa.Table.from_pydict(cols, schema=ARROW_SCHEMA)


@dataclass(frozen=True)
class PastTask:
    """What a policy needs of a stored record: its trials and how similar it is."""

    task_id: str
    trials: Sequence[dict[str, Any]]  # {"config": ..., "score": ...}
    similarity: float = 0.0
    embedding: Any = None  # the record's embedding (a vector), when the policy uses one
    embedder: str = ""  # whose embedding it is
