"""Run the API in several worker processes, each with its own listening socket.

uvicorn's ``--workers N`` shares one listening socket among its workers, and whichever worker
wakes first takes the connection: with keep-alive clients one worker often held 7 of 8
connections while the other idled, and two workers answered 10-line orders no faster than one
(bench/results/serve.json, ``multi_worker``). Here each worker binds its own socket with
``SO_REUSEPORT``, so the kernel spreads new connections across them by their address hash. Where
``SO_REUSEPORT`` is missing (not Linux), uvicorn's own multi-process mode is used.

The parent only supervises: it forwards SIGINT/SIGTERM to the workers and waits; a worker that
dies is not restarted (a process manager above erpx does that, as for one worker).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
from typing import Any

import uvicorn

APP = "serving.app:create_app"


def serve(host: str, port: int, workers: int, **config: Any) -> None:
    """Serve ``APP`` on ``host:port`` with ``workers`` processes (``config``: uvicorn options)."""
    if workers <= 1:
        uvicorn.run(APP, factory=True, host=host, port=port, **config)
        return
    if not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(APP, factory=True, host=host, port=port, workers=workers, **config)
        return
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(host, port, config), daemon=False)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()

    def stop(signum: int, _frame: Any) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for process in processes:
        process.join()


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """The worker's own listening socket. Its protocol is named (IPPROTO_TCP, not the default
    0): asyncio sets TCP_NODELAY only on accepted sockets whose protocol says TCP, and without
    it every answer waited ~44 ms for the client's delayed ACK (seen in bench/serve.py)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _worker(host: str, port: int, config: dict[str, Any]) -> None:
    sock = reuse_port_socket(host, port)
    server = uvicorn.Server(uvicorn.Config(APP, factory=True, host=host, port=port, **config))
    server.run(sockets=[sock])
