"""The moderator portal: server-rendered pages (Jinja2 + htmx) at ``/portal``.

People sign in with their accounts (:mod:`bastion.accounts`), never with API keys; every
page and action calls the same services as the REST API. ``people`` resolves the session
cookie and checks roles and CSRF tokens, ``headers`` sets the security headers,
``templating`` renders pages with autoescaping on, ``push`` is the portal's WebSocket,
and ``pages/`` holds one module per area of the portal.
"""
