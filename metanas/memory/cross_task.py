"""The cross-task surrogate: one model learned from the whole memory of a space, mapping
(a config, what is known of the task) to the config's normalised rank within its task, with
an uncertainty from a small ensemble. The model-based family of meta-learning: it proposes
configs for a task never seen, and tells how each stored task would rank a config.

Inputs: the config's encoding, then the task's embedding (standardised) and a flag that
says whether there is one. Training zeroes the embedding of a random share of the rows, so
the same model also answers for a task it knows nothing about (the marginal over tasks).
Members differ by initialisation and by a bootstrap resample of the tasks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metanas._util.atomic import atomic_write_bytes, atomic_write_json
from metanas._util.threads import torch_threads

log = logging.getLogger(__name__)

MEMBERS = 5
HIDDEN = 64
STEPS = 300  # Adam steps of a full training; an incremental update takes a third
BATCH = 2048  # rows per step (all of them when there are fewer)
DROP_EMBEDDING = 0.3
FORMAT = 1


# The surrogate's batches are small: one thread is faster than many (thread start-up
# dominates), and leaves the other cores to the evaluations.
SURROGATE_THREADS = 1


@dataclass(frozen=True)
class TaskData:
    """One stored task as the surrogate sees it: encoded configs and their normalised
    ranks (1 = the task's best), and the task's embedding if it has one."""

    task_id: str
    X: np.ndarray  # (n, config dims)
    ranks: np.ndarray  # (n,) in [0, 1]
    embedding: np.ndarray | None = None
    keys: tuple[str, ...] = ()  # config_key of each row, where known


class CrossTaskSurrogate:
    def __init__(self, config_dims: int, embedding_dims: int, seed: int = 0) -> None:
        import torch

        self.config_dims = config_dims
        self.embedding_dims = embedding_dims
        self.seed = seed
        self.emb_mean = np.zeros(embedding_dims, dtype=np.float32)
        self.emb_std = np.ones(embedding_dims, dtype=np.float32)
        g = torch.Generator().manual_seed(seed)
        d_in = config_dims + embedding_dims + 1

        def layer(i: int, o: int) -> tuple[Any, Any]:
            bound = 1.0 / math.sqrt(i)
            w = (torch.rand(MEMBERS, i, o, generator=g) * 2 - 1) * bound
            return w.requires_grad_(), torch.zeros(MEMBERS, 1, o, requires_grad=True)

        self.params = [*layer(d_in, HIDDEN), *layer(HIDDEN, HIDDEN), *layer(HIDDEN, 1)]
        self.fingerprint = ""  # of the tasks it was trained on
        self.task_ids: frozenset[str] = frozenset()  # every task it has been trained on, over its updates

    # -- the network: MEMBERS independent MLPs evaluated as one batched matmul ------------

    def _forward(self, Z: Any) -> Any:
        import torch

        w1, b1, w2, b2, w3, b3 = self.params
        h = torch.nn.functional.silu(torch.baddbmm(b1, Z, w1))
        h = torch.nn.functional.silu(torch.baddbmm(b2, h, w2))
        return torch.sigmoid(torch.baddbmm(b3, h, w3)).squeeze(-1)

    def _inputs(self, X: np.ndarray, embedding: np.ndarray | None) -> np.ndarray:
        n = len(X)
        if embedding is None or self.embedding_dims == 0:
            tail = np.zeros((n, self.embedding_dims + 1), dtype=np.float32)
        else:
            e = (np.asarray(embedding, dtype=np.float32) - self.emb_mean) / self.emb_std
            tail = np.concatenate([np.tile(e, (n, 1)), np.ones((n, 1), dtype=np.float32)], axis=1)
        return np.concatenate([np.asarray(X, dtype=np.float32), tail], axis=1)

    def fit(self, tasks: Sequence[TaskData], steps: int = STEPS) -> CrossTaskSurrogate:
        """Train on every stored task (called again with more tasks, it goes on from its
        current weights: an incremental update)."""
        import torch

        tasks = sorted(tasks, key=lambda t: t.task_id)  # the record order must not matter
        embedded = [t.embedding for t in tasks if t.embedding is not None]
        if embedded and self.embedding_dims:
            E = np.stack(embedded).astype(np.float32)
            self.emb_mean, self.emb_std = E.mean(0), E.std(0) + 1e-6
        rng = np.random.default_rng(self.seed)
        batches = []
        for m in range(MEMBERS):  # each member sees a bootstrap resample of the tasks
            picks = (
                rng.integers(len(tasks), size=len(tasks)) if m and len(tasks) > 1 else np.arange(len(tasks))
            )
            rows, targets = [], []
            for i in picks:
                t = tasks[i]
                Z = self._inputs(t.X, t.embedding)
                drop = rng.random(len(Z)) < DROP_EMBEDDING
                Z[drop, self.config_dims :] = 0.0
                rows.append(Z)
                targets.append(t.ranks)
            batches.append((np.concatenate(rows), np.concatenate(targets)))
        n = min(len(b[0]) for b in batches)  # equal row counts, to batch the members
        keep = [rng.permutation(len(b[0]))[:n] for b in batches]
        Z = torch.as_tensor(np.stack([b[0][k] for b, k in zip(batches, keep)]))
        Y = torch.as_tensor(np.stack([b[1][k] for b, k in zip(batches, keep)]), dtype=torch.float32)
        opt = torch.optim.Adam(self.params, lr=3e-3, weight_decay=1e-4)
        batch = min(n, BATCH)
        with torch_threads(SURROGATE_THREADS):
            for _ in range(steps):
                rows = torch.as_tensor(rng.choice(n, size=batch, replace=False)) if batch < n else slice(None)
                opt.zero_grad()
                loss = ((self._forward(Z[:, rows]) - Y[:, rows]) ** 2).mean()
                loss.backward()
                opt.step()
        self.fingerprint = fingerprint(tasks)
        self.task_ids = self.task_ids | {t.task_id for t in tasks}
        return self

    def predict(self, X: np.ndarray, embedding: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std over the ensemble) of the normalised rank of each config."""
        out = self._members(self._inputs(X, embedding))
        return out.mean(0), out.std(0)

    def predict_tasks(self, X: np.ndarray, embeddings: Sequence[np.ndarray | None]) -> np.ndarray:
        """(tasks, len(X)): the mean prediction for every config on every task, in one pass.
        The first layer is split into its config part and its task part, computed once
        each and added for every pair: no (tasks x configs) input is ever built."""
        import torch

        if not len(embeddings):
            return np.zeros((0, len(X)))
        tails = np.concatenate(
            [self._inputs(np.zeros((1, self.config_dims), np.float32), e) for e in embeddings]
        )
        w1, b1, w2, b2, w3, b3 = self.params
        c = self.config_dims
        with torch.no_grad(), torch_threads(SURROGATE_THREADS):
            config_part = torch.as_tensor(np.asarray(X, dtype=np.float32)).expand(MEMBERS, -1, -1) @ w1[:, :c]
            task_part = torch.as_tensor(tails[:, c:]).expand(MEMBERS, -1, -1) @ w1[:, c:] + b1
            out = np.empty((len(embeddings), len(X)), dtype=np.float32)
            for t in range(len(embeddings)):  # a task at a time: memory stays (members x configs x hidden)
                h = torch.nn.functional.silu(config_part + task_part[:, t : t + 1])
                h = torch.nn.functional.silu(torch.baddbmm(b2, h, w2))
                out[t] = torch.sigmoid(torch.baddbmm(b3, h, w3)).squeeze(-1).mean(0).numpy()
        return out.astype(np.float64)

    def _members(self, Z: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad(), torch_threads(SURROGATE_THREADS):
            return self._forward(torch.as_tensor(Z).expand(MEMBERS, -1, -1)).numpy()


def fingerprint(tasks: Sequence[TaskData]) -> str:
    """Identifies a training set (tasks and how many trials each), whatever its order."""
    items = sorted(f"{t.task_id}:{len(t.ranks)}" for t in tasks)
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


class SurrogateFile:
    """A trained surrogate next to the memory: `<stem>.safetensors` (the weights) and
    `<stem>.json` (what it was trained for). Written atomically, metadata last."""

    def __init__(self, stem: Path) -> None:
        self.weights = stem.with_suffix(".safetensors")
        self.meta = stem.with_suffix(".json")

    def save(self, model: CrossTaskSurrogate, space_signature: str, embedder: str) -> None:
        from safetensors.numpy import save

        arrays = {f"p{i}": p.detach().numpy() for i, p in enumerate(model.params)}
        arrays |= {"emb_mean": model.emb_mean, "emb_std": model.emb_std}
        atomic_write_bytes(self.weights, save(arrays))
        atomic_write_json(
            self.meta,
            {
                "format": FORMAT,
                "space_signature": space_signature,
                "embedder": embedder,
                "config_dims": model.config_dims,
                "embedding_dims": model.embedding_dims,
                "seed": model.seed,
                "fingerprint": model.fingerprint,
                "task_ids": sorted(model.task_ids),
            },
        )

    def load(self, space_signature: str) -> CrossTaskSurrogate | None:
        """The saved surrogate, or None when there is none or it cannot be read (then with a
        warning: a corrupt file is retrained, never used). A surrogate of another space is
        refused with ValueError."""
        if not self.meta.exists():
            return None
        try:
            meta = json.loads(self.meta.read_text())
        except (OSError, json.JSONDecodeError) as err:
            log.warning("surrogate metadata %s is unreadable (%s): retraining", self.meta, err)
            return None
        if meta.get("space_signature") != space_signature:
            raise ValueError(
                f"{self.weights} holds a surrogate for search space {meta.get('space_signature')!r}, "
                f"not {space_signature!r}: remove it, or use it with the memory it belongs to"
            )
        try:
            import torch
            from safetensors.numpy import load_file

            arrays = load_file(str(self.weights))
            model = CrossTaskSurrogate(
                int(meta["config_dims"]), int(meta["embedding_dims"]), int(meta["seed"])
            )
            for i, p in enumerate(model.params):
                if tuple(arrays[f"p{i}"].shape) != tuple(p.shape):
                    raise ValueError(
                        f"weight p{i} has shape {arrays[f'p{i}'].shape}, expected {tuple(p.shape)}"
                    )
                with torch.no_grad():
                    p.copy_(torch.as_tensor(arrays[f"p{i}"]))
            model.emb_mean, model.emb_std = arrays["emb_mean"], arrays["emb_std"]
            model.fingerprint = str(meta["fingerprint"])
            model.task_ids = frozenset(map(str, meta.get("task_ids", ())))
            return model
        except Exception as err:  # any unreadable or inconsistent file: retrain, never use it
            log.warning("surrogate %s is unreadable (%s): retraining it", self.weights, err)
            return None
