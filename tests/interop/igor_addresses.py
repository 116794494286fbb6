"""A pytest plugin that runs Igor's integration test module unchanged but for its addresses.

Igor's tests connect to ``ws://localhost:5678`` (its WebSocket server) and read files from
``http://localhost:8080/`` (its file server). Loaded with ``-p igor_addresses`` (and
``--assert=plain``, so pytest's own rewriting import hook stays out of the way), it imports the
module named by ``ROOMHUB_IGOR_MODULE`` with those string constants replaced at import time:
``ROOMHUB_IGOR_WS`` for the WebSocket address and ``ROOMHUB_IGOR_FILES`` for the file server's
base URL. Nothing else in the module changes, and the file on disk is not touched.
"""

from __future__ import annotations

import ast
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

IGOR_WS = "ws://localhost:5678"
IGOR_FILES = "http://localhost:8080/"


class _Readdress(ast.NodeTransformer):
    """Replaces Igor's two addresses in the module's string constants."""

    def __init__(self, ws: str, files: str) -> None:
        self.ws = ws
        self.files = files.rstrip("/") + "/"
        self.replaced = 0

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        value = node.value
        if value == IGOR_WS:
            self.replaced += 1
            return ast.copy_location(ast.Constant(self.ws), node)
        if isinstance(value, str) and value.startswith(IGOR_FILES):
            self.replaced += 1
            return ast.copy_location(ast.Constant(self.files + value[len(IGOR_FILES):]), node)
        return node


class _ReaddressedLoader(importlib.abc.Loader):
    def __init__(self, path: Path, ws: str, files: str) -> None:
        self.path = path
        self.ws = ws
        self.files = files

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        tree = ast.parse(self.path.read_bytes(), filename=str(self.path))
        readdress = _Readdress(self.ws, self.files)
        tree = ast.fix_missing_locations(readdress.visit(tree))
        if not readdress.replaced:
            raise ImportError(f"{self.path}: none of Igor's addresses found to replace")
        exec(compile(tree, str(self.path), "exec", dont_inherit=True), module.__dict__)


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, target: Path, ws: str, files: str) -> None:
        self.target = target
        self.ws = ws
        self.files = files

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> ModuleSpec | None:
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None or Path(spec.origin).resolve() != self.target:
            return None
        loader = _ReaddressedLoader(self.target, self.ws, self.files)
        return importlib.util.spec_from_file_location(fullname, spec.origin, loader=loader)


def pytest_configure(config: Any) -> None:
    target = Path(os.environ["ROOMHUB_IGOR_MODULE"]).resolve()
    finder = _Finder(target, os.environ["ROOMHUB_IGOR_WS"], os.environ["ROOMHUB_IGOR_FILES"])
    sys.meta_path.insert(0, finder)
