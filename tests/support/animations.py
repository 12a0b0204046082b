"""Animations with thousands of frames, built block by block in milliseconds.

Pillow encodes one tiny frame; the file is then put together around it, frame after
frame, as GIF, APNG, animated WebP or multi-page TIFF (Pillow itself would take minutes
to encode as many frames). Small files that are a lot of compositing work: many tiny
frames spread over a huge canvas.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from typing import Any

from PIL import Image


def pillow_bytes(img: Image.Image, fmt: str, **options: Any) -> bytes:
    """``img`` saved by Pillow as ``fmt``."""
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def _tile_positions(count: int, canvas: int, tile: int, step: int = 1) -> list[tuple[int, int]]:
    span = max(1, (canvas - tile) // step + 1)
    return [(((i * 7) % span) * step, ((i * 13) % span) * step) for i in range(count)]


def gif_animation(
    count: int, canvas: int | tuple[int, int], tile: int = 1, *, local_palettes: bool = True
) -> bytes:
    """A GIF of ``count`` frames of ``tile`` pixels on a side, spread over the canvas.

    With ``local_palettes`` every frame brings a colour table of its own (as the GIFs
    of many tools do), which makes Pillow composite in RGB: its slowest path.
    """
    width, height = (canvas, canvas) if isinstance(canvas, int) else canvas
    one = pillow_bytes(Image.new("L", (tile, tile), 1), "GIF")
    pos = 13 + ((3 << ((one[10] & 7) + 1)) if one[10] & 0x80 else 0)
    while one[pos] == 0x21:  # skip extensions up to the image descriptor
        pos += 2
        while one[pos]:
            pos += one[pos] + 1
        pos += 1
    flags = one[pos + 9]
    local = one[pos + 10 : pos + 10 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)]
    image_data = one[pos + 10 + len(local) : -1]  # LZW code size and sub-blocks
    palette = bytes(range(256)) * 3 if not local else b""
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, 0xF7 if palette else 0, 0, 0))
    out += bytes(b for i in range(256) for b in (i, i, i)) if palette else b""
    out += b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    if local_palettes and not local:  # two colours: black, and green for the tile
        flags, local = flags | 0x80, b"\x00\x00\x00\x00\xff\x00"
    for x, y in _tile_positions(count, min(width, height), tile):
        out += b"!\xf9\x04\x04\x02\x00\x00\x00"  # keep the frame, 20 ms
        out += b"," + struct.pack("<HHHHB", x, y, tile, tile, flags) + local + image_data
    return bytes(out + b";")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def apng_animation(count: int, canvas: int | tuple[int, int], declared: int | None = None) -> bytes:
    """An APNG: a blank grey canvas, then ``count - 1`` one-pixel frames drawn over it."""
    width, height = (canvas, canvas) if isinstance(canvas, int) else canvas
    rows = zlib.compressobj(9)
    blank = b"".join(rows.compress(bytes(width + 1)) for _ in range(height)) + rows.flush()

    def fctl(seq: int, w: int, h: int, x: int, y: int) -> bytes:
        return _png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", seq, w, h, x, y, 2, 100, 0, 0))

    out = bytearray(b"\x89PNG\r\n\x1a\n")
    out += _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    out += _png_chunk(b"acTL", struct.pack(">II", declared or count, 0))
    out += fctl(0, width, height, 0, 0) + _png_chunk(b"IDAT", blank)
    pixel = zlib.compress(b"\x00\xff")
    seq = 1
    for x, y in _tile_positions(count - 1, min(width, height), 1):
        out += fctl(seq, 1, 1, x, y) + _png_chunk(b"fdAT", struct.pack(">I", seq + 1) + pixel)
        seq += 2
    return bytes(out + _png_chunk(b"IEND", b""))


def _riff_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def webp_animation(count: int, canvas: int | tuple[int, int]) -> bytes:
    """An animated WebP of ``count`` 2×2 lossless frames spread over the canvas."""
    width, height = (canvas, canvas) if isinstance(canvas, int) else canvas
    still = pillow_bytes(Image.new("RGB", (2, 2), (255, 0, 0)), "WEBP", lossless=True)
    bitstream = still[12:]  # the VP8L chunk
    assert bitstream[:4] == b"VP8L"

    def u24(value: int) -> bytes:
        return value.to_bytes(3, "little")

    body = _riff_chunk(b"VP8X", bytes([0x02, 0, 0, 0]) + u24(width - 1) + u24(height - 1))
    body += _riff_chunk(b"ANIM", b"\xff\xff\xff\xff\x00\x00")
    frames = []
    for x, y in _tile_positions(count, min(width, height), 2, step=2):
        header = u24(x // 2) + u24(y // 2) + u24(1) + u24(1) + u24(20) + b"\x00"
        frames.append(_riff_chunk(b"ANMF", header + bitstream))
    body += b"".join(frames)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def tiff_pages(count: int, side: int = 1) -> bytes:
    """A little-endian TIFF of ``count`` uncompressed grey pages of ``side`` pixels."""
    pixels = bytes(side * side)
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for i in range(count):
        ifd_at = len(out)
        data_at = ifd_at + 2 + 8 * 12 + 4
        entries = [
            (256, 4, side),  # width
            (257, 4, side),  # length
            (258, 3, 8),  # bits per sample
            (259, 3, 1),  # no compression
            (262, 3, 1),  # black is zero
            (273, 4, data_at),  # strip offset
            (278, 4, side),  # rows per strip
            (279, 4, len(pixels)),  # strip byte count
        ]
        out += struct.pack("<H", len(entries))
        for tag, kind, value in entries:
            out += struct.pack("<HHII", tag, kind, 1, value)
        following = data_at + len(pixels) if i + 1 < count else 0
        out += struct.pack("<I", following) + pixels
    return bytes(out)


Builder = Callable[[int, int], bytes]
BUILDERS: dict[str, Builder] = {
    "gif": gif_animation,
    "apng": apng_animation,
    "webp": webp_animation,
}
