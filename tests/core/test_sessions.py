"""Sessions with resume tokens (roomhub.core.sessions): reaping after the timeout, the session
limit, closing the store, the id form a face chooses (widgets: 16 hex digits)."""

from __future__ import annotations

import asyncio

import pytest

from roomhub.core.sessions import SessionLimitReached, SessionStore


async def test_session_store_reaps_once_on_the_last_timer():
    store = SessionStore(timeout=0.2, max_sessions=2)
    reaped = []
    store.on_reap(reaped.append)
    s = store.create()
    assert store.resume(s.id, "wrong") is None
    store.detach(s)
    await asyncio.sleep(0.1)
    assert store.resume(s.id, s.token) is s
    store.detach(s)
    await asyncio.sleep(0.15)  # the first timer would have fired by now
    assert s.id in store and reaped == []
    await asyncio.sleep(0.15)
    assert s.id not in store and reaped == [s] and store.reaped_count == 1
    assert store.resume(s.id, s.token) is None
    store.drop(s)
    assert store.reaped_count == 1


async def test_session_store_limit_and_close():
    store = SessionStore(timeout=10, max_sessions=2)
    a, b = store.create(), store.create()
    with pytest.raises(SessionLimitReached):
        store.create()
    store.detach(a)
    store.close()
    assert len(store) == 0 and a.reaped and b.reaped and store.reaped_count == 2


async def test_a_face_chooses_the_form_of_its_session_ids_and_never_gets_a_live_one_twice():
    ids = iter(["aaaa", "aaaa", "aaaa", "bbbb"])  # a short form that happens to repeat
    store = SessionStore(timeout=1.0, new_id=lambda: next(ids))
    first, second = store.create(), store.create()
    assert (first.id, second.id) == ("aaaa", "bbbb")
    assert first.token != second.token and len(first.token) >= 32
    assert store.resume("bbbb", first.token) is None and store.resume("bbbb", second.token) is second
