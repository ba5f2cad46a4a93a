"""The pipeline's jobs: each wires the stages together for one CLI command.

Stages stay pure (``dataset``, ``train``, ``score``...); this module does the loading,
the MLflow calls through ``pipeline.tracking``, and the file writing, in the order that
keeps failures clean: everything that can fail on bad input happens before anything is
registered or written.
"""

from __future__ import annotations

import contextlib
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
from pipeline.inputs import WAIVER_COLUMN, check_paths, data_snapshot, input_chunks, input_hash, is_records, load_dataset

log = logging.getLogger(__name__)
Say = Callable[[str], None]


def _say(progress: Say | None) -> Say:
    """A progress callback that never shows a URL's password."""
    out = progress or (lambda message: log.info(message))
    return lambda message: out(hide_credentials(message))


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
    #: Rows left out of churn training, by reason (e.g. offered within the outcome window).
    excluded: dict[str, int] = field(default_factory=dict)
    #: The response model trained beside it, or why none was.
    response: Any = None
    #: The candidates selection compared (``train.TrainResult.candidates``), best first, and
    #: the one chosen (``"blend"`` for a blend).
    candidates: pd.DataFrame | None = None
    chosen_candidate: str | None = None
    #: Search draws stopped early (``train.TrainResult.raced_out``) and candidates skipped for the time budget.
    raced_out: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    #: The REST wrapper (``pipeline.serving``): what was registered, or why not.
    service: str = ""


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
    treatment_column: str | None = None,
    use_response: bool = True,
    progress: Say | None = None,
) -> TrainOutcome:
    """Load, train, evaluate, log, register as challenger, and promote when the gate says so.

    When the data holds a randomised campaign (the records' ``campaigns`` table, or a
    table's ``treatment_column``) and ``use_response`` and ``response.enabled`` allow it, a
    response model is trained, logged and registered too (``<model name>-response``, same
    gate on the Qini coefficient); the churn model then learns only from subscribers whose
    outcome no offer changed.  Both models are trained before anything is logged.
    """
    from pipeline import tracking
    from pipeline.train import train

    say = _say(progress)
    tracking.connect(uri, models=True)  # fail fast, before any work, when the store is unreachable
    say(f"loading {data}")
    wants_response = use_response and config.response.enabled
    # A table's treatment column is read either way: its offered rows never train the churn model.
    split = wants_response or treatment_column is not None
    loaded = load_dataset(
        data, config=config, id_column=id_column, target=target, positive=positive,
        value_column=value_column, snapshot_date=snapshot_date, disclosure_date=disclosure_date,
        time_column=time_column, treatment_column=treatment_column, response=split,
    )
    dataset, response_data, no_response = loaded if split else (loaded, None, None)
    if not wants_response:
        response_data, no_response = None, ("turned off (--no-response)" if not use_response
                                            else "turned off (response.enabled = false)")
    _say_training_rows(dataset, say)
    result = train(dataset, config, progress=say)
    response_result = None
    if response_data is not None:
        no_response = _too_few_for_response(response_data, config)
        if no_response is None:
            response_result = _train_response_model(response_data, result, config, say)
        else:
            say(f"no response model: {no_response}")
    run_id = _evaluate_and_log_churn_run(result, dataset, config, uri, say)
    snapshot = data_snapshot(data, snapshot_date, config) if is_records(data) else None
    if snapshot:
        tracking.tag_run(run_id, {"data_snapshot_date": str(snapshot)})
    registration, response = _register_models(run_id, result, dataset, response_result, response_data, no_response,
                                              snapshot=snapshot, config=config, uri=uri, say=say)
    service = _register_service(config, uri, say)
    return _train_outcome(result, dataset, run_id, registration, response, service)


def _say_training_rows(dataset, say: Say) -> None:
    """Tell how many rows (over how many snapshots) the churn model learns from, and their churn rate."""
    if dataset.period is not None:
        say(f"{dataset.n_rows:,} rows over {dataset.period.nunique()} snapshots, churn rate {float(dataset.label.mean()):.2%}")
    else:
        say(f"{dataset.n_rows:,} subscribers, churn rate {float(dataset.label.mean()):.2%}")


def _evaluate_and_log_churn_run(result, dataset, config: Config, uri: str, say: Say) -> str:
    """Evaluate the churn model on its hold-out (plots, permutation importance, segments,
    fairness) and log the run with those artifacts to MLflow; returns the run's id."""
    from pipeline import evaluate, tracking
    from pipeline.segments import segment_columns
    from pipeline.targeting import clv

    holdout = dataset.frame.iloc[result.holdout_index].reset_index(drop=True)
    y_holdout = dataset.label.to_numpy()[result.holdout_index]
    value = None
    if dataset.monthly_value is not None:
        value = clv(dataset.monthly_value.to_numpy()[result.holdout_index], config.campaign)
    say("evaluating on the hold-out (metrics, plots, permutation importance)")
    importances = evaluate.permutation_importance_table(
        result.holdout_model, holdout[result.input_columns], y_holdout, seed=config.train.seed, n_repeats=3, max_rows=5000
    )
    segment_table = evaluate.segment_metrics(y_holdout, result.holdout_proba, segment_columns(holdout))
    fairness = _fairness(holdout, y_holdout, result, config)
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
            "evaluation/fairness.csv": fairness,
        }
        if result.raced_out or result.skipped:
            extra["selection/not_finished.csv"] = _not_finished(result)
        say("logging the run to MLflow")
        return tracking.log_training(result, dataset, config, uri=uri, plots=plots, extra_artifacts=extra)


def _not_finished(result) -> pd.DataFrame:
    """What selection did not finish (racing) or did not start (time budget), and why."""
    return pd.DataFrame(
        [{"candidate": r["candidate"], "family": r["family"], "why": "raced out", "folds": r["folds"],
          "mean_fold_auc": r["mean_fold_auc"], "leader": r["leader"]} for r in result.raced_out]
        + [{"candidate": c, "why": "time budget"} for c in result.skipped])


def _register_models(run_id: str, result, dataset, response_result, response_data, no_response: str | None, *,
                     snapshot, config: Config, uri: str, say: Say):
    """Register the churn model (the gate compares it with the champion first), then log and
    register the response model, or note why there is none.  Both models or neither: when the
    response model fails, the churn model's registration is undone and its run marked failed.
    Returns the churn model's registration and the ``ResponseOutcome``.
    """
    from pipeline import tracking

    model_name = config.tracking.model_name
    say("registering the model (the gate compares it with the champion first)")
    before = tracking.registry_state(model_name)
    registration = tracking.gate_churn_model(run_id, result, dataset, config)
    try:
        if response_result is not None:
            response = _log_and_register_response(response_result, response_data, config, uri, say)
            if snapshot:
                tracking.tag_run(response.run_id, {"data_snapshot_date": str(snapshot)})
        else:
            response = ResponseOutcome(model_name=response_model_name(model_name), skipped=no_response)
    except BaseException:
        # Both models or neither: the churn model's registration is undone too.
        tracking.rollback_registration(model_name, registration.version, before)
        tracking.mark_run_failed(run_id)
        raise
    return registration, response


def _train_outcome(result, dataset, run_id: str, registration, response: ResponseOutcome, service: str) -> TrainOutcome:
    """What ``train_job`` tells the CLI: the run, the registration and the gate's verdict, the
    model chosen, every column left out and why, and the response model's outcome."""
    return TrainOutcome(
        service=service,
        run_id=run_id, version=registration.version, promoted=registration.promoted,
        champion_version=registration.champion_version, message=registration.message, metrics=result.metrics,
        family=result.family, calibration=result.calibration, rows=dataset.n_rows,
        dropped={**dataset.dropped,
                 **dict(zip(result.columns.loc[result.columns["use"] == "dropped", "column"],
                            result.columns.loc[result.columns["use"] == "dropped", "reason"]))},
        excluded=dict(dataset.excluded), response=response, candidates=result.candidates,
        chosen_candidate=_chosen_candidate(result), raced_out=list(result.raced_out), skipped=list(result.skipped),
    )


def _fairness(holdout: pd.DataFrame, y: np.ndarray, result, config: Config) -> pd.DataFrame:
    """``evaluation/fairness.csv``: each protected segment of the hold-out on the at-risk list (``pipeline.protected``)."""
    from pipeline.protected import fairness_table
    from pipeline.score import risk_tiers

    listed = risk_tiers(result.holdout_proba, result.base_rate, config) != "low"
    return fairness_table(holdout, y, result.holdout_proba, listed, used=set(result.input_columns))


def _register_service(config: Config, uri: str, say: Say) -> str:
    """Register the REST wrapper beside the models (``tracking.register_service``); a failure is reported,
    not raised: the models are registered and usable either way."""
    from pipeline import tracking

    name = config.tracking.model_name
    try:
        version, new = tracking.register_service(name, response_name=response_model_name(name), config=config, uri=uri)
    except Exception as err:  # noqa: BLE001 - the models stand; say why REST is not updated
        say(f"the REST wrapper was not registered: {err}")
        return f"the REST wrapper {tracking.service_name(name)} was not registered ({type(err).__name__}: {err})"
    what = "registered" if new else "unchanged:"
    return f"REST wrapper {tracking.service_name(name)} {what} version {version} (serves the champions)"


def _chosen_candidate(result) -> str | None:
    """The selection row of the model chosen: ``blend``, or the candidate of its family and parameters."""
    table = result.candidates
    if result.family == "blend":
        return "blend"
    for row in table.itertuples(index=False):
        if row.family == result.family and dict(row.params) == dict(result.params):
            return str(row.candidate)
    return None


@dataclass
class ResponseOutcome:
    """What training did about the response model: trained and registered, or skipped and why."""

    model_name: str
    skipped: str | None = None
    run_id: str | None = None
    version: int | None = None
    promoted: bool = False
    message: str = ""
    learner: str = ""
    rows: int = 0
    heterogeneous: bool = False
    metrics: dict[str, float] = field(default_factory=dict)


def _too_few_for_response(data, config: Config) -> str | None:
    """Why the campaign rows are too few to learn a response from (each group needs churners
    and stayers in every fold), or None when they suffice."""
    y = data.label.to_numpy().astype(int)
    t = data.treatment.to_numpy().astype(int)
    counts = np.bincount(2 * t + y, minlength=4)
    needed = 2 * config.response.cv_folds
    if counts.min() >= needed:
        return None
    return (f"too few campaign rows to learn a response from: {counts[3]:,} offered churners, {counts[2]:,} offered "
            f"stayers, {counts[1]:,} held-out churners, {counts[0]:,} held-out stayers (at least {needed} of each "
            f"are needed; a pilot of {_pilot_hint(data)} would do)")


def _pilot_hint(data) -> str:
    from pipeline.targeting import pilot_size

    rate = float(data.label.mean())
    if not 0 < rate < 1:
        return "a few thousand subscribers per group"
    uplift = min(0.01, rate / 2)
    return f"{pilot_size(rate, uplift):,} subscribers per group (to detect a {uplift * 100:.1f}-point drop in churn)"


def _train_response_model(data, churn, config: Config, say: Say):
    """Train the response model on a campaign table (``load_dataset(..., response=True)``); pure."""
    from pipeline.response import train_response
    from pipeline.score import predict

    columns = churn.input_columns
    missing = [c for c in columns if c not in data.frame.columns]
    if missing:
        raise DataError(f"{data.source}: the campaign rows lack the churn model's input column(s) {', '.join(missing)}")
    offered = int(data.treatment.sum())
    say(f"response model: {data.n_rows:,} campaign rows ({offered:,} offered, {data.n_rows - offered:,} held out)")
    X = data.frame[columns].reset_index(drop=True)
    risk = predict(churn.model, X, columns, n_threads=config.train.n_threads)
    drop = tuple(c for c in (data.id_column,) if c in X.columns)
    return train_response(X, data.treatment.to_numpy(), data.label.to_numpy(), config=config.response,
                          seed=config.train.seed, n_threads=config.train.n_threads, risk=risk, progress=say,
                          drop_columns=drop)


def _log_and_register_response(result, data, config: Config, uri: str, say: Say) -> ResponseOutcome:
    """Log the response model's run, register it under ``<model name>-response``, and apply the gate."""
    from pipeline import evaluate, tracking

    name = response_model_name(config.tracking.model_name)
    holdout = result.holdout_index
    y, t = data.label.to_numpy()[holdout], data.treatment.to_numpy()[holdout]
    with tempfile.TemporaryDirectory() as tmp:
        risk = result.plot_data.get("qini_risk")
        plots = evaluate.save_uplift_plots(y, t, result.holdout_uplift, Path(tmp),
                                           risk=None if risk is None else _holdout_risk(result))
        extra = {"selection/candidates.csv": result.candidates,
                 "evaluation/uplift_by_decile.csv": result.deciles}
        say("logging the response model's run to MLflow")
        run_id = tracking.log_response(result, data, config, uri=uri, plots=plots, extra_artifacts=extra)
    registration = tracking.gate_response_model(run_id, name, result, data, config)
    version, promoted, message = registration.version, registration.promoted, registration.message
    return ResponseOutcome(
        model_name=name, run_id=run_id, version=version, promoted=promoted, message=message,
        learner=f"{result.learner} ({result.family})", rows=data.n_rows,
        heterogeneous=bool(result.metrics.get("heterogeneity", 0.0)), metrics=dict(result.metrics),
    )


def _holdout_risk(result):
    """The churn probabilities of the response hold-out rows, as ``train_response`` was given them."""
    return result.holdout_risk


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
    #: Warnings about what the list rests on (e.g. no response model: response assumed).
    notes: list[str] = field(default_factory=list)
    #: The campaign's id when a control group was held out (``--control-share``).
    campaign_id: str | None = None
    response_version: str | None = None
    #: Subscribers whom a retention contact is expected to push out (negative estimated uplift).
    do_not_contact: int = 0
    #: Counts of the rows written (``score.ListTally``): what the file holds.
    tally: Any = None
    #: Files written beside the list: ``summary``, ``dictionary``, ``calls``, ``report`` -> path.
    files: dict[str, Path] = field(default_factory=dict)


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


def scoring_model(loaded):
    """What scoring needs from a loaded model, from its MLflow metadata and signature."""
    from pipeline.score import ScoringModel

    from pipeline.errors import ModelError

    meta = loaded.metadata
    base_rate = meta.get("base_rate")
    try:
        base_rate = float(base_rate)
    except (TypeError, ValueError):
        base_rate = float("nan")
    if not 0 < base_rate < 1:  # the tiers are multiples of it: no default can stand in for it
        raise ModelError(f"model {loaded.uri} records no training churn rate (metadata base_rate: "
                         f"{meta.get('base_rate')!r}), which the risk tiers are set from; train it again with "
                         "`churn train`")
    return ScoringModel(
        model=loaded.model,
        version=loaded.version,
        input_columns=list(meta.get("input_columns") or [c for c, _ in loaded.signature_columns]),
        base_rate=base_rate,
        mode=meta.get("mode", "table"),
        id_column=meta.get("id_column"),
        value_column=meta.get("value_column"),
        label_column=meta.get("label_column"),
        signature=dict(loaded.signature_columns),
        profile=meta.get("profile") or {},
    )


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
    response_model: str | None = None,
    use_response: bool = True,
    control_share: float | None = None,
    campaign_id: str | None = None,
    seed: int | None = None,
    calls: str | None = None,
    report: bool = True,
    progress: Say | None = None,
) -> ScoreOutcome:
    """Score a base with a registered model; write the ranked at-risk list (or every row).

    The ``pandas`` engine streams the input chunk by chunk on this machine; the ``spark``
    engine scores a table (Parquet or CSV) with ``mlflow.pyfunc.spark_udf`` on Spark and
    builds the same list from its probabilities.

    The response model (``response_model``, else the champion of ``<model name>-response``
    when one is registered and ``use_response``) gives each subscriber's estimated uplift,
    on which targeting then selects; without one, targeting falls back to risk and the
    outcome carries a warning and the size of the pilot that would measure the response.
    ``control_share`` (default ``scoring.control_share``) holds that share of the targeted
    subscribers out at random (``seed``, default ``train.seed``) as the control group of
    campaign ``campaign_id`` (default: derived from the inputs, so a rerun gives the same id).

    Beside the list (``NAME.csv``) go its scoring summary (``NAME.summary.json``,
    ``pipeline.summary``), its data dictionary (``NAME.dictionary.csv``), with a budget or a
    capacity the call list (``calls``, default ``NAME.calls.csv``: the subscribers to contact,
    in call order), and unless ``report`` is false the report (``NAME.report.html``,
    ``pipeline.report``); the summary and the report are logged to the scoring run too.
    """
    from pipeline import tracking
    from pipeline.drift import DriftCounter
    from pipeline.output import check_destination
    from pipeline.score import ScoreStream
    from pipeline.summary import BaseTotals

    say = _say(progress)
    output_path = Path(output)
    check_destination(output_path)
    check_paths(data, output)
    share = config.scoring.control_share if control_share is None else control_share
    _check_score_options(budget=budget, capacity=capacity, engine=engine, share=share, campaign_id=campaign_id)
    tracking.connect(uri, models=True)
    model_uri = model or tracking.model_uri(config.tracking.model_name)
    say(f"loading model {model_uri}")
    scoring = scoring_model(tracking.load_model(model_uri))
    scoring.response = response_scorer(config, response_model, use_response, say) if use_response else None
    notes = [] if scoring.response is not None else [_no_response_warning(scoring.base_rate, config)]
    seed = config.train.seed if seed is None else seed
    input_sha256 = input_hash(data)
    if share > 0 and not campaign_id:
        campaign_id = _campaign_id(input_sha256, scoring, seed, share, budget, capacity)
    calls_path = _calls_path(output_path, calls, budget, capacity)
    started = time.perf_counter()
    drift = DriftCounter(scoring.profile)
    totals = BaseTotals()
    stream = ScoreStream(scoring, config, output=output_path, write_all=write_all)
    try:
        if engine == "spark":
            _feed_from_spark(data, scoring, stream, totals, model_uri=model_uri, config=config, say=say)
        else:
            _feed_chunks(data, scoring, stream, drift, totals, config=config, say=say, snapshot_date=snapshot_date,
                         disclosure_date=disclosure_date)
        say(f"ranking {stream.rows:,} subscribers and writing {output_path.name}")
        result = stream.finish(budget=budget, capacity=capacity, control_share=share, seed=seed,
                               campaign_id=campaign_id, calls=calls_path)
    finally:
        stream.cleanup()
    summary = result["summary"]
    seconds = time.perf_counter() - started
    psi = drift.psi()
    warnings = [
        f"input drift: {name} has population stability index {value:.2f} (above {config.scoring.psi_warning})"
        for name, value in psi.items() if value > config.scoring.psi_warning
    ]
    metrics = _score_metrics(stream, result, scoring, seconds=seconds, psi=psi, warnings=warnings,
                             output_path=output_path, input_sha256=input_sha256)
    sweep = stream.offer_sweep()
    run_id = _log_score_run(config, uri, model_uri, scoring, metrics, psi=psi, summary=summary, sweep=sweep,
                            tags={"campaign_id": campaign_id} if share > 0 else {})
    say("writing the scoring summary, the data dictionary" + (" and the report" if report else ""))
    companions = _write_companions(
        output_path, data=data, input_sha256=input_sha256, config=config, scoring=scoring, model_uri=model_uri,
        run_id=run_id,
        totals=totals, tally=result["tally"], targeting=summary, sweep=sweep, psi=psi, warnings=warnings,
        notes=notes, snapshot_date=snapshot_date, write_all=write_all, calls_path=calls_path, report=report,
    )
    return ScoreOutcome(
        output=output_path, rows_scored=stream.rows, rows_written=result["rows_written"], at_risk=metrics["at_risk"],
        expected_loss_at_risk=metrics["expected_loss_at_risk"], model_version=scoring.version,
        top=result["top"], run_id=run_id, targeting=summary, drift=psi, drift_warnings=warnings,
        seconds=seconds, notes=notes, campaign_id=campaign_id if share > 0 else None,
        do_not_contact=stream.do_not_contact,
        response_version=None if scoring.response is None else str(scoring.response.version),
        tally=result["tally"], files=companions,
    )


def _check_score_options(*, budget, capacity, engine: str, share: float, campaign_id: str | None) -> None:
    """Before any work: the limits, the engine, the control share and the campaign id are usable."""
    import re

    from pipeline.errors import ConfigError

    if budget is not None and budget < 0 or capacity is not None and capacity < 0:
        raise ConfigError("--budget and --capacity must not be negative")
    if engine not in ("pandas", "spark"):
        raise ConfigError(f"unknown engine {engine!r}; expected pandas or spark")
    if not 0 <= share < 1:
        raise ConfigError(f"--control-share must be at least 0 and below 1, got {share}")
    if campaign_id is not None and not re.fullmatch(r"[\w.:-]{1,100}", campaign_id):
        raise ConfigError("--campaign-id may hold letters, digits, '_', '.', ':' and '-' only (at most 100)")


def _feed_chunks(data: str, scoring, stream, drift, totals, *, config: Config, say: Say,
                 snapshot_date: str | None, disclosure_date: str | None) -> None:
    """The pandas engine: stream the input's chunks through the model into ``stream``.

    Chunks are read, featurised and predicted on ``scoring.workers`` threads at once (most of
    that work releases the GIL); this thread takes them in order, counting drift and totals.
    """
    import pyarrow as pa

    from pipeline._engine import in_order, release_memory

    chunks, total = input_chunks(data, scoring, config=config, snapshot_date=snapshot_date,
                                 disclosure_date=disclosure_date)
    rate = _Rate(total)
    workers = config.scoring.workers
    threads = max(1, config.train.n_threads // workers)
    scored = (partial(_scored, task, scoring, stream, threads) for task in chunks)
    with closing(in_order(scored, workers=workers)) as results:  # an error stops the workers
        for inputs, prepared, chunk_totals in results:
            drift.add(inputs)
            totals.merge(chunk_totals)
            stream.take(prepared)
            say(rate.add(len(inputs)))
            del inputs, prepared
            release_memory(pa)
    if not stream.rows:
        raise DataError(f"{hide_credentials(data)}: no subscribers to score")


def _feed_from_spark(data: str, scoring, stream, totals, *, model_uri: str, config: Config, say: Say) -> None:
    """The Spark engine: probabilities (and uplift) from Spark, fed into ``stream`` as one scored chunk.

    Spark loads the models itself: it is given verified copies of their files, not the URIs.
    """
    from pipeline import tracking
    from pipeline.summary import BaseTotals

    with contextlib.ExitStack() as stack:
        local, _ = stack.enter_context(tracking.verified_model_files(model_uri))
        uplift_local = None
        if scoring.response is not None:
            uplift_local, _ = stack.enter_context(tracking.verified_model_files(scoring.response.uri))
        out, rows, frame = _score_on_spark(data, scoring, model_uri=str(local), config=config, say=say,
                                           uplift_model_uri=None if uplift_local is None else str(uplift_local))
    totals.merge(BaseTotals.of(out))
    stream.add_rows(out, rows, frame)


def _score_metrics(stream, result: dict, scoring, *, seconds: float, psi: pd.Series, warnings: list[str],
                   output_path: Path, input_sha256: str) -> dict[str, Any]:
    """The scoring run's metrics (``tracking.log_scoring``): counts, money, targeting, drift, speed."""
    summary = result["summary"]
    at_risk_count = stream.tiers["medium"] + stream.tiers["high"]
    metrics = {
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
        "targeting_worth_contacting": summary.worth_contacting,
        "targeting_control": summary.control,
        "do_not_contact": stream.do_not_contact,
        "response_model_version": "none" if scoring.response is None else str(scoring.response.version),
        "input_sha256": input_sha256,
    }
    metrics.update({k: v for k, v in result["probability_stats"].items() if k.startswith("probability_p")})
    for tier in ("low", "medium", "high"):
        metrics[f"tier_{tier}"] = stream.tiers[tier]
    if len(psi):
        metrics["psi_max"] = float(psi.max())
    return metrics


def _log_score_run(config: Config, uri: str, model_uri: str, scoring, metrics: dict[str, Any], *, psi: pd.Series,
                   summary, sweep: pd.DataFrame, tags: dict[str, str]) -> str:
    """Log the scoring run (metrics, drift, targeting, the offer sweep and its plot); its run id."""
    from pipeline import tracking

    artifacts = {"score/psi.csv": psi.rename_axis("feature").reset_index(),
                 "score/targeting.json": summary.as_dict(), "score/offer_sweep.csv": sweep}
    with tempfile.TemporaryDirectory() as tmp:
        if scoring.mode == "records" or scoring.value_column:  # the sweep needs each subscriber's monthly value
            from pipeline.evaluate import plot_offer_sweep

            figure = plot_offer_sweep(sweep, chosen_months=config.campaign.offer_cost_months,
                                      measured=scoring.response is not None)
            artifacts["plots/offer_sweep.png"] = Path(tmp) / "offer_sweep.png"
            figure.savefig(artifacts["plots/offer_sweep.png"], dpi=110, metadata={"Software": None})
        return tracking.log_scoring(config=config, uri=uri, model_uri=model_uri, version=scoring.version,
                                    summary=metrics, artifacts=artifacts, tags=tags)


def _calls_path(output: Path, calls: str | None, budget, capacity) -> Path | None:
    """Where the call list goes: ``calls``, else ``NAME.calls<suffix>`` beside the list when a limit is given."""
    from pipeline.output import check_destination
    from pipeline.summary import companion

    if calls is not None:
        path = Path(calls)
        check_destination(path, kind="call list")
        if path.resolve() == output.resolve():
            raise DataError(f"{calls}: the call list cannot replace the list itself")
        return path
    if budget is None and capacity is None:
        return None
    return companion(output, "calls", output.suffix.lower())


def _model_cards(model_uri: str, scoring, config: Config, say: Say) -> dict[str, Any]:
    """The churn and response models' cards (``tracking.model_card``), with the churn model's reliability table."""
    from pipeline import tracking

    cards: dict[str, Any] = {}
    try:
        churn = tracking.model_card(model_uri, scoring.version, kind="churn")
        if churn.get("run_id"):
            table = tracking.run_table(churn["run_id"], "evaluation/reliability.csv")
            churn["reliability"] = [] if table is None else table.to_dict("records")
        cards["churn"] = churn
        if scoring.response is not None:
            cards["response"] = tracking.model_card(scoring.response.uri, scoring.response.version, kind="response")
    except PipelineError as err:  # the registry went away mid-run: the report says what is known
        say(f"model details unavailable for the report: {err}")
        cards.setdefault("churn", {"uri": model_uri, "version": str(scoring.version), "metrics": {}, "data": {}})
    return cards


def _write_companions(output: Path, *, data: str, input_sha256: str, config: Config, scoring, model_uri: str,
                      run_id: str, totals, tally, targeting, sweep: pd.DataFrame, psi: pd.Series, warnings: list[str], notes: list[str],
                      snapshot_date: str | None, write_all: bool, calls_path: Path | None,
                      report: bool) -> dict[str, Path]:
    """Write the scoring summary, the data dictionary and the report beside the list; log them to the run."""
    import datetime as dt

    from pipeline import tracking
    from pipeline.lists import CALL_ORDER, OUTPUT_COLUMNS
    from pipeline.summary import column_dictionary, companion, currency_words, write_json
    from pipeline.targeting import acceptance_rate, pilot_size

    records = scoring.mode == "records"
    currency = config.report.currency or ("KRW" if records else currency_words(None, scoring.value_column))
    measured = scoring.response is not None
    uplift = config.response.detectable_uplift
    pilot = pilot_size(scoring.base_rate, uplift) if not measured and 0 < uplift < scoring.base_rate < 1 else None
    header = _list_header(output)
    summary = {
        "run_id": run_id,
        "scored_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "list": {"file": output.name, "rows": tally.rows, "all": write_all, "columns": header,
                 "counts": tally.as_dict()},
        "calls": None if calls_path is None else {"file": calls_path.name, "rows": tally.targeted - tally.control},
        "data": {"source": hide_credentials(str(data)), "snapshot_date": data_snapshot(data, snapshot_date, config),
                 "input_sha256": input_sha256},
        "currency": currency,
        "valued": bool(totals.valued),
        "horizon_days": config.data.horizon_days,
        "base_rate": scoring.base_rate,
        "tiers": {"medium_multiple": config.scoring.medium_risk_multiple,
                  "high_multiple": config.scoring.high_risk_multiple, "counts": dict(totals.tiers)},
        "models": _model_cards(model_uri, scoring, config, lambda message: log.info(message)),
        "impact": totals.impact(),
        "segments": totals.segment_table(),
        "campaign": {"targeting": targeting.as_dict(), "response_measured": measured,
                     "offer_months": config.campaign.offer_cost_months,
                     "contact_months": config.campaign.contact_cost_months,
                     "acceptance_rate": None if measured else acceptance_rate(config.campaign),
                     "pilot_size": pilot, "detectable_uplift": uplift,
                     "offer_sweep": sweep.to_dict("records"), "value_curves": totals.value_curves()},
        "why_not_called": {**{k: v for k, v in totals.reasons.items() if k != "worth_a_call"},
                           "beyond_limit": max(totals.reasons["worth_a_call"] - targeting.targeted, 0),
                           "worth_a_call": totals.reasons["worth_a_call"]},
        "drift": {"threshold": config.scoring.psi_warning, "warnings": list(warnings),
                  "psi": {str(k): float(v) for k, v in psi.head(20).items()}},
        "notes": list(notes),
    }
    files = {"summary": write_json(summary, companion(output, "summary", ".json"))}
    dictionary = column_dictionary(
        [CALL_ORDER, *[c for c in OUTPUT_COLUMNS if c in header]] if calls_path is not None
        else [c for c in OUTPUT_COLUMNS if c in header],
        currency=currency, horizon_days=config.data.horizon_days, base_rate=scoring.base_rate,
        medium=config.scoring.medium_risk_multiple, high=config.scoring.high_risk_multiple)
    from pipeline.output import write_output

    files["dictionary"] = write_output(dictionary, companion(output, "dictionary", ".csv"))
    if calls_path is not None:
        files["calls"] = calls_path
    tracking.log_files(run_id, {f"report/{path.name}": path for key, path in files.items()
                                if key in ("summary", "dictionary")})
    if report:
        files["report"] = _write_and_log_report(run_id, output, summary, config)
    return files


def _write_and_log_report(run_id: str | None, list_path: Path | str, summary: dict, config: Config, *,
                          out_dir: str | None = None, baseline: dict | None = None) -> Path:
    """Write the report beside the list (or in ``out_dir``) and, with a ``run_id``, log to that run the
    same page without subscriber ids (MLflow never holds an identifier); the list is read once."""
    import tempfile

    from pipeline import tracking
    from pipeline.report import write_report

    with tempfile.TemporaryDirectory(prefix="churn-report-") as tmp:
        path = write_report(list_path, summary, out_dir=out_dir, baseline=baseline,
                            first_calls=config.report.first_calls, copy_without_ids=tmp if run_id else None)
        if run_id:
            tracking.log_files(run_id, {f"report/{path.name}": Path(tmp) / path.name})
    return path


def _list_header(path: Path) -> list[str]:
    """The column names of a written list (CSV header or Parquet schema)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    return list(pd.read_csv(path, nrows=0).columns)


def response_model_name(model_name: str) -> str:
    """The registered name of the response model that goes with churn model ``model_name``."""
    return f"{model_name}-response"


def response_scorer(config: Config, uri: str | None, use: bool, say: Say):
    """The response model to score with: ``uri``, else the registered champion, else None."""
    from pipeline import tracking
    from pipeline.score import ResponseScorer

    if not use:
        return None
    if uri is None:
        name = response_model_name(config.tracking.model_name)
        if tracking.champion_version(name) is None:
            return None
        uri = tracking.model_uri(name)
    say(f"loading response model {uri}")
    loaded = tracking.load_model(uri)
    if loaded.metadata.get("kind") != "response":
        raise DataError(f"{uri}: not a response model (it was not trained by `churn train` on campaign data)")
    columns = list(loaded.metadata.get("input_columns") or [c for c, _ in loaded.signature_columns])
    return ResponseScorer(model=loaded.model, version=str(loaded.version), input_columns=columns, uri=uri)


def _no_response_warning(base_rate: float, config: Config) -> str:
    """What targeting does without a response model, and the pilot that would measure the response."""
    from pipeline.targeting import acceptance_rate, pilot_size

    g = acceptance_rate(config.campaign)
    text = (f"no response model: how subscribers respond to a retention offer is unknown, so targeting assumes a "
            f"contact saves {g:.0%} of would-be churners (expected saves = churn probability x {g:.2f}), which "
            f"favours the riskiest subscribers, often those a call cannot keep")
    uplift = config.response.detectable_uplift
    if 0 < uplift < base_rate < 1:
        n = pilot_size(base_rate, uplift)
        text += (f"; run a randomised pilot first: {n:,} subscribers offered and {n:,} held out detect a "
                 f"{uplift * 100:.1f}-point drop in churn (from {base_rate:.1%}) with 80% power at 5% "
                 f"significance; record it in the campaigns table and run `churn train` again")
    return text


def _campaign_id(input_sha256: str, scoring, seed: int, share: float, budget, capacity) -> str:
    """A campaign id that the same inputs, models and settings always give (``c`` + 12 hex digits)."""
    import hashlib

    key = "|".join(str(part) for part in (input_sha256, scoring.version,
                                          None if scoring.response is None else scoring.response.version,
                                          seed, share, budget, capacity))
    return "c" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _scored(task, scoring, stream, threads: int):
    """One chunk's inputs, its scores prepared for ``stream`` and what it adds to the base's totals
    (``summary.BaseTotals``): any thread, the model on ``threads`` threads."""
    from pipeline.score import score_dataset
    from pipeline.summary import BaseTotals

    chunk = task()
    out = score_dataset(scoring, chunk, stream.config, explain=False, n_threads=threads)
    totals = BaseTotals.of(out, chunk.frame)
    return chunk.frame, stream.prepare(out, chunk.frame), totals


def _score_on_spark(data: str, scoring, *, model_uri: str, config: Config, say: Say,
                    uplift_model_uri: str | None = None):
    """Probabilities from Spark, then the same list columns as the pandas engine.

    Returns ``(scored rows, positions of the rows worth explaining, their inputs)`` for
    ``ScoreStream.add_rows``, which gives reasons and actions as for the pandas engine.
    """
    import pyarrow.dataset as ds

    from pipeline.inputs import check_signature, column_kinds, table_sample
    from pipeline.score import score_rows, worth_explaining
    from pipeline.spark import score_spark

    if is_records(data):
        raise DataError(f"{hide_credentials(data)}: the Spark engine scores a table (Parquet or CSV); "
                        "write the features of a record folder with `churn features` first")
    sample = table_sample(data)
    check_signature(column_kinds(sample), scoring.contract, source=str(data))
    roles = scoring.contract.roles()
    id_column = roles["id"] if roles["id"] in sample.columns else None
    waiver = next((c for c in (roles["waiver"], "etf_waivable_amount" if roles["waiver"] else None)
                   if c and c in sample.columns), None)
    keep = [c for c in (roles["value"], waiver, roles["etf"]) if c and c in sample.columns]
    say(f"scoring {data} on Spark ({config.scoring.spark_master})")
    scored = score_spark(data, model_uri=model_uri, input_columns=scoring.input_columns, id_column=id_column,
                         keep_columns=keep, master=config.scoring.spark_master, uplift_model_uri=uplift_model_uri,
                         uplift_columns=scoring.response.input_columns if scoring.response is not None else ())
    from pipeline.prepare import to_numbers

    number = {c: to_numbers(scored[c]) for c in keep}  # "1,234.5" is a number, as on the pandas engine
    uplift = uplift_se = None
    if scoring.response is not None:
        uplift = scored["estimated_uplift"].to_numpy(dtype="float64")
        uplift_se = scoring.response.model.uncertainty_of(uplift)
    out = score_rows(
        scoring, scored["subscriber_id"], scored["churn_probability"].to_numpy(), config,
        monthly_value=number[roles["value"]].to_numpy() if roles["value"] in number else None,
        etf_waived=number[waiver].to_numpy() if waiver in number else None,
        etf=number[roles["etf"]].to_numpy() if roles["etf"] in number and waiver in number else None,
        uplift=uplift, uplift_se=uplift_se,
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


@dataclass
class MeasureOutcome:
    """What ``measure_job`` found: one row per campaign, and where it was logged."""

    table: pd.DataFrame
    run_id: str
    scoring_runs: list[str] = field(default_factory=list)


def campaign_effects(dataset) -> pd.DataFrame:
    """What each randomised campaign of a response table (``campaign_dataset``) changed.

    One row per campaign: its start, the sizes and churn rates of the offer and control
    groups, the realised uplift (control churn minus offer churn) with Newcombe's 95%
    interval (``evaluate.average_treatment_effect``), the defections it prevented among the
    offered (``uplift x n_offer``, same interval), and the offer costs recorded for those
    who took the offer.
    """
    from pipeline.evaluate import average_treatment_effect

    campaign = dataset.extra["campaign_id"].to_numpy(dtype=object)
    start = pd.Series(dataset.period).dt.date.astype(str).to_numpy(dtype=object)
    y, t = dataset.label.to_numpy(), dataset.treatment.to_numpy()
    cost = dataset.extra.get("offer_cost")
    rows = []
    for name in pd.unique(campaign):
        at = campaign == name
        effect = average_treatment_effect(y[at], t[at])
        rows.append({
            "campaign_id": str(name), "start": str(start[at][0]), "n_offer": effect.n_offer,
            "n_control": effect.n_control, "churn_offer": effect.churn_rate_offer,
            "churn_control": effect.churn_rate_control, "uplift": effect.estimate, "uplift_low": effect.ci_low,
            "uplift_high": effect.ci_high, "saves": effect.estimate * effect.n_offer,
            "saves_low": effect.ci_low * effect.n_offer, "saves_high": effect.ci_high * effect.n_offer,
            "offer_cost_recorded": float(np.nansum(cost.to_numpy()[at & (t == 1)])) if cost is not None else np.nan,
        })
    return pd.DataFrame(rows)


def measure_job(data: str, *, config: Config, uri: str, campaign: str | None = None, snapshot_date: str | None = None,
                progress: Say | None = None) -> MeasureOutcome:
    """Measure the realised uplift of the randomised campaigns in a record base; log it to MLflow.

    Outcomes must be known for each campaign's whole window (``data.horizon_days`` from its
    start): up to ``snapshot_date`` when given, else the manifest's ``simulated_until``,
    else ``horizon_days`` after the records' snapshot.  The measurement goes to a ``measure``
    run, and to every scoring run whose ``campaign_id`` tag names a measured campaign.
    """
    from pipeline import tracking
    from pipeline.dataset import campaign_dataset
    from pipeline.features import resolve_snapshot
    from pipeline.records import load_records

    say = _say(progress)
    tracking.connect(uri)
    if not is_records(data):
        raise DataError(f"{data}: not a record folder or database URL (measuring needs the campaigns and outcomes tables)")
    say(f"loading {data}")
    records = load_records(data, snapshot_date=None)
    horizon = pd.Timedelta(days=config.data.horizon_days)
    if snapshot_date:
        known = pd.Timestamp(snapshot_date)
    elif records.meta.get("simulated_until"):
        known = pd.Timestamp(records.meta["simulated_until"])
    else:
        known = resolve_snapshot(records, config.data.snapshot_date) + horizon
    if campaign is not None and records.campaigns is not None:
        wanted = records.campaigns["campaign_id"].astype(str) == campaign
        if not wanted.any():
            raise DataError(f"{data}: no campaign {campaign!r} in the campaigns table")
        from dataclasses import replace

        records = replace(records, campaigns=records.campaigns[wanted.to_numpy()].reset_index(drop=True))
    last_start = (known - horizon).date().isoformat()
    say(f"measuring campaigns that started by {last_start} (outcomes known until {known.date()})")
    dataset = campaign_dataset(records, horizon_days=config.data.horizon_days, snapshot_date=last_start)
    table = campaign_effects(dataset)
    run_id, scoring_runs = tracking.log_measurement(table, config=config, uri=uri, source=str(data))
    return MeasureOutcome(table=table, run_id=run_id, scoring_runs=scoring_runs)


def features_job(data: str, output: str, *, config: Config, snapshot_date: str | None = None,
                 disclosure_date: str | None = None, progress: Say | None = None) -> tuple[Path, int]:
    """Write the point-in-time feature table of a record folder or database to Parquet, chunk by chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.features import build_features, waiver_forgives
    from pipeline.records import iter_record_chunks
    from pipeline.schema import TABLES

    say = _say(progress)
    from pipeline.files import publish, temp_file

    from pipeline.output import check_destination

    path = Path(output)
    check_destination(path, kind="feature table", parquet_only=True)
    check_paths(data, output, records_only=True)
    temp = temp_file(path)  # unique: concurrent writers never share one
    rows, writer = 0, None
    snapshot = snapshot_date or config.data.snapshot_date
    try:
        for chunk in iter_record_chunks(data, chunk_subscribers=config.data.chunk_subscribers,
                                        tables=[t for t in TABLES if t != "outcomes"],
                                        snapshot_date=snapshot, disclosure_date=disclosure_date):
            frame = build_features(chunk)
            frame[WAIVER_COLUMN] = waiver_forgives(chunk, frame)  # money for the value of a save, not a feature
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(temp, table.schema)
            writer.write_table(table)
            rows += table.num_rows
            say(f"features for {rows:,} subscribers")
        if writer is None:
            raise DataError(f"{hide_credentials(data)}: no subscribers")
        writer.close()
        writer = None
        publish(temp, path, config.scoring.file_mode)
    finally:
        if writer is not None:
            writer.close()
        temp.unlink(missing_ok=True)
    return path, rows


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


def report_job(scores: str, *, config: Config, out_dir: str | None = None, baseline: str | None = None,
               uri: str | None = None, progress: Say | None = None) -> tuple[Path, str | None]:
    """Write the report of a scored list from the list and its summary (``NAME.summary.json``) alone.

    ``baseline``: a list of the same base scored without the breach, whose summary is
    compared.  With ``uri``, the report is added to the scoring run named in the summary
    when that store holds it.  Returns the report's path and the run it was logged to (or None).
    """
    from pipeline import tracking
    from pipeline.summary import companion, read_json

    say = _say(progress)
    summary = read_json(companion(scores, "summary", ".json"))
    base = read_json(companion(baseline, "summary", ".json")) if baseline else None
    say(f"writing the report of {scores}")
    run_id = summary.get("run_id") if uri is not None else None
    if run_id:
        tracking.connect(uri)
        if not tracking.run_exists(run_id):
            say(f"scoring run {run_id} is not in {hide_credentials(uri)}: the report was not logged")
            run_id = None
    return _write_and_log_report(run_id, scores, summary, config, out_dir=out_dir, baseline=base), run_id


def models_job(*, config: Config, uri: str) -> list[dict[str, Any]]:
    """Every registered version of the churn model and its response model (``tracking.version_cards``)."""
    from pipeline import tracking

    tracking.connect(uri)
    name = config.tracking.model_name
    return tracking.version_cards(name, kind="churn") + tracking.version_cards(response_model_name(name),
                                                                               kind="response")


__all__ = ["PipelineError", "TrainOutcome", "ScoreOutcome", "train_job", "score_job", "promote_job", "generate_job",
           "report_job", "models_job"]

