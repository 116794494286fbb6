"""The transport: how bytes reach a face. The hub's HTTP protocol on uvicorn
(:mod:`.http_server`), WebSocket connections served through ASGI (:mod:`.connections`,
batched by :mod:`.websocket_server`) or on callbacks (:mod:`.callback_websocket`), HTTP
exchanges served without ASGI (:mod:`.direct_http`), and the door every request passes
(:mod:`.security`: Host, origin and token checks). It imports the core, never a face."""
