"""The opt-in file server: confinement below its root, size limits, auth (real HTTP on loopback)."""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest
from actions_helpers import actions_config

PREFIX = "/actions/files"


def files_config(tmp_path, root, extra=""):
    return actions_config(
        tmp_path / "cfg",
        more=f"""
[actions.files]
enabled = true
root = "{root}"
max_bytes = 1000
{extra}
""",
    )


async def raw_request(port: int, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
    """An HTTP/1.1 request with ``target`` sent byte for byte (no client-side normalisation)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status = int(response.split(b" ", 2)[1])
    return status, response.split(b"\r\n\r\n", 1)[1]


@pytest.fixture
def layout(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret")
    (root / "hello.txt").write_text("hello")
    os.symlink(outside / "secret.txt", root / "link.txt")
    os.symlink(outside, root / "linkdir")
    return root, outside


async def test_get_put_delete_below_the_root(tmp_path, in_process_hub, layout):
    root, _ = layout
    async with (
        in_process_hub(files_config(tmp_path, root)) as h,
        httpx.AsyncClient(base_url=h.base) as http,
    ):
        r = await http.get(f"{PREFIX}/hello.txt")
        assert (
            r.status_code == 200 and r.text == "hello" and r.headers["content-type"].startswith("text/plain")
        )
        r = await http.put(f"{PREFIX}/sub/dir/new.json", content=b'{"a": 1}')
        assert r.status_code == 201 and r.json()["bytes"] == 8
        assert (root / "sub" / "dir" / "new.json").read_bytes() == b'{"a": 1}'
        r = await http.put(f"{PREFIX}/sub/dir/new.json", content=b"2")
        assert r.status_code == 200
        r = await http.post(f"{PREFIX}/igor.txt", content=b"saved")  # Igor's verb
        assert r.json()["message"] == "File saved." and (root / "igor.txt").read_text() == "saved"
        assert (await http.get(f"{PREFIX}/sub/dir/new.json")).content == b"2"
        assert (await http.delete(f"{PREFIX}/sub/dir/new.json")).status_code == 200
        assert not (root / "sub" / "dir" / "new.json").exists()
        assert (await http.get(f"{PREFIX}/sub/dir/new.json")).status_code == 404
        assert (await http.delete(f"{PREFIX}/nothing")).status_code == 404
        assert (await http.get(f"{PREFIX}/sub")).status_code == 409
        assert (await http.delete(f"{PREFIX}/sub")).status_code == 409
        assert not list(root.rglob("*.tmp"))


@pytest.mark.parametrize(
    "target",
    [
        f"{PREFIX}/../outside/secret.txt",
        f"{PREFIX}/sub/../../outside/secret.txt",
        f"{PREFIX}/%2e%2e/outside/secret.txt",
        f"{PREFIX}/..%2Foutside%2Fsecret.txt",
        f"{PREFIX}/sub%2F..%2F..%2Foutside%2Fsecret.txt",
        f"{PREFIX}/%5c..%5coutside%5csecret.txt",
        f"{PREFIX}//etc/passwd",
        f"{PREFIX}/%2Fetc%2Fpasswd",
        f"{PREFIX}/link.txt",
        f"{PREFIX}/linkdir/secret.txt",
        f"{PREFIX}/hello.txt%00.png",
    ],
)
async def test_paths_resolving_outside_are_refused(tmp_path, in_process_hub, layout, target):
    root, outside = layout
    async with in_process_hub(files_config(tmp_path, root)) as h:
        for method in ("GET", "PUT", "DELETE"):
            status, body = await raw_request(h.port, method, target, b"pwned")
            assert status in (400, 403, 404), (method, target, status, body)
            assert b"top secret" not in body and b"root:" not in body
        assert (outside / "secret.txt").read_text() == "top secret"
        assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


async def test_size_limits(tmp_path, in_process_hub, layout):
    root, _ = layout
    (root / "big.bin").write_bytes(b"x" * 1001)
    async with (
        in_process_hub(files_config(tmp_path, root)) as h,
        httpx.AsyncClient(base_url=h.base) as http,
    ):
        assert (await http.get(f"{PREFIX}/big.bin")).status_code == 413
        assert (await http.put(f"{PREFIX}/up.bin", content=b"y" * 1001)).status_code == 413

        async def chunks():  # no Content-Length: counted while streaming
            for _ in range(20):
                yield b"z" * 100

        assert (await http.put(f"{PREFIX}/up.bin", content=chunks())).status_code == 413
        assert not (root / "up.bin").exists()
        assert (await http.put(f"{PREFIX}/up.bin", content=b"y" * 1000)).status_code == 201


async def test_read_only(tmp_path, in_process_hub, layout):
    root, _ = layout
    async with (
        in_process_hub(files_config(tmp_path, root, "read_only = true")) as h,
        httpx.AsyncClient(base_url=h.base) as http,
    ):
        assert (await http.get(f"{PREFIX}/hello.txt")).status_code == 200
        assert (await http.put(f"{PREFIX}/hello.txt", content=b"x")).status_code == 405
        assert (await http.delete(f"{PREFIX}/hello.txt")).status_code == 405
        assert (root / "hello.txt").read_text() == "hello"


async def test_same_auth_as_the_hub(tmp_path, in_process_hub, layout):
    root, _ = layout
    config = files_config(tmp_path, root)
    config.write_text('[server.auth]\ntokens = ["s3cret-token"]\n' + config.read_text())
    async with in_process_hub(config) as h, httpx.AsyncClient(base_url=h.base) as http:
        assert (await http.get(f"{PREFIX}/hello.txt")).status_code == 401
        assert (await http.put(f"{PREFIX}/x.txt", content=b"x")).status_code == 401
        assert not (root / "x.txt").exists()
        ok = await http.get(f"{PREFIX}/hello.txt", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200 and ok.text == "hello"


async def test_off_unless_enabled(tmp_path, in_process_hub):
    async with (
        in_process_hub(actions_config(tmp_path / "cfg")) as h,
        httpx.AsyncClient(base_url=h.base) as http,
    ):
        assert (await http.get(f"{PREFIX}/anything")).status_code == 404
