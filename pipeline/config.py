"""One typed configuration for every stage, loaded once at the CLI edge.

The configuration is a tree of frozen dataclasses.  ``load_config(path)`` reads a TOML
file whose tables mirror the dataclasses; unknown tables or keys are errors, so a typo
never silently falls back to a default, and every value is checked against its key's
annotated type (optional keys such as ``data.snapshot_date`` included).  Nothing here
reads the environment.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    """How labels and point-in-time features are cut from subscriber records."""

    #: The snapshot date (ISO ``YYYY-MM-DD``); records dated before it are features,
    #: events after it only labels.  ``None``: taken from the record folder's manifest.
    snapshot_date: str | None = None
    #: A subscriber is a churner when they leave within this many days of the snapshot.
    horizon_days: int = 90
    #: Earlier snapshot dates (ISO) whose features and labels are stacked with the snapshot's
    #: for training, one row per subscriber per date; selection's folds then go by time.
    training_snapshots: tuple[str, ...] = ()
    #: In a single table holding several snapshots (one row per subscriber per date), the
    #: column with each row's snapshot date; selection's folds then go by time.
    time_column: str | None = None
    #: Subscribers per chunk when records are processed in pieces.
    chunk_subscribers: int = 250_000
    #: Columns never used as features (``churn train --exclude COL`` adds to them); each must
    #: be a column of the data (a table's column, or a record feature such as ``region``).
    exclude_columns: tuple[str, ...] = ()
    #: Protected traits (gender, age, senior citizen, marital status, religion, ethnicity,
    #: nationality, disability...: ``pipeline.protected``) are left out of the features unless
    #: named here, e.g. ``["SeniorCitizen"]``.  Never given as a reason either way.
    use_protected: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainConfig:
    """Model selection, calibration and the hold-out."""

    #: Seed of every random step (splits, folds, search, models): same data and config, same model.
    seed: int = 42
    #: Share of rows kept aside, never seen by selection, for the reported metrics.
    holdout_fraction: float = 0.2
    #: Stratified folds used by selection and calibration.
    cv_folds: int = 5
    #: Folds of selection once it has at least ``large_cv_rows`` rows (``0``: never fewer than
    #: ``cv_folds``).  Every selection row gets one out-of-fold score whatever the number of
    #: folds, and those scores are what candidates are compared and calibrated on; on a large
    #: sample three larger folds lose little precision and save two fits of every candidate.
    #: From 30,000 rows each of three folds still fits on 20,000 rows, more than the 10,000 from
    #: which CatBoost stops early (``pipeline.model.CATBOOST_LARGE_FIT_ROWS``), so no fold costs more.
    large_cv_folds: int = 3
    large_cv_rows: int = 30_000
    #: Candidate model families tried by selection: ``logistic``, ``hist_gradient_boosting``,
    #: ``catboost`` (tried at its defaults, and only up to ``catboost_max_rows`` training rows).
    candidates: tuple[str, ...] = ("logistic", "hist_gradient_boosting", "catboost")
    #: CatBoost is skipped above this many training rows (the rows left after the hold-out,
    #: before selection's subsample): its fit time grows fastest with
    #: rows (15 to 30 times HistGradientBoosting's CPU time on 32,000 rows); ``0``: no limit.
    catboost_max_rows: int = 100_000
    #: Random-search draws per candidate family (besides its default; CatBoost has none).
    search_iterations: int = 3
    #: Seconds model selection and the final fits may take (``0``: no limit): a candidate is
    #: skipped when its fits and those after selection would not fit (``train.SelectionClock``).
    time_budget_seconds: float = 0.0
    #: Stop a search draw once it trails the leader on the folds it has seen (``train.race_out``).
    racing: bool = True
    #: Calibration methods chosen between by cross-validated Brier score, along with none
    #: (kept when no method lowers it): ``sigmoid`` keeps the ranking, ``isotonic`` may tie scores.
    calibration_methods: tuple[str, ...] = ("sigmoid",)
    #: Metric on which a challenger must beat the champion: ``empc`` or ``roc_auc``.
    promotion_metric: str = "empc"
    #: Threads a model may use while fitting or predicting (OpenMP pools and CatBoost).
    n_threads: int = 2
    #: Selection's cross-validation runs on at most this many (stratified) training rows;
    #: the final model is fit on all of them.
    selection_max_rows: int = 40_000
    #: Try a weighted soft-voting blend of the chosen candidate and the best candidate of the
    #: best other family, kept only when its cross-validated ROC AUC beats the chosen
    #: candidate's by at least ``blend_min_gain``.
    blend: bool = True
    blend_min_gain: float = 0.002
    #: After the hold-out evaluation, refit the chosen model on every row (hold-out included)
    #: for the registered model; the reported metrics stay those of the model fit without it.
    refit_all_rows: bool = True
    #: ... only when the training part has at most this many rows (``0``: whatever the size):
    #: the hold-out's extra rows pay on small tables, while on a large base they add little
    #: and cost one more fit of the chosen model on every row.
    refit_max_rows: int = 50_000


@dataclass(frozen=True)
class CampaignConfig:
    """The economics of a retention campaign (Verbraken et al. 2013; Gupta & Lehmann 2003)."""

    #: Monthly margin as a share of the monthly value (revenue) of a subscriber.
    margin: float = 0.4
    #: The operator's normal monthly retention (outside a breach).  Each subscriber's own
    #: retention is this scaled by their risk relative to the base (``lifetime_from_model``);
    #: used as is where no per-subscriber estimate exists.
    monthly_retention: float = 0.99
    #: Lifetime value from each subscriber's own expected retention (the model's probability
    #: relative to its training churn rate), not one rate for all.
    lifetime_from_model: bool = True
    #: Yearly discount rate for future margins.
    annual_discount_rate: float = 0.10
    #: Incentive offered to a targeted subscriber, in months of that subscriber's monthly value
    #: (0.5: half a bill, like SK Telecom's breach compensation), used when a value is known.
    offer_cost_months: float = 0.5
    #: Cost of one contact (call, message) in months of monthly value, used when a value is known.
    contact_cost_months: float = 0.05
    #: Absolute incentive and contact costs, used when no value is known (EMPC's defaults,
    #: Verbraken et al. 2013: CLV 200, incentive 10, contact 1).
    offer_cost: float = 10.0
    contact_cost: float = 1.0
    #: Beta(alpha, beta) distribution of the share of would-be churners who accept the offer.
    acceptance_alpha: float = 6.0
    acceptance_beta: float = 14.0
    #: Customer lifetime value used when no value is known.
    default_clv: float = 200.0


@dataclass(frozen=True)
class ResponseConfig:
    """The response (uplift) model: whom a retention contact keeps, learned from randomised campaigns."""

    #: Train a response model with the churn model whenever the data holds a randomised
    #: campaign (records' ``campaigns`` table, or a table's ``--treatment`` column).
    enabled: bool = True
    #: Share of the campaign rows kept aside (stratified by group and outcome), never seen by
    #: selection or calibration, for the reported metrics.
    holdout_fraction: float = 0.25
    #: Folds of the cross-validated Qini coefficient (stratified by group and outcome).
    cv_folds: int = 5
    #: Learners tried: ``two_model``, ``class_transformation``, ``x_learner``.
    learners: tuple[str, ...] = ("two_model", "class_transformation", "x_learner")
    #: Base families tried with each learner: ``logistic``, ``hist_gradient_boosting``.  Boosting
    #: is off by default: on the simulator it ranked no better and took 2-4 times as long
    #: (``benchmarks/uplift_learners.py``).
    families: tuple[str, ...] = ("logistic",)
    #: Largest calibration slope kept (slopes above it are clipped: a score that needs
    #: stretching more is mostly noise).
    max_slope: float = 1.5
    #: One-sided level at which the calibration slope must be positive to use the score
    #: (divided by the number of candidates, which compete on the same out-of-fold scores);
    #: otherwise no difference in response is detected and the model predicts the average
    #: effect for everyone.  Strict because errors cost unequally: a false detection turns
    #: noise into a calling list, a missed one forgoes at most the best list's gain.
    significance: float = 0.01
    #: Bins of the hold-out table of observed against predicted uplift.
    n_bins: int = 10
    #: Refit the chosen learner on every row (hold-out included) for the registered model;
    #: the reported metrics stay those of the model fit without the hold-out.
    refit_all_rows: bool = True
    #: The drop in churn probability a recommended pilot should detect (80% power, 5%
    #: significance), printed when scoring has no response model to go on.
    detectable_uplift: float = 0.01


@dataclass(frozen=True)
class ScoringConfig:
    """Risk tiers and the at-risk list."""

    #: A subscriber is at risk when their probability is at least this multiple of the
    #: training churn rate (tier ``medium``); ``high`` from the second multiple on.
    medium_risk_multiple: float = 1.5
    high_risk_multiple: float = 3.0
    #: Rows scored per chunk: rows of a table, subscribers of a record source (which also
    #: keeps within ``data.chunk_subscribers``).  About ``workers + 1`` chunks are in memory.
    chunk_rows: int = 65_536
    #: Reasons are given to this many rows of the list, from the top, among those worth a
    #: contact (at risk or with a positive expected net value); further rows get blank reasons
    #: and an action from the rules that do not read reasons.  0: no reasons.
    explain_rows: int = 100_000
    #: Chunks read, featurised and predicted at once, each on its own thread (the model's
    #: ``train.n_threads`` are shared among them).  1: one chunk at a time on one thread
    #: beside the main one.
    workers: int = 2
    #: Share of the targeted subscribers held out at random as the campaign's control group
    #: (test-and-learn: ``--control-share``); 0: none.
    control_share: float = 0.0
    #: Population stability index above which a feature is reported as drifting.
    psi_warning: float = 0.2
    #: Spark master URL for ``churn score --engine spark`` (``local[2]``: two local workers).
    spark_master: str = "local[2]"
    #: The action rule table (first match wins), as ``[[scoring.actions]]`` tables with
    #: ``when = {column = [op, value]}`` and ``action = "text"``; empty: the built-in rules
    #: (``pipeline.targeting.DEFAULT_ACTIONS``).
    actions: tuple = ()
    #: Permissions of the lists and feature tables written (``0o640``: owner reads and writes,
    #: its group reads, e.g. a CRM import; nobody else).  ``0``: follow the umask (``0o666``
    #: less the umask), as ordinary files do.
    file_mode: int = 0o640


@dataclass(frozen=True)
class TrackingConfig:
    """Where runs and models go."""

    #: MLflow experiment that training and scoring runs go to.
    experiment: str = "post-breach-churn"
    #: Registered model name (``--model-name`` overrides it).
    model_name: str = "post-breach-churn"


@dataclass(frozen=True)
class ReportConfig:
    """The scoring report (``churn report``) and the files written beside a list."""

    #: Currency of the money columns; empty: ``KRW`` for subscriber records (the Korean
    #: operator data and the simulator), else "the currency of the value column".
    currency: str = ""
    #: Subscribers shown in the report's table of the first calls.
    first_calls: int = 50


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    campaign: CampaignConfig = field(default_factory=CampaignConfig)
    response: ResponseConfig = field(default_factory=ResponseConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def flat(self) -> dict[str, Any]:
        """Every setting as ``section.key -> value``, for logging as run parameters."""
        out: dict[str, Any] = {}
        for section in dataclasses.fields(self):
            for key, value in dataclasses.asdict(getattr(self, section.name)).items():
                out[f"{section.name}.{key}"] = value
        return out


def _is(value: Any, kind: type) -> bool:
    """Whether a TOML value has a config type (``bool`` is no number; an integer is a float)."""
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


_KIND_NAMES = {int: "an integer", float: "a number", str: "str", bool: "bool"}


def _typed(value: Any, annotation: Any, what: str) -> Any:
    """``value`` checked against a key's annotation (``int``, ``str | None``, ``tuple[str, ...]``...)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        # ``X | None``: TOML has no null, but a configuration saved as JSON (the REST wrapper's) has
        if value is None:
            return None
        (annotation,) = [member for member in typing.get_args(annotation) if member is not type(None)]
    if (typing.get_origin(annotation) or annotation) is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{what} must be a list, got {value!r}")
        items = typing.get_args(annotation)[:1]
        if items and not all(_is(item, items[0]) for item in value):
            raise ConfigError(f"{what} must be a list of {items[0].__name__}, got {value!r}")
        return tuple(value)
    if not _is(value, annotation):
        raise ConfigError(f"{what} must be {_KIND_NAMES.get(annotation, annotation.__name__)}, got {value!r}")
    return value


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; expected one of {', '.join(known)}")
    annotations = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        if dataclasses.is_dataclass(annotations[name]):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{name}] must be a table")
            kwargs[name] = _build(annotations[name], value, f"{where} [{name}]")
            continue
        kwargs[name] = _typed(value, annotations[name], f"{where}: {name}")
    return dataclasses.replace(cls(), **kwargs)


def validate(config: Config) -> Config:
    """Check ranges that types alone cannot express; return the config unchanged."""
    checks = [
        (0 < config.train.holdout_fraction < 1, "train.holdout_fraction must be between 0 and 1"),
        (config.train.cv_folds >= 2, "train.cv_folds must be at least 2"),
        (config.train.large_cv_folds >= 2, "train.large_cv_folds must be at least 2"),
        (config.train.large_cv_rows >= 0, "train.large_cv_rows must be 0 (no limit) or more"),
        (config.train.promotion_metric in ("empc", "roc_auc"), "train.promotion_metric must be 'empc' or 'roc_auc'"),
        (bool(config.train.candidates), "train.candidates must name at least one model family"),
        (set(config.train.calibration_methods) <= {"sigmoid", "isotonic"},
         "train.calibration_methods may only list 'sigmoid' and 'isotonic'"),
        (config.train.n_threads >= 1, "train.n_threads must be at least 1"),
        (config.train.catboost_max_rows >= 0, "train.catboost_max_rows must be 0 or more"),
        (config.train.refit_max_rows >= 0, "train.refit_max_rows must be 0 (no limit) or more"),
        (config.train.time_budget_seconds >= 0, "train.time_budget_seconds must be 0 (no limit) or more"),
        (config.data.horizon_days > 0, "data.horizon_days must be positive"),
        (0 < config.campaign.monthly_retention < 1, "campaign.monthly_retention must be between 0 and 1"),
        (config.campaign.acceptance_alpha > 0 and config.campaign.acceptance_beta > 0,
         "campaign.acceptance_alpha and acceptance_beta must be positive"),
        (0 < config.scoring.medium_risk_multiple <= config.scoring.high_risk_multiple,
         "scoring.medium_risk_multiple must be positive and at most scoring.high_risk_multiple"),
        (config.scoring.chunk_rows > 0 and config.data.chunk_subscribers > 0, "chunk sizes must be positive"),
        (config.scoring.workers >= 1, "scoring.workers must be at least 1"),
        (config.scoring.file_mode == 0 or 0o600 <= config.scoring.file_mode <= 0o777
         and config.scoring.file_mode & 0o600 == 0o600,
         "scoring.file_mode must be 0 (follow the umask) or a mode such as 0o640 that lets the owner read and write"),
        (all(isinstance(c, str) and c for c in (*config.data.exclude_columns, *config.data.use_protected)),
         "data.exclude_columns and data.use_protected must be lists of column names"),
        (0 <= config.scoring.control_share < 1, "scoring.control_share must be at least 0 and below 1"),
        (0 < config.response.holdout_fraction < 1, "response.holdout_fraction must be between 0 and 1"),
        (config.response.cv_folds >= 2, "response.cv_folds must be at least 2"),
        (set(config.response.learners) <= {"two_model", "x_learner", "class_transformation"}
         and bool(config.response.learners),
         "response.learners must name some of two_model, x_learner, class_transformation"),
        (set(config.response.families) <= {"logistic", "hist_gradient_boosting"} and bool(config.response.families),
         "response.families must name some of logistic, hist_gradient_boosting"),
        (config.response.max_slope > 0, "response.max_slope must be positive"),
        (0 < config.response.significance < 1, "response.significance must be between 0 and 1"),
        (config.response.n_bins >= 2, "response.n_bins must be at least 2"),
        (0 < config.response.detectable_uplift < 1, "response.detectable_uplift must be between 0 and 1"),
        (config.report.first_calls >= 1, "report.first_calls must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return config


def load_config(path: str | Path | None = None) -> Config:
    """Read a TOML config file (or the defaults when ``path`` is None) into a ``Config``."""
    if path is None:
        return validate(Config())
    path = Path(path)
    try:
        with path.open("rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: config file not found") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from err
    return config_from_dict(values, str(path))


def config_from_dict(values: dict[str, Any], where: str) -> Config:
    """A validated ``Config`` from nested plain values (a TOML file's, or a configuration saved as JSON).

    ``where`` names the source in error messages; keys left out keep their defaults.
    """
    return validate(_build(Config, values, where))


def with_overrides(config: Config, **sections: dict[str, Any]) -> Config:
    """Return a copy with some keys replaced, e.g. ``with_overrides(c, train={"seed": 1})``."""
    changes = {}
    for section, values in sections.items():
        values = {k: v for k, v in values.items() if v is not None}
        if values:
            changes[section] = dataclasses.replace(getattr(config, section), **values)
    return validate(dataclasses.replace(config, **changes))
