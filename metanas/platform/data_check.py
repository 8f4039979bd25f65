"""A campaign checked against the data it names, after the schema and before any work
starts: the folders exist and hold images, every split has the classes its episodes draw
and every class the images (shots plus query) an episode takes. Each problem is one line
naming the field. Images are counted, not decoded, so the check takes a moment even on
Omniglot."""

from __future__ import annotations

import re

from metanas.cluster.schema import Campaign
from metanas.platform.config import ConfigError


def _need(pool, n_way: int, per_class: int, way_field: str, shots_field: str, split: str) -> None:
    if pool is None:
        return
    if n_way > len(pool.names):
        raise ConfigError(
            f"{way_field}: {n_way} classes per episode, but the {split} split has {len(pool.names)} classes"
        )
    short = min(range(len(pool.names)), key=lambda i: len(pool.images[i]))
    have = len(pool.images[short])
    if have < per_class:
        raise ConfigError(
            f"{shots_field}: an episode takes {per_class} images of each class, but {split} class "
            f"{pool.names[short]!r} has {have}"
        )


def check_campaign_data(campaign: Campaign) -> None:
    """Raise ConfigError (one line, naming the field) when the campaign cannot run on its data."""
    from metanas.cluster.task_worker import build_pools

    try:
        train, test, validation = build_pools(campaign, decode=False)
    except ValueError as err:
        text = str(err)
        named = re.match(r"^(\w+): (.*)$", text)  # a check that names its own field (e.g. "rotations: ...")
        if "holding out" in text:
            text = f"meta_train.validation.fraction: {text}"
        else:
            text = f"data.{named.group(1)}: {named.group(2)}" if named else f"data: {text}"
        raise ConfigError(text) from None
    e = campaign.episodes
    _need(
        train,
        e.n_way,
        e.train_shots + e.train_query,
        "episodes.n_way",
        "episodes.train_shots + train_query",
        "meta-train",
    )
    listed = campaign.meta_test.evaluations is not None
    for i, ev in enumerate(campaign.evaluations()):
        where = f"meta_test.evaluations.{i}." if listed else "episodes."
        _need(test, ev.n_way, ev.k_shot + ev.query, f"{where}n_way", f"{where}k_shot + query", "meta-test")
    v = campaign.meta_train.validation
    if v is not None:
        _need(
            validation,
            v.n_way,
            v.k_shot + v.query,
            "meta_train.validation.n_way",
            "meta_train.validation.k_shot + query",
            "validation",
        )
