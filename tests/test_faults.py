"""Faults: `churn train` and `churn score` killed outright (SIGKILL) at several points, concurrent
`churn features` writers, and an interrupt while the command starts.

A killed command cannot clean up after itself.  What must hold anyway: no partial output (the
list or feature table is absent, or complete), a registry whose champion is a whole, verified
model (a kill before registration registers nothing), and the next run into the same folder
sweeps what the killed one left (``pipeline.files.sweep_leftovers``).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from bad_inputs.cases import table
from servers import CHURN, _clean_environ, run_churn

FAST = "[train]\nsearch_iterations = 1\ncv_folds = 3\ncandidates = [\"logistic\", \"hist_gradient_boosting\"]\nblend = false\n"
TRAIN = ["train", "--data", "train.csv", "--id", "customer", "--target", "Churn", "--positive", "Yes",
         "--value", "monthly", "--config", "fast.toml"]


def _versions(folder: Path) -> list[tuple]:
    if not (folder / "mlflow.db").exists():
        return []
    with sqlite3.connect(folder / "mlflow.db") as connection:
        try:
            return sorted(connection.execute("select name, version from model_versions").fetchall())
        except sqlite3.OperationalError:
            return []


def _kill_at(args: list[str], cwd: Path, marker: str, *, delay: float = 0.0, timeout: float = 600) -> str:
    """Run `churn args`, SIGKILL it as soon as a progress line contains ``marker`` (after ``delay``); its stderr."""
    env = {**_clean_environ(), "CHURN_PROGRESS": "1"}
    process = subprocess.Popen([CHURN, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=env)
    seen = []
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        for line in process.stderr:
            seen.append(line)
            if marker in line:
                time.sleep(delay)
                process.send_signal(signal.SIGKILL)
                break
        process.wait()
    finally:
        timer.cancel()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL, "".join(seen)
    return "".join(seen)


def _leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faults")
    table(3000).to_csv(folder / "train.csv", index=False)
    table(20000, seed=9).drop(columns=["Churn"]).to_csv(folder / "base.csv", index=False)
    (folder / "fast.toml").write_text(FAST)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("marker, delay", [("candidate 2/", 0.0), ("logging the run to MLflow", 0.5),
                                           ("registering the model", 0.0)],
                         ids=["during-training", "while-logging", "after-logging"])
def test_killed_training_leaves_no_version_or_a_consistent_registry(workdir, marker, delay):
    before = _versions(workdir)
    _kill_at(TRAIN, workdir, marker, delay=delay)
    after = _versions(workdir)
    new = [v for v in after if v not in before]
    if marker != "registering the model":
        assert new == []  # nothing is registered before the run is logged whole
    assert len(new) <= 1
    # whatever the kill left, the champion (if any) loads, verified, and scores; the next run trains
    trained = run_churn(TRAIN, workdir)
    assert "registered post-breach-churn version" in trained.stdout
    scored = run_churn(["score", "--data", "base.csv", "--output", "check.csv"], workdir)
    assert "wrote" in scored.stdout


@pytest.mark.slow
@pytest.mark.parametrize("marker, delay", [("loading model", 0.0), ("scored ", 0.0), ("ranking ", 0.0),
                                           ("ranking ", 0.15)],
                         ids=["loading", "scoring", "before-writing", "while-writing"])
def test_killed_scoring_leaves_no_partial_list_and_the_next_run_sweeps(workdir, marker, delay):
    if not _versions(workdir):
        run_churn(TRAIN, workdir)
    out = workdir / "lists"
    out.mkdir(exist_ok=True)
    reference = out / "reference.csv"
    if not reference.exists():
        run_churn(["score", "--data", "base.csv", "--output", str(reference), "--all"], workdir)
    target = out / "all.csv"
    target.unlink(missing_ok=True)
    # a leftover of an earlier killed run (its process is gone), and one of a live run, to be kept
    dead = subprocess.Popen(["true"])
    dead.wait()
    from pipeline.files import owner_tag

    host = owner_tag().rsplit("-", 1)[0]
    planted = out / f".all.csv.{host}-{dead.pid}.zz9.tmp"
    planted.write_text("partial")
    live = out / f".all.csv.{host}-{os.getpid()}.live.tmp"
    live.write_text("another run's")

    _kill_at(["score", "--data", "base.csv", "--output", str(target), "--all"], workdir, marker, delay=delay)
    if target.exists():  # killed after the rename: the list is whole
        pd.testing.assert_frame_equal(pd.read_csv(target), pd.read_csv(reference))

    run_churn(["score", "--data", "base.csv", "--output", str(target), "--all"], workdir)
    assert _leftovers(out, "all.csv") == [live.name]
    pd.testing.assert_frame_equal(pd.read_csv(target), pd.read_csv(reference))
    live.unlink()


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("records")
    run_churn(["generate", "--subscribers", "3000", "--seed", "3", "--out", "base"], folder)
    return folder


@pytest.mark.slow
def test_concurrent_feature_writers_never_mix_and_leave_nothing_behind(records):
    env = _clean_environ()
    args = [CHURN, "features", "--data", "base", "--output", "features.parquet"]
    solo = subprocess.run([*args[:-1], "solo.parquet"], cwd=records, capture_output=True, text=True, env=env)
    assert solo.returncode == 0, solo.stderr
    writers = [subprocess.Popen(args, cwd=records, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for _ in range(3)]
    for writer in writers:
        _, err = writer.communicate(timeout=600)
        assert writer.returncode == 0, err
    pd.testing.assert_frame_equal(pd.read_parquet(records / "features.parquet"), pd.read_parquet(records / "solo.parquet"))
    assert _leftovers(records, "features.parquet") == []
    assert (records / "features.parquet").stat().st_mode & 0o777 == 0o640


@pytest.mark.slow
def test_a_killed_feature_writer_is_swept_by_the_next(records):
    _kill_at(["features", "--data", "base", "--output", "killed.parquet"], records, "features for ")
    assert not (records / "killed.parquet").exists() or pd.read_parquet(records / "killed.parquet").shape[0] == 3000
    run_churn(["features", "--data", "base", "--output", "killed.parquet"], records)
    assert _leftovers(records, "killed.parquet") == []
    assert pd.read_parquet(records / "killed.parquet").shape[0] == 3000


@pytest.fixture
def silent_server():
    """A loopback port that accepts connections and never answers: connecting hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def _wait_until_it_handles_sigterm(pid: int, timeout: float = 60.0) -> None:
    """Wait until ``churn`` has set its own signal handlers (the first thing its ``main`` does).

    Python catches SIGINT itself only when it starts with SIGINT not ignored (a job started in
    the background of a shell starts with it ignored, and an interrupt then is lost until
    ``main`` sets its handler); SIGTERM is caught by ``churn``'s handler alone, so a set SIGTERM
    bit in ``/proc/<pid>/status``'s ``SigCgt`` says that ``main`` has begun.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.01)
    raise AssertionError(f"churn (pid {pid}) set no SIGTERM handler within {timeout} s")


@pytest.mark.parametrize("delay", [pytest.param(0.4, id="importing"), pytest.param(1.5, id="loading"),
                                   pytest.param(4.0, id="connecting", marks=pytest.mark.slow)])  # waits 4 s
def test_an_interrupt_while_starting_stops_cleanly(tmp_path, silent_server, delay):
    table(100).to_csv(tmp_path / "t.csv", index=False)
    process = subprocess.Popen([CHURN, "train", "--data", "t.csv", "--target", "Churn", "--positive", "Yes",
                                "--tracking-uri", silent_server], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=_clean_environ())
    _wait_until_it_handles_sigterm(process.pid)  # the delay counts from main's start, however slow the start
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err == "error: interrupted; no output was written\n" and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


@pytest.mark.parametrize("wrapped", [
    pytest.param(lambda: ImportError("initialization failed"), id="a library's import error"),  # pybind11's wrapping
    pytest.param(lambda: __import__("pipeline.errors", fromlist=["PipelineError"]).PipelineError("cannot read x"),
                 id="the pipeline's own error")])
def test_an_interrupt_a_library_wrapped_still_ends_as_an_interrupt(monkeypatch, capsys, wrapped):
    from pipeline import cli

    def interrupted_while_loading(args, progress):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise wrapped() from interrupt

    monkeypatch.setattr(cli, "_stop_cleanly_on_signals", lambda: None)  # keep pytest's own handlers
    monkeypatch.setitem(cli.COMMANDS, "train", interrupted_while_loading)
    assert cli.main(["train", "--data", "t.csv", "--target", "Churn"]) == 130
    assert capsys.readouterr().err == "error: interrupted; no output was written\n"
    # an unrelated failure is still reported as itself
    monkeypatch.setitem(cli.COMMANDS, "train", lambda args, progress: (_ for _ in ()).throw(ImportError("no module x")))
    assert cli.main(["train", "--data", "t.csv", "--target", "Churn"]) == 1
    assert capsys.readouterr().err == "error: ImportError: no module x (rerun with --debug for details)\n"
