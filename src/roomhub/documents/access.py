"""The access-control hook: who may read or write which document.

``documents.access = "package.module:function"`` names a function called
once per connection, before it joins, with an :class:`AccessRequest`. It
returns (or, if it is a coroutine function, resolves to) ``"allow"``,
``"read-only"`` or ``"deny"`` (or an :class:`Access`). A hook that raises or
returns anything else denies, and the error is logged.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

log = logging.getLogger("roomhub.documents.access")


class Access(StrEnum):
    ALLOW = "allow"
    READ_ONLY = "read-only"
    DENY = "deny"


@dataclass(frozen=True)
class AccessRequest:
    """One connection asking for a document room.

    ``headers`` have lower-case names; ``query`` is the URL's query string;
    ``client`` is ``(host, port)`` when known.
    """

    room: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    client: tuple[str, int] | None


AccessHook = Callable[[AccessRequest], "Access | str | Awaitable[Access | str]"]


class AccessHookError(Exception):
    """The configured hook cannot be imported."""


def load_hook(path: str | None) -> AccessHook | None:
    """Import ``"module:function"``; None for None. Raises :class:`AccessHookError` with why."""
    if path is None:
        return None
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise AccessHookError(f"documents.access: cannot import {module_name!r}: {exc}") from exc
    hook = getattr(module, attr, None)
    if not callable(hook):
        raise AccessHookError(f"documents.access: {module_name!r} has no function {attr!r}")
    return hook


async def decide(hook: AccessHook | None, request: AccessRequest) -> Access:
    """Run ``hook`` (None allows everything); errors and unknown answers deny."""
    if hook is None:
        return Access.ALLOW
    try:
        answer: Any = hook(request)
        if inspect.isawaitable(answer):
            answer = await answer
        return Access(answer)
    except Exception as exc:
        log.error("access hook failed for room %r, denying: %r", request.room, exc)
        return Access.DENY
