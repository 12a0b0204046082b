"""Why a connection to a live source failed, as a stable code, and whether to retry.

Transient failures (the network, the server, a stream key nobody publishes yet) lead
to a reconnection; permanent ones (the source answers with something that is not a
video FFmpeg can read, a stream without video, a codec without decoder, frames over
the size limits) put the reader in the ``error`` state, where retrying would only
repeat the failure.

Transient codes: ``connection_refused``, ``timeout``, ``stream_not_found`` (HTTP 404
or an RTMP server that knows no such stream), ``http_error``, ``connection_lost``,
``source_ended``, ``no_video_data``, ``decode_failed``, ``network_error``, ``tls_error``
(an HTTPS certificate or handshake failed).
Permanent codes: ``corrupt_media``, ``unsupported_media_type``, ``no_video_stream``,
``unsupported_codec``, ``unsupported_stream_protocol``, ``video_too_large``,
``url_rejected`` (the source, a redirect, or a URL it lists — playlist, segment, key —
leads to an address or a scheme the URL policy refuses: :mod:`bastion.live.reading.egress`).
"""

from __future__ import annotations

import errno

import av.error

__all__ = ["StreamFailure", "classify", "rejected"]


class StreamFailure(Exception):
    """A failed or lost connection: a stable ``code`` and whether it is ``permanent``."""

    def __init__(self, message: str, *, code: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.permanent = permanent


def rejected(message: str) -> StreamFailure:
    """A connection the URL policy refused: permanent, retrying would be refused again."""
    return StreamFailure(message, code="url_rejected", permanent=True)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def classify(exc: BaseException, *, opened: bool) -> StreamFailure:
    """The failure an exception from PyAV stands for.

    ``opened``: the source had already given frames on this connection, so bad data
    is a damaged stream worth reconnecting to rather than a source that never was a
    video.
    """
    if isinstance(exc, StreamFailure):
        return exc
    reason = _reason(exc)
    if isinstance(exc, av.error.ProtocolNotFoundError):
        return StreamFailure(
            f"this build cannot read the stream's protocol: {reason}",
            code="unsupported_stream_protocol",
            permanent=True,
        )
    if isinstance(exc, av.error.DecoderNotFoundError | av.error.DemuxerNotFoundError):
        return StreamFailure(
            f"no decoder for the stream: {reason}", code="unsupported_codec", permanent=True
        )
    if isinstance(exc, av.error.InvalidDataError):
        if opened:
            return StreamFailure(f"damaged stream data: {reason}", code="connection_lost")
        return StreamFailure(
            f"the source did not send a video stream that can be read: {reason}",
            code="corrupt_media",
            permanent=True,
        )
    if isinstance(exc, av.error.ExitError | TimeoutError):
        return StreamFailure(f"the source did not answer in time: {reason}", code="timeout")
    if isinstance(exc, av.error.HTTPNotFoundError | av.error.PermissionError):
        # nginx-rtmp (and others) refuse to play a stream key nobody publishes
        return StreamFailure(f"no such stream (yet): {reason}", code="stream_not_found")
    if isinstance(exc, av.error.HTTPError):
        return StreamFailure(f"HTTP error: {reason}", code="http_error")
    if isinstance(exc, ConnectionRefusedError):
        return StreamFailure(f"connection refused: {reason}", code="connection_refused")
    if isinstance(exc, av.error.EOFError | ConnectionError):
        return StreamFailure(f"the connection was lost: {reason}", code="connection_lost")
    if isinstance(exc, av.error.OSError) and exc.errno == errno.EINVAL and not opened:
        return StreamFailure(
            f"the source is not a video stream this reader accepts: {reason}",
            code="unsupported_media_type",
            permanent=True,
        )
    if isinstance(exc, OSError):
        code = "connection_lost" if opened else "network_error"
        return StreamFailure(f"network error: {reason}", code=code)
    return StreamFailure(f"the stream could not be read: {reason}", code="network_error")
