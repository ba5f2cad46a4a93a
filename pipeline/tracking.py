"""Everything MLflow: the store, training and scoring runs, the registry and its aliases.

With no tracking URI given, runs go to an embedded store in the current directory: a
SQLite file ``mlflow.db`` (so the model registry and aliases work with no server) and an
artifact folder ``mlruns/``.  A team server is used when ``--tracking-uri`` or
``MLFLOW_TRACKING_URI`` names one; an unreachable server fails before any work.

Models are saved in MLflow's skops format (loading never runs arbitrary code) with the
reviewed ``TRUSTED_TYPES``; ``pip_requirements`` are given explicitly.  Every file of a logged
model is hashed (SHA-256) when it is logged; the digest is a run tag and a model-version tag,
and ``load_model`` downloads the files, checks them against it and loads only the checked copy.
Nothing personal is logged: no rows, no ids, no names, no level of a column that looks
personal; the input example is synthetic; the report logged to a scoring run is the copy
without subscriber ids (``pipeline.report``).  The registry gate (``register_and_gate``) registers
a challenger, moves the aliases and rolls everything back when any step fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import getpass
import json
import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd

from pipeline.errors import ModelError, PipelineError, TrackingError, caused_by_interrupt, hide_credentials, one_line

log = logging.getLogger(__name__)

DB_FILE = "mlflow.db"
ARTIFACT_DIR = "mlruns"
CHAMPION = "champion"
CHALLENGER = "challenger"
#: Run tag and model-version tag holding the digest of a logged model's files (``model_digest``).
MODEL_HASH_TAG = "model_sha256"
#: Run artifact (beside, not inside, the model folder) listing the SHA-256 of each model file.
MODEL_HASH_FILE = "model_sha256.json"

#: Types outside skops' own safe list that the loader may build, each reviewed by hand, and
#: each produced by at least one model family this tool trains (logistic, histogram gradient
#: boosting, CatBoost, a blend; calibrated or not: ``tests/test_tracking.py`` dumps every one):
#: this project's transformer, calibration wrapper and CatBoost wrapper (the booster is kept as
#: CatBoost's own binary model in a ``bytes`` field, not a pickle); numpy dtypes; scikit-learn's
#: column selector; the boosting trees; scikit-learn's ``Bunch`` (a dict, in a blend); and
#: HistGradientBoosting's stored ``functools.partial(check_array, ...)`` (a partial of
#: scikit-learn's own input check, no user code).  A model holding any other type is refused
#: when logged and when loaded, so a new type must be reviewed and added here.
TRUSTED_TYPES = (
    "functools.partial",
    "numpy.dtype",
    "pipeline.model.CalibratedModel",
    "pipeline.model.CatBoostModel",
    "pipeline.model.HistGradientBoosting",
    "pipeline.prepare.TableTyper",
    "pipeline.response.ClassTransformationUplift",
    "pipeline.response.ResponseModel",
    "pipeline.response.TwoModelUplift",
    "pipeline.response.XLearnerUplift",
    "sklearn.compose._column_transformer.make_column_selector",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils._bunch.Bunch",
    "sklearn.utils.validation.check_array",
)


def quiet_mlflow() -> None:
    """Keep MLflow's and its database layer's chatter out of the user's terminal."""
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import mlflow  # noqa: F401  (configures its loggers on import; quieten them afterwards)

    for name in ("mlflow", "alembic", "alembic.runtime.migration", "sqlalchemy", "urllib3", "git", "skops"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def import_skops_first() -> None:
    """Import skops' persistence module before MLflow and its database layer are loaded.

    On import, skops builds its list of trusted types by looking up each of scipy's ufuncs (which
    name no module) in every loaded module, so the import's cost grows with what is already
    loaded: 1.3 s in a fresh process, 2.7 s once MLflow, SQLAlchemy and pyarrow are in (3,100
    modules instead of 2,000).  Saving and loading a model import it anyway.
    """
    import skops.io  # noqa: F401


def resolve_uri(explicit: str | None, workdir: str | Path = ".") -> str:
    """The tracking URI: the option, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<workdir>/mlflow.db``."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(Path(workdir).resolve() / DB_FILE).as_posix()}"


def artifact_root(uri: str) -> str | None:
    """Where a local store keeps artifacts (``mlruns/`` beside the SQLite file); None for servers."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).resolve().parent / ARTIFACT_DIR).as_uri()
    return None


def ui_command(uri: str) -> str:
    """The exact shell command that opens the MLflow UI on this store (with MLflow's usage
    telemetry off, as in every ``churn`` command: ``pipeline/__init__.py``)."""
    if uri.startswith("sqlite:///"):
        root = Path(artifact_root(uri)[len("file://"):])
        return (f"MLFLOW_DISABLE_TELEMETRY=true mlflow ui --backend-store-uri {uri} --default-artifact-root {root}"
                " --port 5000")
    return f"open {hide_credentials(uri)} in a browser (a tracking server has its own UI)"


def connect(uri: str, *, models: bool = False) -> None:
    """Point MLflow at ``uri`` and make sure the store answers; fail fast with one line if not.

    A local SQLite store is created once under a file lock, since concurrent first
    migrations of one SQLite file can corrupt it, as a copy of the user's empty store
    (``new_store_from_template``).  ``models``: the command will save or load a
    model, so skops is imported first (``import_skops_first``).
    """
    if models:
        import_skops_first()
    quiet_mlflow()
    import mlflow

    shown = hide_credentials(uri)
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            response = requests.get(uri.rstrip("/") + "/health", timeout=5)
        except requests.RequestException as err:
            raise TrackingError(f"tracking server {shown} is unreachable ({type(err).__name__})") from err
        if response.status_code != 200:
            raise TrackingError(f"tracking server {shown} answered HTTP {response.status_code} on /health")
    elif uri.startswith("sqlite:///"):
        import fcntl

        db = Path(uri[len("sqlite:///"):])
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            with open(db.with_name(db.name + ".lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                from mlflow.tracking import MlflowClient

                if not db.exists():
                    new_store_from_template(db)

                MlflowClient(uri).search_experiments(max_results=1)
        except OSError as err:
            raise TrackingError(f"cannot create the MLflow store {db}: {one_line(err)}") from err
        except Exception as err:  # an MLflow or database error: one line, no credentials
            raise TrackingError(f"cannot open the MLflow store {shown}: {one_line(err)}") from err
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


#: Tables that hold what users log; an empty store's template has no row in any of them (its
#: migrations only write the schema revision and MLflow's default workspace).
_USER_TABLES = ("experiments", "runs", "registered_models", "model_versions")


def store_template_path() -> Path:
    """Where this user's template of an empty store is kept: one per MLflow and SQLAlchemy version.

    ``$CHURN_CACHE_DIR``, else ``$XDG_CACHE_HOME/churn-pipeline``, else ``~/.cache/churn-pipeline``.
    """
    from importlib.metadata import version

    folder = os.environ.get("CHURN_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "churn-pipeline"
    return Path(folder) / f"mlflow-{version('mlflow')}-sqlalchemy-{version('sqlalchemy')}-empty-store.db"


def _is_empty_store(path: Path) -> bool:
    """Whether ``path`` is an intact SQLite store with MLflow's schema revision and nothing logged."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            if connection.execute("pragma quick_check").fetchone()[0] != "ok":
                return False
            if connection.execute("select count(*) from alembic_version").fetchone()[0] != 1:
                return False
            return all(connection.execute(f"select count(*) from {table}").fetchone()[0] == 0 for table in _USER_TABLES)
    except sqlite3.Error:
        return False


def _make_store_template(template: Path) -> None:
    """MLflow's tables and migrations on an empty SQLite file, moved into place whole."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    template.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=template.parent, prefix=".template-") as scratch:
        made = Path(scratch) / template.name
        engine = sqlalchemy.create_engine(f"sqlite:///{made.as_posix()}")
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        if not _is_empty_store(made):
            raise TrackingError(f"a new store template {made} is not an empty MLflow store")
        os.replace(made, template)


def new_store_from_template(db: Path) -> None:
    """Create the new store ``db`` as a copy of an empty store made once per MLflow version.

    Creating a store's tables runs MLflow's schema migrations, about 2.5 CPU-s, which every new
    folder used to pay; a copy of the same empty store takes milliseconds.  MLflow then opens
    it as it opens any store: it checks the schema revision and adds the default experiment
    with this store's own artifact root.  A template that is missing is made; one that is not an
    empty MLflow store (``_is_empty_store``) is made again; templates are only ever replaced
    whole, so the copy is the template checked.  The copy is moved into place whole.  Any
    failure leaves ``db`` absent for MLflow to create the usual way.  The caller holds the
    store's lock and has checked that ``db`` does not exist.
    """
    import shutil

    from pipeline.files import publish, sweep_leftovers, temp_file

    try:
        template = store_template_path()
        if not _is_empty_store(template):
            _make_store_template(template)
        sweep_leftovers(db)
        partial = temp_file(db)
        try:
            shutil.copyfile(template, partial)
            publish(partial, db)
        finally:
            partial.unlink(missing_ok=True)
    except Exception as err:  # noqa: BLE001 - an unwritable cache or a changed MLflow: create it the usual way
        if caused_by_interrupt(err):
            raise
        log.debug("new store %s not made from a template (%s); MLflow creates it", db, one_line(err))


def experiment_id(name: str, uri: str) -> str:
    """The id of experiment ``name``, created with the local artifact root when new."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_root(uri))
    except Exception:  # another process created it first
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def git_commit() -> str:
    """The commit of the code that ran, or ``unknown`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a model's behaviour."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("scikit-learn", "pandas", "numpy", "scipy", "mlflow", "skops", "pyarrow"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def pip_requirements(types: Iterable[str] = ()) -> list[str]:
    """Exact requirements of a logged model (given explicitly: inference is slow and needs the network).

    ``types``: the model's skops types (``check_trusted``); CatBoost is listed only when they
    hold a CatBoost part.
    """
    from importlib.metadata import version

    names = [f"{name}=={v}" for name, v in package_versions().items() if name != "mlflow"]
    if "pipeline.model.CatBoostModel" in types:
        names.append(f"catboost=={version('catboost')}")
    return names


@contextlib.contextmanager
def _installed_requirements_not_rechecked() -> Iterator[None]:
    """Leave out MLflow's check of a model's requirements against the installed packages while it is logged.

    MLflow runs it when it writes the requirements and again when it loads the logged model
    back to check its input example.  The requirements this tool gives are read from the
    installed packages themselves (``package_versions``), and MLflow pins its own installed
    version, so the check cannot find a mismatch; its first call in a process maps every
    installed distribution to its modules, 1.1-1.3 CPU-s.  The check is MLflow's to run when
    the model is loaded elsewhere.
    """
    import mlflow.pyfunc
    from mlflow.utils import environment

    name = "warn_dependency_requirement_mismatches"
    # Where MLflow calls it from (an MLflow without it somewhere: nothing to leave out there).
    users = [module for module in (environment, mlflow.pyfunc) if callable(getattr(module, name, None))]
    checks = [getattr(module, name) for module in users]
    for module in users:
        setattr(module, name, lambda requirements: None)
    try:
        yield
    finally:
        for module, check in zip(users, checks):
            setattr(module, name, check)


def _scalar_params(params: dict[str, Any], limit: int = 250) -> dict[str, str]:
    """Loggable parameters: scalars and short values only (no estimators, no arrays)."""
    out = {}
    for key, value in params.items():
        if hasattr(value, "get_params") or callable(value) or isinstance(value, (np.ndarray, pd.DataFrame)):
            continue
        text = str(value)
        out[key] = text if len(text) <= limit else text[: limit - 3] + "..."
    return out


def example_row(frame: pd.DataFrame, id_column: str | None, *,
                levels: Mapping[str, list[str]] | None = None) -> pd.DataFrame:
    """A synthetic input row for the logged model: no subscriber's data, nothing personal.

    Parameters
    ----------
    frame : DataFrame
        The model's input columns (training rows).
    id_column : str or None
        The id column, given the placeholder ``"example"``.
    levels : mapping, optional
        The model's learned category levels per column (``TableTyper.levels_``: each level
        was seen at least ``min_level_count`` times in training).

    Returns
    -------
    DataFrame
        One row: a number column holds its median rounded to two significant digits; a
        text column the most common of its learned levels, or of its values when it is a
        yes/no column; anything else, and every column that looks personal, a placeholder
        (``"example"`` or a blank).  No single row's value is copied.
    """
    from pipeline.prepare import OTHER, looks_personal, yes_no_levels

    levels = dict(levels or {})
    row = {}
    for name in frame.columns:
        column = frame[name]
        if name == id_column:
            row[name] = ["example"]
            continue
        personal = looks_personal(name, column)
        if column.dtype.kind in "biuf":
            value = np.nan
            if not personal and column.notna().any():
                value = float(f"{float(column.median()):.2g}")
            row[name] = pd.Series([value], dtype="float64" if column.dtype.kind in "biu" else column.dtype)
            continue
        value = None
        if not personal:
            counts = column.astype("string").str.strip().value_counts()
            allowed = [level for level in levels.get(str(name), []) if level != OTHER] or yes_no_levels(column)
            known = counts[counts.index.isin(allowed)]
            if len(known):
                value = str(known.index[0])
            else:
                from pipeline.prepare import text_numbers

                numbers = text_numbers(column)  # the typing step's own rule ("1,234.5" is a number)
                if numbers is not None:
                    value = f"{float(numbers.median()):.2g}"
        row[name] = [value if value is not None else ("example" if not personal else None)]
    return pd.DataFrame({k: pd.Series(v) for k, v in row.items()})


def _typer_of(model):
    """The fitted ``TableTyper`` of a trained model (calibrated, blended or plain), or None."""
    from pipeline.model import final_estimator

    inner = final_estimator(model)
    if hasattr(inner, "named_steps"):
        return inner.named_steps.get("typer")
    estimators = getattr(inner, "estimators_", None)
    if estimators:
        return getattr(estimators[0], "named_steps", {}).get("typer")
    return None


def signature_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as MLflow should see it.

    No pandas ``category`` dtype (signatures reject it) and integers as floats, since a
    blank in an integer column at scoring time arrives as a float and would fail the schema.
    """
    cast = {}
    for name in frame.columns:
        dtype = frame[name].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            cast[name] = "object"
        elif dtype.kind in "iu":
            cast[name] = "float64"
    return frame.astype(cast) if cast else frame


def check_trusted(model) -> list[str]:
    """The skops types of ``model``; raises when one is not in the reviewed ``TRUSTED_TYPES``."""
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    unknown = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if unknown:
        raise ModelError(f"the model holds types not reviewed for safe loading: {', '.join(unknown)}")
    return sorted(set(untrusted))


def log_training(result, dataset, config, *, uri: str, plots: dict[str, Path], extra_artifacts: dict[str, Any]) -> str:
    """Log a training run (params, metrics, candidates, plots, lineage, model); return its run id."""
    import mlflow
    from mlflow.models import infer_signature

    _quiet_experiment(config, uri)
    trusted = check_trusted(result.model)
    X = dataset.frame[result.input_columns]
    from pipeline.drift import profile as drift_profile

    profile = drift_profile(X, skip=(dataset.id_column,))
    typer = _typer_of(result.model)
    example = example_row(X, dataset.id_column, levels=getattr(typer, "levels_", None))
    # The output is what the served pyfunc returns: predict_proba's two columns (stay, churn).
    signature = infer_signature(signature_frame(X.head(1000)), result.model.predict_proba(example))
    with mlflow.start_run(run_name=f"train-{result.family}") as run:
        _log_training_facts(result, dataset, config)
        _log_data_input(dataset, name="training-data", context="training", tags={
            "content_sha256": dataset.content_hash(),
            "rows": str(dataset.n_rows),
            "label_rate": f"{float(dataset.label.mean()):.6f}",
            "mode": dataset.mode,
        })
        for path in plots.values():
            mlflow.log_artifact(str(path), artifact_path="plots")
        for name, payload in extra_artifacts.items():
            if isinstance(payload, pd.DataFrame):
                mlflow.log_table(payload, artifact_file=name) if name.endswith(".json") else _log_frame(payload, name)
            else:
                mlflow.log_dict(payload, name)
        _log_model(
            result.model, trusted=trusted, signature=signature, example=example, predict_fn="predict_proba",
            metadata={
                "base_rate": result.base_rate,
                "mode": dataset.mode,
                "id_column": dataset.id_column,
                "label_column": dataset.label_column,
                "value_column": dataset.value_column,
                "input_columns": result.input_columns,
                "family": result.family,
                "calibration": result.calibration,
                "fit_rows": result.fit_rows,
                # What the gate needs to compare a later model on "the same hold-out": a refit
                # model has seen this hold-out, so its own hold-out metrics stand in for it.
                "holdout": _holdout_record(result, dataset, config, fraction=config.train.holdout_fraction),
                "profile": profile,
            },
        )
        return run.info.run_id


def _quiet_experiment(config, uri: str) -> None:
    """Make the configured experiment the active one, with MLflow's own user warnings silenced."""
    import warnings

    import mlflow

    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")
    mlflow.set_experiment(experiment_id=experiment_id(config.tracking.experiment, uri))


def _log_training_facts(result, dataset, config) -> None:
    """Log a training run's tags, parameters and metrics, and each selection candidate as a nested run."""
    import mlflow

    mlflow.set_tags(
        {
            "stage": "train",
            "git_commit": git_commit(),
            "seed": str(config.train.seed),
            "model_family": result.family,
            "calibration": result.calibration,
            "threads": str(result.threads),
            "folds": result.folds,
            "data_mode": dataset.mode,
            **{f"version.{k}": v for k, v in package_versions().items()},
        }
    )
    mlflow.log_params(config.flat())
    mlflow.log_params({f"model.{k}": v for k, v in _scalar_params(result.model.get_params(deep=True)).items()})
    mlflow.log_metrics({k: float(v) for k, v in result.metrics.items() if np.isfinite(v)})
    mlflow.log_metrics({f"cv.{k}": float(v) for k, v in result.calibration_scores.items()})
    mlflow.log_metrics({f"timing.{k}": v for k, v in result.timings.items()})
    mlflow.log_metrics({"fit_rows": result.fit_rows, "train_rows": result.train_rows})
    for _, row in result.candidates.iterrows():
        with mlflow.start_run(run_name=row["candidate"], nested=True):
            mlflow.set_tag("stage", "selection")
            mlflow.log_params({"family": row["family"], **_scalar_params(dict(row["params"]))})
            mlflow.log_metrics({f"cv_{k}": float(row[k]) for k in ("roc_auc", "pr_auc", "log_loss", "brier", "fit_seconds")})


def _log_data_input(dataset, *, name: str, context: str, tags: dict[str, str]) -> None:
    """Log the training data's lineage (source without credentials, content hash) as the run's input.

    ``name`` is used when the source's own name is empty.
    """
    import mlflow
    from mlflow.data.meta_dataset import MetaDataset

    source = MetaDataset(
        source=_dataset_source(dataset.source),
        name=Path(str(dataset.source)).name or name,
        digest=dataset.content_hash()[:16],
    )
    mlflow.log_input(source, context=context, tags=tags)


def _holdout_record(result, dataset, config, *, fraction: float) -> dict[str, Any]:
    """What the gate needs to compare a later model on the same hold-out: the data, the split and the metrics."""
    return {
        "data_sha256": dataset.content_hash(),
        "seed": config.train.seed,
        "fraction": fraction,
        "refit_all_rows": result.fit_rows > result.train_rows,
        "metrics": {k: float(v) for k, v in result.metrics.items() if np.isfinite(v)},
    }


def _log_model(model, *, trusted: list[str], signature, example: pd.DataFrame, predict_fn: str,
               metadata: dict[str, Any]) -> None:
    """Log ``model`` to the active run (skops, the reviewed trusted types, explicit requirements), then its hash."""
    import mlflow

    with _installed_requirements_not_rechecked():
        logged = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format="skops",
            skops_trusted_types=trusted,
            signature=signature,
            input_example=signature_frame(example),
            pip_requirements=pip_requirements(trusted),
            code_paths=[str(Path(__file__).parent)],
            pyfunc_predict_fn=predict_fn,
            metadata=metadata,
        )
    record_model_hash(mlflow.get_logged_model(logged.model_id).artifact_location)


#: A file MLflow itself writes into a model folder, beside the model, whenever the model is
#: loaded through a ``models:/`` URI from a local store (name and version, for lineage).  It
#: is neither hashed nor loaded: ``verified_model_files`` removes it from the checked copy.
MLFLOW_WRITES = ("registered_model_meta",)


def file_hashes(folder: str | Path) -> dict[str, str]:
    """SHA-256 (hex) of every file under ``folder``, keyed by its POSIX path relative to it, sorted.

    The top-level files MLflow writes on its own when a model is loaded (``MLFLOW_WRITES``)
    are left out.
    """
    import hashlib

    root = Path(folder)
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.parent == root and path.name in MLFLOW_WRITES:
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        out[path.relative_to(root).as_posix()] = digest.hexdigest()
    return dict(sorted(out.items()))


def model_digest(hashes: Mapping[str, str]) -> str:
    """One SHA-256 over the sorted ``path<TAB>sha256`` lines of ``file_hashes``: the model's content hash."""
    import hashlib

    lines = "".join(f"{path}\t{sha}\n" for path, sha in sorted(hashes.items()))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def record_model_hash(model_uri: str) -> str:
    """Hash the files of a just-logged model, as stored, and record it with the active run.

    ``model_uri`` is where the files are stored (the logged model's artifact location, not a
    ``models:/`` URI, whose download adds a ``registered_model_meta`` file of its own).  The
    files are downloaded back from the store (so what is hashed is what a later load gets); the digest becomes the run tag ``model_sha256`` (``register_and_gate`` copies it
    to the model version) and the per-file hashes the run artifact ``model_sha256.json``,
    outside the model folder.  Returns the digest.
    """
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        hashes = file_hashes(local)
    digest = model_digest(hashes)
    mlflow.log_dict({"algorithm": "sha256", "digest": digest, "files": hashes}, MODEL_HASH_FILE)
    mlflow.set_tag(MODEL_HASH_TAG, digest)
    return digest


def _log_frame(frame: pd.DataFrame, name: str) -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(name).name
        frame.to_csv(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=str(Path(name).parent) if Path(name).parent != Path(".") else None)


def _dataset_source(source: str):
    """An MLflow dataset source for a path or URL, with any credentials removed."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    from mlflow.exceptions import MlflowException

    text = str(source)
    if "://" not in text:
        text = Path(text).resolve().as_uri()  # a file or a record folder: a local artifact source
    text = hide_credentials(text)  # database URLs: user:***@host
    if text.split("://", 1)[0].split("+", 1)[0].lower() in DATABASE_SCHEMES:
        return _database_source(text)
    try:
        return resolve_dataset_source(text)
    except MlflowException as err:
        raise TrackingError(f"cannot record the data source {text} in MLflow: {one_line(err)}") from err


#: URL schemes (before any ``+driver``) of the databases a record base can be read from.
DATABASE_SCHEMES = frozenset({"sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql", "duckdb",
                              "snowflake", "redshift", "bigquery", "trino", "clickhouse", "databricks"})


def _database_source(url: str):
    """An MLflow dataset source of kind ``database`` for a SQLAlchemy URL (password already hidden)."""
    from mlflow.data.dataset_source import DatasetSource

    class DatabaseDatasetSource(DatasetSource):
        """A record base read from a database through SQLAlchemy."""

        def __init__(self, url: str):
            self.url = url

        @staticmethod
        def _get_source_type() -> str:
            return "database"

        def load(self, **kwargs):  # the pipeline reads databases itself (pipeline.records)
            raise NotImplementedError("read it with pipeline.records.load_records")

        @staticmethod
        def _can_resolve(raw_source) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source):
            return cls(str(raw_source))

        def to_dict(self) -> dict:
            return {"url": self.url}

        @classmethod
        def from_dict(cls, source_dict: dict):
            return cls(source_dict["url"])

    return DatabaseDatasetSource(url)


MISSING = "RESOURCE_DOES_NOT_EXIST"


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def _is_missing(err: BaseException) -> bool:
    """True when ``err`` is MLflow's "no such registered model / version" (``RESOURCE_DOES_NOT_EXIST``)."""
    from mlflow.exceptions import MlflowException

    return isinstance(err, MlflowException) and err.error_code == MISSING


def _registry_error(what: str, err: BaseException) -> TrackingError:
    """A one-line ``TrackingError`` for a registry call that failed for a reason other than "missing"."""
    return TrackingError(f"the model registry failed while {what}: {one_line(err)}")


@dataclass(frozen=True)
class RegistryState:
    """A registered model as the gate found it: whether it exists, and its aliases (``alias -> version``)."""

    exists: bool
    aliases: dict[str, int]


def registry_state(model_name: str) -> RegistryState:
    """Whether ``model_name`` is registered, and its aliases.

    Only MLflow's ``RESOURCE_DOES_NOT_EXIST`` means "not registered".  Aliases are read from
    the registered model itself (MLflow 3 reports a missing alias as
    ``INVALID_PARAMETER_VALUE``, the code of many other errors too), so no error is ever
    read as "no such alias".  Any other failure (a locked SQLite file, a server error)
    raises ``TrackingError`` with one line.
    """
    try:
        model = _client().get_registered_model(model_name)
    except Exception as err:
        if _is_missing(err):
            return RegistryState(exists=False, aliases={})
        raise _registry_error(f"reading registered model {model_name}", err) from err
    return RegistryState(exists=True, aliases={str(k): int(v) for k, v in (model.aliases or {}).items()})


def champion_version(model_name: str) -> int | None:
    """The version holding the ``champion`` alias; None only when there is truly none.

    Raises
    ------
    TrackingError
        When the registry cannot be read (not when the model or alias does not exist).
    """
    return registry_state(model_name).aliases.get(CHAMPION)


def register(run_id: str, model_name: str, *, artifact_path: str = "model") -> int:
    """Register the run's model as a new version, its content hash as the tag ``model_sha256``; return the version.

    No alias is set here: ``register_and_gate`` does that, and undoes everything on failure.
    """
    import io

    import mlflow

    tags = {}
    digest = _client().get_run(run_id).data.tags.get(MODEL_HASH_TAG)
    if digest:
        tags[MODEL_HASH_TAG] = digest
    with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints "Successfully registered ..." itself
        version = mlflow.register_model(f"runs:/{run_id}/{artifact_path}", model_name, tags=tags or None)
    return int(version.version)


def promote(model_name: str, version: int, *, reason: str, metrics: Mapping[str, float] | None = None) -> int | None:
    """Give ``version`` the ``champion`` alias; record who, when, why; return the version it replaced.

    Raises
    ------
    TrackingError
        ``model NAME has no version N`` when it truly does not exist; any other registry
        failure (before or during the promotion) with its own one-line message.
    """
    client = _client()
    try:
        client.get_model_version(model_name, str(version))
    except Exception as err:
        if _is_missing(err):
            raise TrackingError(f"model {model_name} has no version {version}") from err
        raise _registry_error(f"reading {model_name} version {version}", err) from err
    previous = champion_version(model_name)
    record = {
        "promoted_by": getpass.getuser(),
        "promoted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "promotion_reason": reason,
        "replaced_version": "none" if previous is None else str(previous),
    }
    if metrics:
        record["promotion_metrics"] = json.dumps({k: round(float(v), 6) for k, v in metrics.items()
                                                  if np.isfinite(v)})
    try:
        client.set_registered_model_alias(model_name, CHAMPION, str(version))
        for key, value in record.items():
            client.set_model_version_tag(model_name, str(version), key, value)
        client.update_model_version(
            model_name,
            str(version),
            description=f"Champion since {record['promoted_at']} ({record['promoted_by']}): {reason}",
        )
    except Exception as err:
        raise _registry_error(f"promoting {model_name} version {version}", err) from err
    return previous


@dataclass
class Registration:
    """What ``register_and_gate`` did."""

    run_id: str
    version: int
    promoted: bool
    #: The champion after the gate (this version when promoted).
    champion_version: int | None
    message: str
    #: The champion before the gate, and its score on this run's hold-out (None: none, or incomparable).
    previous_champion: int | None = None
    champion_score: float | None = None


def mark_run_failed(run_id: str) -> None:
    """Mark a run ``FAILED`` (best effort: a store that cannot be written is only logged)."""
    try:
        _client().set_terminated(run_id, status="FAILED")
    except Exception as err:  # the original failure matters more than this one
        log.warning("could not mark run %s as failed: %s", run_id, one_line(err))


def rollback_registration(model_name: str, version: int | None, before: RegistryState) -> list[str]:
    """Put the registry back as ``before``: delete ``version``, restore the aliases, drop a new model.

    Returns the steps that failed (empty when the rollback is complete).
    """
    client = _client()
    failed = []
    if version is not None:
        try:
            client.delete_model_version(model_name, str(version))  # its aliases go with it
        except Exception as err:
            if not _is_missing(err):
                failed.append(f"delete version {version} ({one_line(err)})")
    if not before.exists:
        try:
            client.delete_registered_model(model_name)
        except Exception as err:
            if not _is_missing(err):
                failed.append(f"delete registered model {model_name} ({one_line(err)})")
        return failed
    for alias, previous in before.aliases.items():
        try:
            client.set_registered_model_alias(model_name, alias, str(previous))
        except Exception as err:
            failed.append(f"restore alias {alias} to version {previous} ({one_line(err)})")
    return failed


def register_and_gate(
    run_id: str,
    model_name: str,
    *,
    metric: str,
    challenger_score: float,
    champion_score: Callable[[int], float | None],
    metrics: Mapping[str, float] | None = None,
    artifact_path: str = "model",
    promote_command: str = "churn promote {version}",
) -> Registration:
    """Register a trained model as ``challenger`` and make it ``champion`` when it beats the champion.

    The registry gate, for any registered model (the churn model, a response model...).
    Everything that can fail for a reason of its own happens before anything is registered:
    the registry is read and the champion scored on this run's hold-out.  Then the version
    is registered (with the model's content hash as a tag), ``challenger`` moves to it and,
    when it is the first model or ``challenger_score > champion score``, so does
    ``champion`` (with who, when, why and ``metrics`` in its tags and description).  If any
    step fails, or is interrupted, the registry is put back exactly as it was (the new
    version deleted, the previous aliases restored, a model registered by this call
    removed), the run is marked ``FAILED``, and the error is raised.

    Parameters
    ----------
    run_id : str
        The training run that logged the model (under ``artifact_path``).
    model_name : str
        The registered model, e.g. ``post-breach-churn`` or ``post-breach-churn-response``.
    metric : str
        Name of the promotion metric (higher is better), for messages and the run's
        ``champion_<metric>`` metric.
    challenger_score : float
        The new model's ``metric`` on this run's hold-out.
    champion_score : callable
        ``champion_score(version)`` gives the champion's ``metric`` on the same hold-out, or
        None when the two cannot be compared (the champion takes other inputs); it is
        called before registration, and anything it raises fails the run with nothing
        registered.
    metrics : mapping, optional
        Metrics recorded with a promotion (default: ``{metric: challenger_score}``).
    artifact_path : str
        Where the run logged the model.
    promote_command : str
        The command that promotes by hand, with ``{version}``, for the message when the
        models cannot be compared.

    Returns
    -------
    Registration

    Raises
    ------
    TrackingError
        The registry could not be read or written, or the champion could not be scored
        (the cause is in the message); the registry is as it was before the call.

    Examples
    --------
    A second registered model uses the same gate with its own metric::

        register_and_gate(run_id, f"{name}-response", metric="qini", challenger_score=qini,
                          champion_score=lambda version: response_qini(version, holdout))
    """
    client = _client()
    before, champion, champion_value = _champion_before_gate(run_id, model_name, champion_score)
    version = None
    try:
        version = register(run_id, model_name, artifact_path=artifact_path)
        client.set_registered_model_alias(model_name, CHALLENGER, str(version))
        challenger_score = float(challenger_score)
        recorded = dict(metrics) if metrics else {metric: challenger_score}
        promoted, message = _gate_decision(model_name, version, metric=metric, challenger_score=challenger_score,
                                           champion=champion, champion_value=champion_value, recorded=recorded,
                                           promote_command=promote_command)
        if champion_value is not None:
            client.log_metric(run_id, f"champion_{metric}", champion_value)
        client.set_tag(run_id, "promoted", str(promoted).lower())
        client.set_tag(run_id, "registered_version", str(version))
    except BaseException as err:
        undone = _undo_registration(run_id, model_name, version, before)
        if not isinstance(err, Exception):  # an interrupt: rolled back, and still an interrupt
            raise
        if isinstance(err, PipelineError):
            raise TrackingError(f"{err}; {undone}") from err
        what = f"registering {model_name}" + (f" version {version}" if version is not None else "")
        raise TrackingError(f"the model registry failed while {what}: {one_line(err)}; {undone}") from err
    return Registration(run_id=run_id, version=version, promoted=promoted,
                        champion_version=version if promoted else champion, message=message,
                        previous_champion=champion, champion_score=champion_value)


def _champion_before_gate(run_id: str, model_name: str, champion_score: Callable[[int], float | None]
                          ) -> tuple[RegistryState, int | None, float | None]:
    """The registry as the gate found it, its champion and the champion's score on this hold-out.

    Nothing is registered yet: when the registry cannot be read or the champion cannot be
    scored, the run is marked ``FAILED`` and the error raised.
    """
    try:
        before = registry_state(model_name)
        champion = before.aliases.get(CHAMPION)
        champion_value = None
        if champion is not None:
            try:
                champion_value = champion_score(champion)
            except PipelineError as err:
                raise TrackingError(f"nothing was registered: champion version {champion} of {model_name} could not "
                                    f"be scored on this hold-out: {err}") from err
            except Exception as err:
                raise TrackingError(f"nothing was registered: champion version {champion} of {model_name} could not "
                                    f"be scored on this hold-out: {type(err).__name__}: {one_line(err)}") from err
            if champion_value is not None:
                champion_value = float(champion_value)
    except BaseException:
        mark_run_failed(run_id)
        raise
    return before, champion, champion_value


def _gate_decision(model_name: str, version: int, *, metric: str, challenger_score: float, champion: int | None,
                   champion_value: float | None, recorded: dict[str, float], promote_command: str) -> tuple[bool, str]:
    """Promote the registered ``version`` when it is the first model or beats the champion; ``(promoted, message)``."""
    if champion is None:
        promote(model_name, version, reason=f"first model ({metric} {challenger_score:.4f})", metrics=recorded)
        return True, f"version {version} is the first model: it is champion"
    if champion_value is None:
        return False, (
            f"version {version} stays challenger: champion version {champion} takes other input columns, so the "
            f"two cannot be compared on one hold-out (promote by hand with "
            f"`{promote_command.format(version=version)}`)"
        )
    if challenger_score > champion_value:
        promote(
            model_name, version,
            reason=f"beat version {champion} on the same hold-out: {metric} {challenger_score:.4f} > "
                   f"{champion_value:.4f}",
            metrics=recorded,
        )
        return True, (f"version {version} is champion: {metric} {challenger_score:.4f} beats version {champion}'s "
                      f"{champion_value:.4f}")
    return False, (
        f"version {version} stays challenger: {metric} {challenger_score:.4f} does not beat champion "
        f"version {champion}'s {champion_value:.4f} on the same hold-out"
    )


def _undo_registration(run_id: str, model_name: str, version: int | None, before: RegistryState) -> str:
    """Roll the registry back to ``before`` and mark the run ``FAILED``; say how the rollback went, for the error."""
    failed = rollback_registration(model_name, version, before)
    mark_run_failed(run_id)
    if failed:
        log.error("rolling back the registration of %s failed: %s", model_name, "; ".join(failed))
    return "the registry was rolled back" if not failed else f"rolling back also failed: {'; '.join(failed)}"


def gate_churn_model(run_id: str, result, dataset, config) -> Registration:
    """``register_and_gate`` for the churn model: on ``train.promotion_metric`` (EMPC or ROC AUC).

    The challenger's score is its hold-out metric (``result.metrics``); the champion's is
    ``churn_champion_score`` on the same hold-out rows.
    """
    from functools import partial

    model_name = config.tracking.model_name
    metric = config.train.promotion_metric
    return register_and_gate(
        run_id, model_name, metric=metric, challenger_score=float(result.metrics[metric]),
        champion_score=partial(churn_champion_score, model_name=model_name, dataset=dataset, result=result,
                               config=config),
        metrics=result.metrics,
    )


def churn_champion_score(champion: int, *, model_name: str, dataset, result, config) -> float | None:
    """The champion's promotion metric on this run's hold-out, or None if it takes other inputs.

    A champion refit on all rows of this very data (same content, seed and hold-out share)
    has seen this hold-out; its recorded hold-out metric, measured on the same rows by its
    model fit without them, is used instead.  The champion is loaded through
    ``load_model``, so its files are checked against their recorded hash first.
    """
    from pipeline import evaluate
    from pipeline.score import predict
    from pipeline.targeting import clv

    loaded = load_model(f"models:/{model_name}/{champion}")
    recorded = loaded.metadata.get("holdout") or {}
    if (recorded.get("refit_all_rows") and recorded.get("data_sha256") == dataset.content_hash()
            and recorded.get("seed") == config.train.seed and recorded.get("fraction") == config.train.holdout_fraction
            and config.train.promotion_metric in recorded.get("metrics", {})):
        return float(recorded["metrics"][config.train.promotion_metric])
    columns = loaded.metadata.get("input_columns") or [c for c, _ in loaded.signature_columns]
    holdout = dataset.frame.iloc[result.holdout_index].reset_index(drop=True)
    if any(c not in holdout.columns for c in columns):
        return None
    proba = predict(loaded.model, holdout, columns, n_threads=config.train.n_threads)
    y = dataset.label.to_numpy()[result.holdout_index]
    value = None
    if dataset.monthly_value is not None:
        value = clv(dataset.monthly_value.to_numpy()[result.holdout_index], config.campaign)
    metrics = evaluate.classification_metrics(y, proba, value=value, campaign=config.campaign)
    return float(metrics[config.train.promotion_metric])


def gate_response_model(run_id: str, name: str, result, data, config) -> Registration:
    """``register_and_gate`` for a response model (registered as ``name``): on the Qini coefficient."""
    from functools import partial

    return register_and_gate(
        run_id, name, metric="qini_coefficient", challenger_score=float(result.metrics["qini_coefficient"]),
        champion_score=partial(response_champion_score, name, data=data, result=result, config=config),
        metrics=result.metrics, promote_command=f"churn promote {{version}} --model-name {name}",
    )


def response_champion_score(name: str, champion: int, *, data, result, config) -> float | None:
    """The champion response model's Qini coefficient on this run's hold-out (None when incomparable)."""
    from pipeline import evaluate

    loaded = load_model(f"models:/{name}/{champion}")
    recorded = loaded.metadata.get("holdout") or {}
    if (recorded.get("refit_all_rows") and recorded.get("data_sha256") == data.content_hash()
            and recorded.get("seed") == config.train.seed
            and recorded.get("fraction") == config.response.holdout_fraction and "qini_coefficient" in recorded.get("metrics", {})):
        return float(recorded["metrics"]["qini_coefficient"])
    columns = list(loaded.metadata.get("input_columns") or [])
    holdout = data.frame.iloc[result.holdout_index].reset_index(drop=True)
    if not columns or any(c not in holdout.columns for c in columns):
        return None
    uplift = loaded.model.predict(holdout[columns])
    y = data.label.to_numpy()[result.holdout_index]
    t = data.treatment.to_numpy()[result.holdout_index]
    return float(evaluate.qini_coefficient(y, t, uplift))


def model_uri(model_name: str, alias: str = CHAMPION) -> str:
    """The registry URI of a model alias."""
    return f"models:/{model_name}@{alias}"


@dataclass
class LoadedModel:
    """A model loaded for scoring, with what the registry and its metadata say about it."""

    model: Any
    uri: str
    version: str
    metadata: dict[str, Any]
    signature_columns: list[tuple[str, str]]
    #: The content hash the files were checked against.
    digest: str = ""


@dataclass(frozen=True)
class _ModelSource:
    """Where a model URI's files are, and the hash recorded for them."""

    download_uri: str
    version: str
    run_id: str | None
    digest: str | None


def _resolve(uri: str) -> _ModelSource:
    """Pin ``uri`` to one stored model: an alias to its version now, so that the files checked are the ones loaded."""
    import re

    client = _client()
    if uri.startswith("models:/"):
        rest = uri[len("models:/"):]
        name, at, alias = rest.partition("@")
        if at:
            state = registry_state(name)
            if not state.exists:
                raise TrackingError(f"cannot load model {uri}: no registered model {name} (train one first)")
            if alias not in state.aliases:
                raise TrackingError(f"cannot load model {uri}: {name} has no version with the alias {alias}")
            number = str(state.aliases[alias])
        elif re.fullmatch(r"m-[0-9a-f]+", rest):  # a logged model's id
            try:
                logged = client.get_logged_model(rest)
            except Exception as err:
                if _is_missing(err):
                    raise TrackingError(f"cannot load model {uri}: no such logged model") from err
                raise _registry_error(f"reading logged model {rest}", err) from err
            run_tags = client.get_run(logged.source_run_id).data.tags if logged.source_run_id else {}
            return _ModelSource(logged.artifact_location, f"run:{(logged.source_run_id or rest)[:8]}",
                                logged.source_run_id, run_tags.get(MODEL_HASH_TAG))
        else:
            name, _, number = rest.rpartition("/")
            if not name or not number.isdigit():
                raise TrackingError(f"cannot load model {uri}: expected models:/NAME/VERSION or models:/NAME@ALIAS")
        try:
            version = client.get_model_version(name, number)
        except Exception as err:
            if _is_missing(err):
                raise TrackingError(f"cannot load model {uri}: {name} has no version {number}") from err
            raise _registry_error(f"reading {name} version {number}", err) from err
        digest = version.tags.get(MODEL_HASH_TAG)
        run_digest = None
        if version.run_id:
            try:
                run_digest = client.get_run(version.run_id).data.tags.get(MODEL_HASH_TAG)
            except Exception as err:
                if not _is_missing(err):
                    raise _registry_error(f"reading the run of {name} version {number}", err) from err
        if digest and run_digest and digest != run_digest:
            raise ModelError(f"model {uri} failed its integrity check: the content hash recorded on version {number} "
                             "differs from its run's; refusing to load it")
        try:  # the stored files themselves (a models:/ download adds a file of MLflow's own)
            location = client.get_model_version_download_uri(name, number)
        except Exception as err:
            raise _registry_error(f"locating {name} version {number}", err) from err
        return _ModelSource(location, number, version.run_id, digest or run_digest)
    if uri.startswith("runs:/"):
        run_id = uri[len("runs:/"):].split("/", 1)[0]
        try:
            tags = client.get_run(run_id).data.tags
        except Exception as err:
            if _is_missing(err):
                raise TrackingError(f"cannot load model {uri}: no run {run_id}") from err
            raise _registry_error(f"reading run {run_id}", err) from err
        return _ModelSource(uri, f"run:{run_id[:8]}", run_id, tags.get(MODEL_HASH_TAG))
    return _ModelSource(uri, "unknown", None, None)


def _recorded_files(run_id: str | None, folder: Path) -> dict[str, str] | None:
    """The per-file hashes recorded with the run (``model_sha256.json``), or None when absent or unreadable."""
    import mlflow

    if not run_id:
        return None
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=MODEL_HASH_FILE, dst_path=str(folder))
        files = json.loads(Path(path).read_text())["files"]
        return {str(k): str(v) for k, v in files.items()}
    except Exception:  # absent, unreadable or not JSON: the digest check alone decides
        return None


def verify_model_files(folder: str | Path, *, uri: str, digest: str | None, run_id: str | None = None) -> str:
    """Check every file under ``folder`` against the content hash recorded for model ``uri``.

    Returns the digest when the files match exactly (no file changed, missing or added).

    Raises
    ------
    ModelError
        When no hash was recorded (a model logged by an older version of this tool, or not
        by it), or a file differs: the message names the model URI and the first file (in
        path order) that differs, is missing or was added.
    """
    if not digest:
        raise ModelError(
            f"model {uri} has no recorded content hash (logged by an older version of churn, or not by "
            "`churn train`), so it cannot be checked for tampering; refusing to load it. Train it again with "
            "`churn train` to register a verified version (or `churn promote` a verified one)"
        )
    actual = file_hashes(folder)
    if model_digest(actual) == digest:
        return digest
    with tempfile.TemporaryDirectory() as tmp:
        recorded = _recorded_files(run_id, Path(tmp))
    if recorded is None or model_digest(recorded) != digest:
        raise ModelError(f"model {uri} failed its integrity check: its files do not match the content hash recorded "
                         "at registration (and the per-file list is missing or was altered too); refusing to load it")
    for path in sorted(set(recorded) | set(actual)):
        if path not in actual:
            problem = "is missing"
        elif path not in recorded:
            problem = "was added after training"
        elif recorded[path] != actual[path]:
            problem = "was changed after training"
        else:
            continue
        raise ModelError(f"model {uri} failed its integrity check: file {path} {problem} "
                         "(SHA-256 differs from the hash recorded at registration); refusing to load it")
    raise ModelError(f"model {uri} failed its integrity check; refusing to load it")  # unreachable in practice


@contextlib.contextmanager
def verified_model_files(uri: str) -> Iterator[tuple[Path, _ModelSource]]:
    """Download model ``uri`` to a temporary folder, verify its content hash, yield ``(folder, source)``.

    Everything read from the folder was checked first; the folder is removed on exit.  For
    anything that loads the model itself (e.g. Spark's ``spark_udf``), pass it this folder.
    """
    import mlflow

    source = _resolve(uri)
    with tempfile.TemporaryDirectory(prefix="churn-model-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source.download_uri, dst_path=tmp))
        except Exception as err:
            raise TrackingError(f"cannot load model {uri}: {one_line(err)}") from err
        for name in MLFLOW_WRITES:  # not hashed, so not loaded either
            (local / name).unlink(missing_ok=True)
        verify_model_files(local, uri=uri, digest=source.digest, run_id=source.run_id)
        yield local, source


def load_model(uri: str) -> LoadedModel:
    """Load a logged scikit-learn model, checked against its recorded content hash, and its metadata.

    The model's files are downloaded to a temporary folder, hashed and compared with the
    hash recorded when it was logged, and loaded from that folder only (skops, with this
    tool's reviewed ``TRUSTED_TYPES``): what is checked is what is loaded.

    Raises
    ------
    TrackingError
        The model does not exist or the registry cannot be read.
    ModelError
        The files fail the check, no hash was recorded, or the model asks to trust types
        outside ``TRUSTED_TYPES``.
    """
    import mlflow
    from mlflow.models import Model

    with verified_model_files(uri) as (local, source):
        try:
            info = Model.load(str(local))
            flavor = info.flavors.get("sklearn", {})
            unknown = sorted(set(flavor.get("skops_trusted_types") or ()) - set(TRUSTED_TYPES))
            if flavor.get("serialization_format") != "skops":
                raise ModelError(f"model {uri} is not saved in the skops format; refusing to load it")
            if unknown:
                raise ModelError(f"model {uri} asks to trust types not reviewed for safe loading: {', '.join(unknown)}")
            model = mlflow.sklearn.load_model(str(local))
        except PipelineError:
            raise
        except Exception as err:  # an MLflow, skops or file error: one line
            raise TrackingError(f"cannot load model {uri}: {one_line(err)}") from err
    columns = []
    if info.signature is not None and info.signature.inputs is not None:
        for spec in info.signature.inputs.inputs:
            columns.append((spec.name, getattr(spec.type, "name", str(spec.type))))
    return LoadedModel(model=model, uri=uri, version=source.version, metadata=dict(info.metadata or {}),
                       signature_columns=columns, digest=source.digest or "")


def log_scoring(*, config, uri: str, model_uri: str, version: str, summary: dict[str, Any],
                artifacts: dict[str, Any], tags: dict[str, str] | None = None) -> str:
    """Log a scoring run: the model used, input lineage, score distribution, list and drift summary."""
    import mlflow

    mlflow.set_experiment(experiment_id=experiment_id(config.tracking.experiment, uri))
    with mlflow.start_run(run_name="score") as run:
        mlflow.set_tags({"stage": "score", "model_uri": model_uri, "model_version": str(version),
                         "model_name": config.tracking.model_name, "git_commit": git_commit(), **(tags or {})})
        mlflow.log_params({k: v for k, v in summary.items() if isinstance(v, str)})
        mlflow.log_metrics({k: float(v) for k, v in summary.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)})
        for name, payload in artifacts.items():
            if isinstance(payload, pd.DataFrame):
                _log_frame(payload, name)
            elif isinstance(payload, Path):
                mlflow.log_artifact(str(payload), artifact_path=str(Path(name).parent))
            else:
                mlflow.log_dict(payload, name)
        return run.info.run_id


def log_measurement(table: pd.DataFrame, *, config, uri: str, source: str) -> tuple[str, list[str]]:
    """Log what campaigns realised (``jobs.campaign_effects``): a ``measure`` run, plus metrics on
    every scoring run whose ``campaign_id`` tag names a measured campaign.  Returns the run id
    and the ids of the scoring runs updated."""
    import mlflow
    from mlflow.tracking import MlflowClient

    metrics = ("uplift", "uplift_low", "uplift_high", "saves", "saves_low", "saves_high", "churn_offer",
               "churn_control", "n_offer", "n_control")
    experiment = experiment_id(config.tracking.experiment, uri)
    mlflow.set_experiment(experiment_id=experiment)
    with mlflow.start_run(run_name="measure") as run:
        mlflow.set_tags({"stage": "measure", "git_commit": git_commit(),
                         "campaigns": ",".join(table["campaign_id"].astype(str))})
        for row in table.to_dict("records"):
            prefix = f"campaign.{row['campaign_id']}."
            mlflow.log_metrics({prefix + key: float(row[key]) for key in metrics if np.isfinite(row[key])})
        _log_frame(table, "measure/campaigns.csv")
    import re

    client = MlflowClient()
    updated = []
    for row in table.to_dict("records"):
        if not re.fullmatch(r"[\w.:-]+", str(row["campaign_id"])):  # only ids a filter can quote safely
            continue
        found = client.search_runs([experiment], filter_string=f"tags.campaign_id = '{row['campaign_id']}'")
        for scoring in found:
            for key in metrics:
                if np.isfinite(row[key]):
                    client.log_metric(scoring.info.run_id, f"realised_{key}", float(row[key]))
            client.set_tag(scoring.info.run_id, "measured_by", run.info.run_id)
            updated.append(scoring.info.run_id)
    return run.info.run_id, updated


def log_response(result, dataset, config, *, uri: str, plots: dict[str, Path], extra_artifacts: dict[str, Any]) -> str:
    """Log a response model's training run (params, hold-out uplift metrics, Qini and decile plots,
    candidates, lineage, the model); return its run id.

    The model is logged like the churn model (skops with the reviewed trusted types, explicit
    pip requirements, a synthetic input example); its pyfunc ``predict`` answers each row's
    estimated uplift.  Its metadata says ``kind = "response"``, the input columns, the
    calibration line and what the gate needs to compare a later model on the same hold-out.
    """
    import mlflow
    from mlflow.models import infer_signature

    _quiet_experiment(config, uri)
    model = result.model
    trusted = check_trusted(model)
    columns = list(result.input_columns)
    X = dataset.frame[columns]
    learner = model.learner_
    first = getattr(learner, "control_model_", None) or getattr(learner, "model_", None)
    typer = _typer_of(first) if first is not None else None
    example = example_row(X, dataset.id_column, levels=getattr(typer, "levels_", None))
    signature = infer_signature(signature_frame(X.head(1000)), model.predict(example))
    metrics = {k: float(v) for k, v in result.metrics.items() if np.isfinite(v)}
    with mlflow.start_run(run_name=f"train-response-{result.learner}") as run:
        mlflow.set_tags({
            "stage": "train-response", "git_commit": git_commit(), "seed": str(result.seed),
            "learner": result.learner, "base_family": result.family, "data_mode": dataset.mode,
            "heterogeneity": str(bool(result.metrics.get("heterogeneity", 0.0))).lower(),
            **{f"version.{k}": v for k, v in package_versions().items()},
        })
        mlflow.log_params({f"response.{k}": v for k, v in dataclasses.asdict(config.response).items()})
        mlflow.log_params({"train.seed": config.train.seed, "data.horizon_days": config.data.horizon_days})
        mlflow.log_metrics(metrics)
        mlflow.log_metrics({f"timing.{k}": v for k, v in result.timings.items()})
        mlflow.log_metrics({"fit_rows": result.fit_rows, "train_rows": result.train_rows})
        _log_data_input(dataset, name="campaigns", context="training-response", tags={
            "content_sha256": dataset.content_hash(), "rows": str(dataset.n_rows),
            "offered": str(int(dataset.treatment.sum())), "label_rate": f"{float(dataset.label.mean()):.6f}"})
        for path in plots.values():
            mlflow.log_artifact(str(path), artifact_path="plots")
        for name, payload in extra_artifacts.items():
            _log_frame(payload, name) if isinstance(payload, pd.DataFrame) else mlflow.log_dict(payload, name)
        _log_model(model, trusted=trusted, signature=signature, example=example, predict_fn="predict", metadata={
            "kind": "response",
            "mode": dataset.mode,
            "id_column": dataset.id_column,
            "input_columns": columns,
            "learner": result.learner,
            "family": result.family,
            "calibration": {"intercept": float(model.intercept_), "slope": float(model.slope_),
                            "centre": float(model.centre_), "heterogeneity": bool(model.heterogeneity_)},
            "fit_rows": result.fit_rows,
            "holdout": _holdout_record(result, dataset, config, fraction=config.response.holdout_fraction),
        })
        return run.info.run_id


# --------------------------------------------------------------------------------------
# What the registry knows about its versions (``churn models``, the scoring summary)
# --------------------------------------------------------------------------------------

#: Hold-out metrics shown for each kind of model, in order.
CARD_METRICS = {
    "churn": ("roc_auc", "pr_auc", "brier", "log_loss", "top_decile_lift", "empc"),
    "response": ("qini_coefficient", "qini_coefficient_risk", "auuc", "ate", "ate_ci_low", "ate_ci_high"),
}


def _iso(milliseconds: int | None) -> str | None:
    if not milliseconds:
        return None
    return dt.datetime.fromtimestamp(milliseconds / 1000, tz=dt.timezone.utc).isoformat(timespec="seconds")


def run_card(run_id: str, *, kind: str = "churn") -> dict[str, Any]:
    """What a training run says about its model: family, hold-out metrics, training data, when.

    ``data``: the content hash (SHA-256), rows and churn rate of the training data (its
    ``mlflow.log_input`` lineage) and its snapshot date (run tag ``data_snapshot_date``).
    """
    try:
        run = _client().get_run(run_id)
    except Exception as err:
        raise _registry_error(f"reading run {run_id}", err) from err
    tags, metrics = run.data.tags, run.data.metrics
    data: dict[str, Any] = {"snapshot_date": tags.get("data_snapshot_date")}
    for entry in (run.inputs.dataset_inputs if run.inputs else []) or []:
        found = {t.key: t.value for t in entry.tags}
        if found.get("mlflow.data.context") in ("training", "training-response") or "content_sha256" in found:
            data.update({"content_sha256": found.get("content_sha256"), "rows": _int(found.get("rows")),
                         "label_rate": _float(found.get("label_rate")), "source": entry.dataset.name})
            break
    return {
        "run_id": run_id,
        "trained_at": _iso(run.info.start_time),
        "family": tags.get("model_family") or (f"{tags.get('learner')} ({tags.get('base_family')})"
                                              if tags.get("learner") else None),
        "calibration": tags.get("calibration"),
        "metrics": {k: float(metrics[k]) for k in CARD_METRICS.get(kind, ()) if k in metrics},
        "data": data,
    }


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def version_cards(model_name: str, *, kind: str = "churn") -> list[dict[str, Any]]:
    """Every registered version of ``model_name``, newest first, with aliases and ``run_card``.

    An empty list when the model is not registered.
    """
    state = registry_state(model_name)
    if not state.exists:
        return []
    try:
        versions = _client().search_model_versions(f"name = '{model_name}'")
    except Exception as err:
        raise _registry_error(f"listing the versions of {model_name}", err) from err
    aliases: dict[int, list[str]] = {}
    for alias, number in state.aliases.items():
        aliases.setdefault(int(number), []).append(alias)
    cards = []
    for version in sorted(versions, key=lambda v: -int(v.version)):
        card = {"name": model_name, "kind": kind, "version": int(version.version),
                "aliases": sorted(aliases.get(int(version.version), [])),
                "registered_at": _iso(version.creation_timestamp)}
        card.update(run_card(version.run_id, kind=kind) if version.run_id else {"metrics": {}, "data": {}})
        cards.append(card)
    return cards


def model_card(uri: str, version: str, *, kind: str = "churn") -> dict[str, Any]:
    """The card of the model a scoring run loaded (``uri``, pinned to ``version``), or what is known."""
    card: dict[str, Any] = {"uri": uri, "version": str(version), "kind": kind, "metrics": {}, "data": {}}
    run_id = None
    if uri.startswith("models:/") and str(version).isdigit():
        rest = uri[len("models:/"):]
        name = rest.partition("@")[0] if "@" in rest else rest.rpartition("/")[0]
        card["name"] = name
        try:
            run_id = _client().get_model_version(name, str(version)).run_id
        except Exception as err:
            raise _registry_error(f"reading {name} version {version}", err) from err
        card["aliases"] = sorted(a for a, v in registry_state(name).aliases.items() if str(v) == str(version))
    elif uri.startswith("runs:/"):
        run_id = uri[len("runs:/"):].split("/", 1)[0]
    if run_id:
        card.update(run_card(run_id, kind=kind))
    return card


def run_table(run_id: str, artifact: str) -> pd.DataFrame | None:
    """A CSV artifact of a run as a frame (e.g. ``evaluation/reliability.csv``), or None when absent."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=tmp)
            return pd.read_csv(path)
        except Exception:  # absent or unreadable: the report says so
            return None


def log_files(run_id: str, files: Mapping[str, Path]) -> None:
    """Add files to a finished run: ``{"report/at_risk.report.html": path, ...}`` (folder taken from the key)."""
    client = _client()
    for name, path in files.items():
        folder = str(Path(name).parent)
        client.log_artifact(run_id, str(path), artifact_path=None if folder == "." else folder)


def tag_run(run_id: str, tags: Mapping[str, str]) -> None:
    """Set tags on a run (finished or not)."""
    client = _client()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def run_exists(run_id: str) -> bool:
    """Whether this store holds run ``run_id`` (False only for MLflow's "does not exist")."""
    try:
        _client().get_run(run_id)
    except Exception as err:
        if _is_missing(err):
            return False
        raise _registry_error(f"reading run {run_id}", err) from err
    return True


# --------------------------------------------------------------------------------------
# The REST wrapper (``pipeline.serving``), registered beside the models
# --------------------------------------------------------------------------------------

#: Model-version tag with the digest of the wrapper's code and settings (one version per digest).
SERVICE_TAG = "service_sha256"


def service_name(model_name: str) -> str:
    """The registered name of the REST wrapper of ``model_name``."""
    return f"{model_name}-service"


def register_service(model_name: str, *, response_name: str | None, config, uri: str) -> tuple[int, bool]:
    """Register the REST wrapper (``pipeline.serving``) of ``model_name`` as ``<model name>-service``.

    The wrapper loads ``models:/<model name>@champion`` (and the response model's champion
    when ``response_name`` has one) when the server starts.  It is logged as "models from
    code" (the file ``pipeline/serving.py``, no pickle) with the scoring configuration; a
    version is registered only when that code or configuration changed since the last one,
    and holds the ``champion`` alias.  Returns ``(version, newly registered)``.
    """
    import hashlib

    import mlflow

    code = Path(__file__).with_name("serving.py")
    values = json.loads(json.dumps(dataclasses.asdict(config), default=list))
    response = ""
    if response_name and registry_state(response_name).aliases.get(CHAMPION) is not None:
        response = model_uri(response_name)
    settings = {"churn_model": model_uri(model_name), "response_model": response,
                "config": json.dumps(values, sort_keys=True)}
    digest = hashlib.sha256(code.read_bytes() + json.dumps(settings, sort_keys=True).encode()).hexdigest()
    name = service_name(model_name)
    client = _client()
    if registry_state(name).exists:
        try:
            found = client.search_model_versions(f"name = '{name}' and tags.{SERVICE_TAG} = '{digest}'")
        except Exception as err:
            raise _registry_error(f"listing the versions of {name}", err) from err
        if found:
            version = max(int(v.version) for v in found)
            client.set_registered_model_alias(name, CHAMPION, str(version))
            return version, False
    mlflow.set_experiment(experiment_id=experiment_id(config.tracking.experiment, uri))
    with mlflow.start_run(run_name="service") as run:
        mlflow.set_tags({"stage": "service", "git_commit": git_commit(), SERVICE_TAG: digest})
        with _installed_requirements_not_rechecked():
            info = mlflow.pyfunc.log_model(name="service", python_model=str(code), model_config=settings,
                                           code_paths=[str(Path(__file__).parent)], pip_requirements=pip_requirements())
    try:
        version = mlflow.register_model(info.model_uri, name, tags={SERVICE_TAG: digest})
        client.set_registered_model_alias(name, CHAMPION, str(version.version))
    except Exception as err:
        raise _registry_error(f"registering {name}", err) from err
    log.debug("registered %s version %s from run %s", name, version.version, run.info.run_id)
    return int(version.version), True
