"""The campaign schema: what a campaign file may say, as frozen pydantic models.

Every model forbids unknown keys, so a typo is an error that names the field instead of a
silently ignored setting. The driver, the actors and the task runner all read these models;
`metanas.platform.config` loads them from YAML and turns pydantic's report into one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from metanas.searchers.darts.cell_space import CellSpace

if TYPE_CHECKING:  # torch loads only where a network is built, not to read a campaign
    from metanas.searchers.darts.adaptation import AdaptSettings, ModelSpec

LEARNERS = ("metanas", "reptile_fixed")  # what meta-training learns: the supernet, the fixed cell
_CELL = CellSpace()  # its defaults are the campaign's

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


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
    nodes: PositiveInt = _CELL.nodes
    ops: list[str] = list(_CELL.ops)
    channels: PositiveInt = _CELL.channels
    cells: PositiveInt = _CELL.cells
    norm: Literal["group", "batch"] = "group"

    @model_validator(mode="after")
    def _is_a_cell_space(self) -> "SpaceSettings":
        try:  # the cell space's own checks (op names, duplicates, not only 'none'), not a copy
            self.cell_space()
        except ValueError as err:
            raise ValueError(str(err)) from None
        return self

    def cell_space(self) -> CellSpace:
        return CellSpace(nodes=self.nodes, ops=tuple(self.ops), channels=self.channels, cells=self.cells, norm=self.norm)


class InnerLoop(_Strict):
    steps: PositiveInt
    lr_w: PositiveFloat
    lr_alpha: PositiveFloat
    batch_size: NonNegativeInt = 0

    def settings(self, update_alpha: bool = True) -> "AdaptSettings":
        """The inner loop's settings for `adapt` (the one place they are built)."""
        from metanas.searchers.darts.adaptation import AdaptSettings

        return AdaptSettings(self.steps, self.lr_w, self.lr_alpha, self.batch_size, update_alpha)


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

    def model_spec(self, learner: str) -> "ModelSpec":
        """The network a meta-trained learner adapts: the supernet, or the fixed cell."""
        from metanas.searchers.darts.adaptation import ModelSpec

        if learner not in LEARNERS:
            raise ValueError(f"learner: expected one of {LEARNERS}, got {learner!r}")
        genotype = self.fixed_genotype() if learner == "reptile_fixed" else None
        return ModelSpec(self.space.cell_space(), 1, self.episodes.n_way, genotype)

    @property
    def image_size(self) -> tuple[int, int]:
        if self.data.source == "digits":
            return (8, 8)
        return (self.data.image_size, self.data.image_size)


