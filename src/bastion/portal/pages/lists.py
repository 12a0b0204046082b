"""The tenant's word and domain lists in the browser: one entry per line per list.

Blank lines are left out and each entry is trimmed; the entries are then validated by
the model ``PUT /v1/lists`` validates with (:class:`bastion.policy.model.Lists`, through
:func:`bastion.api.errors.validated`), so the messages are the API's, and each is shown
at the line of the entry it is about. Everyone signed in reads; only admins save.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from bastion.api.admin import MAX_LISTS_BYTES
from bastion.api.errors import validated
from bastion.api.services import Services, services
from bastion.errors import BastionError, InputError
from bastion.policy.model import Lists
from bastion.portal.editor import Editor, Problem, form_text, normalise, source_line
from bastion.portal.people import AdminPerson, Person, Viewer
from bastion.portal.templating import render

router = APIRouter()
Svc = Annotated[Services, Depends(services)]
FIELDS: dict[str, str] = {
    "blocked_words": "Blocked words and phrases",
    "blocked_domains": "Blocked domains",
    "allowed_domains": "Allowed domains (never reported as blocked)",
}


def entries(text: str) -> tuple[list[str], list[int]]:
    """The entries of one list's text (trimmed, blank lines left out) and the line
    (1-based) each is on."""
    values: list[str] = []
    lines: list[int] = []
    for number, line in enumerate(text.split("\n"), 1):
        value = line.strip()
        if value:
            values.append(value)
            lines.append(number)
    return values, lines


def _problems(
    error: InputError, texts: Mapping[str, str], lines: Mapping[str, Sequence[int]]
) -> dict[str, list[Problem]]:
    """The validation errors of each list, at the lines of their entries."""
    out: dict[str, list[Problem]] = {name: [] for name in FIELDS}
    rows: Any = error.details.get("errors", [])
    for e in rows if isinstance(rows, list) else []:
        loc = e.get("loc", []) if isinstance(e, Mapping) else []
        name = str(loc[0]) if loc else ""
        if name not in out:
            continue
        index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
        line = lines[name][index] if index is not None and index < len(lines[name]) else None
        out[name].append(
            Problem(
                message=str(e.get("message", "")),
                path=".".join(str(p) for p in loc),
                line=line,
                column=1 if line is not None else None,
                source=source_line(texts[name], line),
            )
        )
    return out


def _page(
    request: Request,
    who: Person,
    texts: Mapping[str, str],
    *,
    problems: Mapping[str, list[Problem]] | None = None,
    error: BastionError | None = None,
    notice: str | None = None,
) -> Response:
    editors = [
        Editor(
            name,
            texts.get(name, ""),
            label=label,
            readonly=not who.may("admin"),
            problems=(problems or {}).get(name, []),
        )
        for name, label in FIELDS.items()
    ]
    context = {"tab": "lists", "editors": editors, "error": error, "notice": notice}
    return render(request, "rules_lists.html", context, status=error.status if error else 200)


@router.get("/portal/lists")
async def lists(request: Request, who: Viewer, svc: Svc) -> Response:
    tenant = await run_in_threadpool(svc.repo.get_tenant, who.tenant_id)
    current = Lists.model_validate(tenant.lists or {})
    texts = {name: "\n".join(getattr(current, name)) for name in FIELDS}
    notice = "Saved." if request.query_params.get("saved") == "1" else None
    return _page(request, who, texts, notice=notice)


@router.post("/portal/lists")
async def save_lists(request: Request, who: AdminPerson, svc: Svc) -> Response:
    form = await request.form()
    op = form_text(form, "op", 16)
    texts = {name: normalise(form_text(form, name, MAX_LISTS_BYTES)) for name in FIELDS}
    data: dict[str, list[str]] = {}
    lines: dict[str, list[int]] = {}
    for name, text in texts.items():
        data[name], lines[name] = entries(text)
    try:
        body = await run_in_threadpool(validated, Lists, data, "request does not validate")
    except InputError as exc:
        return _page(request, who, texts, problems=_problems(exc, texts, lines), error=exc)
    if op == "check":
        return _page(request, who, texts, notice="No problems found. Nothing was saved.")
    await run_in_threadpool(svc.repo.update_tenant, who.tenant_id, lists=body)
    return RedirectResponse("/portal/lists?saved=1", status_code=303)
