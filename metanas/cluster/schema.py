"""The campaign schema: what a campaign file may say, as frozen pydantic models.

Every model forbids unknown keys, so a typo is an error that names the field instead of a
silently ignored setting. The driver, the actors and the task runner all read these models;
`metanas.platform.config` loads them from YAML and turns pydantic's report into one line.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from metanas.searchers.darts.cell_space import CellSpace

if TYPE_CHECKING:  # torch loads only where a network is built, not to read a campaign
    from metanas.searchers.darts.adaptation import AdaptSettings, ModelSpec
    from metanas.searchers.darts.latency import NetworkShape
    from metanas.searchers.darts.reptile import MetaSchedule

# What meta-training learns. The first stage: the supernet and the fixed-architecture
# baselines, side by side. The second stage (MetaNAS' pipeline): the discrete network of
# the architecture the first stage found, meta-trained the way the baselines were.
LEARNERS = ("metanas", "reptile_fixed", "reptile_conv4", "metanas_derived")
FIRST_STAGE = LEARNERS[:3]
DERIVED = "metanas_derived"
BASELINES = ("metanas_derived", "reptile_fixed", "reptile_conv4", "scratch", "pixel_prototypes")
_CELL = CellSpace()  # its defaults are the campaign's

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    # strict: a campaign file's `iterations: "125"` or `iterations: true` is an error, not
    # a number (YAML reads both without complaint)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


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
    reduction: bool = _CELL.reduction  # reduction cells (own architecture) instead of max pools
    input_cells: Literal[1, 2] = _CELL.input_cells  # 2: each cell also reads the cell before last
    drop_path: Annotated[float, Field(ge=0, lt=1)] = _CELL.drop_path
    partial_channels: PositiveInt = _CELL.partial_channels  # PC-DARTS' K: 1/K of the channels mixed (1: off)
    edge_normalization: bool = _CELL.edge_normalization  # PC-DARTS' per-edge weights (beta)
    feature_grid: PositiveInt = _CELL.feature_grid  # the head reads the last cell pooled to a grid this size

    @model_validator(mode="after")
    def _is_a_cell_space(self) -> SpaceSettings:
        try:  # the cell space's own checks (op names, duplicates, not only 'none'), not a copy
            self.cell_space()
        except ValueError as err:
            raise ValueError(str(err)) from None
        return self

    def cell_space(self) -> CellSpace:
        return CellSpace(
            nodes=self.nodes,
            ops=tuple(self.ops),
            channels=self.channels,
            cells=self.cells,
            norm=self.norm,
            reduction=self.reduction,
            input_cells=self.input_cells,
            drop_path=self.drop_path,
            partial_channels=self.partial_channels,
            edge_normalization=self.edge_normalization,
            feature_grid=self.feature_grid,
        )


class InnerLoop(_Strict):
    steps: PositiveInt
    lr_w: PositiveFloat
    lr_alpha: PositiveFloat
    batch_size: NonNegativeInt = 0
    # Meta-test (MetaNAS): the architecture adapts only in the first part of the steps,
    # then the ops whose edge weight fell below prune_threshold are switched off.
    alpha_fraction: Annotated[float, Field(ge=0, le=1)] = 1.0
    prune_threshold: Annotated[float, Field(ge=0, lt=1)] = 0.0

    def settings(self, update_alpha: bool = True) -> AdaptSettings:
        """The inner loop's settings for `adapt` (the one place they are built)."""
        from metanas.searchers.darts.adaptation import AdaptSettings

        return AdaptSettings(
            self.steps,
            self.lr_w,
            self.lr_alpha,
            self.batch_size,
            update_alpha,
            self.alpha_fraction,
            self.prune_threshold,
        )


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
    # The supernet's softmax temperature, annealed geometrically over meta-training
    # (MetaNAS: 1.0 -> 0.05, so the mixture sharpens towards the architecture it derives);
    # meta-test uses the last one.
    temperature_start: PositiveFloat = 1.0
    temperature_end: PositiveFloat = 1.0
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
    # flat: every update goes straight to the MetaLearner. node: one aggregator per node
    # combines its workers' updates (sync: summed; async: up to one per worker, or what came
    # within aggregation_linger_s, in one call), so the MetaLearner's load falls by about the
    # workers per node (README: "How many updates one MetaLearner takes").
    aggregation: Literal["flat", "node"] = "flat"
    aggregation_linger_s: PositiveFloat = 0.02
    # One worker call carries as many meta-training tasks of one learner as take about
    # call_s at that learner's measured task time (0: one per call; async: few enough to
    # add about one meta-step of staleness at most, `most_tasks_per_call`):
    # Ray's and the driver's cost is per call, a few ms, which short tasks (GPU workers,
    # small baselines) would otherwise pay per task (`metanas.cluster.call_size`).
    call_s: NonNegativeFloat = 0.5
    validation: ValidationSettings | None = None

    @model_validator(mode="after")
    def _no_pruning_in_training(self) -> MetaTrainSettings:
        if self.inner.prune_threshold > 0:  # a pruned op's -inf would enter the Reptile update
            raise ValueError("meta_train.inner.prune_threshold: pruning is for meta-test only; leave it at 0")
        return self

    @model_validator(mode="after")
    def _validation_at_checkpoints(self) -> MetaTrainSettings:
        v = self.validation
        if v is not None and v.every is not None and v.every % self.checkpoint_every:
            raise ValueError(
                f"validation.every={v.every} must be a multiple of checkpoint_every={self.checkpoint_every} "
                "(the curves are measured on checkpoints)"
            )
        return self


class ValidationSettings(_Strict):
    """Learning curves: at every checkpoint, each meta-trained method's accuracy on a fixed
    set of episodes from classes held out of meta-training (never the meta-test classes)."""

    fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1  # of the meta-train classes (all rotations of each)
    every: PositiveInt | None = None  # iterations; a multiple of checkpoint_every (the default)
    episodes: PositiveInt = 20
    n_way: Annotated[int, Field(ge=2)] = 5
    k_shot: PositiveInt = 1
    query: PositiveInt = 5


class Evaluation(_Strict):
    """One meta-test setting; `tasks` and `query` default to meta_test.tasks and episodes.query."""

    n_way: Annotated[int, Field(ge=2)]
    k_shot: PositiveInt
    tasks: PositiveInt | None = None
    query: PositiveInt | None = None


class MetaTestSettings(_Strict):
    tasks: PositiveInt = 200
    adapt: InnerLoop
    # Several (n_way, k_shot) settings, each on its own held-out tasks; the default is
    # one: the episodes' n_way and k_shot.
    evaluations: list[Evaluation] | None = Field(default=None, min_length=1)
    fixed_genotype: list[str] | None = None
    baselines: list[Literal[BASELINES]] = list(BASELINES)
    conv4_channels: PositiveInt = 64  # the classic Conv-4 of MAML and Reptile
    derived_channels: PositiveInt | None = None  # the derived network's width; default the space's
    derived_cells: PositiveInt | None = None  # the derived network's depth in cells; default the space's


class WorkerSettings(_Strict):
    count: PositiveInt | Literal["auto"] = 2  # auto: as many as the cluster's resources hold
    cpus_per_worker: PositiveFloat = 1.0
    gpus_per_worker: Annotated[float, Field(ge=0)] = 0.0  # fractions share a GPU between small workers
    placement: Literal["spread", "pack"] = "spread"
    # How long to wait for the cluster to place every worker before failing with a message
    # naming the missing resource (instead of hanging in PENDING).
    start_timeout_s: PositiveFloat = 120.0


class Constraints(_Strict):
    """A hardware budget for the derived networks (ProxylessNAS, FBNet): the supernet's
    expected cost under its edge weights joins the architecture's loss as a hinge on each
    limit, and every derived genotype is projected within the limits. Latency is one
    inference pass of `batch` images on `device` with `threads` threads, predicted from a
    latency table. Without limits the campaign only measures and reports its genotypes."""

    device: Literal["cpu", "cuda"] = "cpu"
    threads: PositiveInt = 1
    batch: PositiveInt = 1
    max_latency_ms: PositiveFloat | None = None
    max_params: PositiveInt | None = None
    weight: PositiveFloat = 1.0  # of each hinge in the architecture's loss
    # A table from `metanas hw profile` (relative to the campaign file); by default the
    # driver profiles the space on `device` before meta-training starts.
    latency_table: str | None = None
    # Before meta-training, the table is checked on fresh networks measured here: below
    # Spearman 0.9 the campaign warns in one line, or with `strict` refuses to start.
    strict: bool = False


class Campaign(_Strict):
    name: str = "campaign"
    seed: int = 0
    data: DigitsSource | FoldersSource = Field(discriminator="source")
    episodes: EpisodeSettings
    space: SpaceSettings = SpaceSettings()
    meta_train: MetaTrainSettings
    meta_test: MetaTestSettings
    workers: WorkerSettings = WorkerSettings()
    # The task memory every finished task search is appended to; default OUT/memory.
    # Point several campaigns at one directory to share what they learn.
    memory: str | None = None
    constraints: Constraints | None = None

    @model_validator(mode="after")
    def _fixed_genotype_fits(self) -> Campaign:
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
        cell = tuple(conv if source < space.input_cells else skip for _, source in space.edges)
        return cell * 2 if space.reduction else cell  # (the reduction cell: the same pattern)

    def meta_schedule(self) -> MetaSchedule:
        from metanas.searchers.darts.reptile import MetaSchedule

        mt = self.meta_train
        return MetaSchedule(
            mt.iterations,
            mt.beta_w,
            mt.beta_alpha,
            mt.beta_final_fraction,
            mt.alpha_warmup,
            temperature_start=mt.temperature_start,
            temperature_end=mt.temperature_end,
        )

    def first_stage(self) -> tuple[str, ...]:
        """The learners meta-trained side by side: the supernet and the fixed baselines."""
        return ("metanas",) + tuple(m for m in FIRST_STAGE[1:] if m in self.meta_test.baselines)

    def meta_trained(self) -> tuple[str, ...]:
        """Every meta-trained learner, both stages, in the order meta-test passes them."""
        return self.first_stage() + ((DERIVED,) if DERIVED in self.meta_test.baselines else ())

    def evaluations(self) -> list[Evaluation]:
        e, mt = self.episodes, self.meta_test
        given = mt.evaluations or [Evaluation(n_way=e.n_way, k_shot=e.k_shot)]
        return [
            ev.model_copy(update={"tasks": ev.tasks or mt.tasks, "query": ev.query or e.query})
            for ev in given
        ]

    def model_spec(self, learner: str, derived: tuple[str, ...] | None = None) -> ModelSpec:
        """The network a meta-trained learner adapts: the supernet, the fixed cell, Conv-4, or
        (with `derived`, the first stage's genotype) the derived network."""
        from metanas.searchers.darts.adaptation import ModelSpec

        if learner not in LEARNERS:
            raise ValueError(f"learner: expected one of {LEARNERS}, got {learner!r}")
        space = self.space.cell_space()
        if learner == "reptile_conv4":
            return ModelSpec(space, 1, self.episodes.n_way, conv4_channels=self.meta_test.conv4_channels)
        if learner == DERIVED:
            if derived is None:
                raise ValueError("the derived network needs the genotype the first stage found")
            return ModelSpec(self.derived_space(), 1, self.episodes.n_way, tuple(derived))
        if learner == "reptile_fixed":
            return ModelSpec(space, 1, self.episodes.n_way, self.fixed_genotype())
        return ModelSpec(space, 1, self.episodes.n_way, temperature=self.meta_train.temperature_end)

    def initial_params(self, learner: str, derived: tuple[str, ...] | None = None) -> dict:
        """The learner's meta-parameters before meta-training: every learner starts from the
        same seed-determined initialisation."""
        from metanas.searchers.darts.adaptation import get_params

        return get_params(self.model_spec(learner, derived).build(seed=self.seed))

    def network_shape(self) -> NetworkShape:
        """The shape of the networks the campaign derives (the derived network's width,
        the first evaluation's classes): what a genotype's latency and parameters are of."""
        from metanas.searchers.darts.latency import NetworkShape

        return NetworkShape(self.derived_space(), self.image_size, self.evaluations()[0].n_way)

    def derived_space(self) -> CellSpace:
        """The derived network's space: the search's, at the derived width and depth (as DARTS
        evaluates a found cell in a deeper, wider network than the one it searched), every op
        on all channels (partial channels are the supernet's)."""
        space = self.space.cell_space()
        mt = self.meta_test
        return dataclasses.replace(
            space,
            channels=mt.derived_channels or space.channels,
            cells=mt.derived_cells or space.cells,
            partial_channels=1,
        )

    @property
    def image_size(self) -> tuple[int, int]:
        if self.data.source == "digits":
            return (8, 8)
        return (self.data.image_size, self.data.image_size)
