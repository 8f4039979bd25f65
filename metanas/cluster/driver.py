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
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from metanas.cluster.actors import MemoryWriter, MetaLearner, TaskWorker
from metanas.cluster.connect import connect
from metanas.platform.checkpoint import atomic_write_json, save_tensors
from metanas.platform.config import Campaign
from metanas.platform.adaptation import ModelSpec, get_params
from metanas.platform.reptile import MetaSchedule
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
    """The MetaLearner came back from a crash holding an older version of the parameters."""

    def __init__(self, version: int) -> None:
        super().__init__(f"the MetaLearner restarted from its checkpoint at iteration {version}")
        self.version = version


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
    def __init__(self, campaign: Campaign, run, address: str | None, progress: bool) -> None:
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
                campaign.model_dump(mode="json"), i, w.cpus_per_worker
            )
            for i in range(self.worker_count)
        ]
        self.meta_learner = None
        memory = campaign.memory or str(run.root / "memory")
        self.memory_writer = MemoryWriter.options(num_cpus=0).remote(memory)  # light: fits on any node
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
        ref) as each finishes. The caller may append retries to `queue` while iterating.

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
        while in_flight or (queue and self.suspects):
            pings = {ref: w for w, ref in self.suspects.items()}
            ready, _ = ray.wait(list(in_flight) + list(pings), num_returns=1, timeout=WAIT_TIMEOUT_S)
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
                    log.info("worker %d is back", w)
                except RayActorError:
                    self.suspects[w] = self.workers[w].info.remote()  # still restarting: ask again
                    time.sleep(0.5)
                fill()
                continue
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
        """Benchmarks call this first, so that worker start-up is not counted as throughput."""
        self._wait_for_workers()

    def meta_train(self, checkpoint=None) -> tuple[dict[str, Any], list[dict[str, float]]]:
        c = self.campaign
        mt = c.meta_train
        schedule = MetaSchedule(mt.iterations, mt.beta_w, mt.beta_alpha, mt.beta_final_fraction, mt.alpha_warmup)
        fresh: dict[str, Any] = {"iteration": 0, "curve": [], "counts": {}, "workers": [], "wall_s": 0.0}
        state = fresh
        if checkpoint is not None:
            state = checkpoint.state
            log.info("resuming from the checkpoint at iteration %d", checkpoint.iteration)
        else:
            # Iteration 0 is a checkpoint like any other: the MetaLearner starts from it.
            tensors, state_path = self.run_dir.checkpoint_paths(0)
            save_tensors(tensors, {f"{name}/{k}": v for name, p in _initial_params(c).items() for k, v in p.items()})
            atomic_write_json(state_path, fresh)
        resumed_from = state["iteration"]
        self.counts.update(state["counts"])
        self.wall_before = state["wall_s"]
        self.meta_learner = MetaLearner.options(num_cpus=0).remote(asdict(schedule), str(self.run_dir.root))
        self.worker_info = self._wait_for_workers()
        session_start = time.time()
        curve = list(state["curve"])
        bar = _progress(mt.iterations, state["iteration"], "meta-train", self.progress)
        iteration = state["iteration"]
        while iteration < mt.iterations:
            try:
                row = self._meta_train_iteration(iteration, schedule.alpha_active(iteration))
            except MetaLearnerRestarted as err:
                # Back to the checkpoint the restarted MetaLearner loaded: its counts, curve
                # and records are the ones that match the parameters it holds.
                log.warning("%s; re-running from iteration %d", err, err.version)
                checkpoint = self.run_dir.latest_checkpoint()
                state = checkpoint.state if checkpoint is not None and checkpoint.iteration == err.version else fresh
                self.counts = defaultdict(int, state["counts"])
                self.tasks_by_pid = defaultdict(int, {w["pid"]: w["tasks"] for w in state["workers"]})
                self.meta_learner_restarts += 1
                self.pending_records = []
                curve = list(state["curve"])
                iteration = state["iteration"]
                bar.reset(total=mt.iterations)
                bar.update(iteration)
                continue
            curve.append(row)
            bar.set_postfix(acc=f"{row['metanas']:.3f}", fixed=f"{row['reptile_fixed']:.3f}")
            bar.update(1)
            iteration += 1
            if iteration % mt.checkpoint_every == 0 or iteration == mt.iterations:
                state = self._checkpoint(iteration, curve, state, session_start)
        bar.close()
        summary = {
            "iterations": mt.iterations,
            "tasks_planned": mt.iterations * mt.meta_batch * len(LEARNERS),
            "tasks_completed": self.counts["completed"],
            "tasks_failed": self.counts["failed"],
            "tasks_retried": self.counts["retried"],
            "updates_applied": self.counts["applied"],
            "stale_updates": 0,  # synchronous meta-updates: every update is for the current version
            "meta_learner_restarts": self.meta_learner_restarts,
            "resumed_from_iteration": resumed_from,
            "wall_s": round(state["wall_s"], 2),
            "inner_loop_s": round(self.counts["inner_ms"] / 1000.0, 2),
            "workers": state["workers"],
        }
        return summary, curve

    def _meta_train_iteration(self, iteration: int, update_alpha: bool) -> dict[str, float]:
        mt = self.campaign.meta_train
        theta_refs = {name: self.meta_learner.get.remote(name) for name in LEARNERS}
        # Longest jobs first (the supernet's), so the last jobs of the iteration are short.
        queue = deque((name, slot) for name in LEARNERS for slot in range(mt.meta_batch))
        delta_refs: dict[Any, Any] = {}
        attempts: dict[tuple[str, int], int] = defaultdict(int)

        def submit(job: tuple[str, int], w: int):
            name, slot = job
            delta_ref, out_ref = self.workers[w].meta_train.remote(name, theta_refs[name], iteration, slot, update_alpha)
            delta_refs[out_ref] = delta_ref
            return out_ref

        deltas: dict[str, list] = defaultdict(list)
        accs: dict[str, list[float]] = defaultdict(list)
        for (name, slot), ref in self._run_queue(queue, submit, f"meta-train iteration {iteration}"):
            try:
                out = ray.get(ref)
            except RayActorError as err:
                attempts[(name, slot)] += 1
                if attempts[(name, slot)] > mt.task_retries:
                    log.error("task %s/%d/%d failed after %d retries: %s", name, iteration, slot, mt.task_retries, err)
                    self.counts["failed"] += 1
                else:
                    log.warning("a worker died during task %s/%d/%d; retrying", name, iteration, slot)
                    self.counts["retried"] += 1
                    queue.append((name, slot))
                self._suspect_last_worker()
                continue
            except RayTaskError as err:
                log.error("task %s/%d/%d failed: %s", name, iteration, slot, str(err).splitlines()[0])
                self.counts["failed"] += 1
                continue
            self.counts["completed"] += 1
            self.counts["inner_ms"] += int(out["seconds"] * 1000)
            self.tasks_by_pid[out["pid"]] += 1
            self.process_info[out["pid"]] = {k: out[k] for k in ("worker_id", "node_id", "pid", "device")}
            deltas[name].append(delta_refs[ref])
            accs[name].append(out["query_accuracy"])
            if out["genotype"] is not None:
                self.pending_records.append(self._task_record(out))
        versions = ray.get(
            [self.meta_learner.apply.remote(name, iteration, *deltas[name]) for name in LEARNERS], timeout=WAIT_TIMEOUT_S
        )
        if any(v != iteration + 1 for v in versions):
            raise MetaLearnerRestarted(min(versions))
        self.counts["applied"] += sum(len(d) for d in deltas.values())
        row: dict[str, float] = {"iteration": iteration}
        for name in LEARNERS:
            row[name] = sum(accs[name]) / len(accs[name]) if accs[name] else float("nan")
        return row

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

    def _checkpoint(self, done: int, curve: list, state: dict, session_start: float) -> dict:
        """Save the meta-parameters, then the driver's state (written last: its presence marks
        a complete checkpoint)."""
        tensors, state_path = self.run_dir.checkpoint_paths(done)
        ray.get(self.meta_learner.save.remote(str(tensors)), timeout=WAIT_TIMEOUT_S)
        # Records of the iterations since the last checkpoint; after a crash those
        # iterations re-run and re-append under the same keys, which the store ignores.
        ray.get(self.memory_writer.append.remote(self.pending_records), timeout=WAIT_TIMEOUT_S)
        self.pending_records = []
        # Worker processes of earlier (killed) driver sessions keep their entries; ours,
        # including processes Ray restarted, are refreshed.
        ours = {info["pid"]: info for info in self.worker_info} | self.process_info
        workers = [w for w in state["workers"] if w["pid"] not in ours]
        workers += [{**info, "tasks": self.tasks_by_pid.get(pid, 0)} for pid, info in ours.items()]
        new_state = {
            "iteration": done,
            "curve": curve,
            "counts": dict(self.counts),
            "workers": workers,
            "wall_s": self.wall_before + (time.time() - session_start),
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
                queue.append(index)
                self._suspect_last_worker()
                continue
            bar.update(1)
        bar.close()
        results.sort(key=lambda r: r["index"])
        return summarize_meta_test(c, results, meta_genotype)
