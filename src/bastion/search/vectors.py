"""Vector indexes: nearest neighbours by inner product (cosine of unit vectors).

:class:`VectorIndex` is the small interface the rest of search uses, so pgvector or a
vector database can replace the in-process indexes: ``add(ids, vectors)`` (an id added
again replaces its vector), ``remove(ids)``, ``search(vector, k)`` → ``(ids, scores)``
best first, ``save(path)``, ``count``; :func:`read_index` loads any saved index. Ids are
int64 (the ids of :class:`~bastion.search.tables.SearchDocument` rows); every vector is
scaled to unit length on the way in, so scores are cosine similarities.

* :class:`ExactIndex` — numpy brute force, exact: the baseline, and good enough for a
  few tens of thousands of vectors.
* :class:`FaissIndex` — faiss-cpu: an exact flat inner-product index while small, an
  HNSW graph (``IndexHNSWFlat``) once it holds more than ``hnsw_threshold`` vectors,
  each inside an ``IndexIDMap2`` so it keeps our ids. HNSW cannot delete: removed ids
  are hidden from results and the graph is rebuilt from the kept vectors once they pass
  a tenth of it (and before saving).

Saved files (:func:`write_atomically`) are a small header (format, kind, dimension,
model, count, sha256 of the payload) then the payload; they are written to a temporary
file and renamed, so a crash never leaves half a file, and a file that does not match
its digest is :class:`~bastion.search.errors.VectorIndexCorrupt`.

:class:`VectorStore` keeps one index per tenant and vector space under a folder of the
data directory (``<root>/<tenant>/<space>.vec``), loads it on first use, keeps it in step
with a :class:`VectorSource` (the ``search_vectors`` table:
:class:`bastion.search.vector_rows.DatabaseVectors`) — a file that lags the source after
a crash is caught up incrementally, rows deleted since are removed — rebuilds it from the
source when the file is missing, corrupt, or made by another model version, and saves it
debounced (at most every ``save_every_s``, and on :meth:`VectorStore.flush`).

Everything here blocks (CPU and file work): async callers run it in a thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from bastion.search.errors import VectorIndexCorrupt

Ids = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float32]
Matrix = npt.NDArray[np.float32]

MAGIC = b"BSTNVEC1"
"""First bytes of every saved index."""
SUFFIX = ".vec"


def _ids(ids: npt.ArrayLike) -> Ids:
    out: Ids = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))
    return out


def _unit(vectors: npt.ArrayLike, dim: int) -> Matrix:
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise ValueError(f"vectors must have {dim} values, got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    out: Matrix = np.ascontiguousarray(matrix / np.maximum(norms, 1e-12), dtype=np.float32)
    return out


@runtime_checkable
class VectorIndex(Protocol):
    """Nearest neighbours of unit vectors by inner product, keyed by int64 ids."""

    dim: int
    model: str
    """The ``name@version`` of the model whose vectors these are ("" when unknown)."""

    @property
    def count(self) -> int:
        """How many ids the index holds."""
        ...

    def ids(self) -> Ids:
        """Every id the index holds, sorted."""
        ...

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Add vectors under ``ids``; an id already present gets the new vector."""
        ...

    def remove(self, ids: npt.ArrayLike) -> int:
        """Remove ``ids`` (unknown ones are ignored); how many were removed."""
        ...

    def search(self, vector: npt.ArrayLike, k: int) -> tuple[Ids, Scores]:
        """The ``k`` (or fewer) nearest ids to ``vector`` and their scores, best first."""
        ...

    def save(self, path: Path) -> None:
        """Write the index to ``path`` atomically."""
        ...


def write_atomically(path: Path, header: dict[str, Any], payload: bytes) -> None:
    """Write ``MAGIC``, the header (with the payload's digest) and the payload to a
    temporary file beside ``path``, flush it to disk, and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = json.dumps({**header, "sha256": hashlib.sha256(payload).hexdigest()}).encode()
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + struct.pack("<I", len(head)) + head)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_file(path: Path) -> tuple[dict[str, Any], bytes]:
    """The header and payload of a saved index; :class:`VectorIndexCorrupt` when it is
    not one or does not match its digest (FileNotFoundError when missing)."""
    data = path.read_bytes()
    try:
        if data[: len(MAGIC)] != MAGIC:
            raise ValueError("not a vector index file")
        (size,) = struct.unpack_from("<I", data, len(MAGIC))
        start = len(MAGIC) + 4
        header = json.loads(data[start : start + size])
        payload = data[start + size :]
        if not isinstance(header, dict):
            raise ValueError("bad header")
        if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
            raise ValueError("the payload does not match its digest")
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise VectorIndexCorrupt(f"{path.name}: {exc}") from exc
    return header, payload


class ExactIndex:
    """Brute-force inner product over every vector (numpy): exact, the baseline."""

    kind = "exact"

    def __init__(self, dim: int, *, model: str = "") -> None:
        self.dim = dim
        self.model = model
        self._ids: Ids = np.zeros(0, dtype=np.int64)
        self._vectors: Matrix = np.zeros((0, dim), dtype=np.float32)

    @property
    def count(self) -> int:
        return int(self._ids.size)

    def ids(self) -> Ids:
        return np.sort(self._ids)

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        new_ids, new = _ids(ids), _unit(vectors, self.dim)
        if new_ids.size != new.shape[0]:
            raise ValueError("ids and vectors differ in length")
        self.remove(new_ids)
        self._ids = np.concatenate([self._ids, new_ids])
        self._vectors = np.concatenate([self._vectors, new])

    def remove(self, ids: npt.ArrayLike) -> int:
        drop = np.isin(self._ids, _ids(ids))
        removed = int(drop.sum())
        if removed:
            self._ids, self._vectors = self._ids[~drop], self._vectors[~drop]
        return removed

    def search(self, vector: npt.ArrayLike, k: int) -> tuple[Ids, Scores]:
        if self.count == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores: Scores = self._vectors @ _unit(vector, self.dim)[0]
        k = min(k, self.count)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((self._ids[top], -scores[top]))]
        return self._ids[top], scores[top]

    def save(self, path: Path) -> None:
        header = {"kind": self.kind, "dim": self.dim, "model": self.model, "count": self.count}
        write_atomically(path, header, self._ids.tobytes() + self._vectors.tobytes())

    @classmethod
    def from_saved(cls, header: dict[str, Any], payload: bytes) -> ExactIndex:
        index = cls(int(header["dim"]), model=str(header.get("model", "")))
        n = int(header["count"])
        if len(payload) != n * 8 + n * index.dim * 4:
            raise VectorIndexCorrupt("the payload does not hold the vectors it announces")
        index._ids = np.frombuffer(payload[: n * 8], dtype=np.int64).copy()
        index._vectors = np.frombuffer(payload[n * 8 :], dtype=np.float32).reshape(n, -1).copy()
        return index


class FaissIndex:
    """faiss-cpu: exact flat inner product while small, HNSW beyond ``hnsw_threshold``."""

    kind = "faiss"

    def __init__(
        self,
        dim: int,
        *,
        model: str = "",
        hnsw_threshold: int = 20_000,
        hnsw_m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 256,
    ) -> None:
        import faiss

        self._faiss: Any = faiss
        self.dim = dim
        self.model = model
        self.hnsw_threshold = hnsw_threshold
        self._m = hnsw_m
        self._ef_construction = ef_construction
        self._ef_search = ef_search
        self._live: set[int] = set()
        self._hidden: set[int] = set()
        self._index: Any = self._new(hnsw=False)

    def _new(self, *, hnsw: bool) -> Any:
        faiss = self._faiss
        if hnsw:
            inner = faiss.IndexHNSWFlat(self.dim, self._m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = self._ef_construction
            inner.hnsw.efSearch = self._ef_search
        else:
            inner = faiss.IndexFlatIP(self.dim)
        return faiss.IndexIDMap2(inner)

    @property
    def is_hnsw(self) -> bool:
        """Whether the index is an HNSW graph (else an exact flat index)."""
        return isinstance(self._faiss.downcast_index(self._index.index), self._faiss.IndexHNSWFlat)

    @property
    def count(self) -> int:
        return len(self._live)

    def ids(self) -> Ids:
        return np.sort(np.fromiter(self._live, dtype=np.int64, count=len(self._live)))

    def _stored(self) -> tuple[Ids, Matrix]:
        """Every (id, vector) pair held, hidden ones included."""
        ids = self._faiss.vector_to_array(self._index.id_map).astype(np.int64)
        vectors = self._index.index.reconstruct_n(0, self._index.ntotal)
        return ids, np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)

    def _rebuild(self, extra_ids: Ids, extra: Matrix) -> None:
        ids, vectors = self._stored()
        keep = np.fromiter((int(i) in self._live for i in ids), dtype=bool, count=ids.size)
        ids = np.concatenate([ids[keep], extra_ids])
        vectors = np.concatenate([vectors[keep], extra])
        self._index = self._new(hnsw=ids.size > self.hnsw_threshold)
        self._hidden = set()
        if ids.size:
            self._index.add_with_ids(vectors, ids)

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        new_ids, new = _ids(ids), _unit(vectors, self.dim)
        if new_ids.size != new.shape[0]:
            raise ValueError("ids and vectors differ in length")
        if np.unique(new_ids).size != new_ids.size:
            raise ValueError("ids repeat")
        fresh = {int(i) for i in new_ids}
        if self.is_hnsw:
            if fresh & (self._live | self._hidden):  # HNSW cannot replace: rebuild
                self._live -= fresh
                self._rebuild(new_ids, new)
            else:
                self._index.add_with_ids(new, new_ids)
            self._live |= fresh
            return
        replaced = fresh & self._live
        if replaced:
            self._index.remove_ids(np.fromiter(replaced, dtype=np.int64))
        self._live |= fresh
        if self.count > self.hnsw_threshold:  # grown past the threshold: become HNSW
            self._live -= fresh
            self._rebuild(new_ids, new)
            self._live |= fresh
        elif new_ids.size:
            self._index.add_with_ids(new, new_ids)

    def remove(self, ids: npt.ArrayLike) -> int:
        gone = [int(i) for i in _ids(ids) if int(i) in self._live]
        if not gone:
            return 0
        self._live.difference_update(gone)
        if self.is_hnsw:
            self._hidden.update(gone)
            if len(self._hidden) * 10 > self._index.ntotal:
                self._rebuild(np.zeros(0, dtype=np.int64), np.zeros((0, self.dim), np.float32))
        else:
            self._index.remove_ids(np.asarray(gone, dtype=np.int64))
        return len(gone)

    def search(self, vector: npt.ArrayLike, k: int) -> tuple[Ids, Scores]:
        if self.count == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        query = _unit(vector, self.dim)
        wanted = min(k + len(self._hidden), self._index.ntotal)
        if self.is_hnsw:
            inner = self._faiss.downcast_index(self._index.index)
            inner.hnsw.efSearch = max(self._ef_search, wanted)
        scores, ids = self._index.search(query, wanted)
        keep = [
            j
            for j, i in enumerate(ids[0])
            if i >= 0 and (not self._hidden or int(i) not in self._hidden)
        ][:k]
        return ids[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)

    def save(self, path: Path) -> None:
        if self._hidden:
            self._rebuild(np.zeros(0, dtype=np.int64), np.zeros((0, self.dim), np.float32))
        payload = self._faiss.serialize_index(self._index).tobytes()
        header = {
            "kind": self.kind,
            "dim": self.dim,
            "model": self.model,
            "count": self.count,
            "hnsw_threshold": self.hnsw_threshold,
        }
        write_atomically(path, header, payload)

    @classmethod
    def from_saved(cls, header: dict[str, Any], payload: bytes) -> FaissIndex:
        index = cls(
            int(header["dim"]),
            model=str(header.get("model", "")),
            hnsw_threshold=int(header.get("hnsw_threshold", 20_000)),
        )
        try:
            loaded = index._faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
        except RuntimeError as exc:
            raise VectorIndexCorrupt(f"faiss cannot read the index: {exc}") from exc
        if loaded.d != index.dim or loaded.ntotal != int(header["count"]):
            raise VectorIndexCorrupt("the index does not hold the vectors it announces")
        index._index = loaded
        index._live = {int(i) for i in index._faiss.vector_to_array(loaded.id_map)}
        return index


def read_index(path: Path) -> VectorIndex:
    """Load a saved :class:`ExactIndex` or :class:`FaissIndex`.

    Raises FileNotFoundError when missing, :class:`VectorIndexCorrupt` when unreadable.
    """
    header, payload = read_file(path)
    try:
        kind = header["kind"]
        if kind == ExactIndex.kind:
            return ExactIndex.from_saved(header, payload)
        if kind == FaissIndex.kind:
            return FaissIndex.from_saved(header, payload)
    except (KeyError, TypeError, ValueError) as exc:
        raise VectorIndexCorrupt(f"{path.name}: {exc}") from exc
    raise VectorIndexCorrupt(f"{path.name}: unknown index kind {kind!r}")


@dataclass(frozen=True)
class VectorSpace:
    """A kind of vector a tenant's media has: its name, length and model."""

    name: str
    """``text`` (sentence embeddings) or ``image`` (image embeddings)."""
    dim: int
    model: str
    """``name@version`` of the model: an index made by another is rebuilt."""


@dataclass(frozen=True)
class SourceSummary:
    """What the source holds of a tenant's space, compared with an index to see whether
    the index is still in step."""

    count: int
    """Rows with an id at or below the mark asked about."""
    id_sum: int
    """The sum of those rows' ids (a deletion and a late row rarely cancel out in both)."""
    newest: int | None
    """The largest id of all the rows (None when there are none)."""


class VectorSource(Protocol):
    """Where the vectors of every index come from (the ``search_vectors`` table:
    :class:`bastion.search.vector_rows.DatabaseVectors`)."""

    def batches(
        self, tenant_id: str, space: VectorSpace, *, after: int | None = None
    ) -> Iterable[tuple[Ids, Matrix]]:
        """The tenant's vectors of ``space`` with an id above ``after`` (all when None),
        by increasing id, in batches."""
        ...

    def fetch(self, tenant_id: str, space: VectorSpace, ids: Ids) -> Iterable[tuple[Ids, Matrix]]:
        """The tenant's vectors of ``space`` among ``ids``, in batches."""
        ...

    def summary(self, tenant_id: str, space: VectorSpace, *, upto: int) -> SourceSummary:
        """Count and id sum of the rows at or below ``upto``, and the newest id."""
        ...

    def ids(self, tenant_id: str, space: VectorSpace, *, upto: int) -> Ids:
        """The ids of the rows at or below ``upto``, sorted."""
        ...


class EmptySource:
    """A source with no vectors (an index that lives in memory and files only)."""

    def batches(
        self, tenant_id: str, space: VectorSpace, *, after: int | None = None
    ) -> Iterable[tuple[Ids, Matrix]]:
        return ()

    def fetch(self, tenant_id: str, space: VectorSpace, ids: Ids) -> Iterable[tuple[Ids, Matrix]]:
        return ()

    def summary(self, tenant_id: str, space: VectorSpace, *, upto: int) -> SourceSummary:
        return SourceSummary(0, 0, None)

    def ids(self, tenant_id: str, space: VectorSpace, *, upto: int) -> Ids:
        return np.zeros(0, dtype=np.int64)


IndexFactory = Callable[[VectorSpace], VectorIndex]
"""Makes an empty index for a space."""

_SAFE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _folder(tenant_id: str) -> str:
    if _SAFE.fullmatch(tenant_id):
        return tenant_id
    return "h-" + hashlib.sha256(tenant_id.encode()).hexdigest()[:40]


def faiss_factory(space: VectorSpace) -> VectorIndex:
    """A :class:`FaissIndex` for ``space`` (the default)."""
    return FaissIndex(space.dim, model=space.model)


@dataclass
class SyncReport:
    """What bringing an index in step with its source changed."""

    added: int = 0
    removed: int = 0
    reconciled: bool = False
    """The old part of the index disagreed with the source (rows deleted, or committed
    late below the mark) and was compared id by id."""
    rebuilt: bool = False
    """The index was made anew from the whole source."""

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.rebuilt)


@dataclass
class _Open:
    index: VectorIndex
    mark: int | None
    """The largest id taken from the source (None: none yet)."""
    synced_at: float
    saved_at: float
    dirty: bool = False


def _id_sum(ids: Ids) -> int:
    return int(ids.sum(dtype=np.int64)) if ids.size else 0


class VectorStore:
    """One vector index per tenant and space, kept in memory, saved under ``root`` and
    kept in step with the vectors of ``source``.

    Staleness: a saved file may lag the database (a crash after vectors were stored and
    before the file was saved, another process that indexed, rows deleted since). When
    an index is opened, and again when it is used ``sync_every_s`` or more after its
    last check, the store asks the source one aggregate question — how many rows, and
    the sum of their ids, at or below the index's mark (the largest id it took from the
    source), and the newest id — and then:

    * adds the rows past the mark, incrementally (the usual case after a crash);
    * when the rows at or below the mark differ from what the index holds (rows deleted
      since, or committed late with a smaller id), compares ids (ids only, no vectors),
      removes the gone ones and fetches the missing ones;
    * rebuilds from the whole source when the file is missing, corrupt or of another
      model.

    Saving is debounced: :meth:`add` and :meth:`remove` mark the index dirty and save it
    at most once every ``save_every_s`` seconds (a faiss index is written whole, which is
    not cheap for a large tenant); :meth:`flush` saves every dirty index (at shutdown).
    A file that lags is harmless: the next open catches it up from the source.

    A vector replaced under the same id in the source (rather than a new document) is
    not seen by the check above; the indexer never does that (re-indexing makes new
    documents).

    All methods are thread-safe (one lock; faiss calls run under it).
    """

    def __init__(
        self,
        root: Path,
        source: VectorSource,
        *,
        factory: IndexFactory = faiss_factory,
        save_every_s: float = 60.0,
        sync_every_s: float | None = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.source = source
        self._factory = factory
        self.save_every_s = save_every_s
        self.sync_every_s = sync_every_s
        self._clock = clock
        self._open: dict[tuple[str, str], _Open] = {}
        self._lock = threading.RLock()

    def path(self, tenant_id: str, space: VectorSpace) -> Path:
        """Where the index of ``tenant_id`` in ``space`` is saved."""
        if not _SAFE.fullmatch(space.name):
            raise ValueError(f"bad vector space name {space.name!r}")
        return self.root / _folder(tenant_id) / f"{space.name}{SUFFIX}"

    def index(self, tenant_id: str, space: VectorSpace) -> VectorIndex:
        """The tenant's index in ``space``, in step with the source: open (checked again
        when last checked ``sync_every_s`` ago), loaded from its file and caught up, or
        rebuilt from the source (and saved) when the file is missing, corrupt or of
        another model. Use :meth:`search`, :meth:`add` and :meth:`remove` from threads
        that share the store."""
        with self._lock:
            return self._entry(tenant_id, space).index

    def _entry(self, tenant_id: str, space: VectorSpace) -> _Open:
        key = (tenant_id, space.name)
        found = self._open.get(key)
        now = self._clock()
        if found is not None and found.index.model == space.model:
            if self.sync_every_s is not None and now - found.synced_at >= self.sync_every_s:
                self._sync(tenant_id, space, found)
            return found
        entry = self._load(tenant_id, space)
        self._open[key] = entry
        return entry

    def _load(self, tenant_id: str, space: VectorSpace) -> _Open:
        path = self.path(tenant_id, space)
        loaded: VectorIndex | None
        try:
            loaded = read_index(path)
        except (FileNotFoundError, VectorIndexCorrupt):
            loaded = None
        now = self._clock()
        if loaded is not None and loaded.model == space.model and loaded.dim == space.dim:
            held = loaded.ids()
            entry = _Open(loaded, int(held[-1]) if held.size else None, now, now)
            if self._sync(tenant_id, space, entry).changed:
                self._save(tenant_id, space, entry)
            return entry
        fresh = self._factory(space)
        entry = _Open(fresh, None, now, now)
        for ids, vectors in self.source.batches(tenant_id, space):
            fresh.add(ids, vectors)
            entry.mark = int(ids.max()) if entry.mark is None else max(entry.mark, int(ids.max()))
        self._save(tenant_id, space, entry)
        return entry

    def sync(self, tenant_id: str, space: VectorSpace) -> SyncReport:
        """Bring the tenant's index in ``space`` in step with the source now."""
        with self._lock:
            key = (tenant_id, space.name)
            found = self._open.get(key)
            if found is None or found.index.model != space.model:
                self._open[key] = self._load(tenant_id, space)
                return SyncReport(rebuilt=True)
            return self._sync(tenant_id, space, found)

    def _sync(self, tenant_id: str, space: VectorSpace, entry: _Open) -> SyncReport:
        report = SyncReport()
        index = entry.index
        mark = entry.mark
        if mark is not None:
            summary = self.source.summary(tenant_id, space, upto=mark)
            held = index.ids()
            held = held[held <= mark]
            if summary.count != held.size or summary.id_sum != _id_sum(held):
                report.reconciled = True
                there = self.source.ids(tenant_id, space, upto=mark)
                gone = np.setdiff1d(held, there, assume_unique=True)
                missing = np.setdiff1d(there, held, assume_unique=True)
                if gone.size:
                    report.removed += index.remove(gone)
                for ids, vectors in self.source.fetch(tenant_id, space, missing):
                    index.add(ids, vectors)
                    report.added += int(ids.size)
            newest = summary.newest
        else:
            newest = self.source.summary(tenant_id, space, upto=-1).newest
        if newest is not None and (mark is None or newest > mark):
            for ids, vectors in self.source.batches(tenant_id, space, after=mark):
                index.add(ids, vectors)
                report.added += int(ids.size)
                mark = int(ids.max()) if mark is None else max(mark, int(ids.max()))
        entry.mark = mark
        entry.synced_at = self._clock()
        entry.dirty = entry.dirty or report.changed
        return report

    def add(self, tenant_id: str, space: VectorSpace, ids: Ids, vectors: Matrix) -> None:
        """Add vectors just stored in the source to the open index (opening it if
        needed), and save it if the last save is ``save_every_s`` old."""
        ids = _ids(ids)
        if ids.size == 0:
            return
        with self._lock:
            entry = self._entry(tenant_id, space)  # may catch up, taking these rows too
            if entry.mark is not None and bool((ids <= entry.mark).any()):
                held = np.isin(ids, entry.index.ids())
                if held.any():  # adding them again would replace them (a rebuild for HNSW)
                    ids, vectors = ids[~held], np.asarray(vectors)[~held]
            if ids.size == 0:
                return
            entry.index.add(ids, vectors)
            top = int(ids.max())
            entry.mark = top if entry.mark is None else max(entry.mark, top)
            entry.dirty = True
            self._save_if_due(tenant_id, space, entry)

    def remove(self, tenant_id: str, space: VectorSpace, ids: Ids) -> int:
        """Remove ids (deleted from the source) from the tenant's index if it is open;
        how many were held. An index that is not open is caught up when opened."""
        ids = _ids(ids)
        with self._lock:
            entry = self._open.get((tenant_id, space.name))
            if entry is None or ids.size == 0:
                return 0
            removed = entry.index.remove(ids)
            if removed:
                entry.dirty = True
                self._save_if_due(tenant_id, space, entry)
            return removed

    def search(
        self, tenant_id: str, space: VectorSpace, vector: npt.ArrayLike, k: int
    ) -> tuple[Ids, Scores]:
        """The ``k`` nearest of the tenant's ids in ``space`` to ``vector``, best first."""
        with self._lock:
            return self._entry(tenant_id, space).index.search(vector, k)

    def _save_if_due(self, tenant_id: str, space: VectorSpace, entry: _Open) -> None:
        if entry.dirty and self._clock() - entry.saved_at >= self.save_every_s:
            self._save(tenant_id, space, entry)

    def _save(self, tenant_id: str, space: VectorSpace, entry: _Open) -> None:
        entry.index.save(self.path(tenant_id, space))
        entry.saved_at = self._clock()
        entry.dirty = False

    def save(self, tenant_id: str, space: VectorSpace) -> None:
        """Save the tenant's index in ``space`` now if it is open."""
        with self._lock:
            found = self._open.get((tenant_id, space.name))
            if found is not None:
                self._save(tenant_id, space, found)

    def flush(self) -> int:
        """Save every open index changed since its last save (at shutdown); how many."""
        with self._lock:
            dirty = [(key, e) for key, e in self._open.items() if e.dirty]
            for (tenant_id, name), entry in dirty:
                space = VectorSpace(name, entry.index.dim, entry.index.model)
                self._save(tenant_id, space, entry)
            return len(dirty)

    def forget(self, tenant_id: str) -> None:
        """Close and delete every index of a tenant (they are rebuilt when next used)."""
        with self._lock:
            for key in [k for k in self._open if k[0] == tenant_id]:
                del self._open[key]
            folder = self.root / _folder(tenant_id)
            if folder.is_dir():
                for file in folder.glob(f"*{SUFFIX}"):
                    file.unlink(missing_ok=True)
