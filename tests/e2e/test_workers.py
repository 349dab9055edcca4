"""``erpx serve --workers 2``: two worker processes, each listening on its own SO_REUSEPORT
socket, share the connections of keep-alive clients between them, and both stop on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.conftest import (
    free_port,
    server_environment,
    stocked_world,
    wait_until_healthy,
)

CONNECTIONS = 16
BOTH_UP_TIMEOUT_S = 60.0
"""The first worker may answer /healthz while the second still imports and builds its index."""


def _listening_workers(parent: int, port: int) -> tuple[list[psutil.Process], set[int]]:
    deadline = time.monotonic() + BOTH_UP_TIMEOUT_S
    while True:
        workers = psutil.Process(parent).children(recursive=True)
        listening = {
            worker.pid
            for worker in workers
            for connection in worker.net_connections(kind="tcp")
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
        }
        if len(listening) >= 2 or time.monotonic() > deadline:
            return workers, listening
        time.sleep(0.2)


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreading is Linux's"
)
def test_two_workers_share_keep_alive_connections_and_stop_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'erpx.db'}"
    stocked_world(url).engine.dispose()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    erpx = str(Path(sys.executable).parent / "erpx")
    command = [erpx, "serve", "--workers", "2", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=server_environment(tmp_path, url),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    clients = []
    try:
        wait_until_healthy(process, base_url, log_path)
        workers, listening = _listening_workers(process.pid, port)
        assert len(listening) == 2, log_path.read_text(errors="replace")
        for _ in range(CONNECTIONS):
            client = httpx.Client(base_url=base_url, timeout=30.0)
            assert client.get("/healthz").status_code == 200
            clients.append(client)
        holding = {
            worker.pid
            for worker in workers
            for connection in worker.net_connections(kind="tcp")
            if connection.status == psutil.CONN_ESTABLISHED and connection.laddr.port == port
        }
        # 16 connections hashed onto two sockets all land on one with probability 2 / 2**16.
        assert holding == listening
    finally:
        for client in clients:
            client.close()
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, log_path.read_text(errors="replace")
    # The two workers are gone (multiprocessing's resource tracker, also a child, may outlive
    # the parent by a moment: it is not a worker).
    worker_processes = [worker for worker in workers if worker.pid in listening]
    _gone, alive = psutil.wait_procs(worker_processes, timeout=10)
    assert not alive
