"""Every benign photo we have offline comes back `allow` under the default policy."""

from __future__ import annotations

import asyncio

import pytest

from bastion.pipeline.moderation import Moderation
from bastion.policy.loader import default_policy
from tests.support.media import benign_photos, encode, opencv_doc_photos

pytestmark = [pytest.mark.models, pytest.mark.slow]


async def test_all_benign_photos_are_allowed(moderation: Moderation) -> None:
    policy = default_policy()
    items = [(name, encode(rgb)) for name, rgb in benign_photos().items()]
    items += [(p.name, p.read_bytes()) for p in opencv_doc_photos()]
    assert len(items) > 60, "opencv-doc photos missing: install the Debian opencv-doc package"
    sem = asyncio.Semaphore(8)

    async def one(data: bytes) -> tuple[str, list[str]]:
        async with sem:
            res = await moderation.moderate_bytes(data, policy)
            return res.decision, [f"{r.label} {r.confidence}" for r in res.reasons]

    results = await asyncio.gather(*(one(d) for _, d in items))
    flagged = {name: r for (name, _), r in zip(items, results, strict=True) if r[0] != "allow"}
    assert not flagged, flagged
