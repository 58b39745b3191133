"""A local PgBouncer in transaction-pooling mode in front of a PostgreSQL, for tests and benchmarks.

Debian's `pgbouncer` binary (`make test` installs it when root). Like the embedded PostgreSQL it refuses to
run as root, so as root it runs as the embedded server's user, in a folder of its own that user owns. It
listens on 127.0.0.1 on a free port and passes every database through to the server with the client's user
name (auth_type trust: local use only).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg

from opsapp import devdb

BINARY = "/usr/sbin/pgbouncer"


def available() -> bool:
    """Whether Debian's pgbouncer is installed here."""
    return Path(BINARY).is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(server: Mapping[str, Any], *, folder: Path, port: int, pool_size: int) -> str:
    host = server["HOST"] or server.get("OPTIONS", {}).get("host", "") or "localhost"
    target = f"host={host} port={server.get('PORT') or 5432}"
    if server.get("PASSWORD"):
        target += f" password={server['PASSWORD']}"
    return f"""[databases]
* = {target}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder}/users.txt
admin_users = {server["USER"]}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 1000
ignore_startup_parameters = extra_float_digits,options
logfile = {folder}/pgbouncer.log
pidfile = {folder}/pgbouncer.pid
"""


class PgBouncer:
    """One pgbouncer process in transaction mode; `url(database)` is how clients reach it."""

    def __init__(self, server: Mapping[str, Any], *, pool_size: int = 8):
        """`server`: a Django DATABASES entry of the PostgreSQL behind it. Fewer server connections
        (`pool_size`) than clients make every client share backends with the others."""
        self.user = server["USER"]
        self.folder = devdb.server_owned(Path(tempfile.mkdtemp(prefix="opsapp-pgbouncer-")))
        self.folder.chmod(0o755)
        self.port = _free_port()
        ini = self.folder / "pgbouncer.ini"
        ini.write_text(_config(server, folder=self.folder, port=self.port, pool_size=pool_size))
        (self.folder / "users.txt").write_text(f'"{self.user}" ""\n')
        self.proc = subprocess.Popen(devdb.as_server_user([BINARY, str(ini)]), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self._wait_until_listening()

    def _wait_until_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen on port {self.port} within {timeout} s")

    def url(self, database: str) -> str:
        """A DATABASE_URL for `database` through this pooler."""
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{database}"

    def show(self, what: str) -> list[dict[str, Any]]:
        """`SHOW <what>` on the admin console (simple query protocol only, hence the raw libpq call)."""
        with psycopg.connect(self.url("pgbouncer"), autocommit=True) as conn:
            result = conn.pgconn.exec_(f"SHOW {what}".encode())
            names = [result.fname(c).decode() for c in range(result.nfields)]
            return [{names[c]: (result.get_value(r, c) or b"").decode() for c in range(result.nfields)}
                    for r in range(result.ntuples)]

    def transactions(self, database: str) -> int:
        """Transactions pooled for `database` so far (pgbouncer's total_xact_count)."""
        return sum(int(row["total_xact_count"]) for row in self.show("STATS") if row["database"] == database)

    def log_tail(self, lines: int = 30) -> str:
        log = self.folder / "pgbouncer.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""

    def stop(self) -> None:
        """Shut it down (SIGTERM: close every connection at once) and remove its folder."""
        if self.proc.poll() is None:
            # To pgbouncer itself: runuser (root starts it as the server's user) waits 2 s after passing a signal on.
            try:
                children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
                pids = [int(pid) for pid in children.split()]
                for pid in pids or [self.proc.pid]:
                    os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError):  # gone meanwhile, or no /proc children: the wrapper passes it on
                self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.folder, ignore_errors=True)
