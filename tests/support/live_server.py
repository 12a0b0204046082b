"""A real live-streaming server on loopback for the live tests: nginx with the RTMP module.

:func:`live_server` starts Debian's ``nginx`` with ``libnginx-mod-rtmp`` from a
configuration generated into a temporary folder: RTMP ingest on one free loopback
port (application ``live``), and on another, over HTTP, the HLS output of the same
streams (1 s fragments), the module's statistics page at ``/stat`` and plain files
under ``/files/`` (:meth:`LiveServer.serve_file`, e.g. for HTTP-FLV). nginx runs in
the foreground as the current user (``daemon off``, ``master_process off``), its pid
file, logs and temporary files stay in that folder, and it is stopped on exit. A
system nginx that the package may have started is neither needed nor touched.

:class:`Publisher` pushes a stream with Debian's ``ffmpeg`` to
``rtmp://127.0.0.1:PORT/live/KEY``, in real time (``-re``), from a video file (looped or
not) or from FFmpeg's ``testsrc2`` pattern; it can be killed and started again to make
the source drop and come back. :func:`write_clip` makes the files to push, e.g. a
benign photo that gets a QR code or a text banner half-way.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import httpx
import numpy as np
from av.video.stream import VideoStream

from tests.support.databases import missing_tool
from tests.support.loopback import free_port

RTMP_MODULE = "ngx_rtmp_module.so"
# Where Debian's libnginx-mod-rtmp puts the module, when `nginx -V` does not say.
MODULE_DIRS = (
    Path("/usr/lib/nginx/modules"),
    Path("/usr/share/nginx/modules"),
    Path("/usr/lib64/nginx/modules"),
    Path("/usr/local/nginx/modules"),
)
MODULE_CONF = Path("/usr/share/nginx/modules-available/mod-rtmp.conf")
APP = "live"


def _nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (str(p) for p in (Path("/usr/sbin/nginx"), Path("/usr/local/sbin/nginx")) if p.is_file()),
        None,
    )


def find_rtmp_module(nginx: str) -> Path | None:
    """The RTMP module's .so: in nginx's --modules-path, the Debian snippet, or a known folder."""
    candidates: list[Path] = []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        built = subprocess.run([nginx, "-V"], capture_output=True, text=True, timeout=10).stderr
        for key in ("--modules-path", "--prefix"):
            found = re.search(rf"{key}=(\S+)", built)
            if found:
                base = Path(found.group(1))
                candidates.append(base / RTMP_MODULE if key == "--modules-path" else base)
        prefix = re.search(r"--prefix=(\S+)", built)
        if MODULE_CONF.is_file():
            named = re.search(r"load_module\s+(\S+?);", MODULE_CONF.read_text())
            if named:
                path = Path(named.group(1))
                if not path.is_absolute() and prefix:
                    path = Path(prefix.group(1)) / path
                candidates.append(path)
    candidates += [d / RTMP_MODULE for d in MODULE_DIRS]
    return next((p for p in candidates if p.suffix == ".so" and p.is_file()), None)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


NGINX_CONF = """\
load_module {module};
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        chunk_size 4096;
        ping 3s;
        ping_timeout 2s;
        application {app} {{
            live on;
            record off;
            idle_streams off;
            drop_idle_publisher 5s;
            hls on;
            hls_path {root}/hls;
            hls_fragment 1s;
            hls_playlist_length 4s;
            hls_cleanup on;
        }}
    }}
}}
http {{
    access_log off;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    types {{
        application/vnd.apple.mpegurl m3u8;
        video/mp2t ts;
    }}
    server {{
        listen 127.0.0.1:{http_port};
        location /hls/ {{
            alias {root}/hls/;
            add_header Cache-Control no-cache;
        }}
        location /stat {{
            rtmp_stat all;
        }}
        location /files/ {{
            alias {root}/files/;
        }}
    }}
}}
"""


@dataclass
class LiveServer:
    """A running nginx-rtmp on loopback."""

    root: Path
    rtmp_port: int
    http_port: int
    process: subprocess.Popen[bytes]

    def rtmp_url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{APP}/{key}"

    def hls_url(self, key: str) -> str:
        return f"http://127.0.0.1:{self.http_port}/hls/{key}.m3u8"

    def serve_file(self, path: Path) -> str:
        """Serve a copy of ``path`` over HTTP (e.g. an FLV file for HTTP-FLV); its URL."""
        shutil.copyfile(path, self.root / "files" / path.name)
        return f"http://127.0.0.1:{self.http_port}/files/{path.name}"

    def publishing(self) -> set[str]:
        """Stream keys that have a publisher now (from the module's statistics page)."""
        reply = httpx.get(f"http://127.0.0.1:{self.http_port}/stat", timeout=5)
        reply.raise_for_status()
        tree = ET.fromstring(reply.content)
        return {
            name
            for stream in tree.iter("stream")
            if stream.find("publishing") is not None and (name := stream.findtext("name") or "")
        }

    def wait_publishing(self, key: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while key not in self.publishing():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no publisher on {key!r} after {timeout} s: {self.log()}")
            time.sleep(0.05)

    def wait_hls(self, key: str, segments: int = 2, timeout: float = 15.0) -> None:
        """Wait until the HLS playlist of ``key`` lists at least ``segments`` fragments."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                reply = httpx.get(self.hls_url(key), timeout=2)
                if reply.status_code == 200 and reply.text.count("#EXTINF") >= segments:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no HLS playlist for {key!r} after {timeout} s")
            time.sleep(0.1)

    def log(self) -> str:
        path = self.root / "error.log"
        return path.read_text(errors="replace")[-2000:] if path.is_file() else ""


def _start_nginx(nginx: str, module: Path, root: Path) -> LiveServer:
    rtmp_port, http_port = free_port(), free_port()
    conf = root / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            module=module, root=root, rtmp_port=rtmp_port, http_port=http_port, app=APP
        )
    )
    process = subprocess.Popen(
        [nginx, "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = LiveServer(root, rtmp_port, http_port, process)
    deadline = time.monotonic() + 10
    while not (_listening(rtmp_port) and _listening(http_port)):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"nginx did not start: {err} {server.log()}")
        time.sleep(0.02)
    return server


def _stop(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGQUIT)  # graceful shutdown
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)
    if process.stderr is not None:
        process.stderr.close()


@contextlib.contextmanager
def live_server() -> Iterator[LiveServer]:
    """nginx-rtmp on free loopback ports; skips the test when nginx or the module is missing."""
    nginx = _nginx_binary()
    if nginx is None:
        missing_tool("nginx is not installed (Debian: apt-get install nginx libnginx-mod-rtmp)")
    module = find_rtmp_module(nginx)
    if module is None:
        missing_tool("the nginx RTMP module is not installed (Debian: libnginx-mod-rtmp)")
    with tempfile.TemporaryDirectory(prefix="bastion-live-") as tmp:
        root = Path(tmp)
        for sub in ("hls", "tmp", "files"):
            (root / sub).mkdir()
        server = None
        for _ in range(3):  # a free port may be taken between finding and binding it
            try:
                server = _start_nginx(nginx, module, root)
                break
            except RuntimeError:
                continue
        if server is None:
            raise RuntimeError("nginx did not start after 3 tries")
        try:
            yield server
        finally:
            _stop(server.process)


def ffmpeg_binary() -> str:
    found = shutil.which("ffmpeg")
    if found is None:
        missing_tool("ffmpeg is not installed (Debian: apt-get install ffmpeg)")
    return found


@dataclass
class Publisher:
    """An ``ffmpeg`` process pushing one stream to an RTMP URL in real time."""

    url: str
    clip: Path | None = None
    loop: bool = True
    size: tuple[int, int] = (320, 240)
    fps: int = 15
    gop: int = 15
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def command(self) -> list[str]:
        cmd = [ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-nostdin", "-re"]
        if self.clip is not None:
            if self.loop:
                cmd += ["-stream_loop", "-1"]
            cmd += ["-i", str(self.clip), "-c", "copy"]
        else:
            w, h = self.size
            cmd += [
                "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={self.fps}",
                "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
                "-g", str(self.gop), "-keyint_min", str(self.gop), "-sc_threshold", "0",
                "-pix_fmt", "yuv420p",
            ]  # fmt: skip
        return [*cmd, "-f", "flv", self.url]

    def start(self) -> Publisher:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("already publishing")
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        return self

    def kill(self) -> None:
        """Stop publishing at once (SIGKILL: no clean RTMP close), as a crashed encoder would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> Publisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def write_clip(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    fps: int = 15,
    gop: int = 15,
    preset: str = "ultrafast",
) -> Path:
    """Encode RGB frames (all the same size) as H.264 in MP4 with a fixed GOP, for pushing.

    x264's ultrafast preset makes no B-frames; faster presets and slower make them."""
    options = {"preset": preset, "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
    with av.open(os.fspath(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options=options)
        assert isinstance(stream, VideoStream)
        stream.pix_fmt = "yuv420p"
        for i, rgb in enumerate(frames):
            if i == 0:
                stream.height, stream.width = rgb.shape[:2]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def still_then(
    still: np.ndarray, changed: np.ndarray, seconds: float, change_at: float, fps: int = 15
) -> Iterator[np.ndarray]:
    """``still`` until ``change_at`` seconds, then ``changed``, ``seconds`` long in all."""
    for i in range(round(seconds * fps)):
        yield still if i / fps < change_at else changed
