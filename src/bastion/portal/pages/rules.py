"""Rule sets in the browser: list them, read and edit one as YAML or JSON, check it,
create, delete, and test a rule set on an image.

Saving and checking run what ``POST``/``PUT /v1/rules`` run
(:func:`bastion.api.rule_checks.save_rule_set`, :func:`~bastion.api.rule_checks.checked_rule_set`),
so the page shows the API's messages, each at its line. The test is
:func:`bastion.api.rules_evaluate.run_rule_test`, what ``POST /v1/rules/test`` answers,
on the text in the editor (saved or not). Everyone signed in reads; moderators and
admins test; only admins save and delete (``403 role_forbidden`` otherwise).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from bastion.api.params import RuleSetIdPath
from bastion.api.rule_checks import checked_rule_set, decode_rules, remove_rule_set, save_rule_set
from bastion.api.rules_evaluate import RuleTestOut, run_rule_test
from bastion.api.services import Services, services
from bastion.errors import BastionError, NotFound
from bastion.portal.editor import Editor, form_text, normalise, problems_of
from bastion.portal.people import AdminPerson, ModeratorPerson, Person, Viewer
from bastion.portal.templating import render
from bastion.rules.errors import RulesError
from bastion.rules.loader import MAX_RULES_BYTES, dump_rule_set_yaml
from bastion.rules.repo import StoredRuleSet

router = APIRouter()
Svc = Annotated[Services, Depends(services)]
FIELD = "rules"
OUTDATED = "rule_set_outdated"
STARTER = """\
name: new-rule-set
description: what these rules are for
channel_pattern: ".*"
priority: 100
sample_interval_s: 10
rules:
  - name: explicit
    categories: [Explicit Nudity]
    min_confidence: 80
    action: auto_stop
  - name: qr-link
    categories: [QR Code Link]
    min_confidence: 50
    action: alert
"""


def _editor_page(
    request: Request,
    who: Person,
    text: str,
    *,
    stored: StoredRuleSet | None = None,
    rule_set_id: int | None = None,
    error: BastionError | None = None,
    notice: str | None = None,
) -> Response:
    rule_set_id = stored.id if stored is not None else rule_set_id
    editor = Editor(
        FIELD,
        text,
        label="Rule set (YAML or JSON)",
        readonly=not who.may("admin"),
        problems=problems_of(error, text) if error is not None else [],
    )
    context = {
        "tab": "rules",
        "stored": stored,
        "editor": editor,
        "error": error,
        "notice": notice,
        "action": f"/portal/rules/{rule_set_id}" if rule_set_id else "/portal/rules/new",
    }
    return render(request, "rules_edit.html", context, status=error.status if error else 200)


def _shown_on_page(exc: BastionError) -> bool:
    """Errors about the text, shown in the editor; others (not found, roles) are pages."""
    return not isinstance(exc, NotFound) and exc.status not in (401, 403)


async def _save(request: Request, who: Person, svc: Services, rule_set_id: int | None) -> Response:
    form = await request.form()
    text = normalise(form_text(form, FIELD, MAX_RULES_BYTES))
    op = form_text(form, "op", 16)
    stored = None
    if rule_set_id is not None:
        try:
            stored = await run_in_threadpool(svc.rules.store.get, who.tenant_id, rule_set_id)
        except BastionError as exc:
            if exc.code != OUTDATED:  # an outdated one is repaired by saving it
                raise
    try:
        rules, fmt = decode_rules(text.encode("utf-8", "surrogatepass"))
        if op == "check":
            await run_in_threadpool(checked_rule_set, svc, who.tenant_id, rules, fmt)
            notice = "No problems found. Nothing was saved."
            return _editor_page(
                request, who, text, stored=stored, rule_set_id=rule_set_id, notice=notice
            )
        saved = await run_in_threadpool(save_rule_set, svc, who.tenant_id, rules, fmt, rule_set_id)
    except BastionError as exc:
        if not _shown_on_page(exc):
            raise
        return _editor_page(request, who, text, stored=stored, rule_set_id=rule_set_id, error=exc)
    return RedirectResponse(f"/portal/rules/{saved.id}?saved=1", status_code=303)


@router.get("/portal/rules")
async def rule_sets(request: Request, who: Viewer, svc: Svc) -> Response:
    rows = await run_in_threadpool(svc.rules.store.rule_sets, who.tenant_id)
    deleted = request.query_params.get("deleted") == "1"
    return render(request, "rules.html", {"tab": "rules", "rule_sets": rows, "deleted": deleted})


@router.get("/portal/rules/new")
async def new_rule_set(request: Request, who: AdminPerson) -> Response:
    return _editor_page(request, who, STARTER)


@router.post("/portal/rules/new")
async def create_rule_set(request: Request, who: AdminPerson, svc: Svc) -> Response:
    return await _save(request, who, svc, None)


@router.post("/portal/rules/test")
async def test_rule_set(request: Request, who: ModeratorPerson, svc: Svc) -> Response:
    """The editor's rule set on an uploaded image (multipart: ``file``, ``rules``,
    ``tier``), as ``POST /v1/rules/test`` answers it."""
    context: dict[str, object] = {"tab": "rules"}
    out: RuleTestOut | None = None
    status = 200
    try:
        out = await run_rule_test(request, svc, who.tenant_id)
    except RulesError as exc:
        form = await request.form()
        text = normalise(form_text(form, FIELD, MAX_RULES_BYTES))
        context.update(error=exc, problems=problems_of(exc, text))
        status = exc.status
    context["out"] = out
    page = "rules_test_result.html" if request.headers.get("hx-request") else "rules_test.html"
    return render(request, page, context, status=status)


@router.get("/portal/rules/{rule_set_id}")
async def rule_set(request: Request, rule_set_id: RuleSetIdPath, who: Viewer, svc: Svc) -> Response:
    stored = await run_in_threadpool(svc.rules.store.get, who.tenant_id, rule_set_id)
    notice = "Saved." if request.query_params.get("saved") == "1" else None
    return _editor_page(request, who, dump_rule_set_yaml(stored.spec), stored=stored, notice=notice)


@router.post("/portal/rules/{rule_set_id}")
async def update_rule_set(
    request: Request, rule_set_id: RuleSetIdPath, who: AdminPerson, svc: Svc
) -> Response:
    return await _save(request, who, svc, rule_set_id)


@router.post("/portal/rules/{rule_set_id}/delete")
async def delete_rule_set(rule_set_id: RuleSetIdPath, who: AdminPerson, svc: Svc) -> Response:
    await run_in_threadpool(remove_rule_set, svc, who.tenant_id, rule_set_id)
    return RedirectResponse("/portal/rules?deleted=1", status_code=303)
