"""Tenant heads as they are served: the ONNX contract a head meets, a head loaded and
checked in its own onnxruntime session, and the set of heads a process serves.

A head is a small model over an embedding another analyzer made (the 1280-d
EfficientNet-Lite0 vector of ``labels`` today): input ``embedding`` [N, D] float32,
output ``probability`` [N] (or [N, 1]) in 0–1, and these metadata properties (all
optional): ``bastion.category`` (the taxonomy label it scores), ``bastion.threshold``
(the probability at or above which it emits the label), ``bastion.embedding_model`` and
``bastion.embedding_version`` (the model whose vectors it was trained on, e.g.
``efficientnet-lite0``, and that model's version): vectors of another model are not
given to it. A head only ever needs onnxruntime.

:class:`HeadSet` holds what a process serves, tenant by tenant and category by category
(the ``champion`` head, and a ``challenger`` scored in shadow), as one immutable
snapshot: :meth:`HeadSet.publish` replaces the whole snapshot at once, and a batch that
took the snapshot before keeps the sessions it took.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from bastion.registry.errors import HeadRefused

INPUT_NAME = "embedding"
OUTPUT_NAME = "probability"
META_CATEGORY = "bastion.category"
META_THRESHOLD = "bastion.threshold"
META_EMBEDDING_MODEL = "bastion.embedding_model"
META_EMBEDDING_VERSION = "bastion.embedding_version"
DEFAULT_THRESHOLD = 0.5

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES = (CHAMPION, CHALLENGER)


@dataclass(frozen=True, slots=True)
class HeadRef:
    """Which registered head version: the tenant's, for a category."""

    tenant: str
    category: str
    name: str
    """The registered model (``bastion.<tenant>.<category-slug>``)."""
    version: int

    @property
    def label_version(self) -> str:
        """The version as labels name it: ``v<version>``."""
        return f"v{self.version}"


@dataclass(frozen=True, slots=True, eq=False)
class LoadedHead:
    """A head version in its own checked session, ready to score embeddings."""

    ref: HeadRef
    threshold: float
    """Probability (0–1) at or above which the head emits its category."""
    embedding_model: str | None
    embedding_version: str | None
    dim: int
    sha256: str
    session: Any
    load_ms: float

    def accepts(self, model: str, version: str) -> bool:
        """Whether vectors of ``model`` at ``version`` are what the head was trained on."""
        return self.embedding_model in (None, model) and self.embedding_version in (None, version)

    def predict(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Probabilities (0–1) of the category, one per row of ``vectors`` [N, dim]."""
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: vectors})[0]
        return np.asarray(out, dtype=np.float64).reshape(len(vectors))


def load_head(
    data: bytes, ref: HeadRef, *, sha256: str, threshold: float | None = None
) -> LoadedHead:
    """Load ``data`` as the head ``ref`` and check it before it may serve.

    Refused (:class:`HeadRefused`) when the bytes do not hash to ``sha256`` (what the
    version was registered with), when they are not an ONNX model, when the model is
    not a head (one float input ``embedding`` [N, D], an output ``probability``), when
    its ``category`` property names another category, or when its dry run on zero
    vectors gives no probability per row. ``threshold`` is the registered one, used
    when the model carries none.
    """
    started = time.perf_counter()
    digest = hashlib.sha256(data).hexdigest()
    if not sha256 or digest != sha256.lower():
        raise HeadRefused(
            f"{ref.name} version {ref.version}: the ONNX file does not match its registered "
            f"sha256 ({digest[:12]}… ≠ {sha256[:12] or 'none'}…)",
            details={"model": ref.name, "version": ref.version},
        )
    session = _session(data, ref)
    dim = _check_signature(session, ref)
    meta = dict(session.get_modelmeta().custom_metadata_map)
    category = meta.get(META_CATEGORY)
    if category is not None and category != ref.category:
        raise _refused(ref, f"it scores {category!r}, not {ref.category!r}")
    chosen = _threshold(meta.get(META_THRESHOLD), threshold, ref)
    probe = np.zeros((2, dim), dtype=np.float32)
    try:
        out = np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: probe})[0], dtype=np.float64)
    except Exception as exc:
        raise _refused(ref, f"its dry run failed: {type(exc).__name__}: {exc}") from None
    if out.shape not in ((2,), (2, 1)):
        raise _refused(ref, f"its output has shape {list(out.shape)} for 2 rows, not [2]")
    if not (np.isfinite(out).all() and ((out >= 0) & (out <= 1)).all()):
        raise _refused(ref, "its output is not a probability in 0–1")
    return LoadedHead(
        ref=ref,
        threshold=chosen,
        embedding_model=meta.get(META_EMBEDDING_MODEL) or None,
        embedding_version=meta.get(META_EMBEDDING_VERSION) or None,
        dim=dim,
        sha256=digest,
        session=session,
        load_ms=(time.perf_counter() - started) * 1000,
    )


def _refused(ref: HeadRef, why: str) -> HeadRefused:
    which = f"{ref.name} version {ref.version}" if ref.version else f"the new {ref.name}"
    return HeadRefused(
        f"{which} is not a usable head: {why}",
        details={"model": ref.name, "version": ref.version},
    )


def _session(data: bytes, ref: HeadRef) -> Any:
    # a head is a few thousand multiply-adds: one CPU thread, no accelerator round trip
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise _refused(ref, f"not an ONNX model onnxruntime loads ({type(exc).__name__})") from None


def _check_signature(session: Any, ref: HeadRef) -> int:
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME or inputs[0].type != "tensor(float)":
        got = [(i.name, i.type) for i in inputs]
        raise _refused(ref, f"it needs one float input {INPUT_NAME!r}, it has {got}")
    shape = inputs[0].shape
    if len(shape) != 2 or not isinstance(shape[1], int) or shape[1] <= 0:
        raise _refused(ref, f"its input has shape {shape}, not [N, D]")
    if OUTPUT_NAME not in [o.name for o in session.get_outputs()]:
        raise _refused(ref, f"it has no output {OUTPUT_NAME!r}")
    return int(shape[1])


def _threshold(meta: str | None, registered: float | None, ref: HeadRef) -> float:
    value: float | None = registered
    if meta is not None:
        try:
            value = float(meta)
        except ValueError:
            raise _refused(ref, f"its threshold {meta!r} is not a number") from None
    if value is None:
        return DEFAULT_THRESHOLD
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise _refused(ref, f"its threshold {value} is not between 0 and 1")
    return value


@dataclass(frozen=True, slots=True)
class HeadPair:
    """What serves one tenant's category: the champion, and a challenger in shadow."""

    champion: LoadedHead | None = None
    challenger: LoadedHead | None = None


Snapshot = Mapping[str, Mapping[str, HeadPair]]
"""Tenant → category → the heads serving it."""

_EMPTY: Snapshot = MappingProxyType({})
_NO_HEADS: Mapping[str, HeadPair] = MappingProxyType({})


class HeadSet:
    """The heads one process serves, as one snapshot replaced whole.

    Readers take :attr:`current` once and use what they took; :meth:`publish` (the
    watcher) swaps the reference, so a batch in flight finishes on the sessions it
    started with, and the next one gets the new heads.
    """

    def __init__(self) -> None:
        self._current: Snapshot = _EMPTY
        self._lock = threading.Lock()

    @property
    def current(self) -> Snapshot:
        return self._current

    def for_tenant(self, tenant: str | None) -> Mapping[str, HeadPair]:
        """``tenant``'s heads by category (none for no tenant)."""
        if tenant is None:
            return _NO_HEADS
        return self._current.get(tenant, _NO_HEADS)

    def publish(self, snapshot: Snapshot) -> None:
        """Serve ``snapshot`` from now on."""
        frozen = MappingProxyType(
            {t: MappingProxyType(dict(cats)) for t, cats in snapshot.items() if cats}
        )
        with self._lock:
            self._current = frozen

    def champions(self, tenant: str | None) -> dict[str, HeadRef]:
        """``tenant``'s champion heads by category."""
        return {
            c: pair.champion.ref
            for c, pair in self.for_tenant(tenant).items()
            if pair.champion is not None
        }
