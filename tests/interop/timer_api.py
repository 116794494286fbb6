"""Actions the timer app (cezary986/timer) calls through its IgorService, written the way Igor's
README shows handlers: plain functions ``(out, data, **kwargs)`` in a nested dict, flattened to
``events.get``, ``events.add`` and ``events.set_background_image``. The events live in the scope
(the app kept them in a database it put there)."""

from __future__ import annotations

from roomhub.actions import flatten


def get_events(out, data, **kwargs):
    events = kwargs["scope"].setdefault("events", {})
    out.send(list(events.values()))


def add_event(out, event, **kwargs):
    events = kwargs["scope"].setdefault("events", {})
    event["id"] = len(events) + 1
    events[event["id"]] = event
    out.send(event)


def set_event_background_image(out, data, **kwargs):
    event = kwargs["scope"]["events"][data["eventId"]]
    event["backgroundImage"] = data["filePath"]
    out.send()


ACTIONS = {
    "events": {
        "get": get_events,
        "add": add_event,
        "set_background_image": set_event_background_image,
    },
}

API = flatten(ACTIONS)
