"""The worker's own HTTP endpoints: ``/metrics`` (Prometheus text format) and ``/healthz``.

A small aiohttp application run in the worker's event loop, so a scrape reads the processors'
counters on the same thread that updates them (a consistent snapshot, no locks) and a blocked
loop shows up as a failing health check. With a token, every request must carry
``Authorization: Bearer <token>``; anything else gets 401 and is never told why.

It must not know about Faust, Kafka or Redis: it serves whatever the registry and the health
callback return.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)

__all__ = ["HttpServer", "build_http_app"]

HealthCheck = Callable[[], Mapping[str, Any]]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer_token_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header value carries ``token``, compared in constant time.

    >>> bearer_token_matches("Bearer abc", "abc"), bearer_token_matches("Basic abc", "abc")
    (True, False)
    """
    if header is None:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def build_http_app(
    registry: CollectorRegistry, health: HealthCheck, token: str | None
) -> web.Application:
    """Return the aiohttp application serving ``/metrics`` and ``/healthz``.

    Args:
        registry: What ``/metrics`` exposes (collected at each scrape).
        health: Returns the JSON body of ``/healthz``; called on the event loop.
        token: If given, the bearer token every request must carry.
    """

    @web.middleware
    async def require_token(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if token is not None and not bearer_token_matches(
            request.headers.get("Authorization"), token
        ):
            return web.Response(
                status=401,
                text="401: Unauthorized\n",
                headers={"WWW-Authenticate": 'Bearer realm="streamwatch"'},
            )
        return await handler(request)

    async def metrics(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(registry), headers={"Content-Type": content_type})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **health()})

    app = web.Application(middlewares=[require_token])
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


class HttpServer:
    """Runs :func:`build_http_app` on a host and port of the current event loop."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        """Prepare (not start) the server."""
        self._app = app
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Start listening.

        Raises:
            OSError: If the address cannot be bound (e.g. the port is in use).
        """
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening and close open connections; does nothing when not started."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
