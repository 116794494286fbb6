"""The backends face's wire shapes, sans I/O: queries, install inputs, fingerprints, events.

Follows W3Nest's backends client (``@w3nest/webpm-client``) field for field
where it has one:

- **queries**: ``name``, ``name#<npm semver range>``, ``name#<range> as alias``
  (e.g. ``"pyrun_backend#^0.2.0 as pyRunner"``); ranges are npm's
  (``^0.1.0``, ``~1.2``, ``>=1 <2``, ``1.x``, ``*``), resolved to the newest
  matching version (:func:`select_version`);
- **install inputs**: a list of queries, or ``{modules, configurations,
  partition}`` where ``configurations`` maps a backend name to
  ``{build: {str: str}, dockerfile?: str}`` (``buildArgs`` is accepted as
  the old name of ``build``) (:func:`parse_install`);
- **progress events** (JSON text frames on the partition socket):
  ``DownloadBackendEvent {name, version, event: started|succeeded|failed}``,
  ``InstallBackendEvent {installId, name, version, event: started|succeeded|failed}``,
  ``StartBackendEvent {uid, partitionId, name, version, event: starting|listening|failed}``,
  plus roomhub's ``BackendLog {stage: install|start, text, ...}`` (one per
  build or server output line), ``BackendStopped {uid, reason}``,
  ``InstallFailed {installId, error, detail}`` and the socket's greeting
  ``Partition {partitionId, owner, instances}``. Every event carries
  ``type`` (W3Nest's label) and ``installId`` when it belongs to an install.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import semantic_version as sv
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ALIAS_RE = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]{0,63}$")
QUERY_RE = re.compile(r"^\s*(?P<name>[^#\s]+)(?:#(?P<range>[^\s].*?))?(?:\s+as\s+(?P<alias>\S+))?\s*$")
DEFAULT_PARTITION = "Default"
PARTITION_HEADER = "x-backends-partition"
OWNER_HEADER = "x-backends-owner"
INSTALL_ID_HEADER = "x-install-id"

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-connection",
})
"""Hop-by-hop headers (RFC 9110 section 7.6.1): the proxy passes none of them on, either way."""
NOT_FORWARDED = HOP_BY_HOP | {b"host", b"x-backends-partition", b"expect"}
"""Request headers the proxy does not pass to a backend (it sets its own ``host`` and partition,
and answers ``Expect: 100-continue`` itself)."""


def forwarding_headers(scope: dict[str, Any], partition: str, prefix: str) -> list[tuple[bytes, bytes]]:
    """The headers the proxy adds to a request for a backend: ``X-Backends-Partition`` and
    ``X-Forwarded-For/-Proto/-Host/-Prefix`` (``prefix``: the backend's path under the hub).
    ``scope``: the ASGI-style request (``headers`` as lower-case byte pairs, ``client``, ``scheme``)."""
    host = next((value for name, value in scope["headers"] if name == b"host"), b"")
    client = scope.get("client") or ("", 0)
    return [
        (b"x-backends-partition", partition.encode()),
        (b"x-forwarded-for", str(client[0]).encode()),
        (b"x-forwarded-proto", b"https" if scope.get("scheme") in ("https", "wss") else b"http"),
        (b"x-forwarded-host", host),
        (b"x-forwarded-prefix", prefix.encode()),
    ]


class BadRequest(Exception):
    """Client input that cannot be used: ``error`` is a stable code, ``detail`` the message.

    Endpoints answer it with ``status`` and ``{"error": error, "detail": detail, **extra}``.
    """

    status = 400

    def __init__(self, error: str, detail: str, status: int | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail
        if status is not None:
            self.status = status
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail, **self.extra}


@dataclass(frozen=True)
class Query:
    """One parsed query string: ``name``, npm ``range`` (``"*"`` if absent) and ``alias``."""

    name: str
    range: str = "*"
    alias: str | None = None

    @property
    def spec(self) -> sv.NpmSpec:
        return npm_spec(self.range)

    def __str__(self) -> str:
        text = self.name if self.range == "*" else f"{self.name}#{self.range}"
        return f"{text} as {self.alias}" if self.alias else text


@functools.lru_cache(maxsize=512)
def npm_spec(text: str) -> sv.NpmSpec:
    """An npm semver range; raises :class:`BadRequest` (``bad-version-range``) if invalid.

    Parsed ranges are cached (the proxy meets the same few on every request)."""
    try:
        return sv.NpmSpec(text)
    except ValueError as exc:
        raise BadRequest("bad-version-range", f"invalid semver range {text!r}: {exc}") from None


def parse_version(text: str) -> sv.Version:
    """A strict semver version (``1.2.3``, ``0.1.0-rc.1``); raises ``ValueError``."""
    return sv.Version(text)


def parse_query(text: str) -> Query:
    """Parse ``name``, ``name#range`` or ``name#range as alias``.

    Raises :class:`BadRequest` (``bad-query``) naming what is wrong.
    """
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("bad-query", f"a backend query must be a non-empty string, got {text!r}")
    match = QUERY_RE.match(text)
    if not match:
        raise BadRequest("bad-query", f"cannot parse backend query {text!r} (expected 'name#range as alias')")
    name, rng, alias = match.group("name", "range", "alias")
    if not NAME_RE.match(name):
        raise BadRequest("bad-query", f"invalid backend name {name!r} in query {text!r}")
    if alias is not None and not ALIAS_RE.match(alias):
        raise BadRequest("bad-query", f"invalid alias {alias!r} in query {text!r} (a JavaScript identifier)")
    rng = (rng or "*").strip()
    npm_spec(rng)
    return Query(name, rng, alias)


def select_version(versions: Iterable[str], rng: str) -> str | None:
    """The newest of ``versions`` matching the npm range ``rng``, or None."""
    return _select_version(tuple(sorted(versions)), rng)


@functools.lru_cache(maxsize=512)
def _select_version(versions: tuple[str, ...], rng: str) -> str | None:
    best = npm_spec(rng).select([sv.Version(v) for v in versions])
    return str(best) if best is not None else None


def api_key(version: str) -> str:
    """W3Nest's API key: the left-most non-zero component (``0.2.3`` -> ``02``, ``1.4.0`` -> ``1``)."""
    v = sv.Version(version)
    if v.major:
        return str(v.major)
    if v.minor:
        return f"0{v.minor}"
    return f"00{v.patch}"


class BackendConfiguration(BaseModel):
    """Per-backend options of an install: ``build`` options and an optional ``dockerfile``.

    ``dockerfile`` is the Dockerfile's text (W3Nest's client downloads a URL
    and sends the text, so a value without a newline is refused here).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    build: dict[str, str] = Field(default_factory=dict, alias="build")
    dockerfile: str | None = Field(default=None, max_length=256 * 1024)

    @model_validator(mode="before")
    @classmethod
    def _old_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "buildArgs" in data:
            data = dict(data)
            old = data.pop("buildArgs")
            data.setdefault("build", old)
        return data

    @field_validator("build", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, str) else json.dumps(v) if isinstance(v, (list, dict)) else str(v)
                    for k, v in value.items()}
        return value

    @field_validator("dockerfile")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        if value is not None and "\n" not in value:
            raise ValueError("dockerfile must be the Dockerfile's text (a URL must be fetched by the client)")
        return value


class InstallInputs(BaseModel):
    """W3Nest's ``BackendInputs``: ``modules`` queries, ``configurations``, ``partition``."""

    model_config = ConfigDict(extra="forbid")

    modules: list[str] = Field(default_factory=list, max_length=64)
    configurations: dict[str, BackendConfiguration] = Field(default_factory=dict)
    partition: str | None = Field(default=None, max_length=128)


@dataclass
class InstallRequest:
    """A validated install: parsed queries, configurations by name, target partition (or None)."""

    queries: list[Query]
    configurations: dict[str, BackendConfiguration] = field(default_factory=dict)
    partition: str | None = None


def parse_install(body: Any) -> InstallRequest:
    """Validate an install body: a list of queries, or ``{modules, configurations, partition}``.

    Raises :class:`BadRequest` (``bad-install-request`` or ``bad-query``)
    naming the field in fault.
    """
    if isinstance(body, list):
        body = {"modules": body}
    if not isinstance(body, dict):
        raise BadRequest("bad-install-request",
                         "the body must be a list of queries or {modules, configurations, partition}")
    try:
        inputs = InstallInputs.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest("bad-install-request", f"{where}: {first['msg']}") from None
    if not inputs.modules:
        raise BadRequest("bad-install-request", "modules: at least one backend query is needed")
    queries = [parse_query(q) for q in inputs.modules]
    names = [q.name for q in queries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BadRequest("bad-install-request", f"modules: {', '.join(duplicates)} asked more than once")
    return InstallRequest(queries, inputs.configurations, inputs.partition)


def fingerprint(name: str, version: str, build: dict[str, str], dockerfile: str | None = None) -> str:
    """The build key: ``<name>_<version>_`` + 16 hex digits of sha256 over the sorted-key JSON
    of ``{build, dockerfile}`` (W3Nest's key covered only ``build``)."""
    payload = json.dumps({"build": build, "dockerfile": dockerfile}, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return f"{name}_{version}_{digest}"


# -- events -----------------------------------------------------------------------------------

Stage = Literal["install", "start"]


def event(kind: str, **fields: Any) -> dict[str, Any]:
    """An event dict ``{"type": kind, **fields}`` with ``None`` fields left out."""
    return {"type": kind, **{k: v for k, v in fields.items() if v is not None}}


def download_event(name: str, version: str, state: str, install_id: str | None) -> dict[str, Any]:
    return event("DownloadBackendEvent", name=name, version=version, event=state, installId=install_id)


def install_event(name: str, version: str, state: str, install_id: str | None,
                  fingerprint: str | None = None, detail: str | None = None) -> dict[str, Any]:
    return event("InstallBackendEvent", name=name, version=version, event=state, installId=install_id,
                 fingerprint=fingerprint, detail=detail)


def start_event(uid: str, partition: str, name: str, version: str, state: str,
                install_id: str | None, detail: str | None = None) -> dict[str, Any]:
    return event("StartBackendEvent", uid=uid, partitionId=partition, name=name, version=version,
                 event=state, installId=install_id, detail=detail)


def log_event(stage: Stage, name: str, version: str, text: str, *, uid: str | None = None,
              partition: str | None = None, install_id: str | None = None) -> dict[str, Any]:
    return event("BackendLog", stage=stage, name=name, version=version, text=text, uid=uid,
                 partitionId=partition, installId=install_id)


def encode(message: dict[str, Any]) -> str:
    """One compact JSON text frame."""
    return json.dumps(message, separators=(",", ":"))
