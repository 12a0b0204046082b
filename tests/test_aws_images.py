"""Rekognition's image operations with the real boto3 client against the app on a real
port: DetectModerationLabels, DetectLabels, DetectText and DetectFaces on real media,
every raw answer checked member by member against botocore's service model (botocore
drops what it does not know), and each typed error as ``client.exceptions.X``.

The moderation taxonomy table (Bastion's labels as Rekognition's v7 names) is checked
first, without models.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bastion.analyzers.codes import _LINK_LABEL
from bastion.analyzers.labels import DEFAULT_CLASS_LABELS, PRODUCT_LABEL
from bastion.analyzers.nsfw import DISTURBING, EXPLICIT, GORE, SUGGESTIVE
from bastion.analyzers.nudenet import DEFAULT_CLASS_MAP
from bastion.aws import taxonomy
from bastion.aws.config import AwsConfig, FolderBucket
from bastion.aws.images import DECISION_HEADER, POLICY_HEADER, SHA256_HEADER
from bastion.jobs.config import JobsConfig
from bastion.pipeline.engine import Engine
from bastion.policy import taxonomy as bastion_taxonomy
from tests.support.app import ServedApi, serving
from tests.support.auth import AUTH, bearer
from tests.support.aws import AwsKey, new_aws_key, rekognition, send, signed
from tests.support.aws_shapes import RawResponses, output_problems, parse_raw
from tests.support.media import (
    benign_photos,
    encode,
    jpeg,
    opencv_doc_photos,
    photo,
    sha,
    text_on_photo,
)
from tests.support.settings import make_settings
from tests.support.textimages import normalised

# -- the taxonomy table ----------------------------------------------------------------------

LEFT_OUT = {"Illegal Ads", "Toxic Speech"}
"""Bastion's L1 categories without a counterpart in Rekognition's taxonomy."""


def test_v7_has_the_ten_categories_and_consistent_levels() -> None:
    assert set(taxonomy.L1) == {
        "Explicit",
        "Non-Explicit Nudity of Intimate parts and Kissing",
        "Swimwear or Underwear",
        "Violence",
        "Visually Disturbing",
        "Drugs & Tobacco",
        "Alcohol",
        "Rude Gestures",
        "Gambling",
        "Hate Symbols",
    }
    for label in taxonomy.V7.values():
        if label.level == 1:
            assert label.parent == "" and label.name in taxonomy.L1
        else:
            assert taxonomy.V7[label.parent].level == label.level - 1, label
    assert taxonomy.V7["Exposed Female Nipple"].parent == "Explicit Nudity"
    assert [x.name for x in taxonomy.lineage("Blood & Gore")] == [
        "Blood & Gore",
        "Graphic Violence",
        "Violence",
    ]


def test_every_bastion_label_maps_or_is_left_out_on_purpose() -> None:
    for name, target in taxonomy.FROM_BASTION.items():
        assert name in bastion_taxonomy.CATEGORIES, name
        assert target in taxonomy.V7, target
    for cat in bastion_taxonomy.CATEGORIES.values():
        top = cat.parent or cat.name
        if top in LEFT_OUT:
            assert cat.name not in taxonomy.FROM_BASTION, cat.name
        else:
            assert cat.name in taxonomy.FROM_BASTION, f"{cat.name} has no v7 counterpart"


def test_what_the_analyzers_emit_is_answered() -> None:
    emitted = {EXPLICIT, SUGGESTIVE, GORE, DISTURBING, *DEFAULT_CLASS_MAP.values()}
    emitted |= set(DEFAULT_CLASS_LABELS)
    for name in emitted:
        assert name in taxonomy.FROM_BASTION, name
    for name in (PRODUCT_LABEL, _LINK_LABEL):  # spam labels: not Rekognition's
        assert name not in taxonomy.FROM_BASTION


def test_to_v7_answers_ancestors_with_the_strongest_confidence() -> None:
    scored = taxonomy.to_v7(
        [
            ("Exposed Female Nipple", 80.0),
            ("Explicit Nudity", 60.0),
            ("Firearms", 30.0),
            ("Knives and Blades", 45.0),
            ("Blocked Word", 99.0),
        ]
    )
    got = {s.label.name: (s.confidence, s.label.parent, s.label.level) for s in scored}
    assert got == {
        "Exposed Female Nipple": (80.0, "Explicit Nudity", 3),
        "Explicit Nudity": (80.0, "Explicit", 2),
        "Explicit": (80.0, "", 1),
        "Weapons": (45.0, "Violence", 2),
        "Violence": (45.0, "", 1),
    }
    assert [s.confidence for s in scored] == sorted((s.confidence for s in scored), reverse=True)
    assert taxonomy.to_v7([("Toxic Speech", 90.0), ("Product Ad", 70.0)]) == []


def test_the_shape_check_sees_what_botocore_drops() -> None:
    good = {
        "ModerationLabels": [
            {"Confidence": 60.5, "Name": "Explicit", "ParentName": "", "TaxonomyLevel": 1}
        ],
        "ModerationModelVersion": "7.0",
    }
    assert output_problems("DetectModerationLabels", good) == []
    misspelled = {"ModerationLabels": [{"Name": "Explicit", "ParentNme": ""}]}
    assert parse_raw("DetectModerationLabels", json.dumps(misspelled).encode()) == {
        "ModerationLabels": [{"Name": "Explicit"}]
    }  # botocore drops it without a word
    assert output_problems("DetectModerationLabels", misspelled) == [
        "$.ModerationLabels[0].ParentNme: not a member of ModerationLabel"
    ]
    wrong = {"ModerationLabels": [{"Confidence": 101, "TaxonomyLevel": "1"}]}
    assert len(output_problems("DetectModerationLabels", wrong)) == 2
    assert output_problems("DetectText", {"TextDetections": [{"Type": "PARAGRAPH"}]})


# -- the real client over HTTP ---------------------------------------------------------------

TENANT = "awsimages"
BUCKET = "bastion-media"


@dataclass
class Rig:
    """The served app, a tenant with a moderating key and a read-only one, the
    too-large image and the folder behind the bucket."""

    served: ServedApi
    admin: dict[str, str]
    key: AwsKey
    reader: AwsKey
    big: bytes
    folder: Path

    def client(self, key: AwsKey | None = None) -> tuple[Any, RawResponses]:
        client = rekognition(self.served.base, key or self.key, read_timeout=300)
        raw = RawResponses()
        raw.attach(client)
        return client, raw


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rig(engine: Engine, data_root: Path) -> AsyncIterator[Rig]:
    big = jpeg("sklearn-china", quality=100, scale=2.0)
    folder = data_root / "aws-bucket"
    folder.mkdir(parents=True, exist_ok=True)
    aws = AwsConfig(
        # over the limit by 20 kB, the request still under the body limit: the
        # operation's own check answers, not the protocol's
        max_image_bytes=len(big) - 20_000,
        buckets={BUCKET: FolderBucket(kind="folder", path=folder, tenants=[TENANT])},
    )
    settings = make_settings(data_root / "aws-images", aws=aws, jobs=JobsConfig(run_worker=False))
    async with serving(settings, engine) as served:
        r = await served.client.post(
            "/v1/tenants", json={"id": TENANT, "name": TENANT}, headers=AUTH
        )
        assert r.status_code == 201, r.text
        admin = bearer(r.json()["admin_key"]["key"])
        key = await new_aws_key(served, admin)
        reader = await new_aws_key(served, admin, ("read",))
        yield Rig(served, admin, key, reader, big, folder)


async def call(method: Callable[..., Any], **kw: Any) -> dict[str, Any]:
    """A boto3 call in a worker thread: the server runs on this event loop."""
    result: dict[str, Any] = await asyncio.to_thread(method, **kw)
    return result


def opencv_photo(name: str) -> bytes:
    found = [p for p in opencv_doc_photos() if p.stem == name]
    if not found:
        pytest.skip("opencv-doc's example photos are not installed")
    return found[0].read_bytes()


@pytest.mark.models
@pytest.mark.server
async def test_detect_moderation_labels_is_bastions_result_in_v7_names(rig: Rig) -> None:
    # the suite's photo with the strongest moderation labels: a box of biscuits whose
    # skin-toned packaging the nsfw classifier scores as mildly suggestive
    data = opencv_photo("box")
    client, raw = rig.client()
    answer = await call(client.detect_moderation_labels, Image={"Bytes": data}, MinConfidence=5)
    body = raw.conforming()
    assert parse_raw("DetectModerationLabels", raw.last.body) == {
        k: v for k, v in answer.items() if k != "ResponseMetadata"
    }
    assert body["ModerationModelVersion"] == "7.0"
    labels = body["ModerationLabels"]
    assert labels, "the box photo has moderation labels above 5"

    # Bastion's own result for the same bytes: the stored one, not analysed again
    native = await rig.served.client.post("/v1/moderate", content=data, headers=rig.admin)
    assert native.status_code == 200, native.text
    result = native.json()
    assert result["cached"] is True
    expected: list[dict[str, Any]] = [
        {
            "Confidence": s.confidence,
            "Name": s.label.name,
            "ParentName": s.label.parent,
            "TaxonomyLevel": s.label.level,
        }
        for s in taxonomy.to_v7((lab["name"], lab["confidence"]) for lab in result["labels"])
        if s.confidence >= 5
    ]
    assert labels == expected
    for lab in labels:
        parent = lab["ParentName"]
        assert parent == "" or any(p["Name"] == parent for p in labels), lab

    headers = raw.last.headers
    assert headers[DECISION_HEADER.lower()] == result["decision"]
    assert headers[POLICY_HEADER.lower()] == f"{result['policy']}@{result['policy_version']}"
    assert headers[SHA256_HEADER.lower()] == sha(data)
    assert headers["x-amzn-requestid"]

    # the default MinConfidence is 50
    await call(client.detect_moderation_labels, Image={"Bytes": data})
    assert raw.conforming()["ModerationLabels"] == [e for e in expected if e["Confidence"] >= 50]


@pytest.mark.models
@pytest.mark.server
async def test_detect_moderation_labels_reads_s3_objects(rig: Rig) -> None:
    data = photo("skimage-coffee")
    (rig.folder / "photos").mkdir(exist_ok=True)
    (rig.folder / "photos" / "coffee.jpg").write_bytes(data)
    client, raw = rig.client()
    image = {"S3Object": {"Bucket": BUCKET, "Name": "photos/coffee.jpg"}}
    await call(client.detect_moderation_labels, Image=image, MinConfidence=0)
    raw.conforming()
    assert raw.last.headers[SHA256_HEADER.lower()] == sha(data)


@pytest.mark.models
@pytest.mark.server
async def test_detect_labels(rig: Rig) -> None:
    client, raw = rig.client()
    data = photo("skimage-chelsea")
    await call(client.detect_labels, Image={"Bytes": data}, MinConfidence=0, MaxLabels=3)
    labels = raw.conforming()["Labels"]
    assert 1 <= len(labels) <= 3
    assert any("Cat" in lab["Name"] for lab in labels), labels
    confidences = [lab["Confidence"] for lab in labels]
    assert confidences == sorted(confidences, reverse=True)
    for lab in labels:
        assert lab["Parents"] == [] and lab["Categories"] == []
        for instance in lab["Instances"]:
            box = instance["BoundingBox"]
            assert 0 <= box["Left"] <= 1 and 0 < box["Width"] <= 1

    settings = {"GeneralLabels": {"LabelExclusionFilters": [labels[0]["Name"]]}}
    await call(
        client.detect_labels, Image={"Bytes": data}, MinConfidence=0, MaxLabels=3, Settings=settings
    )
    assert labels[0]["Name"] not in [lab["Name"] for lab in raw.conforming()["Labels"]]

    with pytest.raises(client.exceptions.InvalidParameterException, match="IMAGE_PROPERTIES"):
        await call(client.detect_labels, Image={"Bytes": data}, Features=["IMAGE_PROPERTIES"])


@pytest.mark.models
@pytest.mark.server
@pytest.mark.ocr
async def test_detect_text_lines_and_words(rig: Rig) -> None:
    client, raw = rig.client()
    data = text_on_photo("HELLO WORLD 2026")
    await call(client.detect_text, Image={"Bytes": data})
    detections = raw.conforming()["TextDetections"]
    lines = [d for d in detections if d["Type"] == "LINE"]
    words = [d for d in detections if d["Type"] == "WORD"]
    line = next(x for x in lines if normalised(x["DetectedText"]) == normalised("HELLO WORLD 2026"))
    mine = [w for w in words if w["ParentId"] == line["Id"]]
    assert [w["DetectedText"] for w in mine] == ["HELLO", "WORLD", "2026"]
    assert len({d["Id"] for d in detections}) == len(detections)
    assert all("ParentId" not in x for x in lines)
    lbox = line["Geometry"]["BoundingBox"]
    for w in mine:
        box = w["Geometry"]["BoundingBox"]
        assert lbox["Left"] - 1e-6 <= box["Left"]
        assert box["Left"] + box["Width"] <= lbox["Left"] + lbox["Width"] + 1e-6
        polygon = w["Geometry"]["Polygon"]
        assert len(polygon) == 4 and polygon[0] == {"X": box["Left"], "Y": box["Top"]}
    # the text sits in the lower half of the photo (a banner)
    assert lbox["Top"] > 0.5

    above = line["Confidence"] + 0.01
    if above <= 100:
        filters = {"WordFilter": {"MinConfidence": above}}
        await call(client.detect_text, Image={"Bytes": data}, Filters=filters)
        assert line["DetectedText"] not in [
            d["DetectedText"] for d in raw.conforming()["TextDetections"]
        ]
    top_half = {
        "RegionsOfInterest": [{"BoundingBox": {"Left": 0, "Top": 0, "Width": 1, "Height": 0.5}}]
    }
    await call(client.detect_text, Image={"Bytes": data}, Filters=top_half)
    assert line["DetectedText"] not in [
        d["DetectedText"] for d in raw.conforming()["TextDetections"]
    ]


@pytest.mark.models
@pytest.mark.server
async def test_detect_faces(rig: Rig) -> None:
    client, raw = rig.client()
    data = photo("skimage-astronaut")
    await call(client.detect_faces, Image={"Bytes": data}, Attributes=["ALL"])
    faces = raw.conforming()["FaceDetails"]
    assert len(faces) == 1, faces
    face = faces[0]
    assert set(face) == {"BoundingBox"}  # the detector gives nothing more: nothing is made up
    box = face["BoundingBox"]
    # Eileen Collins' face: in the upper middle of the portrait
    assert 0.2 < box["Left"] + box["Width"] / 2 < 0.7 and box["Top"] < 0.4
    await call(client.detect_faces, Image={"Bytes": photo("skimage-coffee")})
    assert raw.conforming()["FaceDetails"] == []
    with pytest.raises(client.exceptions.InvalidParameterException, match="AGE_RANGE"):
        await call(client.detect_faces, Image={"Bytes": data}, Attributes=["AGE_RANGE"])


def _error(raw: RawResponses, code: str) -> None:
    last = raw.last
    assert last.status == 400, last.body
    assert last.json()["__type"] == code


@pytest.mark.models
@pytest.mark.server
async def test_typed_errors(rig: Rig) -> None:
    client, raw = rig.client()
    ex = client.exceptions

    with pytest.raises(ex.InvalidImageFormatException):
        await call(client.detect_moderation_labels, Image={"Bytes": b"%PDF-1.4 not an image"})
    _error(raw, "InvalidImageFormatException")
    truncated = photo("skimage-coffee")[:2000]
    with pytest.raises(ex.InvalidImageFormatException):
        await call(client.detect_labels, Image={"Bytes": truncated})

    with pytest.raises(ex.ImageTooLargeException):
        await call(client.detect_moderation_labels, Image={"Bytes": rig.big})
    _error(raw, "ImageTooLargeException")

    small = encode(benign_photos()["skimage-chelsea"][:60, :200])
    with pytest.raises(ex.InvalidParameterException, match="at least 80"):
        await call(client.detect_faces, Image={"Bytes": small})
    with pytest.raises(ex.InvalidParameterException, match="MinConfidence"):
        await call(client.detect_moderation_labels, Image={"Bytes": photo()}, MinConfidence=150)
    with pytest.raises(ex.InvalidParameterException, match="HumanLoopConfig"):
        await call(
            client.detect_moderation_labels,
            Image={"Bytes": photo()},
            HumanLoopConfig={
                "HumanLoopName": "loop",
                "FlowDefinitionArn": "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/x",
            },
        )
    _error(raw, "InvalidParameterException")

    with pytest.raises(ex.InvalidS3ObjectException):
        await call(
            client.detect_moderation_labels,
            Image={"S3Object": {"Bucket": "not-configured", "Name": "a.jpg"}},
        )
    _error(raw, "InvalidS3ObjectException")

    denied, denied_raw = rig.client(rig.reader)
    with pytest.raises(denied.exceptions.AccessDeniedException):
        await call(denied.detect_moderation_labels, Image={"Bytes": photo()})
    _error(denied_raw, "AccessDeniedException")


@pytest.mark.models
@pytest.mark.server
async def test_what_botocore_never_sends_is_refused(rig: Rig) -> None:
    """Bad base64, an unknown member, both image kinds or none, signed by hand."""
    good = base64.b64encode(photo()).decode()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"Image": {"Bytes": good[:-4] + "$$$="}}, "base64"),
        ({"Image": {"Bytes": good[:-2]}}, "base64"),  # padding cut
        ({"Image": {"Bytes": good}, "MinConfidance": 10}, "MinConfidance"),
        (
            {"Image": {"Bytes": good, "S3Object": {"Bucket": BUCKET, "Name": "a.jpg"}}},
            "exactly one",
        ),
        ({"Image": {}}, "exactly one"),
        ({"Image": {"Bytes": good}, "MinConfidence": "50"}, "MinConfidence"),
        ({"Image": {"Bytes": good}, "MaxLabels": -1}, "MaxLabels"),
    ]
    for body, words in cases:
        op = "DetectLabels" if "MaxLabels" in body else "DetectModerationLabels"
        r = await send(rig.served.client, signed(rig.served.base, rig.key, op, body))
        assert r.status_code == 400, (body.keys(), r.text)
        answer = r.json()
        assert answer["__type"] == "InvalidParameterException", answer
        assert words in answer["Message"], answer
