"""Servers for tests: started on a free loopback port in their own process group, always stopped.

``running_server(command, ...)`` is a context manager: it starts ``command`` (with
``{port}`` in any argument replaced by a free port on 127.0.0.1) as the leader of a new
process group, its output going to a log file, waits until ``GET http://127.0.0.1:PORT<health>``
answers 200, yields a ``Server`` and, on exit, whatever happened, sends SIGTERM to the
whole group, then SIGKILL to whatever is left after a grace period.  A server that exits or
does not answer within the timeout raises ``ServerFailed`` with the end of its log; a port
taken between probing and binding is retried with another.

``run_churn`` runs the ``churn`` command in a subprocess, as a user would.

Two commands the suite needs: ``mlflow_server_command`` (a tracking server with a SQLite
store and proxied artifacts) and ``model_server_command`` (``mlflow models serve``).  Both
use the MLflow executable beside the running Python, and ``server_env`` puts that folder
first on ``PATH`` (``mlflow models serve`` runs ``uvicorn`` through a shell).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 15.0
PORT_ATTEMPTS = 3
_PORT_TAKEN = ("address already in use", "errno 98", "could not bind")

MLFLOW = str(Path(sys.executable).with_name("mlflow"))
CHURN = str(Path(sys.executable).with_name("churn"))


class ServerFailed(RuntimeError):
    """A test server did not come up; the message ends with its log."""


@dataclass
class Server:
    """A running server: its base URL, port, process and log file."""

    url: str
    port: int
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log (stdout and stderr together)."""
        return _tail(self.log_path, chars)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


#: Variables that point MLflow at a store.  ``mlflow.set_tracking_uri`` and ``set_registry_uri``
#: export them to the environment, so a test that ran before may have left them pointing at a
#: server that is gone: children get them only when a test gives them explicitly.
MLFLOW_STORE_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in MLFLOW_STORE_VARIABLES}


def server_env(**extra: str) -> dict[str, str]:
    """This process's environment (no MLflow store variables) with the venv's ``bin`` first on ``PATH``, plus ``extra``."""
    env = _clean_environ()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def mlflow_server_command(store: Path) -> list[str]:
    """``mlflow server`` on ``{port}``: SQLite backend under ``store``, artifacts served through it.

    ``--serve-artifacts`` makes the server the artifact proxy: new experiments get the
    ``mlflow-artifacts:/`` root and clients upload through HTTP into ``--artifacts-destination``,
    so a client needs no access to the server's disk.  One worker: the suite is the only
    client and the machine has two cores.
    """
    return [
        MLFLOW, "server",
        "--backend-store-uri", f"sqlite:///{(store / 'mlflow.db').as_posix()}",
        "--serve-artifacts",
        "--artifacts-destination", (store / "artifacts").as_uri(),
        "--host", HOST,
        "--port", "{port}",
        "--workers", "1",
    ]


#: Environment for ``mlflow server``: no job-execution side processes (six ``huey`` consumers
#: and a job runner by default; the suite runs no server-side jobs, and they double start-up time),
#: and no usage telemetry (as ``docs/scaling.md``'s command).
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}


def model_server_command(model_uri: str) -> list[str]:
    """``mlflow models serve`` of ``model_uri`` on ``{port}`` in this Python environment."""
    return [MLFLOW, "models", "serve", "-m", model_uri, "--env-manager", "local", "-h", HOST, "-p", "{port}",
            "--workers", "1"]


def store_client(folder: Path):
    """An ``MlflowClient`` on ``folder``'s embedded store (``mlflow.db``), for its runs and its
    registry both: without ``registry_uri`` the registry would be the one an earlier test set
    for this process."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{Path(folder) / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def run_churn(args: Sequence[str], cwd: Path, *, env: dict[str, str] | None = None, check: bool = True,
              timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the ``churn`` command beside this Python; MLflow store variables only as ``env`` gives them."""
    full_env = _clean_environ()
    full_env.update(env or {})
    result = subprocess.run([CHURN, *args], cwd=cwd, capture_output=True, text=True, env=full_env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"churn {' '.join(args)} failed with code {result.returncode}:\n{result.stderr}")
    return result


def wait_until_healthy(server: Server, health: str, timeout: float) -> None:
    """Poll ``health`` until it answers 200; raise ``ServerFailed`` if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        code = server.process.poll()
        if code is not None:
            raise ServerFailed(f"server exited with code {code} before answering {health}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + health, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise ServerFailed(f"server did not answer {health} within {timeout:.0f} s:\n{server.log_tail()}")
        time.sleep(0.25)


def stop(process: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the process group of ``process``; SIGKILL it if anything is left after ``grace`` seconds."""
    group = process.pid  # the leader of its own session: group id == pid
    _signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    while _group_alive(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(group) or process.poll() is None:
        _signal_group(group, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


@contextlib.contextmanager
def running_server(
    command: Sequence[str],
    *,
    log_path: Path,
    health: str = "/health",
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = START_TIMEOUT_SECONDS,
) -> Iterator[Server]:
    """Start ``command`` on a free loopback port, wait for ``health``, yield it, stop its process group."""
    last_error: ServerFailed | None = None
    for _attempt in range(PORT_ATTEMPTS):
        port = free_port()
        args = [part.replace("{port}", str(port)) for part in command]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=cwd, start_new_session=True,
            )
        server = Server(url=f"http://{HOST}:{port}", port=port, process=process, log_path=log_path)
        try:
            wait_until_healthy(server, health, timeout)
        except ServerFailed as err:
            stop(process)
            last_error = err
            if any(marker in server.log_tail().lower() for marker in _PORT_TAKEN):
                continue  # someone took the port between probing and binding: try another
            raise
        except BaseException:
            stop(process)
            raise
        try:
            yield server
        finally:
            stop(process)
        return
    raise last_error


def _signal_group(group: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


def group_members(group: int) -> list[int]:
    """Live (not zombie) processes of process group ``group``, from ``/proc``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = text[text.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(stat.parent.name))
    return members


def _group_alive(group: int) -> bool:
    if Path("/proc/self/stat").exists():
        return bool(group_members(group))
    try:  # no /proc: a group of zombies still counts as alive here
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, chars: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return text[-chars:]


def apt_install(packages: list[str], what: str) -> str | None:
    """Install Debian packages with apt-get (retrying once after ``apt-get update``).

    Returns None when they are installed, or why not in one line (``what`` names them)."""
    import shutil

    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{what} is not installed and apt-get as root is not available to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        result = subprocess.run(install, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
            return f"apt-get install {' '.join(packages)} failed: {' '.join(tail)}"
    return None
