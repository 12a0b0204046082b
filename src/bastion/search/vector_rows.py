"""Vectors kept in the database (``search_vectors``), the source every vector index is
built from and kept in step with.

:func:`store_vectors` writes documents' vectors in the caller's transaction (beside the
documents, so both are there or neither); :func:`vectors_of` reads back the vectors of
given documents (a media's own image embedding, to find what looks like it);
:class:`DatabaseVectors` is the :class:`~bastion.search.vectors.VectorSource` of a
:class:`~bastion.search.vectors.VectorStore`: a tenant's vectors of one space and model,
in batches, and the one aggregate query that tells whether an index is in step. Vectors
are little-endian float32 bytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import BigInteger, case, cast, delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from bastion.search.tables import SearchVector
from bastion.search.vectors import Ids, Matrix, SourceSummary, VectorSpace

BATCH = 5_000
"""Rows read per batch."""
_LOWEST = -(2**63)


def store_vectors(
    session: Session,
    tenant_id: str,
    space: VectorSpace,
    ids: Sequence[int],
    vectors: npt.ArrayLike,
) -> None:
    """Write (or replace) the vectors of documents ``ids`` in ``space``."""
    matrix = np.asarray(vectors, dtype="<f4").reshape(len(ids), space.dim)
    wanted = [int(i) for i in ids]
    session.execute(
        delete(SearchVector).where(
            SearchVector.space == space.name, SearchVector.document_id.in_(wanted)
        )
    )
    session.add_all(
        SearchVector(
            document_id=doc,
            tenant_id=tenant_id,
            space=space.name,
            model=space.model,
            dim=space.dim,
            vector=row.tobytes(),
        )
        for doc, row in zip(wanted, matrix, strict=True)
    )


def _scope(tenant_id: str, space: VectorSpace) -> list[Any]:
    return [
        SearchVector.tenant_id == tenant_id,
        SearchVector.space == space.name,
        SearchVector.model == space.model,
        SearchVector.dim == space.dim,
    ]


def _matrix(rows: Sequence[Any], dim: int) -> tuple[Ids, Matrix]:
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    data = b"".join(r[1] for r in rows)
    return ids, np.frombuffer(data, dtype="<f4").reshape(len(rows), dim).astype(np.float32)


def vectors_of(
    session: Session, tenant_id: str, space: VectorSpace, ids: Sequence[int]
) -> tuple[Ids, Matrix]:
    """The tenant's vectors of ``space`` among documents ``ids`` (others left out)."""
    wanted = [int(i) for i in ids]
    rows: list[Any] = []
    for start in range(0, len(wanted), 500):
        rows += session.execute(
            select(SearchVector.document_id, SearchVector.vector)
            .where(
                *_scope(tenant_id, space), SearchVector.document_id.in_(wanted[start : start + 500])
            )
            .order_by(SearchVector.document_id)
        ).all()
    return _matrix(rows, space.dim)


class DatabaseVectors:
    """The vectors of ``search_vectors`` read through ``sessions``, tenant by tenant."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def batches(
        self, tenant_id: str, space: VectorSpace, *, after: int | None = None
    ) -> Iterator[tuple[Ids, Matrix]]:
        last = _LOWEST if after is None else after
        while True:
            with self._sessions() as session:
                rows = session.execute(
                    select(SearchVector.document_id, SearchVector.vector)
                    .where(*_scope(tenant_id, space), SearchVector.document_id > last)
                    .order_by(SearchVector.document_id)
                    .limit(BATCH)
                ).all()
            if not rows:
                return
            ids, matrix = _matrix(rows, space.dim)
            yield ids, matrix
            last = int(ids[-1])

    def fetch(self, tenant_id: str, space: VectorSpace, ids: Ids) -> Iterator[tuple[Ids, Matrix]]:
        wanted = [int(i) for i in ids]
        for start in range(0, len(wanted), BATCH):
            with self._sessions() as session:
                found = vectors_of(session, tenant_id, space, wanted[start : start + BATCH])
            if found[0].size:
                yield found

    def summary(self, tenant_id: str, space: VectorSpace, *, upto: int) -> SourceSummary:
        below = SearchVector.document_id <= upto
        doc = cast(SearchVector.document_id, BigInteger)
        with self._sessions() as session:
            count, total, newest = session.execute(
                select(
                    func.coalesce(func.sum(case((below, 1), else_=0)), 0),
                    func.coalesce(func.sum(case((below, doc), else_=0)), 0),
                    func.max(SearchVector.document_id),
                ).where(*_scope(tenant_id, space))
            ).one()
        return SourceSummary(int(count), int(total), None if newest is None else int(newest))

    def ids(self, tenant_id: str, space: VectorSpace, *, upto: int) -> Ids:
        with self._sessions() as session:
            found = session.scalars(
                select(SearchVector.document_id)
                .where(*_scope(tenant_id, space), SearchVector.document_id <= upto)
                .order_by(SearchVector.document_id)
            ).all()
        return np.asarray(found, dtype=np.int64)
