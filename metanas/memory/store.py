"""The task memory: Parquet parts (the source of truth) plus derived FAISS indexes.

Layout of a store directory:
    parts/part-<seq>-<id>.parquet   records, each part written atomically (tmp, fsync, rename)
    index/<group>.faiss        one cosine index per (embedder, space signature) group
    index/manifest.json        which parts each persisted index covers
    quarantine/                parts that could not be read, set aside and reported

One writer per process (in campaigns, the MemoryWriter actor); readers see whole parts only.
Writers in several processes (two searches sharing a memory) never overwrite each other:
every part has a name of its own. Should two of them store the same key, the record of the
highest `revision` keeps it (a study's record stored again as it grows replaces the one
before), and among equal revisions the part that sorts first, for every reader. An index
that is missing, stale or unreadable is rebuilt from Parquet with a warning.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import logging
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from metanas._util.atomic import atomic_write_bytes, atomic_write_json
from metanas.memory.records import (
    ARROW_SCHEMA,
    NewerSchema,
    TaskRecord,
    record_from_row,
    records_to_table,
    upgrade,
)

log = logging.getLogger(__name__)

EXACT_THRESHOLD = 20_000  # vectors per group below which search is exact
RECALL_TARGET = 0.95  # recall@10 an approximate index is calibrated to
DEFAULT_NPROBE = 12  # (an index saved before calibration existed)
# One query at a time is the store's workload: OpenMP's thread start-up costs more than a
# single small search gains from it (measured: p50 1.2 ms -> see README at 1M records).
# An approximate index that must probe many lists (overlapping embeddings) is the
# exception: two threads split its lists (1M overlapping records, 64 lists: 0.52 -> 0.28 ms).
SEARCH_THREADS = 1
PARALLEL_FROM_NPROBE = 32
PERSIST_EVERY_APPEND = 100_000  # groups up to this size re-save their index on every append


class TaskMemory(Protocol):
    """What the product calls on a task memory: the warm start, `metanas.search`,
    `MemorySampler`, the callbacks and the campaigns (`MemoryStore` is the implementation;
    any other passes `metanas.testing.StoreContract`, which calls every method here)."""

    path: Path  # a directory the memory's derived files (e.g. the kept surrogate) may go in
    problems: list[str]  # what went wrong while loading (e.g. a corrupt part set aside)

    # (kept compact, one method to a line or two, as the summary it is)
    # fmt: off
    def append(self, records: Iterable[TaskRecord]) -> int: ...
    def nearest(self, embedding: Sequence[float], k: int, space_signature: str, embedder: str,
                family: str | None = None) -> list[tuple[TaskRecord, float]]: ...
    def records(self, space_signature: str | Sequence[str] | None = None, family: str | None = None,
                embedder: str | None = None, exclude_task: str | None = None,
                newest: int | None = None) -> list[TaskRecord]: ...
    def spaces(self, family: str | None = None,
               exclude_task: str | None = None) -> list[tuple[str, list | None, int]]: ...
    # fmt: on
    def get(self, key: str) -> TaskRecord: ...
    def keys(self) -> list[str]: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: str) -> bool: ...


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def calibrate_nprobe(
    index, vectors: np.ndarray, target: float, k: int = 10, queries: int = 200, seed: int = 0
) -> int:
    """The fewest lists an IVF index must probe for `target` mean recall@k against exact
    search, on queries near stored vectors (a new task resembles stored ones: that is when
    retrieval matters). Exact neighbours come from faiss.knn, blocked, with no second index."""
    import faiss

    rng = np.random.default_rng(seed)
    picks = rng.choice(len(vectors), size=min(queries, len(vectors)), replace=False)
    q = _normalise(
        vectors[picks] + 0.05 * rng.standard_normal((len(picks), vectors.shape[1])).astype(np.float32)
    )
    _, exact = faiss.knn(q, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    nlist = index.nlist
    for nprobe in sorted(
        {n for n in (4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512) if n < nlist} | {nlist}
    ):
        index.nprobe = nprobe
        _, got = index.search(q, k)
        recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(got.tolist(), exact.tolist())])
        if recall >= target:
            return nprobe
    return nlist


def _group_name(embedder: str, signature: str) -> str:
    return hashlib.sha256(f"{embedder}\0{signature}".encode()).hexdigest()[:16]


class _Group:
    """Rows of one (embedder, space signature) pair and their FAISS index."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.rows = np.zeros(0, dtype=np.int64)  # store rows, in index id order
        self.parts: list[str] = []  # parts holding this group's rows: the index's fingerprint
        self.index = None  # built on demand
        self.trained_on = 0  # group size an approximate index was trained at
        self.nprobe = 0  # lists an approximate index probes: calibrated for the recall target


def check_memory_dir(path: str | Path) -> None:
    """A one-line ValueError when `path` cannot be a memory (a file, or a folder of other
    things); reads nothing else, so callers check before any work."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"memory: {str(path)!r} is a file, not a memory directory")
    if path.is_dir() and not (path / "parts").is_dir() and any(path.iterdir()):
        raise ValueError(
            f"memory: {str(path)!r} is a directory with other things in it, not a memory "
            "(no parts/); name a new or empty directory"
        )


class MemoryStore:
    def __init__(
        self,
        path: str | Path,
        exact_threshold: int = EXACT_THRESHOLD,
        nprobe: int | None = None,
        recall_target: float = RECALL_TARGET,
    ) -> None:
        """`nprobe`: lists an approximate (IVF) index probes; None: the fewest that reach
        `recall_target` recall@10 against exact search, measured when the index is built."""
        self.path = Path(path)
        self.exact_threshold = exact_threshold
        self.nprobe = nprobe
        self.recall_target = recall_target
        self.problems: list[str] = []
        check_memory_dir(self.path)
        for sub in ("parts", "index"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        self._cleaned = False
        self._tables: list[pa.Table] = []
        self._table: pa.Table | None = None
        self._parts: list[str] = []
        self._part_rows: dict[str, range] = {}  # part -> its rows
        self._part_starts: list[int] = []  # each part's first row, in `_parts` order
        self._rows_by_key: dict[str, int] = {}
        self._revisions: dict[str, int] = {}  # key -> the revision its live record has
        self._replaced: set[int] = set()  # rows a higher revision of their key replaced
        self._just_replaced: list[int] = []  # those the last part added replaced
        self._rows = 0  # rows registered, in table order
        self._groups: dict[tuple[str, str], _Group] = {}
        self._load()

    # -- loading ---------------------------------------------------------------------

    def _load(self) -> None:
        for part in sorted((self.path / "parts").glob("part-*.parquet")):
            try:
                # (a part of an earlier schema version: read as this one)
                table = upgrade(pq.read_table(part))
            except FileNotFoundError:
                continue  # another reader set it aside a moment ago
            except NewerSchema as err:
                raise ValueError(f"memory part {part}: {err}") from None
            except (pa.ArrowException, OSError, ValueError, KeyError, TypeError) as err:
                # Corruption (Arrow's errors, and its OSErrors that carry no errno, e.g.
                # "Corrupt snappy compressed data") sets the part aside; an OS error with an
                # errno (permissions, too many open files) is not the data's fault: raised.
                if isinstance(err, OSError) and err.errno is not None:
                    raise OSError(err.errno, f"memory part {part} could not be read: {err.strerror}") from err
                self._quarantine(part, err)
                continue
            self._add_table(part.name, table)
        for group in self._groups.values():  # (an index holds live records only)
            group.rows = self._live(group.rows)
        self._load_indexes()

    def _quarantine(self, part: Path, err: Exception) -> None:
        target = self.path / "quarantine" / part.name
        target.parent.mkdir(exist_ok=True)
        try:
            shutil.move(str(part), target)
        except FileNotFoundError:  # another reader moved it first
            pass
        msg = f"corrupt part {part.name} moved to {target}: {err}"
        self.problems.append(msg)
        log.warning("memory %s: %s", self.path, msg)

    def _add_table(self, part_name: str, table: pa.Table) -> None:
        """Register a part's rows: key map and (embedder, space) groups, vectorised because
        opening a store of a million records must take seconds, not minutes. A key already
        registered (another writer's part stored it too) keeps its first record."""
        import pyarrow.compute as pc

        self._just_replaced = []
        keys = table.column("key").to_pylist()
        revisions = [r or 0 for r in table.column("revision").to_pylist()]
        keep: dict[str, int] = {}  # key -> the row of this table that stores it
        for i, (key, revision) in enumerate(zip(keys, revisions)):
            best = revisions[keep[key]] if key in keep else self._revisions.get(key, -1)
            if revision > best:
                keep[key] = i
        if len(keep) < len(keys):
            table = table.take(pa.array(sorted(keep.values()), type=pa.int64()))
            if not len(table):
                return
        start = self._rows
        self._rows += len(table)
        self._tables.append(table)
        self._table = None
        self._parts.append(part_name)
        self._part_rows[part_name] = range(start, self._rows)
        self._part_starts.append(start)
        keys = table.column("key").to_pylist()
        revisions = [r or 0 for r in table.column("revision").to_pylist()]
        replaced = []
        for row, (key, revision) in enumerate(zip(keys, revisions), start):
            if key in self._rows_by_key:
                replaced.append(self._rows_by_key[key])
            self._rows_by_key[key] = row
            self._revisions[key] = revision
        self._replaced.update(replaced)
        self._just_replaced = replaced
        pairs = pc.binary_join_element_wise(table.column("embedder"), table.column("space_signature"), "\0")
        encoded = pc.dictionary_encode(pairs).combine_chunks()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        dims = pc.list_value_length(table.column("embedding")).to_numpy(zero_copy_only=False)
        for code, pair in enumerate(encoded.dictionary.to_pylist()):
            rows = np.flatnonzero(codes == code)
            embedder, signature = pair.split("\0", 1)
            group = self._groups.setdefault((embedder, signature), _Group(int(dims[rows[0]])))
            group.rows = np.concatenate([group.rows, start + rows])
            group.parts.append(part_name)

    def _load_indexes(self) -> None:
        manifest_path = self.path / "index" / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        except (OSError, json.JSONDecodeError):
            manifest = {}
        import faiss

        for (embedder, signature), group in self._groups.items():
            name = _group_name(embedder, signature)
            entry = manifest.get(name)
            file = self.path / "index" / f"{name}.faiss"
            if not entry or entry.get("rows") != len(group.rows) or entry.get("parts") != group.parts:
                continue  # stale or never saved: built when first queried
            try:
                index = faiss.deserialize_index(np.frombuffer(file.read_bytes(), dtype=np.uint8))
                if index.ntotal != len(group.rows):
                    raise ValueError(f"index holds {index.ntotal} vectors, the group {len(group.rows)}")
                group.index = index
                group.trained_on = entry.get("trained_on", 0)
                group.nprobe = entry.get("nprobe", 0)
            except Exception as err:
                log.warning(
                    "memory %s: index %s unreadable (%s); rebuilding it from Parquet",
                    self.path,
                    file.name,
                    err,
                )

    # -- writing ---------------------------------------------------------------------

    def append(self, records: Iterable[TaskRecord]) -> int:
        """Append the records whose key is new; return how many were written. Writes one
        Parquet part atomically, then updates (and persists) the affected indexes."""
        fresh: list[TaskRecord] = []
        seen: set[str] = set()
        for r in records:
            if not isinstance(r, TaskRecord):
                raise TypeError(f"append takes TaskRecord objects, got {type(r).__name__}")
            if r.key in seen or self._revisions.get(r.key, -1) >= r.revision:
                continue  # (stored already, at this revision or a later one)
            seen.add(r.key)
            fresh.append(r)
        if not fresh:
            return 0
        self._check_dims(fresh)
        self._clean_stale_tmp()
        table = records_to_table(fresh)
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        # (a name no other writer can take, whatever it appends: a random id after the sequence)
        name = f"part-{len(self._parts) + len(self.problems):08d}-{uuid.uuid4().hex[:12]}.parquet"
        atomic_write_bytes(self.path / "parts" / name, buf.getvalue())
        self._add_table(name, table)
        self._remove_replaced_parts(self._just_replaced)
        touched = {(r.embedder, r.space_signature) for r in fresh}
        for key in touched:
            group = self._groups[key]
            if group.index is not None:
                mine = [i for i, r in enumerate(fresh) if (r.embedder, r.space_signature) == key]
                self._add_to_index(group, np.stack([fresh[i].embedding for i in mine]))
        # Small indexes are persisted at once; big ones (rewriting hundreds of MB per
        # append would dominate) when save_index() is called, else rebuilt on next open.
        self.save_index([k for k in touched if len(self._groups[k].rows) <= PERSIST_EVERY_APPEND])
        return len(fresh)

    def _remove_replaced_parts(self, replaced: Sequence[int]) -> None:
        """Delete the parts holding `replaced` rows whose every record a later revision
        replaced (a study's record stored after every trial keeps one part, not one per
        trial). A reader that listed a part before it went skips it; one that read it sees
        the earlier revision."""
        for name in {self._parts[bisect.bisect_right(self._part_starts, row) - 1] for row in replaced}:
            rows = self._part_rows.get(name)
            if rows and all(r in self._replaced for r in rows):
                (self.path / "parts" / name).unlink(missing_ok=True)
                del self._part_rows[name]

    def compact(self) -> int:
        """Rewrite the live records as one part of the current schema version and delete
        the parts they came from (replaced records and earlier versions go); returns the
        number of parts removed. Parts another writer adds meanwhile are kept."""
        old = [name for name in self._parts if (self.path / "parts" / name).exists()]
        table = self.live_table()
        if not old:
            return 0
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        # (sorts first: a reader between the two steps keeps these)
        name = f"part-{0:08d}-{uuid.uuid4().hex[:12]}.parquet"
        atomic_write_bytes(self.path / "parts" / name, buf.getvalue())
        for part in old:
            (self.path / "parts" / part).unlink(missing_ok=True)
        # (reload: one part now)
        self.__init__(self.path, self.exact_threshold, self.nprobe, self.recall_target)
        return len(old)

    def _check_dims(self, records: Sequence[TaskRecord]) -> None:
        """All embeddings of one (embedder, space) group share one dimension, checked before
        anything is written so a bad batch cannot poison the group."""
        dims: dict[tuple[str, str], int] = {k: g.dim for k, g in self._groups.items()}
        for r in records:
            dim = dims.setdefault((r.embedder, r.space_signature), len(r.embedding))
            if dim != len(r.embedding):
                raise ValueError(
                    f"record {r.key!r}: embedding has {len(r.embedding)} dims, its (embedder, space) group "
                    f"has {dim}"
                )

    def _clean_stale_tmp(self) -> None:
        """Remove temporary files a killed writer left behind. Only the (single) writer
        does this, and only for files older than a minute, so it never races a live write."""
        if self._cleaned:
            return
        self._cleaned = True
        cutoff = time.time() - 60
        for tmp in self.path.glob("*/.*.tmp"):
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink(missing_ok=True)

    def _add_to_index(self, group: _Group, vectors: np.ndarray) -> None:
        import faiss

        size = group.index.ntotal + len(vectors)
        exact = isinstance(group.index, faiss.IndexFlat)
        if (exact and size > self.exact_threshold) or (not exact and size > 4 * group.trained_on):
            # Crossed the threshold, or outgrew the lists it was trained with: rebuild lazily.
            group.index = None
            return
        group.index.add(_normalise(vectors))

    def save_index(self, groups: Iterable[tuple[str, str]] | None = None) -> None:
        """Persist the built indexes of `groups` (default: all) and the manifest, atomically."""
        import faiss

        manifest_path = self.path / "index" / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        except (OSError, json.JSONDecodeError):
            manifest = {}
        for key in self._groups if groups is None else groups:
            group = self._groups[key]
            if group.index is None:
                continue
            name = _group_name(*key)
            atomic_write_bytes(
                self.path / "index" / f"{name}.faiss", faiss.serialize_index(group.index).tobytes()
            )
            manifest[name] = {
                "embedder": key[0],
                "space_signature": key[1],
                "rows": len(group.rows),
                "parts": group.parts,
                "trained_on": group.trained_on,
                "nprobe": group.nprobe,
            }
        atomic_write_json(manifest_path, manifest)

    # -- reading ---------------------------------------------------------------------

    @property
    def table(self) -> pa.Table:
        if self._table is None:
            self._table = (
                pa.concat_tables(self._tables).combine_chunks()
                if self._tables
                else ARROW_SCHEMA.empty_table()
            )
            self._tables = [self._table]
        return self._table

    def __len__(self) -> int:
        return len(self._rows_by_key)

    def __contains__(self, key: str) -> bool:
        return key in self._rows_by_key

    def keys(self) -> list[str]:
        return list(self._rows_by_key)

    def _vectors(self, rows: np.ndarray, dim: int) -> np.ndarray:
        """Embeddings of `rows` as one (n, dim) float32 array, without per-row Python."""
        import pyarrow.compute as pc

        taken = self.table.column("embedding").take(pa.array(rows))
        return pc.list_flatten(taken).to_numpy(zero_copy_only=False).reshape(len(rows), dim)

    def _build_index(self, group: _Group) -> None:
        import faiss

        rows = group.rows
        vectors = _normalise(self._vectors(rows, group.dim))
        if len(rows) <= self.exact_threshold:
            index = faiss.IndexFlatIP(group.dim)
        else:
            # ~sqrt(n) lists, trained on a sample: building stays fast at millions of
            # records; how many lists a query probes is calibrated below. The vectors are
            # stored as 8-bit codes: scanning a list reads a quarter of the bytes (measured
            # at 1M overlapping 64-dim embeddings, recall@10 0.957 at 0.52 ms against the
            # float index's 0.969 at 1.44 ms, one thread, both at 64 lists).
            nlist = int(np.sqrt(len(rows)))
            index = faiss.IndexIVFScalarQuantizer(
                faiss.IndexFlatIP(group.dim),
                group.dim,
                nlist,
                faiss.ScalarQuantizer.QT_8bit,
                faiss.METRIC_INNER_PRODUCT,
            )
            index.train(vectors[np.random.default_rng(0).permutation(len(rows))[: 40 * nlist]])
            group.trained_on = len(rows)
        index.add(vectors)
        group.index = index
        if hasattr(index, "nprobe"):
            group.nprobe = calibrate_nprobe(index, vectors, self.recall_target)

    def build_index(self) -> None:
        """Build every missing index now and persist them (otherwise built on first query)."""
        for group in self._groups.values():
            if group.index is None:
                self._build_index(group)
        self.save_index()

    def _records_at(self, rows: Sequence[int]) -> list[TaskRecord]:
        if not rows:
            return []
        return [record_from_row(d) for d in self.table.take(pa.array(rows)).to_pylist()]

    def nearest(
        self,
        embedding: Sequence[float],
        k: int,
        space_signature: str,
        embedder: str,
        family: str | None = None,
    ) -> list[tuple[TaskRecord, float]]:
        """The k most similar records (cosine) of this space and embedder, best first."""
        if not isinstance(k, int) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        group = self._groups.get((embedder, space_signature))
        if group is None:
            return []
        query = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != group.dim:
            raise ValueError(
                f"query has {query.shape[1]} dims; embedder {embedder!r} records have {group.dim}"
            )
        if group.index is None:
            self._build_index(group)
        import faiss

        search_threads = SEARCH_THREADS
        if hasattr(group.index, "nprobe"):
            group.index.nprobe = self.nprobe or group.nprobe or DEFAULT_NPROBE
            if group.index.nprobe >= PARALLEL_FROM_NPROBE:
                group.index.parallel_mode = 1  # threads split one query's lists, not the queries
                search_threads = min(2, faiss.omp_get_max_threads())

        fetch = min(len(group.rows), k if family is None else 8 * k)
        while True:
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(search_threads)
            try:
                sims, ids = group.index.search(_normalise(query), fetch)
            finally:
                faiss.omp_set_num_threads(threads)
            hits = [
                (int(group.rows[i]), float(sim))
                for sim, i in zip(sims[0], ids[0])
                if i >= 0 and int(group.rows[i]) not in self._replaced
            ]
            if family is not None:
                families = (
                    self.table.column("family")
                    .take(pa.array([row for row, _ in hits], type=pa.int64()))
                    .to_pylist()
                )
                hits = [h for h, fam in zip(hits, families) if fam == family]
            # A rare family may need a wider net: widen until k hits or the whole group.
            if len(hits) >= k or fetch >= len(group.rows):
                break
            fetch = min(len(group.rows), fetch * 8)
        hits = hits[:k]
        records = self._records_at([row for row, _ in hits])
        return [(r, sim) for r, (_, sim) in zip(records, hits)]

    def _rows_where(self, space_signature=None, family=None, embedder=None, exclude_task=None) -> np.ndarray:
        """The rows matching every given filter (as `records` takes them), in Arrow (a
        million-record memory). `space_signature`: one signature or several."""
        import pyarrow.compute as pc

        t = self.table
        mask = None
        for column, value, keep in (
            ("space_signature", space_signature, True),
            ("family", family, True),
            ("embedder", embedder, True),
            ("task_id", exclude_task, False),
        ):
            if value is None or value == "":
                continue
            if isinstance(value, str):
                m = pc.equal(t.column(column), value) if keep else pc.not_equal(t.column(column), value)
            else:
                m = pc.is_in(t.column(column), value_set=pa.array(list(value), type=pa.string()))
            mask = m if mask is None else pc.and_(mask, m)
        rows = np.arange(len(t)) if mask is None else np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        return self._live(rows)

    def _live(self, rows: np.ndarray) -> np.ndarray:
        """`rows` without those a higher revision of their key replaced."""
        if not self._replaced:
            return rows
        return rows[~np.isin(rows, np.fromiter(self._replaced, dtype=np.int64, count=len(self._replaced)))]

    def spaces(
        self, family: str | None = None, exclude_task: str | None = None
    ) -> list[tuple[str, list | None, int]]:
        """The spaces the records (of `family`, not of `exclude_task`) were made in: each
        signature with its parameters (`SearchSpace.to_spec`; None for records written
        before the memory kept them) and how many records it has, most first."""
        import pyarrow.compute as pc

        from metanas.memory.records import param_spec_of

        rows = self._rows_where(family=family, exclude_task=exclude_task)
        taken = self.table.select(["space_signature", "space"]).take(pa.array(rows, type=pa.int64()))
        out = []
        for row in taken.group_by("space_signature").aggregate([("space_signature", "count")]).to_pylist():
            signature = row["space_signature"]
            known = pc.and_(
                pc.equal(taken.column("space_signature"), signature), pc.is_valid(taken.column("space"))
            )
            first = np.flatnonzero(known.to_numpy(zero_copy_only=False))[:1]
            spec = (
                [param_spec_of(p) for p in taken.column("space")[int(first[0])].as_py()]
                if len(first)
                else None
            )
            out.append((signature, spec, row["space_signature_count"]))
        return sorted(out, key=lambda x: -x[2])

    def records(
        self,
        space_signature: str | Sequence[str] | None = None,
        family: str | None = None,
        embedder: str | None = None,
        exclude_task: str | None = None,
        newest: int | None = None,
    ) -> list[TaskRecord]:
        """Every record matching all the given filters (and not of `exclude_task`), or only
        the `newest` of them, oldest first. `space_signature`: one or several. The filtering
        runs in Arrow, so only the records returned are ever turned into Python objects."""
        t = self.table
        rows = self._rows_where(space_signature, family, embedder, exclude_task)
        if newest is not None:  # oldest first, the last `newest` of them
            rows = rows[np.argsort(t.column("created_at").to_numpy()[rows], kind="stable")][-newest:]
        return self._records_at(rows.tolist())

    def get(self, key: str) -> TaskRecord:
        return self._records_at([self._rows_by_key[key]])[0]

    def live_table(self) -> pa.Table:
        """The records as one Arrow table (without those a later revision replaced)."""
        return (
            self.table
            if not self._replaced
            else self.table.take(pa.array(self._live(np.arange(len(self.table)))))
        )

    def indexes(self) -> list[dict]:
        """One FAISS index per (embedder, space): its records, whether it is exact or
        approximate (IVF), and how many lists an approximate one probes (0: exact, or not
        built yet)."""
        return [
            {
                "embedder": embedder,
                "space_signature": signature,
                "records": len(group.rows),
                "approximate": group.trained_on > 0,
                "nprobe": self.nprobe or group.nprobe,
            }
            for (embedder, signature), group in self._groups.items()
        ]

    def stats(self) -> dict:
        t = self.live_table()
        return {
            "records": len(self),
            "parts": len(self._parts),
            "families": dict(Counter(t.column("family").to_pylist())),
            "spaces": dict(Counter(t.column("space_signature").to_pylist())),
            "embedders": dict(Counter(t.column("embedder").to_pylist())),
            "problems": list(self.problems),
            # every part ever set aside, whichever process moved it
            "quarantined": sorted(p.name for p in (self.path / "quarantine").glob("*"))
            if (self.path / "quarantine").is_dir()
            else [],
        }

    def export(self, path: str | Path) -> None:
        buf = io.BytesIO()
        pq.write_table(self.live_table(), buf)
        atomic_write_bytes(path, buf.getvalue())
