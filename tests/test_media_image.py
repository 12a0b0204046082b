"""Safe image decoding: formats, modes, animations, damaged input and size limits."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile, features

from bastion.errors import (
    CorruptMedia,
    EmptyInput,
    ImageTooLarge,
    MediaTooLarge,
    UnsupportedMediaType,
)
from bastion.media.image import decode_image, sniff
from bastion.media.types import DecodedImage, MediaLimits
from tests.support.media import benign_photos, encode

LIMITS = MediaLimits()


def _photo(name: str = "skimage-astronaut") -> np.ndarray:
    return benign_photos()[name]


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(
    width: int, height: int, depth: int, colour: int, rows: Iterable[bytes], level: int = 9
) -> bytes:
    """A PNG written by hand, row by row (filter 0), compressed as a stream."""
    comp = zlib.compressobj(level)
    idat = b"".join(comp.compress(b"\x00" + row) for row in rows) + comp.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def _bomb_png(side: int = 30_000) -> bytes:
    """A side×side 1-bit PNG of zeros: about 110 KB on disk, 900 MP when decoded."""
    row = bytes((side + 7) // 8)
    return _png(side, side, 1, 0, (row for _ in range(side)))


def _only(decoded: DecodedImage) -> np.ndarray:
    assert len(decoded.frames) == 1
    rgb = decoded.frames[0].rgb
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.flags.c_contiguous
    return rgb


# --- formats --------------------------------------------------------------------------

FORMAT_CASES = [
    ("JPEG", {"quality": 92}, 4.0),
    ("PNG", {}, 0.0),
    ("WEBP", {"lossless": True}, 0.0),
    ("WEBP", {"quality": 90}, 5.0),
    ("GIF", {}, 12.0),
    ("BMP", {}, 0.0),
    ("TIFF", {}, 0.0),
    ("TIFF", {"compression": "tiff_lzw"}, 0.0),
]


@pytest.mark.parametrize(("fmt", "options", "max_error"), FORMAT_CASES)
@pytest.mark.parametrize("name", ["skimage-astronaut", "skimage-chelsea", "sklearn-china"])
def test_each_format_decodes_real_photos(
    fmt: str, options: dict[str, object], max_error: float, name: str
) -> None:
    rgb = _photo(name)
    data = encode(rgb, fmt, **options)
    decoded = decode_image(data, LIMITS)
    out = _only(decoded)
    assert decoded.format == fmt
    assert (decoded.width, decoded.height) == (rgb.shape[1], rgb.shape[0])
    assert decoded.byte_size == len(data)
    assert decoded.sha256 == hashlib.sha256(data).hexdigest()
    assert decoded.total_frames == 1 and not decoded.animated
    assert decoded.frames[0].timestamp_ms is None
    assert _mae(out, rgb) <= max_error


@pytest.mark.skipif(not features.check("avif"), reason="Pillow built without AVIF")
def test_avif_decodes() -> None:
    rgb = _photo("skimage-coffee")
    data = encode(rgb, "AVIF", quality=90, speed=10)
    assert sniff(data).pillow_format == "AVIF"
    decoded = decode_image(data, LIMITS)
    assert decoded.format == "AVIF"
    assert _mae(_only(decoded), rgb) < 6.0


def test_content_type_is_not_trusted() -> None:
    rgb = _photo()
    data = encode(rgb, "PNG")
    decoded = decode_image(data, LIMITS, content_type="application/pdf")
    assert decoded.format == "PNG"
    assert any("application/pdf" in w for w in decoded.warnings)
    # An image/* type that lies about the image format is simply ignored.
    assert decode_image(data, LIMITS, content_type="image/jpeg").warnings == ()


def test_frames_are_read_only() -> None:
    out = _only(decode_image(encode(_photo(), "PNG"), LIMITS))
    with pytest.raises(ValueError):
        out[0, 0, 0] = 1


# --- orientation, colour modes -----------------------------------------------------------


def test_exif_orientation_6_rotates_pixels_and_swaps_size() -> None:
    rgb = _photo("skimage-coffee")  # 600 wide, 400 high
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _save(Image.fromarray(rgb), "JPEG", quality=95, exif=exif.tobytes())
    decoded = decode_image(data, LIMITS)
    out = _only(decoded)
    assert (decoded.width, decoded.height) == (400, 600)
    assert out.shape == (600, 400, 3)
    # Orientation 6: the stored picture must be turned 90° clockwise to display.
    assert _mae(out, np.rot90(rgb, k=-1)) < 3.0
    assert _mae(out, np.rot90(rgb, k=1)) > 20.0


@pytest.mark.parametrize(
    ("orientation", "expected"),
    [
        (2, lambda a: a[:, ::-1]),
        (3, lambda a: a[::-1, ::-1]),
        (4, lambda a: a[::-1]),
        (5, lambda a: np.transpose(a, (1, 0, 2))),
        (7, lambda a: np.rot90(a, 2).transpose(1, 0, 2)),
        (8, lambda a: np.rot90(a, 1)),
    ],
)
def test_every_exif_orientation(orientation: int, expected: object) -> None:
    rgb = _photo("skimage-rocket")
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _save(Image.fromarray(rgb), "PNG", exif=exif.tobytes())
    out = _only(decode_image(data, LIMITS))
    assert callable(expected)
    np.testing.assert_array_equal(out, expected(rgb))


def test_damaged_exif_does_not_stop_decoding() -> None:
    rgb = _photo("skimage-coffee")
    bad_orientation = (
        b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01"
        b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x63\x00\x00"
    )
    decoded = decode_image(_save(Image.fromarray(rgb), "PNG", exif=bad_orientation), LIMITS)
    assert "invalid EXIF orientation 99 ignored" in decoded.warnings
    np.testing.assert_array_equal(_only(decoded), rgb)
    garbage = decode_image(
        _save(Image.fromarray(rgb), "JPEG", exif=b"Exif\x00\x00" + b"\xff" * 50), LIMITS
    )
    assert (garbage.width, garbage.height) == (600, 400)


def test_multi_picture_jpeg_keeps_the_primary_image() -> None:
    primary, second = (Image.fromarray(_photo(n)) for n in ("skimage-coffee", "skimage-rocket"))
    decoded = decode_image(
        _save(primary, "MPO", save_all=True, append_images=[second], quality=95), LIMITS
    )
    assert decoded.format == "JPEG" and decoded.total_frames == 1
    assert any("multi-picture" in w for w in decoded.warnings)
    assert _mae(_only(decoded), _photo("skimage-coffee")) < 4.0


def test_adobe_cmyk_jpeg() -> None:
    rgb = _photo("skimage-chelsea")
    data = _save(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as probe:  # Pillow writes Adobe-inverted CMYK
        assert probe.mode == "CMYK" and "adobe" in probe.info
    decoded = decode_image(data, LIMITS)
    assert decoded.mode == "CMYK"
    assert _mae(_only(decoded), rgb) < 4.0


def test_16_bit_grey_png_is_scaled_not_clipped() -> None:
    grey = _photo("skimage-camera")[..., 0]
    data = encode(grey.astype(np.uint16) * 257, "PNG")
    decoded = decode_image(data, LIMITS)
    assert decoded.mode == "I;16"
    out = _only(decoded)
    np.testing.assert_array_equal(out[..., 0], grey)
    np.testing.assert_array_equal(out[..., 1], grey)
    # Mid-range 16-bit values land mid-range, not at 255.
    mid = decode_image(encode(np.full((8, 8), 40000, np.uint16), "PNG"), LIMITS)
    assert int(mid.frames[0].rgb[0, 0, 0]) == 156


def test_48_bit_rgb_png() -> None:
    rgb = _photo("skimage-coffee")

    def png48(wide: np.ndarray) -> bytes:
        rows = (row.astype(">u2").tobytes() for row in wide)
        return _png(wide.shape[1], wide.shape[0], 16, 2, rows, level=1)

    exact = decode_image(png48(rgb.astype(np.uint16) * 257), LIMITS)
    np.testing.assert_array_equal(_only(exact), rgb)
    # Pillow keeps the high byte of each sample: within one level of v / 257, never clipped.
    noisy = rgb.astype(np.uint16) * 257 + 128
    out = _only(decode_image(png48(noisy), LIMITS)).astype(int)
    assert np.abs(out - np.rint(noisy / 257.0)).max() <= 1


def test_16_bit_and_float_tiff() -> None:
    grey = _photo("skimage-camera")[..., 0]
    i16 = decode_image(_save(Image.fromarray(grey.astype(np.uint16) * 257), "TIFF"), LIMITS)
    np.testing.assert_array_equal(_only(i16)[..., 2], grey)
    as_float = Image.fromarray(grey.astype(np.float32) / 255.0, mode="F")
    f = decode_image(_save(as_float, "TIFF"), LIMITS)
    assert f.mode == "F"
    assert np.abs(_only(f)[..., 0].astype(int) - grey).max() <= 1
    as_int = Image.fromarray(grey.astype(np.int32) * 1000 - 50_000, mode="I")
    i32 = decode_image(_save(as_int, "TIFF"), LIMITS)
    assert i32.mode == "I" and any("stretched" in w for w in i32.warnings)
    assert np.abs(_only(i32)[..., 0].astype(int) - grey).max() <= 1


def test_la_png_composited_over_white() -> None:
    grey = _photo("skimage-camera")[..., 0]
    alpha = np.zeros_like(grey)
    alpha[:, : grey.shape[1] // 2] = 255
    data = _save(Image.fromarray(np.stack([grey, alpha], -1), mode="LA"), "PNG")
    decoded = decode_image(data, LIMITS)
    out = _only(decoded)
    assert decoded.mode == "LA"
    half = grey.shape[1] // 2
    np.testing.assert_array_equal(out[:, :half, 1], grey[:, :half])
    assert (out[:, half:] == 255).all()


def test_palette_with_transparency() -> None:
    pal = Image.new("P", (40, 20), 0)
    pal.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    pal.paste(1, (20, 0, 40, 20))
    data = _save(pal, "PNG", transparency=0)
    decoded = decode_image(data, LIMITS)
    out = _only(decoded)
    assert decoded.mode == "P"
    assert (out[:, :20] == 255).all()
    assert tuple(out[5, 30]) == (200, 30, 30)
    gif = _only(decode_image(_save(pal, "GIF", transparency=0), LIMITS))
    assert (gif[:, :20] == 255).all() and tuple(gif[5, 30]) == (200, 30, 30)


def test_rgba_blends_partial_alpha() -> None:
    rgb = _photo("skimage-astronaut")
    alpha = np.full(rgb.shape[:2], 128, np.uint8)
    alpha[:100] = 255
    alpha[-100:] = 0
    data = encode(np.dstack([rgb, alpha]), "PNG")
    out = _only(decode_image(data, LIMITS))
    np.testing.assert_array_equal(out[:100], rgb[:100])
    assert (out[-100:] == 255).all()
    expected = (rgb[200:300].astype(int) * 128 + 255 * 127 + 127) // 255
    assert np.abs(out[200:300].astype(int) - expected).max() <= 1
    webp = _only(decode_image(encode(np.dstack([rgb, alpha]), "WEBP", lossless=True), LIMITS))
    np.testing.assert_array_equal(webp, out)


def test_one_bit_png() -> None:
    bits = _photo("skimage-camera")[..., 0] > 128
    data = _save(Image.fromarray(bits), "PNG")
    decoded = decode_image(data, LIMITS)
    out = _only(decoded)
    assert decoded.mode == "1"
    assert set(np.unique(out).tolist()) == {0, 255}
    np.testing.assert_array_equal(out[..., 0] == 255, bits)


def _swapped_primaries_profile() -> bytes:
    """sRGB with its red and green colorants exchanged (and renamed)."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack(">I", profile[128:132])[0]
    entries = {bytes(profile[132 + 12 * i : 136 + 12 * i]): 136 + 12 * i for i in range(count)}
    red, green = entries[b"rXYZ"], entries[b"gXYZ"]
    profile[red : red + 8], profile[green : green + 8] = (
        profile[green : green + 8],
        profile[red : red + 8],
    )
    out = bytes(profile)
    return out.replace("sRGB".encode("utf-16-be"), "xRGB".encode("utf-16-be")).replace(
        b"sRGB", b"xRGB"
    )


def test_icc_profile_converted_to_srgb() -> None:
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 200
    swapped = decode_image(
        _save(Image.fromarray(red), "PNG", icc_profile=_swapped_primaries_profile()), LIMITS
    )
    assert tuple(_only(swapped)[0, 0]) == (0, 200, 0)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    plain = decode_image(_save(Image.fromarray(red), "PNG", icc_profile=srgb), LIMITS)
    assert tuple(_only(plain)[0, 0]) == (200, 0, 0) and plain.warnings == ()
    broken = decode_image(_save(Image.fromarray(red), "PNG", icc_profile=b"x" * 200), LIMITS)
    assert tuple(_only(broken)[0, 0]) == (200, 0, 0)
    assert any("ICC" in w for w in broken.warnings)


# --- animations ---------------------------------------------------------------------------


def _animation_frames(count: int) -> list[Image.Image]:
    base = _photo("skimage-chelsea")[:160, :240]
    frames = []
    for i in range(count):
        arr = base.copy()
        arr[:20] = (i * 8, 255 - i * 8, 100)  # a band that encodes the frame number
        frames.append(Image.fromarray(arr))
    return frames


def _band(frame: np.ndarray) -> tuple[int, int, int]:
    r, g, b = frame[5:15, 20:220].reshape(-1, 3).mean(0)
    return round(float(r)), round(float(g)), round(float(b))


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("GIF", {}), ("WEBP", {"lossless": True}), ("PNG", {})],
)
def test_animation_frames_are_sampled_evenly(fmt: str, options: dict[str, object]) -> None:
    frames = _animation_frames(30)
    data = _save(
        frames[0], fmt, save_all=True, append_images=frames[1:], duration=40, loop=0, **options
    )
    decoded = decode_image(data, MediaLimits(max_frames=8))
    assert decoded.total_frames == 30 and decoded.animated
    assert decoded.format == fmt
    indices = [f.index for f in decoded.frames]
    assert len(indices) == 8 and indices[0] == 0 and indices[-1] == 29
    assert indices == sorted(set(indices))
    assert [f.timestamp_ms for f in decoded.frames] == [i * 40 for i in indices]
    for frame in decoded.frames:
        r, g, _b = _band(frame.rgb)
        assert abs(r - frame.index * 8) <= 6 and abs(g - (255 - frame.index * 8)) <= 6
    everything = decode_image(data, MediaLimits(max_frames=50))
    assert [f.index for f in everything.frames] == list(range(30))


def test_gif_variable_durations_accumulate() -> None:
    frames = _animation_frames(5)
    durations = [100, 20, 300, 50, 70]
    data = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=durations)
    decoded = decode_image(data, MediaLimits(max_frames=5))
    assert [f.timestamp_ms for f in decoded.frames] == [0, 100, 120, 420, 470]


def test_too_many_frames_refused() -> None:
    frames = _animation_frames(12)
    data = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40)
    with pytest.raises(MediaTooLarge, match="more than 10 frames") as err:
        decode_image(data, MediaLimits(max_total_frames=10))
    # counting stops one past the limit: a GIF's frames are counted by walking its blocks
    assert err.value.code == "media_too_large" and err.value.details["total_frames"] == 11
    apng = _save(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=40)
    with pytest.raises(MediaTooLarge) as err:
        decode_image(apng, MediaLimits(max_total_frames=10))
    assert err.value.details["total_frames"] == 12  # declared in the header


@pytest.mark.parametrize("fmt", ["gif", "apng", "webp", "tiff"])
def test_frames_are_counted_without_walking_them(fmt: str) -> None:
    """Refusing 50,000 frames takes no longer than refusing 11: counting is bounded."""
    from tests.support.animations import BUILDERS, tiff_pages

    data = tiff_pages(50_000) if fmt == "tiff" else BUILDERS[fmt](50_000, 64)
    started = time.perf_counter()
    with pytest.raises(MediaTooLarge) as err:
        decode_image(data, MediaLimits(max_total_frames=10))
    assert err.value.details["total_frames"] == (11 if fmt in ("gif", "tiff") else 50_000)
    assert time.perf_counter() - started < 0.2


@pytest.mark.parametrize("fmt", ["gif", "apng", "webp"])
def test_animation_work_is_refused_before_decoding(fmt: str) -> None:
    from tests.support.animations import BUILDERS

    data = BUILDERS[fmt](300, 200)  # 300 × (40,000 + 10,000) = 15 M pixels of work
    decoded = decode_image(data, MediaLimits(max_animation_pixels=15_000_000))
    assert decoded.total_frames == 300 and len(decoded.frames) == 8
    with pytest.raises(ImageTooLarge) as err:
        decode_image(data, MediaLimits(max_animation_pixels=14_999_999))
    assert err.value.code == "animation_too_large" and err.value.status == 413
    assert err.value.details["frames"] == 300 and err.value.details["pixels"] == 15_000_000
    # the last frame is always analysed, so every frame before it is drawn: sampling
    # fewer frames does not make the walk cheaper, and is not taken as a way round
    with pytest.raises(ImageTooLarge):
        decode_image(data, MediaLimits(max_animation_pixels=14_999_999, max_frames=2))
    # one frame is not an animation: the pixel limits of still images apply
    one = BUILDERS[fmt](1, 200)
    assert decode_image(one, MediaLimits(max_animation_pixels=1)).total_frames == 1


def test_gif_frames_reaching_past_the_screen_count_at_the_grown_canvas() -> None:
    from tests.support.animations import gif_animation

    data = bytearray(gif_animation(3, 10))
    last = data.rindex(b"!\xf9\x04\x04\x02\x00\x00\x00,") + 8  # the last frame's descriptor
    data[last + 1 : last + 5] = struct.pack("<HH", 5_000, 5_000)  # moved to 5000,5000
    with pytest.raises(ImageTooLarge) as err:
        decode_image(bytes(data), MediaLimits(max_animation_pixels=10_000_000))
    assert err.value.code == "animation_too_large"
    assert err.value.details["canvas_width"] == 5_001


def test_animation_decode_has_a_time_budget() -> None:
    from tests.support.animations import gif_animation

    data = gif_animation(600, 1_000)  # about a second of compositing
    limits = MediaLimits(max_animation_pixels=10**12, max_animation_decode_s=0.1)
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge, match=r"took more than 0\.1 s") as err:
        decode_image(data, limits)
    assert err.value.code == "animation_too_large"
    assert time.perf_counter() - started < 0.5


def test_unsampled_tiff_pages_are_not_decoded() -> None:
    small = Image.new("RGB", (10, 10))
    big = Image.new("L", (3000, 3000))
    data = _save(small, "TIFF", save_all=True, append_images=[small, big, small, small])
    decoded = decode_image(data, MediaLimits(max_pixels=1_000_000, max_frames=2))
    assert decoded.total_frames == 5 and [f.index for f in decoded.frames] == [0, 4]
    with pytest.raises(ImageTooLarge, match="frame 2"):  # sampled, it is checked
        decode_image(data, MediaLimits(max_pixels=1_000_000, max_frames=3))


def test_multi_page_tiff_pages_are_frames() -> None:
    pages = [Image.fromarray(_photo(n)) for n in ("skimage-coffee", "skimage-rocket")]
    data = _save(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    decoded = decode_image(data, LIMITS)
    assert decoded.total_frames == 2
    assert [f.timestamp_ms for f in decoded.frames] == [None, None]
    np.testing.assert_array_equal(decoded.frames[1].rgb, _photo("skimage-rocket"))


def test_tiff_page_over_the_pixel_limit_refused() -> None:
    small = Image.new("RGB", (10, 10))
    big = Image.new("L", (3000, 3000))
    data = _save(small, "TIFF", save_all=True, append_images=[big])
    with pytest.raises(ImageTooLarge, match="frame 1"):
        decode_image(data, MediaLimits(max_pixels=1_000_000))


# --- analysis size and JPEG draft -----------------------------------------------------------


def test_large_jpeg_is_bounded_for_analysis() -> None:
    big = Image.fromarray(_photo("sklearn-china")).resize((4800, 3200), Image.Resampling.BICUBIC)
    data = _save(big, "JPEG", quality=90)
    bounded = decode_image(data, LIMITS, max_analysis_side=1000)
    out = _only(bounded)
    assert out.shape == (667, 1000, 3)
    assert (bounded.width, bounded.height) == (4800, 3200)
    reference = np.asarray(big.resize((1000, 667), Image.Resampling.LANCZOS))
    assert _mae(out, reference) < 3.0
    full = decode_image(data, LIMITS, max_analysis_side=None)
    assert _only(full).shape == (3200, 4800, 3)


def test_bounded_png_keeps_aspect() -> None:
    rgb = _photo("skimage-motorcycle")  # 741 × 500
    decoded = decode_image(encode(rgb, "PNG"), LIMITS, max_analysis_side=300)
    assert _only(decoded).shape == (202, 300, 3)
    assert (decoded.width, decoded.height) == (741, 500)
    with pytest.raises(ValueError):
        decode_image(encode(rgb, "PNG"), LIMITS, max_analysis_side=0)


# --- damaged and non-image input ----------------------------------------------------------


def test_zero_bytes() -> None:
    with pytest.raises(EmptyInput) as err:
        decode_image(b"", LIMITS)
    assert err.value.status == 400 and err.value.code == "empty_input"


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("JPEG", {}), ("PNG", {}), ("WEBP", {}), ("GIF", {}), ("TIFF", {"compression": "tiff_lzw"})],
)
def test_truncated_at_half(fmt: str, options: dict[str, object]) -> None:
    data = encode(_photo(), fmt, **options)
    with pytest.raises(CorruptMedia) as err:
        decode_image(data[: len(data) // 2], LIMITS)
    assert err.value.status == 422 and err.value.code == "corrupt_media"


def test_truncated_animation() -> None:
    frames = _animation_frames(10)
    data = _save(frames[0], "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(CorruptMedia):
        decode_image(data[: int(len(data) * 0.6)], MediaLimits(max_frames=10))


def test_magic_then_garbage_is_corrupt() -> None:
    rng = np.random.default_rng(1)
    for magic in (
        b"\xff\xd8\xff\xe0",
        b"\x89PNG\r\n\x1a\n",
        b"GIF89a",
        b"RIFF\x00\x01\x00\x00WEBP",
    ):
        with pytest.raises(CorruptMedia):
            decode_image(magic + rng.bytes(4000), LIMITS)


def test_random_garbage_is_unsupported() -> None:
    data = np.random.default_rng(7).bytes(10_000)
    with pytest.raises(UnsupportedMediaType) as err:
        decode_image(data, LIMITS)
    assert err.value.status == 415 and "binary" in err.value.message


def test_jpeg_with_garbage_in_scan_data_decodes() -> None:
    # libjpeg resynchronises on damaged entropy-coded data; Pillow returns the picture.
    rgb = _photo()
    data = bytearray(encode(rgb, "JPEG", quality=90))
    middle = len(data) // 2
    data[middle : middle + 200] = np.random.default_rng(0).bytes(200)
    decoded = decode_image(bytes(data), LIMITS)
    out = _only(decoded)
    assert out.shape == rgb.shape
    assert _mae(out[:100], rgb[:100]) < 4.0  # rows before the damage are intact


MINIMAL_MP4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + b"\x00\x00\x00\x08free"


@pytest.mark.parametrize(
    ("data", "detected"),
    [
        (b"Hello, this is just a note.\nNothing to see.\n", "plain text"),
        (b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "PDF document"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(40), "ZIP archive"),
        (b"<!DOCTYPE html><html><body><img src=x></body></html>", "HTML document"),
        (
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10"'
            b' height="10"><rect width="10" height="10"/></svg>',
            "SVG image",
        ),
        (b"\x1f\x8b\x08\x00" + bytes(30), "gzip archive"),
        (b"\x00\x00\x01\x00\x01\x00\x10\x10" + bytes(40), "ICO icon"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(20), "HEIF/HEIC"),
    ],
)
def test_non_images_are_415(data: bytes, detected: str) -> None:
    with pytest.raises(UnsupportedMediaType) as err:
        decode_image(data, LIMITS, content_type="image/png")
    assert err.value.status == 415 and err.value.code == "unsupported_media_type"
    assert detected in err.value.message
    assert err.value.details["declared_content_type"] == "image/png"


@pytest.mark.parametrize(
    ("data", "detected"),
    [
        (MINIMAL_MP4, "MP4 video"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  " + bytes(16), "QuickTime video"),
        (b"\x1aE\xdf\xa3\x9fB\x86\x81\x01B\xf7\x81\x01" + bytes(20), "WebM/Matroska video"),
        (b"RIFF\x00\x10\x00\x00AVI LIST" + bytes(40), "AVI video"),
    ],
)
def test_videos_point_to_the_job_api(data: bytes, detected: str) -> None:
    with pytest.raises(UnsupportedMediaType) as err:
        decode_image(data, LIMITS, content_type="video/mp4")
    assert err.value.code == "unsupported_media_type"
    assert detected in err.value.message and "video job API" in err.value.message


def test_real_avi_from_opencv_doc_is_video() -> None:
    from tests.support.media import OPENCV_DOC

    path = OPENCV_DOC / "Megamind.avi"
    if not path.is_file():
        pytest.skip("opencv-doc not installed")
    with pytest.raises(UnsupportedMediaType, match="AVI video"):
        decode_image(path.read_bytes()[:100_000], LIMITS)


# --- size limits ------------------------------------------------------------------------------


def test_over_max_bytes_refused_before_decoding() -> None:
    data = encode(_photo(), "PNG")
    with pytest.raises(MediaTooLarge) as err:
        decode_image(data, MediaLimits(max_bytes=len(data) - 1))
    assert err.value.status == 413 and err.value.details["byte_size"] == len(data)
    with pytest.raises(MediaTooLarge):  # checked before even looking at the bytes
        decode_image(b"x" * 101, MediaLimits(max_bytes=100))


def test_pixel_and_side_limits() -> None:
    wide = _png(25_000, 4, 1, 0, (bytes(3125) for _ in range(4)))
    with pytest.raises(ImageTooLarge, match="longest side") as err:
        decode_image(wide, LIMITS)
    assert err.value.code == "image_too_large" and err.value.status == 413
    # 9000×9000 = 81 MP: over our 64 MP default, under Pillow's own bomb threshold.
    square = _png(9000, 9000, 1, 0, (bytes(1125) for _ in range(9000)))
    with pytest.raises(ImageTooLarge, match="81000000 pixels"):
        decode_image(square, LIMITS)
    ok = decode_image(encode(_photo(), "PNG"), MediaLimits(max_pixels=512 * 512, max_side=512))
    assert ok.width == 512


def test_huge_gif_header_refused() -> None:
    header = b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00"
    image = b"\x2c" + struct.pack("<HHHH", 0, 0, 65535, 65535) + b"\x00" + b"\x02\x02\x44\x01\x00"
    with pytest.raises(ImageTooLarge):
        decode_image(header + image + b"\x3b", LIMITS)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(_bomb_png())
    return path


def test_decompression_bomb_refused(bomb: Path) -> None:
    data = bomb.read_bytes()
    assert len(data) < 200_000
    with pytest.raises(ImageTooLarge) as err:
        decode_image(data, LIMITS)
    assert err.value.code == "image_too_large"
    # A limit above Pillow's own bomb threshold still refuses: our check is not needed
    # for Pillow's, and Pillow's error is mapped too.
    with pytest.raises(ImageTooLarge):
        decode_image(data, MediaLimits(max_pixels=10**10, max_side=50_000))


_BOMB_PROBE = """
import io, json, sys
from PIL import Image
from bastion.errors import ImageTooLarge
from bastion.media.image import decode_image
from bastion.media.types import MediaLimits

def peak_kb():
    # VmHWM: this process's own peak RSS (ru_maxrss would include the parent's after exec).
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")

data = open(sys.argv[1], "rb").read()
before = peak_kb()
try:
    decode_image(data, MediaLimits())
    outcome = "decoded"
except ImageTooLarge as exc:
    outcome = exc.code
after = peak_kb()
# Control: a 6000x6000 grey PNG really decoded must show up in the same measure.
buf = io.BytesIO()
Image.new("L", (6000, 6000)).save(buf, "PNG", compress_level=1)
control_before = peak_kb()
decode_image(buf.getvalue(), MediaLimits(), max_analysis_side=None)
control_after = peak_kb()
print(json.dumps({"outcome": outcome, "grown_kb": after - before,
                  "control_grown_kb": control_after - control_before}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_decompression_bomb_peak_memory_stays_small(bomb: Path) -> None:
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-c", _BOMB_PROBE, str(bomb)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=env,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["outcome"] == "image_too_large"
    grown_mb = report["grown_kb"] / 1024
    control_mb = report["control_grown_kb"] / 1024
    print(f"bomb: peak RSS +{grown_mb:.1f} MB; a real 6000x6000 decode: +{control_mb:.0f} MB")
    assert control_mb > 100  # the measure does see real pixel buffers
    assert grown_mb < 20


def test_png_metadata_bombs_refused() -> None:
    png = encode(_photo("skimage-coffee"), "PNG")
    blob = zlib.compress(bytes(20 * 1024 * 1024), 9)
    for chunk in (_chunk(b"zTXt", b"Comment\x00\x00" + blob), _chunk(b"iCCP", b"x\x00\x00" + blob)):
        with pytest.raises(CorruptMedia, match="metadata"):
            decode_image(png[:33] + chunk + png[33:], LIMITS)


# --- concurrency and global state ---------------------------------------------------------


def test_thread_safe_and_no_pillow_globals_touched() -> None:
    bombs_before = Image.MAX_IMAGE_PIXELS
    inputs = [
        encode(_photo(n), fmt)
        for n in ("skimage-astronaut", "sklearn-flower")
        for fmt in ("JPEG", "PNG", "WEBP")
    ]
    expected = [_only(decode_image(d, LIMITS)) for d in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda d: _only(decode_image(d, LIMITS)), inputs * 4))
    for i, got in enumerate(results):
        np.testing.assert_array_equal(got, expected[i % len(inputs)])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert bombs_before == Image.MAX_IMAGE_PIXELS
