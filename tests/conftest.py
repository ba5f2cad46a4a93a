"""Shared pytest fixtures.  Each block below belongs to one area; add yours in its own block."""

from __future__ import annotations

import importlib.util
import os

# OpenMP threads that spin while waiting make boosting many times slower on shared cores
# (the CLI sets the same); must be set before scikit-learn loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import atexit
import shutil
import tempfile
from pathlib import Path

import pytest

# The suite's own cache (the empty MLflow store every new store is copied from:
# ``pipeline.tracking.new_store_from_template``), inherited by the commands the tests run, so the
# user's cache is neither read nor written; removed when the session ends.
if "CHURN_CACHE_DIR" not in os.environ:
    os.environ["CHURN_CACHE_DIR"] = tempfile.mkdtemp(prefix="churn-tests-cache-")
    atexit.register(shutil.rmtree, os.environ["CHURN_CACHE_DIR"], ignore_errors=True)

# --- records: a private PostgreSQL server (tests/postgres.py) --------------------------


def _load_postgres_helper():
    # Loaded by path so that it works whether or not tests/ is a package.
    spec = importlib.util.spec_from_file_location("churn_tests_postgres", Path(__file__).with_name("postgres.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def postgres_url():
    """A ``postgresql+psycopg://`` URL of an empty database on a private loopback server.

    The server is installed if needed, started once per session and stopped at the end;
    the test is skipped only when PostgreSQL cannot be installed.
    """
    helper = _load_postgres_helper()
    try:
        server = helper.postgres_server()
        url = server.__enter__()
    except helper.PostgresUnavailable as err:
        pytest.skip(f"PostgreSQL unavailable: {err}")
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def postgres_database(postgres_url):
    """A URL of a fresh, empty database of its own on the session's PostgreSQL server."""
    return _load_postgres_helper().create_database(postgres_url)


# --- end records -------------------------------------------------------------------------


# --- generated bases shared by several modules (read-only) ------------------------------------


@pytest.fixture(scope="session")
def generated_base_20k(tmp_path_factory) -> Path:
    """``simulate.generate(20_000, seed=3)`` in one part (row groups of 8,192, 8,192 and 3,616).

    Shared by tests/test_records.py and tests/test_train.py; tests only read it (copy it to change it).
    """
    from pipeline import simulate

    folder = tmp_path_factory.mktemp("generated-20k") / "base"
    simulate.generate(20_000, seed=3, out=folder, chunk_subscribers=20_000)
    return folder


# --- end generated bases ---------------------------------------------------------------------
