"""The widget tree as a replayable journal (pure, no I/O).

Every call that changes what the browser shows is recorded in call order.
A setter replaces its previous call (same widget, same state key) and moves
to the end; a content setter (``clear``, ``set_rows``...) wipes the items it
replaces; destroying a widget forgets it and every call that referenced it.
Replaying the journal in order into an empty page therefore rebuilds the
same UI: every recorded call was valid when it was made, and the entries
it depended on (creates, earlier items) come before it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import protocol as p


@dataclass(frozen=True)
class Entry:
    kind: str  # "create" | "call" | "listen"
    wid: int
    name: str  # class (create), method (call) or action (listen)
    args: tuple[Any, ...] | list[Any]
    refs: frozenset[int]


def refs_in(value: Any) -> frozenset[int]:
    """Widget ids referenced by ``{"__wid__": N}`` anywhere inside ``value``."""
    found: set[int] = set()
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if p.is_ref(v):
                found.add(v["__wid__"])
            else:
                stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)
    return frozenset(found)


class Journal:
    """Recorded creates, calls and listens of one session, in replay order."""

    def __init__(self) -> None:
        self._entries: dict[Any, Entry] = {}
        self._by_wid: dict[int, set[Any]] = {}
        self._by_ref: dict[int, set[Any]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(tuple(self._entries.values()))

    def _put(self, key: Any, entry: Entry) -> None:
        self._drop(key)
        self._entries[key] = entry
        self._by_wid.setdefault(entry.wid, set()).add(key)
        for ref in entry.refs:
            self._by_ref.setdefault(ref, set()).add(key)

    def _drop(self, key: Any) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        keys = self._by_wid.get(entry.wid)
        if keys is not None:
            keys.discard(key)
        for ref in entry.refs:
            refkeys = self._by_ref.get(ref)
            if refkeys is not None:
                refkeys.discard(key)

    def create(self, wid: int, cls: str, args: list[Any]) -> None:
        self._put(("create", wid), Entry("create", wid, cls, args, refs_in(args)))

    def setter(
        self, wid: int, key: str, method: str, args: list[Any], wipes: frozenset[str] = frozenset()
    ) -> None:
        """Record a setter; it replaces the last one of ``key`` and wipes ``wipes`` items."""
        if wipes:
            for k in tuple(self._by_wid.get(wid, ())):
                entry = self._entries[k]
                if entry.kind == "call" and entry.name in wipes:
                    self._drop(k)
        self._put(("set", wid, key), Entry("call", wid, method, args, refs_in(args)))

    def item(self, wid: int, method: str, args: list[Any]) -> None:
        self._put(("item", next(self._seq)), Entry("call", wid, method, args, refs_in(args)))

    def remove_child(self, wid: int, child: int) -> None:
        """Forget the calls of ``wid`` that attached ``child`` (it was removed)."""
        for k in tuple(self._by_ref.get(child, ())):
            entry = self._entries.get(k)
            if entry is not None and entry.wid == wid and entry.kind == "call":
                self._drop(k)

    def remove_items(self, wid: int, methods: frozenset[str]) -> None:
        for k in tuple(self._by_wid.get(wid, ())):
            if self._entries[k].name in methods and self._entries[k].kind == "call":
                self._drop(k)

    def listen(self, wid: int, action: str) -> None:
        self._put(("listen", wid, action), Entry("listen", wid, action, (), frozenset()))

    def unlisten(self, wid: int, action: str) -> None:
        self._drop(("listen", wid, action))

    def forget(self, wid: int) -> None:
        """``wid`` was destroyed: drop its entries and every call that referenced it."""
        for k in tuple(self._by_wid.pop(wid, ())):
            self._drop(k)
        for k in tuple(self._by_ref.pop(wid, ())):
            self._drop(k)

    def messages(self, next_id: Iterator[int]) -> Iterator[dict[str, Any]]:
        """The replay: one create/call/listen message per entry, ids from ``next_id``."""
        for e in self:
            if e.kind == "create":
                yield p.create(next(next_id), e.wid, e.name, list(e.args))
            elif e.kind == "call":
                yield p.call(next(next_id), e.wid, e.name, list(e.args))
            else:
                yield p.listen(next(next_id), e.wid, e.name)
