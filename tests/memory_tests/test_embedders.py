from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from metanas.memory.embedders import LandmarkEmbedder, MetaFeatureEmbedder, SupportSetEmbedder, default_probes
from metanas.searchers.darts.adaptation import AdaptSettings
from metanas.searchers.darts.cell_space import CellSpace
from metanas.searchers.darts.learner import Learner
from metanas.searchers.space import Categorical, Float, SearchSpace
from metanas.testing import EmbedderContract

SPACE = SearchSpace((Float("lr", 1e-3, 1.0, log=True), Categorical("act", ("relu", "tanh"))))


class TestMetaFeatureEmbedder(EmbedderContract):
    def make_embedder(self):
        return MetaFeatureEmbedder()

    def tasks(self):
        X, y = load_digits(return_X_y=True)
        return [(X, y), (X[:, :10], y % 2), (X[:300] ** 2, y[:300])]


class TestLandmarkEmbedder(EmbedderContract):
    def make_embedder(self):
        return LandmarkEmbedder(default_probes(SPACE, 4))

    def tasks(self):
        return [
            (lambda c: c["lr"],),
            (lambda c: -c["lr"] + (c["act"] == "tanh"),),
            (lambda c: (c["lr"] - 0.1) ** 2,),
        ]


class TestSupportSetEmbedder(EmbedderContract):
    def make_embedder(self):
        space = CellSpace(nodes=1, channels=4, cells=1)
        return SupportSetEmbedder(Learner(space, None, AdaptSettings(1, 0.01, 0.01), (8, 8)))

    def tasks(self):
        rng = np.random.default_rng(0)
        return [(rng.random((5, 8, 8)).astype(np.float32),), (rng.random((5, 8, 8)).astype(np.float32) ** 3,)]


def test_meta_features_tell_datasets_apart_and_are_stable():
    X, y = load_digits(return_X_y=True)
    emb = MetaFeatureEmbedder()
    a = emb.embed(X, y)
    assert a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a, emb.embed(X, y))
    b = emb.embed(X[:, :10], y % 2)  # fewer features, two classes
    assert not np.allclose(a, b)
    with pytest.raises(ValueError, match="one label per row"):
        emb.embed(X, y[:5])


def test_landmarks_make_cosine_the_correlation_of_probe_scores():
    emb = LandmarkEmbedder([{"x": 0}, {"x": 1}, {"x": 2}])
    up = emb.embed_scores([0.1, 0.5, 0.9])
    same = emb.embed_scores([10.0, 20.0, 30.0])  # other scale, same ranking
    down = emb.embed_scores([0.9, 0.5, 0.1])
    assert float(up @ same) == pytest.approx(1.0, abs=1e-5) and float(up @ down) == pytest.approx(
        -1.0, abs=1e-5
    )
    assert emb.name != LandmarkEmbedder([{"x": 0}, {"x": 2}]).name  # other probes, other name
    vector, scores = emb.embed_with_scores(lambda c: c["x"] ** 2)
    assert scores == [0.0, 1.0, 4.0] and len(vector) == 3


def test_support_set_embedding_from_a_learner():
    space = CellSpace(nodes=1, channels=4, cells=1)
    learner = Learner(space, None, AdaptSettings(1, 0.01, 0.01), (8, 8))
    images = np.random.default_rng(0).random((5, 8, 8)).astype(np.float32)
    e = SupportSetEmbedder(learner).embed(images)
    assert e.shape == (2 * 4 * 16,) and np.isfinite(e).all()
