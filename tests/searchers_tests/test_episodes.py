from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from metanas.searchers.episodes import digits_pools, folder_pools, load_digits, read_class_folders


@pytest.mark.parametrize("split", ["digit", "class"])
def test_digits_meta_train_and_meta_test_classes_are_disjoint(split):
    train, test = digits_pools([7, 8, 9], [0, 90, 180, 270], split=split, test_classes=12, seed=0)
    assert len(train.names) + len(test.names) == 40
    assert not set(train.names) & set(test.names)
    if split == "digit":
        assert {n.split("@")[0] for n in test.names} == {"7", "8", "9"}
        assert not {n.split("@")[0] for n in train.names} & {"7", "8", "9"}


def test_digits_read_from_the_file_equal_scikit_learns_and_so_does_the_fallback(monkeypatch):
    import importlib.util

    from sklearn.datasets import load_digits as sklearn_digits

    expected = sklearn_digits()
    for find_spec in (importlib.util.find_spec, lambda name: None):  # the file, then no file
        monkeypatch.setattr(importlib.util, "find_spec", find_spec)
        images, target = load_digits()
        assert np.array_equal(images, expected.images) and np.array_equal(target, expected.target)
        assert images.shape == (1797, 8, 8) and target.dtype == expected.target.dtype


def test_episode_shapes_labels_and_determinism():
    _, test = digits_pools([7, 8, 9], [0, 90], split="digit")
    ep = test.sample_episode(5, 1, 15, seed=[0, 1, 7])
    assert ep.support_x.shape == (5, 1, 8, 8) and ep.query_x.shape == (75, 1, 8, 8)
    assert ep.support_x.dtype == np.float32 and 0.0 <= ep.support_x.min() and ep.support_x.max() <= 1.0
    assert sorted(ep.support_y.tolist()) == list(range(5))
    assert np.bincount(ep.query_y).tolist() == [15] * 5
    again = test.sample_episode(5, 1, 15, seed=[0, 1, 7])
    other = test.sample_episode(5, 1, 15, seed=[0, 1, 8])
    assert np.array_equal(ep.query_x, again.query_x) and ep.classes == again.classes
    assert not np.array_equal(ep.query_x, other.query_x)
    with pytest.raises(ValueError, match="n_way"):
        test.sample_episode(50, 1, 1, seed=0)


def _write_pngs(root, layout):
    rng = np.random.default_rng(0)
    for rel in layout:
        folder = root / rel
        folder.mkdir(parents=True)
        for i in range(4):
            Image.fromarray((rng.random((12, 12)) * 255).astype(np.uint8)).save(folder / f"{i}.png")


def test_class_folders_flat_and_grouped(tmp_path):
    _write_pngs(tmp_path / "flat", [f"c{i}" for i in range(6)])
    _write_pngs(tmp_path / "grouped", [f"g{g}/c{i}" for g in range(3) for i in range(2)])
    flat = read_class_folders(tmp_path / "flat", image_size=6)
    assert list(flat) == [""] and len(flat[""]) == 6 and flat[""]["c0"].shape == (4, 6, 6)
    train, test = folder_pools([tmp_path / "grouped"], 6, 0.34, [0, 90], seed=0)
    # whole groups are held out: no group on both sides

    def groups(pool):
        return {n.split("/")[0] for n in pool.names}

    assert groups(train) and groups(test) and not groups(train) & groups(test)
    assert len(train.names) + len(test.names) == 12  # 6 classes x 2 rotations
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        read_class_folders(tmp_path / "empty", 6)
    with pytest.raises(ValueError, match="does not exist"):
        read_class_folders(tmp_path / "missing", 6)


def test_omniglot_zips_load_as_a_task_source(omniglot_zips):
    train, test = folder_pools(omniglot_zips, 28, 0.25, [0], seed=0, invert=True)
    # 8 distinct alphabets, 242 characters (Greek and Latin appear in both zips)
    assert len(train.names) + len(test.names) == 242

    def alphabets(pool):
        return {n.split("/")[0] for n in pool.names}

    assert len(alphabets(train) | alphabets(test)) == 8 and not alphabets(train) & alphabets(test)
    ep = test.sample_episode(5, 1, 5, seed=0)
    assert ep.support_x.shape == (5, 1, 28, 28)
    # inverted: strokes bright on a dark background, so most pixels are near 0
    assert np.median(ep.support_x) < 0.2
