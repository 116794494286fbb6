"""The door of every serving path, through real sockets: the Host header must name the hub (DNS
rebinding), foreign pages may not open WebSockets nor change state, and connections that never
finish a request head are closed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from hubtest import raw_exchange, serve_in_loop, write_config
from pageclient import PageClient

TERMINAL = """
[server]
{server}
[pages."/p"]
html = "page.html"
[pages."/p".executors.term]
type = "always"
tty = true
command = ["bash", "--norc", "-i"]
[documents]
store = "memory"
"""
EVIL = "evil.example"


def handshake(path: str, host: str, origin: str | None) -> bytes:
    """A browser's WebSocket opening handshake (RFC 6455 section 4.1) with these Host and Origin."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def request(method: str, path: str, host: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *headers, f"Content-Length: {len(body)}",
             "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response
    return int(response.split(b" ", 2)[1])


@pytest.fixture
async def hub(tmp_path: Path):
    config = write_config(tmp_path / "cfg", TERMINAL.format(server=""))
    async with serve_in_loop(config, tmp_path / "data") as h:
        yield h


async def test_a_rebound_host_gets_no_terminal(hub) -> None:
    """A page of evil.example whose name resolves to 127.0.0.1 is same-origin with itself: only
    the Host check stops its handshake to the terminal's room."""
    port = hub.port
    for path in ("/p/ws?roomName=r", "/yjs/doc"):  # an ASGI socket and a callback socket
        response = await raw_exchange(port, handshake(path, f"{EVIL}:{port}", f"http://{EVIL}:{port}"),
                                      within=10)
        assert status_of(response) == 421, response
        assert b"does not serve the host 'evil.example'" in response
    assert hub.hub.face("pages").rooms["/p"].rooms == {}  # no room, no terminal started
    # the hub's own page still gets its terminal
    client = await PageClient.connect(f"{hub.ws}/p/ws?roomName=r", origin=hub.base)
    await client.wait_type(None, "joined")
    await client.close()


async def test_every_http_path_checks_the_host(hub) -> None:
    port = hub.port
    for path in ("/api/health", "/p", "/static/roomhub.js", "/backends/x/1/"):
        assert status_of(await raw_exchange(port, request("GET", path, f"{EVIL}:{port}"))) == 421
    for host in (f"127.0.0.1:{port}", f"127.7.7.7:{port}", f"[::1]:{port}", "localhost", "LOCALHOST:1"):
        assert status_of(await raw_exchange(port, request("GET", "/api/health", host))) == 200, host
    for host in ("", "a b", "[::1", "localhost:port", "user@localhost"):
        response = await raw_exchange(port, request("GET", "/api/health", host))
        assert status_of(response) == 400 and b"Host header" in response, host
    no_host = b"GET /api/health HTTP/1.0\r\n\r\n"
    assert status_of(await raw_exchange(port, no_host)) == 400
    two_hosts = request("GET", "/api/health", "localhost", f"Host: {EVIL}")
    assert status_of(await raw_exchange(port, two_hosts)) == 400


async def test_state_changing_requests_from_foreign_pages_are_refused(hub) -> None:
    port = hub.port
    delete = ("DELETE", "/api/rooms/p/r")
    for headers in (["Origin: http://evil.example"], ["Origin: null"], ["Origin: http://[::1"],
                    [f"Origin: http://localhost:{port + 1}"], ["Sec-Fetch-Site: cross-site"]):
        response = await raw_exchange(port, request(*delete, f"127.0.0.1:{port}", *headers))
        assert status_of(response) == 403 and b"not allowed" in response, headers
    # the hub's own pages, same-site tools and clients that are not browsers pass (404: no room)
    for headers in ([f"Origin: http://127.0.0.1:{port}"], ["Sec-Fetch-Site: same-origin"], []):
        response = await raw_exchange(port, request(*delete, f"127.0.0.1:{port}", *headers))
        assert status_of(response) == 404, (headers, response)
    # a safe method from anywhere is answered (the page cannot read it without CORS)
    response = await raw_exchange(port, request("GET", "/api/health", f"127.0.0.1:{port}",
                                                "Origin: http://evil.example"))
    assert status_of(response) == 200


async def test_allowed_hosts_let_configured_names_in(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg", TERMINAL.format(server='allowed_hosts = ["Hub.Example"]'))
    async with serve_in_loop(config, tmp_path / "data") as h:
        for host, status in ((f"hub.example:{h.port}", 200), ("HUB.example", 200), (EVIL, 421)):
            assert status_of(await raw_exchange(h.port, request("GET", "/api/health", host))) == status
        reader, writer = await asyncio.open_connection("127.0.0.1", h.port)
        writer.write(handshake("/p/ws?roomName=r", "hub.example", "http://hub.example"))
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 101 ")
        writer.close()


async def test_allowed_hosts_star_turns_the_host_check_off(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg", TERMINAL.format(server='allowed_hosts = ["*"]'))
    async with serve_in_loop(config, tmp_path / "data") as h:
        response = await raw_exchange(h.port, request("GET", "/api/health", EVIL))
        assert status_of(response) == 200
        async with httpx.AsyncClient() as http:  # origins are still checked
            r = await http.delete(f"{h.base}/api/rooms/p/r", headers={"origin": f"http://{EVIL}"})
            assert r.status_code == 403


async def test_a_bad_allowed_host_is_a_config_error(tmp_path: Path) -> None:
    from roomhub.config import ConfigError, load_config

    config = write_config(tmp_path / "cfg", TERMINAL.format(server='allowed_hosts = ["hub.example:80"]'))
    with pytest.raises(ConfigError, match=r"server\.allowed_hosts: .*not a host name without port"):
        await asyncio.to_thread(load_config, config)


# -- connections that never finish a request head ------------------------------------------------

SLOW = """
[server.limits]
header_timeout = {timeout}
max_pending_connections = {pending}
[documents]
store = "memory"
"""


@pytest.fixture
async def strict_hub(tmp_path: Path):
    config = write_config(tmp_path / "cfg", SLOW.format(timeout=1, pending=1000))
    async with serve_in_loop(config, tmp_path / "data") as h:
        yield h


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response with a Content-Length: (head, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                  if line.startswith(b"content-length:"))
    return head, await asyncio.wait_for(reader.readexactly(length), 10)


async def until_closed(reader: asyncio.StreamReader, within: float = 15.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and the seconds that took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        data = await asyncio.wait_for(reader.read(-1), within)
    except TimeoutError:
        raise AssertionError(f"the connection is still open after {within} s") from None
    return data, loop.time() - started


async def test_a_silent_connection_is_closed_after_the_header_timeout(strict_hub) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", strict_hub.port)
    data, took = await until_closed(reader)
    assert data == b"" and 0.8 < took < 10  # nothing to answer: closed
    writer.close()


@pytest.mark.parametrize("head", [
    b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
    b"GET /yjs/doc HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nX-Slow: ",  # a callback socket
])
async def test_a_slowloris_gets_408_after_the_header_timeout(strict_hub, head: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", strict_hub.port)

    async def drip() -> None:  # one more byte of the head every 0.3 s, forever
        writer.write(head)
        while True:
            await asyncio.sleep(0.3)
            writer.write(b"x")
            await writer.drain()

    dripping = asyncio.create_task(drip())
    try:
        data, took = await until_closed(reader)
    finally:
        dripping.cancel()
        writer.close()
    assert data.startswith(b"HTTP/1.1 408 ") and b"did not complete within 1 s" in data, data
    assert took < 10


async def test_complete_requests_and_idle_kept_alive_connections_are_not_cut(strict_hub) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", strict_hub.port)
    request = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    writer.write(request)
    head, _ = await read_response(reader)
    assert head.startswith(b"HTTP/1.1 200 ")
    await asyncio.sleep(2)  # idle between requests, longer than header_timeout
    writer.write(request)
    head, _ = await read_response(reader)
    assert head.startswith(b"HTTP/1.1 200 ")
    data, took = await until_closed(reader)  # uvicorn's keep-alive timeout (5 s) ends it
    assert data == b"" and 3 < took < 12
    writer.close()


async def test_a_new_connection_closes_the_oldest_of_those_awaiting_their_head(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg", SLOW.format(timeout=60, pending=3))
    async with serve_in_loop(config, tmp_path / "data") as h:
        silent = []
        for _ in range(3):
            silent.append(await asyncio.open_connection("127.0.0.1", h.port))
            await asyncio.sleep(0.2)  # taken by the hub in this order
        reader, writer = await asyncio.open_connection("127.0.0.1", h.port)
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head, _ = await read_response(reader)  # served at once
        assert head.startswith(b"HTTP/1.1 200 ")
        data, took = await until_closed(silent[0][0])
        assert data == b"" and took < 5  # the oldest made room, long before its 60 s
        for other_reader, _ in silent[1:]:  # the younger ones are still waiting
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(other_reader.read(1), 0.5)
        for _, w in [*silent, (reader, writer)]:
            w.close()
