"""A local Python base image for the Docker backend tests, made without any registry.

``ensure_python_image()`` imports (``docker import``) a root file system holding
the interpreter that runs the tests, its standard library and the shared
libraries they link to, at the same paths as on the host, plus
``/usr/local/bin/python3``. Nothing is pulled. ``engine_problem()`` says why
the engine cannot be used (None when it can).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

IMAGE = "roomhub-test-python:latest"
SKIP_DIRS = {"site-packages", "test", "tests", "idlelib", "tkinter", "ensurepip", "lib2to3", "turtledemo",
             "pydoc_data", "__pycache__"}


def engine_problem() -> str | None:
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                                text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker CLI unusable: {exc}"
    if result.returncode != 0:
        return (f"no Docker engine: {result.stderr.strip()[:200]} "
                "(start it: dockerd --iptables=false --bridge=none)")
    return None


def _libraries(binaries: list[str]) -> set[str]:
    libs: set[str] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
        for match in re.finditer(r"(/\S+\.so[^\s]*)", out):
            libs.add(match.group(1))
    return libs


def _add(tar: tarfile.TarFile, path: str, seen: set[str]) -> None:
    """Add ``path`` (following symlinks: the link and its target both go in)."""
    while path not in seen:
        seen.add(path)
        parent = os.path.dirname(path)
        if parent and parent != "/" and parent not in seen:
            _add(tar, parent, seen)
        if os.path.islink(path):
            tar.add(path, arcname=path.lstrip("/"), recursive=False)
            target = os.readlink(path)
            path = os.path.normpath(os.path.join(os.path.dirname(path), target))
            continue
        tar.add(path, arcname=path.lstrip("/"), recursive=False)


def ensure_python_image() -> str:
    """Build :data:`IMAGE` once (a few seconds) and return its tag."""
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode == 0:
        return IMAGE
    exe = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    stdlib = sysconfig.get_paths()["stdlib"]
    dynload = Path(stdlib) / "lib-dynload"
    so_files = [str(p) for p in dynload.glob("*.so")]
    buffer = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, exe, seen)
        for lib in sorted(_libraries([exe, *so_files])):
            _add(tar, lib, seen)
        for root, dirs, files in os.walk(stdlib):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith("config-")]
            for name in files:
                _add(tar, os.path.join(root, name), seen)
        for directory, mode in (("tmp", 0o1777), ("run", 0o755), ("etc", 0o755), ("usr/local/bin", 0o755)):
            if "/" + directory not in seen:
                info = tarfile.TarInfo(directory)
                info.type, info.mode = tarfile.DIRTYPE, mode
                tar.addfile(info)
        link = tarfile.TarInfo("usr/local/bin/python3")
        link.type, link.linkname = tarfile.SYMTYPE, exe
        tar.addfile(link)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    subprocess.run(
        ["docker", "import", "--change", "ENV PATH=/usr/local/bin:/usr/bin:/bin",
         "--change", 'CMD ["python3"]', "--message", "roomhub test image: the host's Python", "-", IMAGE],
        input=buffer.getvalue(), check=True, capture_output=True,
    )
    return IMAGE
