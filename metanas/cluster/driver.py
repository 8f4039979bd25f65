"""The campaign driver: schedules meta-training and meta-test tasks on TaskWorker actors.

Reliability: a task lost with its worker process is re-submitted (same iteration and slot,
so the same episode) up to `meta_train.task_retries` times; a task whose loss diverges fails
and its update is dropped; every wait has a timeout; checkpoints are written every
`checkpoint_every` iterations so a killed driver resumes from the last one.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from dataclasses import asdict
from typing import Any, Callable, Iterator

import numpy as np
import ray
from ray.exceptions import GetTimeoutError, ObjectLostError, RayActorError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from metanas.cluster.actors import MemoryWriter, MetaLearner, TaskWorker
from metanas.cluster.connect import connect
from metanas.platform.checkpoint import atomic_write_json, save_tensors
from metanas.platform.config import Campaign
from metanas.platform.adaptation import ModelSpec, get_params
from metanas.platform.reptile import KeySet, MetaSchedule
from metanas.platform.task_runner import LEARNERS

log = logging.getLogger(__name__)

WAIT_TIMEOUT_S = 600.0  # no single task may take longer than this on the demo's scale


def _initial_params(campaign: Campaign) -> dict[str, dict]:
    """Both learners start from the same seed-determined initialisation."""
    space = campaign.space.cell_space()
    n_way = campaign.episodes.n_way
    return {
        "metanas": get_params(ModelSpec(space, 1, n_way).build(seed=campaign.seed)),
        "reptile_fixed": get_params(ModelSpec(space, 1, n_way, campaign.fixed_genotype()).build(seed=campaign.seed)),
    }


class MetaLearnerRestarted(RuntimeError):
    """The MetaLearner restarted from its last checkpoint (or lost an update): the driver
    and it both go back to the newest complete checkpoint."""

    def __init__(self, why: str = "the MetaLearner restarted from its last checkpoint") -> None:
        super().__init__(why)


MAX_REWINDS = 8  # a campaign that keeps rewinding makes no progress: fail instead of looping


def _curve_row(iteration: int, accs: dict[str, list[float]]) -> dict[str, float]:
    """One point of the meta-training curve: each learner's mean query accuracy (before
    adaptation) over the iteration's tasks."""
    row: dict[str, float] = {"iteration": iteration}
    for name in LEARNERS:
        values = accs.get(name, [])
        row[name] = sum(values) / len(values) if values else float("nan")
    return row


def auto_worker_count(cpus: float, gpus: float, cluster: dict[str, float]) -> int:
    """workers.count: auto -- as many workers as the cluster's CPUs (and GPUs, when each
    worker asks for some) can hold at once, at least one."""
    fits = [cluster.get("CPU", 0) // cpus] if cpus > 0 else []
    if gpus > 0:
        fits.append(cluster.get("GPU", 0) // gpus)
    return max(1, int(min(fits))) if fits else 1


def missing_resources(count: int, cpus: float, gpus: float, cluster: dict[str, float]) -> str:
    """Say which resource the workers ask for beyond what the cluster has."""
    needs = {"CPU": count * cpus, "GPU": count * gpus}
    short = [f"{need:g} {name} ({count} x {per:g}) but the cluster has {cluster.get(name, 0):g} {name}"
             for (name, need), per in zip(needs.items(), (cpus, gpus)) if need > cluster.get(name, 0)]
    if short:
        return "they need " + "; ".join(short) + ". Lower workers.count or the per-worker resources, or add nodes."
    return f"the cluster has {cluster} in all, but not free: other jobs may hold it (see `ray status`)."


def _progress(total: int, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, unit="it", dynamic_ncols=True)


class CampaignDriver:
    def __init__(
        self, campaign: Campaign, run, address: str | None, progress: bool, slowdown: dict[int, float] | None = None
    ) -> None:
        """`slowdown` (benchmarks only): worker index -> factor, to simulate a slower device."""
        self.campaign = campaign
        self.run_dir = run
        self.progress = progress
        w = campaign.workers
        connect(address)
        self.worker_count = w.count if w.count != "auto" else auto_worker_count(w.cpus_per_worker, w.gpus_per_worker, ray.cluster_resources())
        # SPREAD puts workers on distinct nodes where it can (a node lost costs fewer
        # workers); PACK leaves Ray's default, which fills nodes one after another.
        strategy = "SPREAD" if w.placement == "spread" else "DEFAULT"
        self.workers = [
            TaskWorker.options(num_cpus=w.cpus_per_worker, num_gpus=w.gpus_per_worker, scheduling_strategy=strategy).remote(
                campaign.model_dump(mode="json"), i, w.cpus_per_worker, (slowdown or {}).get(i, 1.0)
            )
            for i in range(self.worker_count)
        ]
        self.meta_learner = None
        memory = campaign.memory or str(run.root / "memory")
        # The central actors live on the driver's node: a worker node that dies does not
        # take them along, and their checkpoint and memory files land on the driver's disk.
        self.home = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.memory_writer = MemoryWriter.options(num_cpus=0, scheduling_strategy=self.home).remote(memory)
        self.pending_records: list = []
        self.meta_learner_restarts = 0
        self.suspects: dict[int, Any] = {}  # worker index -> ping ref, for workers that lost a task
        self._last_worker = 0
        self.counts: dict[str, int] = defaultdict(int)
        self.tasks_by_pid: dict[int, int] = defaultdict(int)
        self.process_info: dict[int, dict[str, Any]] = {}  # every worker process seen, restarts included

    def close(self) -> None:
        for actor in self.workers + [self.memory_writer] + ([self.meta_learner] if self.meta_learner else []):
            ray.kill(actor)

    def _run_queue(self, queue: deque, submit: Callable[[Any, int], Any], what: str) -> Iterator[tuple[Any, Any]]:
        """Feed jobs to the least-loaded healthy worker, at most two in flight per worker
        (one running, one queued behind it to hide the round trip), and yield (job, result
        ref) as each finishes. The caller may put retries back into `queue` while iterating.

        A worker whose task was lost with its process is suspect: it gets no new jobs until
        it answers a ping (Ray restarted it), so a worker that cannot come back (its node is
        gone and nothing else fits it) never swallows the retries."""
        in_flight: dict[Any, tuple[Any, int]] = {}
        load = [0] * len(self.workers)

        def fill() -> None:
            while queue:
                healthy = [w for w in range(len(load)) if w not in self.suspects]
                if not healthy:
                    return
                w = min(healthy, key=load.__getitem__)
                if load[w] >= 2:
                    return
                job = queue.popleft()
                in_flight[submit(job, w)] = (job, w)
                load[w] += 1

        fill()
        # Pushed back whenever a task finishes or a worker comes back: a failed ping alone
        # is no progress, so a worker that can never return cannot keep this loop alive.
        deadline = time.time() + WAIT_TIMEOUT_S
        while in_flight or (queue and self.suspects):
            pings = {ref: w for w, ref in self.suspects.items()}
            ready = []
            if time.time() < deadline:  # (a failed ping is always ready: check the clock too)
                ready, _ = ray.wait(list(in_flight) + list(pings), num_returns=1, timeout=deadline - time.time())
            if not ready:
                raise TimeoutError(
                    f"{what}: no task finished within {WAIT_TIMEOUT_S:.0f} s and no lost worker came back; "
                    "are the workers' resources available? (see `ray status`)"
                )
            if ready[0] in pings:
                w = pings[ready[0]]
                try:
                    ray.get(ready[0])
                    del self.suspects[w]  # restarted: back in service
                    deadline = time.time() + WAIT_TIMEOUT_S
                    log.info("worker %d is back", w)
                except RayActorError:
                    # still restarting, or cannot be placed again (its node is gone): ask again
                    self.suspects[w] = self.workers[w].info.remote()
                    time.sleep(0.5)
                fill()
                continue
            deadline = time.time() + WAIT_TIMEOUT_S
            job, w = in_flight.pop(ready[0])
            load[w] -= 1
            self._last_worker = w
            yield job, ready[0]
            fill()

    def _suspect_last_worker(self) -> None:
        """Called when the job just yielded by `_run_queue` was lost with its worker."""
        w = self._last_worker
        if w not in self.suspects:
            self.suspects[w] = self.workers[w].info.remote()

    # -- meta-training -------------------------------------------------------------------

    def run(self, checkpoint, started: float) -> dict[str, Any]:
        """Meta-train (from `checkpoint` if given), meta-test, write the report."""
        from metanas.platform.report import finish_report

        meta_train, curve = self.meta_train(checkpoint)
        meta_test = self._meta_test()
        return finish_report(self.run_dir, self.campaign, meta_train, meta_test, curve, time.time() - started)

    def _wait_for_workers(self) -> list[dict[str, Any]]:
        """Wait until every worker has started and built its task pools; name the resources
        when the cluster cannot place them instead of hanging."""
        w = self.campaign.workers
        try:
            return ray.get([actor.info.remote() for actor in self.workers], timeout=w.start_timeout_s)
        except GetTimeoutError:
            raise TimeoutError(
                f"the {self.worker_count} TaskWorkers did not start within workers.start_timeout_s={w.start_timeout_s:g} s: "
                + missing_resources(self.worker_count, w.cpus_per_worker, w.gpus_per_worker, ray.cluster_resources())
            ) from None

    def meta_train_warmup(self) -> None:
        """Benchmarks call this first, so that starting the actors (new processes importing
        torch) is not counted as throughput."""
        self._start_actors(None)

    def _start_actors(self, checkpoint) -> dict[str, Any]:
        """Start the MetaLearner (from `checkpoint`, or from a fresh iteration-0 checkpoint)
        and wait until it and every worker are up; return the meta-training state to go on
        from. Idempotent."""
        c = self.campaign
        mt = c.meta_train
        if checkpoint is not None:
            state = checkpoint.state
        else:
            state = {"iteration": 0, "curve": [], "counts": {}, "workers": [], "wall_s": 0.0}
        if self.meta_learner is not None:
            return state
        if checkpoint is None:
            # Iteration 0 is a checkpoint like any other: the MetaLearner starts from it.
            tensors, state_path = self.run_dir.checkpoint_paths(0)
            save_tensors(tensors, {f"{name}/{k}": v for name, p in _initial_params(c).items() for k, v in p.items()})
            atomic_write_json(state_path, state)
        async_updates = None
        if mt.updates == "async":
            async_updates = {"meta_batch": mt.meta_batch, "max_staleness": mt.max_staleness, "stale_policy": mt.stale_policy}
        self.meta_learner = MetaLearner.options(num_cpus=0, scheduling_strategy=self.home).remote(
            asdict(self._schedule()), str(self.run_dir.root), async_updates
        )
        self.worker_info = self._wait_for_workers()
        # The MetaLearner and the memory are up too (a memory that cannot be opened fails now).
        ray.get([self.meta_learner.get_incarnation.remote(), self.memory_writer.count.remote()], timeout=WAIT_TIMEOUT_S)
        return state

    def _schedule(self) -> MetaSchedule:
        mt = self.campaign.meta_train
        return MetaSchedule(mt.iterations, mt.beta_w, mt.beta_alpha, mt.beta_final_fraction, mt.alpha_warmup)

    def meta_train(self, checkpoint=None) -> tuple[dict[str, Any], list[dict[str, float]]]:
        mt = self.campaign.meta_train
        schedule = self._schedule()
        if checkpoint is not None:
            log.info("resuming from the checkpoint at iteration %d", checkpoint.iteration)
        state = self._start_actors(checkpoint)
        resumed_from = state["iteration"]
        self.session_start = time.time()
        self.wall_before = state["wall_s"]  # earlier sessions' time (a resumed campaign)
        bar = _progress(mt.iterations, state["iteration"], "meta-train", self.progress)
        loop = self._meta_train_async if mt.updates == "async" else self._meta_train_sync
        while True:
            self._load_state(state)
            try:
                state = loop(state, schedule, bar)
                break
            except MetaLearnerRestarted as err:
                # Both go back to the newest complete checkpoint: its counts, curve and
                # records match the parameters the MetaLearner reloads. A restarted one has
                # reloaded it already, but may have applied updates since (a restart seen
                # only at the next checkpoint), so it reloads again.
                self.meta_learner_restarts += 1
                if self.meta_learner_restarts > MAX_REWINDS:
                    raise RuntimeError(f"meta-training rewound {MAX_REWINDS} times ({err}); giving up") from err
                ray.get(self.meta_learner.reload.remote(), timeout=WAIT_TIMEOUT_S)
                state = self.run_dir.latest_checkpoint().state
                log.warning("%s; re-running from iteration %d", err, state["iteration"])
                bar.reset(total=mt.iterations)
                bar.update(state["iteration"])
        bar.close()
        summary = {
            "iterations": mt.iterations,
            "updates": mt.updates,
            "tasks_planned": mt.iterations * mt.meta_batch * len(LEARNERS),
            "tasks_completed": self.counts["completed"],
            "tasks_failed": self.counts["failed"],
            "tasks_retried": self.counts["retried"],
            "updates_applied": self.counts["applied"],
            # async only: updates more than max_staleness meta-steps old (down-weighted or dropped)
            "stale_updates": self.counts["stale"],
            "stale_updates_dropped": self.counts["dropped"],
            # how many meta-steps old the async updates were (0 for sync), to tune max_staleness
            "staleness_mean": round(self.counts["staleness_total"] / max(1, self.counts["completed"]), 3),
            "staleness_max": self.counts["staleness_max"],
            "meta_learner_restarts": self.meta_learner_restarts,
            "resumed_from_iteration": resumed_from,
            "wall_s": round(state["wall_s"], 2),
            "inner_loop_s": round(self.counts["inner_ms"] / 1000.0, 2),
            "task_s": round(self.counts["task_ms"] / 1000.0, 2),
            "workers": state["workers"],
        }
        return summary, state["curve"]

    def _load_state(self, state: dict[str, Any]) -> None:
        """Take the driver's bookkeeping from a checkpoint's state (or the fresh one)."""
        self.counts = defaultdict(int, state["counts"])
        self.tasks_by_pid = defaultdict(int, {w["pid"]: w["tasks"] for w in state["workers"]})
        self.pending_records = []
        self.incarnation = ray.get(self.meta_learner.get_incarnation.remote(), timeout=WAIT_TIMEOUT_S)

    def _meta_train_sync(self, state: dict[str, Any], schedule: MetaSchedule, bar) -> dict[str, Any]:
        """One iteration at a time: its meta_batch tasks per learner, then one Reptile step."""
        mt = self.campaign.meta_train
        curve = list(state["curve"])
        for iteration in range(state["iteration"], mt.iterations):
            row = self._meta_train_iteration(iteration, schedule.alpha_active(iteration))
            curve.append(row)
            bar.set_postfix(acc=f"{row['metanas']:.3f}", fixed=f"{row['reptile_fixed']:.3f}")
            bar.update(1)
            done = iteration + 1
            if done % mt.checkpoint_every == 0 or done == mt.iterations:
                state = self._checkpoint(done, {"curve": curve}, state)
        return state

    def _meta_train_iteration(self, iteration: int, update_alpha: bool) -> dict[str, float]:
        mt = self.campaign.meta_train
        theta_refs = {name: self.meta_learner.get.remote(name) for name in LEARNERS}
        # Longest jobs first (the supernet's), so the last jobs of the iteration are short.
        queue = deque((name, iteration, slot) for name in LEARNERS for slot in range(mt.meta_batch))
        delta_refs: dict[Any, Any] = {}
        attempts: dict[tuple, int] = defaultdict(int)

        def submit(job: tuple[str, int, int], w: int):
            name, _, slot = job
            delta_ref, out_ref = self.workers[w].meta_train.remote(name, theta_refs[name], iteration, slot, update_alpha)
            delta_refs[out_ref] = delta_ref
            return out_ref

        deltas: dict[str, list] = defaultdict(list)
        accs: dict[str, list[float]] = defaultdict(list)
        for job, ref in self._run_queue(queue, submit, f"meta-train iteration {iteration}"):
            _, out = self._task_result(job, ref, attempts, queue)
            if out is not None:
                deltas[job[0]].append(delta_refs[ref])
                accs[job[0]].append(out["query_accuracy"])
        try:
            versions = ray.get(
                [self.meta_learner.apply.remote(name, iteration, *deltas[name]) for name in LEARNERS], timeout=WAIT_TIMEOUT_S
            )
        except ObjectLostError:
            # A node died after its task returned but before the step read the update. The
            # MetaLearner may have stepped one learner and not the other: back to the last
            # checkpoint, the same path as a MetaLearner crash (async mode just re-runs the task).
            raise MetaLearnerRestarted(f"an update of iteration {iteration} was lost with its node") from None
        if any(v != iteration + 1 for v in versions):
            raise MetaLearnerRestarted()
        self.counts["applied"] += sum(len(d) for d in deltas.values())
        return _curve_row(iteration, accs)

    def _meta_train_async(self, state: dict[str, Any], schedule: MetaSchedule, bar) -> dict[str, Any]:
        """Every task of the campaign streams through the workers with no barrier; each
        finished task's update goes straight to the MetaLearner, which steps once per
        meta_batch updates. Tasks are numbered in the sync order (iteration, learner,
        slot), so a task has the same episode in both modes, and the checkpoint keeps the
        set of finished task numbers."""
        mt = self.campaign.meta_train
        per_iteration = mt.meta_batch * len(LEARNERS)
        total = mt.iterations * per_iteration
        finished = KeySet.from_json(state.get("finished"))
        open_accs = {int(k): v for k, v in state.get("open_accs", {}).items()}
        curve = list(state["curve"])
        queue = deque(finished.missing(total))
        attempts: dict[int, int] = defaultdict(int)
        delta_refs: dict[Any, Any] = {}

        def job(number: int) -> tuple[str, int, int]:
            iteration, rest = divmod(number, per_iteration)
            learner, slot = divmod(rest, mt.meta_batch)
            return LEARNERS[learner], iteration, slot

        def submit(number: int, w: int):
            name, iteration, slot = job(number)
            # The parameters are read when the task is handed out; their version travels
            # with the task so the MetaLearner can measure its staleness.
            version_ref, theta_ref = self.meta_learner.snapshot.remote(name)
            delta_ref, out_ref = self.workers[w].meta_train.remote(
                name, theta_ref, iteration, slot, schedule.alpha_active(iteration), version_ref
            )
            delta_refs[out_ref] = delta_ref
            return out_ref

        next_checkpoint = (len(finished) // per_iteration // mt.checkpoint_every + 1) * mt.checkpoint_every
        for number, ref in self._run_queue(queue, submit, "meta-train"):
            name, iteration, slot = job(number)
            done, out = self._task_result(number, ref, attempts, queue)
            delta_ref = delta_refs.pop(ref)
            if out is not None and not self._submit_update(name, iteration * mt.meta_batch + slot, out, delta_ref):
                self.counts["completed"] -= 1  # its update was lost with its node: run it again
                self.counts["retried"] += 1
                queue.appendleft(number)
                continue
            if not done:
                continue
            finished.add(number)
            if out is not None:
                open_accs.setdefault(iteration, {}).setdefault(name, []).append(out["query_accuracy"])
            first = iteration * per_iteration
            if all(n in finished for n in range(first, first + per_iteration)):
                row = _curve_row(iteration, open_accs.pop(iteration, {}))
                curve.append(row)
                curve.sort(key=lambda r: r["iteration"])
                bar.set_postfix(acc=f"{row['metanas']:.3f}", fixed=f"{row['reptile_fixed']:.3f}")
            progress = len(finished) // per_iteration
            bar.update(progress - bar.n)
            if progress >= next_checkpoint or len(finished) == total:
                if len(finished) == total:
                    ray.get(self.meta_learner.flush.remote(), timeout=WAIT_TIMEOUT_S)
                extra = {"curve": curve, "finished": finished.to_json(), "open_accs": {str(k): v for k, v in open_accs.items()}}
                state = self._checkpoint(progress, extra, state)
                next_checkpoint = (progress // mt.checkpoint_every + 1) * mt.checkpoint_every
        return state

    def _submit_update(self, learner: str, key: int, out: dict[str, Any], delta_ref) -> bool:
        """Hand one task's update to the async MetaLearner; False if the update was lost
        with its node before the MetaLearner could read it."""
        try:
            result = ray.get(
                self.meta_learner.submit.remote(learner, key, out["base_version"], delta_ref, self.incarnation), timeout=WAIT_TIMEOUT_S
            )
        except ObjectLostError:
            return False
        if result["incarnation"] != self.incarnation:
            raise MetaLearnerRestarted()
        outcome = result["outcome"]
        if outcome != "duplicate":
            self.counts["staleness_total"] += result["staleness"]
            self.counts["staleness_max"] = max(self.counts["staleness_max"], result["staleness"])
        self.counts["applied"] += outcome in ("applied", "downweighted")
        self.counts["stale"] += outcome in ("downweighted", "dropped")
        self.counts["dropped"] += outcome == "dropped"
        self.counts["duplicate"] += outcome == "duplicate"
        return True

    def _task_result(self, job, ref, attempts: dict, queue: deque) -> tuple[bool, dict[str, Any] | None]:
        """(done, outcome) of a meta-train task `_run_queue` yielded: a task lost with its
        worker is re-queued (not done) until it runs out of retries; one that raised (its
        loss diverged) is done and failed, with no outcome."""
        mt = self.campaign.meta_train
        try:
            out = ray.get(ref)
        except RayActorError as err:
            attempts[job] += 1
            self._suspect_last_worker()
            if attempts[job] > mt.task_retries:
                log.error("task %s failed after %d retries: %s", job, mt.task_retries, err)
                self.counts["failed"] += 1
                return True, None
            log.warning("a worker died during task %s; retrying", job)
            self.counts["retried"] += 1
            queue.appendleft(job)  # next: in async mode the queue holds the whole campaign
            return False, None
        except RayTaskError as err:
            log.error("task %s failed: %s", job, str(err).splitlines()[0])
            self.counts["failed"] += 1
            return True, None
        self.counts["completed"] += 1
        self.counts["inner_ms"] += int(out["seconds"] * 1000)
        self.counts["task_ms"] += int(out["task_seconds"] * 1000)
        self.tasks_by_pid[out["pid"]] += 1
        self.process_info[out["pid"]] = {k: out[k] for k in ("worker_id", "node_id", "pid", "device")}
        if out["genotype"] is not None:
            self.pending_records.append(self._task_record(out))
        return True, out

    def _task_record(self, out: dict[str, Any]):
        """One memory record per finished meta-train task search (the supernet's)."""
        from metanas.memory.embedders import support_embedder_name
        from metanas.memory.records import TaskRecord

        c = self.campaign
        space = c.space.cell_space()
        task = f"{c.name}-seed{c.seed}/meta_train/{out['iteration']}/{out['slot']}"
        config = space.genotype_to_config(tuple(out["genotype"]))
        score = out["query_accuracy_after"]
        return TaskRecord(
            key=task,
            task_id=task,
            family=c.data.source,
            embedder=support_embedder_name(space),
            embedding=np.asarray(out["embedding"], dtype=np.float32),
            space_signature=space.search_space.signature,
            best_config=config,
            best_score=score,
            trials=[{"config": config, "score": score, "budget": float(c.meta_train.inner.steps)}],
            searcher="darts",
            campaign_id=c.name,
            created_at=time.time(),
        )

    def _checkpoint(self, done: int, progress: dict[str, Any], state: dict) -> dict:
        """Save the meta-parameters, then the driver's state (written last: its presence marks
        a complete checkpoint). `progress` holds the loop's own state (curve, finished tasks)."""
        tensors, state_path = self.run_dir.checkpoint_paths(done)
        saved = ray.get(self.meta_learner.save.remote(str(tensors), self.incarnation), timeout=WAIT_TIMEOUT_S)
        if saved["incarnation"] != self.incarnation:
            raise MetaLearnerRestarted()  # it saved what it reloaded, not what we counted
        # Records of the tasks since the last checkpoint; after a crash those tasks re-run
        # and re-append under the same keys, which the store ignores.
        ray.get(self.memory_writer.append.remote(self.pending_records), timeout=WAIT_TIMEOUT_S)
        self.pending_records = []
        # Worker processes of earlier (killed) driver sessions keep their entries; ours,
        # including processes Ray restarted, are refreshed.
        ours = {info["pid"]: info for info in self.worker_info} | self.process_info
        workers = [w for w in state["workers"] if w["pid"] not in ours]
        workers += [{**info, "tasks": self.tasks_by_pid.get(pid, 0)} for pid, info in ours.items()]
        new_state = {
            "iteration": done,
            **progress,
            "counts": dict(self.counts),
            "workers": workers,
            "wall_s": self.wall_before + (time.time() - self.session_start),
            "meta_learner": {"versions": saved["versions"], "streams": saved["streams"]},
        }
        atomic_write_json(state_path, new_state)
        return new_state

    # -- meta-test -----------------------------------------------------------------------

    def _meta_test(self) -> dict[str, Any]:
        from metanas.platform.report import summarize_meta_test

        c = self.campaign
        refs = {name: self.meta_learner.get.remote(name) for name in LEARNERS}
        alpha = ray.get(self.meta_learner.alpha.remote("metanas"), timeout=WAIT_TIMEOUT_S)
        meta_genotype = c.space.cell_space().derive_genotype(alpha)
        queue = deque(range(c.meta_test.tasks))
        attempts: dict[int, int] = defaultdict(int)

        def submit(index: int, w: int):
            return self.workers[w].meta_test.remote(index, refs["metanas"], refs["reptile_fixed"])

        results = []
        bar = _progress(c.meta_test.tasks, 0, "meta-test", self.progress)
        for index, ref in self._run_queue(queue, submit, "meta-test"):
            try:
                results.append(ray.get(ref))
            except RayActorError:
                attempts[index] += 1
                if attempts[index] > c.meta_train.task_retries:
                    raise
                log.warning("a worker died during meta-test task %d; retrying", index)
                queue.appendleft(index)
                self._suspect_last_worker()
                continue
            bar.update(1)
        bar.close()
        results.sort(key=lambda r: r["index"])
        return summarize_meta_test(c, results, meta_genotype)
