"""The model registry and training runs in the portal: everyone signed in sees the
built-in models, the tenant's heads with their versions, aliases, scores and shadow
counts, the audit log and the training runs with their reports; only admins promote,
force (with a reason), roll back, move the challenger, set the high-severity categories
and start runs. Refused promotions show their figures on the page; what people typed is
shown as text; another tenant's heads and runs are not found. Over HTTP in process, and
the pages once in a real browser (no Content-Security-Policy violation, no script error).

Heads are trained in a moment on synthetic embeddings stored as the tenant's real
samples and logged to the app's real local registry (:mod:`tests.support.heads`).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from markupsafe import escape
from playwright.async_api import ConsoleMessage, Dialog

from bastion.analyzers.tenant_head import TenantHeadAnalyzer
from bastion.config import DEFAULT_ANALYZERS, Settings
from bastion.jobs.config import JobsConfig
from bastion.registry.shadow import ShadowKey
from bastion.training.config import TrainingConfig
from bastion.training.evaluate import evaluate
from bastion.training.runs import RunOutcome, kept_embedding_model
from bastion.training.tables import QUEUED, SUCCEEDED, TrainingRun
from tests.support.app import Api, Tenant, running
from tests.support.browser import portal, portal_settings
from tests.support.heads import Split, fit_head, log_version, make_samples, random_direction
from tests.support.people import SignedIn, sign_in
from tests.support.settings import make_settings

CATEGORY, SLUG = "Drugs & Tobacco", "drugs-tobacco"
HOSTILE = "<script>alert(1)</script>"


def settings_in(folder: Path) -> Settings:
    """No models loaded (the pages need none; the heads' analyzer is configured so its
    shadow counts exist), runs left queued (no worker in the app), cookies over plain
    HTTP and room for many sign-ins from one address."""
    settings = portal_settings(
        make_settings(
            folder,
            preload=False,
            analyzers=[*DEFAULT_ANALYZERS, "tenant_head"],
            jobs=JobsConfig(run_worker=False),
        )
    )
    accounts = settings.accounts.model_copy(update={"attempts_per_minute_per_ip": 10_000})
    return settings.model_copy(update={"accounts": accounts})


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with running(settings_in(tmp_path_factory.mktemp("portal-models"))) as started:
        yield started


@asynccontextmanager
async def person(api: Api, role: str, tenant: str) -> AsyncIterator[SignedIn]:
    who = await sign_in(api, role, tenant)
    try:
        yield who
    finally:
        await who.client.aclose()


@dataclass
class Heads:
    """A tenant with samples of :data:`CATEGORY` and three versions of its head."""

    tenant: Tenant
    split: Split
    weak: int
    good: int
    worse: int


async def with_heads(api: Api, seed: int = 5) -> Heads:
    """A new tenant with samples in the embedding runs train on and three versions: a
    weak head, a good one and a worse one."""
    tenant = await api.new_tenant()
    model = kept_embedding_model(api.services.engine, api.settings.samples.embedding_analyzer)
    split = await asyncio.to_thread(
        make_samples,
        api.services.samples,
        tenant.id,
        CATEGORY,
        random_direction(seed),
        seed=seed,
        embedding=model,
    )
    registry = api.services.heads.registry
    versions = []
    for recall in (0.6, 1.0, 0.3):
        onnx = fit_head(split, recall=recall, embedding=model)
        logged = await asyncio.to_thread(log_version, registry, tenant.id, split, onnx)
        versions.append(logged.version)
    return Heads(tenant, split, *versions)


def escaped(text: str) -> str:
    """``text`` as the templates print it."""
    return str(escape(text))


def error_code(page: str) -> str | None:
    found = re.search(r'class="error" role="alert" data-code="([a-z_]+)"', page)
    return found.group(1) if found else None


def aliases(page: str) -> tuple[str, str | None]:
    """The champion's and the challenger's versions the category's page shows."""
    champion = re.search(r'id="champion" data-version="(\d*)"', page)
    challenger = re.search(r'id="challenger" data-version="(\d+)"', page)
    assert champion is not None
    return champion.group(1), challenger.group(1) if challenger else None


def side_f1(page: str, side: str) -> float:
    """The F1 a figures table shows for ``side`` (candidate, reference, head, baseline)."""
    found = re.search(rf'<tr data-side="{side}">.*?<td class="num f1">([0-9.]+)</td>', page, re.S)
    assert found is not None, side
    return float(found.group(1))


async def post(who: SignedIn, path: str, **data: str) -> Any:
    return await who.client.post(path, data={**data, "csrf_token": who.csrf})


async def finished_run(api: Api, heads: Heads, user_id: str) -> TrainingRun:
    """A succeeded run of the tenant's head, finished through the runs service as a
    worker finishes one: the good head's held-out evaluation against a baseline that
    flags every other positive, and the version it registered."""
    runs = api.services.training_runs
    model = kept_embedding_model(api.services.engine, api.settings.samples.embedding_analyzer)
    token = f"worker-{heads.tenant.id}"
    run = await asyncio.to_thread(
        lambda: runs.create(
            heads.tenant.id,
            CATEGORY,
            embedding_model=model,
            requested_by=f"user:{user_id}",
            claimed_by=token,
        )
    )
    split = heads.split
    y = split.held_out_y
    direction = split.train_x[split.train_y == 1].mean(axis=0)
    scores = split.held_out_x @ direction
    cut = np.quantile(scores[y == 1], 0.2)  # misses the weakest fifth of the positives
    probabilities = 1 / (1 + np.exp(-40 * (scores - cut)))
    baseline = y * (np.cumsum(y) % 2)  # every other positive, no false positive
    report = evaluate(
        y,
        probabilities,
        baseline,
        threshold=0.5,
        category=CATEGORY,
        config=TrainingConfig(bootstrap_resamples=200),
        baseline_name="base policy 'default'",
    )
    metrics: dict[str, float | None] = {
        "held_out_f1": report.head.f1,
        "held_out_precision": report.head.precision,
        "held_out_recall": report.head.recall,
        "baseline_f1": report.baseline.f1,
    }
    name = api.services.heads.registry.model_name(heads.tenant.id, CATEGORY)
    body = {
        "run_id": run.id,
        "category": CATEGORY,
        "samples": {"total": 140, "positive": 70, "negative": 70, "train": 60, "held_out": 80},
        "held_out_ids": split.held_out_ids,
        "baseline": {"name": report.baseline_name, "coverage": 1.0},
        "evaluation": report.model_dump(mode="json"),
        "registered": {"model": name, "version": heads.good, "alias": "challenger"},
    }
    outcome = RunOutcome(name, heads.good, metrics, body, split.held_out_ids, 1.0)
    assert await asyncio.to_thread(runs.succeed, run.id, token, outcome)
    return await asyncio.to_thread(runs.get, heads.tenant.id, run.id)


# ---- looking ---------------------------------------------------------------------------
async def test_viewers_see_heads_runs_and_shadow_counts_but_no_actions(api: Api) -> None:
    heads = await with_heads(api)
    t = heads.tenant.id
    promotions = api.services.promotions
    await asyncio.to_thread(lambda: promotions.set_challenger(t, CATEGORY, heads.good, by="cli:t"))
    # what the heads' analyzer counts while it scores the challenger in shadow
    (analyzer,) = [
        a for a in api.services.engine.analyzers.values() if isinstance(a, TenantHeadAnalyzer)
    ]
    analyzer.shadow.add(ShadowKey(t, CATEGORY, "none", f"v{heads.good}"), 40, 7, 2)
    analyzer.shadow.add(ShadowKey(t, CATEGORY, "none", f"v{heads.weak}"), 9, 9, 9)  # earlier

    async with person(api, "viewer", t) as viewer:
        r = await viewer.client.get("/portal/models")
        assert r.status_code == 200, r.text
        page = r.text
        assert 'data-nav="models"' in page and 'data-nav="training"' in page
        assert f'data-slug="{SLUG}"' in page and escaped(CATEGORY) in page
        assert 'data-alias="challenger"' in page and 'data-alias="champion"' not in page
        for v in (heads.weak, heads.good, heads.worse):
            assert f'<tr data-version="{v}">' in page
        assert "0.391" in page  # the recorded baseline F1 (precision 0.9, recall 0.25)
        assert 'data-analyzer="labels"' in page and 'data-analyzer="tenant_head"' not in page
        assert 'data-kind="challenger-only">7<' in page and 'data-kind="champion-only">2<' in page
        assert 'data-kind="challenger-only">9<' not in page  # an earlier challenger's
        assert 'id="no-events"' not in page and 'data-action="set_challenger"' in page
        assert "<form" not in page.split("</header>")[1]  # no forms beyond signing out

        r = await viewer.client.get(f"/portal/models/{SLUG}")
        assert r.status_code == 200, r.text
        assert aliases(r.text) == ("", str(heads.good))
        assert 'hx-get="/portal/models/drugs-tobacco/checks" hx-trigger="load"' in r.text
        for marker in ('id="promote"', 'id="force-form"', 'id="rollback-form"', "make-challenger"):
            assert marker not in r.text, marker
        assert "<form" not in r.text.split("</header>")[1]
        # the label itself, as the API accepts it, names the category too
        r = await viewer.client.get("/portal/models/Drugs%20%26%20Tobacco")
        assert r.status_code == 200 and f'data-version="{heads.good}"' in r.text

        r = await viewer.client.get(f"/portal/models/{SLUG}/checks")
        assert r.status_code == 200 and 'data-passed="yes"' in r.text
        assert side_f1(r.text, "candidate") > 0.95 and side_f1(r.text, "reference") < 0.4
        r = await viewer.client.get(f"/portal/models/{SLUG}/checks?version={heads.worse}")
        assert r.status_code == 200 and f'data-candidate="{heads.worse}"' in r.text

        r = await viewer.client.get("/portal/training")
        assert r.status_code == 200 and 'id="no-runs"' in r.text and 'id="new-run"' not in r.text

        for path, data in [
            (f"/portal/models/{SLUG}/promote", {}),
            (f"/portal/models/{SLUG}/rollback", {"reason": "x"}),
            (f"/portal/models/{SLUG}/challenger", {"version": str(heads.weak)}),
            (f"/portal/models/{SLUG}/challenger/clear", {}),
            ("/portal/models/settings", {"high_severity": CATEGORY}),
            ("/portal/training", {"category": CATEGORY}),
        ]:
            r = await post(viewer, path, **data)
            assert r.status_code == 403 and error_code(r.text) == "role_forbidden", path
    assert promotions.registry.alias_version(t, CATEGORY, "challenger") == heads.good
    assert promotions.severity(t).high_severity == []


# ---- acting ----------------------------------------------------------------------------
async def test_an_admin_promotes_is_refused_with_figures_forces_and_rolls_back(
    api: Api,
) -> None:
    heads = await with_heads(api, seed=6)
    t = heads.tenant.id
    base = f"/portal/models/{SLUG}"
    async with person(api, "admin", t) as admin:
        r = await admin.client.post(f"{base}/challenger", data={"version": str(heads.weak)})
        assert r.status_code == 403 and error_code(r.text) == "csrf_failed"

        r = await post(admin, f"{base}/challenger", version=str(heads.weak))
        assert (r.status_code, r.headers["location"]) == (303, f"{base}?done=challenger")
        r = await post(admin, f"{base}/promote", op="promote")
        assert (r.status_code, r.headers["location"]) == (303, f"{base}?done=promoted")
        r = await admin.client.get(r.headers["location"])
        assert 'id="notice"' in r.text and aliases(r.text) == (str(heads.weak), None)
        assert 'id="promote"' not in r.text  # no challenger left to promote
        await post(admin, f"{base}/challenger", version=str(heads.good))
        r = await post(admin, f"{base}/promote", op="promote")
        assert r.status_code == 303

        # a worse head is refused, with its figures on the page
        await post(admin, f"{base}/challenger", version=str(heads.worse))
        r = await post(admin, f"{base}/promote", op="promote")
        assert r.status_code == 409 and error_code(r.text) == "promotion_refused"
        refusal = r.text.split('id="refusal"')[1].split("</section>")[0]
        assert 'data-verdict="refuse"' in refusal and 'data-reason="not_better"' in refusal
        assert side_f1(refusal, "candidate") < side_f1(refusal, "reference")
        assert f"v{heads.worse}" in refusal and "80 evaluated of 80 frozen" in refusal
        assert aliases(r.text) == (str(heads.good), str(heads.worse))

        # forcing needs a reason; with one it is done, and the reason is shown as text
        r = await post(admin, f"{base}/promote", op="force", force="1", reason=" ")
        assert r.status_code == 422 and error_code(r.text) == "reason_required"
        r = await post(admin, f"{base}/promote", op="force", force="1", reason="x" * 501)
        assert r.status_code == 422 and error_code(r.text) == "reason_too_long"
        assert "x" * 501 in r.text  # what was typed stays in the form
        r = await post(admin, f"{base}/promote", op="force", force="1", reason=HOSTILE)
        assert (r.status_code, r.headers["location"]) == (303, f"{base}?done=forced")
        r = await admin.client.get(r.headers["location"])
        assert aliases(r.text) == (str(heads.worse), None)
        assert HOSTILE not in r.text and escaped(HOSTILE) in r.text

        # rolling back needs a reason too, and goes back to the champion before
        r = await post(admin, f"{base}/rollback", op="rollback", reason="")
        assert r.status_code == 422 and error_code(r.text) == "reason_required"
        r = await post(admin, f"{base}/rollback", op="rollback", reason="complaints")
        assert (r.status_code, r.headers["location"]) == (303, f"{base}?done=rolled_back")
        r = await admin.client.get(r.headers["location"])
        assert aliases(r.text) == (str(heads.good), None)
        r = await post(admin, f"{base}/rollback", op="rollback", version="x", reason="why")
        assert r.status_code == 422 and error_code(r.text) == "invalid_request"

        # challengers: the champion cannot be one; another version can, and be cleared
        r = await post(admin, f"{base}/challenger", version=str(heads.good))
        assert r.status_code == 409 and error_code(r.text) == "already_champion"
        await post(admin, f"{base}/challenger", version=str(heads.weak))
        r = await post(admin, f"{base}/challenger/clear")
        assert (r.status_code, r.headers["location"]) == (303, f"{base}?done=cleared")
        r = await post(admin, f"{base}/challenger/clear")
        assert r.status_code == 409 and error_code(r.text) == "no_challenger"

        # high-severity categories
        r = await admin.client.post(
            "/portal/models/settings",
            data={"high_severity": [CATEGORY, "Weapons"], "csrf_token": admin.csrf},
        )
        assert (r.status_code, r.headers["location"]) == (303, "/portal/models?done=severity")
        assert set(api.services.promotions.severity(t).high_severity) == {CATEGORY, "Weapons"}
        r = await post(admin, "/portal/models/settings", high_severity=HOSTILE)
        assert r.status_code == 422 and error_code(r.text) == "unknown_label"
        assert HOSTILE not in r.text

        # the audit log, newest first, on both pages
        r = await admin.client.get("/portal/models")
        assert 'value="Weapons" checked' in r.text and 'id="severity-form"' in r.text
        rows = re.findall(
            r'<tr data-event="mev_[0-9a-f]+" data-action="([a-z_]+)" data-outcome="([a-z]+)"'
            r'( data-forced="yes")?',
            r.text,
        )
        assert rows[:6] == [
            ("clear_challenger", "applied", ""),
            ("set_challenger", "applied", ""),
            ("rollback", "applied", ""),
            ("promote", "applied", ' data-forced="yes"'),
            ("promote", "refused", ""),
            ("set_challenger", "applied", ""),
        ]
        assert HOSTILE not in r.text and escaped(HOSTILE) in r.text
        assert f'title="user:{admin.user_id}">{admin.username}<' in r.text
        assert r.text.count('<span class="badge warn">high severity</span>') == 1  # the head's
        r = await admin.client.get(base)
        assert r.text.count("data-event=") == len(rows)
        assert '<span class="badge warn">high severity</span>' in r.text


async def test_another_tenants_heads_and_runs_are_not_found(api: Api) -> None:
    heads = await with_heads(api, seed=7)
    stranger = await api.new_tenant()
    run = await finished_run(api, heads, "usr_0")
    async with person(api, "admin", stranger.id) as admin:
        r = await admin.client.get("/portal/models")
        assert r.status_code == 200 and 'id="no-heads"' in r.text and SLUG not in r.text
        r = await admin.client.get(f"/portal/models/{SLUG}")
        assert r.status_code == 404 and error_code(r.text) == "head_not_found"
        r = await admin.client.get(f"/portal/models/{SLUG}/checks")
        assert r.status_code == 404
        for path, data in [
            ("promote", {"version": str(heads.worse), "force": "1", "reason": "mine now"}),
            ("rollback", {"version": str(heads.weak), "reason": "mine now"}),
            ("challenger", {"version": str(heads.weak)}),
        ]:
            r = await post(admin, f"/portal/models/{SLUG}/{path}", **data)
            assert r.status_code == 404 and error_code(r.text) == "head_not_found", path
        r = await admin.client.get("/portal/training")
        assert run.id not in r.text and 'id="no-runs"' in r.text
        for suffix in ("", "/row", "/status", "/report.json"):
            r = await admin.client.get(f"/portal/training/{run.id}{suffix}")
            assert r.status_code == 404, suffix
            assert error_code(r.text) == "training_run_not_found"
    registry = api.services.promotions.registry
    assert registry.alias_version(heads.tenant.id, CATEGORY, "champion") is None
    assert registry.alias_version(heads.tenant.id, CATEGORY, "challenger") is None


# ---- training --------------------------------------------------------------------------
async def test_an_admin_starts_a_run_from_the_form(api: Api) -> None:
    heads = await with_heads(api, seed=8)
    t = heads.tenant.id
    runs = api.services.training_runs
    async with person(api, "admin", t) as admin:
        r = await admin.client.get("/portal/training")
        assert r.status_code == 200 and 'id="new-run"' in r.text
        assert '<datalist id="taxonomy-names">' in r.text and 'value="Knives and Blades"' in r.text

        for data, status, code in [
            ({"category": HOSTILE}, 422, "unknown_label"),
            ({"category": "Knives and Blades"}, 422, "too_few_samples"),
            ({"category": CATEGORY, "since": "2026-07-01T00:00", "until": "2026-06-01"}, 422,
             "invalid_training_filters"),
            ({"category": CATEGORY, "since": "yesterday"}, 422, "invalid_training_filters"),
            ({"category": CATEGORY, "source": "rumour"}, 422, "invalid_training_filters"),
        ]:  # fmt: skip
            r = await post(admin, "/portal/training", **data)
            assert r.status_code == status and error_code(r.text) == code, (data, r.text[:300])
            assert HOSTILE not in r.text
        r = await post(admin, "/portal/training", category=HOSTILE)
        assert f'value="{escaped(HOSTILE)}"' in r.text  # kept in the form, as text
        assert (await asyncio.to_thread(runs.list_runs, t)).runs == []

        r = await post(
            admin,
            "/portal/training",
            category=CATEGORY,
            source="import",
            since="2026-05-01T00:00",
            corrected_only="",
        )
        assert r.status_code == 303, r.text
        found = re.fullmatch(
            r"/portal/training/(trn_[0-9a-f]+)\?done=queued", r.headers["location"]
        )
        assert found is not None
        run = await asyncio.to_thread(runs.get, t, found.group(1))
        assert (run.status, run.category, run.requested_by) == (
            QUEUED,
            CATEGORY,
            f"user:{admin.user_id}",
        )
        assert run.filters == {
            "source": "import",
            "since": "2026-05-01T00:00:00+00:00",
            "until": None,
            "corrected_only": False,
        }
        r = await post(admin, "/portal/training", category=CATEGORY)
        assert r.status_code == 409 and error_code(r.text) == "training_run_active"

        # the list shows it, asking for its progress while it waits
        r = await admin.client.get("/portal/training")
        row = re.search(rf'<tr id="run-{run.id}".*?</tr>', r.text, re.S)
        assert row is not None and 'data-status="queued"' in row.group(0)
        assert f'hx-get="/portal/training/{run.id}/row" hx-trigger="every 2s"' in row.group(0)
        assert f">{admin.username}<" in row.group(0) and "<progress" in row.group(0)
        r = await admin.client.get(f"/portal/training/{run.id}/row", headers={"HX-Request": "true"})
        assert r.status_code == 200 and r.text.lstrip().startswith(f'<tr id="run-{run.id}"')
        r = await admin.client.get(f"/portal/training/{run.id}?done=queued")
        assert r.status_code == 200 and 'id="notice"' in r.text and 'id="report"' not in r.text
        assert f'hx-get="/portal/training/{run.id}/status"' in r.text
        r = await admin.client.get(f"/portal/training/{run.id}/status", headers={"HX-Request": "1"})
        assert r.status_code == 200 and "HX-Refresh" not in r.headers
        r = await admin.client.get(f"/portal/training/{run.id}/report.json")
        assert r.status_code == 409 and error_code(r.text) == "training_report_not_ready"


async def test_a_finished_runs_report_shows_its_figures_charts_and_json(api: Api) -> None:
    heads = await with_heads(api, seed=9)
    t = heads.tenant.id
    async with person(api, "admin", t) as admin:
        run = await finished_run(api, heads, admin.user_id)
    assert run.status == SUCCEEDED and run.report is not None
    evaluation = run.report["evaluation"]
    async with person(api, "viewer", t) as viewer:
        r = await viewer.client.get(f"/portal/training/{run.id}")
        assert r.status_code == 200, r.text
        page = r.text
        assert 'data-status="succeeded"' in page and "hx-trigger" not in page  # no polling
        report = page.split('id="report"')[1]
        assert report.count("<svg") >= 3
        for chart in ("chart-pr", "chart-confusion-head", "chart-confusion-baseline"):
            assert f'id="{chart}"' in report, chart
        assert side_f1(report, "head") == pytest.approx(evaluation["head"]["f1"], abs=1e-3)
        assert side_f1(report, "baseline") == pytest.approx(evaluation["baseline"]["f1"], abs=1e-3)
        d = evaluation["f1_difference"]
        assert f'id="f1-difference-interval">[{d["low"]:.3f}, {d["high"]:.3f}]' in report
        assert escaped("base policy 'default'") in report  # the baseline's name, escaped
        link = f'href="/portal/models/{SLUG}#v{heads.good}"'
        assert link in page and f"version {heads.good}" in page
        assert f'href="/portal/training/{run.id}/report.json"' in page

        r = await viewer.client.get(f"/portal/training/{run.id}/report.json")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json() == json.loads(json.dumps(run.report))
        r = await viewer.client.get(
            f"/portal/training/{run.id}/status", headers={"HX-Request": "1"}
        )
        assert r.headers.get("HX-Refresh") == "true"  # a page that was polling reloads

        r = await viewer.client.get("/portal/training")
        row = re.search(rf'<tr id="run-{run.id}".*?</tr>', r.text, re.S)
        assert row is not None and "hx-trigger" not in row.group(0)
        assert f'class="f1-head">{evaluation["head"]["f1"]:.3f}<' in row.group(0)
        assert f'class="f1-baseline">{evaluation["baseline"]["f1"]:.3f}<' in row.group(0)
        # the version's row on the model page links back to the run's report
        r = await viewer.client.get(f"/portal/models/{SLUG}")
        assert f'<a href="/portal/training/{run.id}">report</a>' in r.text


# ---- in a browser ------------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.server
async def test_the_models_and_report_pages_run_in_a_browser_without_errors(
    tmp_path: Path,
) -> None:
    async with portal(settings_in(tmp_path)) as shown:
        heads = await with_heads(shown.api, seed=10)
        t = heads.tenant.id
        promotions = shown.api.services.promotions
        await asyncio.to_thread(
            lambda: promotions.set_challenger(t, CATEGORY, heads.good, by="cli:t")
        )
        who = await shown.person("admin", tenant=t)
        run = await finished_run(shown.api, heads, who.user_id)
        page = await shown.new_page()
        problems: list[str] = []

        def console(message: ConsoleMessage) -> None:
            # CSP violations and script errors are console errors; the browser's own ask
            # for /favicon.ico (the portal has none) is not the pages'
            if message.type == "error" and not message.location["url"].endswith("/favicon.ico"):
                problems.append(f"{message.text} at {message.location['url']}")

        page.on("console", console)
        page.on("pageerror", lambda e: problems.append(str(e)))
        await shown.sign_in(page, who, "/portal/models")
        assert page.url.endswith("/portal/models")
        async with page.expect_navigation():
            await page.click(f'[data-slug="{SLUG}"] h3 a')
        assert page.url.endswith(f"/portal/models/{SLUG}")
        # the challenger's checks load into the page (htmx under the CSP)
        await page.locator("#checks .checks[data-passed=yes]").wait_for(timeout=30_000)
        await page.click(f'tr[data-version="{heads.worse}"] .check-version')
        await page.locator(f'#checks .checks[data-candidate="{heads.worse}"]').wait_for()
        assert await page.locator("#checks [data-verdict=refuse]").is_visible()

        # forcing asks first; declining sends nothing
        async def decline(dialog: Dialog) -> None:
            await dialog.dismiss()

        page.once("dialog", decline)
        await page.fill("#force-form textarea[name=reason]", "a test")
        await page.click("#force")
        await asyncio.sleep(0.3)
        assert promotions.registry.alias_version(t, CATEGORY, "champion") is None
        await page.goto(f"{shown.url}/training/{run.id}")
        assert await page.locator("#report svg").count() >= 3
        assert await page.locator("#chart-pr").is_visible()
        await page.goto(f"{shown.url}/training")
        assert await page.locator(f"#run-{run.id} .f1-head").is_visible()
        assert problems == [], problems
