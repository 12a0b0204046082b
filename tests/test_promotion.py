"""Safe promotion and rollback of tenants' heads: a candidate is judged on its own frozen
held-out samples against the champion (or, with none, the recorded baseline), refused
with its figures when it does not beat it or, in a high-severity category, recalls
less; forcing needs a reason; rollbacks follow the audit log; every action is audited;
another tenant sees nothing. Over the service (SQLite and PostgreSQL), the REST API and
the command line, and in a running app whose results follow the promotion and the
rollback within seconds.

Samples are synthetic embeddings stored as a tenant's real samples, and heads are
trained on them in a moment (:mod:`tests.support.heads`); the registry is a real local
MLflow store, shared by the module (each test has tenants of its own).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bastion.cli import app as cli
from bastion.config import Settings
from bastion.jobs.media_files import MediaStore
from bastion.pipeline.engine import Engine
from bastion.registry.checks import Baseline, baseline_of, held_out_ids
from bastion.registry.config import PromotionConfig, RegistryConfig
from bastion.registry.errors import HeadNotFound
from bastion.registry.promotion import (
    AlreadyChampion,
    NoChallenger,
    NothingToRollBack,
    PromotionRefused,
    Promotions,
    ReasonRequired,
    ReasonTooLong,
    resolve_category,
)
from bastion.registry.store import ModelRegistry
from bastion.review.config import ReviewConfig
from bastion.review.service import ReviewService
from bastion.samples.embedding import Embedder
from bastion.samples.errors import UnknownCategory
from bastion.samples.service import SampleService
from bastion.store.db import make_engine, migrate, session_factory
from tests.support.app import Api, Tenant, running
from tests.support.databases import sqlite_url
from tests.support.heads import (
    Split,
    direction_head,
    fit_head,
    log_version,
    make_samples,
    random_direction,
)
from tests.support.media import photo, unique
from tests.support.settings import make_settings

FIREARMS = "Firearms"
KNIVES = "Knives and Blades"
BY = "key:k_admin"
runner = CliRunner()


def _tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MLflow store for the module (creating one takes seconds)."""
    return tmp_path_factory.mktemp("promotion-registry")


@pytest.fixture(scope="module")
def registry(registry_dir: Path) -> ModelRegistry:
    return ModelRegistry(RegistryConfig(), registry_dir)


def shared_registry(registry: ModelRegistry, refresh_s: float = 3.0) -> RegistryConfig:
    """Settings of an app that uses the module's MLflow store."""
    return RegistryConfig(
        tracking_uri=registry.tracking_uri,
        artifact_location=registry.config.resolved_artifact_location(registry.data_dir),
        refresh_s=refresh_s,
    )


@dataclass
class World:
    """A database with the samples and promotion services, on the module's registry."""

    sessions: sessionmaker[Session]
    samples: SampleService
    promotions: Promotions
    registry: ModelRegistry
    tenant: str


@pytest.fixture
def world(database_url: str | None, tmp_path: Path, registry: ModelRegistry) -> Iterator[World]:
    db = make_engine(database_url or sqlite_url(tmp_path))
    try:
        migrate(db)
        sessions = session_factory(db)
        review = ReviewService(sessions, ReviewConfig())
        samples = SampleService(sessions, MediaStore(tmp_path / "media"), review)
        promotions = Promotions(
            sessions, registry, samples, PromotionConfig(bootstrap_resamples=500)
        )
        yield World(sessions, samples, promotions, registry, _tenant())
    finally:
        db.dispose()


def _split(world: World, category: str = FIREARMS, seed: int = 1) -> Split:
    return make_samples(world.samples, world.tenant, category, random_direction(seed), seed=seed)


def _log(world: World, split: Split, onnx: bytes, **kw: Any) -> int:
    return log_version(world.registry, world.tenant, split, onnx, **kw).version


def _aliases(world: World, category: str = FIREARMS) -> tuple[int | None, int | None]:
    r, t = world.registry, world.tenant
    return r.alias_version(t, category, "champion"), r.alias_version(t, category, "challenger")


# ---- the service --------------------------------------------------------------------
def test_a_better_candidate_is_promoted_and_a_worse_one_refused_with_figures(
    world: World,
) -> None:
    p, t = world.promotions, world.tenant
    split = _split(world)
    weak = _log(world, split, fit_head(split, recall=0.6))
    good = _log(world, split, fit_head(split))
    worse = _log(world, split, fit_head(split, recall=0.3))

    # no champion yet: the challenger is judged against the baseline its report recorded
    p.set_challenger(t, FIREARMS, weak, by=BY)
    assert _aliases(world) == (None, weak)
    first = p.promote(t, FIREARMS, by=BY)
    checks = first.checks
    assert checks is not None and checks.passed and checks.against == "baseline"
    assert checks.reference is not None and checks.reference.recorded
    assert checks.reference.f1 == pytest.approx(2 * 0.9 * 0.25 / 1.15)
    assert checks.candidate is not None and 0.6 < checks.candidate.f1 < 0.9
    assert (first.event.from_version, first.event.to_version) == (None, weak)
    assert _aliases(world) == (weak, None)  # the challenger promoted is no longer one

    # a better head beats the champion on its held-out set, by the whole interval
    p.set_challenger(t, FIREARMS, good, by=BY)
    second = p.promote(t, FIREARMS, by=BY)
    checks = second.checks
    assert checks is not None and checks.passed and checks.against == "champion"
    assert checks.champion_version == weak and checks.candidate_version == good
    assert checks.held_out is not None
    assert (checks.held_out.frozen, checks.held_out.evaluated, checks.held_out.left_out) == (
        80,
        80,
        0,
    )
    assert (checks.held_out.positive, checks.held_out.negative) == (40, 40)
    assert checks.candidate is not None and checks.reference is not None
    assert checks.candidate.f1 > 0.95 and checks.reference.f1 < 0.9
    assert checks.f1_difference is not None and checks.f1_difference.low > 0
    assert _aliases(world) == (good, None)

    # a worse one is refused, with the figures, and the refusal is audited
    with pytest.raises(PromotionRefused) as refused:
        p.promote(t, FIREARMS, worse, by=BY)
    error = refused.value
    assert (error.status, error.code) == (409, "promotion_refused")
    assert [r["code"] for r in error.details["reasons"]] == ["not_better"]
    figures = error.details["checks"]
    assert figures["candidate"]["f1"] < figures["reference"]["f1"]
    assert figures["f1_difference"]["high"] < 0 and not figures["passed"]
    assert f"v{worse} F1" in error.message and f"v{good} F1" in error.message
    assert _aliases(world) == (good, None)

    page = p.events(t)
    assert [(e.action, e.outcome, e.from_version, e.to_version) for e in page.events] == [
        ("promote", "refused", good, worse),
        ("promote", "applied", weak, good),
        ("set_challenger", "applied", None, good),
        ("promote", "applied", None, weak),
        ("set_challenger", "applied", None, weak),
    ]
    assert page.events[0].checks == figures and page.events[0].actor == BY
    assert page.events[0].id == error.details["event_id"]


def test_forcing_needs_a_reason_and_rollbacks_follow_the_audit_log(world: World) -> None:
    p, t = world.promotions, world.tenant
    split = _split(world, seed=2)
    weak = _log(world, split, fit_head(split, recall=0.6))
    good = _log(world, split, fit_head(split))
    worse = _log(world, split, fit_head(split, recall=0.3))
    p.promote(t, FIREARMS, weak, by=BY)
    p.promote(t, FIREARMS, good, by=BY)

    with pytest.raises(ReasonRequired) as no_reason:
        p.promote(t, FIREARMS, worse, force=True, by=BY)
    assert (no_reason.value.status, no_reason.value.code) == (422, "reason_required")
    with pytest.raises(ReasonRequired):
        p.promote(t, FIREARMS, worse, force=True, reason="   ", by=BY)
    with pytest.raises(ReasonTooLong):
        p.promote(t, FIREARMS, worse, force=True, reason="x" * 501, by=BY)
    assert _aliases(world)[0] == good and len(p.events(t).events) == 2

    forced = p.promote(t, FIREARMS, worse, force=True, reason="  legal asked for it  ", by=BY)
    assert forced.event.forced and forced.event.reason == "legal asked for it"
    assert forced.checks is not None and not forced.checks.passed
    assert [r.code for r in forced.checks.reasons] == ["not_better"]
    assert forced.event.checks is not None and forced.event.checks["reasons"]
    assert _aliases(world)[0] == worse
    with pytest.raises(AlreadyChampion):
        p.promote(t, FIREARMS, worse, by=BY)

    # back along the champions as they were promoted, one at a time
    with pytest.raises(ReasonRequired):
        p.rollback(t, FIREARMS, reason="", by=BY)
    assert p.rollback(t, FIREARMS, reason="too many reports", by=BY).event.to_version == good
    assert _aliases(world)[0] == good
    assert p.rollback(t, FIREARMS, reason="again", by=BY).event.to_version == weak
    with pytest.raises(NothingToRollBack) as nothing:
        p.rollback(t, FIREARMS, reason="and again", by=BY)
    assert nothing.value.status == 409
    explicit = p.rollback(t, FIREARMS, worse, reason="it was fine after all", by=BY)
    assert (explicit.event.from_version, explicit.event.to_version) == (weak, worse)
    with pytest.raises(AlreadyChampion):
        p.rollback(t, FIREARMS, worse, reason="no-op", by=BY)
    with pytest.raises(HeadNotFound):
        p.rollback(t, FIREARMS, 99, reason="no such version", by=BY)
    with pytest.raises(HeadNotFound):
        p.promote(t, FIREARMS, 99, force=True, reason="no such version", by=BY)
    with pytest.raises(NoChallenger):
        p.promote(t, FIREARMS, by=BY)
    with pytest.raises(NoChallenger):
        p.clear_challenger(t, FIREARMS, by=BY)
    with pytest.raises(AlreadyChampion):
        p.set_challenger(t, FIREARMS, worse, by=BY)
    p.set_challenger(t, FIREARMS, good, by=BY)
    assert p.clear_challenger(t, FIREARMS, by=BY).event.from_version == good
    assert _aliases(world) == (worse, None)

    actions = [(e.action, e.from_version, e.to_version) for e in p.events(t, FIREARMS).events]
    assert actions[:5] == [
        ("clear_challenger", good, None),
        ("set_challenger", None, good),
        ("rollback", weak, worse),
        ("rollback", good, weak),
        ("rollback", worse, good),
    ]
    # pages of two through the cursor give the same events
    seen, cursor = [], None
    while True:
        page = p.events(t, limit=2, cursor=cursor)
        seen += [e.id for e in page.events]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [e.id for e in p.events(t).events] and len(seen) == 8


def test_high_severity_categories_refuse_a_loss_of_recall(world: World) -> None:
    p, t = world.promotions, world.tenant
    split = _split(world, KNIVES, seed=3)
    eager = _log(world, split, fit_head(split, false_positives=0.9))  # recall 1, many FPs
    careful = _log(world, split, fit_head(split, recall=0.85))  # better F1, lower recall
    p.promote(t, KNIVES, eager, by=BY)

    assert p.severity(t).high_severity == []
    with pytest.raises(UnknownCategory):
        p.set_high_severity(t, ["Weapons", "Dragons"], by=BY)
    marked = p.set_high_severity(t, ["Pills", "Weapons", "Pills"], by=BY)
    assert sorted(marked.high_severity) == ["Pills", "Weapons"]
    assert p.is_high_severity(t, KNIVES) and not p.is_high_severity(t, "Tobacco Products")

    with pytest.raises(PromotionRefused) as refused:
        p.promote(t, KNIVES, careful, by=BY)
    checks = refused.value.details["checks"]
    assert [r["code"] for r in refused.value.details["reasons"]] == ["recall_loss"]
    assert checks["beats"] and checks["high_severity"] and checks["recall_loss"]
    assert checks["candidate"]["recall"] < checks["reference"]["recall"] == 1.0
    assert "recalls less" in refused.value.message

    # marking an L2 sibling does not cover the category; unmarking lets it through
    p.set_high_severity(t, [FIREARMS], by=BY)
    done = p.promote(t, KNIVES, careful, by=BY)
    assert done.checks is not None and done.checks.passed and done.checks.recall_loss
    assert p.severity(t).updated_by == BY


def test_deleted_samples_are_left_out_and_other_tenants_see_nothing(world: World) -> None:
    p, t = world.promotions, world.tenant
    split = _split(world, seed=4)
    other = _tenant()
    theirs = make_samples(world.samples, other, FIREARMS, random_direction(4), seed=4)
    # a report naming another tenant's samples: they are never found for this one
    ids = split.held_out_ids + theirs.held_out_ids[:3]
    good = _log(world, split, fit_head(split), held_out_ids=ids)
    for sample_id in split.held_out_ids[:4]:
        world.samples.delete(t, sample_id)
    checks = p.check(t, FIREARMS, good)
    assert checks.held_out is not None
    assert (checks.held_out.frozen, checks.held_out.evaluated, checks.held_out.left_out) == (
        83,
        76,
        7,
    )
    assert checks.passed

    # a version without a held-out set is refused, and may be forced
    bare = _log(world, split, fit_head(split), report={"note": "made by hand"})
    with pytest.raises(PromotionRefused) as refused:
        p.promote(t, FIREARMS, bare, by=BY)
    assert [r["code"] for r in refused.value.details["reasons"]] == ["no_held_out_set"]
    assert p.promote(t, FIREARMS, bare, force=True, reason="first head", by=BY).event.forced

    # another tenant: nothing listed, nothing found, nothing it may move
    assert p.heads(other) == [] and p.events(other).events == []
    assert [h.category for h in p.heads(t)] == [FIREARMS]
    with pytest.raises(HeadNotFound):
        p.versions(other, FIREARMS)
    acts: list[Callable[[], object]] = [
        lambda: p.promote(other, FIREARMS, good, force=True, reason="mine now", by=BY),
        lambda: p.rollback(other, FIREARMS, good, reason="mine now", by=BY),
        lambda: p.set_challenger(other, FIREARMS, good, by=BY),
    ]
    for act in acts:
        with pytest.raises(HeadNotFound):
            act()
    assert _aliases(world) == (bare, None)
    assert world.registry.alias_version(other, FIREARMS, "champion") is None

    assert resolve_category("drugs-tobacco") == "Drugs & Tobacco"
    assert resolve_category(KNIVES) == KNIVES
    with pytest.raises(UnknownCategory):
        resolve_category("weapons/../x")


def test_the_baseline_and_held_out_ids_are_read_from_a_versions_record() -> None:
    """As a training run records them: run metrics first, else the report's scores."""
    metrics = {"baseline_f1": 0.5, "baseline_recall": 0.4, "baseline_precision": 0.6}
    assert baseline_of(metrics, None) == Baseline(0.5, 0.4, 0.6)
    evaluation = {"baseline": {"f1": 0.3, "recall": 0.2, "precision": 0.7}}
    report = {"baseline": {"policy": "default"}, "evaluation": evaluation, "held_out_ids": ["a"]}
    assert baseline_of({}, report) == Baseline(0.3, 0.2, 0.7)
    assert baseline_of({}, {"baseline": {"f1": True, "recall": 0.2}}) is None
    assert held_out_ids(report) == ["a"] and held_out_ids({"held_out_ids": [1]}) is None
    assert held_out_ids({"held_out_ids": ["b", "a", "b"]}) == ["b", "a"]
    assert held_out_ids(None) is None


# ---- the API --------------------------------------------------------------------------
async def _in_thread(call: Any, *args: Any, **kw: Any) -> Any:
    return await asyncio.to_thread(call, *args, **kw)


async def _setup_api_tenant(
    api: Api, registry: ModelRegistry, category: str, seed: int
) -> tuple[Tenant, Split, list[int]]:
    """A tenant with samples of ``category`` and three versions: weak, good, worse."""
    tenant = await api.new_tenant()
    split = await _in_thread(
        make_samples, api.services.samples, tenant.id, category, random_direction(seed), seed=seed
    )
    versions = []
    for onnx in (fit_head(split, recall=0.6), fit_head(split), fit_head(split, recall=0.3)):
        logged = await _in_thread(log_version, registry, tenant.id, split, onnx)
        versions.append(logged.version)
    return tenant, split, versions


async def test_the_api_promotes_refuses_rolls_back_and_audits_per_tenant(
    tmp_path: Path, registry: ModelRegistry
) -> None:
    settings = make_settings(tmp_path / "data", preload=False, registry=shared_registry(registry))
    async with running(settings) as api:
        c = api.client
        owner, _, (weak, good, worse) = await _setup_api_tenant(api, registry, "Drugs & Tobacco", 5)
        stranger = await api.new_tenant()
        reader = await api.reader(owner.headers)
        base = "/v1/models/drugs-tobacco"

        r = await c.get("/v1/models", headers=reader)
        assert r.status_code == 200, r.text
        (head,) = r.json()["heads"]
        assert (head["category"], head["slug"], head["champion"], head["challenger"]) == (
            "Drugs & Tobacco",
            "drugs-tobacco",
            None,
            None,
        )
        assert head["model"] == f"bastion.{owner.id}.drugs-tobacco"
        assert [v["version"] for v in head["versions"]] == [worse, good, weak]
        assert head["versions"][0]["metrics"]["baseline_recall"] == 0.25
        assert head["versions"][0]["created_at"].endswith("Z") and head["shadow"] == []
        assert isinstance(r.json()["built_in"], list)

        # admin only; the reader may look
        r = await c.put(f"{base}/challenger", json={"version": weak}, headers=reader)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "insufficient_scope")
        r = await c.put(f"{base}/challenger", json={"version": weak}, headers=owner.headers)
        assert r.status_code == 200 and r.json()["event"]["action"] == "set_challenger"
        r = await c.get(f"{base}/checks", headers=reader)
        assert r.status_code == 200 and r.json()["passed"] and r.json()["against"] == "baseline"
        r = await c.post(f"{base}/promote", headers=owner.headers)  # no body: the challenger
        assert r.status_code == 200, r.text
        assert r.json()["event"]["to_version"] == weak and r.json()["checks"]["passed"]
        r = await c.post(f"{base}/promote", json={"version": good}, headers=owner.headers)
        assert r.status_code == 200, r.text

        r = await c.post(f"{base}/promote", json={"version": worse}, headers=owner.headers)
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "promotion_refused"
        assert [x["code"] for x in error["details"]["reasons"]] == ["not_better"]
        figures = error["details"]["checks"]
        assert figures["candidate"]["f1"] < figures["reference"]["f1"]
        assert figures["held_out"]["evaluated"] == 80

        for body, code in (
            ({"version": worse, "force": True}, "reason_required"),
            ({"version": worse, "force": True, "reason": " "}, "reason_required"),
            ({"version": worse, "force": True, "reason": "x" * 501}, "invalid_request"),
            ({"version": worse, "force": "yes please"}, "invalid_request"),
            ({"version": 0}, "invalid_request"),
        ):
            r = await c.post(f"{base}/promote", json=body, headers=owner.headers)
            assert (r.status_code, r.json()["error"]["code"]) == (422, code), (body, r.text)
        r = await c.post(
            f"{base}/promote",
            json={"version": worse, "force": True, "reason": "the audit asked for it"},
            headers=owner.headers,
        )
        assert r.status_code == 200, r.text
        assert r.json()["event"]["forced"] and not r.json()["checks"]["passed"]

        r = await c.post(f"{base}/rollback", json={}, headers=owner.headers)
        assert r.status_code == 422
        r = await c.post(f"{base}/rollback", json={"reason": "complaints"}, headers=owner.headers)
        assert r.status_code == 200 and r.json()["event"]["to_version"] == good
        # the label itself, percent-encoded, names the category too
        r = await c.get("/v1/models/Drugs%20%26%20Tobacco", headers=reader)
        assert r.status_code == 200 and r.json()["champion"] == good
        r = await c.get("/v1/models/nothing-like-it", headers=reader)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_label")
        r = await c.delete(f"{base}/challenger", headers=owner.headers)
        assert (r.status_code, r.json()["error"]["code"]) == (409, "no_challenger")

        # the audit log, newest first, in pages
        r = await c.get("/v1/models/events", params={"limit": 3}, headers=reader)
        first = r.json()
        rest = await c.get(
            "/v1/models/events",
            params={"limit": 50, "cursor": first["next_cursor"]},
            headers=reader,
        )
        events = first["events"] + rest.json()["events"]
        assert [(e["action"], e["outcome"], e["to_version"]) for e in events] == [
            ("rollback", "applied", good),
            ("promote", "applied", worse),
            ("promote", "refused", worse),
            ("promote", "applied", good),
            ("promote", "applied", weak),
            ("set_challenger", "applied", weak),
        ]
        assert events[1]["forced"] and events[1]["reason"] == "the audit asked for it"
        assert events[2]["checks"]["reasons"][0]["code"] == "not_better"
        assert {e["by"] for e in events} == {events[0]["by"]}
        assert events[0]["by"].startswith("key:")
        r = await c.get("/v1/models/events", params={"category": "weapons"}, headers=reader)
        assert r.json()["events"] == []

        # the settings
        r = await c.get("/v1/models/settings", headers=reader)
        assert r.json() == {"high_severity": [], "updated_by": None, "updated_at": None}
        r = await c.put("/v1/models/settings", json={"high_severity": ["Pills"]}, headers=reader)
        assert r.status_code == 403
        r = await c.put(
            "/v1/models/settings", json={"high_severity": ["Dragons"]}, headers=owner.headers
        )
        assert (r.status_code, r.json()["error"]["code"]) == (422, "unknown_label")
        r = await c.put(
            "/v1/models/settings",
            json={"high_severity": ["Drugs & Tobacco"]},
            headers=owner.headers,
        )
        assert r.status_code == 200 and r.json()["high_severity"] == ["Drugs & Tobacco"]

        # another tenant: nothing to see, nothing to move
        s = stranger.headers
        r = await c.get("/v1/models", headers=s)
        assert r.status_code == 200 and r.json()["heads"] == []
        r = await c.get(base, headers=s)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "head_not_found")
        r = await c.post(
            f"{base}/promote", json={"version": weak, "force": True, "reason": "x"}, headers=s
        )
        assert (r.status_code, r.json()["error"]["code"]) == (404, "head_not_found")
        r = await c.post(f"{base}/rollback", json={"reason": "x", "version": weak}, headers=s)
        assert r.status_code == 404
        assert (await c.get("/v1/models/events", headers=s)).json()["events"] == []
        assert (await c.get("/v1/models/settings", headers=s)).json()["high_severity"] == []
        r = await c.get(base, headers=reader)
        assert r.json()["champion"] == good

        doc = (await c.get("/openapi.json")).json()
        assert {"post"} <= set(doc["paths"]["/v1/models/{category}/promote"])
        assert {"put", "delete"} <= set(doc["paths"]["/v1/models/{category}/challenger"])
        for name in ("ModelsOut", "HeadOut", "VersionOut", "EventOut", "ActionOut", "SettingsOut"):
            fields = doc["components"]["schemas"][name]["properties"]
            undescribed = [n for n, f in fields.items() if not f.get("description")]
            assert not undescribed, (name, undescribed)


# ---- the command line -----------------------------------------------------------------
def test_the_models_commands(tmp_path: Path, registry: ModelRegistry) -> None:
    data = tmp_path / "data"
    config = tmp_path / "bastion.yaml"
    registry_settings = shared_registry(registry).model_dump(exclude_none=True)
    config.write_text(json.dumps({"registry": registry_settings}))
    env = {"BASTION_DATA_DIR": str(data), "BASTION_CONFIG": str(config), "COLUMNS": "200"}
    res = runner.invoke(cli, ["models", "list", "--tenant", "default"], env=env)
    assert res.exit_code == 0, res.output

    tenant = _tenant()
    db = make_engine(sqlite_url(data))
    try:
        sessions = session_factory(db)
        samples = SampleService(
            sessions, MediaStore(data / "media"), ReviewService(sessions, ReviewConfig())
        )
        split = make_samples(samples, tenant, FIREARMS, random_direction(6), seed=6)
    finally:
        db.dispose()
    weak, good, worse = (
        log_version(registry, tenant, split, onnx).version
        for onnx in (fit_head(split, recall=0.6), fit_head(split), fit_head(split, recall=0.3))
    )

    def run(*args: str) -> Any:
        return runner.invoke(cli, ["models", *args, "--tenant", tenant], env=env)

    res = run("challenger", "firearms", "--version", str(weak))
    assert res.exit_code == 0 and f"v{weak} is the challenger" in res.output, res.output
    res = run("promote", FIREARMS, "--by", "line")
    assert res.exit_code == 0, res.output
    assert f"v{weak} is the champion, was none" in res.output and "baseline F1" in res.output
    res = run("promote", "firearms", "--version", str(good))
    assert res.exit_code == 0 and f"was v{weak}" in res.output, res.output
    res = run("promote", "firearms", "--version", str(worse))
    assert res.exit_code == 1, res.output
    assert "promotion_refused" in res.output and "not_better" in res.output
    assert f"v{worse} F1" in res.output and "interval" in res.output
    res = run("promote", "firearms", "--version", str(worse), "--force")
    assert res.exit_code == 2 and "reason_required" in res.output, res.output
    res = run("promote", "firearms", "--version", str(worse), "--force", "--reason", "test")
    assert res.exit_code == 0 and "(forced)" in res.output and "overridden" in res.output
    res = run("rollback", "firearms", "--reason", "complaints")
    assert res.exit_code == 0 and f"rolled back to v{good}" in res.output, res.output
    res = run("challenger", "firearms")
    assert res.exit_code == 2
    res = run("challenger", "firearms", "--clear")
    assert res.exit_code == 2 and "no_challenger" in res.output
    res = run("promote", "dragons")
    assert res.exit_code == 2 and "unknown_label" in res.output

    res = run("list", "--json")
    assert res.exit_code == 0, res.output
    listed = json.loads(res.stdout)["versions"]
    assert {v["version"]: v["aliases"] for v in listed} == {
        worse: [],
        good: ["champion"],
        weak: [],
    }
    res = run("events", "--json")
    assert res.exit_code == 0, res.output
    events = json.loads(res.stdout)["events"]
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("rollback", "applied"),
        ("promote", "applied"),
        ("promote", "refused"),
        ("promote", "applied"),
        ("promote", "applied"),
        ("set_challenger", "applied"),
    ]
    assert events[-2]["by"] == "cli:line"
    res = run("events")
    assert res.exit_code == 0 and "6 events" in res.output


# ---- a running app follows the promotion and the rollback ------------------------------
HEADS_POLICY = (
    "name: heads\nanalyzers: [labels, tenant_head]\n"
    "rules:\n  - categories: [Weapons]\n    review: 50\n"
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def heads_engine(data_root: Path) -> AsyncIterator[Engine]:
    """The real ``labels`` analyzer and the tenant heads, loaded once for the module."""
    eng = Engine(make_settings(data_root / "promotion-engine", analyzers=["labels", "tenant_head"]))
    errors = eng.load_all()
    assert not errors, errors
    yield eng
    await eng.close()


def _head_settings(data_dir: Path, registry: ModelRegistry) -> Settings:
    return make_settings(
        data_dir,
        analyzers=["labels", "tenant_head"],
        registry=shared_registry(registry, refresh_s=0.3),
    )


Served = tuple[str, list[tuple[str, str]]]
"""The head versions a result names, and the tenant heads' labels (category, version)."""


async def _served(api: Api, tenant: Tenant, data: bytes) -> Served:
    r = await api.client.post("/v1/moderate?policy=heads", content=data, headers=tenant.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    labels = [(x["name"], x["version"]) for x in body["labels"] if x["analyzer"] == "tenant_head"]
    return body["versions"]["tenant_head"], labels


async def _until(
    api: Api, tenant: Tenant, data: bytes, wanted: Served, timeout: float = 15
) -> float:
    """Seconds until the tenant's results on ``data`` (fresh bytes each time) are ``wanted``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await _served(api, tenant, unique(data)) == wanted:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"results were not {wanted} within {timeout} s")


@pytest.mark.models
async def test_a_running_app_follows_promotion_and_rollback(
    heads_engine: Engine, tmp_path: Path, registry: ModelRegistry
) -> None:
    cat = photo("skimage-chelsea")
    async with running(_head_settings(tmp_path / "data", registry), heads_engine) as api:
        c = api.client
        tenant = await api.new_tenant()
        r = await c.put(
            "/v1/policies/heads",
            content=HEADS_POLICY,
            headers={**tenant.headers, "Content-Type": "application/yaml"},
        )
        assert r.status_code == 200, r.text
        embedder = Embedder(heads_engine)
        direction = await embedder.embed(await embedder.decode(cat))
        model = embedder.model
        split = await _in_thread(
            make_samples,
            api.services.samples,
            tenant.id,
            FIREARMS,
            direction,
            seed=7,
            embedding=model,
        )
        # v1 looks elsewhere (it never flags the cat); v2 is trained on the samples
        elsewhere = direction_head(random_direction(70), 0.2, FIREARMS, embedding=model)
        v1 = (await _in_thread(log_version, registry, tenant.id, split, elsewhere)).version
        v2_onnx = fit_head(split, embedding=model)
        v2 = (await _in_thread(log_version, registry, tenant.id, split, v2_onnx)).version
        base = "/v1/models/firearms"
        r = await c.post(f"{base}/promote", json={"version": v1}, headers=tenant.headers)
        assert r.status_code == 409, r.text  # it does not beat the baseline
        r = await c.post(
            f"{base}/promote",
            json={"version": v1, "force": True, "reason": "a first head"},
            headers=tenant.headers,
        )
        assert r.status_code == 200, r.text
        r = await c.put(f"{base}/challenger", json={"version": v2}, headers=tenant.headers)
        assert r.status_code == 200, r.text
        await _until(api, tenant, cat, (f"firearms:v{v1}", []))

        # the challenger is scored in shadow: it flags the cat, the champion does not
        async def shadow() -> list[dict[str, Any]]:
            heads = (await c.get("/v1/models", headers=tenant.headers)).json()["heads"]
            found: list[dict[str, Any]] = heads[0]["shadow"]
            return found

        deadline = time.monotonic() + 10
        while not any(s["challenger_only"] for s in await shadow()):
            assert time.monotonic() < deadline, "the challenger was not scored in shadow"
            await _served(api, tenant, unique(cat))
            await asyncio.sleep(0.1)
        (counts,) = await shadow()
        assert (counts["champion"], counts["challenger"]) == (f"v{v1}", f"v{v2}")
        assert counts["scored"] >= counts["challenger_only"] >= 1 and counts["champion_only"] == 0

        r = await c.post(f"{base}/promote", headers=tenant.headers)
        assert r.status_code == 200, r.text
        assert r.json()["checks"]["candidate"]["f1"] > 0.95
        promoted_s = await _until(api, tenant, cat, (f"firearms:v{v2}", [(FIREARMS, f"v{v2}")]))
        r = await c.post(f"{base}/rollback", json={"reason": "reports"}, headers=tenant.headers)
        assert r.status_code == 200 and r.json()["event"]["to_version"] == v1, r.text
        rolled_back_s = await _until(api, tenant, cat, (f"firearms:v{v1}", []))
        assert promoted_s < 10 and rolled_back_s < 10
        print(f"\npromotion served in {promoted_s:.2f} s, rollback in {rolled_back_s:.2f} s")

        listed = (await c.get("/v1/models", headers=tenant.headers)).json()
        (head,) = listed["heads"]
        assert head["champion"] == v1 and head["challenger"] is None
        assert any(m["analyzer"] == "labels" for m in listed["built_in"])
