"""A throwaway PostgreSQL server for the tests.

Uses RESERVOIR_TEST_PG_URL when set (an existing server the tests may
create databases on); otherwise initialises a cluster in a temporary
directory and starts it on a free 127.0.0.1 port, as the `postgres` user
when running as root (initdb refuses root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.support.clients import missing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bindir() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


@dataclass
class PostgresServer:
    admin_url: str  # connects to the `postgres` maintenance database
    datadir: Path | None = None
    bindir: Path | None = None
    run_as: str | None = None

    def create_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        if self.datadir is None or self.bindir is None:
            return
        _run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "stop"], self.run_as, check=False)
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def _run(cmd: list[str], user: str | None, check: bool = True) -> subprocess.CompletedProcess[str]:
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


def start_postgres(base: Path) -> PostgresServer:
    url = os.environ.get("RESERVOIR_TEST_PG_URL")
    if url:
        return PostgresServer(admin_url=url)
    bindir = _pg_bindir()
    if bindir is None:
        missing("PostgreSQL server binaries (initdb)")
        raise AssertionError("unreachable")
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            missing("a `postgres` system user to run PostgreSQL as")
        run_as = "postgres"
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    datadir = base / "data"
    sockdir = base / "sock"
    sockdir.mkdir()
    if run_as:
        shutil.chown(base, run_as)
        shutil.chown(sockdir, run_as)
    _run([str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "-A", "trust", "--no-sync"], run_as)
    port = _free_port()
    opts = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockdir} -c fsync=off -c max_connections=200"
    _run([str(bindir / "pg_ctl"), "-D", str(datadir), "-o", opts, "-l", str(base / "log"), "-w", "start"], run_as)
    server = PostgresServer(
        admin_url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", datadir=datadir, bindir=bindir, run_as=run_as
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    return server
