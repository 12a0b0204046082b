"""Live-stream readers connect only where the URL policy allows, at every hop.

Everything runs on loopback, so the policy used here allows exactly one loopback
address, 127.0.0.2 (Linux routes all of 127/8 on ``lo``), as the "public" host, while
127.0.0.1 and [::1] stay forbidden. A forbidden server serves the very same media on
127.0.0.1 and [::1] (so an unguarded reader would happily play it) and counts every
connection it accepts: the tests assert it saw none, whatever the allowed host's
redirects, playlists, variants, keys or init sections point at, and that the reader
ends in ``error`` with the code ``url_rejected``. Positive controls read real HLS
(plain, AES-128, after a redirect) from the allowed host, with hostile proxy
variables in the environment, and RTMP from nginx by an allowed name.
"""

from __future__ import annotations

import asyncio
import http.server
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import av
import numpy as np
import pytest
from av.video.stream import VideoStream
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bastion.errors import UrlFetchFailed, UrlRejected
from bastion.live.reading.config import StreamReaderConfig
from bastion.live.reading.egress import absolute_playlist
from bastion.live.reading.reader import StreamReader
from bastion.live.reading.source import parse_source
from bastion.live.reading.status import LiveFrame, StreamState, StreamStatus
from bastion.media.fetch import FetchPolicy, check_host
from tests.support.databases import missing_tool
from tests.support.live_server import LiveServer, Publisher, live_server

PUBLIC = "127.0.0.2"
POLICY = FetchPolicy(allow_hosts=[PUBLIC])
CONFIG = StreamReaderConfig(
    open_timeout_s=3,
    read_timeout_s=3,
    backoff_min_s=0.2,
    backoff_max_s=0.5,
    give_up_after_s=6,
)
FPS = 15
SEGMENTS = 3
KEY = bytes(range(16))
IV = bytes(range(16, 32))


# ---- servers ---------------------------------------------------------------------------
class _Handler(http.server.SimpleHTTPRequestHandler):
    """Files of the media folder, and ``/redirect/<status>?to=<url>`` answering a redirect."""

    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path.startswith("/redirect/"):
            status = int(parts.path.rsplit("/", 1)[1])
            target = parse_qs(parts.query)["to"][0]
            self.send_response(status)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(socketserver.ThreadingTCPServer):
    """Serves the media folder and counts the connections it accepted."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], folder: Path) -> None:
        self.folder = folder
        self.connections: list[str] = []
        super().__init__(address, self._handler)

    def _handler(
        self, request: socket.socket, client: tuple[str, int], server: socketserver.BaseServer
    ) -> _Handler:
        return _Handler(request, client, server, directory=str(self.folder))

    def verify_request(self, request: object, client_address: object) -> bool:
        self.connections.append(str(client_address))
        return True

    def start(self) -> _Server:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _TlsServer(_Server):
    """The same over HTTPS, with a self-signed certificate for 127.0.0.2."""

    def __init__(self, address: tuple[str, int], folder: Path, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(address, folder)

    def get_request(self) -> tuple[socket.socket, object]:
        sock, client = super().get_request()
        sock.settimeout(5)
        return self.context.wrap_socket(sock, server_side=True), client


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


IPV6 = _ipv6_loopback()


class Forbidden:
    """The same media on 127.0.0.1 and (when there is IPv6) [::1], on one port."""

    def __init__(self, folder: Path) -> None:
        for _ in range(20):
            v4 = _Server(("127.0.0.1", 0), folder)
            self.port = int(v4.server_address[1])
            try:
                v6 = _Server6(("::1", self.port), folder) if IPV6 else None
            except OSError:
                v4.server_close()
                continue
            self.servers = [v4.start()] + ([v6.start()] if v6 is not None else [])
            return
        raise RuntimeError("no port free on both 127.0.0.1 and ::1")

    @property
    def connections(self) -> list[str]:
        return [c for server in self.servers for c in server.connections]

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}/{path}"

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


# ---- media -----------------------------------------------------------------------------
def _write_hls(folder: Path) -> None:
    """A 3 s VOD HLS stream (1 s MPEG-TS segments, 160×120), plain and AES-128."""
    rng = np.random.default_rng(7)
    with av.open(
        str(folder / "index.m3u8"),
        "w",
        format="hls",
        options={"hls_time": "1", "hls_list_size": "0", "hls_playlist_type": "vod"},
    ) as out:
        stream = out.add_stream("libx264", rate=FPS, options={"g": str(FPS), "preset": "ultrafast"})
        assert isinstance(stream, VideoStream)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(SEGMENTS * FPS):
            rgb = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    (folder / "key.bin").write_bytes(KEY)
    for i in range(SEGMENTS):
        padder = padding.PKCS7(128).padder()
        plain = padder.update((folder / f"index{i}.ts").read_bytes()) + padder.finalize()
        encryptor = Cipher(algorithms.AES(KEY), modes.CBC(IV)).encryptor()
        (folder / f"enc{i}.ts").write_bytes(encryptor.update(plain) + encryptor.finalize())


def _playlist(segments: list[str], *, head: tuple[str, ...] = (), end: bool = True) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", *head]
    for uri in segments:
        lines += ["#EXTINF:1.000000,", uri]
    if end:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ssrf")
    _write_hls(folder)
    return folder


@pytest.fixture(scope="module")
def public(media: Path) -> Iterator[_Server]:
    server = _Server((PUBLIC, 0), media).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def forbidden_server(media: Path) -> Iterator[Forbidden]:
    server = Forbidden(media)
    yield server
    server.stop()


@pytest.fixture
def forbidden(forbidden_server: Forbidden) -> Forbidden:
    for server in forbidden_server.servers:
        server.connections.clear()
    return forbidden_server


@pytest.fixture(scope="module")
def tls_public(media: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Server]:
    openssl = shutil.which("openssl")
    if openssl is None:
        missing_tool("openssl is not installed (Debian: apt-get install openssl)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", f"/CN={PUBLIC}", "-addext", f"subjectAltName=IP:{PUBLIC}"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = _TlsServer((PUBLIC, 0), media, context).start()
    yield server
    server.stop()


def public_url(server: _Server, path: str) -> str:
    scheme = "https" if isinstance(server, _TlsServer) else "http"
    return f"{scheme}://{PUBLIC}:{server.server_address[1]}/{path}"


def redirect(server: _Server, to: str, status: int = 302) -> str:
    return public_url(server, f"redirect/{status}?to={quote(to, safe='')}")


def serve_playlist(media: Path, server: _Server, text: str) -> str:
    name = f"p{uuid.uuid4().hex[:10]}.m3u8"
    (media / name).write_text(text)
    return public_url(server, name)


# ---- reading ---------------------------------------------------------------------------
class Run:
    """What one reader did: its statuses and the frames it handed out."""

    def __init__(self) -> None:
        self.statuses: list[StreamStatus] = []
        self.frames: list[LiveFrame] = []
        self.decoded = 0
        self.seconds = 0.0

    @property
    def final(self) -> StreamStatus:
        return self.statuses[-1]


async def read(url: str, policy: FetchPolicy = POLICY, config: StreamReaderConfig = CONFIG) -> Run:
    run = Run()
    started = time.monotonic()
    async with asyncio.timeout(25):
        async with StreamReader(url, config, on_status=run.statuses.append, url_policy=policy) as r:
            async for live in r:
                run.frames.append(live)
    run.decoded = r.stats.frames_decoded
    run.seconds = time.monotonic() - started
    return run


def assert_read_whole(run: Run) -> None:
    """Every frame of the stream decoded (a slow consumer may see fewer), then ended."""
    assert run.final.state == StreamState.ENDED, run.statuses
    assert run.decoded == SEGMENTS * FPS
    assert run.frames and run.frames[0].frame.rgb.shape == (120, 160, 3)


def assert_refused(run: Run, forbidden: Forbidden) -> None:
    assert forbidden.connections == [], "a forbidden address was connected to"
    final = run.final
    assert final.state == StreamState.ERROR, run.statuses
    assert final.code == "url_rejected", run.statuses
    assert final.message
    # permanent: refused once, never retried
    assert StreamState.RECONNECTING not in [s.state for s in run.statuses]


def redirect_targets(forbidden: Forbidden) -> dict[str, str]:
    """Where a hostile redirect may send the reader, all of it forbidden."""
    targets = {
        "absolute": forbidden.url("index.m3u8"),
        "name": forbidden.url("index.m3u8", host="localhost"),
        "decimal": forbidden.url("index.m3u8", host="2130706433"),
        "hex_short": forbidden.url("index.m3u8", host="0x7f.1"),
        "short": forbidden.url("index.m3u8", host="127.1"),
        "mapped_v6": forbidden.url("index.m3u8", host="[::ffff:127.0.0.1]"),
        "scheme_relative": f"//127.0.0.1:{forbidden.port}/index.m3u8",
        "https": forbidden.url("index.m3u8", scheme="https"),
        "httpproxy": f"httpproxy://127.0.0.1:{forbidden.port}/127.0.0.1:{forbidden.port}",
        "file": "file:///etc/hostname",
        "metadata": "http://169.254.169.254/latest/meta-data/",
    }
    if IPV6:
        targets["v6"] = forbidden.url("index.m3u8", host="[::1]")
    return targets


REDIRECT_CASES = [
    "absolute",
    "name",
    "decimal",
    "hex_short",
    "short",
    "mapped_v6",
    "scheme_relative",
    "https",
    "httpproxy",
    "file",
    "metadata",
    "v6",
]


# ---- positive controls ----------------------------------------------------------------
async def test_hls_from_the_allowed_host_is_read(public: _Server, forbidden: Forbidden) -> None:
    run = await read(public_url(public, "index.m3u8"))
    assert_read_whole(run)
    assert [s.state for s in run.statuses] == [
        StreamState.STARTING,
        StreamState.LIVE,
        StreamState.ENDED,
    ]
    assert forbidden.connections == []


async def test_aes_128_hls_is_decrypted(media: Path, public: _Server, forbidden: Forbidden) -> None:
    key = public_url(public, "key.bin")
    text = _playlist(
        [f"enc{i}.ts" for i in range(SEGMENTS)],
        head=(f'#EXT-X-KEY:METHOD=AES-128,URI="{key}",IV=0x{IV.hex()}',),
    )
    run = await read(serve_playlist(media, public, text))
    assert_read_whole(run)
    assert forbidden.connections == []


async def test_relative_segments_resolve_against_the_redirect_target(
    media: Path, public: _Server, forbidden: Forbidden
) -> None:
    """/moved → /sub/x.m3u8 listing "../index0.ts": only right from the final URL."""
    sub = media / "sub"
    sub.mkdir(exist_ok=True)
    (sub / "x.m3u8").write_text(_playlist([f"../index{i}.ts" for i in range(SEGMENTS)]))
    run = await read(redirect(public, "/sub/x.m3u8", 301))
    assert_read_whole(run)
    assert forbidden.connections == []


async def test_proxy_variables_change_nothing(
    public: _Server, forbidden: Forbidden, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Environment proxies neither carry the reader's requests nor exempt any host."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.setenv(name, forbidden.url(""))
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    run = await read(public_url(public, "index.m3u8"))
    assert_read_whole(run)
    refused = await read(redirect(public, forbidden.url("index.m3u8")))
    assert_refused(refused, forbidden)


async def test_https_is_read_through_the_guard_too(
    tls_public: _Server, forbidden: Forbidden
) -> None:
    """Certificates are verified by default (this one is self-signed: refused, and
    retried as a TLS failure); trusted, the stream is read, and an HTTPS source that
    redirects to loopback is refused like a plain one."""
    once = CONFIG.model_copy(update={"give_up_after_attempts": 1})
    run = await read(public_url(tls_public, "index.m3u8"), config=once)
    assert run.frames == [] and run.final.code == "tls_error", run.statuses
    trusting = CONFIG.model_copy(update={"verify_tls": False})
    run = await read(public_url(tls_public, "index.m3u8"), config=trusting)
    assert_read_whole(run)
    for target in (forbidden.url("index.m3u8"), forbidden.url("index.m3u8", scheme="https")):
        run = await read(redirect(tls_public, target), config=trusting)
        assert_refused(run, forbidden)


# ---- redirects ---------------------------------------------------------------------
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_to_loopback_is_refused(
    public: _Server, forbidden: Forbidden, status: int
) -> None:
    run = await read(redirect(public, forbidden.url("index.m3u8"), status))
    assert_refused(run, forbidden)
    assert run.frames == [] and "127.0.0.1" in (run.final.message or "")
    assert public.connections, "the allowed host was asked first"


@pytest.mark.parametrize("case", REDIRECT_CASES)
async def test_hostile_redirect_targets_are_refused(
    public: _Server, forbidden: Forbidden, case: str
) -> None:
    targets = redirect_targets(forbidden)
    if case not in targets:
        pytest.skip("no IPv6 loopback here")
    run = await read(redirect(public, targets[case]))
    assert_refused(run, forbidden)


async def test_a_redirect_chain_is_checked_at_every_hop(
    public: _Server, forbidden: Forbidden
) -> None:
    last = redirect(public, forbidden.url("index.m3u8"), 307)
    middle = redirect(public, last, 301)
    run = await read(redirect(public, middle, 302))
    assert_refused(run, forbidden)


async def test_too_many_redirects_are_not_followed(public: _Server, forbidden: Forbidden) -> None:
    url = public_url(public, "index.m3u8")
    for _ in range(POLICY.max_redirects + 1):
        url = redirect(public, url)
    run = await read(url, config=CONFIG.model_copy(update={"give_up_after_attempts": 1}))
    assert run.frames == [] and run.final.code == "http_error"
    assert "redirects" in (run.final.message or "")
    assert forbidden.connections == []


# ---- what a playlist lists -----------------------------------------------------------
def hostile_playlists(forbidden: Forbidden, public: _Server) -> dict[str, str]:
    port = forbidden.port
    key = f'URI="{forbidden.url("key.bin")}",IV=0x{IV.hex()}'
    cases = {
        "segments": _playlist([forbidden.url(f"index{i}.ts") for i in range(SEGMENTS)]),
        "segments_by_name": _playlist(
            [forbidden.url(f"index{i}.ts", host="localhost") for i in range(SEGMENTS)]
        ),
        "later_segment": _playlist(["index0.ts", forbidden.url("index1.ts"), "index2.ts"]),
        "segment_redirects": _playlist(
            ["index0.ts", redirect(public, forbidden.url("index1.ts")), "index2.ts"]
        ),
        "variant": "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=100000\n"
        + forbidden.url("index.m3u8")
        + "\n",
        "key": _playlist(
            [f"enc{i}.ts" for i in range(SEGMENTS)], head=(f"#EXT-X-KEY:METHOD=AES-128,{key}",)
        ),
        "init_section": _playlist(
            ["index0.ts", "index1.ts"], head=(f'#EXT-X-MAP:URI="{forbidden.url("index0.ts")}"',)
        ),
        "httpproxy": _playlist([f"httpproxy://127.0.0.1:{port}/127.0.0.1:{port}/index0.ts"]),
        "crypto": _playlist([f"crypto+{forbidden.url('index0.ts')}"]),
        "file": _playlist(["file:///tmp/segment.ts"]),
        "live_segments": _playlist(
            [forbidden.url(f"index{i}.ts") for i in range(SEGMENTS)], end=False
        ),
    }
    if IPV6:
        cases["v6_segments"] = _playlist(
            [forbidden.url(f"index{i}.ts", host="[::1]") for i in range(SEGMENTS)]
        )
    return cases


PLAYLIST_CASES = [
    "segments",
    "segments_by_name",
    "later_segment",
    "segment_redirects",
    "variant",
    "key",
    "init_section",
    "httpproxy",
    "crypto",
    "file",
    "live_segments",
    "v6_segments",
]


@pytest.mark.parametrize("case", PLAYLIST_CASES)
async def test_a_playlist_cannot_lead_to_a_forbidden_address(
    media: Path, public: _Server, forbidden: Forbidden, case: str
) -> None:
    cases = hostile_playlists(forbidden, public)
    if case not in cases:
        pytest.skip("no IPv6 loopback here")
    run = await read(serve_playlist(media, public, cases[case]))
    assert_refused(run, forbidden)
    # at once, not after the read timeout
    assert run.seconds < CONFIG.read_timeout_s + 2, run.seconds


@pytest.mark.parametrize(
    "uri",
    [
        "tcp://127.0.0.1:{port}/index0.ts",
        "udp://127.0.0.1:{port}",
        "file:///etc/hostname",
        "data:video/mp2t;base64,R0VU",
    ],
)
async def test_uris_ffmpeg_refuses_by_itself_reach_nothing(
    media: Path, public: _Server, forbidden: Forbidden, uri: str
) -> None:
    """Schemes the HLS demuxer does not follow at all: no connection, an error."""
    text = _playlist([uri.format(port=forbidden.port)])
    run = await read(serve_playlist(media, public, text))
    assert forbidden.connections == []
    assert run.frames == [] and run.final.state == StreamState.ERROR
    assert run.final.code in ("url_rejected", "corrupt_media")


async def test_a_redirected_playlist_is_still_checked(
    media: Path, public: _Server, forbidden: Forbidden
) -> None:
    """Made absolute after a redirect, a playlist's URIs still go through the guard."""
    text = _playlist([forbidden.url(f"index{i}.ts") for i in range(SEGMENTS)])
    run = await read(redirect(public, serve_playlist(media, public, text)))
    assert_refused(run, forbidden)


# ---- RTMP, RTSP ----------------------------------------------------------------------
def other_protocol_sources(forbidden: Forbidden) -> dict[str, str]:
    port = forbidden.port
    cases = {
        "rtmp_name": f"rtmp://localhost:{port}/live/key",
        "rtmp_ip": f"rtmp://127.0.0.1:{port}/live/key",
        "rtmp_short": f"rtmp://127.1:{port}/live/key",
        "rtmp_decimal": f"rtmp://2130706433:{port}/live/key",
        "rtmps_name": f"rtmps://localhost:{port}/live/key",
        "rtsp_name": f"rtsp://localhost:{port}/stream",
        "rtsps_ip": f"rtsps://127.0.0.1:{port}/stream",
        "rtmp_metadata": "rtmp://169.254.169.254/live/key",
    }
    if IPV6:
        cases["rtmp_v6"] = f"rtmp://[::1]:{port}/live/key"
    return cases


OTHER_CASES = [
    "rtmp_name",
    "rtmp_ip",
    "rtmp_short",
    "rtmp_decimal",
    "rtmps_name",
    "rtsp_name",
    "rtsps_ip",
    "rtmp_metadata",
    "rtmp_v6",
]


@pytest.mark.parametrize("case", OTHER_CASES)
async def test_other_protocols_are_checked_at_connect_time(forbidden: Forbidden, case: str) -> None:
    cases = other_protocol_sources(forbidden)
    if case not in cases:
        pytest.skip("no IPv6 loopback here")
    run = await read(cases[case])
    assert_refused(run, forbidden)


def test_pinned_urls_carry_the_checked_address() -> None:
    rtmp = parse_source("rtmp://user:pw@Live.Example:1936/app/inst/key?token=1")
    url, options = rtmp.pinned("93.184.216.34")
    assert url == "rtmp://user:pw@93.184.216.34:1936/app/inst/key?token=1"
    assert options == {"rtmp_tcurl": "rtmp://Live.Example:1936/app/inst"}
    url, options = parse_source("rtmps://live.example/app/key").pinned("2606:4700::1")
    assert url == "rtmps://[2606:4700::1]/app/key"
    assert options == {"rtmp_tcurl": "rtmps://live.example/app"}
    url, options = parse_source("rtsp://cam.example/s?x=1").pinned("93.184.216.34")
    assert (url, options) == ("rtsp://93.184.216.34/s?x=1", {})
    assert parse_source("rtsp://cam.example/s").endpoint() == ("cam.example", 554)
    assert parse_source("rtmps://[2001:db8::1]/a/b").endpoint() == ("2001:db8::1", 443)


def test_check_host_applies_the_url_policy() -> None:
    for host in ("localhost", "127.0.0.1", "0x7f.1", "2130706433", "[::1]", "::ffff:127.0.0.1"):
        with pytest.raises(UrlRejected) as refused:
            check_host(host, 1935, POLICY, scheme="rtmp")
        assert refused.value.code == "url_rejected" and refused.value.status == 400
    assert check_host(PUBLIC, 1935, POLICY).addresses == (PUBLIC,)
    by_name = FetchPolicy(allow_hosts=["localhost"])
    assert "127.0.0.1" in check_host("localhost", 80, by_name).addresses
    assert check_host("127.0.0.1", 80, FetchPolicy(allow_private=True)).addresses == ("127.0.0.1",)
    for bad in ("a b", "", "x%y"):
        with pytest.raises(UrlRejected):
            check_host(bad, 80, POLICY)
    with pytest.raises(UrlRejected):
        check_host(PUBLIC, 70000, POLICY)
    with pytest.raises(UrlFetchFailed):
        check_host("no-such-host.invalid", 80, POLICY)


def test_playlists_are_made_absolute_against_their_url() -> None:
    text = (
        b"#EXTM3U\r\n"
        b'#EXT-X-KEY:METHOD=AES-128,URI="k/key.bin",IV=0x00\r\n'
        b'#EXT-X-MAP:URI="/init.mp4"\r\n'
        b"#EXTINF:1,\r\n"
        b"seg0.ts\r\n"
        b"#EXTINF:1,\r\n"
        b"http://other.example/seg1.ts\r\n"
    )
    out = absolute_playlist(text, "https://cdn.example/live/x.m3u8?t=1").decode()
    assert 'URI="https://cdn.example/live/k/key.bin"' in out
    assert 'URI="https://cdn.example/init.mp4"' in out
    lines = out.splitlines()
    assert "https://cdn.example/live/seg0.ts" in lines
    assert "http://other.example/seg1.ts" in lines
    assert lines[0] == "#EXTM3U"


# ---- nginx: RTMP by an allowed name ---------------------------------------------------
@pytest.fixture(scope="module")
def nginx() -> Iterator[LiveServer]:
    with live_server() as running:
        yield running


async def test_rtmp_by_an_allowed_name_connects_to_its_checked_address(nginx: LiveServer) -> None:
    """``localhost`` is allowed by name: the reader connects to the address the check
    resolved (nginx listens on 127.0.0.1 only, [::1] refuses and the next one is tried),
    and nginx-rtmp accepts the tcUrl built from the name."""
    key = uuid.uuid4().hex[:10]
    with Publisher(nginx.rtmp_url(key), fps=FPS, gop=FPS) as pushing:
        nginx.wait_publishing(key)
        url = pushing.url.replace("127.0.0.1", "localhost")
        statuses: list[StreamStatus] = []
        policy = FetchPolicy(allow_hosts=["localhost"])
        async with StreamReader(url, CONFIG, on_status=statuses.append, url_policy=policy) as r:
            frames: list[LiveFrame] = []
            async with asyncio.timeout(15):
                async for live in r:
                    frames.append(live)
                    if len(frames) == 5:
                        break
    assert len(frames) == 5 and statuses[1].state == StreamState.LIVE
    # without the name allowed, the same stream is refused before any connection
    refused = await read(url, policy=POLICY)
    assert refused.final.code == "url_rejected" and refused.frames == []


def test_no_direct_ffmpeg_network_access_for_http_sources() -> None:
    """HTTP(S) sources give FFmpeg no network protocol of its own."""
    options = parse_source("https://cdn.example/live.m3u8").container_options(CONFIG)
    assert options["protocol_whitelist"] == "none"


@pytest.mark.parametrize("case", ["redirect", "segments", "variant", "key"])
async def test_the_forbidden_server_sees_readers_the_policy_lets_through(
    media: Path, public: _Server, forbidden: Forbidden, case: str
) -> None:
    """The control: with private addresses allowed, the same hostile sources do reach
    127.0.0.1 (and play), so the refusals above are the guard's doing."""
    if case == "redirect":
        url = redirect(public, forbidden.url("index.m3u8"))
    else:
        url = serve_playlist(media, public, hostile_playlists(forbidden, public)[case])
    run = await read(url, policy=FetchPolicy(allow_private=True))
    assert forbidden.connections
    assert_read_whole(run)
