"""Security at the door: WebSocket origin checks and optional token auth.

One ASGI middleware guards every face:

- **Origin** (WebSocket handshakes only): a browser sends ``Origin``; it must
  be the hub's own origin (the ``Host`` the browser used) or one of
  ``server.allowed_origins``. A refused origin gets HTTP 403, which stops
  cross-site WebSocket hijacking. Clients that send no ``Origin`` (not
  browsers) are not concerned by this check.
- **Token** (HTTP and WebSocket, when ``server.auth`` is configured): from
  ``Authorization: Bearer <t>``, the ``roomhub_token`` cookie or the
  ``token`` query parameter; checked against ``auth.tokens`` or verified as a
  signed token (itsdangerous ``TimestampSigner`` with ``auth.secret_key``).
  Missing or bad gets HTTP 401 with a JSON message (on a WebSocket handshake
  too, as a denial response).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Collection
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import AuthConfig

log = logging.getLogger("roomhub.security")

COOKIE = "roomhub_token"
TOKEN_SALT = "roomhub-token"
PUBLIC_PATHS = ("/api/health",)


def make_token(secret_key: str, subject: str = "user") -> str:
    """A signed token for ``subject``, valid ``auth.token_max_age`` seconds from now."""
    return TimestampSigner(secret_key, salt=TOKEN_SALT).sign(subject).decode()


class TokenChecker:
    """Accepts ``auth.tokens``, tokens signed with ``auth.secret_key``, and the tokens in
    ``live_tokens`` (a set the hub keeps for the programs it started, valid while they run)."""

    def __init__(self, auth: AuthConfig, live_tokens: Collection[str] = ()) -> None:
        self.auth = auth
        self.live_tokens = live_tokens
        self.signer = TimestampSigner(auth.secret_key, salt=TOKEN_SALT) if auth.secret_key else None

    def check(self, token: str | None) -> str | None:
        """Return None if ``token`` is valid, else the reason it is refused."""
        if not token:
            return "missing token (Authorization: Bearer, roomhub_token cookie or token parameter)"
        for known in (*self.auth.tokens, *self.live_tokens):
            if hmac.compare_digest(token.encode(), known.encode()):
                return None
        if self.signer is not None:
            try:
                self.signer.unsign(token, max_age=self.auth.token_max_age)
                return None
            except SignatureExpired:
                return "token expired"
            except BadSignature:
                pass
        return "invalid token"


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def token_of(scope: Scope) -> str | None:
    headers = _headers(scope)
    authz = headers.get("authorization", "")
    if authz.lower().startswith("bearer "):
        return authz[7:].strip()
    if "cookie" in headers:
        cookie = SimpleCookie()
        try:
            cookie.load(headers["cookie"])
        except Exception:
            cookie = SimpleCookie()
        if COOKIE in cookie:
            return cookie[COOKIE].value
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("token")
    return values[0] if values else None


def origin_allowed(scope: Scope, allowed: list[str]) -> bool:
    """Same-origin (Origin's host equals the Host header) or listed in ``allowed``."""
    headers = _headers(scope)
    origin = headers.get("origin")
    if origin is None:
        return True
    if origin.rstrip("/") in allowed or "*" in allowed:
        return True
    parts = urlsplit(origin)
    host = headers.get("host", "")
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host.lower()


class Door:
    """The origin check and token auth of one hub, as a synchronous decision on a request.

    Used by :class:`DoorMiddleware` and by the endpoints the hub's own HTTP protocol serves
    without ASGI (:mod:`roomhub.callback_websocket`).
    """

    def __init__(self, auth: AuthConfig, allowed_origins: list[str],
                 live_tokens: Collection[str] = ()) -> None:
        self.checker = TokenChecker(auth, live_tokens) if auth.enabled else None
        self.allowed_origins = [o.rstrip("/") for o in allowed_origins]

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """None if the request may pass, else ``(HTTP status, message)``: 403 for a WebSocket
        handshake from a refused origin, 401 for a missing or bad token.

        ``scope`` needs ``type`` (``"http"`` or ``"websocket"``), ``path``, ``headers`` (lower-case
        byte pairs), ``query_string`` and ``client``, as in ASGI."""
        if scope["type"] == "websocket" and not origin_allowed(scope, self.allowed_origins):
            origin = _headers(scope).get("origin")
            log.warning("refused WebSocket from origin %s to %s", origin, scope.get("path"))
            return 403, f"origin {origin} is not allowed"
        if self.checker is not None and scope.get("path") not in PUBLIC_PATHS:
            reason = self.checker.check(token_of(scope))
            if reason is not None:
                client = scope.get("client") or ("?", 0)
                log.info("refused %s %s from %s: %s", scope["type"], scope.get("path"), client[0], reason)
                return 401, reason
        return None


class DoorMiddleware:
    """ASGI middleware applying ``door`` to every request."""

    def __init__(self, app: ASGIApp, door: Door) -> None:
        self.app = app
        self.door = door

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            refusal = self.door.refusal(scope)
            if refusal is not None:
                return await deny(scope, send, *refusal)
        return await self.app(scope, receive, send)


async def deny(scope: Scope, send: Send, status: int, message: str) -> None:
    """Answer with ``status`` and ``{"detail": message}``: a plain response, or a WebSocket denial."""
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:  # the server cannot send a denial response: a bare refusal (HTTP 403) is all we can do
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
