"""A real API process for the end-to-end tests: uvicorn started as a subprocess on a free port,
over a SQLite file holding the hand-made world of tests/conftest.py and one API key per role.

In-process tests (FastAPI's TestClient) share the test's event loop, threads and imports; only a
separate process proves that the app starts from its environment alone (``ERPX_*``), binds a
port, and serves over real HTTP while another process (the test, as the warehouse) writes to the
same database.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from erp_core.db.migrate import upgrade_to_head
from erp_core.db.uow import UnitOfWork
from erp_core.policy import load_policy
from erp_core.services.master_data import load_master_data
from tests.conftest import ADMIN, T0, mlflow_store, small_world, stock
from tests.serving.conftest import keys_for_every_role

NOW = T0 + timedelta(hours=1)
"""The served process's frozen clock: Tuesday 2026-03-03 10:00 UTC, before the 15:00 cut-off."""

STARTUP_TIMEOUT_S = 60.0
"""Start-up imports pandas, LightGBM and MLflow: seconds on a loaded 2-core machine, never a
minute unless something is wrong."""


@dataclass
class LiveServer:
    """The running API: its base URL, a key per role, and the database it serves."""

    base_url: str
    keys: dict[str, str]
    uow: UnitOfWork
    log_path: Path
    client: httpx.Client

    def as_role(self, role: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def free_port() -> int:
    """A port nothing listens on now (the kernel's choice; released just before uvicorn binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stocked_world(url: str) -> UnitOfWork:
    """The schema by the migrations (as ``erpx serve`` would leave it), then the world:
    WIDGET 100 at WEST and 40 at EAST, GADGET 10 at WEST only."""
    upgrade_to_head(url)
    uow = UnitOfWork.from_url(url, load_policy())
    load_master_data(uow, ADMIN, small_world(), T0)
    stock(uow, "WIDGET", "WEST", 100)
    stock(uow, "WIDGET", "EAST", 40)
    stock(uow, "GADGET", "WEST", 10)
    return uow


def server_environment(folder: Path, url: str) -> dict[str, str]:
    """The process's whole configuration, all of it under the test's folder."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("ERPX_")}
    return inherited | {
        "ERPX_DATABASE_URL": url,
        "ERPX_MLFLOW_TRACKING_URI": mlflow_store(folder),
        "ERPX_MLFLOW_ARTIFACT_ROOT": str(folder / "mlartifacts"),
        "ERPX_VAR_DIR": str(folder / "var"),
        "ERPX_FROZEN_NOW": NOW.isoformat(),
        "ERPX_API_KEY_CACHE_SECONDS": "0",
        "OMP_NUM_THREADS": "1",
    }


def wait_until_healthy(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"uvicorn exited with code {process.returncode} before answering:\n"
                + log_path.read_text(errors="replace")
            )
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"uvicorn did not answer /healthz within {STARTUP_TIMEOUT_S:.0f} s:\n"
        + log_path.read_text(errors="replace")
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn shuts down gracefully), then SIGKILL if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("e2e")
    url = f"sqlite:///{folder / 'erpx.db'}"
    uow = stocked_world(url)
    keys = keys_for_every_role(uow)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = folder / "uvicorn.log"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "serving.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "info",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=server_environment(folder, url),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_healthy(process, base_url, log_path)
        with httpx.Client(base_url=base_url, timeout=30.0) as client:
            yield LiveServer(base_url, keys, uow, log_path, client)
    finally:
        stop(process)
        uow.engine.dispose()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Keep each phase's report on the test, so a fixture can tell whether its test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def server(live_server: LiveServer, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """The live server; when the test fails, the server's log is printed beside it."""
    yield live_server
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print(f"--- uvicorn log ({live_server.log_path}) ---\n{live_server.log()}")
