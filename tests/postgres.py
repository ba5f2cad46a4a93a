"""A throwaway PostgreSQL server for tests: found or installed, started on loopback, removed after.

``postgres_server()`` is a context manager yielding a ``postgresql+psycopg://`` URL of an
empty database.  It looks for the server binaries (``pg_ctl``, ``initdb`` on ``PATH`` or
under ``/usr/lib/postgresql/*/bin``); when they are missing and we are root on Debian it
runs ``apt-get install -y postgresql`` (with ``apt-get update`` first if needed).  The
cluster lives in a fresh temporary directory, listens only on 127.0.0.1 on a free port,
trusts local connections (it holds nothing but test data) and is stopped with
``pg_ctl stop -m fast`` and deleted at exit.  PostgreSQL refuses to run as root, so as
root the server runs as the ``postgres`` system user via ``runuser``.

``create_database(url)`` adds another empty database to the same server, so that tests
sharing one server need not share tables.

``PostgresUnavailable`` is raised, with the reason, only when PostgreSQL cannot be
found or installed; the fixture turns it into a skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

DATABASE = "churn_test"
SUPERUSER = "postgres"
START_TIMEOUT_SECONDS = 60


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed and cannot be installed here."""


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for directory in candidates:
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    return None


def _version_key(directory: str) -> tuple:
    version = Path(directory).parent.name
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def install_postgres() -> Path:
    """Install PostgreSQL with apt-get (root on Debian/Ubuntu only) and return its bin dir."""
    from servers import apt_install

    failed = apt_install(["postgresql"], "PostgreSQL")
    if failed:
        raise PostgresUnavailable(failed)
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable("apt-get installed postgresql but initdb/pg_ctl were not found")
    return bin_dir


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _runner() -> tuple[list[str], str | None]:
    """The command prefix that runs server programs as a non-root user, and that user."""
    if os.geteuid() != 0:
        return [], None
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError as err:
        raise PostgresUnavailable("running as root and there is no 'postgres' user to run the server as") from err
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", SUPERUSER, "--"], SUPERUSER
    return ["su", SUPERUSER, "-s", "/bin/sh", "-c"], SUPERUSER


def _run(prefix: list[str], command: list[str], **kwargs) -> subprocess.CompletedProcess:
    if prefix and prefix[0] == "su":  # su takes one shell string
        import shlex

        command = [" ".join(shlex.quote(part) for part in command)]
    return subprocess.run(prefix + command, capture_output=True, text=True, **kwargs)


def _wait_until_accepting(host: str, port: int, timeout: float) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(host=host, port=port, user=SUPERUSER, dbname="postgres", connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a private PostgreSQL cluster and yield a SQLAlchemy URL of an empty database."""
    import psycopg

    bin_dir = find_bin_dir() or install_postgres()
    prefix, user = _runner()
    # Not under pytest's tmp_path: that is private to root, and the server user must enter it.
    base = Path(tempfile.mkdtemp(prefix="churn-pg-"))
    data = base / "data"
    log = base / "server.log"
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    started = False
    try:
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"]
        init = _run(prefix, initdb)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip()}")
        for _attempt in range(3):  # a port can be taken between probing and binding
            port = free_port()
            options = f"-p {port} -c listen_addresses=127.0.0.1 -k {base} -c fsync=off"
            pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options]
            start = _run(prefix, pg_ctl + ["-w", "-t", str(START_TIMEOUT_SECONDS), "start"])
            if start.returncode == 0:
                started = True
                break
        if not started:
            server_log = log.read_text() if log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {start.stderr.strip()} {server_log[-2000:]}")
        _wait_until_accepting("127.0.0.1", port, START_TIMEOUT_SECONDS)
        with psycopg.connect(host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres", autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {DATABASE}")
        yield f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if started:
            _run(prefix, [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(base, ignore_errors=True)


def create_database(server_url: str) -> str:
    """Create a fresh empty database on the server of ``server_url`` and return its URL."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname="postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return url.set(database=name).render_as_string(hide_password=False)
