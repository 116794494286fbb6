"""Process start-up: the ``roomhub`` command (``serve``, ``check`` and ``token``) and the server of
a widgets app run standalone (:func:`widgets_server`, reached by ``App.run()`` through the
``roomhub.standalone`` entry point, so that the widgets face never imports the hub)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import click

from .config import ConfigError, HubConfig, demo_config_path, load_config
from .logs import setup_logging

log = logging.getLogger("roomhub")


def _load(config_path: str | None) -> HubConfig:
    path = Path(config_path) if config_path else demo_config_path()
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


async def _preflight(config: HubConfig) -> None:
    """Fail fast with a clear message, before the server binds, if the hub cannot start."""
    from .hub import Hub, HubError

    hub = Hub(config)
    hub.check_bind()
    try:
        for name in sorted(hub.runtimes_in_use()):
            await hub.runtimes[name].check()
        if hub.cluster is not None:
            from .cluster import ClusterUnavailable

            try:
                await hub.cluster.check()
            except ClusterUnavailable as exc:
                raise HubError(str(exc)) from None
    finally:
        for runtime in hub.runtimes.values():
            await runtime.close()
        if hub.cluster is not None:
            await hub.cluster.close()


def widgets_server(app: Any, config: HubConfig) -> Any:
    """A ``uvicorn.Server`` for a hub composed from ``config`` (just the widgets face, see
    ``App.hub_config``) serving ``app``, a :class:`roomhub.widgets.App`. Nothing is bound until
    the server's ``serve()`` runs. Raises :class:`~roomhub.core.errors.HubError` when the widgets
    face cannot be built."""
    import uvicorn

    from .app import server_config
    from .hub import Hub

    hub = Hub(config)
    hub.face("widgets").use_app(app)
    return uvicorn.Server(server_config(hub))


@click.group()
@click.version_option(package_name="roomhub")
def main() -> None:
    """roomhub: one server for interactive pages' rooms, documents, actions, widgets and backends."""


@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--host", help="Address to bind (default: server.host, 127.0.0.1).")
@click.option("--port", type=int, help="Port to bind (default: server.port, 8000; 0 picks a free one).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-format", type=click.Choice(["text", "json"]),
              help="text (default: server.log_format): human lines; json: one JSON object a line.")
@click.option(
    "--allow-non-loopback", is_flag=True, help="Accept a non-loopback bind while code runs unsandboxed."
)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Override server.data_dir.")
def serve(
    config: str | None, host: str | None, port: int | None, log_level: str | None,
    log_format: str | None, allow_non_loopback: bool, data_dir: str | None,
) -> None:
    """Start the hub. Without CONFIG it serves the embedded demo."""
    import uvicorn

    from .app import server_config
    from .datadir import DataDirInUse, DataDirLock
    from .hub import Hub, HubError
    from .runtimes import RuntimeUnavailable
    from .tuning import retain_large_buffers

    cfg = _load(config)
    server = cfg.server
    if host:
        server.host = host
    if port is not None:
        server.port = port
    if log_level:
        server.log_level = log_level  # type: ignore[assignment]
    if log_format:
        server.log_format = log_format  # type: ignore[assignment]
    if allow_non_loopback:
        server.allow_non_loopback = True
    if data_dir:
        server.data_dir = Path(data_dir).resolve()
    setup_logging(server.log_level, server.log_format)
    assert server.data_dir is not None
    try:
        # First of all: a hub holding this data directory must not have its rooms taken for
        # leftovers by this one's checks or clean-up.
        lock = DataDirLock.acquire(server.data_dir, server.host, server.port)
    except DataDirInUse as exc:
        log.error("%s", exc)
        sys.exit(2)
    except OSError as exc:
        log.error("cannot lock the data directory %s: %s", server.data_dir, exc)
        sys.exit(2)
    try:
        asyncio.run(_preflight(cfg))
    except (HubError, RuntimeUnavailable) as exc:
        log.error("%s", exc)
        sys.exit(2)
    log.info("configuration %s, http://%s:%d/", cfg.source, server.host, server.port)
    retain_large_buffers()
    hub = Hub(cfg, lock=lock)
    sockets = None
    if server.port == 0:
        # Bound here, before the hub starts, so that the hub knows its real port (its cluster
        # heartbeat advertises it); uvicorn would bind only after the hub's start.
        family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
        listener = socket.create_server((server.host, 0), family=family)
        server.port = listener.getsockname()[1]
        sockets = [listener]
        log.info("port 0: listening on http://%s:%d/", server.host, server.port)
    # uvicorn re-raises the signal that stopped it once shutdown is complete; the shutdown
    # was clean, so SIGTERM is then ignored and SIGINT's KeyboardInterrupt caught: exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        uvicorn.Server(server_config(hub)).run(sockets=sockets)
    except KeyboardInterrupt:
        pass


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
def check(config: str) -> None:
    """Validate CONFIG: print every error with its key path; exit 0 if valid, 1 if not."""
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    executors = sum(len(p.executors) for p in cfg.pages.values())
    click.echo(f"{config}: valid ({len(cfg.pages)} pages, {executors} executors)")


@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--subject", default="user", show_default=True, help="Who the token is for (logged).")
def token(config: str | None, subject: str) -> None:
    """Print a signed token for CONFIG's server.auth.secret_key."""
    from .transport.security import make_token

    cfg = _load(config)
    if not cfg.server.auth.secret_key:
        click.echo("server.auth.secret_key is not set in the configuration", err=True)
        sys.exit(1)
    click.echo(make_token(cfg.server.auth.secret_key, subject))
