"""Task embedders: a fixed-length vector per task, so similar tasks sit close together.

Every record names its embedder (name includes whatever makes two embeddings comparable,
e.g. the probe configs of a landmark embedder), and the store only compares records with
the same name.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Callable, Sequence

import numpy as np


class MetaFeatureEmbedder:
    """Dataset meta-features (auto-sklearn style) of a labelled dataset (X, y): size,
    dimensions, classes, class balance and simple statistics, on comparable scales."""

    name = "meta_features_v1"

    def embed(self, X: Any, y: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        y = np.asarray(y)
        if len(X) != len(y) or len(X) == 0:
            raise ValueError(f"X and y must be non-empty with one label per row, got {len(X)} rows and {len(y)} labels")
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
        digest = hashlib.sha256(json.dumps(self.probes, sort_keys=True, default=str).encode()).hexdigest()[:10]
        self.name = f"landmarks_{len(self.probes)}_{digest}"

    def embed_scores(self, scores: Sequence[float]) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64)
        if len(s) != len(self.probes) or not np.isfinite(s).all():
            raise ValueError(f"expected {len(self.probes)} finite probe scores, got {list(scores)}")
        centred = s - s.mean()
        norm = np.linalg.norm(centred)
        return (centred / norm if norm > 0 else centred).astype(np.float32)

    def embed(self, objective: Callable[[dict[str, Any]], float]) -> tuple[np.ndarray, list[float]]:
        """Evaluate the probes; return (embedding, their scores) so the caller can count
        them as trials of the search."""
        scores = [float(objective(p)) for p in self.probes]
        return self.embed_scores(scores), scores


def support_embedder_name(space: Any) -> str:
    """Shared by campaigns (which embed their meta-train tasks) and by this embedder."""
    return f"support_features_{space.channels}c_{space.cells}x{space.nodes}_{space.norm}"


class SupportSetEmbedder:
    """For image few-shot tasks: the mean and spread of the support set's features under a
    meta-learned network (from `metanas.load(run_dir)`)."""

    def __init__(self, learner: Any) -> None:
        self.learner = learner
        self.name = support_embedder_name(learner.space)

    def embed(self, images: Any) -> np.ndarray:
        import torch

        from metanas.platform.adaptation import ModelSpec, set_params
        from metanas.platform.learner import prepare_images

        x = prepare_images(images, self.learner.image_size)
        net = ModelSpec(self.learner.space, 1, 2).build(0)
        if self.learner.params is not None:
            set_params(net, self.learner.params)
        with torch.no_grad():
            feats = net.features(x)
        return torch.cat([feats.mean(0), feats.std(0, unbiased=False)]).numpy().astype(np.float32)
