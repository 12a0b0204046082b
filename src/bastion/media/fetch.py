"""Fetching media by URL behind a server-side request forgery (SSRF) guard.

Every hop (the first URL and each redirect target) goes through the same checks:
only the policy's schemes (http/https), no credentials in the URL, the host name is
resolved once (``getaddrinfo`` in a worker thread, so dotted, decimal, octal and hex
IPv4 forms such as ``2130706433`` or ``0x7f.1`` end up as the address they really
mean) and the hop is refused if *any* resolved address is not public, unless the
policy allows it.

The connection then goes to one of those checked addresses and nothing else: the
request URL carries the IP literal while the ``Host`` header keeps the original
host, and for https the original host name is passed as the TLS server name
(httpcore's ``sni_hostname`` request extension), which is also the name the
certificate is verified against. A DNS answer that changes between the check and
the connection (DNS rebinding) therefore cannot redirect the request. Environment
proxies are ignored (a proxy would resolve the name again) and connections are not
kept alive, so a pooled TLS connection verified for one host is never reused for
another host on the same address.

Redirects are followed by hand, at most ``max_redirects`` of them, each re-checked.
The body is streamed and abandoned as soon as it exceeds ``max_bytes`` (a declared
``Content-Length`` above the limit is refused before reading); gzip/deflate bodies
are inflated with the same bound. The whole fetch, DNS included, is bounded by
``total_timeout_s``.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bastion.errors import MediaTooLarge, UrlFetchFailed, UrlRejected

__all__ = [
    "CheckedUrl",
    "FetchPolicy",
    "FetchedMedia",
    "address_problem",
    "check_host",
    "check_url",
    "fetch_url",
]

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_URL_LENGTH = 8192

# Ranges refused whatever the running Python's ipaddress module thinks of them.
_BLOCKED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local, cloud metadata"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_BLOCKED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), why)
    for net, why in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible"),
        ("64:ff9b:1::/48", "local NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo"),
        ("2001:db8::/32", "documentation"),
        ("fc00::/7", "unique local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SCHEMES: tuple[Literal["http", "https"], ...] = ("http", "https")

Sink = Callable[[bytes], Awaitable[None]]


class FetchPolicy(BaseModel):
    """Where and how media may be fetched by URL."""

    model_config = ConfigDict(extra="forbid")

    allow_private: bool = Field(
        False,
        description=(
            "Allow hosts that resolve to non-public addresses (loopback, private, "
            "link-local, CGNAT, ...). Only for closed, trusted deployments."
        ),
    )
    allow_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Host names (exact match) or IP networks in CIDR form that may be fetched "
            "even when they resolve to non-public addresses, e.g. 'media.internal' or "
            "'10.20.0.0/16'. A redirect to another host is checked on its own."
        ),
    )
    max_bytes: int = Field(
        50 * 1024 * 1024, ge=1, description="Largest accepted response body, in bytes."
    )
    connect_timeout_s: float = Field(
        5.0, gt=0, description="Seconds allowed to open each connection (TLS included)."
    )
    read_timeout_s: float = Field(
        10.0, gt=0, description="Seconds allowed between two reads of the response."
    )
    total_timeout_s: float = Field(
        30.0, gt=0, description="Seconds allowed for the whole fetch, DNS and redirects included."
    )
    max_redirects: int = Field(3, ge=0, le=20, description="Redirects followed at most.")
    schemes: list[Literal["http", "https"]] = Field(
        default_factory=lambda: list(_SCHEMES),
        min_length=1,
        description="URL schemes accepted; nothing but http and https can be enabled.",
    )
    user_agent: str = Field(
        "Bastion media fetcher",
        min_length=1,
        max_length=256,
        pattern=r"^[\x20-\x7e]+$",
        description="User-Agent header sent with each request.",
    )

    @field_validator("allow_hosts")
    @classmethod
    def _normalise_hosts(cls, hosts: list[str]) -> list[str]:
        out: list[str] = []
        for raw in hosts:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                raise ValueError("allow_hosts entries must not be empty")
            if _as_network(entry) is None:
                try:
                    entry = httpx.URL(f"http://{entry}/").raw_host.decode("ascii")
                except httpx.InvalidURL as exc:
                    raise ValueError(f"{raw!r} is neither a host name nor a CIDR") from exc
            out.append(entry)
        return out


@dataclass(frozen=True, slots=True)
class CheckedUrl:
    """A URL that passed the guard, with the addresses it may be fetched from."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FetchedMedia:
    """A downloaded body with the URL that finally served it."""

    data: bytes
    url: str
    content_type: str | None
    redirects: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Target:
    url: httpx.URL
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class _Redirect:
    location: str


def _as_network(entry: str) -> _Network | None:
    try:
        return ipaddress.ip_network(entry.strip("[]"), strict=False)
    except ValueError:
        return None


def _parse(url: str, policy: FetchPolicy) -> _Target:
    if len(url) > _MAX_URL_LENGTH:
        raise UrlRejected(f"the URL is longer than {_MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise UrlRejected(f"not a valid URL: {exc}", details={"url": url}) from exc
    scheme = parsed.scheme
    if scheme not in policy.schemes:
        allowed = " or ".join(policy.schemes)
        shown = f"scheme {scheme!r}" if scheme else "a URL without a scheme"
        raise UrlRejected(
            f"{shown} is not allowed; use {allowed}", details={"url": url, "reason": "scheme"}
        )
    if parsed.userinfo:
        raise UrlRejected(
            "URLs with a user name or password are not accepted",
            details={"reason": "credentials"},
        )
    if not parsed.raw_host:
        raise UrlRejected(f"the URL {url!r} has no host", details={"url": url, "reason": "host"})
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if scheme == "https" else 80)
    return _Target(url=parsed, host=host, port=port)


def _resolve(host: str, port: int) -> list[str]:
    """Addresses of ``host``, in resolver order, without duplicates."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise UrlFetchFailed(
            f"could not resolve host {host!r}: {exc}", details={"host": host, "reason": "dns"}
        ) from exc
    seen: list[str] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in seen:
            seen.append(address)
    if not seen:
        raise UrlFetchFailed(
            f"host {host!r} has no IP address", details={"host": host, "reason": "dns"}
        )
    return seen


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def address_problem(ip: _IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address, or ``None`` when it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            problem = address_problem(inner)
            return f"{problem}, embedded in IPv6" if problem else None
        for net6, why in _BLOCKED_V6:
            if ip in net6:
                return why
    else:
        for net4, why in _BLOCKED_V4:
            if ip in net4:
                return why
    if ip.is_multicast:
        return "multicast"
    if not ip.is_global:
        return "non-public"
    return None


def _host_allowed(host: str, policy: FetchPolicy) -> bool:
    name = host.lower().rstrip(".")
    return any(entry == name for entry in policy.allow_hosts if _as_network(entry) is None)


def _check_addresses(target: _Target, addresses: list[str], policy: FetchPolicy) -> CheckedUrl:
    if not (policy.allow_private or _host_allowed(target.host, policy)):
        networks = [net for net in map(_as_network, policy.allow_hosts) if net is not None]
        for address in addresses:
            ip = ipaddress.ip_address(address)
            problem = address_problem(ip)
            if problem is None or any(ip in net for net in networks):
                continue
            raise UrlRejected(
                f"{target.url} resolves to a private address {address} ({problem})",
                details={
                    "url": str(target.url),
                    "host": target.host,
                    "address": address,
                    "reason": problem,
                },
            )
    return CheckedUrl(
        url=str(target.url),
        scheme=target.url.scheme,
        host=target.host,
        port=target.port,
        addresses=tuple(addresses),
    )


def check_url(url: str, policy: FetchPolicy) -> CheckedUrl:
    """Check ``url`` without fetching it: scheme, DNS and every resolved address.

    Raises :class:`UrlRejected` (refused by policy) or :class:`UrlFetchFailed` (the
    host does not resolve). Connect only to the returned ``addresses``.
    """
    target = _parse(url, policy)
    return _check_addresses(target, _resolve(target.host, target.port), policy)


def check_host(host: str, port: int, policy: FetchPolicy, *, scheme: str = "tcp") -> CheckedUrl:
    """Check a connection to ``host``:``port`` that is not a URL fetch (an RTMP, RTSP or
    SRT server): the same DNS and address rules as :func:`check_url`, without its scheme
    list. ``scheme`` only names the connection in messages.

    Raises :class:`UrlRejected` (refused by policy, or not a host name) or
    :class:`UrlFetchFailed` (the host does not resolve). Connect only to the returned
    ``addresses``.
    """
    if not 0 <= port <= 65535:
        raise UrlRejected(f"port {port} is out of range", details={"reason": "port"})
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        url = httpx.URL(scheme=scheme, host=name, port=port or None, path="/")
        raw = url.raw_host.decode("ascii")
    except (httpx.InvalidURL, TypeError, ValueError, UnicodeError) as exc:
        raise UrlRejected(f"not a valid host: {host!r}", details={"reason": "host"}) from exc
    if not raw or "%" in raw:
        raise UrlRejected(f"not a valid host: {host!r}", details={"reason": "host"})
    target = _Target(url=url, host=raw, port=port)
    return _check_addresses(target, _resolve(raw, port), policy)


async def _check_url_async(url: str, policy: FetchPolicy) -> CheckedUrl:
    target = _parse(url, policy)
    addresses = await anyio.to_thread.run_sync(
        _resolve, target.host, target.port, abandon_on_cancel=True
    )
    return _check_addresses(target, addresses, policy)


class _Inflater:
    """Bounded streaming decoder for the Content-Encoding of one response."""

    def __init__(self, encoding: str, limit: int) -> None:
        self._limit = limit
        self._size = 0
        codings = [c.strip() for c in encoding.lower().split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        self._zlib: zlib._Decompress | None = None
        if not codings:
            return
        if codings in (["gzip"], ["x-gzip"], ["deflate"]):
            self._zlib = zlib.decompressobj(32 + zlib.MAX_WBITS)
            return
        raise UrlFetchFailed(
            f"unsupported Content-Encoding {encoding!r}", details={"reason": "encoding"}
        )

    def _count(self, size: int) -> None:
        self._size += size
        if self._size > self._limit:
            raise MediaTooLarge(
                f"the response body is larger than {self._limit} bytes",
                details={"max_bytes": self._limit},
            )

    def feed(self, chunk: bytes) -> bytes:
        if self._zlib is None:
            self._count(len(chunk))
            return chunk
        try:
            out = self._zlib.decompress(chunk, self._limit - self._size + 1)
        except zlib.error as exc:
            raise UrlFetchFailed(
                f"the compressed response body is corrupt: {exc}", details={"reason": "encoding"}
            ) from exc
        self._count(len(out))
        if self._zlib.unconsumed_tail:
            self._count(self._limit + 1)
        return out


def _declared_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


async def _read(
    response: httpx.Response, checked: CheckedUrl, policy: FetchPolicy, sink: Sink | None
) -> bytes:
    length = _declared_length(response)
    if length is not None and length > policy.max_bytes:
        raise MediaTooLarge(
            f"{checked.url} declares {length} bytes; at most {policy.max_bytes} are accepted",
            details={"content_length": length, "max_bytes": policy.max_bytes},
        )
    inflater = _Inflater(response.headers.get("content-encoding", ""), policy.max_bytes)
    chunks: list[bytes] = []
    async for chunk in response.aiter_raw():
        data = inflater.feed(chunk)
        if sink is None:
            chunks.append(data)
        elif data:
            await sink(data)
    return b"".join(chunks)


async def _exchange(
    client: httpx.AsyncClient, checked: CheckedUrl, policy: FetchPolicy, sink: Sink | None
) -> FetchedMedia | _Redirect:
    logical = httpx.URL(checked.url)
    extensions = {"sni_hostname": checked.host} if checked.scheme == "https" else {}
    headers = {"Host": logical.netloc.decode("ascii")}
    failure: httpx.ConnectError | None = None
    for address in checked.addresses:
        request = client.build_request(
            "GET", logical.copy_with(host=address), headers=headers, extensions=extensions
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.ConnectError as exc:
            failure = exc
            continue
        try:
            status = response.status_code
            if status in _REDIRECTS:
                location = response.headers.get("location")
                if not location:
                    raise UrlFetchFailed(
                        f"{checked.url} redirects (HTTP {status}) without a Location",
                        details={"status": status, "url": checked.url},
                    )
                try:
                    return _Redirect(str(logical.join(location)))
                except httpx.InvalidURL as exc:
                    raise UrlRejected(f"invalid redirect location {location!r}") from exc
            if not 200 <= status < 300:
                raise UrlFetchFailed(
                    f"{checked.url} answered HTTP {status}",
                    details={"status": status, "url": checked.url, "reason": "http_status"},
                )
            data = await _read(response, checked, policy, sink)
            return FetchedMedia(
                data=data, url=checked.url, content_type=response.headers.get("content-type")
            )
        finally:
            await response.aclose()
    raise UrlFetchFailed(
        f"could not connect to {checked.host} port {checked.port}: {failure}",
        details={"host": checked.host, "port": checked.port, "reason": "connect"},
    )


async def _fetch(
    url: str, policy: FetchPolicy, ssl_context: ssl.SSLContext | None, sink: Sink | None
) -> FetchedMedia:
    timeout = httpx.Timeout(
        connect=policy.connect_timeout_s,
        read=policy.read_timeout_s,
        write=policy.read_timeout_s,
        pool=policy.connect_timeout_s,
    )
    client = httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        verify=ssl_context if ssl_context is not None else True,
        limits=httpx.Limits(max_keepalive_connections=0),
        headers={
            "User-Agent": policy.user_agent,
            "Accept": "image/*, video/*;q=0.8, */*;q=0.5",
            "Accept-Encoding": "identity",
        },
    )
    redirects: list[str] = []
    current = url
    async with client:
        for _hop in range(policy.max_redirects + 1):
            checked = await _check_url_async(current, policy)
            try:
                outcome = await _exchange(client, checked, policy, sink)
            except httpx.TimeoutException as exc:
                raise UrlFetchFailed(
                    f"{checked.url} timed out ({type(exc).__name__})",
                    details={"url": checked.url, "reason": "timeout"},
                ) from exc
            except httpx.HTTPError as exc:
                raise UrlFetchFailed(
                    f"fetching {checked.url} failed: {type(exc).__name__}: {exc}",
                    details={"url": checked.url, "reason": "http"},
                ) from exc
            if isinstance(outcome, FetchedMedia):
                return FetchedMedia(
                    data=outcome.data,
                    url=outcome.url,
                    content_type=outcome.content_type,
                    redirects=tuple(redirects),
                )
            redirects.append(checked.url)
            current = outcome.location
    raise UrlFetchFailed(
        f"more than {policy.max_redirects} redirects",
        details={"redirects": redirects, "reason": "redirects"},
    )


async def fetch_url(
    url: str,
    policy: FetchPolicy,
    *,
    ssl_context: ssl.SSLContext | None = None,
    sink: Sink | None = None,
) -> FetchedMedia:
    """Download ``url`` under ``policy``.

    ``ssl_context`` replaces the default certificate store (for a private CA). With
    ``sink``, the body is not kept: each chunk is awaited into it as it arrives (after
    the size checks) and the returned ``data`` is empty.
    Raises :class:`UrlRejected`, :class:`UrlFetchFailed` or :class:`MediaTooLarge`.
    """
    try:
        with anyio.fail_after(policy.total_timeout_s):
            return await _fetch(url, policy, ssl_context, sink)
    except TimeoutError as exc:
        raise UrlFetchFailed(
            f"fetching {url} took longer than {policy.total_timeout_s:g} s",
            details={"url": url, "reason": "timeout"},
        ) from exc
