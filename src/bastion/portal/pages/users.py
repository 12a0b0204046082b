"""People of the tenant, for its admins: list them, create one, change a role, disable
or enable, reset a password, see a person's open sessions and sign them out everywhere.

Everything goes through :class:`bastion.accounts.service.AccountService`, scoped to the
admin's tenant: a user id of another tenant is not found. An admin cannot disable their
own account or change their own role here (``409 own_account``), so a tenant is never
left without the admin who could undo it; their own password is changed on the account
page, where the current one is asked for.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from bastion.accounts.passwords import MAX_BYTES, MIN_LENGTH
from bastion.accounts.tables import ROLES, User
from bastion.api.services import Services, services
from bastion.errors import BastionError, NotFound
from bastion.portal.editor import form_text
from bastion.portal.pages.account import browser
from bastion.portal.people import AdminPerson, Person
from bastion.portal.templating import render

router = APIRouter()
Svc = Annotated[Services, Depends(services)]
UserId = Annotated[str, Path(pattern=r"^usr_[0-9a-f]{1,36}$", description="A user id.")]
MAX_NAME = 200
DONE = {
    "created": "The user was created. They can sign in now.",
    "role": "The role was changed.",
    "disabled": "The user was disabled and signed out everywhere.",
    "enabled": "The user was enabled.",
    "password": "The password was reset; the user was signed out everywhere.",
    "signed_out": "The user was signed out everywhere.",
}


class OwnAccount(BastionError):
    """An admin may not disable their own account or change their own role."""

    code = "own_account"
    status = 409


def _not_self(who: Person, user_id: str, what: str) -> None:
    if user_id == who.user.id:
        raise OwnAccount(f"you cannot {what} your own account; ask another admin")


def _done(request: Request) -> str | None:
    return DONE.get(request.query_params.get("done", ""))


def _is_locked(svc: Services, user: User) -> bool:
    return user.locked_until is not None and user.locked_until > svc.accounts.now()


async def _list_page(
    request: Request,
    who: Person,
    svc: Services,
    *,
    error: BastionError | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    users = await run_in_threadpool(svc.accounts.list_users, who.tenant_id)
    context = {
        "users": users,
        "locked": {u.id for u in users if _is_locked(svc, u)},
        "roles": ROLES,
        "error": error,
        "values": values or {"role": "moderator"},
        "notice": _done(request),
        "min_length": MIN_LENGTH,
    }
    return render(request, "users.html", context, status=error.status if error else 200)


async def _user_page(
    request: Request,
    who: Person,
    svc: Services,
    user_id: str,
    *,
    error: BastionError | None = None,
) -> Response:
    user = await run_in_threadpool(svc.accounts.get, who.tenant_id, user_id)
    sessions = await run_in_threadpool(svc.accounts.list_sessions, who.tenant_id, user_id)
    context = {
        "user": user,
        "sessions": sessions,
        "locked": _is_locked(svc, user),
        "roles": ROLES,
        "error": error,
        "notice": _done(request),
        "min_length": MIN_LENGTH,
        "is_self": user.id == who.user.id,
        "browser": browser,
    }
    return render(request, "users_detail.html", context, status=error.status if error else 200)


def _shown_on_page(exc: BastionError) -> bool:
    return not isinstance(exc, NotFound) and exc.status not in (401, 403)


@router.get("/portal/users")
async def users(request: Request, who: AdminPerson, svc: Svc) -> Response:
    return await _list_page(request, who, svc)


@router.post("/portal/users")
async def create_user(request: Request, who: AdminPerson, svc: Svc) -> Response:
    form = await request.form()
    values = {
        "username": form_text(form, "username", MAX_NAME).strip(),
        "display_name": form_text(form, "display_name", MAX_NAME),
        "role": form_text(form, "role", 32),
    }
    password = form_text(form, "password", MAX_BYTES * 4)
    try:
        user = await run_in_threadpool(
            lambda: svc.accounts.create_user(
                who.tenant_id,
                values["username"],
                password,
                values["role"],
                display_name=values["display_name"],
            )
        )
    except BastionError as exc:
        if not _shown_on_page(exc):
            raise
        return await _list_page(request, who, svc, error=exc, values=values)
    return RedirectResponse(f"/portal/users/{user.id}?done=created", status_code=303)


@router.get("/portal/users/{user_id}")
async def user(request: Request, user_id: UserId, who: AdminPerson, svc: Svc) -> Response:
    return await _user_page(request, who, svc, user_id)


async def _change(request: Request, who: Person, svc: Services, user_id: str, op: str) -> Response:
    """One change to a user; errors about the input are shown on the user's page."""
    form = await request.form()
    try:
        if op == "role":
            _not_self(who, user_id, "change the role of")
            role = form_text(form, "role", 32)
            await run_in_threadpool(svc.accounts.set_role, who.tenant_id, user_id, role)
        elif op == "disabled":
            _not_self(who, user_id, "disable")
            await run_in_threadpool(svc.accounts.disable, who.tenant_id, user_id)
        elif op == "enabled":
            await run_in_threadpool(svc.accounts.enable, who.tenant_id, user_id)
        elif op == "password":
            _not_self(who, user_id, "reset the password of")
            password = form_text(form, "password", MAX_BYTES * 4)
            await run_in_threadpool(svc.accounts.reset_password, who.tenant_id, user_id, password)
        elif op == "signed_out":
            target = await run_in_threadpool(svc.accounts.get, who.tenant_id, user_id)
            await run_in_threadpool(svc.accounts.revoke_all, target)
    except BastionError as exc:
        if not _shown_on_page(exc):
            raise
        return await _user_page(request, who, svc, user_id, error=exc)
    return RedirectResponse(f"/portal/users/{user_id}?done={op}", status_code=303)


@router.post("/portal/users/{user_id}/role")
async def change_role(request: Request, user_id: UserId, who: AdminPerson, svc: Svc) -> Response:
    return await _change(request, who, svc, user_id, "role")


@router.post("/portal/users/{user_id}/disable")
async def disable(request: Request, user_id: UserId, who: AdminPerson, svc: Svc) -> Response:
    return await _change(request, who, svc, user_id, "disabled")


@router.post("/portal/users/{user_id}/enable")
async def enable(request: Request, user_id: UserId, who: AdminPerson, svc: Svc) -> Response:
    return await _change(request, who, svc, user_id, "enabled")


@router.post("/portal/users/{user_id}/password")
async def reset_password(request: Request, user_id: UserId, who: AdminPerson, svc: Svc) -> Response:
    return await _change(request, who, svc, user_id, "password")


@router.post("/portal/users/{user_id}/sign-out")
async def sign_out_everywhere(
    request: Request, user_id: UserId, who: AdminPerson, svc: Svc
) -> Response:
    return await _change(request, who, svc, user_id, "signed_out")
