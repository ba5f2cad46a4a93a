"""Output files: atomic writes under unique temporary names, their permissions, and the
leftovers of killed runs.

Every file the pipeline writes for a user (an at-risk list, a feature table) is written under
a temporary name next to it, ``.NAME.<host>-<pid>.<random>.tmp``, and renamed into place when
complete, so a reader never sees a partial file and concurrent writers never share one.
Sorted runs of ``churn score --all`` go to a folder ``.NAME.runs.<host>-<pid>.<random>``.
A process killed outright (SIGKILL, a power cut) leaves those behind; ``sweep_leftovers``,
called by the next run writing into the same folder, removes the ones whose process is
gone, or, for names that carry no process (an older version's), that are older than
``STALE_SECONDS``.  Another live run's files are never touched.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

from pipeline.errors import ConfigError, DataError, hide_credentials

log = logging.getLogger(__name__)

#: Leftovers without a process id in their name are swept once this old (by modification time).
STALE_SECONDS = 15 * 60


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", socket.gethostname())[:40] or "host"


def owner_tag() -> str:
    """``<host>-<pid>``: which process a temporary name belongs to."""
    return f"{_host()}-{os.getpid()}"


def temp_file(path: str | Path) -> Path:
    """A new, empty temporary file next to ``path`` (``.NAME.<host>-<pid>.<random>.tmp``), owned by this process."""
    path = Path(path)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.{owner_tag()}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    return Path(temp)


def temp_folder(path: str | Path) -> Path:
    """A new temporary folder next to ``path`` (``.NAME.runs.<host>-<pid>.<random>``) for intermediate files."""
    path = Path(path)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.runs.{owner_tag()}.", dir=path.parent))


def file_mode(mode: int) -> int:
    """The permissions to give an output: ``mode``, or with ``0`` what the umask leaves of ``0o666``."""
    if mode:
        return mode
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def publish(temp: str | Path, path: str | Path, mode: int = 0) -> Path:
    """Give a finished temporary file its permissions (``file_mode``) and move it into place atomically."""
    os.chmod(temp, file_mode(mode))
    os.replace(temp, path)
    return Path(path)


_TAG = re.compile(r"(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.[^.]+")


def _owner_alive(rest: str) -> bool | None:
    """Whether the process named in a temporary name (the part after ``.NAME.``) runs (True/False),
    or None when it names none or another host (whose processes cannot be seen from here)."""
    core = rest.removeprefix("runs.").removesuffix(".tmp")
    match = _TAG.fullmatch(core)
    if match is None or match.group("host") != _host():
        return None
    pid = int(match.group("pid"))
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_leftovers(path: str | Path, *, now: float | None = None) -> list[Path]:
    """Remove what killed runs left next to ``path``: ``.NAME.*.tmp`` files and ``.NAME.runs.*`` folders.

    A leftover goes when the process in its name (on this host) is gone, or, when its name
    carries no process of this host, when it was last modified ``STALE_SECONDS`` ago or more.
    Returns what was removed.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    prefix = f".{path.name}."
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):]
        is_temp = rest.endswith(".tmp") and entry.is_file()
        is_runs = rest.startswith("runs.") and entry.is_dir()
        if not (is_temp or is_runs):
            continue
        alive = _owner_alive(rest)
        try:
            old = now - entry.stat().st_mtime >= STALE_SECONDS
        except OSError:
            continue
        if alive is True or (alive is None and not old):
            continue
        try:
            shutil.rmtree(entry) if is_runs else entry.unlink()
        except FileNotFoundError:
            continue
        except OSError as err:
            log.warning("could not remove the leftover %s: %s", entry, err)
            continue
        log.info("removed %s, left by a run that was stopped", entry)
        removed.append(entry)
    return removed


def check_output_path(output: str | Path, data: str, *, option: str = "--output") -> Path:
    """Refuse an output that is the input, or inside an input record folder (before any work).

    Paths are compared after resolving symbolic links and relative parts, so ``./a.csv``,
    ``dir/../a.csv`` and a link to ``a.csv`` are all ``a.csv``.
    """
    out = Path(output)
    if "://" in str(data):
        return out
    try:
        target = out.resolve()
        source = Path(data).resolve()
    except (OSError, RuntimeError) as err:
        raise DataError(f"{output}: cannot resolve the path ({err})") from err
    if target == source:
        raise DataError(f"{output}: {option} is the input --data {hide_credentials(data)}; write to another file "
                        "(the input would be overwritten)")
    if source.is_dir() and source in target.parents:
        raise DataError(f"{output}: {option} is inside the input record folder {data}; write it elsewhere "
                        "(it would become part of the records)")
    return out


def check_mode(mode: int) -> int:
    """``mode`` when it is a usable file mode (see ``ScoringConfig.file_mode``)."""
    if mode and not (0o600 <= mode <= 0o777 and mode & 0o600 == 0o600):
        raise ConfigError(f"scoring.file_mode {oct(mode)} must let the owner read and write (e.g. 0o640)")
    return mode
