"""The pipeline's jobs: each wires the stages together for one CLI command.

Stages stay pure (``dataset``, ``train``, ``score``...); this module does the loading,
the MLflow calls through ``pipeline.tracking``, and the file writing, in the order that
keeps failures clean: everything that can fail on bad input happens before anything is
registered or written.
"""

from __future__ import annotations

import logging
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.errors import DataError, PipelineError, hide_credentials

log = logging.getLogger(__name__)
Say = Callable[[str], None]


def _say(progress: Say | None) -> Say:
    """A progress callback that never shows a URL's password."""
    out = progress or (lambda message: log.info(message))
    return lambda message: out(hide_credentials(message))


def is_records(path: str) -> bool:
    """True when ``path`` is a record folder or a database URL (not a single churn table)."""
    from pipeline.records import is_record_source

    return is_record_source(path)


def load_dataset(
    data: str,
    *,
    config: Config,
    id_column: str | None = None,
    target: str | None = None,
    positive: str | None = None,
    value_column: str | None = None,
    snapshot_date: str | None = None,
    disclosure_date: str | None = None,
    require_label: bool = True,
    time_column: str | None = None,
):
    """A ``Dataset`` from a record folder, a database URL or one churn table.

    For training (``require_label``), records are stacked over ``data.training_snapshots``
    and a table's ``time_column`` (or ``data.time_column``) gives each row's snapshot date.
    """
    from pipeline.dataset import read_table, records_dataset, table_dataset

    if is_records(data):
        from pipeline.records import load_records

        snapshot = snapshot_date or config.data.snapshot_date
        records = load_records(data, snapshot_date=snapshot, disclosure_date=disclosure_date)
        if not require_label:
            records = records.without("outcomes")
        return records_dataset(
            records,
            snapshot_date=snapshot_date or config.data.snapshot_date,
            horizon_days=config.data.horizon_days,
            require_label=require_label,
            earlier_snapshots=config.data.training_snapshots if require_label else (),
        )
    if require_label and target is None:
        raise DataError(f"{hide_credentials(data)}: a single table needs --target (the churn label column) and usually --id")
    frame = read_table(data)
    return table_dataset(
        frame, id_column=id_column, target=target, positive=positive, value_column=value_column,
        source=str(data), require_label=require_label,
        time_column=(time_column or config.data.time_column) if require_label else None,
    )


def _columns_report(result, dataset) -> pd.DataFrame:
    """Every source column: what the model made of it, or why it was left out (personal data first)."""
    personal = pd.DataFrame(
        [{"column": c, "use": "dropped", "reason": r} for c, r in dataset.dropped.items()],
        columns=["column", "use", "reason"],
    )
    return pd.concat([result.columns, personal], ignore_index=True)


@dataclass
class TrainOutcome:
    """What ``train_job`` did, for the CLI to print."""

    run_id: str
    version: int
    promoted: bool
    champion_version: int | None
    message: str
    metrics: dict[str, float]
    family: str
    calibration: str
    rows: int
    dropped: dict[str, str] = field(default_factory=dict)


def _champion_metric(champion: int, *, model_name: str, dataset, result, config: Config) -> float | None:
    """The champion's promotion metric on this run's hold-out, or None if it takes other inputs.

    A champion refit on all rows of this very data (same content, seed and hold-out share)
    has seen this hold-out; its recorded hold-out metric, measured on the same rows by its
    model fit without them, is used instead.  The champion is loaded through
    ``tracking.load_model``, so its files are checked against their recorded hash first.
    """
    from pipeline import evaluate, tracking
    from pipeline.score import predict
    from pipeline.targeting import clv

    loaded = tracking.load_model(f"models:/{model_name}/{champion}")
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


def train_job(
    data: str,
    *,
    config: Config,
    uri: str,
    id_column: str | None = None,
    target: str | None = None,
    positive: str | None = None,
    value_column: str | None = None,
    snapshot_date: str | None = None,
    disclosure_date: str | None = None,
    time_column: str | None = None,
    progress: Say | None = None,
) -> TrainOutcome:
    """Load, train, evaluate, log, register as challenger, and promote when the gate says so."""
    from pipeline import evaluate, tracking
    from pipeline.targeting import clv
    from pipeline.train import train

    say = _say(progress)
    tracking.connect(uri)  # fail fast, before any work, when the store is unreachable
    say(f"loading {data}")
    dataset = load_dataset(
        data, config=config, id_column=id_column, target=target, positive=positive,
        value_column=value_column, snapshot_date=snapshot_date, disclosure_date=disclosure_date,
        time_column=time_column,
    )
    if dataset.period is not None:
        say(f"{dataset.n_rows:,} rows over {dataset.period.nunique()} snapshots, churn rate {float(dataset.label.mean()):.2%}")
    else:
        say(f"{dataset.n_rows:,} subscribers, churn rate {float(dataset.label.mean()):.2%}")
    result = train(dataset, config, progress=say)
    holdout = dataset.frame.iloc[result.holdout_index].reset_index(drop=True)
    y_holdout = dataset.label.to_numpy()[result.holdout_index]
    value = None
    if dataset.monthly_value is not None:
        value = clv(dataset.monthly_value.to_numpy()[result.holdout_index], config.campaign)
    say("evaluating on the hold-out (metrics, plots, permutation importance)")
    importances = evaluate.permutation_importance_table(
        result.holdout_model, holdout[result.input_columns], y_holdout, seed=config.train.seed, n_repeats=3, max_rows=5000
    )
    from pipeline.dataset import segments

    segment_table = evaluate.segment_metrics(y_holdout, result.holdout_proba, segments(holdout))
    with tempfile.TemporaryDirectory() as tmp:
        plots = evaluate.save_plots(
            y_holdout, result.holdout_proba, Path(tmp), value=value, campaign=config.campaign, importances=importances
        )
        extra = {
            "selection/candidates.csv": result.candidates.assign(params=result.candidates["params"].astype(str)),
            "evaluation/segments.csv": segment_table,
            "evaluation/permutation_importance.csv": importances.rename("importance").rename_axis("column").reset_index(),
            "data/columns.csv": _columns_report(result, dataset),
            "evaluation/reliability.csv": evaluate.reliability_table(y_holdout, result.holdout_proba).table,
        }
        say("logging the run to MLflow")
        run_id = tracking.log_training(result, dataset, config, uri=uri, plots=plots, extra_artifacts=extra)
    model_name = config.tracking.model_name
    metric = config.train.promotion_metric
    say("registering the model (the gate compares it with the champion first)")
    registration = tracking.register_and_gate(
        run_id, model_name, metric=metric, challenger_score=float(result.metrics[metric]),
        champion_score=partial(_champion_metric, model_name=model_name, dataset=dataset, result=result,
                               config=config),
        metrics=result.metrics,
    )
    return TrainOutcome(
        run_id=run_id, version=registration.version, promoted=registration.promoted,
        champion_version=registration.champion_version, message=registration.message, metrics=result.metrics,
        family=result.family, calibration=result.calibration, rows=dataset.n_rows,
        dropped={**dataset.dropped,
                 **dict(zip(result.columns.loc[result.columns["use"] == "dropped", "column"],
                            result.columns.loc[result.columns["use"] == "dropped", "reason"]))},
    )


@dataclass
class ScoreOutcome:
    """What ``score_job`` wrote, for the CLI to print."""

    output: Path
    rows_scored: int
    rows_written: int
    at_risk: int
    expected_loss_at_risk: float
    model_version: str
    top: pd.DataFrame
    run_id: str | None
    targeting: Any = None
    drift: pd.Series | None = None
    drift_warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


class _Rate:
    """Rows done, rows per second and time left, for progress lines."""

    def __init__(self, total: int | None):
        self.total = total
        self.done = 0
        self.started = time.perf_counter()

    def add(self, rows: int) -> str:
        self.done += rows
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"scored {self.done:,}"
        if self.total:
            left = max(self.total - self.done, 0) / max(rate, 1e-9)
            text += f" / {self.total:,} rows ({rate:,.0f} rows/s, about {left:,.0f}s left)"
        else:
            text += f" rows ({rate:,.0f} rows/s)"
        return text


def _record_total(data: str) -> int | None:
    import json

    manifest = Path(data) / "manifest.json"
    if manifest.is_file():
        try:
            return int(json.loads(manifest.read_text()).get("subscribers"))
        except (ValueError, TypeError):
            return None
    return None


def _table_total(data: str) -> int | None:
    if Path(data).suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(data).metadata.num_rows
        except (OSError, ValueError):
            return None
    return None


def scoring_model(loaded):
    """What scoring needs from a loaded model, from its MLflow metadata and signature."""
    from pipeline.score import ScoringModel

    meta = loaded.metadata
    return ScoringModel(
        model=loaded.model,
        version=loaded.version,
        input_columns=list(meta.get("input_columns") or [c for c, _ in loaded.signature_columns]),
        base_rate=float(meta.get("base_rate", 0.1)),
        mode=meta.get("mode", "table"),
        id_column=meta.get("id_column"),
        value_column=meta.get("value_column"),
        label_column=meta.get("label_column"),
        signature=dict(loaded.signature_columns),
        profile=meta.get("profile") or {},
    )


def input_chunks(data: str, scoring, *, config: Config, snapshot_date: str | None = None,
                 disclosure_date: str | None = None):
    """Check the input against the model, then stream it as modelling-table chunks.

    Returns ``(tasks, total rows or None)``: each task is a function of no arguments that
    gives the next chunk's modelling table (``Dataset``), and may run on any thread (record
    parts are read only then).  The check happens before any scoring work.
    """
    from pipeline.records import deferred
    from pipeline.score import check_signature, column_kinds, table_chunks, table_sample

    if scoring.mode == "records" and is_records(data):
        from pipeline.records import iter_record_chunks
        from pipeline.schema import TABLES

        tables = [name for name in TABLES if name != "outcomes"]
        readers = iter_record_chunks(
            data, chunk_subscribers=min(config.data.chunk_subscribers, config.scoring.chunk_rows), tables=tables,
            snapshot_date=snapshot_date or config.data.snapshot_date, disclosure_date=disclosure_date,
            for_features=True, lazy=True,
        )
        build = partial(_features_of, snapshot_date=snapshot_date or config.data.snapshot_date,
                        horizon_days=config.data.horizon_days)
        return (partial(build, reader) for reader in readers), _record_total(data)
    if is_records(data):
        raise DataError(f"{hide_credentials(data)}: the model was trained on a single table; give a CSV or Parquet file")
    check_signature(column_kinds(table_sample(data)), scoring, source=str(data))
    columns = _table_roles(scoring)
    chunks = table_chunks(data, rows=config.scoring.chunk_rows, id_column=columns["id"],
                          value_column=columns["value"], label_column=scoring.label_column)
    if scoring.mode == "records":  # a feature table written by `churn features`
        chunks = (_with_waiver(chunk) for chunk in chunks)
    return deferred(chunks), _table_total(data)


def _features_of(read, *, snapshot_date: str | None, horizon_days: int):
    """The modelling table of one record chunk (``read()`` gives its records)."""
    from pipeline.dataset import records_dataset

    return records_dataset(read(), snapshot_date=snapshot_date, horizon_days=horizon_days, require_label=False)


def _table_roles(scoring) -> dict[str, str | None]:
    """The id and value columns of a table scored by this model (a feature table for record models)."""
    from pipeline.features import ID_COLUMN

    if scoring.mode == "records":
        return {"id": ID_COLUMN, "value": "monthly_fee", "waiver": "etf_waivable_amount"}
    return {"id": scoring.id_column, "value": scoring.value_column, "waiver": None}


def _with_waiver(chunk):
    if "etf_waivable_amount" in chunk.frame.columns:
        chunk.extra["etf_waivable"] = chunk.frame["etf_waivable_amount"].astype("float64").reset_index(drop=True)
    return chunk


def score_job(
    data: str,
    output: str,
    *,
    config: Config,
    uri: str,
    model: str | None = None,
    write_all: bool = False,
    snapshot_date: str | None = None,
    disclosure_date: str | None = None,
    budget: float | None = None,
    capacity: int | None = None,
    engine: str = "pandas",
    progress: Say | None = None,
) -> ScoreOutcome:
    """Score a base with a registered model; write the ranked at-risk list (or every row).

    The ``pandas`` engine streams the input chunk by chunk on this machine; the ``spark``
    engine scores a table (Parquet or CSV) with ``mlflow.pyfunc.spark_udf`` on Spark and
    builds the same list from its probabilities.
    """
    from pipeline import tracking
    from pipeline.drift import DriftCounter
    from pipeline.errors import ConfigError
    from pipeline.score import ScoreStream, in_order

    say = _say(progress)
    output_path = Path(output)
    if output_path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise DataError(f"{output}: unsupported output type {output_path.suffix!r} (expected .csv or .parquet)")
    if not output_path.parent.exists():
        raise DataError(f"{output}: folder {output_path.parent} does not exist")
    if budget is not None and budget < 0 or capacity is not None and capacity < 0:
        raise ConfigError("--budget and --capacity must not be negative")
    if engine not in ("pandas", "spark"):
        raise ConfigError(f"unknown engine {engine!r}; expected pandas or spark")
    tracking.connect(uri)
    model_uri = model or tracking.model_uri(config.tracking.model_name)
    say(f"loading model {model_uri}")
    scoring = scoring_model(tracking.load_model(model_uri))
    started = time.perf_counter()
    drift = DriftCounter(scoring.profile)
    stream = ScoreStream(scoring, config, output=output_path, write_all=write_all)
    try:
        if engine == "spark":
            # Spark loads the model itself: give it a verified copy of the files, not the URI.
            with tracking.verified_model_files(model_uri) as (local, _):
                out, rows, frame = _score_on_spark(data, scoring, model_uri=str(local), config=config, say=say)
            stream.add_rows(out, rows, frame)
            del out, frame
        else:
            chunks, total = input_chunks(data, scoring, config=config, snapshot_date=snapshot_date,
                                         disclosure_date=disclosure_date)
            import pyarrow as pa

            rate = _Rate(total)
            # Chunks are read, featurised and predicted on `workers` threads at once (most of
            # that work releases the GIL); this thread takes them in order.
            workers = config.scoring.workers
            threads = max(1, config.train.n_threads // workers)
            scored = (partial(_scored, task, scoring, stream, threads) for task in chunks)
            with closing(in_order(scored, workers=workers)) as results:  # an error stops the workers
                for inputs, prepared in results:
                    drift.add(inputs)
                    stream.take(prepared)
                    say(rate.add(len(inputs)))
                    del inputs, prepared
                    _release_memory(pa)
            if not stream.rows:
                raise DataError(f"{hide_credentials(data)}: no subscribers to score")
        say(f"ranking {stream.rows:,} subscribers and writing {output_path.name}")
        result = stream.finish(budget=budget, capacity=capacity)
    finally:
        stream.cleanup()
    summary = result["summary"]
    seconds = time.perf_counter() - started
    psi = drift.psi()
    warnings = [
        f"input drift: {name} has population stability index {value:.2f} (above {config.scoring.psi_warning})"
        for name, value in psi.items() if value > config.scoring.psi_warning
    ]
    at_risk_count = stream.tiers["medium"] + stream.tiers["high"]
    summary_metrics = {
        "rows_scored": stream.rows,
        "rows_written": result["rows_written"],
        "at_risk": at_risk_count,
        "expected_loss_at_risk": stream.loss_at_risk if at_risk_count else 0.0,
        "mean_probability": result["probability_stats"]["mean_probability"],
        "rows_per_second": stream.rows / max(seconds, 1e-9),
        "seconds": seconds,
        "targeted": summary.targeted,
        "targeting_expected_saves": summary.expected_saves,
        "targeting_expected_cost": summary.expected_cost,
        "targeting_expected_net_value": summary.expected_net_value,
        "drifting_features": len(warnings),
        "output_format": output_path.suffix.lower().lstrip("."),
        "targeting_rule": summary.rule,
        "input_sha256": _input_hash(data),
    }
    summary_metrics.update({k: v for k, v in result["probability_stats"].items() if k.startswith("probability_p")})
    for tier in ("low", "medium", "high"):
        summary_metrics[f"tier_{tier}"] = stream.tiers[tier]
    if len(psi):
        summary_metrics["psi_max"] = float(psi.max())
    run_id = tracking.log_scoring(
        config=config, uri=uri, model_uri=model_uri, version=scoring.version, summary=summary_metrics,
        artifacts={"score/psi.csv": psi.rename_axis("feature").reset_index(),
                   "score/targeting.json": summary.as_dict()},
    )
    return ScoreOutcome(
        output=output_path, rows_scored=stream.rows, rows_written=result["rows_written"], at_risk=at_risk_count,
        expected_loss_at_risk=summary_metrics["expected_loss_at_risk"], model_version=scoring.version,
        top=result["top"], run_id=run_id, targeting=summary, drift=psi, drift_warnings=warnings,
        seconds=seconds,
    )


def _release_memory(pa) -> None:
    """Hand freed memory back to the system between chunks (Arrow's pool, and glibc's heap on Linux).

    Without it the resident size creeps up chunk after chunk on long runs (freed but kept).
    """
    import ctypes
    import ctypes.util

    pa.default_memory_pool().release_unused()
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        try:
            _LIBC = ctypes.CDLL(name) if name else False
        except OSError:
            _LIBC = False
    if _LIBC and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


_LIBC = None


def _scored(task, scoring, stream, threads: int):
    """One chunk's inputs and its scores prepared for ``stream`` (any thread; the model on ``threads`` threads)."""
    from pipeline.score import score_dataset

    chunk = task()
    out = score_dataset(scoring, chunk, stream.config, explain=False, n_threads=threads)
    return chunk.frame, stream.prepare(out, chunk.frame)


def _score_on_spark(data: str, scoring, *, model_uri: str, config: Config, say: Say):
    """Probabilities from Spark, then the same list columns as the pandas engine.

    Returns ``(scored rows, positions of the rows worth explaining, their inputs)`` for
    ``ScoreStream.add_rows``, which gives reasons and actions as for the pandas engine.
    """
    import pyarrow.dataset as ds

    from pipeline.score import check_signature, column_kinds, score_rows, table_sample, worth_explaining
    from pipeline.spark import score_spark

    if is_records(data):
        raise DataError(f"{hide_credentials(data)}: the Spark engine scores a table (Parquet or CSV); "
                        "write the features of a record folder with `churn features` first")
    sample = table_sample(data)
    check_signature(column_kinds(sample), scoring, source=str(data))
    roles = _table_roles(scoring)
    id_column = roles["id"] if roles["id"] in sample.columns else None
    keep = [c for c in (roles["value"], roles["waiver"]) if c and c in sample.columns]
    say(f"scoring {data} on Spark ({config.scoring.spark_master})")
    scored = score_spark(data, model_uri=model_uri, input_columns=scoring.input_columns, id_column=id_column,
                         keep_columns=keep, master=config.scoring.spark_master)
    number = {c: pd.to_numeric(scored[c].astype("string").str.strip(), errors="coerce") for c in keep}
    out = score_rows(
        scoring, scored["subscriber_id"], scored["churn_probability"].to_numpy(), config,
        monthly_value=number[roles["value"]].to_numpy() if roles["value"] in number else None,
        etf_waived=number[roles["waiver"]].to_numpy() if roles["waiver"] in number else None,
    )
    rows = np.flatnonzero(worth_explaining(out))
    frame = pd.DataFrame(index=range(0))
    if len(rows):
        say(f"reading the inputs of {len(rows):,} subscribers worth a call")
        source = ds.dataset(data, format="parquet" if Path(data).suffix.lower() in (".parquet", ".pq") else "csv")
        if id_column:
            wanted = out["subscriber_id"].iloc[rows]
            table = source.to_table(filter=ds.field(id_column).cast("string").isin(wanted.tolist())).to_pandas()
            table.index = table[id_column].astype(str)
            frame = table.loc[wanted.to_numpy()].reset_index(drop=True)
        else:
            frame = source.to_table().to_pandas().iloc[rows].reset_index(drop=True)
    return out, rows, frame


def features_job(data: str, output: str, *, config: Config, snapshot_date: str | None = None,
                 disclosure_date: str | None = None, progress: Say | None = None) -> tuple[Path, int]:
    """Write the point-in-time feature table of a record folder or database to Parquet, chunk by chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.features import build_features
    from pipeline.records import iter_record_chunks
    from pipeline.schema import TABLES

    say = _say(progress)
    path = Path(output)
    if path.suffix.lower() not in (".parquet", ".pq"):
        raise DataError(f"{output}: the feature table is written as Parquet (.parquet)")
    if not path.parent.exists():
        raise DataError(f"{output}: folder {path.parent} does not exist")
    if not is_records(data):
        raise DataError(f"{hide_credentials(data)}: not a record folder or database URL")
    temp = path.with_name(f".{path.name}.tmp")
    rows, writer = 0, None
    snapshot = snapshot_date or config.data.snapshot_date
    try:
        for chunk in iter_record_chunks(data, chunk_subscribers=config.data.chunk_subscribers,
                                        tables=[t for t in TABLES if t != "outcomes"],
                                        snapshot_date=snapshot, disclosure_date=disclosure_date):
            table = pa.Table.from_pandas(build_features(chunk), preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(temp, table.schema)
            writer.write_table(table)
            rows += table.num_rows
            say(f"features for {rows:,} subscribers")
        if writer is None:
            raise DataError(f"{hide_credentials(data)}: no subscribers")
        writer.close()
        writer = None
        temp.replace(path)
    finally:
        if writer is not None:
            writer.close()
        temp.unlink(missing_ok=True)
    return path, rows


def _input_hash(data: str) -> str:
    """SHA-256 of the input files (all files of a record folder, in name order); URLs hash their text."""
    import hashlib

    digest = hashlib.sha256()
    path = Path(data)
    if "://" in str(data) or not path.exists():
        digest.update(str(data).split("@")[-1].encode())
        return digest.hexdigest()
    files = sorted(p for p in path.rglob("*") if p.is_file() and "truth" not in p.parts) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def promote_job(version: int, *, config: Config, uri: str) -> str:
    """Make ``version`` champion by hand; say what it replaced."""
    from pipeline import tracking

    tracking.connect(uri)
    previous = tracking.promote(config.tracking.model_name, version, reason="promoted by hand with `churn promote`")
    replaced = "no champion before" if previous is None else f"replaced version {previous}"
    return f"{config.tracking.model_name} version {version} is champion ({replaced})"


def generate_job(subscribers: int, *, seed: int, out: str, scenario: str | None, overwrite: bool,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Generate a synthetic post-breach base into ``out``."""
    from pipeline import simulate

    kwargs = {"seed": seed, "out": out, "overwrite": overwrite, "progress": progress}
    if scenario:
        kwargs["scenario"] = scenario
    return simulate.generate(subscribers, **kwargs)


__all__ = ["PipelineError", "TrainOutcome", "ScoreOutcome", "train_job", "score_job", "promote_job", "generate_job"]

