"""The file server and pages of other origins (CORS), over real HTTP on loopback."""

from __future__ import annotations

import contextlib

import httpx
import pytest
from actions_helpers import file_server_config

from roomhub.config import ConfigError, parse_config

URL = "/actions/files/pics/bg.jpg"
APP = "http://timer.example:4200"


@contextlib.asynccontextmanager
async def files_hub(tmp_path, in_process_hub, origins: str | None):
    """A hub whose file server allows ``origins`` (TOML, None: the default); yields it and a client."""
    allowed = "" if origins is None else f"allowed_origins = {origins}"
    config = file_server_config(tmp_path / "cfg", tmp_path / "files", allowed)
    async with in_process_hub(config) as h, httpx.AsyncClient(base_url=h.base) as http:
        yield h, http


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type",
    }


async def test_an_allowed_origin_gets_preflights_and_cors_headers(tmp_path, in_process_hub):
    async with files_hub(tmp_path, in_process_hub, f'["{APP}"]') as (_, http):
        answer = await http.options(URL, headers=preflight(APP))
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == APP
        assert "POST" in answer.headers["access-control-allow-methods"]
        assert "content-type" in answer.headers["access-control-allow-headers"].lower()
        jpeg = {"Origin": APP, "Content-Type": "image/jpeg"}
        saved = await http.post(URL, content=b"\xff\xd8jpeg", headers=jpeg)
        assert saved.status_code == 201 and saved.json()["message"] == "File saved."
        assert saved.headers["access-control-allow-origin"] == APP
        read = await http.get(URL, headers={"Origin": APP})
        assert read.content == b"\xff\xd8jpeg" and read.headers["access-control-allow-origin"] == APP
        assert (tmp_path / "files" / "pics" / "bg.jpg").read_bytes() == b"\xff\xd8jpeg"


async def test_by_default_other_origins_get_no_cors_and_cannot_write(tmp_path, in_process_hub):
    async with files_hub(tmp_path, in_process_hub, None) as (h, http):
        answer = await http.options(URL, headers=preflight(APP))
        assert answer.status_code == 400 and "access-control-allow-origin" not in answer.headers
        # a cross-site form or fetch needs no preflight to send a text/plain POST: refused
        refused = await http.post(URL, content=b"x", headers={"Origin": APP, "Content-Type": "text/plain"})
        assert refused.status_code == 403 and APP in refused.json()["detail"]
        assert (await http.delete(URL, headers={"Origin": APP})).status_code == 403
        assert not (tmp_path / "files" / "pics").exists()
        own = await http.put(URL, content=b"mine", headers={"Origin": h.base})  # the hub's own pages
        assert own.status_code == 201 and "access-control-allow-origin" not in own.headers
        assert (await http.put(URL, content=b"no origin")).status_code == 200  # not a browser
        plain = await http.options(URL)
        assert plain.status_code == 204 and "PUT" in plain.headers["allow"]


async def test_any_origin_with_a_star(tmp_path, in_process_hub):
    async with files_hub(tmp_path, in_process_hub, '["*"]') as (_, http):
        answer = await http.options(URL, headers=preflight("http://elsewhere.example", "PUT"))
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "*"
        saved = await http.put(URL, content=b"x", headers={"Origin": "http://elsewhere.example"})
        assert saved.status_code == 201 and saved.headers["access-control-allow-origin"] == "*"


async def test_with_token_auth_a_preflight_passes_with_the_token_in_the_url(tmp_path, in_process_hub):
    config = file_server_config(tmp_path / "cfg", tmp_path / "files", f'allowed_origins = ["{APP}"]')
    config.write_text('[server.auth]\ntokens = ["s3cret-token"]\n' + config.read_text())
    async with in_process_hub(config) as h, httpx.AsyncClient(base_url=h.base) as http:
        assert (await http.options(URL, headers=preflight(APP))).status_code == 401
        answer = await http.options(f"{URL}?token=s3cret-token", headers=preflight(APP))
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == APP
        saved = await http.post(f"{URL}?token=s3cret-token", content=b"x", headers={"Origin": APP})
        assert saved.status_code == 201


@pytest.mark.parametrize("origin", ["timer.example", "http://timer.example/path", "ftp://x"])
def test_a_bad_origin_is_a_config_error_naming_the_key(tmp_path, origin):
    with pytest.raises(ConfigError) as info:
        parse_config({"actions": {"files": {"allowed_origins": [origin]}}}, base=tmp_path)
    assert "actions.files.allowed_origins" in str(info.value) and origin in str(info.value)
