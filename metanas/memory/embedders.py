"""Task embedders: a fixed-length vector per task, so similar tasks sit close together.

Every record names its embedder (name includes whatever makes two embeddings comparable,
e.g. the probe configs of a landmark embedder), and the store only compares records with
the same name. Each embedder follows the `Embedder` protocol and passes the contract suite
in `metanas.testing`.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from metanas.memory.knn import knn_predictor
from metanas.searchers.space import SearchSpace


@runtime_checkable
class Embedder(Protocol):
    """Turns what is known of a task into a fixed-length float32 vector. `name` identifies
    the embedding (two embedders with the same name produce comparable vectors); `embed`
    is deterministic and its arguments depend on the kind of task."""

    name: str

    def embed(self, *task: Any) -> np.ndarray: ...


class MetaFeatureEmbedder:
    """Dataset meta-features (auto-sklearn style) of a labelled dataset (X, y): size,
    dimensions, classes, class balance and simple statistics, on comparable scales."""

    name = "meta_features_v1"

    def embed(self, X: Any, y: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        y = np.asarray(y)
        if len(X) != len(y) or len(X) == 0:
            raise ValueError(
                f"X and y must be non-empty with one label per row, got {len(X)} rows and {len(y)} labels"
            )
        _, counts = np.unique(y, return_counts=True)
        p = counts / counts.sum()
        entropy = float(-(p * np.log(p)).sum() / math.log(len(p))) if len(p) > 1 else 0.0
        std = X.std(0)
        feats = [
            math.log1p(len(X)),
            math.log1p(X.shape[1]),
            math.log1p(len(counts)),
            entropy,
            float(p.min() / p.max()),
            float(np.mean(X)),
            float(np.mean(std)),
            float(np.mean(std == 0)),  # share of constant features
            float(np.mean(np.abs(_skew(X)))),
            math.log1p(len(X) / max(1, X.shape[1])),
        ]
        return np.asarray(feats, dtype=np.float32)


def _skew(X: np.ndarray) -> np.ndarray:
    mu, sd = X.mean(0), X.std(0)
    sd = np.where(sd == 0, 1.0, sd)
    return (((X - mu) / sd) ** 3).mean(0)


class LandmarkEmbedder:
    """For any black-box objective: the scores of a few fixed probe configs on the task
    (their evaluations count in the task's search budget), centred and scaled so that
    cosine similarity between two tasks is the correlation of their probe scores."""

    def __init__(self, probes: Sequence[dict[str, Any]]) -> None:
        if len(probes) < 2:
            raise ValueError("a landmark embedder needs at least two probe configs")
        self.probes = [dict(p) for p in probes]
        digest = hashlib.sha256(json.dumps(self.probes, sort_keys=True, default=str).encode()).hexdigest()[
            :10
        ]
        self.name = f"landmarks_{len(self.probes)}_{digest}"

    def embed_scores(self, scores: Sequence[float]) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64)
        if len(s) != len(self.probes) or not np.isfinite(s).all():
            raise ValueError(f"expected {len(self.probes)} finite probe scores, got {list(scores)}")
        centred = s - s.mean()
        norm = np.linalg.norm(centred)
        return (centred / norm if norm > 0 else centred).astype(np.float32)

    def embed(self, objective: Callable[[dict[str, Any]], float]) -> np.ndarray:
        return self.embed_with_scores(objective)[0]

    def embed_with_scores(
        self, objective: Callable[[dict[str, Any]], float]
    ) -> tuple[np.ndarray, list[float]]:
        """Evaluate the probes; return (embedding, their scores) so the caller can count
        them as trials of the search."""
        scores = [float(objective(p)) for p in self.probes]
        return self.embed_scores(scores), scores


def default_probes(space: SearchSpace, n: int = 3) -> list[dict[str, Any]]:
    """Fixed probe configs of a space (derived from its signature, so every search in the
    space probes the same configs and their landmark embeddings are comparable)."""
    rng = random.Random(int(space.signature, 16))
    return [space.sample(rng) for _ in range(n)]


def estimated_landmarks(
    space: SearchSpace, trials: list[dict[str, Any]], n: int = 8
) -> tuple[str, np.ndarray]:
    """Embed a finished black-box search without extra evaluations: its own trials estimate
    the scores of the space's fixed probe configs. Every such record of a space shares the
    embedder name, so `metanas memory query` and FAISS can compare them. Raises ValueError
    when no trial has a finite score."""
    embedder = LandmarkEmbedder(default_probes(space, n))
    predict = knn_predictor(space, trials)
    return f"estimated_{embedder.name}", embedder.embed_scores([predict(p) for p in embedder.probes])


def support_embedder_name(space: Any) -> str:
    """Shared by campaigns (which embed their meta-train tasks) and by this embedder."""
    return f"support_features_{space.channels}c_{space.cells}x{space.nodes}_{space.norm}"


def support_embedding(network: Any, support_x: Any) -> np.ndarray:
    """The embedding of an image task: mean and spread of its support set's features under
    a (meta-learned) network. The one formula for campaign records and user queries alike,
    so the two always match."""
    import torch

    with torch.no_grad():
        feats = network.features(support_x)
        vector = torch.cat([feats.mean(0), feats.std(0, unbiased=False)])
    return vector.cpu().numpy().astype(np.float32)


class SupportSetEmbedder:
    """For image few-shot tasks: the mean and spread of the support set's features under a
    meta-learned network (from `metanas.load(run_dir)`)."""

    def __init__(self, learner: Any) -> None:
        self.learner = learner
        self.name = support_embedder_name(learner.space)

    def embed(self, images: Any) -> np.ndarray:
        from metanas.searchers.darts.adaptation import ModelSpec, set_params
        from metanas.searchers.darts.learner import prepare_images

        x = prepare_images(images, self.learner.image_size)
        net = ModelSpec(self.learner.space, 1, 2).build(0)
        if self.learner.params is not None:
            set_params(net, self.learner.params)
        return support_embedding(net, x)
