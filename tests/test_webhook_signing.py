"""Standard Webhooks signing and verification, checked against the official library."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as OfficialError

from bastion.delivery.client import (
    InvalidSecret,
    MissingHeaders,
    SignatureMismatch,
    TimestampOutOfTolerance,
    WebhookVerificationError,
    verify,
)
from bastion.delivery.signing import (
    decode_secret,
    generate_secret,
    sign,
    signature_header,
    webhook_headers,
)

# The test vector published with the Standard Webhooks reference implementations.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

BODY = json.dumps({"type": "job.completed", "data": {"id": "job_1", "verdict": "allow"}}).encode()


def _now() -> int:
    return int(time.time())


def test_generated_secrets_have_the_standard_format() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:], validate=True)) == 32
    assert len(decode_secret(generate_secret(24))) == 24
    assert len(decode_secret(generate_secret(64))) == 64
    assert generate_secret() != generate_secret()
    for size in (23, 65):
        with pytest.raises(ValueError):
            generate_secret(size)
    for bad in ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_AAAA"):
        with pytest.raises(ValueError):
            decode_secret(bad)


def test_published_test_vector() -> None:
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    assert verify(VECTOR_BODY, headers, VECTOR_SECRET, now=VECTOR_TIMESTAMP) == {"test": 2432232314}
    with pytest.raises(TimestampOutOfTolerance):
        verify(VECTOR_BODY, headers, VECTOR_SECRET)


def test_official_library_verifies_our_signatures() -> None:
    secret = generate_secret()
    headers = webhook_headers([secret], "msg_abc", _now(), BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(OfficialError):
        Webhook(secret).verify(BODY + b" ", headers)
    with pytest.raises(OfficialError):
        Webhook(generate_secret()).verify(BODY, headers)


def test_official_library_verifies_either_secret_during_rotation() -> None:
    new, old = generate_secret(), generate_secret()
    headers = webhook_headers([new, old], "msg_rot", _now(), BODY)
    parts = headers["webhook-signature"].split(" ")
    assert len(parts) == 2 and all(p.startswith("v1,") for p in parts)
    assert Webhook(new).verify(BODY, headers) == json.loads(BODY)
    assert Webhook(old).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(OfficialError):
        Webhook(generate_secret()).verify(BODY, headers)


def test_verify_accepts_signatures_of_the_official_library() -> None:
    secret = generate_secret(48)
    sent_at = datetime.now(UTC)
    signature = Webhook(secret).sign("msg_official", sent_at, BODY.decode())
    headers = {
        "Webhook-Id": "msg_official",
        "Webhook-Timestamp": str(int(sent_at.timestamp())),
        "Webhook-Signature": signature,
    }
    assert verify(BODY, headers, secret) == json.loads(BODY)
    assert verify(BODY.decode(), headers, [generate_secret(), secret]) == json.loads(BODY)
    assert verify(BODY, headers, decode_secret(secret)) == json.loads(BODY)
    with pytest.raises(SignatureMismatch):
        verify(BODY, headers, generate_secret())


def test_verify_refuses_what_it_must() -> None:
    secret = generate_secret()
    stamp = _now()
    good = webhook_headers([secret], "msg_1", stamp, BODY)
    assert verify(BODY, good, secret)["data"]["id"] == "job_1"

    for name in good:
        partial = {k: v for k, v in good.items() if k != name}
        with pytest.raises(MissingHeaders, match=name):
            verify(BODY, partial, secret)
    with pytest.raises(SignatureMismatch):
        verify(BODY.replace(b"allow", b"block"), good, secret)
    with pytest.raises(SignatureMismatch):
        verify(BODY, {**good, "webhook-id": "msg_2"}, secret)
    with pytest.raises(SignatureMismatch):
        verify(BODY, {**good, "webhook-signature": "v1,bm9wZQ== v1a,xyz v2,abc"}, secret)

    for offset in (-301, 301):
        headers = webhook_headers([secret], "msg_1", stamp + offset, BODY)
        with pytest.raises(TimestampOutOfTolerance):
            verify(BODY, headers, secret)
        assert verify(BODY, headers, secret, tolerance_s=400)["type"] == "job.completed"
    for bad in ("", "12.5", "-1", "soon", "١٢٣"):
        with pytest.raises((TimestampOutOfTolerance, MissingHeaders)):
            verify(BODY, {**good, "webhook-timestamp": bad}, secret)

    with pytest.raises(InvalidSecret):
        verify(BODY, good, "whsec_***")
    with pytest.raises(InvalidSecret):
        verify(BODY, good, [])
    assert issubclass(SignatureMismatch, WebhookVerificationError)


def test_verify_finds_the_valid_signature_among_others() -> None:
    secret = generate_secret()
    stamp = _now()
    valid = sign(secret, "msg_x", stamp, BODY)
    noise = "v1,bm9wZQ== v1a,c2lnbmF0dXJl garbage v1,%%%"
    headers = {
        "webhook-id": "msg_x",
        "webhook-timestamp": str(stamp),
        "webhook-signature": f"{noise} {valid}",
    }
    assert verify(BODY, headers, secret)["type"] == "job.completed"


def test_signed_bodies_must_be_json_objects() -> None:
    secret = generate_secret()
    for body in (b"[1, 2]", b"not json", b"\xff\xfe"):
        headers = webhook_headers([secret], "msg_j", _now(), body)
        with pytest.raises(WebhookVerificationError, match="JSON"):
            verify(body, headers, secret)


def test_signature_header_needs_a_secret() -> None:
    with pytest.raises(ValueError):
        signature_header([], "msg_1", 1, b"{}")
