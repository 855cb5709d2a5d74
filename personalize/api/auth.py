"""API keys and roles: a ``before_request`` check, installed only when keys are configured.

A key travels in ``Ocp-Apim-Subscription-Key`` (what both Microsoft SDKs send) or
``Authorization: Bearer <key>`` (what Prometheus and proxies send); for the dashboard's read-only
pages also as the password of HTTP Basic credentials (what a browser sends; any user name). Each operation's role
(open, client or admin) is decided once, in the operation registry
(``personalize.api.schemas.OPERATIONS``), which the OpenAPI document shows too. Admin keys reach
everything; an endpoint the registry does not list is admin-only, so a new operation is never
open to client keys by accident.

The presented key is hashed and its digest compared with every configured key's digest by
``hmac.compare_digest``: equal lengths, no early exit, the same work whichever key matches.
Keys are never logged or echoed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Iterable

from flask import Flask, Response, current_app, jsonify, request

from personalize.api.schemas import OPERATIONS
from personalize.config import Settings

__all__ = ["OPEN", "CLIENT", "ADMIN", "KeyCheck", "ENDPOINT_ROLES", "install", "is_admin_request"]


#: Roles, as bits: what an endpoint needs, what a key holds (plain ints: this runs on every Rank).
OPEN, CLIENT, ADMIN = 0, 1, 2


#: Endpoint name (``blueprint.function``; the ``/personalizer`` twins under ``<blueprint>_preview``
#: too) -> the role it needs, from the operation registry.
ENDPOINT_ROLES: dict[str, int] = {op.endpoint: {"open": OPEN, "client": CLIENT, "admin": ADMIN}[op.role]
                                  for op in OPERATIONS}

_HOW = "send it in the Ocp-Apim-Subscription-Key header or as Authorization: Bearer <key>"

#: Read-only pages people open in a browser: HTTP Basic credentials (the key as the password) count there,
#: and only there, and a 401 asks the browser for them. Elsewhere they would be a CSRF hole: a browser
#: attaches cached Basic credentials to requests other sites' pages make.
BROWSER_PAGES = frozenset({"dashboard.page", "dashboard.data"})


def _base_endpoint(endpoint: str) -> str:
    blueprint, dot, view = endpoint.partition(".")
    return blueprint.removesuffix("_preview") + dot + view


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class KeyCheck:
    """The before_request hook. ``roles`` maps endpoint names to the role they need (missing: ADMIN)."""

    def __init__(self, settings: Settings, endpoints: Iterable[str]) -> None:
        self._keys = [(_digest(k), CLIENT) for k in settings.api_key_list]
        self._keys += [(_digest(k), ADMIN) for k in settings.admin_key_list]
        self.has_admin_keys = bool(settings.admin_key_list)
        # None: no route matched (404/405); any valid key may learn that, no key may not.
        self.roles: dict[str | None, int] = {None: CLIENT}
        for endpoint in endpoints:
            self.roles[endpoint] = ENDPOINT_ROLES.get(_base_endpoint(endpoint), ADMIN)

    def presented_role(self, environ: dict[str, Any], basic: bool = False) -> int | None:
        """The role of the request's key; None when it sends no key. ``basic``: HTTP Basic credentials count
        (only for BROWSER_PAGES: a browser resends them to any URL of the server, cross-site requests too)."""
        key = environ.get("HTTP_OCP_APIM_SUBSCRIPTION_KEY")
        if key is None:
            authorization = environ.get("HTTP_AUTHORIZATION", "")
            scheme = authorization[:6].lower()
            if scheme == "bearer" and authorization[6:7] == " ":
                key = authorization[7:].strip()
            elif scheme == "basic " and basic:
                key = _basic_password(authorization[6:].strip())
            else:
                return None
        digest = _digest(key)
        held = 0
        for known, role in self._keys:  # every key, every time: which one matched takes no longer
            held |= role * hmac.compare_digest(digest, known)
        return held

    def __call__(self) -> Response | None:
        current = request._get_current_object()  # once: each access through the proxy costs about a microsecond
        environ = current.environ
        if environ["REQUEST_METHOD"] == "OPTIONS":  # a CORS preflight carries no key; it reaches no view either
            return None
        rule = current.url_rule
        needed = self.roles.get(rule.endpoint if rule is not None else None, ADMIN)
        if needed == OPEN:
            return None
        page = rule is not None and rule.endpoint in BROWSER_PAGES
        held = self.presented_role(environ, basic=page)
        if held is None:
            response = _unauthorized(f"This server needs an API key: {_HOW}.")
            if page:  # a browser asks for the key (as the password)
                response.headers["WWW-Authenticate"] = 'Basic realm="personalize", charset="UTF-8"'
            return response
        if not held:
            return _unauthorized("The API key is not one this server knows: send a key from its PERSONALIZE_API_KEYS "
                                 "or PERSONALIZE_ADMIN_KEYS in the Ocp-Apim-Subscription-Key header (or as "
                                 "Authorization: Bearer <key>).")
        if needed == ADMIN and not held & ADMIN:
            more = "" if self.has_admin_keys else " This server has none (PERSONALIZE_ADMIN_KEYS is empty)."
            return _error(403, "PermissionDenied", f"This operation needs an admin key; client keys may call Rank, "
                          f"Reward, Activate and status.{more}")
        return None


def _basic_password(credentials: str) -> str:
    """The password of HTTP Basic credentials (any user name): how a browser sends a key to the dashboard."""
    try:
        return base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")[2]
    except (ValueError, UnicodeDecodeError):
        return ""


def _error(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def _unauthorized(message: str) -> Response:
    response = _error(401, "Unauthorized", message)
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def install(app: Flask, settings: Settings) -> None:
    """Ask for keys on every request, when any is configured (call after registering the blueprints)."""
    if not settings.auth_enabled:
        return  # no hook at all: an open server pays nothing
    check = KeyCheck(settings, app.view_functions)
    app.extensions["personalize.auth"] = check
    app.before_request(check)


def is_admin_request() -> bool:
    """Whether this request may see what only admins see (always, when no keys are configured)."""
    check: KeyCheck | None = current_app.extensions.get("personalize.auth")
    return check is None or bool((check.presented_role(request.environ) or 0) & ADMIN)
