"""Placeholder until our trio + httptools server lands (see api/http/)."""

from __future__ import annotations


async def serve_ours(app, settings, sock, stop, *, task_status=None) -> None:
    raise NotImplementedError("HTTP_SERVER=ours is not built yet; use --server hypercorn")
