"""Multi-index hashing of 256-bit PDQ hashes: near neighbours by indexed equality lookups.

A hash is cut into :data:`BANDS` bands of :data:`BAND_BITS` bits; each band is stored
as one indexed integer ``code`` (band number in the high bits, band value in the low
ones). Two hashes within Hamming distance ``d`` differ in at most ``d // BANDS`` bits
in at least one band (pigeonhole), so every match is found among the stored hashes
that share one of the probe codes of :func:`probe_codes`: the exact band values when
``d < BANDS``, and also every value one bit away when ``d < 2 * BANDS``. Candidates
are then checked with the full Hamming distance.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

PDQ_BITS = 256
BANDS = 16
BAND_BITS = PDQ_BITS // BANDS
BAND_HEX = BAND_BITS // 4
MAX_DISTANCE = 2 * BANDS - 1
"""Largest distance the index answers exactly (probes stay at most 17 values per band)."""


@dataclass(frozen=True, slots=True)
class PdqHash:
    """A PDQ hash in hex (reference bit order) and its quality 0-100."""

    hex: str
    quality: int


def _bands(pdq_hex: str) -> list[int]:
    if len(pdq_hex) != PDQ_BITS // 4:
        raise ValueError(f"a PDQ hash has {PDQ_BITS // 4} hex digits, not {len(pdq_hex)}")
    return [int(pdq_hex[i * BAND_HEX : (i + 1) * BAND_HEX], 16) for i in range(BANDS)]


def _code(band: int, value: int) -> int:
    return (band << BAND_BITS) | value


def band_codes(pdq_hex: str) -> list[int]:
    """The codes stored for a hash: one per band."""
    return [_code(i, v) for i, v in enumerate(_bands(pdq_hex))]


def probe_codes(pdq_hex: str, max_distance: int) -> list[int]:
    """Codes that every stored hash within ``max_distance`` shares at least one of."""
    if not 0 <= max_distance <= MAX_DISTANCE:
        raise ValueError(f"max_distance must be 0..{MAX_DISTANCE}")
    flips = max_distance // BANDS
    masks = [
        sum(1 << b for b in bits)
        for r in range(flips + 1)
        for bits in itertools.combinations(range(BAND_BITS), r)
    ]
    return [_code(i, v ^ m) for i, v in enumerate(_bands(pdq_hex)) for m in masks]
