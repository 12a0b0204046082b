"""Errors on portal paths answer as pages, not JSON.

A request without a session goes to the sign-in page (``303``; htmx requests get
``401`` with ``HX-Redirect``). Another error is a page with its code and message, or
for htmx requests a fragment shown in the page's message area (``HX-Retarget``), with
the error's status kept.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from bastion.portal.headers import PREFIX
from bastion.portal.people import NotSignedIn
from bastion.portal.templating import render


def is_portal(request: Request) -> bool:
    path = request.url.path
    return path == PREFIX or path.startswith(PREFIX + "/")


def page_error(
    request: Request, status: int, code: str, message: str, exc: BaseException | None = None
) -> Response | None:
    """The portal's answer to an error, or None outside the portal (JSON then)."""
    if not is_portal(request) or request.url.path.startswith(PREFIX + "/static/"):
        return None
    htmx = bool(request.headers.get("hx-request"))
    if isinstance(exc, NotSignedIn):
        if htmx:
            return Response(status_code=401, headers={"HX-Redirect": exc.login_url})
        if request.method == "GET":
            return RedirectResponse(exc.login_url, status_code=303)
    context = {"status": status, "code": code, "message": message}
    if htmx:
        response = render(request, "fragments/error.html", context, status=status)
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
        return response
    return render(request, "error.html", context, status=status)
