"""One row of the task memory, and its explicit Arrow schema (Arrow + JSON, no pickles).

Schema version 2 (the Parquet metadata's `metanas_schema_version`): typed columns an Arrow
or DuckDB user can query without parsing, e.g. the trials as a list of structs and the
creation time as a UTC timestamp; configs stay JSON text (their parameters differ from one
space to the next). Parts written before (version 1: `trials` and `space` JSON text,
`created_at` seconds) are read through `upgrade` without loss, and rewritten in this
version by `MemoryStore.compact`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = 2
VERSION_KEY = b"metanas_schema_version"

TRIAL_TYPE = pa.struct(
    [
        pa.field("config", pa.string()),  # JSON: the parameters
        pa.field("score", pa.float64()),  # maximised; -inf a failed evaluation; null none (e.g. pruned)
        pa.field("budget", pa.float64()),
        pa.field("source", pa.string()),  # search, warm_start, probe, optuna, ...
        pa.field("number", pa.int64()),  # Optuna's trial number
        pa.field("state", pa.string()),  # Optuna's trial state
        pa.field("value", pa.float64()),  # Optuna's value, as the study's direction has it
        pa.field("duration", pa.float64()),  # seconds
        pa.field("metrics", pa.string()),  # JSON: a multi-objective trial's metrics
        pa.field("why", pa.string()),  # JSON: what proposed it
        pa.field("extra", pa.string()),  # JSON: any other field a trial carried
    ]
)
_TRIAL_JSON = ("config", "metrics", "why")
_TRIAL_ALWAYS = ("config", "score", "budget")  # (every other field only when set)

PARAM_TYPE = pa.struct(
    [
        pa.field("name", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("low", pa.float64()),
        pa.field("high", pa.float64()),
        pa.field("log", pa.bool_()),
        pa.field("step", pa.float64()),
        pa.field("choices", pa.string()),  # JSON: a categorical's choices
        pa.field("integer", pa.bool_()),  # low, high and step are integers (an Int's, or written as such)
    ]
)

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
        pa.field("trials", pa.list_(TRIAL_TYPE), nullable=False),
        pa.field("searcher", pa.string(), nullable=False),
        pa.field("campaign_id", pa.string(), nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        # The space's parameters (`SearchSpace.to_spec`): a record matches a search by its
        # parameters, not only by the signature. Null in records written before (those
        # match by signature alone).
        pa.field("space", pa.list_(PARAM_TYPE), nullable=True),
        # A record stored again under its key with a higher revision replaces it (a study's
        # record, stored again as the study grows). Null (0) in records written before.
        pa.field("revision", pa.int64(), nullable=True),
    ],
    metadata={VERSION_KEY: str(SCHEMA_VERSION).encode()},
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
    space: list[dict[str, Any]] | None = None  # the space's parameters (`SearchSpace.to_spec`)
    revision: int = 0  # a higher revision of a key replaces the record stored under it

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
            raise ValueError(
                f"TaskRecord.embedding must be a non-empty finite 1-D vector (record {self.key!r})"
            )
        object.__setattr__(self, "embedding", emb)
        if not math.isfinite(self.best_score):
            raise ValueError(f"TaskRecord.best_score must be finite (record {self.key!r})")


class NewerSchema(ValueError):
    """A part written by a newer metanas: not corrupt, so never set aside."""


def trial_row(trial: dict[str, Any]) -> dict[str, Any]:
    """A trial dict as its typed struct."""
    row = {
        k: (
            json.dumps(trial[k], sort_keys=k == "config")
            if k in _TRIAL_JSON and trial.get(k) is not None
            else trial.get(k)
        )
        for k in TRIAL_TYPE.names
        if k != "extra"
    }
    # (a field of its own that is explicitly None, as a failed trial's metrics, is kept
    # there too: a null struct field would read back as absent)
    extra = {
        k: v for k, v in trial.items() if k not in TRIAL_TYPE.names or (v is None and k not in _TRIAL_ALWAYS)
    }
    row["extra"] = json.dumps(extra) if extra else None
    return row


def trial_dict(row: dict[str, Any]) -> dict[str, Any]:
    """The typed struct as the trial dict it was written from (config, score and budget
    always; every other field when set)."""
    out = {}
    for k in TRIAL_TYPE.names:
        value = row.get(k)
        if k == "extra":
            out.update(json.loads(value) if value else {})
        elif value is not None or k in _TRIAL_ALWAYS:
            out[k] = json.loads(value) if k in _TRIAL_JSON and value is not None else value
    return out


def param_row(spec: dict[str, Any]) -> dict[str, Any]:
    choices = spec.get("choices")
    numbers = [spec.get(k) for k in ("low", "high", "step") if spec.get(k) is not None]
    return {
        "name": spec["name"],
        "kind": spec["kind"],
        "low": spec.get("low"),
        "high": spec.get("high"),
        "log": spec.get("log"),
        "step": spec.get("step"),
        "choices": None if choices is None else json.dumps(choices),
        "integer": bool(numbers) and all(isinstance(v, int) and not isinstance(v, bool) for v in numbers),
    }


def param_spec_of(row: dict[str, Any]) -> dict[str, Any]:
    """The struct as the spec it was written from (`SearchSpace.to_spec`'s form)."""
    if row["choices"] is not None:
        return {"kind": row["kind"], "name": row["name"], "choices": json.loads(row["choices"])}
    number = int if row["integer"] else float
    out = {
        "kind": row["kind"],
        "name": row["name"],
        "low": number(row["low"]),
        "high": number(row["high"]),
        "log": bool(row["log"]),
    }
    return out if row["step"] is None else {**out, "step": number(row["step"])}


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
        "trials": [[trial_row(t) for t in r.trials] for r in records],
        "searcher": [r.searcher for r in records],
        "campaign_id": [r.campaign_id for r in records],
        "created_at": pa.array(
            np.asarray([round(r.created_at * 1e6) for r in records], dtype=np.int64), type=pa.int64()
        ).cast(pa.timestamp("us", tz="UTC")),
        "space": [None if r.space is None else [param_row(p) for p in r.space] for r in records],
        "revision": [int(r.revision) for r in records],
    }
    return pa.Table.from_pydict(cols, schema=ARROW_SCHEMA)


def record_from_row(d: dict[str, Any]) -> TaskRecord:
    """A row of the table (`Table.to_pylist`) as its record."""
    d["embedding"] = np.asarray(d["embedding"], dtype=np.float32)
    d["best_config"] = json.loads(d["best_config"])
    d["trials"] = [trial_dict(t) for t in d["trials"]]
    d["created_at"] = d["created_at"].timestamp()
    d["space"] = None if d["space"] is None else [param_spec_of(p) for p in d["space"]]
    d["revision"] = d["revision"] or 0
    return TaskRecord(**d)


def upgrade(table: pa.Table) -> pa.Table:
    """A part of any schema version as this version's table, without loss: version 1's
    JSON `trials` and `space` become typed, its `created_at` seconds a timestamp, and the
    columns it lacks null."""
    version = int((table.schema.metadata or {}).get(VERSION_KEY, b"1"))
    if version == SCHEMA_VERSION:
        return table.cast(ARROW_SCHEMA) if table.schema != ARROW_SCHEMA else table
    if version > SCHEMA_VERSION:
        raise NewerSchema(
            f"written with memory schema version {version}; this metanas reads up to {SCHEMA_VERSION}: "
            "upgrade metanas"
        )
    cols = {name: table.column(name) for name in table.column_names}
    n = len(table)
    cols["trials"] = pa.array(
        [[trial_row(t) for t in json.loads(v)] for v in cols["trials"].to_pylist()], type=pa.list_(TRIAL_TYPE)
    )
    seconds = np.asarray(cols["created_at"].to_pylist(), dtype=np.float64)
    cols["created_at"] = pa.array(np.round(seconds * 1e6).astype(np.int64), type=pa.int64()).cast(
        pa.timestamp("us", tz="UTC")
    )
    specs = cols["space"].to_pylist() if "space" in cols else [None] * n
    cols["space"] = pa.array(
        [None if v is None else [param_row(p) for p in json.loads(v)] for v in specs],
        type=pa.list_(PARAM_TYPE),
    )
    if "revision" not in cols:
        cols["revision"] = pa.nulls(n, pa.int64())
    return pa.Table.from_pydict({f.name: cols[f.name] for f in ARROW_SCHEMA}, schema=ARROW_SCHEMA)


@dataclass(frozen=True)
class PastTask:
    """What a policy needs of a stored record: its trials and how similar it is."""

    task_id: str
    trials: Sequence[dict[str, Any]]  # {"config": ..., "score": ...}
    similarity: float = 0.0
    embedding: Any = None  # the record's embedding (a vector), when the policy uses one
    embedder: str = ""  # whose embedding it is
