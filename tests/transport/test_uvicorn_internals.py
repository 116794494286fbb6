"""The parts of uvicorn's protocol classes the hub builds on, checked by name.

``roomhub.transport.http_server`` subclasses uvicorn's httptools HTTP protocol and uses
attributes and methods uvicorn does not document as public. pyproject pins uvicorn to the
versions tested; this test fails, naming what is missing, when an installed uvicorn no
longer has them (instead of the hub failing at its first request).
"""

from __future__ import annotations

import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]

# Methods the hub's protocols override or call, with the parameters they rely on.
HTTP_METHODS = {
    "connection_made": ["transport"],
    "connection_lost": ["exc"],
    "data_received": ["data"],
    "on_message_begin": [],
    "on_headers_complete": [],
    "on_body": ["body"],
    "on_message_complete": [],
    "pause_writing": [],
    "_start_asgi_task": ["cycle", "app"],
}
# Attributes set by uvicorn's HttpToolsProtocol that the hub reads or writes.
HTTP_ATTRIBUTES = ["pipeline", "cycle", "flow", "parser", "scope", "transport", "url", "loop",
                   "client", "root_path", "expect_100_continue", "headers", "server"]


def _pinned() -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == "uvicorn")


def _missing(cls: type, methods: dict[str, list[str]], attributes: list[str]) -> list[str]:
    missing = []
    for name, params in methods.items():
        method = getattr(cls, name, None)
        if method is None:
            missing.append(f"{cls.__name__}.{name}()")
            continue
        have = list(inspect.signature(method).parameters)[1:]
        if have[: len(params)] != params:
            missing.append(f"{cls.__name__}.{name}({', '.join(params)}) (it takes {', '.join(have)})")
    # Instance attributes are assigned in the class's methods: read them from its source.
    source = "".join(inspect.getsource(c) for c in cls.__mro__ if c.__module__.startswith("uvicorn"))
    assigned = set(re.findall(r"self\.(\w+)\s*(?::[^=\n]+)?=", source))
    missing += [f"{cls.__name__}.{a}" for a in attributes if a not in assigned]
    return missing


def test_the_installed_uvicorn_is_a_pinned_one() -> None:
    requirement = _pinned()
    assert any(s.operator in ("<", "<=", "==", "~=") for s in requirement.specifier), (
        f"pyproject's {requirement} has no upper bound: the hub uses uvicorn internals")
    installed = Version(version("uvicorn"))
    assert requirement.specifier.contains(installed), f"uvicorn {installed} is outside {requirement}"


def test_uvicorn_still_has_what_the_hub_subclasses() -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    missing = _missing(HttpToolsProtocol, HTTP_METHODS, HTTP_ATTRIBUTES)
    assert not missing, f"uvicorn {version('uvicorn')} lacks what the hub's protocols use: {missing}"


def test_the_hub_uses_the_subclassed_protocol() -> None:
    from roomhub.transport import http_server

    assert http_server.PROTOCOL is not None, "uvicorn's httptools protocol could not be imported"
