"""Installs: resolve queries and dependencies, build, start in order, and report progress.

:meth:`Installer.install` runs one install request into one partition:

1. resolve each query against the catalogs, then each dependency range of
   the manifests (a dependency already chosen must satisfy the range, else
   ``version-conflict`` 409; a cycle is ``dependency-cycle`` 422), giving an
   order where dependencies come first;
2. check every build option against the manifests (``unknown-build-option`` 422);
3. for each backend, dependencies first: reuse the instance already running
   in the partition with the same version and fingerprint, else build (or
   reuse the build) and start it; an instance of the same API key with
   another version or configuration is stopped first (a configuration change
   restarts the backend).

Events (see :mod:`~roomhub.backends.protocol`) go to the partition's sockets
as it goes. If any step fails, every instance this install started is
stopped before the error is raised: a failed install leaves nothing
half-started.
"""

from __future__ import annotations

import logging
from typing import Any

from . import protocol as p
from .builds import Builder
from .instances import Instance, Launcher
from .packages import Catalog, Package
from .partition import Partitions

log = logging.getLogger("roomhub.backends.install")


def resolve_graph(catalog: Catalog, queries: list[p.Query]) -> list[Package]:
    """The packages to install, every dependency before its dependents.

    Raises :class:`~roomhub.backends.protocol.BadRequest` (``unknown-backend``,
    ``no-matching-version``, ``version-conflict``, ``dependency-cycle``).
    """
    chosen: dict[str, Package] = {}
    order: list[Package] = []

    def visit(name: str, rng: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise p.BadRequest("dependency-cycle", f"dependency cycle: {' -> '.join((*path, name))}",
                               status=422)
        if name in chosen:
            if p.select_version([chosen[name].version], rng) is None:
                raise p.BadRequest(
                    "version-conflict",
                    f"{' -> '.join(path)} needs {name}#{rng} but {chosen[name].version} is already chosen",
                    status=409, name=name)
            return
        package = catalog.resolve(name, rng)
        chosen[name] = package
        for dep, dep_range in package.manifest.dependencies.items():
            visit(dep, dep_range, (*path, name))
        order.append(package)

    for query in queries:
        visit(query.name, query.range, ())
    return order


class Installer:
    """Runs install requests with a catalog, a builder, a launcher and the partitions."""

    def __init__(self, catalog: Catalog, builder: Builder, launcher: Launcher,
                 partitions: Partitions) -> None:
        self.catalog = catalog
        self.builder = builder
        self.launcher = launcher
        self.partitions = partitions

    async def install(self, request: p.InstallRequest, partition: str, owner: str | None,
                      install_id: str) -> dict[str, Any]:
        """Install ``request`` into ``partition`` for ``owner`` (None: no owner).

        Returns ``{partitionId, installId, backends: [...]}``; raises
        :class:`~roomhub.backends.protocol.BadRequest` subclasses with the HTTP status to answer.
        """
        publish = self.partitions.publish
        self.partitions.touch(partition)
        try:
            packages = resolve_graph(self.catalog, request.queries)
            options = {pkg.name: pkg.options(self._config(request, pkg.name).build) for pkg in packages}
        except p.BadRequest as exc:
            publish(partition, p.event("InstallFailed", installId=install_id, error=exc.error,
                                       detail=exc.detail, partitionId=partition))
            raise
        for pkg in packages:
            publish(partition, p.download_event(pkg.name, pkg.version, "started", install_id))
            publish(partition, p.download_event(pkg.name, pkg.version, "succeeded", install_id))
        aliases = {q.name: q.alias for q in request.queries}
        started: list[Instance] = []
        results: list[dict[str, Any]] = []
        async with self.partitions.lock(partition):
            try:
                by_name: dict[str, Instance] = {}
                for pkg in packages:
                    dockerfile = self._config(request, pkg.name).dockerfile
                    inst, reused = await self._one(pkg, options[pkg.name], dockerfile, partition, owner,
                                                   install_id, aliases.get(pkg.name))
                    inst.dependencies = [by_name[d].uid for d in pkg.manifest.dependencies if d in by_name]
                    by_name[pkg.name] = inst
                    if not reused:
                        started.append(inst)
                    results.append({**self.client_view(inst), "alias": aliases.get(pkg.name),
                                    "reused": reused})
            except p.BadRequest as exc:
                publish(partition, p.event("InstallFailed", installId=install_id, error=exc.error,
                                           detail=exc.detail, partitionId=partition))
                if started:
                    await self.partitions.stop(started, f"install {install_id} failed")
                raise
        return {"partitionId": partition, "installId": install_id, "backends": results}

    @staticmethod
    def _config(request: p.InstallRequest, name: str) -> p.BackendConfiguration:
        return request.configurations.get(name) or p.BackendConfiguration()

    @staticmethod
    def client_view(inst: Instance) -> dict[str, Any]:
        """What a browser client needs to call ``inst`` (W3Nest's BackendClient fields)."""
        return {
            "name": inst.name, "version": inst.version, "apiKey": inst.api_key, "uid": inst.uid,
            "urlBase": inst.base_path, "partitionId": inst.partition,
            "config": {"build": inst.build.options, "dockerfile": inst.build.dockerfile},
            "fingerprint": inst.build.fingerprint,
        }

    async def _one(self, pkg: Package, options: dict[str, str], dockerfile: str | None, partition: str,
                   owner: str | None, install_id: str, alias: str | None) -> tuple[Instance, bool]:
        publish = self.partitions.publish
        fp = p.fingerprint(pkg.name, pkg.version, options, dockerfile)
        same_key = [i for i in self.partitions.of(partition)
                    if i.name == pkg.name and i.api_key == p.api_key(pkg.version)]
        for inst in same_key:
            if inst.version == pkg.version and inst.build.fingerprint == fp and inst.status == "listening":
                publish(partition, p.install_event(pkg.name, pkg.version, "started", install_id, fp))
                publish(partition, p.install_event(pkg.name, pkg.version, "succeeded", install_id, fp))
                publish(partition, p.start_event(inst.uid, partition, inst.name, inst.version, "listening",
                                                 install_id))
                if owner and inst.owner is None:
                    inst.owner = owner
                inst.alias = inst.alias or alias
                return inst, True
        publish(partition, p.install_event(pkg.name, pkg.version, "started", install_id, fp))

        def build_line(text: str) -> None:
            publish(partition, p.log_event("install", pkg.name, pkg.version, text, partition=partition,
                                           install_id=install_id))

        try:
            build, _ = await self.builder.build(pkg, options, dockerfile, build_line)
        except p.BadRequest as exc:
            publish(partition, p.install_event(pkg.name, pkg.version, "failed", install_id, fp, exc.detail))
            raise
        publish(partition, p.install_event(pkg.name, pkg.version, "succeeded", install_id, fp))
        if same_key:
            await self.partitions.stop(same_key, "replaced by another version or configuration")
        inst = self.launcher.new_instance(partition, pkg, build, owner, install_id, alias)
        self.partitions.add(inst)
        publish(partition, p.start_event(inst.uid, partition, pkg.name, pkg.version, "starting", install_id))

        def server_line(instance: Instance, text: str) -> None:
            publish(partition, p.log_event("start", instance.name, instance.version, text, uid=instance.uid,
                                           partition=partition))

        def exited(instance: Instance) -> None:
            publish(partition, p.event("BackendCrashed", uid=instance.uid, partitionId=partition,
                                       name=instance.name, version=instance.version,
                                       exitCode=instance.exit_code, detail=instance.stop_reason))

        try:
            await self.launcher.start(inst, server_line, exited)
        except p.BadRequest as exc:
            publish(partition, p.start_event(inst.uid, partition, pkg.name, pkg.version, "failed", install_id,
                                             exc.detail))
            raise
        publish(partition, p.start_event(inst.uid, partition, pkg.name, pkg.version, "listening", install_id))
        log.info("backend %s %s (%s) listening in partition %s", pkg.name, pkg.version, inst.uid[:8],
                 partition)
        return inst, False
