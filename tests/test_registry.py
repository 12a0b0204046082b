"""The model registry and tenant heads: MLflow runs and versions on a local SQLite store,
aliases, integrity checks, no network, and hot swap in a running app.

Heads are real ONNX logistic regressions over the 1280-d embedding, built here with
``onnx.helper``: weights along the embedding of a chosen photo, so that the head's
probability for that photo is known (``center_head``). The app tests run the real
``labels`` analyzer and the real ``tenant_head`` analyzer behind ``/v1/moderate``, with
the registry changed from outside the app (as the CLI or another process would).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import numpy.typing as npt
import pytest
import pytest_asyncio
from onnx import TensorProto, helper

from bastion.analyzers.tenant_head import TenantHeadAnalyzer
from bastion.config import Settings
from bastion.pipeline.engine import Engine
from bastion.policy import taxonomy
from bastion.registry.config import RegistryConfig, category_slug
from bastion.registry.errors import HeadNotFound, HeadRefused, RegistryError
from bastion.registry.heads import HeadRef, HeadSet, load_head
from bastion.registry.store import HEAD_FILE, ModelRegistry, import_mlflow
from bastion.registry.watcher import HeadWatcher
from tests.support.app import Api, Tenant, running
from tests.support.media import photo, unique
from tests.support.settings import make_settings

DIM = 1280
ROOT = Path(__file__).resolve().parents[1]
HEADS_POLICY = (
    "name: heads\nanalyzers: [labels, tenant_head]\n"
    "rules:\n  - categories: [Weapons]\n    review: 50\n"
)


# ---- heads built in the test ------------------------------------------------------
def head_onnx(
    weights: npt.NDArray[np.float32],
    bias: float,
    category: str = "Firearms",
    *,
    threshold: float = 0.5,
    embedding_model: str = "efficientnet-lite0",
    outputs: int = 1,
) -> bytes:
    """A logistic regression ``sigmoid(x·w + b)`` as a head: input ``embedding`` [N, D],
    output ``probability`` [N] (``outputs=2`` makes a wrong one, [N, 2])."""
    dim = int(weights.shape[0])
    w = np.repeat(weights.reshape(dim, 1), outputs, axis=1).astype(np.float32)
    shape = [-1, outputs] if outputs > 1 else [-1]
    nodes = [
        helper.make_node("MatMul", ["embedding", "w"], ["z0"]),
        helper.make_node("Add", ["z0", "b"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["p"]),
        helper.make_node("Reshape", ["p", "shape"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, None)],
        [
            helper.make_tensor("w", TensorProto.FLOAT, [dim, outputs], w.ravel().tolist()),
            helper.make_tensor("b", TensorProto.FLOAT, [1], [bias]),
            helper.make_tensor("shape", TensorProto.INT64, [len(shape)], shape),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(
        model,
        {
            "bastion.category": category,
            "bastion.threshold": str(threshold),
            "bastion.embedding_model": embedding_model,
        },
    )
    return bytes(model.SerializeToString())


def center_head(
    embedding: npt.NDArray[np.float32], probability: float, category: str = "Firearms"
) -> bytes:
    """A head whose probability is ``probability`` for ``embedding`` itself and falls fast
    for vectors less alike (cosine below 0.95: ``sigmoid(k·(cos − 0.95))``)."""
    unit = embedding / np.linalg.norm(embedding)
    k = math.log(probability / (1 - probability)) / (1 - 0.95)
    return head_onnx((k * unit).astype(np.float32), -k * 0.95, category)


def random_unit(seed: int) -> npt.NDArray[np.float32]:
    v = np.random.default_rng(seed).random(DIM).astype(np.float32)
    return (v / np.linalg.norm(v)).astype(np.float32)


def new_registry(data_dir: Path, **kw: Any) -> ModelRegistry:
    return ModelRegistry(RegistryConfig(**kw), data_dir)


def log(registry: ModelRegistry, tenant: str, onnx: bytes, category: str = "Firearms") -> int:
    version = registry.log_head(
        tenant, category, onnx, {"C": 1.0, "calibration": "sigmoid"}, {"f1": 0.8}, {"n": 3}
    )
    return version.version


def artifact_path(registry: ModelRegistry, tenant: str, category: str, version: int) -> Path:
    client = registry._client()
    source = client.get_model_version_download_uri(
        registry.model_name(tenant, category), str(version)
    )
    return Path(urlparse(source).path) / HEAD_FILE


# ---- names ------------------------------------------------------------------------
def test_names_are_per_tenant_and_category() -> None:
    config = RegistryConfig()
    assert config.model_name("acme", "Tobacco Products") == "bastion.acme.tobacco-products"
    assert config.model_name("acme", "Drugs & Tobacco") == "bastion.acme.drugs-tobacco"
    assert config.model_name("acme", "Firearms") != config.model_name("acme-2", "Firearms")
    assert config.experiment_name("acme") == "bastion.acme"
    slugs = [category_slug(c) for c in taxonomy.CATEGORIES]
    assert len(set(slugs)) == len(slugs) and all("." not in s for s in slugs)
    for bad in ("a.b", "Acme", "", "a/b", "../x"):
        with pytest.raises(ValueError):
            config.model_name(bad, "Firearms")
    with pytest.raises(KeyError):
        config.model_name("acme", "Not A Category")
    assert RegistryConfig(model_prefix="team").model_name("acme", "Pills") == "team.acme.pills"


# ---- the store ----------------------------------------------------------------------
def test_log_list_alias_and_resolve(tmp_path: Path) -> None:
    registry = new_registry(tmp_path)
    assert registry.tracking_uri.startswith("sqlite:///") and "mlflow.db" in registry.tracking_uri
    first = head_onnx(random_unit(1), 0.0)
    v1 = registry.log_head(
        "acme",
        "Firearms",
        first,
        {"C": 0.5, "folds": 5},
        {"f1": 0.81, "recall": 0.9},
        {"f1": 0.81, "samples": 300},
        {"pr_curve.png": b"\x89PNG-not-really", "confusion.svg": b"<svg/>"},
    )
    v2 = registry.log_head("acme", "Firearms", head_onnx(random_unit(2), 0.0), {}, {"f1": 0.9}, {})
    assert (v1.version, v2.version) == (1, 2)
    assert v1.name == "bastion.acme.firearms" and v1.tenant == "acme" and v1.category == "Firearms"
    assert v1.embedding_model == "efficientnet-lite0" and v1.threshold == 0.5
    assert v1.uri == "models:/bastion.acme.firearms/1"

    # the run holds the parameters, metrics, report, charts and the ONNX file
    client = registry._client()
    run = client.get_run(v1.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"C": "0.5", "folds": "5"}
    assert run.data.metrics == {"f1": 0.81, "recall": 0.9}
    assert run.data.tags["bastion.tenant"] == "acme"
    files = {a.path for a in client.list_artifacts(v1.run_id)}
    assert files == {"head", "report.json", "charts"}
    charts = {a.path for a in client.list_artifacts(v1.run_id, "charts")}
    assert charts == {"charts/pr_curve.png", "charts/confusion.svg"}
    report = Path(client.download_artifacts(v1.run_id, "report.json", str(tmp_path / "dl")))
    assert json.loads(report.read_text()) == {"f1": 0.81, "samples": 300}
    assert client.get_experiment(run.info.experiment_id).name == "bastion.acme"
    # the artifacts are inside the data dir, nothing in the working directory
    stored = artifact_path(registry, "acme", "Firearms", 1)
    assert stored.is_relative_to(tmp_path.resolve() / "mlflow")

    assert registry.alias_version("acme", "Firearms", "champion") is None
    registry.set_alias("acme", "Firearms", "champion", 1)
    registry.set_alias("acme", "Firearms", "challenger", 2)
    listed = registry.versions("acme", "Firearms")
    assert [(v.version, v.aliases) for v in listed] == [(2, ("challenger",)), (1, ("champion",))]
    assert listed[1].metrics == {"f1": 0.81, "recall": 0.9}
    assert registry.uri("acme", "Firearms", "champion") == "models:/bastion.acme.firearms@champion"

    version, data = registry.resolve("acme", "Firearms", "champion")
    assert version.version == 1 and data == first
    registry.set_alias("acme", "Firearms", "champion", 2)
    assert registry.resolve("acme", "Firearms", "champion")[0].version == 2
    registry.remove_alias("acme", "Firearms", "challenger")
    assert registry.alias_version("acme", "Firearms", "challenger") is None

    with pytest.raises(HeadNotFound):
        registry.set_alias("acme", "Firearms", "champion", 9)
    with pytest.raises(HeadNotFound):
        registry.resolve("acme", "Pills", "champion")
    with pytest.raises(RegistryError) as bad_alias:
        registry.set_alias("acme", "Firearms", "production", 1)
    assert bad_alias.value.status == 422
    assert [h.name for h in registry.aliased_heads()] == ["bastion.acme.firearms"]


def test_a_tampered_artifact_is_refused(tmp_path: Path) -> None:
    registry = new_registry(tmp_path)
    log(registry, "acme", head_onnx(random_unit(1), 0.0))
    registry.set_alias("acme", "Firearms", "champion", 1)
    assert registry.resolve("acme", "Firearms", "champion")[0].version == 1
    # someone replaces the file with another valid head: the checksum gives it away
    artifact_path(registry, "acme", "Firearms", 1).write_bytes(head_onnx(random_unit(7), 5.0))
    with pytest.raises(HeadRefused, match="sha256"):
        registry.resolve("acme", "Firearms", "champion")
    with pytest.raises(HeadRefused):
        registry.fetch("acme", "Firearms", 1)


def test_what_is_not_a_head_is_refused_before_anything_is_logged(tmp_path: Path) -> None:
    registry = new_registry(tmp_path)
    for data in (
        b"definitely not a model",
        head_onnx(random_unit(1), 0.0, "Pills"),  # scores another category
        head_onnx(random_unit(1), 0.0, outputs=2),  # two probabilities per row
        head_onnx(random_unit(1), 0.0, threshold=1.5),
    ):
        with pytest.raises(HeadRefused):
            registry.log_head("acme", "Firearms", data, {}, {}, {})
    with pytest.raises(RegistryError):
        registry.log_head(
            "acme", "Firearms", head_onnx(random_unit(1), 0.0), {}, {}, {}, {"../x": b""}
        )
    with pytest.raises(RegistryError):
        registry.log_head(
            "acme", "Firearms", head_onnx(random_unit(1), 0.0), {}, {"f1": float("nan")}, {}
        )
    client = registry._client()
    assert client.search_registered_models() == []
    assert client.search_runs([e.experiment_id for e in client.search_experiments()], "") == []


def test_a_run_that_fails_registers_no_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = new_registry(tmp_path)
    client = registry._client()

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(client, "log_artifacts", broken)
    with pytest.raises(RegistryError, match="disk full"):
        log(registry, "acme", head_onnx(random_unit(1), 0.0))
    monkeypatch.undo()
    runs = client.search_runs([client.get_experiment_by_name("bastion.acme").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert client.search_registered_models() == []
    assert log(registry, "acme", head_onnx(random_unit(1), 0.0)) == 1


def test_load_head_checks_the_contract() -> None:
    ref = HeadRef("acme", "Firearms", "bastion.acme.firearms", 1)
    good = head_onnx(random_unit(1), 0.0, threshold=0.7)
    sha = hashlib.sha256(good).hexdigest()
    head = load_head(good, ref, sha256=sha)
    assert head.threshold == 0.7 and head.dim == DIM and head.ref.label_version == "v1"
    probs = head.predict(np.stack([random_unit(1), np.zeros(DIM, np.float32)]))
    assert probs.shape == (2,) and probs[1] == pytest.approx(0.5)
    assert head.accepts("efficientnet-lite0", "abc") and not head.accepts("clip", "abc")
    with pytest.raises(HeadRefused, match="sha256"):
        load_head(good, ref, sha256="0" * 64)
    for bad in (b"garbage", head_onnx(random_unit(1), 0.0, outputs=2)):
        digest = hashlib.sha256(bad).hexdigest()
        with pytest.raises(HeadRefused):
            load_head(bad, ref, sha256=digest)


def test_another_tenants_name_is_never_served(tmp_path: Path) -> None:
    """A registered model only serves the tenant its name is for, whatever its tags say."""
    registry = new_registry(tmp_path)
    log(registry, "acme", head_onnx(random_unit(1), 0.0))
    log(registry, "globex", head_onnx(random_unit(2), 0.0))
    registry.set_alias("acme", "Firearms", "champion", 1)
    registry.set_alias("globex", "Firearms", "champion", 1)
    client = registry._client()
    # a model named for one tenant but tagged for another
    client.create_registered_model(
        "bastion.globex.pills", tags={"bastion.tenant": "acme", "bastion.category": "Pills"}
    )
    heads = {(h.tenant, h.category): h.name for h in registry.aliased_heads()}
    assert heads == {
        ("acme", "Firearms"): "bastion.acme.firearms",
        ("globex", "Firearms"): "bastion.globex.firearms",
    }
    targets = HeadSet()
    HeadWatcher(registry, [targets], 1.0).sync()
    assert targets.champions("acme")["Firearms"].name == "bastion.acme.firearms"
    assert targets.champions("globex")["Firearms"].name == "bastion.globex.firearms"
    assert targets.champions("initech") == {} and targets.champions(None) == {}


def test_the_watcher_swaps_refuses_and_survives_a_missing_registry(tmp_path: Path) -> None:
    registry = new_registry(tmp_path)
    for seed in (1, 2):
        log(registry, "acme", head_onnx(random_unit(seed), 0.0))
    registry.set_alias("acme", "Firearms", "champion", 1)
    heads = HeadSet()
    watcher = HeadWatcher(registry, [heads], 1.0)
    assert watcher.sync() and heads.champions("acme")["Firearms"].version == 1
    assert not watcher.sync()  # nothing moved
    old = heads.current

    registry.set_alias("acme", "Firearms", "champion", 2)
    registry.set_alias("acme", "Firearms", "challenger", 1)
    assert watcher.sync()
    pair = heads.for_tenant("acme")["Firearms"]
    assert pair.champion is not None and pair.champion.ref.version == 2
    assert pair.challenger is not None and pair.challenger.ref.version == 1
    # the old snapshot, which a batch in flight holds, is untouched; v1 was not reloaded
    old_champion = old["acme"]["Firearms"].champion
    assert old_champion is not None and old_champion.ref.version == 1
    assert pair.challenger is old_champion
    assert [(s.alias, s.before, s.after) for s in watcher.status.swaps][-2:] == [
        ("champion", 1, 2),
        ("challenger", None, 1),
    ]

    # a tampered version is refused; the champion serving keeps serving
    log(registry, "acme", head_onnx(random_unit(3), 0.0))
    artifact_path(registry, "acme", "Firearms", 3).write_bytes(b"tampered")
    registry.set_alias("acme", "Firearms", "champion", 3)
    watcher.sync()
    assert heads.champions("acme")["Firearms"].version == 2
    assert ("bastion.acme.firearms", 3) in watcher.status.refused

    # the registry cannot be read: the heads stay as they are
    (tmp_path / "a-file").write_text("")
    unreadable = f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"
    watcher.registry = new_registry(tmp_path, tracking_uri=unreadable)
    assert not watcher.sync()
    assert watcher.status.error is not None
    assert heads.champions("acme")["Firearms"].version == 2

    # the alias removed: nothing serves under it
    watcher.registry = registry
    registry.remove_alias("acme", "Firearms", "challenger")
    registry.set_alias("acme", "Firearms", "champion", 2)
    watcher.sync()
    assert watcher.status.error is None
    assert heads.for_tenant("acme")["Firearms"].challenger is None


# ---- no network, no start-up cost -------------------------------------------------
_GUARD = """
import json, os, socket, sys, time
attempts = []
LOCAL = (None, "localhost", "127.0.0.1", "::1")
real_connect = socket.socket.connect
def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOCAL:
        attempts.append(f"connect {address[0]}")
        raise OSError("no network in this test")
    return real_connect(self, address)
socket.socket.connect = connect
real_getaddrinfo = socket.getaddrinfo
def getaddrinfo(host, *args, **kwargs):
    if host not in LOCAL:
        attempts.append(f"resolve {host}")
        raise socket.gaierror("no network in this test")
    return real_getaddrinfo(host, *args, **kwargs)
socket.getaddrinfo = getaddrinfo
"""

_BASTION = """
from pathlib import Path
from bastion.registry.config import RegistryConfig
from bastion.registry.store import ModelRegistry
from tests.test_registry import head_onnx, random_unit
registry = ModelRegistry(RegistryConfig(), Path(sys.argv[1]))
registry.log_head("acme", "Firearms", head_onnx(random_unit(1), 0.0), {"C": 1}, {"f1": 0.5}, {})
registry.set_alias("acme", "Firearms", "champion", 1)
registry.resolve("acme", "Firearms", "champion")
registry.versions("acme", "Firearms")
registry.aliased_heads()
from mlflow.telemetry import get_telemetry_client
client = get_telemetry_client()
time.sleep(2)
"""

_PLAIN = """
import mlflow
client = mlflow.MlflowClient(tracking_uri="sqlite:///" + sys.argv[1] + "/plain.db")
client.create_experiment("x", artifact_location=Path(sys.argv[1]).as_uri())
from mlflow.telemetry import get_telemetry_client
client = get_telemetry_client()
if client is not None:
    client.flush()
deadline = time.monotonic() + 10
while not attempts and time.monotonic() < deadline:
    time.sleep(0.1)
"""


def _offline_run(script: str, data_dir: Path) -> dict[str, Any]:
    # what a process outside a test or CI has: no markers that switch telemetry off
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTEST_CURRENT_TEST", "CI", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")
    }
    env.update(HTTPS_PROXY="http://192.0.2.1:9", HTTP_PROXY="http://192.0.2.1:9")
    code = (
        _GUARD
        + "from pathlib import Path\n"
        + script
        + "\nprint(json.dumps({'attempts': attempts, 'telemetry': client is not None}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_registry_never_reaches_the_network(tmp_path: Path) -> None:
    """Bastion's registry calls make no connection and start no telemetry, in a process
    without the markers (CI, pytest) that switch MLflow's telemetry off by themselves,
    with a proxy that leads nowhere; MLflow left to itself in the same guard does try to
    reach out (its telemetry, through the proxy)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ours = _offline_run(_BASTION, tmp_path / "a")
    assert ours == {"attempts": [], "telemetry": False}
    plain = _offline_run(_PLAIN, tmp_path / "b")
    # the attempt is the proof; MLflow drops its telemetry client as soon as its config
    # fetch fails, which on some machines happens before the script looks for the client
    assert plain["attempts"], plain


def test_mlflow_is_not_imported_unless_heads_run() -> None:
    code = (
        "import sys\n"
        "from bastion.config import Settings\n"
        "import bastion.api.app, bastion.process.components, bastion.cli\n"
        "Settings()\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported at start-up'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_import_mlflow_switches_telemetry_off() -> None:
    import_mlflow()
    from mlflow.telemetry import get_telemetry_client
    from mlflow.telemetry.utils import is_telemetry_disabled

    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert is_telemetry_disabled() and get_telemetry_client() is None


# ---- tenant heads behind /v1/moderate ----------------------------------------------
HEAD_ANALYZERS = ["labels", "tenant_head"]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def heads_engine(data_root: Path) -> AsyncIterator[Engine]:
    """The real ``labels`` analyzer and the tenant heads, loaded once for the module."""
    eng = Engine(make_settings(data_root / "heads-engine", analyzers=HEAD_ANALYZERS))
    errors = eng.load_all()
    assert not errors, errors
    yield eng
    await eng.close()


def heads_settings(data_dir: Path, refresh_s: float = 0.3) -> Settings:
    return make_settings(
        data_dir, analyzers=HEAD_ANALYZERS, registry=RegistryConfig(refresh_s=refresh_s)
    )


async def embedding_of(api: Api, engine: Engine, data: bytes) -> npt.NDArray[np.float32]:
    """The embedding ``labels`` makes of ``data`` behind the API."""
    decoded = await api.services.moderation.decode(data)
    labels = engine.analyzers["labels"]

    def embed() -> npt.NDArray[np.float32]:
        out = labels.analyze([labels.preprocess(decoded.frames[0])])[0]
        assert out.embedding is not None
        return np.asarray(out.embedding, dtype=np.float32)

    return await asyncio.to_thread(embed)


async def use_heads_policy(api: Api, tenant: Tenant) -> None:
    r = await api.client.put(
        "/v1/policies/heads",
        content=HEADS_POLICY,
        headers={**tenant.headers, "Content-Type": "application/yaml"},
    )
    assert r.status_code == 200, r.text


async def moderate(api: Api, tenant: Tenant, data: bytes) -> dict[str, Any]:
    r = await api.client.post("/v1/moderate?policy=heads", content=data, headers=tenant.headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def head_labels(result: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    """The tenant heads' labels: category, model, version, confidence (rounded)."""
    return [
        (lab["name"], lab["model"], lab["version"], round(lab["confidence"]))
        for lab in result["labels"]
        if lab["analyzer"] == "tenant_head"
    ]


async def in_thread(call: Any, *args: Any) -> Any:
    return await asyncio.to_thread(call, *args)


@pytest.mark.models
async def test_tenant_heads_swap_under_load_without_a_failed_request(
    heads_engine: Engine, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    settings = heads_settings(data_dir)
    cat = photo("skimage-chelsea")
    # the tenant's heads are registered before the app starts (ids chosen up front)
    async with running(settings, heads_engine) as api:
        acme, globex = await api.new_tenant(), await api.new_tenant()
        for t in (acme, globex):
            await use_heads_policy(api, t)
        embedding = await embedding_of(api, heads_engine, cat)
    registry = new_registry(data_dir, refresh_s=0.3)
    name = registry.model_name(acme.id, "Firearms")
    v1 = await in_thread(log, registry, acme.id, center_head(embedding, 0.9))
    v2 = await in_thread(log, registry, acme.id, center_head(embedding, 0.7))
    await in_thread(registry.set_alias, acme.id, "Firearms", "champion", v1)

    async with running(settings, heads_engine) as api:
        # served from the first request: the aliases were read at start-up
        first = await moderate(api, acme, cat)
        assert head_labels(first) == [("Firearms", name, "v1", 90)]
        assert first["decision"] == "review"
        assert first["versions"]["tenant_head"] == "firearms:v1"
        other = await moderate(api, globex, cat)
        assert head_labels(other) == [] and other["versions"]["tenant_head"] == "none"
        assert other["decision"] == "allow"

        seen: list[tuple[float, str, int, str]] = []  # (time, tenant, status, head versions)
        stop = asyncio.Event()

        async def client(tenant: Tenant, data: bytes) -> None:
            while not stop.is_set():
                r = await api.client.post(
                    "/v1/moderate?policy=heads", content=data, headers=tenant.headers
                )
                versions = ""
                if r.status_code == 200:
                    versions = ",".join(v for _, _, v, _ in head_labels(r.json()))
                seen.append((time.monotonic(), tenant.id, r.status_code, versions))

        async def until(version: str, since: float, timeout: float = 20.0) -> float:
            deadline = since + timeout
            while time.monotonic() < deadline:
                if any(t >= since and who == acme.id and v == version for t, who, _, v in seen):
                    return min(
                        t for t, who, _, v in seen if t >= since and who == acme.id and v == version
                    )
                await asyncio.sleep(0.02)
            raise AssertionError(f"no response named {version} within {timeout} s")

        clients = [
            asyncio.create_task(client(acme, cat)),
            asyncio.create_task(client(acme, cat)),
            asyncio.create_task(client(acme, unique(cat))),
            asyncio.create_task(client(globex, cat)),
        ]
        try:
            await asyncio.sleep(0.5)
            promoted = time.monotonic()
            await in_thread(registry.set_alias, acme.id, "Firearms", "champion", v2)
            swap_s = await until("v2", promoted) - promoted
            await asyncio.sleep(1.0)
            settled = time.monotonic()
            await asyncio.sleep(0.5)
            assert {v for t, who, _, v in seen if t > settled and who == acme.id} == {"v2"}

            rolled_back = time.monotonic()
            await in_thread(registry.set_alias, acme.id, "Firearms", "champion", v1)
            rollback_s = await until("v1", rolled_back) - rolled_back
            await asyncio.sleep(1.0)
            settled = time.monotonic()
            await asyncio.sleep(0.5)
            assert {v for t, who, _, v in seen if t > settled and who == acme.id} == {"v1"}
        finally:
            stop.set()
            await asyncio.gather(*clients)
        assert seen and all(status == 200 for _, _, status, _ in seen), {s for *_, s, _ in seen}
        assert all(v == "" for _, who, _, v in seen if who == globex.id)
        print(
            f"\nswap: {swap_s:.2f} s, rollback: {rollback_s:.2f} s, "
            f"{len(seen)} requests during the swaps, none failed"
        )
        assert swap_s < 10 and rollback_s < 10

        # the served results name the version: after the rollback v1 again
        back = await moderate(api, acme, cat)
        assert head_labels(back) == [("Firearms", name, "v1", 90)]


@pytest.mark.models
async def test_a_corrupt_champion_is_refused_and_the_old_one_keeps_serving(
    heads_engine: Engine, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    settings = heads_settings(data_dir, refresh_s=0.2)
    cat = photo("skimage-chelsea")
    async with running(settings, heads_engine) as api:
        acme = await api.new_tenant()
        await use_heads_policy(api, acme)
        embedding = await embedding_of(api, heads_engine, cat)
        registry = new_registry(data_dir)
        name = registry.model_name(acme.id, "Firearms")
        v1 = await in_thread(log, registry, acme.id, center_head(embedding, 0.9))
        await in_thread(registry.set_alias, acme.id, "Firearms", "champion", v1)
        analyzer = heads_engine.analyzers["tenant_head"]
        assert isinstance(analyzer, TenantHeadAnalyzer)
        deadline = time.monotonic() + 10
        while not analyzer.heads.champions(acme.id) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert head_labels(await moderate(api, acme, cat)) == [("Firearms", name, "v1", 90)]

        # v2: tampered after registration; v3: registered by hand, not a head at all
        v2 = await in_thread(log, registry, acme.id, center_head(embedding, 0.6))
        artifact_path(registry, acme.id, "Firearms", v2).write_bytes(b"\x00" * 100)
        await in_thread(registry.set_alias, acme.id, "Firearms", "champion", v2)
        await asyncio.sleep(1.0)
        assert head_labels(await moderate(api, acme, unique(cat))) == [("Firearms", name, "v1", 90)]
        watcher = _watcher(api)
        assert (name, v2) in watcher.status.refused
        assert "sha256" in watcher.status.refused[(name, v2)].reason

        bogus = b"not an onnx model"
        digest = hashlib.sha256(bogus).hexdigest()
        client = registry._client()
        run = client.create_run(client.get_experiment_by_name(f"bastion.{acme.id}").experiment_id)
        folder = tmp_path / "bogus" / "head"
        folder.mkdir(parents=True)
        (folder / HEAD_FILE).write_bytes(bogus)
        client.log_artifacts(run.info.run_id, str(folder.parent))
        tags = {"bastion.tenant": acme.id, "bastion.category": "Firearms", "bastion.sha256": digest}
        mv = client.create_model_version(
            name, f"{run.info.artifact_uri}/head", run.info.run_id, tags=tags
        )
        await in_thread(registry.set_alias, acme.id, "Firearms", "champion", int(mv.version))
        await asyncio.sleep(1.0)
        assert (name, int(mv.version)) in watcher.status.refused
        assert head_labels(await moderate(api, acme, unique(cat))) == [("Firearms", name, "v1", 90)]
        # the alias back on v1: served as before, no reload
        await in_thread(registry.set_alias, acme.id, "Firearms", "champion", v1)
        await asyncio.sleep(0.6)
        assert head_labels(await moderate(api, acme, unique(cat))) == [("Firearms", name, "v1", 90)]


def _watcher(api: Api) -> HeadWatcher:
    watcher = api.services.heads.watcher
    assert watcher is not None, "the app has no head watcher"
    return watcher


@pytest.mark.models
async def test_challengers_run_in_shadow_and_their_disagreements_are_counted(
    heads_engine: Engine, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    settings = heads_settings(data_dir, refresh_s=0.2)
    cat, coffee = photo("skimage-chelsea"), photo("skimage-coffee")
    async with running(settings, heads_engine) as api:
        acme = await api.new_tenant()
        await use_heads_policy(api, acme)
        cat_vec = await embedding_of(api, heads_engine, cat)
        coffee_vec = await embedding_of(api, heads_engine, coffee)
        registry = new_registry(data_dir)
        champion = await in_thread(log, registry, acme.id, center_head(cat_vec, 0.9))
        challenger = await in_thread(log, registry, acme.id, center_head(coffee_vec, 0.9))
        await in_thread(registry.set_alias, acme.id, "Firearms", "champion", champion)
        await in_thread(registry.set_alias, acme.id, "Firearms", "challenger", challenger)
        analyzer = heads_engine.analyzers["tenant_head"]
        assert isinstance(analyzer, TenantHeadAnalyzer)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pair = analyzer.heads.for_tenant(acme.id).get("Firearms")
            if pair is not None and pair.challenger is not None:
                break
            await asyncio.sleep(0.05)

        on_cat = await moderate(api, acme, cat)
        on_coffee = await moderate(api, acme, coffee)
        name = registry.model_name(acme.id, "Firearms")
        # only the champion acts
        assert head_labels(on_cat) == [("Firearms", name, "v1", 90)]
        assert head_labels(on_coffee) == []
        counts = {
            (k.champion, k.challenger): v for k, v in analyzer.shadow.for_tenant(acme.id).items()
        }
        tally = counts[("v1", "v2")]
        assert (tally.scored, tally.champion_only, tally.challenger_only) == (2, 1, 1)

        metrics = (await api.client.get("/metrics")).text
        line = (
            'bastion_head_shadow_disagreements_total{category="Firearms",challenger="v2",'
            f'champion="v1",direction="challenger_only",tenant="{acme.id}"}} 1.0'
        )
        assert line in metrics


def test_the_analyzer_is_a_setting_and_lists_its_categories(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, analyzers=["labels", {"type": "tenant_head", "categories": ["Firearms"]}]
    )
    assert [a.type for a in settings.analyzers] == ["labels", "tenant_head"]
    with pytest.raises(ValueError):
        make_settings(tmp_path, analyzers=[{"type": "tenant_head", "categories": ["Nope"]}])
    assert settings.registry.refresh_s == 3.0 and settings.registry.tracking_uri is None
