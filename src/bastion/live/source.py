"""Live sources: which URLs are accepted and the FFmpeg options each protocol is opened with.

Accepted: ``rtmp://``, ``rtmps://``, ``http(s)://`` (HLS ``.m3u8`` playlists, HTTP-FLV,
MPEG-TS over HTTP), ``rtsp://``, ``rtsps://``, ``srt://`` and, when the configuration
allows it, a local file (a path or ``file://``) for replays and tests.

Every source is opened with a protocol whitelist (an HLS playlist can only lead to
HTTP(S) segments, never to a local file) and a demuxer whitelist of video containers.
Timeouts are given twice: as PyAV's interrupt timeouts (open and read, any protocol)
and as the protocols' own options — ``rw_timeout`` for every network protocol,
``timeout`` for HTTP, RTSP and SRT (socket I/O, µs) and ``connect_timeout`` for SRT.
RTMP takes no ``timeout``: there it means "listen for a publisher".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from bastion.errors import UrlRejected
from bastion.live.config import StreamReaderConfig

__all__ = ["DEMUXERS", "Protocol", "StreamSource", "parse_source"]

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
_NETWORK: dict[Protocol, str] = {
    "rtmp": "rtmp,tcp",
    "rtmps": "rtmps,tcp,tls",
    "http": "http,https,tcp,tls,crypto",
    "https": "http,https,tcp,tls,crypto",
    "rtsp": "rtsp,rtsps,rtp,srtp,udp,tcp,tls",
    "rtsps": "rtsp,rtsps,rtp,srtp,udp,tcp,tls",
    "srt": "srt,udp",
}
# Demuxers a live source may be read with (HLS segments are MPEG-TS or fragmented MP4).
DEMUXERS = (
    "hls,flv,live_flv,mpegts,mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,rtsp,sdp,rtp,avi,mpeg,ogg,asf"
)


def _us(seconds: float) -> str:
    return str(max(1, round(seconds * 1_000_000)))


@dataclass(frozen=True, slots=True)
class StreamSource:
    """A validated live source."""

    url: str  # what FFmpeg opens (a plain path for files)
    protocol: Protocol

    @property
    def is_file(self) -> bool:
        return self.protocol == "file"

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
            "format_whitelist": DEMUXERS,
            "analyzeduration": _us(config.analyze_duration_s),
            "probesize": str(config.probe_bytes),
        }
        if self.is_file:
            return options
        read = _us(config.read_timeout_s)
        options["rw_timeout"] = read
        if self.protocol in ("http", "https"):
            options["timeout"] = read
            options["user_agent"] = config.user_agent
        elif self.protocol in ("rtmp", "rtmps"):
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
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    protocol = _SCHEMES.get(scheme)
    if protocol is not None:
        if not urlsplit(text).hostname:
            raise UrlRejected(f"the stream URL has no host: {text!r}")
        return StreamSource(url=text, protocol=protocol)
    if scheme in ("", "file"):
        if not allow_files:
            raise UrlRejected(
                "local files are not accepted as live sources",
                details={"allowed": sorted(_SCHEMES)},
            )
        path = Path(urlsplit(text).path if scheme else text)
        if not path.is_file():
            raise UrlRejected(f"no such file: {path}")
        return StreamSource(url=os.fspath(path), protocol="file")
    raise UrlRejected(
        f"unsupported stream URL scheme {scheme!r}; use one of "
        + ", ".join(f"{s}://" for s in _SCHEMES),
        details={"scheme": scheme, "allowed": sorted(_SCHEMES)},
    )
