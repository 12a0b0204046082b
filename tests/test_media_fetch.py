"""URL fetching behind the SSRF guard, against real HTTP(S) servers on loopback."""

from __future__ import annotations

import contextlib
import gzip
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import ValidationError

from bastion.errors import MediaTooLarge, UrlFetchFailed, UrlRejected
from bastion.media import fetch as fetch_module
from bastion.media.fetch import FetchPolicy, address_problem, check_url, fetch_url
from bastion.media.image import decode_image
from bastion.media.types import MediaLimits
from tests.support.media import benign_photos, encode

IMAGE = encode(benign_photos()["skimage-chelsea"], "JPEG", quality=85)
CHUNK = b"\xab" * 1000


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Host", "")))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self._route(self.path)

    def _route(self, path: str) -> None:
        port = self.server.server_address[1]
        if path == "/img.jpg":
            self._send(200, IMAGE, {"Content-Type": "image/jpeg"})
        elif path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            target = "/img.jpg" if left <= 1 else f"/redirect/{left - 1}"
            self._send(302, b"", {"Location": target})
        elif path == "/to-loopback":
            self._send(302, b"", {"Location": f"http://127.0.0.1:{port}/img.jpg"})
        elif path == "/to-metadata":
            self._send(301, b"", {"Location": "http://169.254.169.254/latest/meta-data/"})
        elif path == "/to-file":
            self._send(302, b"", {"Location": "file:///etc/passwd"})
        elif path == "/loop":
            self._send(307, b"", {"Location": "/loop"})
        elif path == "/host":
            self._send(200, self.headers.get("Host", "").encode(), {"Content-Type": "text/plain"})
        elif path == "/declared-huge":
            self._send(200, CHUNK, {"Content-Length": str(10**9)})
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(200):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
                self.wfile.flush()
                self.server.chunks_sent += 1
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/gzip-bomb":
            body = gzip.compress(bytes(20 * 1024 * 1024))
            self._send(200, body, {"Content-Encoding": "gzip"})
        elif path == "/gzip-image":
            self._send(200, gzip.compress(IMAGE), {"Content-Encoding": "gzip"})
        elif path == "/slow-headers":
            time.sleep(2.0)
            self._send(200, IMAGE)
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        elif path == "/missing":
            self._send(404, b"not here")
        elif path == "/broken":
            self._send(500, b"oops")
        else:
            self._send(400, b"?")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.seen: list[tuple[str, str]] = []
        self.chunks_sent = 0
        self.sni_names: list[str | None] = []


def _serve(server: _Server) -> Iterator[_Server]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    yield from _serve(_Server(("127.0.0.1", 0)))


def _url(server: _Server, path: str, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{server.server_address[1]}{path}"


LOOPBACK_OK = FetchPolicy(allow_private=True, read_timeout_s=5, total_timeout_s=10)


# --- the guard alone ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://localhost/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://017700000001/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://0/", "unspecified"),
        ("http://0.0.0.0:8080/", "unspecified"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://100.64.1.2/", "carrier-grade NAT"),
        ("http://10.1.2.3/", "private"),
        ("http://172.16.5.4/", "private"),
        ("https://192.168.0.1/", "private"),
        ("http://224.0.0.1/", "multicast"),
        ("http://255.255.255.255/", "reserved"),
        ("http://[::ffff:127.0.0.1]/", "loopback, embedded in IPv6"),
        ("http://[::ffff:a9fe:a9fe]/", "cloud metadata, embedded in IPv6"),
        ("http://[64:ff9b::7f00:1]/", "loopback, embedded in IPv6"),
        ("http://[2002:7f00:1::]/", "loopback, embedded in IPv6"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fd00::1]/", "unique local"),
        ("http://[ff02::1]/", "multicast"),
        ("http://[::]/", "unspecified"),
    ],
)
def test_non_public_addresses_refused(url: str, reason: str) -> None:
    with pytest.raises(UrlRejected) as err:
        check_url(url, FetchPolicy())
    assert err.value.code == "url_rejected" and err.value.status == 400
    address = err.value.details["address"]
    assert f"resolves to a private address {address} (" in err.value.message
    assert reason in err.value.details["reason"]


def test_public_literals_pass_without_fetching() -> None:
    checked = check_url("https://93.184.216.34:8443/a.jpg?x=1", FetchPolicy())
    assert checked.addresses == ("93.184.216.34",)
    assert (checked.scheme, checked.host, checked.port) == ("https", "93.184.216.34", 8443)
    assert check_url("http://[2606:4700::1111]/", FetchPolicy()).port == 80
    # 6to4 and NAT64 wrapping a public address are public.
    assert address_problem(ipaddress.ip_address("64:ff9b::808:808")) is None
    assert address_problem(ipaddress.ip_address("2002:808:808::1")) is None


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.jpg",
        "gopher://127.0.0.1:70/_GET",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "dict://127.0.0.1:11211/stat",
        "//example.com/a.jpg",
        "example.com/a.jpg",
    ],
)
def test_non_http_schemes_refused(url: str) -> None:
    with pytest.raises(UrlRejected, match="not allowed") as err:
        check_url(url, FetchPolicy(allow_private=True))
    assert err.value.details["reason"] == "scheme"


def test_https_only_policy() -> None:
    with pytest.raises(UrlRejected, match="'http' is not allowed; use https"):
        check_url("http://93.184.216.34/", FetchPolicy(schemes=["https"]))


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pw@93.184.216.34/",
        "http://evil.example@127.0.0.1/",
        "http:///x",
        "http://[::1/",
    ],
)
def test_malformed_or_credential_urls_refused(url: str) -> None:
    with pytest.raises(UrlRejected):
        check_url(url, FetchPolicy(allow_private=True))


def test_dns_failure_is_fetch_failed() -> None:
    with pytest.raises(UrlFetchFailed, match="could not resolve") as err:
        check_url("http://no-such-host.invalid/a.jpg", FetchPolicy())
    assert err.value.code == "url_fetch_failed" and err.value.status == 422


def test_policy_validation() -> None:
    policy = FetchPolicy(allow_hosts=[" Media.Internal. ", "10.0.0.0/8", "fd00::/8"])
    assert policy.allow_hosts == ["media.internal", "10.0.0.0/8", "fd00::/8"]
    with pytest.raises(ValidationError):
        FetchPolicy.model_validate({"schemes": ["ftp"]})
    with pytest.raises(ValidationError):
        FetchPolicy.model_validate({"max_redirect": 2})
    with pytest.raises(ValidationError):
        FetchPolicy(user_agent="x\r\nX-Injected: 1")
    with pytest.raises(ValidationError):
        FetchPolicy(allow_hosts=[""])
    assert FetchPolicy.model_fields["allow_hosts"].description


def test_cidr_allow_list_only_covers_its_range() -> None:
    policy = FetchPolicy(allow_hosts=["10.0.0.0/8"])
    assert check_url("http://10.9.8.7/", policy).addresses == ("10.9.8.7",)
    with pytest.raises(UrlRejected, match=r"192\.168\.1\.1"):
        check_url("http://192.168.1.1/", policy)


# --- fetching -----------------------------------------------------------------------------


async def test_loopback_refused_by_default(server: _Server) -> None:
    before = len(server.seen)
    with pytest.raises(UrlRejected, match=r"private address 127\.0\.0\.1 \(loopback\)"):
        await fetch_url(_url(server, "/img.jpg"), FetchPolicy())
    assert len(server.seen) == before  # nothing was sent


async def test_fetch_with_allow_private(server: _Server) -> None:
    got = await fetch_url(_url(server, "/img.jpg"), LOOPBACK_OK)
    assert got.data == IMAGE and got.content_type == "image/jpeg"
    assert got.url == _url(server, "/img.jpg") and got.redirects == ()
    decoded = decode_image(got.data, MediaLimits(), content_type=got.content_type)
    assert decoded.format == "JPEG" and decoded.width == 451


async def test_fetch_with_allow_hosts_name_and_cidr(server: _Server) -> None:
    by_name = FetchPolicy(allow_hosts=["localhost"])
    assert (await fetch_url(_url(server, "/img.jpg", "localhost"), by_name)).data == IMAGE
    with pytest.raises(UrlRejected):  # the name is allowed, not the address
        await fetch_url(_url(server, "/img.jpg"), by_name)
    by_cidr = FetchPolicy(allow_hosts=["127.0.0.0/8"])
    assert (await fetch_url(_url(server, "/img.jpg"), by_cidr)).data == IMAGE


async def test_host_header_and_pinned_address(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection goes to the checked address while Host keeps the original name."""
    real = fetch_module._resolve
    calls: list[str] = []

    def fake(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"] if host == "media.example" else real(host, port)

    monkeypatch.setattr(fetch_module, "_resolve", fake)
    got = await fetch_url(_url(server, "/host", "media.example"), LOOPBACK_OK)
    assert got.data.decode() == f"media.example:{server.server_address[1]}"
    assert calls == ["media.example"]  # resolved once; the name never reached a resolver again
    with pytest.raises(UrlRejected, match=r"127\.0\.0\.1"):
        await fetch_url(_url(server, "/host", "media.example"), FetchPolicy())


async def test_redirect_chain_followed_and_rechecked(server: _Server) -> None:
    got = await fetch_url(_url(server, "/redirect/3"), LOOPBACK_OK)
    assert got.data == IMAGE
    assert got.url == _url(server, "/img.jpg")
    assert got.redirects == tuple(_url(server, f"/redirect/{n}") for n in (3, 2, 1))
    with pytest.raises(UrlFetchFailed, match="more than 2 redirects") as err:
        await fetch_url(
            _url(server, "/redirect/3"), LOOPBACK_OK.model_copy(update={"max_redirects": 2})
        )
    assert err.value.details["reason"] == "redirects"
    with pytest.raises(UrlFetchFailed, match="redirects"):
        await fetch_url(_url(server, "/loop"), LOOPBACK_OK)


async def test_redirect_to_private_address_refused(server: _Server) -> None:
    only_localhost = FetchPolicy(allow_hosts=["localhost"])
    before = len(server.seen)
    with pytest.raises(UrlRejected, match=r"127\.0\.0\.1") as err:
        await fetch_url(_url(server, "/to-loopback", "localhost"), only_localhost)
    assert err.value.details["host"] == "127.0.0.1"
    assert [p for p, _h in server.seen[before:]] == ["/to-loopback"]  # second hop never sent
    with pytest.raises(UrlRejected, match=r"169\.254\.169\.254"):
        await fetch_url(_url(server, "/to-metadata", "localhost"), only_localhost)
    with pytest.raises(UrlRejected, match="'file' is not allowed"):
        await fetch_url(_url(server, "/to-file"), LOOPBACK_OK)


async def test_declared_length_over_limit(server: _Server) -> None:
    policy = LOOPBACK_OK.model_copy(update={"max_bytes": 10_000})
    with pytest.raises(MediaTooLarge, match="declares 1000000000 bytes") as err:
        await fetch_url(_url(server, "/declared-huge"), policy)
    assert err.value.code == "media_too_large" and err.value.status == 413
    with pytest.raises(MediaTooLarge):  # a real image over the limit, with Content-Length
        await fetch_url(_url(server, "/img.jpg"), policy)


async def test_chunked_body_aborted_past_limit(server: _Server) -> None:
    policy = LOOPBACK_OK.model_copy(update={"max_bytes": 5_500})
    with pytest.raises(MediaTooLarge, match="larger than 5500 bytes"):
        await fetch_url(_url(server, "/chunked"), policy)
    ok = await fetch_url(_url(server, "/chunked"), LOOPBACK_OK)
    assert len(ok.data) == 200 * len(CHUNK)


async def test_gzip_is_inflated_with_the_same_bound(server: _Server) -> None:
    got = await fetch_url(_url(server, "/gzip-image"), LOOPBACK_OK)
    assert got.data == IMAGE
    policy = LOOPBACK_OK.model_copy(update={"max_bytes": 1024 * 1024})
    with pytest.raises(MediaTooLarge):
        await fetch_url(_url(server, "/gzip-bomb"), policy)


async def test_read_timeout(server: _Server) -> None:
    policy = LOOPBACK_OK.model_copy(update={"read_timeout_s": 0.3})
    started = time.monotonic()
    with pytest.raises(UrlFetchFailed, match="timed out") as err:
        await fetch_url(_url(server, "/slow-headers"), policy)
    assert err.value.code == "url_fetch_failed" and err.value.details["reason"] == "timeout"
    assert time.monotonic() - started < 1.5


async def test_total_timeout_bounds_a_dripping_server(server: _Server) -> None:
    policy = LOOPBACK_OK.model_copy(update={"read_timeout_s": 2.0, "total_timeout_s": 0.6})
    started = time.monotonic()
    with pytest.raises(UrlFetchFailed, match=r"longer than 0\.6 s"):
        await fetch_url(_url(server, "/drip"), policy)
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(("path", "status"), [("/missing", 404), ("/broken", 500)])
async def test_http_errors_carry_the_status(server: _Server, path: str, status: int) -> None:
    with pytest.raises(UrlFetchFailed, match=f"HTTP {status}") as err:
        await fetch_url(_url(server, path), LOOPBACK_OK)
    assert err.value.details["status"] == status and err.value.status == 422


async def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UrlFetchFailed, match="could not connect") as err:
        await fetch_url(f"http://127.0.0.1:{port}/", LOOPBACK_OK)
    assert err.value.details["reason"] == "connect"


async def test_refused_urls_never_connect() -> None:
    for url in ("http://[::1]:9/", "http://2130706433:9/", "http://0x7f.1:9/", "ftp://127.0.0.1/"):
        with pytest.raises(UrlRejected):
            await fetch_url(url, FetchPolicy())


# --- https: the pinned address is verified against the original host name ------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Server, Path]]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl command not available")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = _Server(("127.0.0.1", 0))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def remember(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        server.sni_names.append(name)

    context.sni_callback = remember
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from ((s, cert) for s in _serve(server))


async def test_https_pins_address_and_verifies_host_name(
    tls_server: tuple[_Server, Path],
) -> None:
    server, cert = tls_server
    port = server.server_address[1]
    trust = ssl.create_default_context(cafile=str(cert))
    policy = FetchPolicy(allow_hosts=["localhost"])
    got = await fetch_url(f"https://localhost:{port}/img.jpg", policy, ssl_context=trust)
    assert got.data == IMAGE
    assert "localhost" in server.sni_names
    # The same server by address: its certificate does not name 127.0.0.1.
    with pytest.raises(UrlFetchFailed, match="could not connect"):
        await fetch_url(f"https://127.0.0.1:{port}/img.jpg", LOOPBACK_OK, ssl_context=trust)
    # Without trusting the test CA the default store refuses the certificate.
    with pytest.raises(UrlFetchFailed):
        await fetch_url(f"https://localhost:{port}/img.jpg", policy)
