"""Analysis policies in the browser: the tenant's own and the built-in ones, each read
and edited as YAML, checked, created and deleted.

Checking and saving run what ``POST /v1/policies/validate`` and ``PUT
/v1/policies/{name}`` run (:func:`bastion.policy.loader.read_policy_text`, then the
repository's ``put_policy``), so the page shows the API's messages, each at its line.
A built-in policy is read-only as such: saving it makes the tenant's own copy, which
then applies instead. Everyone signed in reads; only admins save and delete.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from bastion.api.services import Services, services
from bastion.errors import BastionError, NotFound
from bastion.policy.loader import (
    MAX_POLICY_BYTES,
    default_policy_text,
    dump_policy,
    parse_policy,
    read_policy_text,
)
from bastion.policy.model import POLICY_NAME
from bastion.portal.editor import Editor, form_text, normalise, problems_of
from bastion.portal.people import AdminPerson, Person, Viewer
from bastion.portal.templating import render

router = APIRouter()
Svc = Annotated[Services, Depends(services)]
PolicyName = Annotated[str, Path(pattern=POLICY_NAME, description="A policy name.")]
FIELD = "policy"
NEW = "/portal/policies/+new"
"""The new policy's page ('+' is in no policy name, so no policy's page is this)."""


class PolicyExists(BastionError):
    """A new policy may not take the name of one of the tenant's policies."""

    code = "policy_exists"
    status = 409


@dataclass(frozen=True, slots=True)
class PolicyRow:
    """A policy as the list shows it."""

    name: str
    version: str
    source: str
    default: bool


def _starter() -> str:
    return re.sub(r"(?m)^name: .*$", "name: new-policy", default_policy_text(), count=1)


def _rows(svc: Services, tenant_id: str) -> list[PolicyRow]:
    """What ``GET /v1/policies`` lists, and which is the tenant's default."""
    default = svc.repo.get_tenant(tenant_id).default_policy
    own = svc.repo.list_policies(tenant_id)
    rows = [PolicyRow(r.name, r.version, "tenant", r.name == default) for r in own]
    names = {r.name for r in own}
    rows += [
        PolicyRow(n, p.version, "builtin", n == default)
        for n, p in svc.policies.builtin.items()
        if n not in names
    ]
    return sorted(rows, key=lambda r: r.name)


@dataclass(frozen=True, slots=True)
class Stored:
    """A policy as ``GET /v1/policies/{name}`` gives it: its YAML, where it comes from
    (``tenant`` or ``builtin``) and its version."""

    text: str
    source: str
    version: str


def _stored(svc: Services, tenant_id: str, name: str) -> Stored:
    text = svc.repo.get_policy_text(tenant_id, name)
    if text is not None:
        return Stored(text, "tenant", parse_policy(text).version)
    if name in svc.policies.builtin:
        builtin = svc.policies.builtin[name]
        return Stored(dump_policy(builtin), "builtin", builtin.version)
    raise NotFound(f"policy {name!r} not found", code="policy_not_found")


def _page(
    request: Request,
    who: Person,
    text: str,
    *,
    name: str | None,
    stored: Stored | None = None,
    error: BastionError | None = None,
    notice: str | None = None,
) -> Response:
    editor = Editor(
        FIELD,
        text,
        label="Policy (YAML)",
        readonly=not who.may("admin"),
        problems=problems_of(error, text) if error is not None else [],
    )
    context = {
        "tab": "policies",
        "name": name,
        "stored": stored,
        "editor": editor,
        "error": error,
        "notice": notice,
        "action": f"/portal/policies/{name}" if name else NEW,
    }
    status = error.status if error else 200
    return render(request, "rules_policy_edit.html", context, status=status)


async def _save(request: Request, who: Person, svc: Services, name: str | None) -> Response:
    form = await request.form()
    text = normalise(form_text(form, FIELD, MAX_POLICY_BYTES))
    op = form_text(form, "op", 16)
    stored = None
    if name is not None:
        stored = await run_in_threadpool(_stored, svc, who.tenant_id, name)

    def save() -> str:
        policy, body = read_policy_text(text.encode("utf-8", "surrogatepass"), name=name)
        if op == "check":
            return policy.name
        if name is None and svc.repo.get_policy_text(who.tenant_id, policy.name) is not None:
            raise PolicyExists(
                f"the tenant has a policy named {policy.name!r}: open it to change it"
            )
        svc.repo.put_policy(who.tenant_id, body)
        return policy.name

    try:
        saved = await run_in_threadpool(save)
    except BastionError as exc:
        if isinstance(exc, NotFound) or exc.status in (401, 403):
            raise
        return _page(request, who, text, name=name, stored=stored, error=exc)
    if op == "check":
        notice = "No problems found. Nothing was saved."
        return _page(request, who, text, name=name, stored=stored, notice=notice)
    return RedirectResponse(f"/portal/policies/{saved}?saved=1", status_code=303)


@router.get("/portal/policies")
async def policies(request: Request, who: Viewer, svc: Svc) -> Response:
    rows = await run_in_threadpool(_rows, svc, who.tenant_id)
    deleted = request.query_params.get("deleted") == "1"
    context = {"tab": "policies", "policies": rows, "deleted": deleted}
    return render(request, "rules_policies.html", context)


@router.get(NEW)
async def new_policy(request: Request, who: AdminPerson) -> Response:
    return _page(request, who, _starter(), name=None)


@router.post(NEW)
async def create_policy(request: Request, who: AdminPerson, svc: Svc) -> Response:
    return await _save(request, who, svc, None)


@router.get("/portal/policies/{name}")
async def policy(request: Request, name: PolicyName, who: Viewer, svc: Svc) -> Response:
    stored = await run_in_threadpool(_stored, svc, who.tenant_id, name)
    notice = "Saved." if request.query_params.get("saved") == "1" else None
    return _page(request, who, stored.text, name=name, stored=stored, notice=notice)


@router.post("/portal/policies/{name}")
async def update_policy(request: Request, name: PolicyName, who: AdminPerson, svc: Svc) -> Response:
    return await _save(request, who, svc, name)


@router.post("/portal/policies/{name}/delete")
async def delete_policy(name: PolicyName, who: AdminPerson, svc: Svc) -> Response:
    await run_in_threadpool(svc.repo.delete_policy, who.tenant_id, name)
    return RedirectResponse("/portal/policies?deleted=1", status_code=303)
