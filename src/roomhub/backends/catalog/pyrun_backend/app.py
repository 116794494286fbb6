"""A Python runner compatible with W3Nest's ``pyrun_backend`` (0.2.x) contract.

``POST /run`` ``{cellId, code, capturedIn: {name: value}, capturedOut: [names]}``
answers ``{output, capturedOut: {name: value}, error?}`` where ``error`` is
``{kind: "AST" | "Runtime", message, lineNumber?, stackTrace?}``. The code is
compiled with the file name ``<cellId>`` and run in a global scope that
persists for the life of the instance (so per partition), plus the
``capturedIn`` values; stdout and stderr are captured into ``output``. Runs
are serialised and executed in a worker thread, so the server keeps
answering while a cell runs. Values are returned as JSON (``repr`` for what
JSON cannot hold).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import json
import os
import threading
import traceback
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

app = FastAPI(title="pyrun backend", version="0.2.2",
              description="Runs Python cells; the global scope is kept per instance (per partition).")

SCOPE: dict[str, Any] = {"__name__": "__pyrun__"}
RUN_LOCK = threading.Lock()


class RunBody(BaseModel):
    cellId: str = Field(default="cell", max_length=200)
    code: str
    capturedIn: dict[str, Any] = Field(default_factory=dict)
    capturedOut: list[str] = Field(default_factory=list)


def jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def run_cell(body: RunBody) -> dict[str, Any]:
    filename = f"<{body.cellId}>"
    out = io.StringIO()
    error: dict[str, Any] | None = None
    try:
        tree = compile(body.code, filename, "exec", flags=ast.PyCF_ONLY_AST)
        code = compile(tree, filename, "exec")
    except SyntaxError as exc:
        return {"output": "", "capturedOut": {},
                "error": {"kind": "AST", "message": f"{type(exc).__name__}: {exc.msg}",
                          "lineNumber": exc.lineno}}
    with RUN_LOCK:
        SCOPE.update(body.capturedIn)
        SCOPE["ctx"] = {"cellId": body.cellId, "partition": os.environ.get("ROOMHUB_PARTITION")}
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                exec(code, SCOPE)
            except Exception as exc:
                frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
                error = {"kind": "Runtime", "message": f"{type(exc).__name__}: {exc}",
                         "lineNumber": frames[-1].lineno if frames else None,
                         "stackTrace": traceback.format_exception(exc)}
        captured = {name: jsonable(SCOPE.get(name)) for name in body.capturedOut}
    result: dict[str, Any] = {"output": out.getvalue(), "capturedOut": captured}
    if error is not None:
        result["error"] = error
    return result


@app.get("/")
async def root() -> dict[str, str]:
    return {"status": "ok", "partition": os.environ.get("ROOMHUB_PARTITION", "Default")}


@app.post("/run")
async def run(body: RunBody) -> dict[str, Any]:
    return await asyncio.to_thread(run_cell, body)
