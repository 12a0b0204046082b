"""Safe still and animated image decoding into bounded RGB uint8 frames.

The format is sniffed from the bytes (never from a file name or a declared content
type) and Pillow is only allowed to open it with that one plugin. Sizes are checked
before any pixel is decoded: the byte size first, then width × height and each side
from the header (``Image.open`` is lazy), then the frame count of animations. Pillow's
own decompression-bomb check still runs (its errors become :class:`ImageTooLarge`),
but the limits that count are the caller's :class:`MediaLimits`; no Pillow global is
read for them or changed.

Every frame is turned into RGB uint8: EXIF orientation first, then the pixel mode
(CMYK, 16-bit, ``I``/``F``, palettes and alpha, which is composited over white),
then an optional ICC conversion to sRGB.

``max_analysis_side`` bounds the arrays handed to analyzers (they work at ≤ 1280 px
or so). For baseline JPEGs much larger than that, the JPEG decoder is asked to scale
down by 2, 4 or 8 while decoding (``Image.draft``), which is several times faster and
uses a fraction of the memory; the result is never smaller than the requested side.
Any remaining excess is removed with an antialiased bilinear resize (Pillow's resize
filters scale their support when shrinking) that keeps the aspect ratio; it is three
times cheaper than Lanczos and the difference does not matter to analyzers.
``DecodedImage.width``/``height`` always describe the full-size picture (after EXIF
rotation), not the bounded arrays.

Animations (GIF, WebP, APNG) and multi-page TIFFs are walked frame by frame, so only
the current frame is held by the decoder; up to ``max_frames`` frames spread evenly
(first and last included) are kept.

Walking an animation is bounded before it starts, like the pixels of a still image.
Frames are drawn one over the other (Pillow composites each GIF, APNG and WebP frame
onto the full canvas in turn), so reaching the last sampled frame costs every frame
before it at canvas size, however tiny the frames themselves: 9,999 one-pixel frames
on a 2000×2000 canvas are 40 billion pixels of work in a 230 KB file. The frames and
the largest canvas are read from the file's structure first, counting no further than
``max_total_frames`` (Pillow's own ``n_frames`` walks a whole GIF or TIFF, which is
itself unbounded work): GIF blocks and TIFF directories are walked here, APNG and WebP
declare their frames in their headers. Frames walked × canvas pixels above
``max_animation_pixels`` is refused with 413 ``animation_too_large`` before a frame is
decoded; the same sum is kept while walking (a canvas can only grow) together with a
wall-clock budget, ``max_animation_decode_s``, as a last resort. Multi-page TIFF pages
are not composited: only the sampled pages are decoded, and their pixels count.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError, features

from bastion.errors import (
    BastionError,
    CorruptMedia,
    EmptyInput,
    ImageTooLarge,
    MediaTooLarge,
    UnsupportedMediaType,
)
from bastion.media.types import DecodedImage, Frame, MediaLimits

__all__ = ["Sniffed", "decode_image", "sniff"]

_SUPPORTED = "JPEG, PNG, GIF, WebP, BMP, TIFF or AVIF"
# Largest ICC profile that is parsed; real profiles are a few KB, rarely over 1 MB.
_MAX_ICC_BYTES = 4 * 1024 * 1024
_ANIMATED_FORMATS = frozenset({"GIF", "WEBP", "PNG"})
# formats whose frames are drawn over the previous ones: reaching frame n decodes 0..n
_COMPOSITED_FORMATS = _ANIMATED_FORMATS | {"AVIF"}
ANIMATION_TOO_LARGE = "animation_too_large"
# Stepping to the next frame costs Pillow 15-90 µs whatever the canvas, about what
# compositing this many pixels costs; each frame walked counts it on top of its canvas,
# so that frames of a pixel each are not free. Reaching a TIFF page parses every
# directory before it, at about 100 µs each.
_FRAME_STEP_PIXELS = 10_000
_PAGE_STEP_PIXELS = 50_000
# GIF data comes in sub-blocks of at most 255 bytes, each walked here in Python: encoders
# fill them (a 50 MB GIF has about 200,000), a hostile file of 1-byte ones would not
_MAX_GIF_BLOCKS = 2_000_000
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_ISO_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_ISO_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"mif2"}
)
_ISO_AUDIO_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P "})


@dataclass(frozen=True, slots=True)
class Sniffed:
    """What the leading bytes say the input is.

    ``kind`` is one of image, video, audio, document, archive, vector, text, unknown;
    ``pillow_format`` is set only for image formats this module decodes.
    """

    kind: str
    name: str
    pillow_format: str | None = None


def _iso_brands(data: bytes) -> set[bytes]:
    """Major and compatible brands of an ISO-BMFF ``ftyp`` box at offset 0."""
    size = int.from_bytes(data[:4], "big")
    end = min(len(data), size if 16 <= size <= 4096 else 64)
    brands = {data[8:12]}
    brands.update(data[i : i + 4] for i in range(16, end - 3, 4))
    return brands


def _sniff_iso(data: bytes) -> Sniffed:
    brands = _iso_brands(data)
    if brands & _ISO_AVIF_BRANDS:
        if features.check("avif"):
            return Sniffed("image", "AVIF", "AVIF")
        return Sniffed("image", "AVIF image (no AVIF decoder installed)")
    if brands & _ISO_HEIF_BRANDS:
        return Sniffed("image", "HEIF/HEIC image (no HEIF decoder installed)")
    if data[8:12] in _ISO_AUDIO_BRANDS:
        return Sniffed("audio", "MPEG-4 audio")
    if data[8:12] == b"qt  ":
        return Sniffed("video", "QuickTime video")
    if data[8:11] == b"3gp" or data[8:11] == b"3g2":
        return Sniffed("video", "3GPP video")
    return Sniffed("video", "MP4 video")


_MAGIC: tuple[tuple[bytes, Sniffed], ...] = (
    (b"\xff\xd8\xff", Sniffed("image", "JPEG", "JPEG")),
    (b"\x89PNG\r\n\x1a\n", Sniffed("image", "PNG", "PNG")),
    (b"GIF87a", Sniffed("image", "GIF", "GIF")),
    (b"GIF89a", Sniffed("image", "GIF", "GIF")),
    (b"II*\x00", Sniffed("image", "TIFF", "TIFF")),
    (b"MM\x00*", Sniffed("image", "TIFF", "TIFF")),
    (b"II+\x00", Sniffed("image", "TIFF", "TIFF")),
    (b"MM\x00+", Sniffed("image", "TIFF", "TIFF")),
    (b"\x1aE\xdf\xa3", Sniffed("video", "WebM/Matroska video")),
    (b"FLV\x01", Sniffed("video", "FLV video")),
    (b"\x00\x00\x01\xba", Sniffed("video", "MPEG video")),
    (b"\x00\x00\x01\xb3", Sniffed("video", "MPEG video")),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", Sniffed("video", "ASF/WMV video")),
    (b"OggS", Sniffed("audio", "Ogg media")),
    (b"fLaC", Sniffed("audio", "FLAC audio")),
    (b"ID3", Sniffed("audio", "MP3 audio")),
    (b"%PDF-", Sniffed("document", "PDF document")),
    (b"%!PS", Sniffed("document", "PostScript document")),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", Sniffed("document", "legacy Office document")),
    (b"PK\x03\x04", Sniffed("archive", "ZIP archive")),
    (b"PK\x05\x06", Sniffed("archive", "ZIP archive")),
    (b"\x1f\x8b", Sniffed("archive", "gzip archive")),
    (b"7z\xbc\xaf\x27\x1c", Sniffed("archive", "7-Zip archive")),
    (b"Rar!\x1a\x07", Sniffed("archive", "RAR archive")),
    (b"BZh", Sniffed("archive", "bzip2 archive")),
    (b"\xfd7zXZ\x00", Sniffed("archive", "xz archive")),
    (b"\x28\xb5\x2f\xfd", Sniffed("archive", "zstd archive")),
    (b"\x7fELF", Sniffed("unknown", "ELF executable")),
    (b"\x00\x00\x01\x00", Sniffed("image", "ICO icon")),
    (b"8BPS", Sniffed("image", "Photoshop document")),
    (b"\xffO\xffQ", Sniffed("image", "JPEG 2000 codestream")),
    (b"\x00\x00\x00\x0cjP  ", Sniffed("image", "JPEG 2000 image")),
    (b"\xff\x0a", Sniffed("image", "JPEG XL image")),
    (b"\x00\x00\x00\x0cJXL ", Sniffed("image", "JPEG XL image")),
)


def _sniff_text(head: bytes) -> Sniffed:
    text = head.removeprefix(b"\xef\xbb\xbf")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the sniff window is still text.
        if exc.start < len(text) - 4:
            return Sniffed("unknown", "unrecognised binary data")
        decoded = text[: exc.start].decode("utf-8")
    lowered = decoded.lstrip().lower()
    if "<svg" in lowered[:4096]:
        return Sniffed("vector", "SVG image")
    if lowered.startswith(("<!doctype html", "<html")) or "<html" in lowered[:1024]:
        return Sniffed("document", "HTML document")
    if lowered.startswith("<?xml"):
        return Sniffed("document", "XML document")
    controls = sum(1 for ch in decoded if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    if controls == 0:
        return Sniffed("text", "plain text")
    return Sniffed("unknown", "unrecognised binary data")


def sniff(data: bytes) -> Sniffed:
    """Identify the input from its leading bytes alone."""
    head = data[:8192]
    if head[:4] == b"RIFF" and len(head) >= 12:
        riff = head[8:12]
        if riff == b"WEBP":
            return Sniffed("image", "WebP", "WEBP")
        if riff == b"AVI ":
            return Sniffed("video", "AVI video")
        if riff == b"WAVE":
            return Sniffed("audio", "WAV audio")
        return Sniffed("unknown", "RIFF container")
    if head[4:8] == b"ftyp":
        return _sniff_iso(head)
    bmp_header = int.from_bytes(head[14:18], "little")
    if head[:2] == b"BM" and len(head) >= 18 and bmp_header in _BMP_HEADER_SIZES:
        return Sniffed("image", "BMP", "BMP")
    for magic, found in _MAGIC:
        if head.startswith(magic):
            return found
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return Sniffed("video", "MPEG transport stream video")
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] != 0xFF:
        return Sniffed("audio", "MPEG audio")
    return _sniff_text(head)


def _refuse(found: Sniffed, content_type: str | None) -> UnsupportedMediaType:
    details: dict[str, object] = {"detected": found.name}
    declared = ""
    if content_type:
        details["declared_content_type"] = content_type
        declared = f" (declared as {content_type})"
    if found.kind == "video":
        msg = (
            f"the input is {found.name}{declared}; videos are analysed through the "
            "video job API, not as images"
        )
    else:
        article = "an" if found.name[:1].lower() in "aeiou" else "a"
        msg = (
            f"unsupported media type: the input is {article} {found.name}{declared}; "
            f"send a {_SUPPORTED} image"
        )
    return UnsupportedMediaType(msg, details=details)


def _check_dimensions(width: int, height: int, limits: MediaLimits, what: str) -> None:
    if width <= 0 or height <= 0:
        raise CorruptMedia(f"{what} has an invalid size {width}×{height}")
    details = {"width": width, "height": height}
    if max(width, height) > limits.max_side:
        raise ImageTooLarge(
            f"{what} is {width}×{height}; the longest side may be at most {limits.max_side} pixels",
            details={**details, "max_side": limits.max_side},
        )
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"{what} is {width}×{height} = {width * height} pixels; at most "
            f"{limits.max_pixels} are accepted",
            details={**details, "max_pixels": limits.max_pixels},
        )


@dataclass(frozen=True, slots=True)
class _Census:
    """Frames and canvas of an animation, read from its structure without decoding.

    ``frames`` stops counting at the cap asked for plus one; ``canvas`` is the largest
    width and height any frame needs (GIF frames may reach past the logical screen,
    and Pillow then grows the canvas), None where the header size is all there is.
    """

    frames: int
    canvas: tuple[int, int] | None = None


def _gif_census(data: bytes, cap: int) -> _Census:
    """Walk the GIF block structure as Pillow reads it, counting at most ``cap + 1``
    image descriptors; no pixel data is decompressed."""
    size = len(data)
    if size < 13:
        return _Census(1)
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    pos = 13 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)
    frames = blocks = 0

    def skip_sub_blocks(at: int) -> int:
        nonlocal blocks
        while at < size:
            length = data[at]
            at += 1 + length
            blocks += 1
            if not length:
                break
        if blocks > _MAX_GIF_BLOCKS:
            raise ImageTooLarge(
                f"the GIF is cut into more than {_MAX_GIF_BLOCKS} data blocks",
                details={"max_blocks": _MAX_GIF_BLOCKS},
            )
        return at

    while pos < size and frames <= cap:
        marker = data[pos]
        if marker == 0x3B:  # trailer
            break
        if marker == 0x21:  # extension: a label, then sub-blocks
            pos = skip_sub_blocks(pos + 2)
        elif marker == 0x2C:  # image descriptor: x, y, width, height, flags
            if pos + 10 > size:
                break
            x, y, w, h, local = struct.unpack_from("<HHHHB", data, pos + 1)
            width, height = max(width, x + w), max(height, y + h)
            pos += 10 + ((3 << ((local & 7) + 1)) if local & 0x80 else 0)
            pos = skip_sub_blocks(pos + 1)  # after the LZW minimum code size
            frames += 1
        else:  # Pillow skips stray bytes between blocks
            pos += 1
    return _Census(max(frames, 1), (width, height))


def _tiff_census(data: bytes, cap: int) -> _Census:
    """Count the image file directories of a (Big)TIFF, at most ``cap + 1``, by their
    chain of offsets alone; a chain that loops or leaves the file ends the count."""
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 16:
        return _Census(1)
    (magic,) = struct.unpack_from(order + "H", data, 2)
    if magic == 43:  # BigTIFF: 8-byte offsets and counts, 20-byte entries
        count_fmt, next_fmt, entry = order + "Q", order + "Q", 20
        (offset,) = struct.unpack_from(order + "Q", data, 8)
    else:
        count_fmt, next_fmt, entry = order + "H", order + "I", 12
        (offset,) = struct.unpack_from(order + "I", data, 4)
    count_size, next_size = struct.calcsize(count_fmt), struct.calcsize(next_fmt)
    pages = 0
    seen: set[int] = set()
    while offset and offset not in seen and pages <= cap:
        if offset + count_size > len(data):
            break
        seen.add(offset)
        pages += 1
        (entries,) = struct.unpack_from(count_fmt, data, offset)
        link = offset + count_size + entries * entry
        if link + next_size > len(data):
            break
        (offset,) = struct.unpack_from(next_fmt, data, link)
    return _Census(max(pages, 1))


def _census(data: bytes, pillow_format: str, limits: MediaLimits) -> _Census | None:
    """Bounded frame count (and GIF canvas) for formats whose Pillow count is unbounded
    work; None for the others, whose headers declare their frames."""
    if pillow_format == "GIF":
        return _gif_census(data, limits.max_total_frames)
    if pillow_format == "TIFF":
        return _tiff_census(data, limits.max_total_frames)
    return None


def _animation_too_large(message: str, **details: object) -> ImageTooLarge:
    return ImageTooLarge(message, code=ANIMATION_TOO_LARGE, details=details)


def _check_walk(walked: int, canvas: tuple[int, int], step: int, limits: MediaLimits) -> None:
    """Refuse an animation whose walk is more than ``max_animation_pixels`` of work:
    each frame walked counts its canvas plus ``step``."""
    cost = walked * (canvas[0] * canvas[1] + step)
    if cost > limits.max_animation_pixels:
        raise _animation_too_large(
            f"reaching the sampled frames means stepping through {walked} frames on a "
            f"{canvas[0]}×{canvas[1]} canvas, {cost} pixels of work; at most "
            f"{limits.max_animation_pixels} are accepted",
            frames=walked,
            canvas_width=canvas[0],
            canvas_height=canvas[1],
            pixels=cost,
            max_animation_pixels=limits.max_animation_pixels,
        )


def _sample_indices(total: int, wanted: int) -> list[int]:
    """``wanted`` frame indices spread evenly over ``total``, first and last included."""
    if total <= wanted:
        return list(range(total))
    if wanted == 1:
        return [0]
    return sorted({round(i * (total - 1) / (wanted - 1)) for i in range(wanted)})


def _scale_to_uint8(values: np.ndarray, warnings: list[str], mode: str) -> np.ndarray:
    """Map a single-channel 16-bit, 32-bit integer or float array onto 0..255."""
    if values.dtype.kind == "u" and values.dtype.itemsize == 2:
        wide = values.astype(np.uint32)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)
    data = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if np.issubdtype(values.dtype, np.floating) and low >= 0.0 and high <= 1.0:
        return np.rint(data * 255.0).astype(np.uint8)
    if low >= 0.0 and high <= 255.0:
        return np.rint(data).astype(np.uint8)
    if low >= 0.0 and high <= 65535.0 and not np.issubdtype(values.dtype, np.floating):
        return np.rint(data / 257.0).astype(np.uint8)
    warnings.append(f"{mode} pixel values {low:g}..{high:g} were stretched to 0..255")
    if high <= low:
        return np.zeros(data.shape, dtype=np.uint8)
    return np.rint((data - low) * (255.0 / (high - low))).astype(np.uint8)


def _normalise_mode(img: Image.Image, warnings: list[str]) -> Image.Image:
    """Return an 8-bit RGB, RGBA or CMYK image."""
    mode = img.mode
    if mode in ("RGB", "RGBA", "CMYK"):
        return img
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        return img.convert("RGBA")
    if mode in ("L", "1") and "transparency" in img.info:
        return img.convert("RGBA")
    if mode.startswith("I;16") or mode in ("I", "F"):
        grey = _scale_to_uint8(np.asarray(img), warnings, mode)
        return Image.fromarray(grey, mode="L").convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError as exc:
        raise UnsupportedMediaType(f"pixel mode {mode} cannot be converted to RGB") from exc


def _bound(img: Image.Image, max_side: int | None) -> Image.Image:
    width, height = img.size
    longest = max(width, height)
    if max_side is None or longest <= max_side:
        return img
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


class _ColourManager:
    """Converts one image's frames from its embedded ICC profile to sRGB."""

    def __init__(self, icc: object, warnings: list[str]) -> None:
        self._warnings = warnings
        self._profile: ImageCms.ImageCmsProfile | None = None
        self._space = ""
        self._transforms: dict[str, ImageCms.ImageCmsTransform] = {}
        if not isinstance(icc, bytes) or not icc:
            return
        if len(icc) > _MAX_ICC_BYTES:
            warnings.append(f"ICC profile of {len(icc)} bytes ignored (too large)")
            return
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            description = profile.profile.profile_description or ""
            space = profile.profile.xcolor_space.strip()
        except (OSError, ValueError, TypeError, ImageCms.PyCMSError) as exc:
            warnings.append(f"unreadable ICC profile ignored ({exc})")
            return
        # Most photos carry an sRGB profile: converting sRGB to sRGB would only cost time.
        if space == "RGB" and "srgb" in description.lower():
            return
        self._profile = profile
        self._space = space

    def apply(self, img: Image.Image) -> Image.Image:
        if self._profile is None:
            return img
        space = "CMYK" if img.mode == "CMYK" else "RGB"
        if space != self._space:
            self._warnings.append(f"{self._space} ICC profile does not match {img.mode} pixels")
            self._profile = None
            return img
        out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
        try:
            transform = self._transforms.get(img.mode)
            if transform is None:
                transform = ImageCms.buildTransform(
                    self._profile, ImageCms.createProfile("sRGB"), img.mode, out_mode
                )
                self._transforms[img.mode] = transform
            return transform.apply(img)
        except (OSError, ValueError, ImageCms.PyCMSError) as exc:
            self._warnings.append(f"ICC profile could not be applied ({exc}); colours kept")
            self._profile = None
            return img


def _to_rgb(
    img: Image.Image,
    orientation: int,
    max_side: int | None,
    colour: _ColourManager,
    warnings: list[str],
) -> np.ndarray:
    method = _TRANSPOSE.get(orientation)
    if method is not None:
        img = img.transpose(method)
    img = _normalise_mode(img, warnings)
    img = _bound(img, max_side)
    img = colour.apply(img)
    if img.mode == "RGBA":
        rgba = np.asarray(img)
        alpha = rgba[..., 3:4].astype(np.uint16)
        blended = (rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255
        rgb = blended.astype(np.uint8)
    else:
        rgb = np.asarray(img.convert("RGB") if img.mode != "RGB" else img)
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    rgb.setflags(write=False)
    return rgb


def _orientation(img: Image.Image, warnings: list[str]) -> int:
    try:
        value = img.getexif().get(0x0112, 1)
        orientation = int(value)
    except Exception as exc:  # Malformed EXIF must not stop decoding.
        warnings.append(f"unreadable EXIF metadata ignored ({type(exc).__name__})")
        return 1
    if orientation not in range(1, 9):
        warnings.append(f"invalid EXIF orientation {orientation} ignored")
        return 1
    return orientation


def _frame_count(img: Image.Image, fmt: str, census: _Census | None, warnings: list[str]) -> int:
    total = census.frames if census is not None else int(getattr(img, "n_frames", 1))
    if total > 1 and img.format == "MPO":
        warnings.append(f"multi-picture JPEG: only the primary of {total} images decoded")
        return 1
    if fmt == "AVIF" and total > 1 and not getattr(img, "is_animated", False):
        return 1
    return max(total, 1)


def _apply_draft(img: Image.Image, max_side: int | None) -> None:
    """Let the JPEG decoder scale down by 2/4/8 while staying ≥ ``max_side``."""
    if max_side is None or img.format not in ("JPEG", "MPO"):
        return
    width, height = img.size
    scale = max(width, height) / max_side
    if scale < 2:
        return
    img.draft(None, (math.ceil(width / scale), math.ceil(height / scale)))


def _decode_opened(
    img: Image.Image,
    found: Sniffed,
    limits: MediaLimits,
    max_side: int | None,
    warnings: list[str],
    census: _Census | None,
) -> tuple[list[Frame], str, int, int, int]:
    fmt = found.pillow_format or ""
    width, height = img.size
    _check_dimensions(width, height, limits, "the image")
    original_mode = img.mode
    total = _frame_count(img, fmt, census, warnings)
    if total > limits.max_total_frames:
        # a census stops counting at the limit plus one: "more than" the limit, not exact
        counted = f"more than {total - 1}" if census is not None else str(total)
        raise MediaTooLarge(
            f"the animation has {counted} frames; at most {limits.max_total_frames} are accepted",
            details={"total_frames": total, "max_total_frames": limits.max_total_frames},
        )
    if total == 1:
        _apply_draft(img, max_side)
    timed = total > 1 and fmt in _ANIMATED_FORMATS
    wanted = _sample_indices(total, limits.max_frames)
    keep = set(wanted)
    composited = total > 1 and fmt in _COMPOSITED_FORMATS
    walked = wanted[-1] + 1
    step = _FRAME_STEP_PIXELS if composited else _PAGE_STEP_PIXELS
    if composited:
        canvas = census.canvas if census is not None and census.canvas else img.size
        canvas = (max(canvas[0], width), max(canvas[1], height))
        _check_dimensions(*canvas, limits, "the animation canvas")
        _check_walk(walked, canvas, step, limits)
    elif total > 1:  # pages: stepped over, and only the sampled ones decoded
        _check_walk(walked, (0, 0), step, limits)
    deadline = time.monotonic() + limits.max_animation_decode_s
    spent = 0  # the work done so far, counted as _check_walk counts it
    frames: list[Frame] = []
    orientation = 1
    colour = _ColourManager(img.info.get("icc_profile"), warnings)
    elapsed = 0
    last = -1
    # composited frames are drawn one after the other; pages are reached directly
    for index in range(walked) if composited else wanted:
        if index:
            if time.monotonic() > deadline:
                raise _animation_too_large(
                    f"walking the frames took more than {limits.max_animation_decode_s} s "
                    f"(stopped at frame {index} of {total})",
                    frames=total,
                    max_animation_decode_s=limits.max_animation_decode_s,
                )
            img.seek(index)
            _check_dimensions(*img.size, limits, f"frame {index}")
        if total > 1:
            spent += (index - last) * step + img.size[0] * img.size[1]
            if spent > limits.max_animation_pixels:
                raise _animation_too_large(
                    f"decoding the sampled frames takes more than "
                    f"{limits.max_animation_pixels} pixels of work (reached at frame {index})",
                    frames=total,
                    max_animation_pixels=limits.max_animation_pixels,
                )
        last = index
        img.load()
        if index == 0:
            orientation = _orientation(img, warnings)
        if index in keep:
            rgb = _to_rgb(img, orientation, max_side, colour, warnings)
            stamp = elapsed if timed else None
            frames.append(Frame(rgb=rgb, index=index, timestamp_ms=stamp))
        duration = img.info.get("duration")
        if isinstance(duration, int | float) and math.isfinite(duration) and duration > 0:
            elapsed += int(duration)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return frames, original_mode, width, height, total


def _is_image_type(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower().startswith("image/")


def decode_image(
    data: bytes,
    limits: MediaLimits,
    *,
    content_type: str | None = None,
    max_analysis_side: int | None = 2048,
) -> DecodedImage:
    """Decode an image or animation safely into RGB uint8 frames.

    ``content_type`` is only used in messages and warnings: the bytes decide.
    ``max_analysis_side`` bounds the longest side of the returned frames (``None``
    keeps the full size); huge JPEGs are reduced while decoding.

    Raises :class:`EmptyInput`, :class:`MediaTooLarge`, :class:`UnsupportedMediaType`,
    :class:`ImageTooLarge` or :class:`CorruptMedia`; nothing else for bad input.
    """
    if max_analysis_side is not None and max_analysis_side < 1:
        raise ValueError("max_analysis_side must be positive or None")
    if not data:
        raise EmptyInput("the input is empty (0 bytes)")
    byte_size = len(data)
    if byte_size > limits.max_bytes:
        raise MediaTooLarge(
            f"the input is {byte_size} bytes; at most {limits.max_bytes} are accepted",
            details={"byte_size": byte_size, "max_bytes": limits.max_bytes},
        )
    found = sniff(data)
    if found.pillow_format is None:
        raise _refuse(found, content_type)
    warnings: list[str] = []
    if content_type and not _is_image_type(content_type):
        warnings.append(
            f"declared content type {content_type!r} ignored: the bytes are {found.name}"
        )
    try:
        census = _census(data, found.pillow_format, limits)
        with Image.open(io.BytesIO(data), formats=[found.pillow_format]) as img:
            frames, mode, width, height, total = _decode_opened(
                img, found, limits, max_analysis_side, warnings, census
            )
    except BastionError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"the image is too large to decode safely: {exc}") from exc
    except MemoryError as exc:
        raise ImageTooLarge("not enough memory to decode the image") from exc
    except UnidentifiedImageError as exc:
        raise CorruptMedia(f"the input starts like {found.name} but is not readable") from exc
    except ValueError as exc:
        if "MAX_TEXT" in str(exc):
            raise CorruptMedia(
                f"the {found.name} carries a compressed metadata chunk (text or ICC "
                "profile) that expands beyond the safe limit"
            ) from exc
        raise CorruptMedia(f"corrupt or truncated {found.name}: {exc}") from exc
    except Exception as exc:  # Any other decoder failure means damaged input.
        raise CorruptMedia(f"corrupt or truncated {found.name}: {exc}") from exc
    return DecodedImage(
        frames=tuple(frames),
        format=found.pillow_format,
        mode=mode,
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
        byte_size=byte_size,
        total_frames=total,
        warnings=tuple(warnings),
    )
