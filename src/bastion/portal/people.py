"""Who is using the portal: the session cookie taken back to a person, their role, and
the CSRF check of every state-changing request.

A page request without a valid session is sent to the sign-in page (``303``); an htmx
request gets ``401`` with an ``HX-Redirect`` header so the browser goes there too; any
other request gets ``401 not_signed_in``. Roles are ordered: ``admin`` may do what a
``moderator`` may, who may do what a ``viewer`` may. Every POST, PUT, PATCH and DELETE
must carry the session's CSRF token, as the ``X-CSRF-Token`` header (htmx sends it) or a
``csrf_token`` form field, else ``403 csrf_failed``.

An API key in the cookie, or a session token as a Bearer key, finds nothing: the two
kinds of credential never stand in for each other.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from bastion.accounts.tables import User, UserSession
from bastion.api.services import Services, services
from bastion.errors import AuthError, Forbidden
from bastion.review.service import Reviewer

COOKIE = "bastion_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
LOGIN_PATH = "/portal/login"
RANK = {"viewer": 0, "moderator": 1, "admin": 2}
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class NotSignedIn(AuthError):
    """No valid portal session: sign in (again)."""

    code = "not_signed_in"
    status = 401

    def __init__(self, message: str, *, login_url: str) -> None:
        super().__init__(message)
        self.login_url = login_url


class RoleTooLow(Forbidden):
    """The person's role does not allow this."""

    code = "role_forbidden"
    status = 403


@dataclass(frozen=True, slots=True)
class Person:
    """A signed-in person: their account, this session and what they may do."""

    user: User
    session: UserSession

    @property
    def tenant_id(self) -> str:
        return self.user.tenant_id

    @property
    def role(self) -> str:
        return self.user.role

    @property
    def name(self) -> str:
        return self.user.display_name or self.user.username

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token

    def may(self, role: str) -> bool:
        """Whether this person's role is ``role`` or above."""
        return RANK.get(self.role, -1) >= RANK[role]

    @property
    def reviewer(self) -> Reviewer:
        """This person as the review queue knows them."""
        return Reviewer("user", self.user.id, admin=self.role == "admin")

    @property
    def actor(self) -> str:
        """How alert and stream changes record who made them."""
        return f"user:{self.user.id}"


def safe_next(target: str | None) -> str:
    """A portal path to go back to after signing in; anything else (another site, a
    scheme-relative ``//host``) is the portal's home."""
    if not target:
        return "/portal"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/portal"):
        return "/portal"
    if parts.path.startswith(LOGIN_PATH):
        return "/portal"
    return parts.path + ("?" + parts.query if parts.query else "")


def login_url(request: Request) -> str:
    """The sign-in page, coming back to this page (htmx requests: to the page the
    browser shows)."""
    if request.method != "GET" or request.headers.get("hx-request"):
        current = urlsplit(request.headers.get("hx-current-url", ""))
        here = safe_next(current.path + ("?" + current.query if current.query else ""))
    else:
        here = safe_next(request.url.path + ("?" + request.url.query if request.url.query else ""))
    return f"{LOGIN_PATH}?next={quote(here, safe='/')}"


async def person(request: Request, svc: Annotated[Services, Depends(services)]) -> Person:
    """The signed-in person of this request, or ``NotSignedIn``; checks the CSRF token
    of state-changing requests."""
    token = request.cookies.get(COOKIE)
    found = await run_in_threadpool(svc.accounts.resolve_session, token) if token else None
    if found is None:
        raise NotSignedIn("sign in to use the portal", login_url=login_url(request))
    user, session = found
    if request.method not in _SAFE_METHODS:
        presented = request.headers.get(CSRF_HEADER)
        if presented is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            presented = value if isinstance(value, str) else None
        svc.accounts.check_csrf(session, presented)
    await run_in_threadpool(svc.accounts.touch, session)
    found_person = Person(user, session)
    request.state.person = found_person
    return found_person


def role(minimum: str) -> Callable[..., Coroutine[Any, Any, Person]]:
    """A dependency: the signed-in person, who must have ``minimum`` or a higher role."""

    async def check(who: Annotated[Person, Depends(person)]) -> Person:
        if not who.may(minimum):
            raise RoleTooLow(f"this needs the {minimum} role; you are a {who.role}")
        return who

    return check


Viewer = Annotated[Person, Depends(role("viewer"))]
ModeratorPerson = Annotated[Person, Depends(role("moderator"))]
AdminPerson = Annotated[Person, Depends(role("admin"))]
