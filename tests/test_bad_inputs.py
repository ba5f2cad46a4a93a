"""The bad-input corpus (tests/bad_inputs/cases.py) through the real `churn` command.

Each case: the exit code, stderr that is one `error:` line matching the case (argument errors:
that line first, then at most two short usage lines), no traceback, and nothing written,
registered or moved: the case folder holds exactly what the case wrote (plus the MLflow store
a command may open), the outputs named by the case do not exist, and the registry holds the
versions it held before.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from bad_inputs.cases import CASES, Case, table
from servers import run_churn

FAST = "[train]\nsearch_iterations = 0\ncv_folds = 3\ncandidates = [\"logistic\"]\nblend = false\n"
STORE = {"mlflow.db", "mlflow.db.lock", "mlruns"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A folder whose MLflow store holds a champion table model trained on ``cases.table()``."""
    folder = tmp_path_factory.mktemp("trained")
    table(600).to_csv(folder / "train.csv", index=False)
    (folder / "fast.toml").write_text(FAST)
    run_churn(["train", "--data", "train.csv", "--id", "customer", "--target", "Churn", "--positive", "Yes",
               "--value", "monthly", "--config", "fast.toml"], folder)
    return folder


def _versions(folder: Path) -> list[tuple]:
    db = folder / "mlflow.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as connection:
        try:
            return sorted(connection.execute("select name, version from model_versions").fetchall())
        except sqlite3.OperationalError:  # an empty store
            return []


def _contents(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if not set(p.relative_to(folder).parts) & STORE and not p.is_symlink()}


def test_the_corpus_is_large_and_named_once():
    assert len(CASES) >= 40
    assert len({case.name for case in CASES}) == len(CASES)


def _slow(case: Case) -> bool:
    """Cases with a model need one trained through `churn` (the ``trained`` fixture), and
    ``train --data`` cases load the training stack and open an MLflow store before they fail:
    seconds each.  The other cases fail before any of that and stay in the fast subset."""
    return case.model or case.args[:2] == ("train", "--data")


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name, marks=[pytest.mark.slow] if _slow(case) else [])
                                  for case in CASES])
def test_bad_input_gives_one_error_line_and_changes_nothing(case: Case, tmp_path, request):
    if case.model:
        home = request.getfixturevalue("trained")
        folder = home / case.name
        folder.mkdir()
        cwd, args = home, [a if a.startswith("-") or a in ("score", "train", "features") else f"{case.name}/{a}"
                           for a in case.args]
    else:
        folder = cwd = tmp_path
        args = list(case.args)
    case.setup(folder)
    before, versions = _contents(folder), _versions(cwd)

    result = run_churn(args, cwd, check=False)

    assert result.returncode == case.exit_code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and "Traceback" not in result.stderr, result.stderr
    first = lines[0].replace(f"{case.name}/", "") if case.model else lines[0]
    assert re.fullmatch(case.expected, first), f"\n{first}\n{case.expected}"
    if case.exit_code == 2:
        assert len(lines) <= 3 and all(len(line) <= 200 for line in lines), result.stderr
    else:
        assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    assert _contents(folder) == before
    for name in case.not_written:
        assert not (folder / name).exists()
    assert _versions(cwd) == versions
    if case.model:
        shutil.rmtree(folder)
