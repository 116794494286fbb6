"""Child process of the cluster tests: a real hub (uvicorn on loopback) that holds a room's lease.

``python lease_holder.py CONFIG DATA_DIR ROOM`` serves the hub of CONFIG (which has a ``[cluster]``)
on a free port, takes ROOM's lease through the hub's cluster, prints one JSON line (port, hub id,
run, token) and serves until it is killed. No face takes leases yet: this stands for one that does.
"""

import asyncio
import json
import sys
from pathlib import Path

from hubtest import free_port, serve_uvicorn
from roomhub.app import server_config
from roomhub.config import load_config
from roomhub.hub import Hub


async def main(config_path: str, data_dir: str, room: str) -> None:
    config = load_config(config_path)
    config.server.data_dir = Path(data_dir)
    config.server.port = free_port()
    hub = Hub(config)
    async with serve_uvicorn(server_config(hub, host="127.0.0.1", port=config.server.port, loop="asyncio")):
        lease = await hub.cluster.acquire(room)
        print(json.dumps({"port": config.server.port, "hub": hub.id, "run": hub.cluster.run,
                          "token": lease.token}), flush=True)
        await asyncio.Event().wait()


asyncio.run(main(*sys.argv[1:4]))
