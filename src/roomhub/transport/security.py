"""Security at the door: Host and origin checks, and optional token auth.

One decision, :meth:`Door.refusal`, guards every request on every serving path
(the ASGI :class:`DoorMiddleware`, the callback WebSocket endpoints, the HTTP
routes served without ASGI):

- **Host** (every HTTP request and WebSocket handshake): the ``Host`` header's
  name must be one the hub serves: a loopback name (``localhost``, any
  ``127.x.y.z``, ``[::1]``), the address the connection arrived on, the
  configured ``server.host``, or one of ``server.allowed_hosts`` (``"*"``:
  any). A page of another site whose name was made to resolve to the hub's
  address (DNS rebinding) sends its own name, and gets HTTP 421; a missing or
  malformed ``Host`` gets 400.
- **Origin** (WebSocket handshakes and state-changing requests: POST, PUT,
  PATCH, DELETE): a browser sends ``Origin``; it must be the hub's own origin
  (the ``Host`` the browser used, checked above) or one of
  ``server.allowed_origins``. A request without ``Origin`` but with
  ``Sec-Fetch-Site: cross-site`` is refused too. Refused: HTTP 403. This stops
  cross-site WebSocket hijacking and cross-site requests that change state
  (an install, a POST into a backend). Clients that send neither header (not
  browsers: curl, programs) are not concerned by this check.
- **Token** (HTTP and WebSocket, when ``server.auth`` is configured): from
  ``Authorization: Bearer <t>``, the ``roomhub_token`` cookie or the
  ``token`` query parameter; checked against ``auth.tokens`` or verified as a
  signed token (itsdangerous ``TimestampSigner`` with ``auth.secret_key``).
  Missing or bad gets HTTP 401 with a JSON message (on a WebSocket handshake
  too, as a denial response).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Callable, Collection, Mapping
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.config import AuthConfig
from ..core.errors import CloseCode

log = logging.getLogger("roomhub.security")

COOKIE = "roomhub_token"
TOKEN_SALT = "roomhub-token"
PUBLIC_PATHS = ("/api/health", "/api/ready")
"""Paths that need no token even when auth is on: the liveness and readiness probes."""


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


STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""HTTP methods whose requests must not come from a foreign page (RFC 9110 section 9.2.1: the
others are safe, and a foreign page cannot read their answers without CORS)."""
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def host_name(host: str) -> str | None:
    """The name of a ``Host`` header value (lower case, IPv6 without brackets, no port), or None
    when it is empty or malformed (RFC 9110 section 7.2: ``uri-host [":" port]``)."""
    if not host or any(c in host for c in "/?#@ \t"):
        return None
    try:
        parts = urlsplit("//" + host)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    return parts.hostname or None


def is_loopback_name(name: str) -> bool:
    """``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``)."""
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def origin_allowed(scope: Scope, allowed: Collection[str]) -> bool:
    """No ``Origin``, same-origin (its ``host[:port]`` equals the ``Host`` header), or listed in
    ``allowed`` (origins without a trailing slash; ``"*"``: any)."""
    headers = _headers(scope)
    origin = headers.get("origin")
    if origin is None:
        return True
    if origin.rstrip("/") in allowed or "*" in allowed:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:  # not a URL: not ours
        return False
    host = headers.get("host", "")
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host.lower()


class Door:
    """The Host, origin and token checks of one hub, as a synchronous decision on a request.

    ``allowed_origins``: origins (``scheme://host[:port]``) besides the hub's own whose pages may
    open WebSockets and send state-changing requests. ``allowed_hosts``: names (without port)
    the hub answers to besides the loopback ones, ``server_host`` and the address a connection
    arrived on; ``"*"`` turns the Host check off. ``live_tokens``: see :class:`TokenChecker`.
    ``cors_paths``: path prefixes that answer CORS themselves (the actions file server), each
    with the origins (``"*"``: any) whose pages may also send state-changing requests below it.
    ``public_paths``: exact paths that need no token (default :data:`PUBLIC_PATHS`).
    ``relayed`` (set by a hub of a cluster): whether a request comes from another hub with the
    cluster's secret; such a request needs no token (that hub checked the client's).

    Used by :class:`DoorMiddleware`, by the endpoints the hub's own HTTP protocol serves
    without ASGI (:mod:`roomhub.transport.callback_websocket`, :mod:`roomhub.transport.direct_http`).
    """

    def __init__(self, auth: AuthConfig, allowed_origins: Collection[str],
                 live_tokens: Collection[str] = (), *, allowed_hosts: Collection[str] = (),
                 server_host: str | None = None,
                 cors_paths: Mapping[str, Collection[str]] | None = None,
                 public_paths: Collection[str] = PUBLIC_PATHS) -> None:
        self.public_paths = frozenset(public_paths)
        self.cors_paths = {prefix.rstrip("/"): frozenset(o.rstrip("/") for o in origins)
                           for prefix, origins in (cors_paths or {}).items() if origins}
        self.checker = TokenChecker(auth, live_tokens) if auth.enabled else None
        self.allowed_origins = frozenset(o.rstrip("/") for o in allowed_origins)
        self.any_host = "*" in allowed_hosts
        names = {name.lower().strip("[]") for name in allowed_hosts}
        if server_host and server_host not in ("0.0.0.0", "::", ""):
            names.add(server_host.lower().strip("[]"))
        self.allowed_hosts = frozenset(names)
        # In a cluster: whether a request comes from another hub of it (the shared secret), which
        # checked the client's token already with tokens this hub may not know (its programs').
        self.relayed: Callable[[Scope], bool | None] | None = None

    def host_refusal(self, scope: Scope) -> tuple[int, str] | None:
        """None if the request has one ``Host`` header naming this hub, else ``(400 or 421, message)``."""
        hosts = [value for name, value in scope.get("headers", ()) if name == b"host"]
        if len(hosts) > 1:  # RFC 9112 section 3.2: answered with 400, as a missing one
            return 400, "the Host header is repeated"
        if self.any_host:
            return None
        if not hosts:
            return 400, "the Host header is missing"
        host = hosts[0].decode("latin-1")
        name = host_name(host)
        if name is None:
            return 400, f"the Host header {host!r} is malformed"
        server = scope.get("server")
        if name in self.allowed_hosts or is_loopback_name(name) or (server and name == server[0]):
            return None
        return 421, f"this hub does not serve the host {name!r} (see server.allowed_hosts)"

    def origin_refusal(self, scope: Scope) -> tuple[int, str] | None:
        """None unless a browser page of a foreign origin opens a WebSocket or sends a
        state-changing request; then ``(403, message)``."""
        if scope["type"] == "websocket":
            what = "WebSocket"
        elif scope.get("method") in STATE_CHANGING:
            what = scope["method"]
        else:
            return None
        headers = _headers(scope)
        origin = headers.get("origin")
        if what != "WebSocket" and self._cors_allows(scope.get("path", ""), origin):
            return None
        if origin is not None:
            if origin_allowed(scope, self.allowed_origins):
                return None
            return 403, f"origin {origin} is not allowed (see server.allowed_origins)"
        if headers.get("sec-fetch-site") == "cross-site":
            return 403, f"a cross-site {what} request is not allowed"
        return None

    def _cors_allows(self, path: str, origin: str | None) -> bool:
        """Whether ``path`` lies below a ``cors_paths`` prefix that allows ``origin``."""
        for prefix, origins in self.cors_paths.items():
            if path == prefix or path.startswith(prefix + "/"):
                return "*" in origins or (origin is not None and origin.rstrip("/").lower() in origins)
        return False

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """None if the request may pass, else ``(HTTP status, message)``: 400 for a missing or
        malformed ``Host``, 421 for a host the hub does not serve, 403 for a refused origin, 401
        for a missing or bad token; each refusal is logged.

        ``scope`` needs ``type`` (``"http"`` or ``"websocket"``), ``method`` (HTTP), ``path``,
        ``headers`` (lower-case byte pairs), ``query_string``, ``client`` and ``server``, as in ASGI."""
        refusal = self.host_refusal(scope) or self.origin_refusal(scope)
        if refusal is not None:
            log.warning("refused %s %s from %s: %s", _kind(scope), scope.get("path"), _peer(scope),
                        refusal[1])
            return refusal
        if (self.checker is not None and scope.get("path") not in self.public_paths
                and not (self.relayed is not None and self.relayed(scope))):
            reason = self.checker.check(token_of(scope))
            if reason is not None:
                log.info("refused %s %s from %s: %s", _kind(scope), scope.get("path"), _peer(scope), reason)
                return 401, reason
        return None


def _kind(scope: Scope) -> str:
    return "WebSocket" if scope["type"] == "websocket" else scope.get("method", "HTTP")


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "?"


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
        await send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION, "reason": message[:120]})
