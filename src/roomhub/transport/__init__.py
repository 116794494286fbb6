"""The transport: how bytes reach a face. The hub's HTTP protocol on uvicorn
(:mod:`.http_server`), every face's WebSocket connection (:mod:`.callback_websocket`, with
its send window, :mod:`.send_window`, and receive budget, :mod:`.receive_budget`), HTTP
exchanges served without ASGI (:mod:`.direct_http`), and the door every request passes
(:mod:`.security`: Host, origin and token checks). It imports the core, never a face."""
