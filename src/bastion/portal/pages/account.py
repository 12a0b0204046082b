"""A person's own account: their open sessions (when, which browser, from where) with
a way to end each, changing their password, and signing out everywhere.

Changing the password asks for the current one
(:meth:`bastion.accounts.service.AccountService.change_password`) and ends every other
session; this one stays. "Sign out everywhere" is the form the page posts to
``/portal/logout-everywhere``.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from bastion.accounts.passwords import MAX_BYTES, MIN_LENGTH
from bastion.api.services import Services, services
from bastion.errors import BastionError, InputError, NotFound
from bastion.portal.editor import form_text
from bastion.portal.people import Person, Viewer
from bastion.portal.templating import render

router = APIRouter()
Svc = Annotated[Services, Depends(services)]
SessionId = Annotated[str, Path(pattern=r"^ses_[0-9a-f]{1,36}$", description="A session id.")]
DONE = {
    "password": "Your password was changed; your other sessions were signed out.",
    "revoked": "The session was signed out.",
}
_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("HeadlessChrome/", "Headless Chrome"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("Version/", "Safari"),
)
_SYSTEMS = (
    ("Windows", "Windows"),
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


class PasswordMismatch(InputError):
    """The new password and its repetition differ."""

    code = "password_mismatch"
    status = 422


def browser(user_agent: str) -> str:
    """A short name for a browser from its User-Agent ("Firefox 128 on Linux")."""
    name = next((label for token, label in _BROWSERS if token in user_agent), None)
    if name is None:
        return "unknown browser" if not user_agent else user_agent[:60]
    token = next(t for t, label in _BROWSERS if label == name)
    version = re.search(re.escape(token) + r"(\d+)", user_agent)
    system = next((label for t, label in _SYSTEMS if t in user_agent), None)
    text = f"{name} {version.group(1)}" if version else name
    return f"{text} on {system}" if system else text


async def _page(
    request: Request, who: Person, svc: Services, *, error: BastionError | None = None
) -> Response:
    sessions = await run_in_threadpool(svc.accounts.list_sessions, who.tenant_id, who.user.id)
    context = {
        "sessions": sessions,
        "browser": browser,
        "error": error,
        "notice": DONE.get(request.query_params.get("done", "")),
        "min_length": MIN_LENGTH,
    }
    return render(request, "account.html", context, status=error.status if error else 200)


@router.get("/portal/account")
async def account(request: Request, who: Viewer, svc: Svc) -> Response:
    return await _page(request, who, svc)


@router.post("/portal/account/password")
async def change_password(request: Request, who: Viewer, svc: Svc) -> Response:
    form = await request.form()
    current = form_text(form, "current", MAX_BYTES * 4)
    new = form_text(form, "new", MAX_BYTES * 4)
    try:
        if new != form_text(form, "repeat", MAX_BYTES * 4):
            raise PasswordMismatch("the new password and its repetition differ")
        await run_in_threadpool(
            lambda: svc.accounts.change_password(
                who.tenant_id, who.user.id, current, new, keep_session_id=who.session.id
            )
        )
    except BastionError as exc:
        if isinstance(exc, NotFound) or exc.status == 401:
            raise
        return await _page(request, who, svc, error=exc)
    return RedirectResponse("/portal/account?done=password", status_code=303)


@router.post("/portal/account/sessions/{session_id}/revoke")
async def revoke_session(session_id: SessionId, who: Viewer, svc: Svc) -> Response:
    await run_in_threadpool(svc.accounts.revoke_session, who.tenant_id, who.user.id, session_id)
    if session_id == who.session.id:
        return RedirectResponse("/portal/login", status_code=303)
    return RedirectResponse("/portal/account?done=revoked", status_code=303)
