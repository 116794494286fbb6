from pycrdt import Text

from hubtest import eventually

from .ycl import y_client


async def test_two_pycrdt_clients_sync(docs_config, in_process_hub):
    async with in_process_hub(docs_config()) as h:
        async with y_client(h.ws, "r1") as a, y_client(h.ws, "r1") as b:
            a.doc.get("text", type=Text).insert(0, "hello")
            tb = b.doc.get("text", type=Text)
            await eventually(lambda: str(tb) == "hello")
