"""The hub's metrics, in Prometheus' text exposition format (prometheus-client), one
:class:`CollectorRegistry` per hub so that several hubs in one process keep apart.

Names follow Prometheus' conventions (``roomhub_`` prefix, ``_total`` counters, ``_seconds`` and
``_bytes`` units). What changes per frame is counted by the transport in plain integers
(:class:`~roomhub.transport.traffic.Traffic`, one per face) and read by a collector at scrape
time; rooms and members are read from the faces' registries then too. Events that happen a few
times a second at most (a room created, an executor started, an action call, a proxied request)
go to prometheus-client's counters and histograms directly.

The hub also samples a few figures every :data:`SAMPLE_INTERVAL` seconds into
:attr:`HubMetrics.history` (connections, messages per second, event loop lag) for the admin
page's charts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ..transport.traffic import Traffic


class WatchedRegistry(Protocol):
    """What :meth:`HubMetrics.watch` uses of a :class:`~roomhub.core.rooms.RoomRegistry` (which
    imports this module)."""

    rooms: dict[str, Any]
    metrics: RoomMetrics | None

# No ``_created`` series beside each counter and histogram: a scraper needs none, and they would
# double what a scrape carries (prometheus-client's switch is process-wide).
disable_created_metrics()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of the text exposition format (Prometheus' "Exposition formats", 0.0.4)."""

SAMPLE_INTERVAL = 2.0
"""Seconds between two samples of :attr:`HubMetrics.history` (and of the event loop lag)."""

HISTORY_SAMPLES = 150
"""Samples kept in :attr:`HubMetrics.history`: five minutes at :data:`SAMPLE_INTERVAL`."""

# Buckets in seconds: fast paths (a proxied request, a store commit) up to slow ones (a build).
FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SLOW = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class RoomMetrics:
    """What one face's :class:`~roomhub.core.rooms.RoomRegistry` records: joins, leaves, creation
    and teardown durations (seconds), labelled with the face."""

    __slots__ = ("created", "face", "joins", "leaves", "torn_down", "traffic")

    def __init__(self, metrics: HubMetrics, face: str) -> None:
        self.face = face
        self.traffic = metrics.traffic(face)  # what the rooms' sockets carry
        self.joins = metrics.room_joins.labels(face)
        self.leaves = metrics.room_leaves.labels(face)
        self.created = metrics.room_creation.labels(face)
        self.torn_down = metrics.room_teardown.labels(face)


class HubMetrics:
    """Every metric of one hub, in its own :attr:`registry`.

    :meth:`traffic` gives a face's transport counters; :meth:`watch` lists a face's room registry
    (its rooms and members are read at scrape time and it records joins, leaves, creation and
    teardown); :meth:`exposition` renders the registry. The rest are prometheus-client metrics
    the faces record into: executors, the document store, actions calls, backends builds,
    starts and proxied requests.
    """

    def __init__(self, hub_id: str = "") -> None:
        self.hub_id = hub_id
        self.started_at = time.time()
        self.registry = CollectorRegistry()
        self._traffic: dict[str, Traffic] = {}
        self._registries: list[tuple[str, WatchedRegistry]] = []
        self._gauges: list[Callable[[], Iterable[Metric]]] = []
        self.loop_lag = 0.0  # seconds the last sample's timer fired late
        self.history: deque[dict[str, float]] = deque(maxlen=HISTORY_SAMPLES)
        self._last_sample: tuple[float, int, float, float] | None = None
        r = self.registry

        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(name, doc, list(labels), registry=r)

        def histogram(name: str, doc: str, labels: Iterable[str] = (), buckets: Iterable[float] = FAST
                      ) -> Histogram:
            return Histogram(name, doc, list(labels), registry=r, buckets=tuple(buckets))

        self.room_joins = counter("roomhub_room_joins", "Clients that joined a room", ["face"])
        self.room_leaves = counter("roomhub_room_leaves", "Clients that left a room", ["face"])
        self.room_creation = histogram("roomhub_room_creation_seconds",
                                       "Time to create a room (prologues included)", ["face"], SLOW)
        self.room_teardown = histogram("roomhub_room_teardown_seconds",
                                       "Time to tear a room down (epilogues included)", ["face"], SLOW)
        self.executor_starts = counter("roomhub_executor_starts", "Programs started by executors",
                                       ["kind"])
        self.executor_restarts = counter("roomhub_executor_restarts",
                                         "Restarts of 'always' executors' programs", ["kind"])
        self.executor_exits = counter(
            "roomhub_executor_exits",
            "Executors' programs that ended, by outcome (ok, failed, timeout, limit, start_failed)",
            ["kind", "outcome"])
        self.store_commit = histogram("roomhub_document_store_commit_seconds",
                                      "Duration of one document store commit")
        self.store_batch = histogram("roomhub_document_store_commit_updates",
                                     "Document updates written by one store commit", buckets=BATCH)
        self.compactions = counter("roomhub_document_compactions", "Document compactions")
        self.action_calls = counter("roomhub_action_calls",
                                    "Actions calls ended, by outcome (ok, error, cancelled, refused)",
                                    ["outcome"])
        self.action_duration = histogram("roomhub_action_call_duration_seconds",
                                         "Duration of actions calls, by outcome", ["outcome"])
        self.backend_builds = histogram("roomhub_backend_build_duration_seconds",
                                        "Backend builds, by outcome (ok, failed)", ["outcome"], SLOW)
        self.backend_starts = histogram("roomhub_backend_start_duration_seconds",
                                        "Backend instance starts, up to ready, by outcome",
                                        ["outcome"], SLOW)
        self.proxy_requests = counter("roomhub_proxy_requests",
                                      "Requests through the backends proxy, by HTTP status", ["status"])
        self.proxy_duration = histogram("roomhub_proxy_request_duration_seconds",
                                        "Latency of requests through the backends proxy, head to end")
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total...
        r.register(_LiveCollector(self))

    # -- what faces and the transport get ------------------------------------------------
    def traffic(self, face: str) -> Traffic:
        """The transport counters of ``face`` (made on first use)."""
        found = self._traffic.get(face)
        if found is None:
            found = self._traffic[face] = Traffic(face)
        return found

    def watch(self, face: str, registry: WatchedRegistry) -> None:
        """Count ``registry``'s rooms and members under ``face`` and record its room events."""
        self._registries.append((face, registry))
        registry.metrics = RoomMetrics(self, face)

    def gauge(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Add metric families read at scrape time (a face's own gauges)."""
        self._gauges.append(collect)

    def exposition(self) -> bytes:
        """The registry in the text exposition format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)

    # -- what the collector and the admin page read ---------------------------------------
    def faces(self) -> list[str]:
        return sorted({*self._traffic, *(face for face, _ in self._registries)})

    def rooms(self) -> dict[str, tuple[int, int]]:
        """``{face: (rooms, members)}`` now."""
        found: dict[str, tuple[int, int]] = {}
        for face, registry in self._registries:
            rooms, members = found.get(face, (0, 0))
            rooms += len(registry.rooms)
            members += sum(len(room.members) for room in list(registry.rooms.values()))
            found[face] = (rooms, members)
        return found

    def connections(self) -> int:
        return sum(t.open for t in self._traffic.values())

    def messages(self) -> int:
        return sum(t.messages_received + t.messages_sent for t in self._traffic.values())

    def requests(self) -> tuple[float, float]:
        """``(seconds, count)`` summed over the request histograms (actions calls, proxied
        requests) since the hub started."""
        seconds = count = 0.0
        for histogram in (self.action_duration, self.proxy_duration):
            for family in histogram.collect():
                for sample in family.samples:
                    if sample.name.endswith("_sum"):
                        seconds += sample.value
                    elif sample.name.endswith("_count"):
                        count += sample.value
        return seconds, count

    def sample(self, lag: float) -> dict[str, float]:
        """Add one sample to :attr:`history`: time, connections, messages per second since the
        last sample, the mean latency (seconds) of the actions calls and proxied requests that
        ended since the last sample (0 if none), and ``lag`` (seconds the sampling timer fired
        late: how long the event loop made work wait)."""
        now, messages = time.time(), self.messages()
        seconds, count = self.requests()
        rate = latency = 0.0
        if self._last_sample is not None:
            then, before, seconds_before, count_before = self._last_sample
            rate = (messages - before) / max(now - then, 1e-6)
            if count > count_before:
                latency = (seconds - seconds_before) / (count - count_before)
        self._last_sample = (now, messages, seconds, count)
        self.loop_lag = lag
        point = {"time": now, "connections": float(self.connections()), "messages_per_second": rate,
                 "request_latency_seconds": latency, "loop_lag_seconds": lag}
        self.history.append(point)
        return point

    async def run_sampler(self, interval: float = SAMPLE_INTERVAL) -> None:
        """Sample every ``interval`` seconds until cancelled."""
        loop = asyncio.get_running_loop()
        self.sample(0.0)
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            self.sample(max(0.0, loop.time() - due))


class _LiveCollector(Collector):
    """Reads, at scrape time, what is kept as plain numbers: connections, rooms, members,
    messages and bytes per face, closes by code, uptime and the event loop lag."""

    def __init__(self, metrics: HubMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        info = GaugeMetricFamily("roomhub_hub_info", "The hub's id", labels=["hub"])
        info.add_metric([m.hub_id], 1)
        yield info
        yield GaugeMetricFamily("roomhub_uptime_seconds", "Seconds since the hub started",
                                value=time.time() - m.started_at)
        yield GaugeMetricFamily("roomhub_event_loop_lag_seconds",
                                "How late the hub's last periodic timer fired", value=m.loop_lag)
        connections = GaugeMetricFamily("roomhub_connections", "Open WebSocket connections",
                                        labels=["face"])
        opened = CounterMetricFamily("roomhub_connections_opened", "WebSocket connections opened",
                                     labels=["face"])
        closes = CounterMetricFamily("roomhub_connection_closes",
                                     "Connections the hub closed, by close code (4008 slow consumer, "
                                     "1013 limits, 4029 receive rate, 1009 too large...)",
                                     labels=["face", "code"])
        families = {
            "messages_received": CounterMetricFamily("roomhub_messages_received",
                                                     "WebSocket messages received", labels=["face"]),
            "messages_sent": CounterMetricFamily("roomhub_messages_sent", "WebSocket messages sent",
                                                 labels=["face"]),
            "bytes_received": CounterMetricFamily("roomhub_received_bytes",
                                                  "WebSocket payload bytes received", labels=["face"]),
            "bytes_sent": CounterMetricFamily("roomhub_sent_bytes", "WebSocket payload bytes sent",
                                              labels=["face"]),
        }
        for face, t in sorted(m._traffic.items()):
            connections.add_metric([face], t.open)
            opened.add_metric([face], t.opened)
            for attribute, family in families.items():
                family.add_metric([face], getattr(t, attribute))
            for code, count in sorted(t.closes.items()):
                closes.add_metric([face, str(code)], count)
        yield connections
        yield opened
        yield closes
        yield from families.values()
        rooms = GaugeMetricFamily("roomhub_rooms", "Live rooms", labels=["face"])
        members = GaugeMetricFamily("roomhub_room_members", "Clients in live rooms", labels=["face"])
        for face, (count, joined) in sorted(m.rooms().items()):
            rooms.add_metric([face], count)
            members.add_metric([face], joined)
        yield rooms
        yield members
        for collect in m._gauges:
            families_of_face: list[Metric] = []
            with contextlib.suppress(Exception):  # a face's gauge must not break the scrape
                families_of_face = list(collect())
            yield from families_of_face
