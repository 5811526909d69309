"""Live streams: one WebSocket per client (`WS /api/v1/ws`) and an SSE readings stream.

Ingest publishes to Redis after a flush is stored (`publish.ReadingsFanout`, a batcher
`FlushListener`); every API process keeps one shared Redis subscription per channel its local
clients follow (`hub.LiveHub`) and hands events to each socket's bounded send queue
(`connection.Connection`). Other domains publish with `publish.publish` and register their
channel kinds (with their permission check) in `channels`.
"""
