"""Sessions with resume tokens (roomhub.core.sessions): reaping after the timeout, the session
limit, closing the store."""

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
