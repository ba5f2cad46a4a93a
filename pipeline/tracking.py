"""Everything MLflow: the store, training and scoring runs, the registry and its aliases.

With no tracking URI given, runs go to an embedded store in the current directory: a
SQLite file ``mlflow.db`` (so the model registry and aliases work with no server) and an
artifact folder ``mlruns/``.  A team server is used when ``--tracking-uri`` or
``MLFLOW_TRACKING_URI`` names one; an unreachable server fails before any work.

Models are saved in MLflow's skops format (loading never runs arbitrary code) with the
reviewed ``TRUSTED_TYPES``; ``pip_requirements`` are given explicitly.  Nothing personal is
logged: no rows, no ids, no names; the input example is a synthetic typical row.
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
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import ModelError, TrackingError

log = logging.getLogger(__name__)

DB_FILE = "mlflow.db"
ARTIFACT_DIR = "mlruns"
CHAMPION = "champion"
CHALLENGER = "challenger"

#: Types outside skops' own safe list that the loader may build, each reviewed by hand:
#: this project's transformer, calibration wrapper and CatBoost wrapper (the booster is kept as CatBoost's own
#: binary model in a ``bytes`` field, not a pickle); numpy dtypes; scikit-learn's column selector; the
#: boosting trees; calibration's fitted pieces and its fold splitter; scikit-learn's
#: ``Bunch`` (a dict); and HistGradientBoosting's stored ``functools.partial(check_array, ...)``
#: (a partial of scikit-learn's own input check, no user code).  A model holding any other
#: type is refused when logged, so a new type must be reviewed and added here.
TRUSTED_TYPES = (
    "functools.partial",
    "numpy.dtype",
    "pipeline.model.CalibratedModel",
    "pipeline.model.CatBoostModel",
    "pipeline.prepare.TableTyper",
    "pipeline.response.ClassTransformationUplift",
    "pipeline.response.ResponseModel",
    "pipeline.response.TwoModelUplift",
    "pipeline.response.XLearnerUplift",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.compose._column_transformer.make_column_selector",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.model_selection._split.StratifiedKFold",
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
    """The exact shell command that opens the MLflow UI on this store."""
    if uri.startswith("sqlite:///"):
        root = Path(artifact_root(uri)[len("file://"):])
        return f"mlflow ui --backend-store-uri {uri} --default-artifact-root {root} --port 5000"
    return f"open {uri} in a browser (a tracking server has its own UI)"


def connect(uri: str) -> None:
    """Point MLflow at ``uri`` and make sure the store answers; fail fast with one line if not.

    A local SQLite store is created once under a file lock, since concurrent first
    migrations of one SQLite file can corrupt it.
    """
    quiet_mlflow()
    import mlflow

    if uri.startswith(("http://", "https://")):
        import requests

        try:
            response = requests.get(uri.rstrip("/") + "/health", timeout=5)
        except requests.RequestException as err:
            raise TrackingError(f"tracking server {uri} is unreachable ({type(err).__name__})") from err
        if response.status_code != 200:
            raise TrackingError(f"tracking server {uri} answered HTTP {response.status_code} on /health")
    elif uri.startswith("sqlite:///"):
        import fcntl

        db = Path(uri[len("sqlite:///"):])
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            with open(db.with_name(db.name + ".lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                from mlflow.tracking import MlflowClient

                MlflowClient(uri).search_experiments(max_results=1)
        except OSError as err:
            raise TrackingError(f"cannot create the MLflow store {db}: {err}") from err
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


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


def pip_requirements(model=None) -> list[str]:
    """Exact requirements of a logged model (given explicitly: inference is slow and needs the network).

    CatBoost is listed only when ``model`` holds a CatBoost part.
    """
    from importlib.metadata import version

    names = [f"{name}=={v}" for name, v in package_versions().items() if name != "mlflow"]
    if model is not None and "pipeline.model.CatBoostModel" in check_trusted(model):
        names.append(f"catboost=={version('catboost')}")
    return names


def _scalar_params(params: dict[str, Any], limit: int = 250) -> dict[str, str]:
    """Loggable parameters: scalars and short values only (no estimators, no arrays)."""
    out = {}
    for key, value in params.items():
        if hasattr(value, "get_params") or callable(value) or isinstance(value, (np.ndarray, pd.DataFrame)):
            continue
        text = str(value)
        out[key] = text if len(text) <= limit else text[: limit - 3] + "..."
    return out


def example_row(frame: pd.DataFrame, id_column: str | None) -> pd.DataFrame:
    """A synthetic, typical input row (medians and most common values): no subscriber's data."""
    row = {}
    for name in frame.columns:
        column = frame[name]
        if name == id_column:
            row[name] = ["example"]
        elif column.dtype.kind in "biuf":
            value = column.median() if column.notna().any() else np.nan
            row[name] = pd.Series([value]).astype(column.dtype if column.dtype.kind == "f" else "float64")
        else:
            mode = column.dropna().mode()
            row[name] = [str(mode.iloc[0]) if len(mode) else None]
    return pd.DataFrame({k: pd.Series(v) for k, v in row.items()})


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


@dataclass
class Registration:
    """What registering a trained model did."""

    run_id: str
    version: int
    promoted: bool
    champion_version: int | None
    message: str


def log_training(result, dataset, config, *, uri: str, plots: dict[str, Path], extra_artifacts: dict[str, Any]) -> str:
    """Log a training run (params, metrics, candidates, plots, lineage, model); return its run id."""
    import mlflow
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.models import infer_signature

    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")
    mlflow.set_experiment(experiment_id=experiment_id(config.tracking.experiment, uri))
    trusted = check_trusted(result.model)
    X = dataset.frame[result.input_columns]
    from pipeline.drift import profile as drift_profile

    profile = drift_profile(X, skip=(dataset.id_column,))
    example = example_row(X, dataset.id_column)
    # The output is what the served pyfunc returns: predict_proba's two columns (stay, churn).
    signature = infer_signature(signature_frame(X.head(1000)), result.model.predict_proba(example))
    with mlflow.start_run(run_name=f"train-{result.family}") as run:
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
        source = MetaDataset(
            source=_dataset_source(dataset.source),
            name=Path(str(dataset.source)).name or "training-data",
            digest=dataset.content_hash()[:16],
        )
        mlflow.log_input(
            source,
            context="training",
            tags={
                "content_sha256": dataset.content_hash(),
                "rows": str(dataset.n_rows),
                "label_rate": f"{float(dataset.label.mean()):.6f}",
                "mode": dataset.mode,
            },
        )
        for name, path in plots.items():
            mlflow.log_artifact(str(path), artifact_path="plots")
        for name, payload in extra_artifacts.items():
            if isinstance(payload, pd.DataFrame):
                mlflow.log_table(payload, artifact_file=name) if name.endswith(".json") else _log_frame(payload, name)
            else:
                mlflow.log_dict(payload, name)
        mlflow.sklearn.log_model(
            result.model,
            name="model",
            serialization_format="skops",
            skops_trusted_types=trusted,
            signature=signature,
            input_example=signature_frame(example),
            pip_requirements=pip_requirements(result.model),
            code_paths=[str(Path(__file__).parent)],
            pyfunc_predict_fn="predict_proba",
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
                "holdout": {
                    "data_sha256": dataset.content_hash(),
                    "seed": config.train.seed,
                    "fraction": config.train.holdout_fraction,
                    "refit_all_rows": result.fit_rows > result.train_rows,
                    "metrics": {k: float(v) for k, v in result.metrics.items() if np.isfinite(v)},
                },
                "profile": profile,
            },
        )
        return run.info.run_id


def _log_frame(frame: pd.DataFrame, name: str) -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(name).name
        frame.to_csv(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=str(Path(name).parent) if Path(name).parent != Path(".") else None)


def _dataset_source(source: str):
    """An MLflow dataset source for a path or URL, with any credentials removed."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    text = str(source)
    if "://" in text:
        scheme, rest = text.split("://", 1)
        text = f"{scheme}://{rest.split('@')[-1]}"  # drop user:password@ from database URLs
    else:
        text = Path(text).resolve().as_uri()
    try:
        return resolve_dataset_source(text)
    except Exception:  # no source type for this scheme (e.g. postgresql://): record it as a plain URL
        from mlflow.data.http_dataset_source import HTTPDatasetSource

        return HTTPDatasetSource(url=text)


def register(run_id: str, model_name: str) -> int:
    """Register the run's model as a new version with the ``challenger`` alias; return the version."""
    import mlflow
    from mlflow.tracking import MlflowClient

    import io

    with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints "Successfully registered ..." itself
        version = mlflow.register_model(f"runs:/{run_id}/model", model_name)
    client = MlflowClient()
    client.set_registered_model_alias(model_name, CHALLENGER, version.version)
    return int(version.version)


def champion_version(model_name: str) -> int | None:
    """The version holding the ``champion`` alias, or None."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return int(MlflowClient().get_model_version_by_alias(model_name, CHAMPION).version)
    except MlflowException:
        return None


def promote(model_name: str, version: int, *, reason: str, metrics: dict[str, float] | None = None) -> int | None:
    """Give ``version`` the ``champion`` alias; record who, when, why; return the version it replaced."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        client.get_model_version(model_name, str(version))
    except Exception as err:
        raise TrackingError(f"model {model_name} has no version {version}") from err
    previous = champion_version(model_name)
    client.set_registered_model_alias(model_name, CHAMPION, str(version))
    record = {
        "promoted_by": getpass.getuser(),
        "promoted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "promotion_reason": reason,
        "replaced_version": "none" if previous is None else str(previous),
    }
    if metrics:
        record["promotion_metrics"] = json.dumps({k: round(float(v), 6) for k, v in metrics.items()})
    for key, value in record.items():
        client.set_model_version_tag(model_name, str(version), key, value)
    client.update_model_version(
        model_name,
        str(version),
        description=f"Champion since {record['promoted_at']} ({record['promoted_by']}): {reason}",
    )
    return previous


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


def load_model(uri: str) -> LoadedModel:
    """Load a logged scikit-learn model (skops, trusted types only) and its metadata."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        info = mlflow.models.get_model_info(uri)
        model = mlflow.sklearn.load_model(uri)
    except (MlflowException, OSError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise TrackingError(f"cannot load model {uri}: {message}") from err
    version = "unknown"
    if uri.startswith("models:/"):
        from mlflow.tracking import MlflowClient

        name, _, ref = uri[len("models:/"):].partition("@")
        client = MlflowClient()
        if ref:
            version = str(client.get_model_version_by_alias(name, ref).version)
        else:
            version = uri.rsplit("/", 1)[-1]
    elif info.run_id:
        version = f"run:{info.run_id[:8]}"
    columns = []
    if info.signature is not None and info.signature.inputs is not None:
        for spec in info.signature.inputs.inputs:
            columns.append((spec.name, getattr(spec.type, "name", str(spec.type))))
    return LoadedModel(model=model, uri=uri, version=version, metadata=dict(info.metadata or {}), signature_columns=columns)


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
    client = MlflowClient()
    updated = []
    for row in table.to_dict("records"):
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
    import warnings

    import mlflow
    from mlflow.models import infer_signature

    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")
    mlflow.set_experiment(experiment_id=experiment_id(config.tracking.experiment, uri))
    model = result.model
    trusted = check_trusted(model)
    columns = [str(c) for c in dataset.frame.columns]
    X = dataset.frame[columns]
    example = example_row(X, dataset.id_column)
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
        from mlflow.data.meta_dataset import MetaDataset

        mlflow.log_input(
            MetaDataset(source=_dataset_source(dataset.source), name=Path(str(dataset.source)).name or "campaigns",
                        digest=dataset.content_hash()[:16]),
            context="training-response",
            tags={"content_sha256": dataset.content_hash(), "rows": str(dataset.n_rows),
                  "offered": str(int(dataset.treatment.sum())), "label_rate": f"{float(dataset.label.mean()):.6f}"},
        )
        for path in plots.values():
            mlflow.log_artifact(str(path), artifact_path="plots")
        for name, payload in extra_artifacts.items():
            _log_frame(payload, name) if isinstance(payload, pd.DataFrame) else mlflow.log_dict(payload, name)
        mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format="skops",
            skops_trusted_types=trusted,
            signature=signature,
            input_example=signature_frame(example),
            pip_requirements=pip_requirements(model),
            code_paths=[str(Path(__file__).parent)],
            pyfunc_predict_fn="predict",
            metadata={
                "kind": "response",
                "mode": dataset.mode,
                "id_column": dataset.id_column,
                "input_columns": columns,
                "learner": result.learner,
                "family": result.family,
                "calibration": {"intercept": float(model.intercept_), "slope": float(model.slope_),
                                "centre": float(model.centre_), "heterogeneity": bool(model.heterogeneity_)},
                "fit_rows": result.fit_rows,
                "holdout": {
                    "data_sha256": dataset.content_hash(),
                    "seed": config.train.seed,
                    "fraction": config.response.holdout_fraction,
                    "refit_all_rows": result.fit_rows > result.train_rows,
                    "metrics": metrics,
                },
            },
        )
        return run.info.run_id
