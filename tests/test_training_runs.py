"""Training runs as jobs: from a tenant's labelled samples to a registered challenger.

The samples are the contact-spam task of ``tests/support/spam_images.py`` (real photos
with a phone number, a messenger id or a price, against the same photos with an
ordinary caption or none) with their real embeddings, made once for the module. Runs
go through the API in the running app, whose worker runs each in a child process with
the real base models as the baseline; claims, leases and a dead worker's run are
checked on both databases, and so is a run whose worker died between registering its
head and recording the outcome (taken again, it registers nothing more); the command
line runs a run in its own process.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bastion.cli import app as cli
from bastion.config import Settings
from bastion.jobs.media_files import MediaStore
from bastion.pipeline.engine import Engine
from bastion.pipeline.moderation import Moderation
from bastion.pipeline.policies import PolicyBook
from bastion.process.components import Roles, build_components
from bastion.registry.config import RegistryConfig
from bastion.registry.store import TRAINING_RUN_TAG, ModelRegistry
from bastion.review.config import ReviewConfig
from bastion.review.service import ReviewService
from bastion.samples.service import SampleService
from bastion.samples.tables import Sample
from bastion.store.db import make_engine, migrate, session_factory
from bastion.store.repo import Repo
from bastion.training.config import TrainingJobsConfig
from bastion.training.run_errors import TrainingRunLost
from bastion.training.runner import TrainingRunner
from bastion.training.runs import TrainingRuns
from bastion.training.tables import FAILED, QUEUED, RUNNING, SUCCEEDED, TrainingRun
from bastion.training.work import WorkParts, run_training
from tests.support.app import running
from tests.support.databases import sqlite_url
from tests.support.labelled import SPAM_LABEL, SpamSet, add_samples, spam_images
from tests.support.settings import make_settings
from tests.support.training import follow_run

PHOTOS, PER_PHOTO = 14, 6
FAST = {"cv_folds": 3, "min_positives": 6, "min_negatives": 6, "bootstrap_resamples": 500}
"""Overrides that keep a run short: fewer folds and resamples."""
runner = CliRunner()


@pytest.fixture(scope="module")
def spam(engine: Engine) -> SpamSet:
    return spam_images(engine, PHOTOS, PER_PHOTO, seed=1)


@dataclass
class Clock:
    at: datetime

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class World:
    sessions: sessionmaker[Session]
    samples: SampleService
    runs: TrainingRuns
    clock: Clock


@pytest.fixture
def world(database_url: str | None, tmp_path: Path) -> Iterator[World]:
    db = make_engine(database_url or sqlite_url(tmp_path))
    try:
        migrate(db)
        sessions = session_factory(db)
        Repo(sessions).ensure_tenant("acme")
        clock = Clock(datetime(2026, 12, 10, 9, 0, tzinfo=UTC))
        review = ReviewService(sessions, ReviewConfig(), now=clock)
        samples = SampleService(sessions, MediaStore(tmp_path / "media"), review, now=clock)
        config = TrainingJobsConfig(lease_s=60, max_attempts=3)
        yield World(sessions, samples, TrainingRuns(sessions, config, now=clock), clock)
    finally:
        db.dispose()


def _new_run(world: World, spam: SpamSet, category: str = SPAM_LABEL) -> TrainingRun:
    return world.runs.create(
        "acme", category, embedding_model=spam.model, requested_by="cli:tests", overrides=FAST
    )


# ---- claims and leases (both databases) ------------------------------------------------------


@pytest.mark.models
def test_a_run_is_one_workers_and_a_dead_workers_run_is_taken_again(
    world: World, spam: SpamSet
) -> None:
    add_samples(world.samples, "acme", spam)
    run = _new_run(world, spam)
    assert (run.status, run.attempts, run.progress) == (QUEUED, 0, 0.0)

    # two workers at once: exactly one gets it
    got: dict[str, TrainingRun | None] = {}
    barrier = threading.Barrier(2)

    def claim(worker: str) -> None:
        barrier.wait()
        got[worker] = world.runs.claim(worker)

    threads = [threading.Thread(target=claim, args=(w,)) for w in ("w1", "w2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [w for w, r in got.items() if r is not None]
    assert len(winners) == 1, got
    first = winners[0]
    assert world.runs.claim("w3") is None  # held, heartbeat fresh
    assert world.runs.progress(run.id, first, 0.05, "baseline", started=True)
    assert world.runs.progress(run.id, first, 0.3, "training and cross-validation", started=True)
    assert world.runs.progress(run.id, first, 0.35, "training and cross-validation (fold 2)")
    held = world.runs.get("acme", run.id)
    assert held.progress == 0.35 and held.stage.endswith("(fold 2)")
    assert [(x["stage"], x["progress"]) for x in held.stages or []] == [
        ("baseline", 0.05),
        ("training and cross-validation", 0.3),
    ]
    world.clock.advance(50)
    assert world.runs.heartbeat(run.id, first)
    world.clock.advance(50)  # 50 s since the heartbeat: still within the lease
    assert world.runs.claim("w3") is None

    # the worker dies: no heartbeat for longer than the lease
    world.clock.advance(61)
    again = world.runs.claim("w3")
    assert again is not None and again.id == run.id
    assert (again.status, again.attempts, again.claimed_by, again.progress) == (
        RUNNING,
        2,
        "w3",
        0.0,
    )
    assert "attempt 2" in again.stage
    assert again.stages == []  # a new attempt starts its own list
    taken = got[first]
    assert taken is not None and again.started_at == taken.started_at  # first taken then
    # the dead worker's late writes are refused: the run is no longer its
    assert not world.runs.progress(run.id, first, 0.9, "evaluation")
    assert not world.runs.progress(run.id, first, 0.9, "evaluation", started=True)
    assert world.runs.get("acme", run.id).stages == []
    assert not world.runs.heartbeat(run.id, first)
    assert not world.runs.fail(run.id, "x", "late", worker=first)
    assert world.runs.get("acme", run.id).claimed_by == "w3"

    # a worker that stops hands it back without using up an attempt
    assert world.runs.release(run.id, "w3")
    back = world.runs.get("acme", run.id)
    assert (back.status, back.attempts, back.claimed_by) == (QUEUED, 1, None)

    # workers keep dying: after max_attempts claims the run is failed, never dropped
    for attempt in (2, 3):
        taken = world.runs.claim(f"w{attempt + 2}")
        assert taken is not None and taken.attempts == attempt
        world.clock.advance(61)
    assert world.runs.claim("w9") is None
    failed = world.runs.get("acme", run.id)
    assert (failed.status, failed.error_code) == (FAILED, "attempts_exhausted")
    assert failed.finished_at is not None and "3 times" in (failed.error_message or "")


# ---- registering once per run (both databases) ------------------------------------------------
LABELS_ONLY = "name: default\nanalyzers: [labels]\n"
"""A tenant's default policy on the ``labels`` model alone (a quick baseline)."""


@pytest.mark.models
async def test_a_run_taken_again_after_it_registered_reuses_its_version(
    world: World, spam: SpamSet, moderation: Moderation, tmp_path: Path
) -> None:
    await asyncio.to_thread(add_samples, world.samples, "acme", spam)
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "default.yaml").write_text(LABELS_ONLY)
    registry = await asyncio.to_thread(ModelRegistry, RegistryConfig(), tmp_path / "registry")
    parts = WorkParts(
        settings=make_settings(tmp_path / "data"),
        runs=world.runs,
        samples=world.samples,
        moderation=moderation,
        policies=PolicyBook(None, tmp_path / "policies"),
        registry=registry,
    )
    run = await asyncio.to_thread(_new_run, world, spam)
    first = await asyncio.to_thread(world.runs.claim, "w1")
    assert first is not None and first.id == run.id

    # the first worker registers the head, then dies before recording the outcome: its
    # lease runs out and another worker takes the run
    taken: list[TrainingRun | None] = []
    stages: list[str] = []

    def dies_after_registering(words: str, fraction: float) -> None:
        stages.append(words)
        if words.startswith("registering (version") and not taken:
            world.clock.advance(61)
            taken.append(world.runs.claim("w2"))

    with pytest.raises(TrainingRunLost):
        await run_training(parts, first, "w1", listener=dies_after_registering)
    assert any(s.startswith("training") for s in stages), stages
    (again,) = taken
    assert again is not None and (again.id, again.attempts) == (run.id, 2)
    (version,) = await asyncio.to_thread(registry.versions, "acme", SPAM_LABEL)
    assert version.tags[TRAINING_RUN_TAG] == run.id and version.aliases == ("challenger",)
    found = await asyncio.to_thread(registry.version_for_run, "acme", SPAM_LABEL, run.id)
    assert found is not None and found.version == version.version
    assert await asyncio.to_thread(registry.version_for_run, "acme", SPAM_LABEL, "trn_x") is None
    logged = await asyncio.to_thread(registry.report, "acme", SPAM_LABEL, version.version)
    assert logged is not None and logged["run_id"] == run.id

    # taken again, the run records the version its first attempt registered, with the
    # report and metrics logged with it: nothing trained or registered again
    stages.clear()
    done = await run_training(parts, again, "w2", listener=lambda words, _: stages.append(words))
    assert (done.status, done.attempts, done.model_version) == (SUCCEEDED, 2, version.version)
    assert not any(s.startswith("training") for s in stages), stages
    assert "registered earlier" in " | ".join(stages)
    assert len(await asyncio.to_thread(registry.versions, "acme", SPAM_LABEL)) == 1
    assert done.held_out_ids == logged["held_out_ids"]
    assert done.report is not None
    assert done.report["registered"] == {
        "model": version.name,
        "version": version.version,
        "alias": "challenger",
    }
    assert done.report["evaluation"] == logged["evaluation"]
    assert done.metrics is not None
    assert done.metrics["held_out_f1"] == pytest.approx(version.metrics["held_out_f1"])
    assert done.baseline_coverage == pytest.approx(logged["baseline"]["coverage"])
    assert await asyncio.to_thread(registry.alias_version, "acme", SPAM_LABEL, "challenger") == (
        version.version
    )


# ---- the child process: failures with stable codes ------------------------------------------


@pytest.mark.models
async def test_a_child_that_crashes_or_overruns_fails_its_run_with_a_stable_code(
    world: World, spam: SpamSet, tmp_path: Path
) -> None:
    await asyncio.to_thread(add_samples, world.samples, "acme", spam)
    settings = make_settings(tmp_path / "data", training={"max_seconds": 1.5, "lease_s": 3})
    crash = [
        sys.executable,
        "-c",
        "import sys; print('out of memory', file=sys.stderr); sys.exit(9)",
    ]
    run = await asyncio.to_thread(_new_run, world, spam)
    assert await TrainingRunner(world.runs, settings, command=crash).run_once()
    failed = await asyncio.to_thread(world.runs.get, "acme", run.id)
    assert (failed.status, failed.error_code) == (FAILED, "training_process_failed")
    assert "exit status 9" in (failed.error_message or "")
    assert "out of memory" in (failed.error_message or "")

    stuck = [sys.executable, "-c", "import time; time.sleep(60)"]
    run = await asyncio.to_thread(_new_run, world, spam)
    started = time.monotonic()
    assert await TrainingRunner(world.runs, settings, command=stuck).run_once()
    assert time.monotonic() - started < 15
    failed = await asyncio.to_thread(world.runs.get, "acme", run.id)
    assert (failed.status, failed.error_code) == (FAILED, "training_timed_out")

    # a worker that stops puts its run back in the queue (and stops the child)
    slow = TrainingRunner(
        world.runs, make_settings(tmp_path / "d2", training={"lease_s": 3}), command=stuck
    )
    run = await asyncio.to_thread(_new_run, world, spam)
    stop = asyncio.Event()
    task = asyncio.create_task(slow.run_forever(stop))
    for _ in range(100):
        if (await asyncio.to_thread(world.runs.get, "acme", run.id)).status == RUNNING:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 20)
    back = await asyncio.to_thread(world.runs.get, "acme", run.id)
    assert (back.status, back.attempts, back.claimed_by) == (QUEUED, 0, None)
    assert await asyncio.to_thread(world.runs.claim, "next") is not None


# ---- the API: refusals and tenants ----------------------------------------------------------


@pytest.mark.models
async def test_the_api_queues_refuses_and_keeps_runs_to_their_tenant(
    engine: Engine, spam: SpamSet, tmp_path: Path
) -> None:
    # no worker in this app: runs stay queued
    settings = make_settings(tmp_path / "data", jobs={"run_worker": False})
    async with running(settings, engine) as api:
        c = api.client
        owner, stranger, poor = (
            await api.new_tenant(),
            await api.new_tenant(),
            await api.new_tenant(),
        )
        reader = await api.reader(owner.headers)
        await asyncio.to_thread(add_samples, api.services.samples, owner.id, spam)
        await asyncio.to_thread(add_samples, api.services.samples, poor.id, spam, spam.images[:8])

        body = {
            "category": SPAM_LABEL,
            "filters": {"source": "import", "since": "2025-01-01T00:00:00Z"},
            "config": FAST,
        }
        r = await c.post("/v1/training/runs", json=body, headers=reader)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "insufficient_scope")
        r = await c.post("/v1/training/runs", json=body, headers=owner.headers)
        assert r.status_code == 202, r.text
        run = r.json()
        assert run["id"].startswith("trn_") and run["status"] == "queued"
        assert (run["progress"], run["attempts"], run["registered"], run["error"]) == (
            0.0,
            0,
            None,
            None,
        )
        assert run["config"] == FAST and run["filters"]["source"] == "import"
        assert run["embedding_model"] == str(spam.model)

        # one run of a category at a time
        r = await c.post("/v1/training/runs", json=body, headers=owner.headers)
        assert (r.status_code, r.json()["error"]["code"]) == (409, "training_run_active")
        refusals = [
            ({"category": "Dragons"}, 422, "unknown_label"),
            ({"category": "Weapons", "config": {"cv_folds": 1}}, 422, "invalid_training_config"),
            (
                {"category": "Weapons", "config": {"learning_rate": 1}},
                422,
                "invalid_training_config",
            ),
            (
                {"category": "Weapons", "filters": {"since": "2026-02-01", "until": "2026-01-01"}},
                422,
                "invalid_training_filters",
            ),
            ({"category": "Weapons", "filters": {"source": "scraped"}}, 422, None),
            # nothing is labelled Weapons: no positives at all
            ({"category": "Weapons"}, 422, "too_few_samples"),
        ]
        for refused, status, code in refusals:
            r = await c.post("/v1/training/runs", json=refused, headers=owner.headers)
            assert r.status_code == status, (refused, r.text)
            if code is not None:
                assert r.json()["error"]["code"] == code, (refused, r.text)
        r = await c.post("/v1/training/runs", json={"category": SPAM_LABEL}, headers=poor.headers)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "too_few_samples")
        details = r.json()["error"]["details"]
        assert (details["positive"], details["negative"]) == (4, 4)
        assert details["need_positive"] == 12 and details["need_negative"] == 12

        r = await c.post(
            "/v1/training/runs",
            json={"category": "Illegal Ads", "config": FAST},
            headers=owner.headers,
        )
        assert r.status_code == 202, r.text
        second = r.json()
        r = await c.get("/v1/training/runs", headers=reader)
        assert r.status_code == 200, r.text
        assert [x["id"] for x in r.json()["runs"]] == [second["id"], run["id"]]
        page = (await c.get("/v1/training/runs", params={"limit": 1}, headers=reader)).json()
        rest = await c.get(
            "/v1/training/runs", params={"limit": 1, "cursor": page["next_cursor"]}, headers=reader
        )
        assert [x["id"] for x in page["runs"] + rest.json()["runs"]] == [second["id"], run["id"]]
        r = await c.get("/v1/training/runs", params={"category": SPAM_LABEL}, headers=reader)
        assert [x["id"] for x in r.json()["runs"]] == [run["id"]]
        r = await c.get("/v1/training/runs", params={"status": "succeeded"}, headers=reader)
        assert r.json()["runs"] == []
        r = await c.get(f"/v1/training/runs/{run['id']}", headers=reader)
        assert r.status_code == 200 and r.json() == run
        r = await c.get(f"/v1/training/runs/{run['id']}/report", headers=reader)
        assert (r.status_code, r.json()["error"]["code"]) == (409, "training_report_not_ready")

        # another tenant: never listed, not found
        assert (await c.get("/v1/training/runs", headers=stranger.headers)).json()["runs"] == []
        for path in (f"/v1/training/runs/{run['id']}", f"/v1/training/runs/{run['id']}/report"):
            r = await c.get(path, headers=stranger.headers)
            assert (r.status_code, r.json()["error"]["code"]) == (404, "training_run_not_found")

        doc = (await c.get("/openapi.json")).json()
        assert {"get", "post"} <= set(doc["paths"]["/v1/training/runs"])
        schemas = doc["components"]["schemas"]
        body_schema = doc["paths"]["/v1/training/runs"]["post"]["requestBody"]["content"][
            "application/json"
        ]["schema"]
        documented = {
            name: schemas[name]
            for name in ("TrainingRunOut", "TrainingRunList", "TrainingError", "RegisteredHead")
        }
        documented |= {"TrainingRunIn": body_schema, **body_schema["$defs"]}
        for name, schema in documented.items():
            undescribed = [n for n, f in schema["properties"].items() if not f.get("description")]
            assert not undescribed, (name, undescribed)


# ---- a whole run in the worker's child process ------------------------------------------------


@pytest.mark.models
@pytest.mark.slow
async def test_a_run_goes_from_queued_to_a_registered_challenger_in_a_child_process(
    engine: Engine, spam: SpamSet, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path / "data", training={"poll_s": 0.2, "lease_s": 6})
    async with running(settings, engine) as api:
        c = api.client
        owner, stranger = await api.new_tenant(), await api.new_tenant()
        reader = await api.reader(owner.headers)
        samples = api.services.samples
        ids = await asyncio.to_thread(add_samples, samples, owner.id, spam)
        by_time = sorted(zip(spam.images, ids, strict=True), key=lambda p: p[0].taken_at)
        # among the newest (held out): one whose media is gone, whose models' labels stand
        # in for the baseline, and one with neither
        (gone_image, gone), (_, bare) = by_time[-1], by_time[-2]
        with api.services.db_sessions.begin() as s:
            row = s.get(Sample, gone)
            assert row is not None and row.media_sha256 is not None
            sha = row.media_sha256
            s.execute(
                update(Sample)
                .where(Sample.id == gone)
                .values(model_labels=[SPAM_LABEL] if gone_image.spam else [])
            )
            s.execute(
                update(Sample)
                .where(Sample.id == bare)
                .values(media_sha256=None, media_kind=None, model_labels=None)
            )
        samples.media.path(sha).unlink()

        r = await c.post(
            "/v1/training/runs",
            json={"category": SPAM_LABEL, "config": FAST},
            headers=owner.headers,
        )
        assert r.status_code == 202, r.text
        run = r.json()
        seen = await follow_run(c, run["id"], reader)
        done = seen[-1]
        assert done["status"] == SUCCEEDED, done
        statuses = [x["status"] for x in seen]
        assert statuses[0] == QUEUED and RUNNING in statuses
        running_progress = [x["progress"] for x in seen if x["status"] == RUNNING]
        assert any(0 < p < 1 for p in running_progress), seen
        assert running_progress == sorted(running_progress)
        stages = " | ".join(x["stage"] for x in seen)
        assert "baseline" in stages or "training" in stages, stages
        assert (done["progress"], done["stage"], done["attempts"]) == (1.0, SUCCEEDED, 1)
        registered = done["registered"]
        assert registered["alias"] == "challenger" and registered["version"] == 1

        registry = api.services.heads.registry
        (version,) = await asyncio.to_thread(registry.versions, owner.id, SPAM_LABEL)
        assert version.version == 1 and "challenger" in version.aliases

        r = await c.get(done["report_url"], headers=reader)
        assert r.status_code == 200, r.text
        report = r.json()
        held = report["held_out_ids"]
        evaluation = report["evaluation"]
        assert len(held) == evaluation["held_out"]["positive"] + evaluation["held_out"]["negative"]
        assert len(held) == report["samples"]["held_out"] == math.ceil(0.2 * len(ids))
        # the held-out samples are the newest
        assert set(held) == {i for _, i in by_time[-len(held) :]}
        baseline = report["baseline"]
        assert (baseline["from_model_labels"], baseline["unknown"]) == (1, 1)
        assert baseline["from_media"] == len(held) - 2
        assert baseline["coverage"] == pytest.approx((len(held) - 1) / len(held))
        assert done["baseline_coverage"] == pytest.approx(baseline["coverage"])
        for side in ("head", "baseline"):
            assert {"precision", "recall", "f1"} <= set(evaluation[side])
        # the base models emit no contact-information label: only the stand-in can count
        assert evaluation["baseline"]["recall"] <= 1 / evaluation["held_out"]["positive"]
        assert evaluation["head"]["f1"] > evaluation["baseline"]["f1"]
        assert done["metrics"]["held_out_f1"] == pytest.approx(evaluation["head"]["f1"])
        assert done["metrics"]["baseline_f1"] == pytest.approx(evaluation["baseline"]["f1"])
        assert report["registered"] == {
            "model": registered["model"],
            "version": 1,
            "alias": "challenger",
        }

        # another tenant sees none of it
        r = await c.get(f"/v1/training/runs/{run['id']}", headers=stranger.headers)
        assert r.status_code == 404
        assert (await c.get("/v1/training/runs", headers=stranger.headers)).json()["runs"] == []

        # a run whose worker died (its heartbeat older than the lease) is taken again
        runs = api.services.training_runs
        dead = await asyncio.to_thread(
            lambda: runs.create(
                owner.id,
                "Illegal Ads",
                embedding_model=spam.model,
                requested_by="cli:tests",
                overrides=FAST,
                claimed_by="a-worker-that-died",
            )
        )
        with api.services.db_sessions.begin() as s:
            s.execute(
                update(TrainingRun)
                .where(TrainingRun.id == dead.id)
                .values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=5), progress=0.4)
            )
        seen = await follow_run(c, dead.id, reader)
        assert seen[-1]["status"] == SUCCEEDED, seen[-1]
        assert seen[-1]["attempts"] == 2 and seen[-1]["registered"]["version"] == 1


# ---- the command line ---------------------------------------------------------------------------


def _prepare(settings: Settings, engine: Engine, spam: SpamSet) -> None:
    async def main() -> None:
        parts = await build_components(settings, Roles(), engine=engine)
        try:
            await asyncio.to_thread(add_samples, parts.samples, "default", spam)
        finally:
            await parts.aclose()

    asyncio.run(main())


@pytest.mark.models
@pytest.mark.slow
def test_the_train_command_runs_a_run_in_its_own_process(
    engine: Engine, spam: SpamSet, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    _prepare(make_settings(data), engine, spam)
    env = {"BASTION_DATA_DIR": str(data), "COLUMNS": "200"}
    fast = [f"--set={k}={v}" for k, v in FAST.items()]

    res = runner.invoke(
        cli,
        ["train", "--tenant", "default", "--category", "Illegal Ads", "--queue", "--json", *fast],
        env=env,
    )
    assert res.exit_code == 0, res.output
    queued = json.loads(res.stdout)
    assert queued["status"] == QUEUED and queued["version"] is None
    queued_id = queued["id"]
    res = runner.invoke(
        cli,
        ["train", "--tenant", "default", "--category", "Weapons", "--queue", "--json"],
        env=env,
    )
    assert res.exit_code == 2 and "too_few_samples" in res.output, res.output
    res = runner.invoke(
        cli,
        ["train", "--tenant", "default", "--category", "Illegal Ads", "--json", *fast],
        env=env,
    )
    assert res.exit_code == 2 and "training_run_active" in res.output, res.output
    res = runner.invoke(
        cli,
        ["train", "--tenant", "default", "--category", SPAM_LABEL, "--set", "cv_folds=1"],
        env=env,
    )
    assert res.exit_code == 2 and "invalid_training_config" in res.output, res.output

    res = runner.invoke(
        cli,
        ["train", "--tenant", "default", "--category", SPAM_LABEL, "--source", "import", *fast],
        env=env,
    )
    assert res.exit_code == 0, res.output
    assert "the head against base policy 'default'" in res.stdout
    assert "head − baseline" in res.stdout and "precision" in res.stdout
    assert "version 1 as the challenger" in res.stdout
    db = make_engine(sqlite_url(data))
    try:
        runs = TrainingRuns(session_factory(db), TrainingJobsConfig())
        listed = runs.list_runs("default").runs
        assert [r.status for r in listed] == [SUCCEEDED, QUEUED]
        assert listed[1].id == queued_id and listed[1].requested_by.startswith("cli:")
        first = listed[0]
        assert first.attempts == 1 and first.model_version == 1
        assert first.report is not None and first.held_out_ids == first.report["held_out_ids"]
        assert first.metrics is not None and first.metrics["held_out_f1"] > 0
    finally:
        db.dispose()
