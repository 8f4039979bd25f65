"""Few-shot task sources: N-way K-shot episodes from a pool of image classes.

A pool is a list of classes, each an array of grayscale images (n, H, W) in [0, 1]. Two
sources build pools: scikit-learn's digits (shipped with scikit-learn, never downloaded),
and a directory (or zip) of class folders for users' own images. Both split their classes
into disjoint meta-train and meta-test pools, and both can multiply classes by rotation, as
is standard for Omniglot. An episode is a pure function of (pool, seed, index).
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@dataclass(frozen=True)
class Episode:
    """Support and query images as float32 (n, 1, H, W) arrays, labels 0..n_way-1."""

    support_x: np.ndarray
    support_y: np.ndarray
    query_x: np.ndarray
    query_y: np.ndarray
    classes: tuple[str, ...]


@dataclass(frozen=True)
class ClassPool:
    names: tuple[str, ...]
    images: tuple[np.ndarray, ...]  # one (n_i, H, W) float32 array per class

    def __post_init__(self) -> None:
        if len(self.names) != len(self.images):
            raise ValueError("class names and image arrays differ in length")

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.images[0].shape[1:])  # type: ignore[return-value]

    def sample_episode(self, n_way: int, k_shot: int, query: int, seed: int | Sequence[int]) -> Episode:
        """Draw `n_way` classes, then `k_shot` support and `query` query images of each."""
        if n_way > len(self.names):
            raise ValueError(f"n_way={n_way} but the pool has only {len(self.names)} classes")
        rng = np.random.default_rng(seed)
        classes = rng.choice(len(self.names), size=n_way, replace=False)
        sx, sy, qx, qy = [], [], [], []
        for label, c in enumerate(classes):
            imgs = self.images[c]
            if len(imgs) < k_shot + query:
                raise ValueError(
                    f"class {self.names[c]!r} has {len(imgs)} images, an episode needs "
                    f"k_shot+query={k_shot + query}"
                )
            pick = rng.choice(len(imgs), size=k_shot + query, replace=False)
            sx.append(imgs[pick[:k_shot]])
            qx.append(imgs[pick[k_shot:]])
            sy += [label] * k_shot
            qy += [label] * query
        return Episode(
            support_x=np.concatenate(sx)[:, None].astype(np.float32),
            support_y=np.asarray(sy, dtype=np.int64),
            query_x=np.concatenate(qx)[:, None].astype(np.float32),
            query_y=np.asarray(qy, dtype=np.int64),
            classes=tuple(self.names[c] for c in classes),
        )


def pixel_prototype_accuracy(ep: Episode) -> float:
    """Nearest class mean on raw pixels: the no-learning floor every method must beat."""
    n_way = int(ep.support_y.max()) + 1
    s = ep.support_x.reshape(len(ep.support_x), -1)
    q = ep.query_x.reshape(len(ep.query_x), -1)
    protos = np.stack([s[ep.support_y == k].mean(0) for k in range(n_way)])
    dist = ((q[:, None, :] - protos[None]) ** 2).sum(-1)
    return float((dist.argmin(1) == ep.query_y).mean())


def with_rotations(names: Sequence[str], images: Sequence[np.ndarray], rotations: Sequence[int]) -> ClassPool:
    """Each (class, rotation) becomes its own class, e.g. '3@90'."""
    for r in rotations:
        if r % 90:
            raise ValueError(f"rotations: {r} is not a multiple of 90 degrees")
    out_names, out_images = [], []
    for name, imgs in zip(names, images):
        for r in rotations:
            out_names.append(name if r == 0 and len(rotations) == 1 else f"{name}@{r}")
            out_images.append(np.ascontiguousarray(np.rot90(imgs, k=r // 90, axes=(1, 2))))
    return ClassPool(tuple(out_names), tuple(out_images))


def hold_out_classes(pool: ClassPool, fraction: float, seed: int) -> tuple[ClassPool, ClassPool]:
    """Split `pool` into (kept, held out) with about `fraction` of its classes held out.
    A class and its rotations ('a@90') go to the same side, so held-out classes are new
    characters, not rotated copies of ones still in the pool."""
    bases = sorted({name.split("@")[0] for name in pool.names})
    n_out = max(1, int(round(fraction * len(bases))))
    if n_out >= len(bases):
        raise ValueError(f"holding out {fraction:g} of {len(bases)} classes leaves none")
    order = np.random.default_rng([seed, 7]).permutation(len(bases))
    out = {bases[i] for i in order[:n_out]}
    held = [name.split("@")[0] in out for name in pool.names]
    return _subset(pool, [not h for h in held]), _subset(pool, held)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits: images (1797, 8, 8) of values 0-16, and their digits. Read
    from the CSV scikit-learn ships, as its `load_digits` does, without importing it:
    the import costs every worker process about a second of CPU, the file 20 ms."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # (finds the package without importing it)
    places = spec.submodule_search_locations if spec else None
    path = Path(places[0]) / "datasets" / "data" / "digits.csv.gz" if places else None
    if path is None or not path.exists():  # another layout: ask scikit-learn itself
        from sklearn.datasets import load_digits as sklearn_digits

        data = sklearn_digits()
        return data.images, data.target
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)


def digits_pools(
    test_digits: Sequence[int],
    rotations: Sequence[int],
    split: str = "digit",
    test_classes: int = 12,
    seed: int = 0,
) -> tuple[ClassPool, ClassPool]:
    """Meta-train and meta-test pools from scikit-learn's 8x8 digits.

    split='digit': every rotation of `test_digits` is held out, so no test digit is ever seen
    in meta-training (strict). split='class': the (digit, rotation) classes are shuffled with
    `seed` and `test_classes` of them held out (the Omniglot convention of treating each
    rotation as a class of its own).
    """
    images, target = load_digits()
    images = (images / 16.0).astype(np.float32)
    pool = with_rotations([str(d) for d in range(10)], [images[target == d] for d in range(10)], rotations)
    if split == "digit":
        bad = [d for d in test_digits if d not in range(10)]
        if bad:
            raise ValueError(f"test_digits: {bad} are not digits 0-9")
        is_test = [int(name.split("@")[0]) in set(test_digits) for name in pool.names]
    elif split == "class":
        if not 0 < test_classes < len(pool.names):
            raise ValueError(f"test_classes: must be between 1 and {len(pool.names) - 1}, got {test_classes}")
        held_out = set(np.random.default_rng(seed).permutation(len(pool.names))[:test_classes].tolist())
        is_test = [i in held_out for i in range(len(pool.names))]
    else:
        raise ValueError(f"split: expected 'digit' or 'class', got {split!r}")
    return _subset(pool, [not t for t in is_test]), _subset(pool, is_test)


def _subset(pool: ClassPool, keep: Sequence[bool]) -> ClassPool:
    return ClassPool(
        tuple(n for n, k in zip(pool.names, keep) if k), tuple(i for i, k in zip(pool.images, keep) if k)
    )


def _load_image(data: bytes, size: int, invert: bool) -> np.ndarray:
    if size == 0:  # counting only (`decode=False`): a placeholder pixel
        return np.zeros((1, 1), dtype=np.float32)
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("L").resize((size, size), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return 1.0 - arr if invert else arr


def read_class_folders(
    root: str | Path, image_size: int, invert: bool = False, decode: bool = True
) -> dict[str, dict[str, np.ndarray]]:
    """{group: {class: images}} from `class/*.png` (one group, '') or `group/class/*.png`.

    `root` is a directory or a .zip file; several roots can be merged by the caller.
    `decode=False` reads no image: each is a 1x1 placeholder, so the classes and their
    image counts come cheaply (the campaign check before any work starts).
    """
    root = Path(root)
    if not root.exists():
        raise ValueError(f"data path {str(root)!r} does not exist")
    files: dict[tuple[str, ...], bytes] = {}
    if root.suffix == ".zip":
        if not zipfile.is_zipfile(root):
            raise ValueError(f"data path {str(root)!r} is not a readable zip file")
        with zipfile.ZipFile(root) as zf:
            for info in zf.infolist():
                parts = tuple(p for p in info.filename.split("/") if p)
                if not info.is_dir() and parts[-1].lower().endswith(IMAGE_SUFFIXES):
                    files[parts] = zf.read(info) if decode else b""
    else:
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                files[path.relative_to(root).parts] = path.read_bytes() if decode else b""
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {str(root)!r}")
    # The class is an image's parent folder, its group the folder above (if any). A zip
    # usually wraps everything in one top folder; that folder is not a group.
    depth = {len(p) for p in files}
    if len(depth) != 1:
        raise ValueError(
            f"{str(root)!r}: images sit at different depths; expected class/*.png or group/class/*.png"
        )
    classes: dict[str, dict[str, list[np.ndarray]]] = {}
    for parts in sorted(files):
        group = parts[-3] if len(parts) >= 3 else ""
        classes.setdefault(group, {}).setdefault(parts[-2], []).append(
            _load_image(files[parts], image_size if decode else 0, invert)
        )
    return {g: {c: np.stack(v) for c, v in cs.items()} for g, cs in classes.items()}


def folder_pools(
    paths: Sequence[str | Path],
    image_size: int,
    test_fraction: float,
    rotations: Sequence[int],
    seed: int,
    invert: bool = False,
    decode: bool = True,
) -> tuple[ClassPool, ClassPool]:
    """Meta-train / meta-test pools from class folders. With groups (Omniglot's alphabets),
    whole groups are held out; otherwise classes are. `decode=False`: placeholders only
    (see `read_class_folders`)."""
    merged: dict[str, dict[str, np.ndarray]] = {}
    for p in paths:
        for group, classes in read_class_folders(p, image_size, invert, decode).items():
            merged.setdefault(group, {}).update(classes)
    rng = np.random.default_rng(seed)
    units = sorted(merged) if len(merged) > 1 else sorted(merged[next(iter(merged))])
    order = [units[i] for i in rng.permutation(len(units))]
    n_test = max(1, int(round(test_fraction * len(units))))
    if n_test >= len(units):
        raise ValueError(f"test_fraction={test_fraction} leaves no meta-train classes out of {len(units)}")
    test_units = set(order[:n_test])

    def pool(test: bool) -> ClassPool:
        names, images = [], []
        for group in sorted(merged):
            for cls in sorted(merged[group]):
                unit = group if len(merged) > 1 else cls
                if (unit in test_units) == test:
                    names.append(f"{group}/{cls}" if group else cls)
                    images.append(merged[group][cls])
        return with_rotations(names, images, rotations)

    train, test = pool(False), pool(True)
    log.info("class folders: %d meta-train and %d meta-test classes", len(train.names), len(test.names))
    return train, test
