"""Vectors kept in the database (``search_vectors``), the source every vector index is
rebuilt from.

:func:`store_vectors` writes documents' vectors in the caller's transaction (beside the
documents, so both are there or neither); :func:`rebuild_from_database` is the
:data:`~bastion.search.vectors.Rebuild` callback of a
:class:`~bastion.search.vectors.VectorStore`: the tenant's vectors of one space and
model, in batches. Vectors are little-endian float32 bytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from bastion.search.tables import SearchVector
from bastion.search.vectors import Ids, Matrix, Rebuild, VectorSpace

BATCH = 5_000
"""Rows read per batch while rebuilding."""


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


def rebuild_from_database(sessions: sessionmaker[Session]) -> Rebuild:
    """A rebuild callback reading ``search_vectors`` through ``sessions``."""

    def rebuild(tenant_id: str, space: VectorSpace) -> Iterator[tuple[Ids, Matrix]]:
        last = -(2**63)
        while True:
            with sessions() as session:
                rows = session.execute(
                    select(SearchVector.document_id, SearchVector.vector)
                    .where(
                        SearchVector.tenant_id == tenant_id,
                        SearchVector.space == space.name,
                        SearchVector.model == space.model,
                        SearchVector.dim == space.dim,
                        SearchVector.document_id > last,
                    )
                    .order_by(SearchVector.document_id)
                    .limit(BATCH)
                ).all()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            data = b"".join(r[1] for r in rows)
            yield ids, np.frombuffer(data, dtype="<f4").reshape(len(rows), space.dim).copy()
            last = int(ids[-1])

    return rebuild
