"""The backends face behind the door: a foreign page can neither install a backend nor send a
state-changing request into a partition; programs and curl (no Origin) still can."""

from __future__ import annotations

from pathlib import Path

import httpx
from backends_helpers import hub_config

FOREIGN = {"origin": "http://evil.example"}


async def test_a_foreign_page_cannot_install_nor_post_into_a_partition(tmp_path: Path, catalog: Path,
                                                                      in_process_hub) -> None:
    async with in_process_hub(hub_config(tmp_path, catalog)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=60) as http:
        for headers in (FOREIGN, {"sec-fetch-site": "cross-site"}):
            r = await http.post("/api/backends/install", json=["hello#^1.0.0"],
                                headers={"x-backends-partition": "P", **headers})
            assert r.status_code == 403 and "not allowed" in r.json()["detail"], r.text
        assert (await http.get("/api/backends/instances")).json() == []  # nothing installed
        r = await http.post("/api/backends/install", json=["hello#^1.0.0"],
                            headers={"x-backends-partition": "P", "origin": h.base})
        assert r.status_code == 200, r.text  # the hub's own page
        target = "/backends/hello/^1/anything"
        partition = {"x-backends-partition": "P"}
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            r = await http.request(method, target, headers={**partition, **FOREIGN}, content=b"x")
            assert r.status_code == 403 and "not allowed" in r.json()["detail"], (method, r.text)
            # without Origin (a program, curl) the request reaches the backend, which has no
            # handler for it (the standard library's 501)
            assert (await http.request(method, target, headers=partition, content=b"x")).status_code == 501
        r = await http.get(target, headers={**partition, **FOREIGN})  # safe: answered
        assert r.status_code == 200 and r.json()["partition"] == "P"
