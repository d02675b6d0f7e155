"""Serving the API with uvicorn, with Nagle's algorithm off on every connection.

With ``--workers N`` uvicorn binds the listening socket itself and hands it to the
worker processes. That socket reports ``proto == 0``, and asyncio enables
``TCP_NODELAY`` only on accepted sockets that report ``IPPROTO_TCP``; so Nagle stays
on, and every keep-alive request after the first waits for the client's delayed
ACK (about 40 ms on Linux). A POS or e-commerce connector that keeps its
connection open pays that on every order. The protocol classes here set the
option on each accepted TCP connection, whichever way the socket was bound.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off on the TCP socket under ``transport``, if it has one."""
    sock: socket.socket | None = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """The C HTTP parser (httptools), which costs less CPU per request than h11."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)


def http_protocol() -> str:
    """httptools where it is installed (it is a dependency), h11 otherwise."""
    try:
        import httptools  # noqa: F401, PLC0415
    except ImportError:  # pragma: no cover - httptools is a dependency
        return "quanyu.entrypoints.api.server:NoDelayH11Protocol"
    return "quanyu.entrypoints.api.server:NoDelayHttpToolsProtocol"


def run(
    *,
    host: str,
    port: int,
    workers: int,
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Serve the API from the environment's settings (what ``quanyu serve`` runs)."""
    import uvicorn  # noqa: PLC0415 - only when serving

    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "log_level": log_level,
        "access_log": access_log,
        "http": http_protocol(),
        "loop": "auto",  # uvloop where it is installed
    }
    uvicorn.run("quanyu.entrypoints.api.app:app_from_env", **options)
