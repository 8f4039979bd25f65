"""Campaign configuration: a YAML file parsed and validated once, at the edge.

Every model forbids unknown keys, so a typo is an error that names the field instead of a
silently ignored setting. `load_campaign` turns pydantic's report into one line per problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from metanas.platform.darts_space import ALL_OPS, CellSpace

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class ConfigError(ValueError):
    """A campaign file is missing, unreadable or invalid; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DigitsSource(_Strict):
    source: Literal["digits"]
    split: Literal["digit", "class"] = "digit"
    test_classes: PositiveInt = 12
    test_digits: list[Annotated[int, Field(ge=0, le=9)]] = [7, 8, 9]
    rotations: list[int] = [0, 90, 180, 270]


class FoldersSource(_Strict):
    source: Literal["folders"]
    paths: list[str] = Field(min_length=1)
    image_size: PositiveInt = 28
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.25
    rotations: list[int] = [0]
    invert: bool = False


class EpisodeSettings(_Strict):
    n_way: Annotated[int, Field(ge=2)]
    k_shot: PositiveInt
    query: PositiveInt = 15
    train_shots: PositiveInt = 5
    train_query: PositiveInt = 5


class SpaceSettings(_Strict):
    nodes: PositiveInt = 2
    ops: list[str] = list(ALL_OPS)
    channels: PositiveInt = 16
    cells: PositiveInt = 2
    norm: Literal["group", "batch"] = "group"

    @field_validator("ops")
    @classmethod
    def _known_ops(cls, ops: list[str]) -> list[str]:
        unknown = [o for o in ops if o not in ALL_OPS]
        if unknown:
            raise ValueError(f"unknown op {unknown[0]!r}; known ops are {', '.join(ALL_OPS)}")
        return ops

    def cell_space(self) -> CellSpace:
        return CellSpace(nodes=self.nodes, ops=tuple(self.ops), channels=self.channels, cells=self.cells, norm=self.norm)


class InnerLoop(_Strict):
    steps: PositiveInt
    lr_w: PositiveFloat
    lr_alpha: PositiveFloat
    batch_size: NonNegativeInt = 0


class MetaTrainSettings(_Strict):
    iterations: PositiveInt
    meta_batch: PositiveInt = 8
    inner: InnerLoop
    # Reptile learns from more data than the test-time support set: the w steps also see the
    # meta-train episode's query images (measured on the demo: 0.888 vs 0.863 accuracy).
    w_sees_query: bool = True
    beta_w: PositiveFloat = 1.0
    beta_alpha: PositiveFloat = 1.0
    beta_final_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0
    alpha_warmup: NonNegativeInt = 0
    checkpoint_every: PositiveInt = 10
    task_retries: NonNegativeInt = 2
    # sync: every iteration waits for its meta_batch tasks, then takes one Reptile step.
    # async: tasks stream without a barrier; the MetaLearner takes a step per meta_batch
    # updates as they arrive, so a slow worker or node never stalls the others. An update
    # computed from meta-parameters more than max_staleness steps old is down-weighted or
    # dropped (stale_policy) and counted in summary.json's meta_train.stale_updates.
    updates: Literal["sync", "async"] = "sync"
    max_staleness: NonNegativeInt = 2
    stale_policy: Literal["downweight", "drop"] = "downweight"


class MetaTestSettings(_Strict):
    tasks: PositiveInt = 200
    adapt: InnerLoop
    fixed_genotype: Optional[list[str]] = None
    baselines: list[Literal["reptile_fixed", "scratch", "pixel_prototypes"]] = [
        "reptile_fixed",
        "scratch",
        "pixel_prototypes",
    ]


class WorkerSettings(_Strict):
    count: Union[PositiveInt, Literal["auto"]] = 2  # auto: as many as the cluster's resources hold
    cpus_per_worker: PositiveFloat = 1.0
    gpus_per_worker: Annotated[float, Field(ge=0)] = 0.0  # fractions share a GPU between small workers
    placement: Literal["spread", "pack"] = "spread"
    # How long to wait for the cluster to place every worker before failing with a message
    # naming the missing resource (instead of hanging in PENDING).
    start_timeout_s: PositiveFloat = 120.0


class Campaign(_Strict):
    name: str = "campaign"
    seed: int = 0
    data: Union[DigitsSource, FoldersSource] = Field(discriminator="source")
    episodes: EpisodeSettings
    space: SpaceSettings = SpaceSettings()
    meta_train: MetaTrainSettings
    meta_test: MetaTestSettings
    workers: WorkerSettings = WorkerSettings()
    # The task memory every finished task search is appended to; default OUT/memory.
    # Point several campaigns at one directory to share what they learn.
    memory: Optional[str] = None

    @model_validator(mode="after")
    def _fixed_genotype_fits(self) -> "Campaign":
        g = self.meta_test.fixed_genotype
        if g is not None:
            try:
                self.space.cell_space().genotype_to_config(tuple(g))
            except ValueError as err:
                raise ValueError(f"meta_test.fixed_genotype: {err}") from None
        return self

    def fixed_genotype(self) -> tuple[str, ...]:
        """The hand-picked architecture of the `reptile_fixed` baseline: by default conv 3x3
        on the edges from the cell input and skip connections elsewhere (a small ResNet-like
        cell with about as many weights as the supernet's strongest single path)."""
        if self.meta_test.fixed_genotype is not None:
            return tuple(self.meta_test.fixed_genotype)
        space = self.space.cell_space()
        conv = "conv_3x3" if "conv_3x3" in space.ops else next(o for o in space.ops if o != "none")
        skip = "skip_connect" if "skip_connect" in space.ops else conv
        return tuple(conv if source == 0 else skip for _, source in space.edges)


def _format_errors(err: ValidationError) -> str:
    """One line: 'field.path: what is wrong' per field. Union branches pydantic tried
    (tags like 'constrained-int' or "literal['auto']") collapse into their field."""
    by_field: dict[str, list[str]] = {}
    for e in err.errors():
        loc = ".".join(
            str(p) for p in e["loc"]
            if not (isinstance(p, str) and (p in ("digits", "folders") or any(ch in p for ch in "-['")))
        )
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        msgs = by_field.setdefault(loc or "<top level>", [])
        if msg not in msgs:
            msgs.append(msg)
    return "; ".join(f"{loc}: {' or '.join(msgs)}" for loc, msgs in by_field.items())


def parse_campaign(data: object, origin: str = "campaign") -> Campaign:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping of settings at the top level, got {type(data).__name__}")
    try:
        return Campaign.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{origin}: {_format_errors(err)}") from None


def load_campaign(path: str | Path) -> Campaign:
    """Read and validate a campaign YAML file; raise ConfigError with a one-line message."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"campaign file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    return parse_campaign(data, origin=str(path))
