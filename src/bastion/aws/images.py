"""Rekognition's image operations on Bastion's analyzers: DetectModerationLabels,
DetectLabels, DetectText and DetectFaces (:data:`OPERATIONS`).

Every operation moderates the image the one way Bastion moderates an uploaded image
(:class:`~bastion.pipeline.moderation.Moderation`, as ``POST /v1/moderate`` does): the
tenant's default policy and lists, the in-memory cache, the tenant's stored results (the
result is kept there, so the same bytes are analysed once whichever door they come
through), an analysis slot, the statistics of the synchronous API. The four operations
are four views of that one result: the same bytes sent to DetectLabels after
DetectModerationLabels are not analysed again.

Bastion's own result stays reachable: the answer carries the response headers
:data:`DECISION_HEADER` (``allow``, ``review`` or ``block`` under the tenant's policy),
:data:`POLICY_HEADER` (``name@version``) and :data:`SHA256_HEADER` (the image's sha256);
``POST /v1/moderate`` with the same bytes answers the whole stored result without
analysing again.

Parameters are validated here, as Rekognition validates them (botocore checks almost
nothing): a member the service model does not have for the operation is
``InvalidParameterException`` (Rekognition's clients never send one; a hand-written
client's typo must not pass silently as a default), ``null`` is taken as absent. The
image:

- exactly one of ``Image.Bytes`` (base64 in the JSON body, decoded strictly: the
  standard alphabet with its padding, as every AWS SDK sends it) and ``Image.S3Object``
  (:mod:`bastion.aws.s3`); bad base64 is ``InvalidParameterException``;
- over ``aws.max_image_bytes`` (5 MB) as bytes: ``ImageTooLargeException``;
- not an image Bastion decodes, or corrupt: ``InvalidImageFormatException``; JPEG and PNG
  as Rekognition, and the other formats Bastion reads (WebP, GIF, ...);
- a side under ``aws.min_image_side`` (80 px): ``InvalidParameterException``, as
  Rekognition answers for an image too small.

What each answer holds, and what it leaves out because Bastion does not know it:

- DetectModerationLabels: the labels of :mod:`bastion.aws.taxonomy` (v7 names, parents
  and levels) at or above ``MinConfidence`` (default 50), ``ModerationModelVersion``
  ``7.0``. No ``ContentTypes``: no analyzer tells animated or illustrated content from
  photos. ``HumanLoopConfig`` is refused (no Amazon A2I); a ``ProjectVersion`` (a
  Rekognition adapter) names nothing Bastion has: ``ResourceNotFoundException``.
- DetectLabels: the ``labels`` analyzer's image classes (ImageNet, title-cased) at or
  above ``MinConfidence`` (default 55, as Rekognition), at most ``MaxLabels`` (default
  1000); ``Instances`` with their ``BoundingBox`` (ratios of the width and height) for
  classes a detector located, otherwise empty; ``Parents``, ``Aliases`` and
  ``Categories`` empty (the classes have no hierarchy Bastion could answer).
  ``Features`` ``IMAGE_PROPERTIES``, its settings and label category filters are refused.
- DetectText: each line the OCR read (``LINE``) and its words (``WORD``, ``ParentId`` the
  line's ``Id``). The OCR locates lines: a word's box is the part of its line's box its
  characters take (an estimate by character count), its confidence the line's.
  ``Filters`` apply (``WordFilter``, ``RegionsOfInterest`` by box) as Rekognition
  documents them.
- DetectFaces: ``BoundingBox`` of every face found. The face detector gives no
  confidence, landmarks, pose or quality, so none are answered; ``Attributes`` ``DEFAULT``
  and ``ALL`` (everything there is) are accepted, a named attribute (``AGE_RANGE``, ...)
  is refused.

Animated images: moderation labels are the strongest over the frames analysed; text,
faces and located labels are those of the first frame analysed.
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi.concurrency import run_in_threadpool

from bastion.aws import s3, taxonomy
from bastion.aws.call import AwsCall, AwsError, Handler, Params
from bastion.errors import BastionError, ImageTooLarge, MediaTooLarge
from bastion.media.types import DecodedImage
from bastion.results import Box, ModerationResult

__all__ = ["DECISION_HEADER", "OPERATIONS", "POLICY_HEADER", "SHA256_HEADER"]

DECISION_HEADER = "Bastion-Decision"
"""Response header: Bastion's decision for the image under the tenant's policy."""
POLICY_HEADER = "Bastion-Policy"
"""Response header: the policy that decided, as ``name@version``."""
SHA256_HEADER = "Bastion-Image-Sha256"
"""Response header: the sha256 of the image's bytes (its stored result's key)."""

_SCOPE = "moderate"
_PROJECT_VERSION = re.compile(
    r"^arn:[a-z\d-]+:rekognition:[a-z\d-]+:\d{12}:project/[a-zA-Z0-9_.\-]{1,255}"
    r"/version/[a-zA-Z0-9_.\-]{1,255}/[0-9]+$"
)
_FACE_ATTRIBUTES = frozenset(
    {
        "AGE_RANGE",
        "BEARD",
        "EMOTIONS",
        "EYE_DIRECTION",
        "EYEGLASSES",
        "EYES_OPEN",
        "GENDER",
        "MOUTH_OPEN",
        "MUSTACHE",
        "FACE_OCCLUDED",
        "SMILE",
        "SUNGLASSES",
    }
)
_LABEL_FEATURES = frozenset({"GENERAL_LABELS", "IMAGE_PROPERTIES"})
_DEFAULT_MAX_LABELS = 1000
_PRODUCT_PREFIX = "product:"


# -- errors and parameters ----------------------------------------------------------------


def invalid(message: str) -> AwsError:
    """``InvalidParameterException`` with ``message``."""
    return AwsError("InvalidParameterException", message)


def _known(params: Params, allowed: frozenset[str], where: str) -> dict[str, Any]:
    """``params`` without null members; any member not in ``allowed`` is refused."""
    if not isinstance(params, Mapping):
        raise invalid(f"{where} must be a JSON object")
    present = {k: v for k, v in params.items() if v is not None}
    unknown = sorted(set(present) - allowed)
    if unknown:
        raise invalid(f"{where} has members this operation does not take: {', '.join(unknown)}")
    return present


def _percent(value: Any, name: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid(f"{name} must be a number from 0 to 100")
    if not 0 <= value <= 100:
        raise invalid(f"{name} must be from 0 to 100, not {value}")
    return float(value)


def _ratio(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid(f"{name} must be a number from 0 to 1")
    if not 0 <= value <= 1:
        raise invalid(f"{name} must be from 0 to 1, not {value}")
    return float(value)


def _uint(value: Any, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid(f"{name} must be a whole number of at least 0")
    return value


def _strings(value: Any, name: str, *, most: int | None = None) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(f"{name} must be a list of strings")
    if most is not None and len(value) > most:
        raise invalid(f"{name} takes at most {most} items")
    return list(value)


def _float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid(f"{name} must be a number")
    return float(value)


# -- the image ------------------------------------------------------------------------------


def _b64_bytes(text: Any, max_bytes: int) -> bytes:
    """``Image.Bytes`` decoded: standard base64 with its padding, nothing else."""
    if not isinstance(text, str):
        raise invalid("Image.Bytes must be a base64 string")
    if not text:
        raise invalid("Image.Bytes is empty")
    if len(text) // 4 * 3 > max_bytes + 3:
        raise AwsError(
            "ImageTooLargeException",
            f"the image is over the limit of {max_bytes} bytes sent as Image.Bytes",
        )
    try:
        data = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise invalid("Image.Bytes is not valid base64") from None
    if not data:
        raise invalid("Image.Bytes is empty")
    if len(data) > max_bytes:
        raise AwsError(
            "ImageTooLargeException",
            f"the image is {len(data)} bytes; at most {max_bytes} are accepted as Image.Bytes",
        )
    return data


async def _image_bytes(call: AwsCall, image: Any) -> bytes:
    """The bytes ``Image`` names: inline or read from an S3 object."""
    if not isinstance(image, Mapping):
        raise invalid("Image is required: an object with Bytes or S3Object")
    fields = _known(image, frozenset({"Bytes", "S3Object"}), "Image")
    if ("Bytes" in fields) == ("S3Object" in fields):
        raise invalid("Image must have exactly one of Bytes and S3Object")
    limit = call.svc.settings.aws.max_image_bytes
    if "Bytes" in fields:
        text = fields["Bytes"]
        if isinstance(text, str) and len(text) > 64 * 1024:
            return await run_in_threadpool(_b64_bytes, text, limit)
        return _b64_bytes(text, limit)
    return await s3.read_s3_image(
        call, fields["S3Object"], max_bytes=call.svc.settings.aws.max_s3_image_bytes
    )


async def _decode(call: AwsCall, data: bytes) -> DecodedImage:
    """``data`` decoded by Moderation within Bastion's limits, and at least the smallest
    side Rekognition takes."""
    try:
        decoded = await call.svc.moderation.decode(data)
    except (ImageTooLarge, MediaTooLarge) as exc:
        raise AwsError("ImageTooLargeException", exc.message) from None
    except BastionError as exc:
        raise AwsError(
            "InvalidImageFormatException", f"Request has invalid image format: {exc.message}"
        ) from None
    side = call.svc.settings.aws.min_image_side
    if decoded.width < side or decoded.height < side:
        raise invalid(
            f"the image is {decoded.width}x{decoded.height} pixels; "
            f"its width and height must be at least {side}"
        )
    return decoded


@dataclass(frozen=True, slots=True)
class Moderated:
    """An image as moderated: Bastion's result and the size of the frames it was
    analysed at (boxes are in those pixels)."""

    result: ModerationResult
    width: int
    height: int
    first_frame: int | None

    def headers(self) -> dict[str, str]:
        """The response headers that lead to Bastion's own result."""
        res = self.result
        out = {
            DECISION_HEADER: res.decision,
            POLICY_HEADER: f"{res.policy}@{res.policy_version}",
        }
        sha = res.hashes.get("sha256")
        if isinstance(sha, str):
            out[SHA256_HEADER] = sha
        return out

    def ratio_box(self, box: Box) -> dict[str, float]:
        """``box`` (pixels of the analysed frame) as Rekognition's ``BoundingBox``."""
        w, h = float(self.width), float(self.height)
        return {
            "Width": _clip(box.width / w),
            "Height": _clip(box.height / h),
            "Left": _clip(box.x / w),
            "Top": _clip(box.y / h),
        }

    def on_first_frame(self, frame: int | None) -> bool:
        return frame is None or frame == self.first_frame


def _clip(v: float) -> float:
    return round(min(1.0, max(0.0, v)), 6)


async def _moderate(call: AwsCall, image: Any) -> Moderated:
    """Moderate ``image`` for the caller's tenant under its default policy, as
    ``POST /v1/moderate`` does (:func:`bastion.api.moderate.moderate_input`)."""
    who = call.principal
    if not who.has(_SCOPE):
        raise AwsError(
            "AccessDeniedException", f"this access key lacks the '{_SCOPE}' scope", status=400
        )
    svc = call.svc
    data = await _image_bytes(call, image)
    async with svc.admission.slot():
        decoded = await _decode(call, data)
        policy, lists = await run_in_threadpool(svc.policies.resolve, who.tenant_id, None)
        async with svc.inflight:
            result = await svc.moderation.moderate_decoded(
                decoded, policy, tenant=who.tenant_id, extra_lists=lists, store=True, source="api"
            )
    frame = decoded.frames[0]
    first = frame.index if decoded.animated else None
    return Moderated(result, frame.width, frame.height, first)


def _with_headers(call: AwsCall, moderated: Moderated, body: dict[str, Any]) -> dict[str, Any]:
    call.headers.update(moderated.headers())
    return body


# -- DetectModerationLabels -----------------------------------------------------------------


async def detect_moderation_labels(call: AwsCall, params: Params) -> dict[str, Any]:
    """Moderation labels in the v7 taxonomy (:mod:`bastion.aws.taxonomy`)."""
    p = _known(
        params,
        frozenset({"Image", "MinConfidence", "HumanLoopConfig", "ProjectVersion"}),
        "DetectModerationLabels",
    )
    min_conf = _percent(p.get("MinConfidence"), "MinConfidence", 50.0)
    if "HumanLoopConfig" in p:
        raise invalid(
            "HumanLoopConfig is not supported: Bastion has no Amazon A2I human loops; "
            "use Bastion's review queue (a `review` decision) instead"
        )
    project = p.get("ProjectVersion")
    if project is not None:
        if (
            not isinstance(project, str)
            or not 20 <= len(project) <= 2048
            or not _PROJECT_VERSION.match(project)
        ):
            raise invalid("ProjectVersion must be a Rekognition project version ARN")
        raise AwsError(
            "ResourceNotFoundException",
            "ProjectVersion names a Rekognition adapter; Bastion has none "
            "(its tenant models apply through the tenant's policy)",
        )
    moderated = await _moderate(call, p.get("Image"))
    scored = taxonomy.to_v7((lab.name, lab.confidence) for lab in moderated.result.labels)
    labels = [
        {
            "Confidence": round(s.confidence, 3),
            "Name": s.label.name,
            "ParentName": s.label.parent,
            "TaxonomyLevel": s.label.level,
        }
        for s in scored
        if s.confidence >= min_conf
    ]
    body = {"ModerationLabels": labels, "ModerationModelVersion": taxonomy.MODEL_VERSION}
    return _with_headers(call, moderated, body)


# -- DetectLabels ---------------------------------------------------------------------------


def _label_name(tag: str) -> str:
    name = tag.removeprefix(_PRODUCT_PREFIX)
    return " ".join(w[:1].upper() + w[1:] for w in name.replace("_", " ").split())


@dataclass
class _LabelFilters:
    include: set[str]
    exclude: set[str]

    def keeps(self, name: str) -> bool:
        folded = name.casefold()
        if self.include and folded not in self.include:
            return False
        return folded not in self.exclude


def _label_settings(value: Any) -> _LabelFilters:
    if value is None:
        return _LabelFilters(set(), set())
    settings = _known(value, frozenset({"GeneralLabels", "ImageProperties"}), "Settings")
    if "ImageProperties" in settings:
        raise invalid("Settings.ImageProperties is not supported: no image properties")
    general = settings.get("GeneralLabels") or {}
    if not isinstance(general, Mapping):
        raise invalid("Settings.GeneralLabels must be an object")
    g = _known(
        general,
        frozenset(
            {
                "LabelInclusionFilters",
                "LabelExclusionFilters",
                "LabelCategoryInclusionFilters",
                "LabelCategoryExclusionFilters",
            }
        ),
        "Settings.GeneralLabels",
    )
    for key in ("LabelCategoryInclusionFilters", "LabelCategoryExclusionFilters"):
        if g.get(key):
            raise invalid(
                f"Settings.GeneralLabels.{key} is not supported: labels have no categories"
            )
    include = _strings(g.get("LabelInclusionFilters", []), "LabelInclusionFilters", most=100)
    exclude = _strings(g.get("LabelExclusionFilters", []), "LabelExclusionFilters", most=100)
    return _LabelFilters({s.casefold() for s in include}, {s.casefold() for s in exclude})


async def detect_labels(call: AwsCall, params: Params) -> dict[str, Any]:
    """Image classes of the ``labels`` analyzer, with the boxes detectors gave."""
    p = _known(
        params,
        frozenset({"Image", "MaxLabels", "MinConfidence", "Features", "Settings"}),
        "DetectLabels",
    )
    most = _uint(p.get("MaxLabels"), "MaxLabels", _DEFAULT_MAX_LABELS)
    min_conf = _percent(p.get("MinConfidence"), "MinConfidence", 55.0)
    if "Features" in p:
        features = _strings(p["Features"], "Features", most=2)
        unknown = sorted(set(features) - _LABEL_FEATURES)
        if unknown:
            raise invalid(f"Features has unknown values: {', '.join(unknown)}")
        if "IMAGE_PROPERTIES" in features:
            raise invalid("Features IMAGE_PROPERTIES is not supported: no image properties")
    filters = _label_settings(p.get("Settings"))
    moderated = await _moderate(call, p.get("Image"))
    best: dict[str, float] = {}
    boxes: dict[str, list[dict[str, Any]]] = {}
    versions: set[str] = set()
    for tag in moderated.result.tags:
        if not moderated.on_first_frame(tag.frame):
            continue
        name = _label_name(tag.name)
        if not name or not filters.keeps(name):
            continue
        best[name] = max(best.get(name, 0.0), tag.confidence)
        versions.add(tag.version)
        if tag.box is not None:
            boxes.setdefault(name, []).append(
                {"BoundingBox": moderated.ratio_box(tag.box), "Confidence": tag.confidence}
            )
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
    labels = [
        {
            "Name": name,
            "Confidence": conf,
            "Instances": boxes.get(name, []),
            "Parents": [],
            "Aliases": [],
            "Categories": [],
        }
        for name, conf in ranked
        if conf >= min_conf
    ][:most]
    body: dict[str, Any] = {"Labels": labels}
    if versions:
        body["LabelModelVersion"] = ",".join(sorted(versions))
    return _with_headers(call, moderated, body)


# -- DetectText -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _WordFilter:
    min_confidence: float
    min_height: float
    min_width: float
    regions: tuple[tuple[float, float, float, float], ...]

    def keeps(self, confidence: float, box: dict[str, float]) -> bool:
        if confidence < self.min_confidence:
            return False
        if box["Height"] < self.min_height or box["Width"] < self.min_width:
            return False
        if not self.regions:
            return True
        return any(_inside(box, region) for region in self.regions)


def _inside(box: dict[str, float], region: tuple[float, float, float, float]) -> bool:
    """Whether at least half of ``box`` lies in ``region`` (left, top, width, height),
    Rekognition's rule for text in a region of interest."""
    left, top, width, height = region
    ix = max(0.0, min(box["Left"] + box["Width"], left + width) - max(box["Left"], left))
    iy = max(0.0, min(box["Top"] + box["Height"], top + height) - max(box["Top"], top))
    area = box["Width"] * box["Height"]
    return area > 0 and ix * iy >= 0.5 * area


def _text_filters(value: Any) -> _WordFilter:
    if value is None:
        return _WordFilter(0.0, 0.0, 0.0, ())
    f = _known(value, frozenset({"WordFilter", "RegionsOfInterest"}), "Filters")
    word = _known(
        f.get("WordFilter") or {},
        frozenset({"MinConfidence", "MinBoundingBoxHeight", "MinBoundingBoxWidth"}),
        "Filters.WordFilter",
    )
    regions: list[tuple[float, float, float, float]] = []
    rois = f.get("RegionsOfInterest", [])
    if not isinstance(rois, list) or len(rois) > 10:
        raise invalid("Filters.RegionsOfInterest must be a list of at most 10 regions")
    for i, roi in enumerate(rois):
        where = f"Filters.RegionsOfInterest[{i}]"
        r = _known(roi, frozenset({"BoundingBox", "Polygon"}), where)
        if "Polygon" in r:
            raise invalid(f"{where}.Polygon is not supported: give a BoundingBox")
        if "BoundingBox" not in r:
            raise invalid(f"{where} needs a BoundingBox")
        b = _known(r["BoundingBox"], frozenset({"Width", "Height", "Left", "Top"}), where)
        vals = [_float(b.get(k, 0.0), f"{where}.BoundingBox.{k}") for k in ("Left", "Top")]
        vals += [_float(b.get(k, 0.0), f"{where}.BoundingBox.{k}") for k in ("Width", "Height")]
        regions.append((vals[0], vals[1], vals[2], vals[3]))
    return _WordFilter(
        _percent(word.get("MinConfidence"), "WordFilter.MinConfidence", 0.0),
        _ratio(word.get("MinBoundingBoxHeight"), "WordFilter.MinBoundingBoxHeight") or 0.0,
        _ratio(word.get("MinBoundingBoxWidth"), "WordFilter.MinBoundingBoxWidth") or 0.0,
        tuple(regions),
    )


def _geometry(box: dict[str, float]) -> dict[str, Any]:
    left, top, right, bottom = (
        box["Left"],
        box["Top"],
        box["Left"] + box["Width"],
        box["Top"] + box["Height"],
    )
    corners = ((left, top), (right, top), (right, bottom), (left, bottom))
    return {
        "BoundingBox": box,
        "Polygon": [{"X": round(x, 6), "Y": round(y, 6)} for x, y in corners],
    }


def _word_boxes(text: str, line: dict[str, float]) -> list[tuple[str, dict[str, float]]]:
    """The words of ``text`` with the share of the line's box their characters take."""
    words = text.split()
    total = len(text)
    if not words or total == 0:
        return []
    out: list[tuple[str, dict[str, float]]] = []
    pos = 0
    for word in words:
        start = text.index(word, pos)
        pos = start + len(word)
        out.append(
            (
                word,
                {
                    "Width": round(line["Width"] * len(word) / total, 6),
                    "Height": line["Height"],
                    "Left": round(line["Left"] + line["Width"] * start / total, 6),
                    "Top": line["Top"],
                },
            )
        )
    return out


async def detect_text(call: AwsCall, params: Params) -> dict[str, Any]:
    """Lines the OCR read and their words, with ids, parent ids and geometry."""
    p = _known(params, frozenset({"Image", "Filters"}), "DetectText")
    filters = _text_filters(p.get("Filters"))
    moderated = await _moderate(call, p.get("Image"))
    detections: list[dict[str, Any]] = []
    words: list[dict[str, Any]] = []
    next_id = 0
    for line in moderated.result.text:
        if line.box is None or not moderated.on_first_frame(line.frame):
            continue
        box = moderated.ratio_box(line.box)
        if not filters.keeps(line.confidence, box):
            continue
        line_id = next_id
        next_id += 1
        detections.append(
            {
                "DetectedText": line.text,
                "Type": "LINE",
                "Id": line_id,
                "Confidence": line.confidence,
                "Geometry": _geometry(box),
            }
        )
        for word, wbox in _word_boxes(line.text, box):
            words.append(
                {
                    "DetectedText": word,
                    "Type": "WORD",
                    "Id": -1,
                    "ParentId": line_id,
                    "Confidence": line.confidence,
                    "Geometry": _geometry(wbox),
                }
            )
    for word_detection in words:  # ids: lines first, then words, as Rekognition numbers them
        word_detection["Id"] = next_id
        next_id += 1
    body: dict[str, Any] = {"TextDetections": detections + words}
    ocr = moderated.result.versions.get("ocr")
    if ocr:
        body["TextModelVersion"] = ocr
    return _with_headers(call, moderated, body)


# -- DetectFaces ----------------------------------------------------------------------------


async def detect_faces(call: AwsCall, params: Params) -> dict[str, Any]:
    """The boxes of the faces found (no confidence, landmarks, pose or quality: the
    face detector gives none)."""
    p = _known(params, frozenset({"Image", "Attributes"}), "DetectFaces")
    if "Attributes" in p:
        attributes = _strings(p["Attributes"], "Attributes")
        known = _FACE_ATTRIBUTES | {"DEFAULT", "ALL"}
        unknown = sorted(set(attributes) - known)
        if unknown:
            raise invalid(f"Attributes has unknown values: {', '.join(unknown)}")
        named = sorted(set(attributes) & _FACE_ATTRIBUTES)
        if named:
            raise invalid(
                f"face attributes are not available ({', '.join(named)}): Bastion's face "
                "detector finds faces only; ask for DEFAULT or ALL"
            )
    moderated = await _moderate(call, p.get("Image"))
    faces = [
        {"BoundingBox": moderated.ratio_box(face.box)}
        for face in moderated.result.faces
        if moderated.on_first_frame(face.frame)
    ]
    return _with_headers(call, moderated, {"FaceDetails": faces})


OPERATIONS: Mapping[str, Handler] = {
    "DetectModerationLabels": detect_moderation_labels,
    "DetectLabels": detect_labels,
    "DetectText": detect_text,
    "DetectFaces": detect_faces,
}
"""The image operations by name (``X-Amz-Target: RekognitionService.<name>``)."""
