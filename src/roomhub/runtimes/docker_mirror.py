"""The room mirror: keeps a room's volume and the hub's room directory in step (remote engines).

With a remote engine the room's files live in a named volume the hub cannot
read, while the hub's file viewers and editors (``pages/files.py``) watch
the hub's own room directory. A small monitor program runs in a container
of the room (same volume, no network, no capabilities) and speaks JSON
lines in the message shapes of interactive-widgets' monitor, with the
file's path added (base64, so that no JSON escaping is needed in ``sh``):

- monitor -> hub: ``{"path": B64, "contents": B64}`` when a file appears or
  changes, ``{"path": B64, "delete": true}`` when it goes, ``{"error": B64}``;
- hub -> monitor: the same ``contents`` and ``delete`` lines, applied
  atomically (temporary file, then rename).

The monitor is POSIX ``sh`` with ``find``, ``md5sum``, ``base64``, ``sort``
and ``awk`` (busybox or a Debian base image have them); it polls the volume
every ``interval`` seconds. Files over ``max_bytes`` are not mirrored. Each
side records the digest it last saw from the other, so an echo is never
sent back. Before a container of the room starts, :meth:`RoomMirror.flush`
pushes pending local changes and waits until the monitor has them, so a
program always sees what the hub wrote (a file's initial contents, a save).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Protocol

import watchfiles

from .. import confined
from ..core.config import DockerConfig
from .base import ProgramHandle, ProgramSpec

log = logging.getLogger("roomhub.runtimes.docker.mirror")


class MirrorRuntime(Protocol):
    """What a room's mirror uses of its runtime (:class:`~roomhub.runtimes.docker.DockerRuntime`):
    its configuration and a way to start the monitor."""

    config: DockerConfig

    async def launch(self, spec: ProgramSpec) -> ProgramHandle:
        """Start the program ``spec`` describes."""
        ...

EXECUTOR = "roomhub-monitor"
DELETED = "-"

# $1 room mount, $2 poll interval (s), $3 largest mirrored file (bytes)
MONITOR_SH = r"""
cd "$1" || { printf '{"error": "%s"}\n' "$(printf 'cannot enter %s' "$1" | base64 | tr -d '\n')"; exit 1; }
interval=$2; max=$3
state=/tmp/.roomhub-mirror.old; next=/tmp/.roomhub-mirror.new
: > "$state"
enc() { base64 | tr -d '\n'; }
field() { printf %s "$1" | sed -n "s/.*\"$2\": *\"\([^\"]*\)\".*/\1/p"; }
exec 3<&0  # a background list would read /dev/null otherwise
(
  while IFS= read -r line; do
    p=$(field "$line" path | base64 -d 2>/dev/null)
    case "/$p/" in //|*/../*) continue;; esac
    case "$line" in
      *'"delete": true'*) rm -f -- "$p" ;;
      *'"contents"'*)
        d=$(dirname -- "$p"); mkdir -p -- "$d"
        t="$d/.roomhub-mirror-$$"
        if field "$line" contents | base64 -d > "$t"; then mv -f -- "$t" "$p"; else rm -f -- "$t"; fi ;;
    esac
  done
  kill 0  # the hub closed our stdin: stop scanning too
) <&3 &
while :; do
  find . -type f ! -name '.roomhub-*' -size "-$((max + 1))c" -exec md5sum {} + 2>/dev/null | sort > "$next"
  awk 'FILENAME == ARGV[1] { old[$0] = 1; next } !($0 in old) { print substr($0, 35) }' \
      "$state" "$next" | while IFS= read -r f; do
    [ -f "$f" ] && printf '{"path": "%s", "contents": "%s"}\n' \
        "$(printf %s "${f#./}" | enc)" "$(enc < "$f")"
  done
  awk 'FILENAME == ARGV[1] { now[substr($0, 35)] = 1; next }
       !(substr($0, 35) in now) { print substr($0, 35) }' "$next" "$state" | while IFS= read -r f; do
    printf '{"path": "%s", "delete": true}\n' "$(printf %s "${f#./}" | enc)"
  done
  mv -f "$next" "$state"
  sleep "$interval"
done
"""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class RoomMirror:
    """Mirrors one room's volume (through the monitor container) and its local directory."""

    def __init__(self, runtime: MirrorRuntime, room_dir: Path, labels: dict[str, str]) -> None:
        self.runtime = runtime
        self.room_dir = room_dir.resolve()
        self.labels = {**labels, "roomhub.executor": EXECUTOR}
        self.max_bytes = runtime.config.mirror_max_bytes
        self.remote: dict[str, str] = {}  # path -> digest the monitor last reported
        self.sent: dict[str, str] = {}  # path -> digest (or DELETED) pushed, not yet confirmed
        self.changed = asyncio.Condition()
        self.handle: ProgramHandle | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._buffer = b""

    async def start(self, image: str) -> None:
        """Start the monitor container and the two directions of the mirror."""
        self.room_dir.mkdir(parents=True, exist_ok=True)
        c = self.runtime.config
        spec = ProgramSpec(
            argv=[
                "sh",
                "-c",
                MONITOR_SH,
                "monitor",
                c.room_mount,
                str(c.mirror_interval),
                str(self.max_bytes),
            ],
            room_dir=self.room_dir,
            image=image,
            labels=self.labels,
            stdin=True,
        )
        self.handle = await self.runtime.launch(spec)
        self._tasks = [
            asyncio.create_task(self._from_monitor(), name=f"mirror-in:{self.room_dir.name}"),
            asyncio.create_task(self._from_hub(), name=f"mirror-out:{self.room_dir.name}"),
        ]

    # -- monitor -> hub ---------------------------------------------------------------

    async def _from_monitor(self) -> None:
        assert self.handle is not None
        async for stream, chunk in self.handle.output():
            if stream != "stdout":
                log.warning("%s: monitor: %s", self.room_dir.name, chunk.decode(errors="replace").strip())
                continue
            self._buffer += chunk
            *lines, self._buffer = self._buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    await self._apply_remote(line)
        if not self._stop.is_set():
            log.warning("%s: the room's monitor ended (%s)", self.room_dir.name, await self.handle.wait())

    async def _apply_remote(self, line: bytes) -> None:
        try:
            msg: dict[str, Any] = json.loads(line)
            if "error" in msg:
                log.warning("%s: monitor: %s", self.room_dir.name, base64.b64decode(msg["error"]).decode())
                return
            rel = base64.b64decode(msg["path"]).decode()
            data = base64.b64decode(msg["contents"]) if "contents" in msg else None
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s: bad monitor line %r: %s", self.room_dir.name, line[:200], exc)
            return
        try:
            parts = confined.split_path(rel)
        except confined.Refused as exc:
            log.warning("%s: monitor reported a bad path %r: %s", self.room_dir.name, rel, exc)
            return
        async with self.changed:
            digest = DELETED if data is None else _digest(data)
            if digest == DELETED:
                self.remote.pop(rel, None)
            else:
                self.remote[rel] = digest
            pending = self.sent.get(rel)
            if pending is not None:
                if pending == digest:
                    del self.sent[rel]  # the monitor has what the hub sent
                self.changed.notify_all()
                return  # a report from before our write landed: ours wins
            self.changed.notify_all()
        try:
            await asyncio.to_thread(self._write_local, parts, data)
        except (confined.Refused, OSError) as exc:
            log.warning("%s: %s not mirrored here: %s", self.room_dir.name, rel, exc)

    def _write_local(self, parts: list[str], data: bytes | None) -> None:
        if data is None:
            confined.delete_file(self.room_dir, parts)
            return
        with contextlib.suppress(confined.Refused, OSError):
            if confined.read_file(self.room_dir, parts, len(data)) == data:
                return
        confined.write_file(self.room_dir, parts, data)

    # -- hub -> monitor -----------------------------------------------------------------

    async def _from_hub(self) -> None:
        async for changes in watchfiles.awatch(self.room_dir, stop_event=self._stop, debounce=50):
            for _, path in changes:
                await self.push(Path(path))

    def _local(self) -> dict[str, Path]:
        found = {}
        for root, _, files in os.walk(self.room_dir):
            for name in files:
                if not name.startswith(".roomhub-"):
                    path = Path(root) / name
                    found[str(path.relative_to(self.room_dir))] = path
        return found

    def _read_local(self, path: Path) -> bytes | None:
        """The file's contents; None when no regular file is there (links are not followed).
        Raises :class:`confined.Refused` (``TOO_LARGE``) over ``mirror_max_bytes``."""
        try:
            return confined.read_file(self.room_dir, path.relative_to(self.room_dir).parts, self.max_bytes)
        except confined.Refused as exc:
            if exc.reason == confined.Refused.TOO_LARGE:
                raise
            return None
        except OSError:
            return None

    async def push(self, path: Path) -> None:
        """Send ``path``'s current state (contents or deletion) to the monitor unless it has it."""
        if path.name.startswith(".roomhub-"):
            return
        rel = str(path.relative_to(self.room_dir))
        try:
            data = await asyncio.to_thread(self._read_local, path)
        except confined.Refused:
            return  # too large to mirror
        digest = DELETED if data is None else _digest(data)
        known = self.sent.get(rel, self.remote.get(rel, DELETED))
        if digest == known:
            return
        line = {"path": _b64(rel.encode())}
        if data is None:
            line["delete"] = True  # type: ignore[assignment]
        else:
            line["contents"] = _b64(data)
        self.sent[rel] = digest
        assert self.handle is not None
        try:
            await self.handle.write(json.dumps(line).encode() + b"\n")
        except BrokenPipeError as exc:
            log.warning("%s: the room's monitor is gone (%s); %s not mirrored", self.room_dir.name, exc, rel)

    async def flush(self, timeout: float = 10.0) -> None:
        """Push every local change and wait (at most ``timeout`` s) until the monitor has them."""
        local = await asyncio.to_thread(self._local)
        for path in local.values():
            await self.push(path)
        for rel in set(self.remote) - set(local):
            await self.push(self.room_dir / rel)
        try:
            async with asyncio.timeout(timeout), self.changed:
                await self.changed.wait_for(lambda: not self.sent)
        except TimeoutError:
            log.warning(
                "%s: the monitor has not confirmed %s after %.0f s",
                self.room_dir.name,
                ", ".join(sorted(self.sent)),
                timeout,
            )

    async def stop(self) -> None:
        """Stop the monitor; the last changes it reported are already in the hub's directory."""
        self._stop.set()
        if self.handle is not None:
            await self.handle.kill(0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
