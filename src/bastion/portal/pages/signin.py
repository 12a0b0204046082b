"""Signing in and out.

The sign-in form is protected against login CSRF with a double-submit token: a random
value in a short-lived cookie that the form must send back. Sign-in itself is
:meth:`bastion.accounts.service.AccountService.authenticate` (rate limits, lockout,
the same answer for an unknown name as for a wrong password). The session cookie is
HttpOnly, SameSite=Strict, limited to ``/portal`` and Secure unless
``accounts.cookie_secure`` is off (plain HTTP on loopback).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from bastion.accounts.errors import CsrfRejected
from bastion.api.services import Services, services
from bastion.errors import BastionError
from bastion.portal.people import COOKIE, LOGIN_PATH, Person, person, safe_next
from bastion.portal.templating import render
from bastion.store.repo import DEFAULT_TENANT

router = APIRouter()
Svc = Annotated[Services, Depends(services)]
LOGIN_CSRF_COOKIE = "bastion_login_csrf"
MAX_FIELD = 1024


def _cookie_args(svc: Services) -> dict[str, object]:
    return {
        "httponly": True,
        "secure": svc.settings.accounts.cookie_secure,
        "samesite": "strict",
        "path": "/portal",
    }


def _cookie_blocked(request: Request, svc: Services) -> bool:
    """A Secure cookie over plain HTTP to another host than loopback: browsers drop it,
    so signing in could never work; the page says so instead of failing silently."""
    if not svc.settings.accounts.cookie_secure or request.url.scheme == "https":
        return False
    host = (request.url.hostname or "").strip("[]")
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def _login_page(
    request: Request,
    svc: Svc,
    *,
    next_url: str,
    tenant: str,
    username: str = "",
    error: BastionError | None = None,
) -> Response:
    token = secrets.token_urlsafe(24)
    context = {
        "cookie_blocked": _cookie_blocked(request, svc),
        "next": next_url,
        "tenant": tenant,
        "username": username,
        "login_csrf": token,
        "error": error,
    }
    response = render(request, "login.html", context, status=error.status if error else 200)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, **_cookie_args(svc))  # type: ignore[arg-type]
    return response


@router.get(LOGIN_PATH, include_in_schema=False)
async def login_form(request: Request, svc: Svc, next: str | None = None) -> Response:
    return _login_page(request, svc, next_url=safe_next(next), tenant=DEFAULT_TENANT)


@router.post(LOGIN_PATH, include_in_schema=False)
async def login(
    request: Request,
    svc: Svc,
    username: Annotated[str, Form(max_length=MAX_FIELD)],
    password: Annotated[str, Form(max_length=MAX_FIELD)],
    tenant: Annotated[str, Form(max_length=64)] = DEFAULT_TENANT,
    login_csrf: Annotated[str, Form(max_length=MAX_FIELD)] = "",
    next: Annotated[str, Form(max_length=MAX_FIELD)] = "/portal",
) -> Response:
    next_url = safe_next(next)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    try:
        if not expected or not hmac.compare_digest(expected.encode(), login_csrf.encode()):
            raise CsrfRejected("the sign-in form expired or came from elsewhere: try again")
        ip = request.client.host if request.client else None
        user = await run_in_threadpool(
            svc.accounts.authenticate, tenant.strip() or DEFAULT_TENANT, username, password, ip
        )
        signed_in = await run_in_threadpool(
            svc.accounts.start_session,
            user,
            user_agent=request.headers.get("user-agent", ""),
            ip=ip,
        )
    except BastionError as exc:
        return _login_page(
            request, svc, next_url=next_url, tenant=tenant, username=username, error=exc
        )
    response = RedirectResponse(next_url, status_code=303)
    lifetime = int(svc.settings.accounts.session_lifetime_s)
    response.set_cookie(COOKIE, signed_in.token, max_age=lifetime, **_cookie_args(svc))  # type: ignore[arg-type]
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/portal")
    return response


@router.post("/portal/logout", include_in_schema=False)
async def logout(svc: Svc, who: Annotated[Person, Depends(person)]) -> Response:
    await run_in_threadpool(svc.accounts.revoke, who.session)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(COOKIE, path="/portal")
    return response


@router.post("/portal/logout-everywhere", include_in_schema=False)
async def logout_everywhere(svc: Svc, who: Annotated[Person, Depends(person)]) -> Response:
    await run_in_threadpool(svc.accounts.revoke_all, who.user)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(COOKIE, path="/portal")
    return response


@router.get("/portal", include_in_schema=False)
async def home(who: Annotated[Person, Depends(person)]) -> Response:
    return RedirectResponse("/portal/live", status_code=303)
