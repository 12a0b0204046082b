"""Live sources: which URLs are accepted and the FFmpeg options each protocol is opened with.

Accepted: ``rtmp://``, ``rtmps://``, ``http(s)://`` (HLS ``.m3u8`` playlists, HTTP-FLV,
MPEG-TS over HTTP), ``rtsp://``, ``rtsps://``, ``srt://`` and, when the configuration
allows it, a local file (a path or ``file://``) for replays and tests.

Every network connection obeys the address policy of URL inputs
(:mod:`bastion.live.reading.egress`). FFmpeg never opens an HTTP(S) source with its own network
protocols: the source and every URL its demuxer asks for (HLS variant playlists,
segments, keys) are read through Bastion's guarded HTTP client, so these sources are
opened with a protocol whitelist that names no protocol at all. RTMP(S), RTSP(S) and
SRT sources are opened at an address checked just before (:meth:`StreamSource.pinned`).

Every source is opened with a protocol whitelist and a demuxer whitelist of video
containers (HLS only for HTTP(S) and files, RTSP's own demuxers only for RTSP).
Timeouts are given twice: as PyAV's interrupt timeouts (opening, any protocol; reading,
HTTP(S) and files only, see :attr:`StreamSource.times_out_reads`) and as the protocols'
own options — ``rw_timeout`` for every FFmpeg network protocol, ``timeout`` for RTSP
and SRT (socket I/O, µs) and ``connect_timeout`` for SRT. RTMP takes no ``timeout``:
there it means "listen for a publisher". The guarded HTTP client has its own (connect:
``open_timeout_s``, each read: ``read_timeout_s``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from bastion.errors import UrlRejected
from bastion.live.reading.config import StreamReaderConfig

__all__ = ["DEMUXERS", "NO_PROTOCOLS", "Protocol", "StreamSource", "parse_source"]

Protocol = Literal["rtmp", "rtmps", "http", "https", "rtsp", "rtsps", "srt", "file"]

_SCHEMES: dict[str, Protocol] = {
    "rtmp": "rtmp",
    "rtmps": "rtmps",
    "http": "http",
    "https": "https",
    "rtsp": "rtsp",
    "rtsps": "rtsps",
    "srt": "srt",
}
# A protocol whitelist naming no protocol: HTTP(S) sources are read through Python I/O,
# and a demuxer that tried to open a URL of its own would be refused.
NO_PROTOCOLS = "none"
_NETWORK: dict[Protocol, str] = {
    "rtmp": "rtmp,tcp",
    "rtmps": "rtmps,tcp,tls",
    "http": NO_PROTOCOLS,
    "https": NO_PROTOCOLS,
    "rtsp": "rtsp,rtsps,rtp,srtp,udp,tcp,tls",
    "rtsps": "rtsp,rtsps,rtp,srtp,udp,tcp,tls",
    "srt": "srt,udp",
}
# Ports FFmpeg connects to when the URL names none (SRT has no default).
_DEFAULT_PORTS: dict[Protocol, int] = {
    "rtmp": 1935,
    "rtmps": 443,
    "http": 80,
    "https": 443,
    "rtsp": 554,
    "rtsps": 322,
    "srt": 0,
}
# Demuxers a live source may be read with (HLS segments are MPEG-TS or fragmented MP4).
# HLS only where its URLs go through the guarded client (HTTP) or come from the
# configuration (files); RTSP's own (rtsp, sdp, rtp: an SDP opens RTP/UDP) only for RTSP.
_STREAM_DEMUXERS = "flv,live_flv,mpegts,mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpeg,ogg,asf"
DEMUXERS = "hls," + _STREAM_DEMUXERS + ",rtsp,sdp,rtp"
_DEMUXERS: dict[Protocol, str] = {
    "http": "hls," + _STREAM_DEMUXERS,
    "https": "hls," + _STREAM_DEMUXERS,
    "file": "hls," + _STREAM_DEMUXERS,
    "rtsp": _STREAM_DEMUXERS + ",rtsp,sdp,rtp",
    "rtsps": _STREAM_DEMUXERS + ",rtsp,sdp,rtp",
}
_TCURL_MAX = 1023  # FFmpeg keeps at most this much of an RTMP tcUrl


def _us(seconds: float) -> str:
    return str(max(1, round(seconds * 1_000_000)))


def _split_authority(url: str) -> tuple[str, str, str, str, str]:
    """``scheme://[userinfo@]host[:port]rest`` split as FFmpeg (and ``urlsplit``) split it:
    scheme, userinfo with its ``@`` (or ""), host without brackets, port text, and the
    rest (path, query and fragment)."""
    scheme, _, rest = url.partition("://")
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, hostport = netloc.rpartition("@")
    if hostport.startswith("["):
        end = hostport.find("]")
        host = hostport[1:end]
        port = hostport[end + 2 :] if hostport[end + 1 : end + 2] == ":" else ""
    else:
        name, colon, port = hostport.rpartition(":")
        host, port = (name, port) if colon else (hostport, "")
    return scheme, userinfo + at, host, port, tail


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _rtmp_app(path: str) -> str:
    """The application FFmpeg's RTMP client takes from a URL path (query included)."""
    qmark = path.find("?")
    if qmark >= 0 and "slist=" in path[qmark:]:
        return path[1:qmark]
    if path.startswith("/ondemand/"):
        return "ondemand"
    first = path.find("/", 1) if path else -1
    if first < 0:
        return path[1:]
    colon = path.find(":", first + 1)
    second = path.find("/", first + 1)
    if second < 0 or 0 <= colon < second:
        return path[1:first]
    return path[1:second]


@dataclass(frozen=True, slots=True)
class StreamSource:
    """A validated live source."""

    url: str  # what FFmpeg opens (a plain path for files)
    protocol: Protocol

    @property
    def is_file(self) -> bool:
        return self.protocol == "file"

    @property
    def is_http(self) -> bool:
        """Read through Bastion's guarded HTTP client rather than FFmpeg's protocols."""
        return self.protocol in ("http", "https")

    @property
    def times_out_reads(self) -> bool:
        """FFmpeg's own protocol times out every read (``rw_timeout``): PyAV's interrupt
        timeout is not needed for reading, only for opening. (That timeout takes the GIL
        at each of FFmpeg's frequent interrupt checks, which, over many streams read at
        once, costs more CPU than the reading.) HTTP(S) sources are read through Python
        I/O and files have no network: they keep it."""
        return not self.is_file and not self.is_http

    def endpoint(self) -> tuple[str, int]:
        """The host (without brackets) and port a network source connects to."""
        parts = urlsplit(self.url)
        return parts.hostname or "", parts.port or _DEFAULT_PORTS.get(self.protocol, 0)

    def pinned(self, address: str) -> tuple[str, dict[str, str]]:
        """The URL that makes FFmpeg connect to the checked ``address`` instead of
        resolving the host name again, and the options that keep what the name meant.

        An RTMP client sends the server a ``tcUrl`` built from the URL's host: it is set
        to the original one (a server may pick its virtual host from it). TLS protocols
        (``rtmps``, ``rtsps``) then connect to an IP literal, so FFmpeg sends no server
        name (SNI); it does not verify certificates either way.
        """
        scheme, userinfo, host, port, tail = _split_authority(self.url)
        netloc = userinfo + _url_host(address) + (f":{port}" if port else "")
        options: dict[str, str] = {}
        if self.protocol in ("rtmp", "rtmps"):
            shown_port = f":{int(port)}" if port.isdigit() else ""
            tcurl = f"{scheme}://{_url_host(host)}{shown_port}/{_rtmp_app(tail)}"
            if len(tcurl) <= _TCURL_MAX:
                options["rtmp_tcurl"] = tcurl
        return f"{scheme}://{netloc}{tail}", options

    @property
    def display(self) -> str:
        """The URL without credentials, for logs and statuses."""
        if self.is_file:
            return self.url
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return parts._replace(netloc=host, query="").geturl()

    def container_options(self, config: StreamReaderConfig) -> dict[str, str]:
        """FFmpeg options for opening this source."""
        options = {
            "protocol_whitelist": _NETWORK.get(self.protocol, "file"),
            "format_whitelist": _DEMUXERS.get(self.protocol, _STREAM_DEMUXERS),
            "analyzeduration": _us(config.analyze_duration_s),
            "probesize": str(config.probe_bytes),
        }
        if self.is_file:
            return options
        if self.is_http:
            # HLS may not reuse connections: that needs FFmpeg's own HTTP protocol
            options["http_persistent"] = "0"
            options["http_multiple"] = "0"
            return options
        read = _us(config.read_timeout_s)
        options["rw_timeout"] = read
        if self.protocol in ("rtmp", "rtmps"):
            options["rtmp_live"] = "live"
        elif self.protocol in ("rtsp", "rtsps"):
            options["timeout"] = read
            options["rtsp_transport"] = config.rtsp_transport
        elif self.protocol == "srt":
            options["timeout"] = read
            options["connect_timeout"] = str(max(1, round(config.open_timeout_s * 1000)))
        return options


def parse_source(source: str | os.PathLike[str], *, allow_files: bool = False) -> StreamSource:
    """Validate a source; raises :class:`UrlRejected` (400 ``url_rejected``) when not accepted."""
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    text = source.strip()
    if not text:
        raise UrlRejected("the stream URL is empty")
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        raise UrlRejected("the stream URL contains control characters")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError as exc:
        raise UrlRejected(f"the stream URL is not valid: {exc}") from exc
    scheme = parts.scheme.lower() if "://" in text else ""
    protocol = _SCHEMES.get(scheme)
    if protocol is not None:
        if not parts.hostname:
            raise UrlRejected(f"the stream URL has no host: {text!r}")
        return StreamSource(url=text, protocol=protocol)
    if scheme in ("", "file"):
        if not allow_files:
            raise UrlRejected(
                "local files are not accepted as live sources",
                details={"allowed": sorted(_SCHEMES)},
            )
        path = Path(parts.path if scheme else text)
        if not path.is_file():
            raise UrlRejected(f"no such file: {path}")
        return StreamSource(url=os.fspath(path), protocol="file")
    raise UrlRejected(
        f"unsupported stream URL scheme {scheme!r}; use one of "
        + ", ".join(f"{s}://" for s in _SCHEMES),
        details={"scheme": scheme, "allowed": sorted(_SCHEMES)},
    )
