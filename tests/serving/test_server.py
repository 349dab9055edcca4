"""serving.server's listening socket: shareable by several workers (SO_REUSEPORT), and its
accepted connections answer without waiting for delayed ACKs (TCP_NODELAY, set by asyncio)."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest

from serving.server import reuse_port_socket

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "SO_REUSEPORT") or not sys.platform.startswith("linux"),
    reason="SO_REUSEPORT workers are Linux's",
)


def test_two_workers_can_listen_on_the_same_port() -> None:
    first = reuse_port_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    second = reuse_port_socket("127.0.0.1", port)
    try:
        assert second.getsockname()[1] == port
    finally:
        first.close()
        second.close()


def test_connections_accepted_by_asyncio_on_it_have_tcp_nodelay() -> None:
    async def scenario() -> int:
        sock = reuse_port_socket("127.0.0.1", 0)
        seen: list[int] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted = writer.get_extra_info("socket")
            seen.append(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        host, port = sock.getsockname()[:2]
        _reader, writer = await asyncio.open_connection(host, port)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()
        return seen[0]

    assert asyncio.run(scenario()) != 0
