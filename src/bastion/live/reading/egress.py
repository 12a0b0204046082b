"""Every connection a live-stream reader makes obeys the address policy of URL inputs.

A stream's source URL is checked when it is registered, but reading it makes more
connections: HTTP redirects, HLS variant playlists, segments and keys, reconnections.
Left to FFmpeg, none of them would be checked: a public host that redirects to, or
lists segments on, 127.0.0.1 or a cloud metadata address would make Bastion connect
there (server-side request forgery), and a name checked once could resolve to another
address when FFmpeg connects (DNS rebinding). A reader's :class:`SourceGuard` therefore
decides every connection, under the policy of URL inputs
(:class:`~bastion.media.fetch.FetchPolicy`: private, loopback, link-local, metadata...
addresses are refused unless ``allow_private`` or ``allow_hosts`` say otherwise):

* HTTP(S) sources are not opened by FFmpeg's network protocols at all. The container
  is opened with PyAV's ``io_open`` hook and a protocol whitelist that names no
  protocol, so every URL the demuxer opens — the source, HLS variant playlists,
  segments, keys, ``crypto+`` segments (AES-128, decrypted here) — comes to
  :class:`_Opener`, which follows only ``http``/``https`` URLs and reads them with
  :class:`GuardedHttp`. There, every hop (the URL, then each redirect, at most the
  policy's ``max_redirects``) is checked with :func:`~bastion.media.fetch.check_url`
  and sent to one of the addresses that check resolved and accepted (the IP in the
  request, the name in ``Host`` and as the TLS server name the certificate is verified
  against), exactly like URL inputs; environment proxies are ignored. A playlist served
  after a redirect has its relative URIs made absolute against the URL that served it,
  as FFmpeg would resolve them.

  FFmpeg's own ``http_proxy`` option would not do: its HLS demuxer opens any URL whose
  protocol name starts with "http", so a playlist could list
  ``httpproxy://10.0.0.5:6379/x`` and FFmpeg would connect there directly (tunnelling
  HTTPS through a proxy needs that protocol whitelisted); and FFmpeg skips its proxy for
  the hosts the ``no_proxy`` environment variable names.
* RTMP(S), RTSP(S) and SRT sources are resolved and checked with
  :func:`~bastion.media.fetch.check_host` before every connection (reconnections
  included), and FFmpeg is given the checked address instead of the name
  (:meth:`~bastion.live.reading.source.StreamSource.pinned`).

A refused connection puts the reader in ``error`` with the code ``url_rejected`` (it
is not retried), and the connection opens nothing more once one was refused.

Not covered: an RTSP server may answer ``DESCRIBE`` with a redirect (3xx), which
FFmpeg's RTSP demuxer follows by itself, to any host, without asking Bastion; only the
connection to the source's own host is checked and pinned.
"""

from __future__ import annotations

import io
import logging
import ssl
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from bastion.errors import UrlFetchFailed, UrlRejected
from bastion.live.reading.config import StreamReaderConfig
from bastion.live.reading.failures import StreamFailure, classify, rejected
from bastion.live.reading.source import StreamSource
from bastion.media.fetch import CheckedUrl, FetchPolicy, check_host, check_url

__all__ = ["Attempt", "GuardedHttp", "SourceGuard", "absolute_playlist"]

log = logging.getLogger(__name__)

IoOpen = Callable[[str, int, dict[str, str]], object]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HTTP_SCHEMES = ("http", "https")
_CRYPTO_PREFIXES = ("crypto+", "crypto:")
_PLAYLIST_MAGIC = b"#EXTM3U"
_AVIO_FLAG_WRITE = 2
_PINNED_ADDRESSES = 3  # checked addresses of a host tried in turn when one is unreachable
_AES_BLOCK = 16
_READ_CHUNK = 64 * 1024
# what a connection failure means when it is one of these (searched along the causes)
_CAUSES: tuple[tuple[type[BaseException], str, str], ...] = (
    (ConnectionRefusedError, "connection_refused", "connection refused"),
    (ssl.SSLError, "tls_error", "TLS failed"),
)


def _shown(url: str) -> str:
    """``url`` for messages: no credentials, no query (it may carry a token)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port:
            host = f"{host}:{parts.port}"
        return parts._replace(netloc=host, query="", fragment="").geturl()
    except ValueError:
        return url.split("?", 1)[0][:200]


def _cause(exc: BaseException) -> tuple[str, str] | None:
    seen: BaseException | None = exc
    for _ in range(12):
        if seen is None:
            return None
        for kind, code, what in _CAUSES:
            if isinstance(seen, kind):
                return code, what
        seen = seen.__cause__ or seen.__context__
    return None


def _transport_failure(exc: httpx.HTTPError, url: str) -> StreamFailure:
    shown = _shown(url)
    if isinstance(exc, httpx.TimeoutException):
        return StreamFailure(
            f"{shown} did not answer in time ({type(exc).__name__})", code="timeout"
        )
    found = _cause(exc)
    if found is not None:
        code, what = found
        return StreamFailure(f"{shown}: {what}: {exc}", code=code)
    if isinstance(exc, httpx.ConnectError):
        return StreamFailure(f"could not connect to {shown}: {exc}", code="network_error")
    return StreamFailure(
        f"the connection to {shown} was lost: {type(exc).__name__}: {exc}", code="connection_lost"
    )


def _check_failure(exc: UrlRejected | UrlFetchFailed) -> StreamFailure:
    if isinstance(exc, UrlRejected):
        return rejected(exc.message)
    return StreamFailure(exc.message, code="network_error")


def _absolute_attributes(line: str, base: str) -> str:
    """``URI="..."`` attributes of a playlist tag made absolute against ``base``."""
    out: list[str] = []
    pos = 0
    while (found := line.find('URI="', pos)) >= 0:
        start = found + 5
        end = line.find('"', start)
        if end < 0:
            break
        out += [line[pos:start], urljoin(base, line[start:end])]
        pos = end
    out.append(line[pos:])
    return "".join(out)


def absolute_playlist(data: bytes, base: str) -> bytes:
    """An HLS playlist whose URIs (lines and tags' ``URI`` attributes) are absolute,
    resolved against ``base``: what a playlist means when ``base`` served it."""
    text = data.decode("latin-1")  # byte for byte: nothing but the URIs changes
    lines: list[str] = []
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        stripped = line.strip()
        if not stripped:
            lines.append(line)
        elif stripped.startswith("#"):
            lines.append(_absolute_attributes(line, base))
        else:
            lines.append(urljoin(base, stripped))
    return "\n".join(lines).encode("latin-1", "replace")


class _Body:
    """A streamed response body as the file object FFmpeg reads (not seekable, like a
    live stream). Bytes are never inflated faster than they are read."""

    def __init__(self, response: httpx.Response, url: str) -> None:
        self.url = url
        self._response: httpx.Response | None = response
        self._chunks: Iterator[bytes] = response.iter_raw()
        self._buffer = b""
        self._tail = b""  # compressed input not inflated yet
        self._zlib: zlib._Decompress | None = None
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            self._zlib = zlib.decompressobj(32 + zlib.MAX_WBITS)
        elif encoding not in ("", "identity"):
            self.close()
            raise StreamFailure(
                f"{_shown(url)} sent an unsupported Content-Encoding {encoding!r}",
                code="http_error",
            )

    def _raw(self) -> bytes | None:
        try:
            return next(self._chunks)
        except StopIteration:
            return None
        except httpx.HTTPError as exc:
            raise _transport_failure(exc, self.url) from exc
        except httpx.StreamError:  # closed under us
            return None

    def _next(self) -> bytes | None:
        decoder = self._zlib
        if decoder is None:
            return self._raw()
        try:
            while True:
                if self._tail:
                    data = decoder.decompress(self._tail, _READ_CHUNK)
                    self._tail = decoder.unconsumed_tail
                    if data:
                        return data
                    continue
                raw = self._raw()
                if raw is None:
                    self._zlib = None
                    return decoder.flush() or None
                self._tail = raw
        except zlib.error as exc:
            raise StreamFailure(
                f"the compressed body of {_shown(self.url)} is corrupt: {exc}", code="http_error"
            ) from exc

    def peek(self, size: int) -> bytes:
        """The next ``size`` bytes (fewer at the end), left to be read."""
        while len(self._buffer) < size:
            chunk = self._next()
            if chunk is None:
                break
            self._buffer += chunk
        return self._buffer[:size]

    def read_all(self, limit: int) -> bytes:
        """The rest of the body, refused when it is longer than ``limit`` bytes."""
        parts = [self._buffer]
        size = len(self._buffer)
        self._buffer = b""
        while (chunk := self._next()) is not None:
            size += len(chunk)
            if size > limit:
                raise StreamFailure(
                    f"{_shown(self.url)} is longer than {limit} bytes", code="http_error"
                )
            parts.append(chunk)
        return b"".join(parts)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = _READ_CHUNK
        while not self._buffer:
            chunk = self._next()
            if chunk is None:
                return b""
            self._buffer = chunk
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def close(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            try:
                response.close()
            except Exception:  # closing a broken connection: nothing left to do
                log.debug("closing %s failed", _shown(self.url), exc_info=True)


class _Decrypting:
    """An HLS ``METHOD=AES-128`` segment (AES-128-CBC), decrypted as FFmpeg reads it; the
    PKCS#7 padding of the last block is removed, as FFmpeg's ``crypto`` protocol does."""

    def __init__(self, body: _Body, key: bytes, iv: bytes) -> None:
        self._body = body
        self._cipher: CipherContext = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        self._held = b""  # the last block: it may be the padded one
        self._out = b""
        self._done = False

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = _READ_CHUNK
        while not self._out and not self._done:
            chunk = self._body.read(_READ_CHUNK)
            if chunk:
                data = self._held + self._cipher.update(chunk)
                keep = len(data) - _AES_BLOCK if len(data) >= _AES_BLOCK else 0
                self._out, self._held = data[:keep], data[keep:]
                continue
            self._done = True
            try:
                last = self._held + self._cipher.finalize()
            except ValueError:  # not a whole number of blocks: keep what decrypted
                last = self._held
            pad = last[-1] if last else 0
            if 0 < pad <= _AES_BLOCK and len(last) >= pad:
                last = last[:-pad]
            self._out = last
        out, self._out = self._out[:size], self._out[size:]
        return out

    def close(self) -> None:
        self._body.close()


class GuardedHttp:
    """HTTP(S) GETs for one reader: every hop checked by the URL policy and sent to an
    address that check accepted (see the module documentation)."""

    def __init__(self, policy: FetchPolicy, config: StreamReaderConfig) -> None:
        self.policy = policy.model_copy(update={"schemes": list(_HTTP_SCHEMES)})
        self.config = config
        self._client = httpx.Client(
            timeout=httpx.Timeout(
                connect=config.open_timeout_s,
                read=config.read_timeout_s,
                write=config.read_timeout_s,
                pool=config.open_timeout_s,
            ),
            follow_redirects=False,
            trust_env=False,
            verify=config.verify_tls,
            # no pooling: a TLS connection verified for one name is never reused for another
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={
                "User-Agent": config.user_agent,
                "Accept": "*/*",
                "Accept-Encoding": "identity",
            },
        )

    def close(self) -> None:
        self._client.close()

    def _check(self, url: str) -> CheckedUrl:
        try:
            return check_url(url, self.policy)
        except (UrlRejected, UrlFetchFailed) as exc:
            raise _check_failure(exc) from exc

    def _send(self, checked: CheckedUrl, end: int | None) -> httpx.Response:
        logical = httpx.URL(checked.url)
        headers = {"Host": logical.netloc.decode("ascii")}
        if end is not None:
            # from the start: FFmpeg then skips to the range's offset by reading
            headers["Range"] = f"bytes=0-{end - 1}"
        extensions = {"sni_hostname": checked.host} if checked.scheme == "https" else {}
        failure: httpx.HTTPError | None = None
        for address in checked.addresses[:_PINNED_ADDRESSES]:
            request = self._client.build_request(
                "GET", logical.copy_with(host=address), headers=headers, extensions=extensions
            )
            try:
                return self._client.send(request, stream=True)
            except httpx.ConnectError as exc:  # try the next checked address
                failure = exc
            except httpx.HTTPError as exc:
                raise _transport_failure(exc, checked.url) from exc
        assert failure is not None
        raise _transport_failure(failure, checked.url) from failure

    def get(self, url: str, *, end: int | None = None) -> tuple[httpx.Response, str, bool]:
        """The streamed 2xx response to ``GET url``, the URL that served it, and whether
        that came after redirects. Raises :class:`StreamFailure` (``url_rejected`` for a
        hop the policy refuses)."""
        current = url
        redirected = False
        for _hop in range(self.policy.max_redirects + 1):
            checked = self._check(current)
            response = self._send(checked, end)
            status = response.status_code
            if status in _REDIRECTS:
                location = response.headers.get("location")
                response.close()
                if not location:
                    raise StreamFailure(
                        f"{_shown(checked.url)} redirects (HTTP {status}) without a Location",
                        code="http_error",
                    )
                try:
                    current = str(httpx.URL(checked.url).join(location))
                except httpx.InvalidURL as exc:
                    raise rejected(
                        f"{_shown(checked.url)} redirects to an invalid URL: {exc}"
                    ) from exc
                redirected = True
                continue
            if 200 <= status < 300:
                return response, checked.url, redirected
            response.close()
            code = "stream_not_found" if status in (404, 410) else "http_error"
            raise StreamFailure(f"{_shown(checked.url)} answered HTTP {status}", code=code)
        raise StreamFailure(
            f"{_shown(url)} redirects more than {self.policy.max_redirects} times",
            code="http_error",
        )

    def open(self, url: str, *, end: int | None = None) -> _Body | io.BytesIO:
        """``url``'s body as a file object; a playlist that came after redirects is read
        whole and its URIs made absolute against the URL that served it."""
        response, final, redirected = self.get(url, end=end)
        body = _Body(response, final)
        if not redirected or not body.peek(len(_PLAYLIST_MAGIC)).startswith(_PLAYLIST_MAGIC):
            return body
        try:
            data = body.read_all(self.config.max_playlist_bytes)
        finally:
            body.close()
        return io.BytesIO(absolute_playlist(data, final))


def _hex_option(options: dict[str, str], name: str, url: str) -> bytes:
    try:
        value = bytes.fromhex(options.get(name, ""))
    except ValueError:
        value = b""
    if len(value) != _AES_BLOCK:
        raise StreamFailure(
            f"the AES-128 {name} for {_shown(url)} is not 16 bytes", code="corrupt_media"
        )
    return value


_File = _Body | _Decrypting | io.BytesIO


class _Reported:
    """The file object FFmpeg reads. Nothing is raised into FFmpeg: PyAV would keep the
    exception for a later call (and FFmpeg may well go on, e.g. past an HLS segment);
    a failure is told to the guard instead and ends the file."""

    def __init__(self, inner: _File, report: Callable[[StreamFailure], None]) -> None:
        self._inner: _File | None = inner
        self._report = report

    def read(self, size: int = -1) -> bytes:
        inner = self._inner
        if inner is None:
            return b""
        try:
            return inner.read(size)
        except StreamFailure as failure:
            self._report(failure)
            self.close()
            return b""

    def close(self) -> None:
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.close()


class _Opener:
    """PyAV's ``io_open`` for one connection to an HTTP(S) source: every URL the demuxer
    opens. The first is the source itself, opened before FFmpeg asks (``top``). A URL
    that is refused or fails is, for FFmpeg, an empty file (HLS skips such a segment,
    as it skips one that FFmpeg's own HTTP fails to get); the guard knows why."""

    def __init__(self, guard: SourceGuard, top: _File) -> None:
        self._guard = guard
        self._top: _Reported | None = _Reported(top, guard.top_failed)

    def __call__(self, url: str, flags: int, options: dict[str, str]) -> object:
        top, self._top = self._top, None
        if top is not None:
            return top
        guard = self._guard
        if guard.refusal is not None:  # a connection refused once opens nothing more
            return io.BytesIO(b"")
        try:
            return _Reported(self._open(url, flags, options), guard.nested_failed)
        except StreamFailure as failure:
            guard.nested_failed(failure)
            return io.BytesIO(b"")

    def _open(self, url: str, flags: int, options: dict[str, str]) -> _File:
        target = url
        crypto = False
        for prefix in _CRYPTO_PREFIXES:
            if target.startswith(prefix):
                target, crypto = target[len(prefix) :], True
                break
        if flags & _AVIO_FLAG_WRITE:
            raise rejected(f"the demuxer tried to write to {_shown(target)}")
        scheme = target.partition(":")[0].lower()
        if scheme not in _HTTP_SCHEMES:
            raise rejected(
                f"the source leads to {_shown(target)!r}: only http and https URLs are followed"
            )
        try:
            end = int(options.get("end_offset", "0"))
        except ValueError:
            end = 0
        body = self._guard.http.open(target, end=end if end > 0 else None)
        if not crypto or isinstance(body, io.BytesIO):  # (a playlist is not encrypted)
            return body
        try:
            key, iv = _hex_option(options, "key", target), _hex_option(options, "iv", target)
        except StreamFailure:
            body.close()
            raise
        return _Decrypting(body, key, iv)

    def release(self) -> None:
        """Close the source's body if FFmpeg never took it."""
        top, self._top = self._top, None
        if top is not None:
            top.close()


@dataclass(frozen=True, slots=True)
class Attempt:
    """One way to open the source: the URL and options FFmpeg is given, the demuxer when
    it must be named, and the I/O hook of HTTP(S) sources."""

    url: str
    options: dict[str, str] = field(default_factory=dict)
    format: str | None = None
    io_open: IoOpen | None = None


class SourceGuard:
    """The connections of one reader's source under ``policy`` (see the module doc).

    Used from the reader's thread only: :meth:`attempts` begins each connection,
    :meth:`check` and :meth:`explain` say what a connection's failure was, and
    :meth:`finish` ends it.
    """

    def __init__(
        self, source: StreamSource, config: StreamReaderConfig, policy: FetchPolicy
    ) -> None:
        self.source = source
        self.config = config
        self.policy = policy
        self.refusal: StreamFailure | None = None
        self.top_failure: StreamFailure | None = None  # reading the source itself failed
        self.nested_failure: StreamFailure | None = None  # a URL it led to failed
        self._http: GuardedHttp | None = None
        self._opener: _Opener | None = None

    @property
    def http(self) -> GuardedHttp:
        if self._http is None:
            self._http = GuardedHttp(self.policy, self.config)
        return self._http

    def refuse(self, failure: StreamFailure) -> None:
        if self.refusal is None:
            self.refusal = failure
            log.warning("live source %s refused: %s", self.source.display, failure.message)

    def top_failed(self, failure: StreamFailure) -> None:
        if failure.code == "url_rejected":
            self.refuse(failure)
        elif self.top_failure is None:
            self.top_failure = failure

    def nested_failed(self, failure: StreamFailure) -> None:
        if failure.code == "url_rejected":
            self.refuse(failure)
            return
        self.nested_failure = failure
        log.info("live source %s: %s", self.source.display, failure.message)

    def attempts(self) -> list[Attempt]:
        """Begin a connection: the ways to open the source, to try in turn. Raises
        :class:`StreamFailure` (``url_rejected`` when the policy refuses the source)."""
        self.finish()
        self.refusal = self.top_failure = self.nested_failure = None
        source = self.source
        if source.is_file:
            return [Attempt(source.url)]
        if source.is_http:
            return [self._http_attempt()]
        host, port = source.endpoint()
        try:
            checked = check_host(host, port, self.policy, scheme=source.protocol)
        except (UrlRejected, UrlFetchFailed) as exc:
            failure = _check_failure(exc)
            if failure.code == "url_rejected":
                self.refuse(failure)
            raise failure from exc
        return [
            Attempt(url, options)
            for url, options in map(source.pinned, checked.addresses[:_PINNED_ADDRESSES])
        ]

    def _http_attempt(self) -> Attempt:
        try:
            top = self.http.open(self.source.url)
        except StreamFailure as failure:
            if failure.code == "url_rejected":
                self.refuse(failure)
            raise
        self._opener = _Opener(self, top)  # closes ``top`` if FFmpeg never takes it
        if isinstance(top, io.BytesIO):
            playlist = True
        else:
            playlist = top.peek(len(_PLAYLIST_MAGIC)).startswith(_PLAYLIST_MAGIC)
        # FFmpeg names HLS from the URL's extension or the MIME type, which it cannot see
        # here: a body that is a playlist is one, whatever its URL
        return Attempt(self.source.url, format="hls" if playlist else None, io_open=self._opener)

    def check(self) -> None:
        """Raise the refusal this connection met, if any (checked at every packet)."""
        if self.refusal is not None:
            raise self.refusal

    def ended(self) -> None:
        """The demuxer reached the end: raise what ended it when it was no real end (a
        refusal, or reading the source failed)."""
        self.check()
        if self.top_failure is not None:
            raise self.top_failure

    def explain(self, exc: BaseException, *, opened: bool) -> StreamFailure:
        """The failure ``exc`` (from PyAV) stands for on this connection: a refused URL
        first, then a failure to read the source, then a URL that failed rather than bad
        data when that is what made the demuxer fail."""
        if self.refusal is not None:
            return self.refusal
        if self.top_failure is not None:
            return self.top_failure
        failure = classify(exc, opened=opened)
        nested = self.nested_failure
        if nested is not None and failure.code in ("corrupt_media", "unsupported_media_type"):
            return nested
        return failure

    def finish(self) -> None:
        """End the current connection (what FFmpeg did not take is closed)."""
        opener, self._opener = self._opener, None
        if opener is not None:
            opener.release()

    def close(self) -> None:
        self.finish()
        http, self._http = self._http, None
        if http is not None:
            http.close()
