"""The public Python API of the actions face: which handlers and processes a hub serves.

An API is built from a dict (Igor's shape; nested dicts flatten to dotted
names at every level) and/or with decorators::

    from roomhub.actions import ActionsAPI

    API = ActionsAPI({"echo": echo, "events": {"create": create}})

    @API.action("hello")
    async def hello(output, data: HelloIn, *, session, scope):
        output.send("working")
        return f"Hello {data.name}"

    @API.process("counter")
    async def counter(output, *, scope, sessions):
        ...

The configuration names the object as ``"package.module:API"`` (a plain dict
works too). Handlers get ``(output, data)`` and, if their signature accepts
them, the ``session`` and ``scope`` keyword arguments. They may be ``async
def``, plain functions (run in the hub's thread pool), or (async) generators
whose items are sent as data frames. A return value other than None is sent
as the last data frame. If ``data`` is annotated (a pydantic model, a
``TypedDict``, ``int``...), it is validated first and a mismatch is answered
with error code 422.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import threading
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

HandlerFn = Callable[..., Any]


class APIError(Exception):
    """An API that cannot be served (bad name, not importable, not a handler)."""


def flatten(tree: Mapping[str, Any], separator: str = ".", prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": f}}`` -> ``{"a.b": f}``, with ``separator`` at every level."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if not isinstance(key, str) or not key:
            raise APIError(f"action names must be non-empty strings, got {key!r}")
        name = f"{prefix}{separator}{key}" if prefix else key
        if isinstance(value, Mapping):
            flat.update(flatten(value, separator, name))
        else:
            flat[name] = value
    return flat


def _accepted_kwargs(fn: Callable[..., Any], names: tuple[str, ...]) -> frozenset[str]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return frozenset(names)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return frozenset(names)
    return frozenset(p.name for p in params if p.name in names and p.kind is not p.POSITIONAL_ONLY)


def _data_adapter(fn: Callable[..., Any]) -> TypeAdapter[Any] | None:
    """A validator for the annotation of the handler's second parameter, if it has a useful one."""
    try:
        params = list(inspect.signature(fn).parameters.values())
        hints = typing.get_type_hints(fn)
    except (TypeError, ValueError, NameError):
        return None
    if len(params) < 2 or params[1].name not in hints:
        return None
    annotation = hints[params[1].name]
    if annotation in (Any, object):
        return None
    try:
        return TypeAdapter(annotation)
    except Exception as exc:
        raise APIError(f"cannot validate data as {annotation!r}: {exc}") from None


def _kind(fn: Callable[..., Any]) -> str:
    call = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else getattr(fn, "__call__", fn)  # noqa: B004
    if inspect.isasyncgenfunction(call):
        return "asyncgen"
    if inspect.iscoroutinefunction(call):
        return "async"
    if inspect.isgeneratorfunction(call):
        return "syncgen"
    return "sync"


@dataclass(frozen=True)
class Handler:
    """One action: ``fn`` and how to call it (``kind``: async, asyncgen, sync, syncgen)."""

    name: str
    fn: HandlerFn
    kind: str
    kwargs: frozenset[str]
    adapter: TypeAdapter[Any] | None = None

    @classmethod
    def of(cls, name: str, fn: HandlerFn) -> Handler:
        if not callable(fn):
            raise APIError(f"handler {name!r} is not callable: {fn!r}")
        return cls(name, fn, _kind(fn), _accepted_kwargs(fn, ("session", "scope")), _data_adapter(fn))


@dataclass(frozen=True)
class ProcessSpec:
    """A background process: an ``async def``, a plain function (run in a thread) or a Thread.

    Functions are called as ``fn(output, *, scope, sessions, process_id, stop)``
    (only the keyword arguments they accept; ``stop`` is a
    :class:`threading.Event` set at shutdown, for plain functions; ``sessions``
    maps a session id, or the client id a connection took with
    ``introduce_self``, to that session's data). A
    ``threading.Thread`` (an instance, or a subclass instantiated at each
    start) gets Igor's attributes ``process_id``, ``output``,
    ``scope``, ``sessions`` and ``stop`` set before it is started (daemon).
    """

    name: str
    target: Any
    kind: str  # async, sync, thread
    kwargs: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, name: str, target: Any) -> ProcessSpec:
        if isinstance(target, threading.Thread) or (
            isinstance(target, type) and issubclass(target, threading.Thread)
        ):
            return cls(name, target, "thread")
        if not callable(target):
            raise APIError(f"process {name!r} is neither a function nor a Thread: {target!r}")
        kind = "async" if _kind(target) == "async" else "sync"
        names = ("scope", "sessions", "process_id", "stop")
        return cls(name, target, kind, _accepted_kwargs(target, names))


class ActionsAPI:
    """Handlers by action name and background processes by id."""

    def __init__(self, handlers: Mapping[str, Any] | None = None, separator: str = ".") -> None:
        self.separator = separator
        self.handlers: dict[str, Handler] = {}
        self.processes: dict[str, ProcessSpec] = {}
        if handlers:
            self.add_all(handlers)

    def add(self, name: str, fn: HandlerFn) -> None:
        """Register ``fn`` as the action ``name``; a name already taken is an error."""
        if name in self.handlers:
            raise APIError(f"action {name!r} is registered twice")
        if name == "introduce_self":
            raise APIError("'introduce_self' is reserved (session resume)")
        self.handlers[name] = Handler.of(name, fn)

    def add_all(self, tree: Mapping[str, Any]) -> None:
        """Register a dict of handlers; nested dicts give dotted names."""
        for name, fn in flatten(tree, self.separator).items():
            self.add(name, fn)

    def action(self, name: str | HandlerFn | None = None) -> Any:
        """Decorator: ``@api.action`` (the function's name) or ``@api.action("a.b")``."""
        if callable(name):
            self.add(name.__name__, name)
            return name

        def register(fn: HandlerFn) -> HandlerFn:
            self.add(name or fn.__name__, fn)
            return fn

        return register

    def add_process(self, process_id: str, target: Any) -> None:
        """Register a process (Igor's ``add_process``): async/sync function or Thread."""
        if process_id in self.processes:
            raise APIError(f"process {process_id!r} is registered twice")
        self.processes[process_id] = ProcessSpec.of(process_id, target)

    def process(self, process_id: str | None = None) -> Callable[[Any], Any]:
        """Decorator: ``@api.process("counter")`` registers a background function."""

        def register(fn: Any) -> Any:
            self.add_process(process_id or fn.__name__, fn)
            return fn

        return register


def load_api(reference: str, pythonpath: list[Path] | None = None) -> ActionsAPI:
    """Import ``"package.module:attribute"`` and return it as an :class:`ActionsAPI`.

    The attribute may be an :class:`ActionsAPI` or a dict of handlers (nested
    dicts flatten). ``pythonpath`` folders are
    put in front of ``sys.path`` first. Raises :class:`APIError` with the
    reason otherwise.
    """
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise APIError(f"api {reference!r} must look like 'package.module:API'")
    for folder in reversed(pythonpath or []):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise APIError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    try:
        obj: Any = module
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise APIError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if isinstance(obj, ActionsAPI):
        return obj
    if isinstance(obj, Mapping):
        return ActionsAPI(obj)
    raise APIError(f"{reference} is a {type(obj).__name__}, not an ActionsAPI or a dict of handlers")
