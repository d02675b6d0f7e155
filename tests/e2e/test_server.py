"""How the API is served: connection options that matter for keep-alive clients."""

from __future__ import annotations

import asyncio
import socket

from uvicorn.config import Config
from uvicorn.server import ServerState

from quanyu.entrypoints.api.server import NoDelayH11Protocol


async def _accepted_nodelay(protocol_class: type[NoDelayH11Protocol] | None) -> int:
    """TCP_NODELAY on the server side of a connection accepted on a socket that uvicorn
    bound itself, as it does for ``--workers N``."""

    async def app(scope: object, receive: object, send: object) -> None:  # pragma: no cover
        return None

    config = Config(app=app, host="127.0.0.1", port=0, lifespan="off")
    config.load()
    listener = config.bind_socket()
    state = ServerState()
    seen: list[asyncio.BaseTransport] = []

    class Plain(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            seen.append(transport)

    class Recording(NoDelayH11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            seen.append(transport)

    def factory() -> asyncio.Protocol:
        if protocol_class is None:
            return Plain()
        return Recording(config=config, server_state=state, app_state={})

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, sock=listener)
    try:
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        sock: socket.socket = seen[0].get_extra_info("socket")
        value = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        writer.close()
        seen[0].close()
        return value
    finally:
        server.close()


def test_worker_processes_accept_connections_with_nagle_off() -> None:
    assert asyncio.run(_accepted_nodelay(NoDelayH11Protocol)) != 0


def test_a_socket_bound_by_uvicorn_for_workers_leaves_nagle_on_by_itself() -> None:
    # The reason the protocol class exists: if this starts failing, uvicorn has fixed
    # the listener and the class can go.
    assert asyncio.run(_accepted_nodelay(None)) == 0
