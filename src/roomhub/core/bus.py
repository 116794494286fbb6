"""The broadcast bus: how a frame for a room reaches the room's members.

Rooms publish to a topic and subscribe to it; today the bus is in-process
(:class:`LocalBus`). A bus backed by Redis pub/sub could later implement the
same two methods so that several hubs share rooms without touching the faces.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from ..transport.traffic import Frame

log = logging.getLogger("roomhub.bus")

Deliver = Callable[[Frame], None]


class Bus(Protocol):
    def publish(self, topic: str, frame: Frame) -> None:
        """Send ``frame`` (already encoded, sent as is) to every subscriber of ``topic``."""

    def subscribe(self, topic: str, deliver: Deliver) -> Callable[[], None]:
        """Call ``deliver(frame)`` for every frame published on ``topic``; returns unsubscribe."""


class LocalBus:
    """In-process bus: ``publish`` calls the subscribers synchronously."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Deliver]] = {}

    def publish(self, topic: str, frame: Frame) -> None:
        for deliver in self._subscribers.get(topic, ()):
            try:
                deliver(frame)
            except Exception:  # a broken subscriber must not stop the others
                log.exception("subscriber of %s failed", topic)

    def subscribe(self, topic: str, deliver: Deliver) -> Callable[[], None]:
        self._subscribers.setdefault(topic, []).append(deliver)

        def unsubscribe() -> None:
            subs = self._subscribers.get(topic, [])
            if deliver in subs:
                subs.remove(deliver)
            if not subs:
                self._subscribers.pop(topic, None)

        return unsubscribe
