"""AWS Signature Version 4, verified over the exact request a client sent.

The request is rebuilt as botocore's :class:`~botocore.awsrequest.AWSRequest` from what
arrived (method, raw path, raw query string, every header as received, the body) and
signed again with botocore's :class:`~botocore.auth.SigV4Auth`, told to sign exactly the
headers the client lists in ``SignedHeaders`` (botocore would otherwise pick its own);
the canonical request, string to sign and signing key are botocore's own code, so
Bastion and its clients agree on every detail (header value trimming, repeated headers
joined with commas, query ordering, path encoding). The signatures are compared in
constant time.

Checked, with the errors AWS answers (``__type``, HTTP status):

* an ``Authorization`` header is there — else ``MissingAuthenticationTokenException``
  (403); it reads ``AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request,
  SignedHeaders=..., Signature=<64 hex>`` — else ``IncompleteSignatureException`` (400);
* ``host`` is signed, and every signed header is in the request —
  ``IncompleteSignatureException``;
* the signing time (``x-amz-date``, else ``date``) is within ``max_skew_s`` of the
  server's clock — else ``InvalidSignatureException`` "Signature expired: ..." or
  "Signature not yet current: ..." as AWS words them;
* the credential scope's date is the signing time's date, its region the configured
  one, its service ``rekognition`` — ``InvalidSignatureException``;
* the access key is known and active — else ``UnrecognizedClientException`` (a session
  token, which Bastion never issues, is refused the same way);
* ``x-amz-content-sha256``, when sent, is the SHA-256 of the body received (the
  signature covers that header's value, not the body: botocore trusts it, Bastion does
  not) — ``InvalidSignatureException``;
* the signature — ``InvalidSignatureException``.

Query-string (presigned URL) authentication is not supported: Rekognition's clients
sign the ``Authorization`` header, and a presigned ``POST /`` carries no use.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

from bastion.aws.call import AwsError
from bastion.aws.credentials import AwsIdentity

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "rekognition"
_SIGNATURE_RE = re.compile(r"^[0-9a-f]{64}$")
_DATE_RE = re.compile(r"^\d{8}$")
_AMZ_DATE_RE = re.compile(r"^\d{8}T\d{6}Z$")
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9a-z]+$")
_MAX_AUTHORIZATION = 4096

MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
UNRECOGNIZED = "The security token included in the request is invalid."


@dataclass(frozen=True)
class SignedRequest:
    """A request as it arrived: nothing decoded or normalised."""

    method: str
    path: str
    """The raw path, percent-encoded as the client sent it."""
    query: str
    """The raw query string (without ``?``)."""
    headers: Sequence[tuple[str, str]]
    """Every header in arrival order, names lower-cased, repeats kept."""
    body: bytes


@dataclass(frozen=True)
class Authorization:
    """The parts of an ``Authorization: AWS4-HMAC-SHA256 ...`` header."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def _incomplete(message: str) -> AwsError:
    return AwsError("IncompleteSignatureException", message, 400)


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidSignatureException", message, 400)


def _all(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k == name]


def parse_authorization(value: str) -> Authorization:
    """The parts of an ``Authorization`` header; ``IncompleteSignatureException`` when it
    is not a well-formed Signature Version 4 header."""
    if len(value) > _MAX_AUTHORIZATION:
        raise _incomplete("Authorization header is too long.")
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(
            f"Authorization header algorithm must be {ALGORITHM} (Signature Version 4)."
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, item = part.strip().partition("=")
        if not eq or name in fields:
            raise _incomplete(f"Authorization header is malformed near {part.strip()[:40]!r}.")
        fields[name] = item.strip()
    missing = [n for n in ("Credential", "SignedHeaders", "Signature") if n not in fields]
    if missing:
        raise _incomplete(
            " ".join(f"Authorization header requires '{n}' parameter." for n in missing)
        )
    extra = sorted(set(fields) - {"Credential", "SignedHeaders", "Signature"})
    if extra:
        raise _incomplete(f"Authorization header has an unknown parameter {extra[0]!r}.")
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope):
        raise _incomplete(
            "Credential must be KEY/YYYYMMDD/REGION/SERVICE/aws4_request; "
            f"got {fields['Credential'][:120]!r}."
        )
    key, date, region, service, _ = scope
    if not _DATE_RE.fullmatch(date):
        raise _incomplete(f"Credential date must be YYYYMMDD; got {date[:20]!r}.")
    names = tuple(fields["SignedHeaders"].split(";"))
    if not all(_HEADER_NAME_RE.fullmatch(n) for n in names):
        raise _incomplete("SignedHeaders must be lower-case header names separated by ';'.")
    signature = fields["Signature"]
    if not _SIGNATURE_RE.fullmatch(signature):
        raise _incomplete("Signature must be 64 lower-case hexadecimal digits.")
    return Authorization(key, date, region, service, names, signature)


def signing_time(headers: Sequence[tuple[str, str]]) -> tuple[datetime, str]:
    """The request's signing time from ``x-amz-date`` (else ``date``), and the header."""
    amz = _all(headers, "x-amz-date")
    if amz:
        if len(amz) > 1 or not _AMZ_DATE_RE.fullmatch(amz[0].strip()):
            raise _incomplete("X-Amz-Date must be one date in ISO 8601 basic format.")
        try:
            stamp = datetime.strptime(amz[0].strip(), SIGV4_TIMESTAMP).replace(tzinfo=UTC)
        except ValueError:
            raise _incomplete("X-Amz-Date is not a valid date.") from None
        return stamp, "x-amz-date"
    date = _all(headers, "date")
    if len(date) == 1:
        try:
            parsed = parsedate_to_datetime(date[0])
        except (TypeError, ValueError):
            parsed = None
        if parsed is not None:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC), "date"
    raise _incomplete(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
    )


def _span(seconds: int) -> str:
    return f"{seconds // 60} min." if seconds % 60 == 0 else f"{seconds} s"


def _check_skew(stamp: datetime, now: datetime, max_skew_s: int) -> None:
    skew = timedelta(seconds=max_skew_s)
    fmt = SIGV4_TIMESTAMP
    if stamp < now - skew:
        raise _invalid(
            f"Signature expired: {stamp.strftime(fmt)} is now earlier than "
            f"{(now - skew).strftime(fmt)} ({now.strftime(fmt)} - {_span(max_skew_s)})"
        )
    if stamp > now + skew:
        raise _invalid(
            f"Signature not yet current: {stamp.strftime(fmt)} is still later than "
            f"{(now + skew).strftime(fmt)} ({now.strftime(fmt)} + {_span(max_skew_s)})"
        )


class _Resigner(SigV4Auth):  # type: ignore[misc]  # botocore has no type hints
    """botocore's signer, signing exactly the headers the client listed."""

    def __init__(self, credentials: Credentials, region: str, signed: tuple[str, ...]) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed = frozenset(signed)

    def headers_to_sign(self, request: Any) -> HTTPHeaders:
        chosen = HTTPHeaders()
        for name, value in request.headers.items():
            if name.lower() in self._signed:
                chosen[name.lower()] = value
        return chosen


def expected_signature(
    request: SignedRequest, auth: Authorization, secret: str, timestamp: str
) -> str:
    """The signature of ``request`` with ``secret`` over the headers ``auth`` lists."""
    url = "http://bastion" + (request.path or "/")
    if request.query:
        url += "?" + request.query
    rebuilt = AWSRequest(method=request.method, url=url, data=request.body)
    headers = HTTPHeaders()
    for name, value in request.headers:
        headers[name] = value
    rebuilt.headers = headers
    rebuilt.context["timestamp"] = timestamp
    signer = _Resigner(Credentials(auth.access_key_id, secret), auth.region, auth.signed_headers)
    canonical = signer.canonical_request(rebuilt)
    return str(signer.signature(signer.string_to_sign(rebuilt, canonical), rebuilt))


def verify(
    request: SignedRequest,
    *,
    region: str,
    max_skew_s: int,
    lookup: Callable[[str], AwsIdentity | None],
    now: datetime | None = None,
) -> AwsIdentity:
    """The identity of the key that signed ``request``; :class:`AwsError` as AWS answers
    otherwise (see the module docstring). ``lookup`` may block (a database): call this
    off the event loop."""
    values = _all(request.headers, "authorization")
    if not values:
        raise AwsError("MissingAuthenticationTokenException", "Missing Authentication Token", 403)
    if len(values) > 1:
        raise _incomplete("Only one Authorization header is allowed.")
    auth = parse_authorization(values[0])
    present = {name for name, _ in request.headers}
    if "host" not in auth.signed_headers:
        raise _incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    absent = [n for n in auth.signed_headers if n not in present]
    if absent:
        raise _incomplete(f"Signed header {absent[0]!r} is not in the request.")
    stamp, source = signing_time(request.headers)
    _check_skew(stamp, now or datetime.now(UTC), max_skew_s)
    timestamp = stamp.strftime(SIGV4_TIMESTAMP)
    if auth.date != timestamp[:8]:
        raise _invalid(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{auth.date}' != '{timestamp[:8]}', from '{source}' header."
        )
    if auth.service != SERVICE:
        raise _invalid(f"Credential should be scoped to correct service: '{SERVICE}'.")
    if auth.region != region:
        raise _invalid(
            f"Credential should be scoped to a valid region, not '{auth.region[:40]}'. "
            f"Bastion answers for '{region}'."
        )
    if _all(request.headers, "x-amz-security-token"):
        raise AwsError("UnrecognizedClientException", UNRECOGNIZED, 400)
    identity = lookup(auth.access_key_id)
    if identity is None:
        raise AwsError("UnrecognizedClientException", UNRECOGNIZED, 400)
    declared = _all(request.headers, "x-amz-content-sha256")
    if declared:
        actual = hashlib.sha256(request.body).hexdigest()
        if len(declared) > 1 or declared[0].strip().lower() != actual:
            raise _invalid(
                "The provided 'x-amz-content-sha256' header does not match what was computed."
            )
    expected = expected_signature(request, auth, identity.secret, timestamp)
    if not hmac.compare_digest(expected.encode(), auth.signature.encode()):
        raise _invalid(MISMATCH)
    return identity
