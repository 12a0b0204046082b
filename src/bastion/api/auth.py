"""Bearer API keys: every /v1 request is authenticated; scopes gate what a key may do."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bastion.api.services import Services, services
from bastion.errors import AuthError, Forbidden
from bastion.store.repo import Principal

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer bst_…`")


async def principal(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    svc: Annotated[Services, Depends(services)],
) -> Principal:
    if creds is None or not creds.credentials:
        raise AuthError(
            "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
        )
    found = await run_in_threadpool(svc.authenticate, creds.credentials)
    if found is None:
        raise AuthError("invalid or revoked API key", code="invalid_api_key")
    request.state.principal = found
    return found


def require(scope: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def check(p: Annotated[Principal, Depends(principal)]) -> Principal:
        if not p.has(scope):
            raise Forbidden(f"this key lacks the '{scope}' scope", code="insufficient_scope")
        return p

    return check


Moderator = Annotated[Principal, Depends(require("moderate"))]
Reader = Annotated[Principal, Depends(require("read"))]
Admin = Annotated[Principal, Depends(require("admin"))]
