"""Batch scoring and at-risk lists.

``score_dataset`` applies a fitted model to a modelling table and returns one row per
subscriber: probability, lifetime value, expected loss, risk tier.  ``rank_scores`` orders
rows by expected loss (probability when no value is known), ``at_risk`` keeps the
subscribers at risk, and ``write_output`` writes CSV or Parquet atomically (a temporary
name, renamed when complete), with spreadsheet formulas neutralised in CSV text.

``ScoreStream`` is what ``churn score`` uses for whole bases: it takes scored chunks, keeps
only the rows a list can hold (and, with ``--all``, writes sorted runs to merge), explains
the first ``scoring.explain_rows`` rows worth a contact, and writes the list batch by batch
(``ListWriter``), in memory bounded by about one chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.errors import DataError, ModelError

TIERS = ("low", "medium", "high")

#: The at-risk list's columns, in order (documented in docs/outputs.md).
OUTPUT_COLUMNS = (
    "rank",
    "subscriber_id",
    "churn_probability",
    "risk_tier",
    "expected_loss",
    "reason_1",
    "reason_2",
    "reason_3",
    "action",
    "targeted",
    "do_not_contact",
    "group",
    "expected_net_value",
    "expected_incremental_value",
    "estimated_uplift",
    "expected_save",
    "expected_cost",
    "monthly_value",
    "clv",
    "etf_waived",
    "save_value",
    "model_version",
    "response_model_version",
    "campaign_id",
)


def check_columns(frame: pd.DataFrame, expected: list[str], *, source: str) -> None:
    """Fail with the full list of model input columns missing from ``frame``."""
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) the model needs: {', '.join(map(str, missing))}"
        )


def predict(model, frame: pd.DataFrame, input_columns: list[str], *, n_threads: int = 2) -> np.ndarray:
    """Churn probabilities for raw rows (the model's own input columns, in training order)."""
    from threadpoolctl import threadpool_limits

    from pipeline.model import predict_threads

    try:
        with threadpool_limits(limits=n_threads), predict_threads(n_threads):
            return model.predict_proba(frame[input_columns])[:, 1]
    except (ValueError, TypeError) as err:
        raise ModelError(f"the model cannot score these rows: {str(err).splitlines()[0]}") from err


def risk_tiers(proba: np.ndarray, base_rate: float, config: Config) -> np.ndarray:
    """``high`` / ``medium`` / ``low`` from the probability as a multiple of the training churn rate."""
    medium = min(config.scoring.medium_risk_multiple * base_rate, 0.999)
    high = min(config.scoring.high_risk_multiple * base_rate, 0.999)
    return np.select([proba >= high, proba >= medium], ["high", "medium"], "low")


@dataclass
class ResponseScorer:
    """A loaded response (uplift) model: what a retention contact changes for each subscriber."""

    model: object
    version: str
    input_columns: list[str]
    #: Where it was loaded from (the Spark engine loads it again there, from verified files).
    uri: str = ""

    def uplift(self, frame: pd.DataFrame, *, n_threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """Each row's estimated reduction of its churn probability by a retention contact, and its
        standard error (``pipeline.response.ResponseModel.predict_se``)."""
        from threadpoolctl import threadpool_limits

        check_columns(frame, self.input_columns, source="the response model's input")
        try:
            with threadpool_limits(limits=n_threads):
                raw = self.model.predict_raw(frame[self.input_columns])
                return self.model.calibrate(raw), self.model.uncertainty(raw)
        except (ValueError, TypeError) as err:
            raise ModelError(f"the response model cannot score these rows: {str(err).splitlines()[0]}") from err


#: A contact is expected to push a subscriber out (``do_not_contact``) when even the upper
#: end of the one-sided 95% interval of the estimated uplift is below 0.
HARM_Z = 1.6449


@dataclass
class ScoringModel:
    """A loaded model and what scoring needs to know about it (from its MLflow metadata)."""

    model: object
    version: str
    input_columns: list[str]
    base_rate: float
    mode: str = "table"
    id_column: str | None = None
    value_column: str | None = None
    label_column: str | None = None
    signature: dict[str, str] = field(default_factory=dict)
    profile: dict = field(default_factory=dict)
    #: The response model scored next to this one, when one is registered.
    response: ResponseScorer | None = None


def check_signature(columns: dict[str, str], scoring: ScoringModel, *, source: str) -> None:
    """Before any work: every model input column present, and numbers where numbers are expected.

    ``columns`` maps the input's column names to a kind (``number``, ``text`` or ``other``,
    from the file schema or the first rows).  The error names every missing column, and every
    column holding text where the model takes numbers and the text is not numeric.
    """
    missing = [c for c in scoring.input_columns if c not in columns]
    mistyped = [
        f"{c} ({columns[c]}, expected number)"
        for c in scoring.input_columns
        if c in columns and scoring.signature.get(c) in ("double", "float", "long", "integer")
        and columns[c] == "text"
    ]
    raise_column_problems(source, missing, mistyped)


def raise_column_problems(source: str, missing: list, mistyped: list[str]) -> None:
    """One error naming every missing and every mistyped model input column, if there are any."""
    problems = []
    if missing:
        problems.append(f"missing column(s) the model needs: {', '.join(map(str, missing))}")
    if mistyped:
        problems.append(f"mistyped column(s): {', '.join(mistyped)}")
    if problems:
        raise DataError(f"{source}: " + "; ".join(problems))


def column_kinds(frame: pd.DataFrame) -> dict[str, str]:
    """``number`` / ``text`` / ``other`` per column of a sample, as ``check_signature`` takes them."""
    kinds = {}
    for name in frame.columns:
        column = frame[name]
        if column.dtype.kind in "biuf":
            kinds[str(name)] = "number"
        elif column.dtype.kind in "mM":
            kinds[str(name)] = "other"
        else:
            from pipeline.prepare import text_numbers

            # "1,234.5" is a number, as the model's typing step reads it; an all-blank column may be one
            blank = column.astype("string").str.strip().fillna("").eq("").all()
            kinds[str(name)] = "number" if blank or text_numbers(column) is not None else "text"
    return kinds


def score_rows(scoring: ScoringModel, ids, proba: np.ndarray, config: Config, *, monthly_value=None,
               etf_waived=None, etf=None, uplift=None, uplift_se=None) -> pd.DataFrame:
    """The list columns from probabilities: tier, value, expected loss and campaign economics.

    ``etf`` is each subscriber's early termination fee and ``etf_waived`` the part a fee
    waiver would forgive (``pipeline.targeting.save_value``); ``uplift`` a response model's
    estimate of what a contact changes (without it the response is assumed,
    ``pipeline.targeting.campaign_values``) and ``uplift_se`` its standard error, from which
    ``do_not_contact`` follows (``HARM_Z``).  Reasons and actions start blank
    (``explain_rows`` fills them); one row per id, in order.
    """
    from pipeline.targeting import (DEFAULT_ACTION, campaign_values, clv, expected_saves, save_value,
                                    subscriber_monthly_churn)

    campaign = config.campaign
    proba = np.asarray(proba, dtype="float64")
    out = pd.DataFrame({"subscriber_id": pd.Series(ids).astype(str).to_numpy(), "churn_probability": proba})
    out["risk_tier"] = risk_tiers(proba, scoring.base_rate, config)
    if monthly_value is not None:
        value = np.asarray(monthly_value, dtype="float64")
        churn = subscriber_monthly_churn(proba, scoring.base_rate, campaign) if campaign.lifetime_from_model else None
        out["monthly_value"] = value
        out["clv"] = clv(value, campaign, monthly_churn=churn)
        out["etf_waived"] = 0.0 if etf_waived is None else np.nan_to_num(np.asarray(etf_waived, dtype="float64"))
        out["save_value"] = save_value(out["clv"].to_numpy(), etf, out["etf_waived"].to_numpy())
        out["expected_loss"] = proba * out["save_value"]
        economics = campaign_values(proba, out["save_value"].to_numpy(), campaign, monthly_value=value, uplift=uplift)
    else:
        for column in ("monthly_value", "clv", "etf_waived", "save_value", "expected_loss"):
            out[column] = np.nan
        economics = campaign_values(proba, campaign.default_clv, campaign, uplift=uplift)
    for column in ("expected_save", "expected_cost", "expected_net_value"):
        out[column] = economics[column].to_numpy()
    if uplift is not None:
        out["estimated_uplift"] = expected_saves(proba, uplift=uplift)
        out["expected_incremental_value"] = out["expected_net_value"]
        se = np.zeros(len(out)) if uplift_se is None else np.asarray(uplift_se, dtype="float64")
        out["do_not_contact"] = out["estimated_uplift"].to_numpy() + HARM_Z * se < 0
    else:
        out["estimated_uplift"] = np.nan
        out["expected_incremental_value"] = np.nan
        out["do_not_contact"] = False
    for k in (1, 2, 3):
        out[f"reason_{k}"] = ""
    out["action"] = DEFAULT_ACTION
    out["model_version"] = str(scoring.version)
    out["response_model_version"] = "" if scoring.response is None else str(scoring.response.version)
    return out


def worth_explaining(out: pd.DataFrame) -> np.ndarray:
    """Rows a retention team will see: at risk, or with a positive expected net value."""
    return (out["risk_tier"] != "low").to_numpy() | (out["expected_net_value"] > 0).to_numpy()


def _actions_for(out: pd.DataFrame, rows: np.ndarray, found: pd.DataFrame, X: pd.DataFrame,
                 config: Config) -> np.ndarray:
    """The rule table's action for ``out``'s rows at ``rows``, given their reasons and inputs ``X``."""
    from pipeline.targeting import parse_rules, recommend_actions

    context = pd.concat(
        [out.iloc[rows].reset_index(drop=True), found.reset_index(drop=True),
         X.drop(columns=[c for c in out.columns if c in X.columns]).reset_index(drop=True)],
        axis=1,
    )
    rules = parse_rules(config.scoring.actions) if config.scoring.actions else None
    actions = recommend_actions(context, rules, strict=True) if rules else recommend_actions(context)
    return actions.to_numpy()


def explain_rows(scoring: ScoringModel, out: pd.DataFrame, rows: np.ndarray, X: pd.DataFrame,
                 config: Config) -> None:
    """Fill ``reason_1..3`` and ``action`` of ``out`` at positions ``rows``; ``X`` holds those rows' inputs."""
    from pipeline.explain import reasons

    if len(rows) == 0:
        return
    found = reasons(scoring.model, X[scoring.input_columns], k=3, n_threads=config.train.n_threads)
    actions = _actions_for(out, rows, found, X, config)
    for k in (1, 2, 3):
        out.loc[rows, f"reason_{k}"] = found[f"reason_{k}"].fillna("").to_numpy()
    out.loc[rows, "action"] = actions


def recommend_rows(out: pd.DataFrame, rows: np.ndarray, X: pd.DataFrame, config: Config) -> None:
    """Fill ``action`` of ``out`` at positions ``rows`` from the rule table, without reasons.

    For listed subscribers beyond the explained ones: rules on ``reason_*_feature`` do not
    match (the reasons are blank); every other rule applies as usual.
    """
    if len(rows) == 0:
        return
    blank = pd.DataFrame({f"reason_{k}_feature": np.full(len(rows), "", dtype=object) for k in (1, 2, 3)})
    out.loc[rows, "action"] = _actions_for(out, rows, blank, X, config)


def score_dataset(scoring: ScoringModel, dataset, config: Config, *, explain: bool = True,
                  n_threads: int | None = None) -> pd.DataFrame:
    """Score every row of one chunk: probability, tier, value, expected loss, targeting, reasons.

    One output row per input row, in input order.  With ``explain``, reasons and actions are
    given to every row worth a retention team's time (at risk, or with a positive expected
    net value); the others keep blanks, since explaining costs two to three predictions.
    ``churn score`` passes ``explain=False`` and lets ``ScoreStream`` explain the top of the
    list only.  ``n_threads`` (default ``config.train.n_threads``) bounds the model's threads.
    """
    check_columns(dataset.frame, scoring.input_columns, source=dataset.source)
    threads = n_threads or config.train.n_threads
    proba = predict(scoring.model, dataset.frame, scoring.input_columns, n_threads=threads)
    uplift, uplift_se = (None, None) if scoring.response is None else scoring.response.uplift(dataset.frame,
                                                                                               n_threads=threads)
    waived = dataset.extra.get("etf_waivable")
    etf = dataset.frame["early_termination_fee"] if scoring.mode == "records" and waived is not None else None
    out = score_rows(scoring, dataset.ids, proba, config, monthly_value=dataset.monthly_value,
                     etf_waived=None if waived is None else waived.to_numpy(),
                     etf=None if etf is None else etf.to_numpy(dtype="float64", na_value=np.nan), uplift=uplift,
                     uplift_se=uplift_se)
    if explain:
        rows = np.flatnonzero(worth_explaining(out))
        explain_rows(scoring, out, rows, dataset.frame.iloc[rows], config)
    return out


def table_chunks(path: str | Path, *, rows: int, id_column: str | None, value_column: str | None,
                 label_column: str | None) -> Iterator:
    """Stream one churn table (CSV chunks or Parquet batches) as modelling-table chunks.

    Ids missing from the file (a model trained without an id) are row numbers from 1,
    continued across chunks.  A label column, when present, is set aside (not used).
    """
    from pipeline.dataset import table_dataset

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            batches = (batch.to_pandas() for batch in pq.ParquetFile(path).iter_batches(batch_size=rows))
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: cannot read ({str(err).splitlines()[0]})") from err
    elif suffix in (".csv", ".txt", ".gz"):
        try:
            batches = pd.read_csv(path, chunksize=rows, low_memory=False)
        except (OSError, ValueError, pd.errors.ParserError) as err:
            raise DataError(f"{path}: cannot read ({str(err).splitlines()[0]})") from err
    else:
        raise DataError(f"{path}: unsupported file type {suffix!r} (expected .csv or .parquet)")
    offset = 0
    try:
        for frame in batches:
            present_id = id_column if id_column in frame.columns else None
            present_value = value_column if value_column in frame.columns else None
            target = label_column if label_column in frame.columns else None
            chunk = table_dataset(frame, id_column=present_id, target=None, value_column=present_value,
                                  source=str(path), require_label=False)
            if target is not None:
                chunk.frame = chunk.frame.drop(columns=[target])
            if present_id is None:
                chunk.ids = pd.Series(np.arange(offset + 1, offset + len(frame) + 1).astype(str), name="subscriber_id")
            offset += len(frame)
            yield chunk
    except pd.errors.ParserError as err:
        raise DataError(f"{path}: cannot read ({str(err).splitlines()[0]})") from err


def table_sample(path: str | Path, rows: int = 2000) -> pd.DataFrame:
    """The first rows of a table (CSV or Parquet), for checking columns before any work."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            batch = next(pq.ParquetFile(path).iter_batches(batch_size=rows), None)
            return batch.to_pandas() if batch is not None else pd.DataFrame()
        return pd.read_csv(path, nrows=rows, low_memory=False)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise DataError(f"{path}: cannot read ({str(err).splitlines()[0]})") from err


def rank_order(scores) -> np.ndarray:
    """Positions of ``scores``' rows (a frame or an Arrow table) in list order (see ``rank_scores``), sorted in Arrow.

    Expected loss, largest first and missing last; then probability, largest first; then
    ``subscriber_id`` (text order).  When no expected loss is known at all this is the
    order by probability, then id.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = pa.table(dict(zip("mlpi", _key_arrays(scores))))
    return pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in "mlpi"]).to_numpy()


def rank_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Order by expected loss (or probability when no value is known), ties by id; add ``rank`` from 1."""
    ordered = scores.take(rank_order(scores)).reset_index(drop=True)
    ordered.insert(0, "rank", np.arange(1, len(ordered) + 1))
    return ordered


def at_risk(ranked: pd.DataFrame) -> pd.DataFrame:
    """The at-risk list: tier medium or high, or chosen for targeting; ranks renumbered from 1."""
    keep = ranked["risk_tier"].isin(("medium", "high"))
    if "targeted" in ranked.columns:
        keep |= ranked["targeted"].astype(bool)
    kept = ranked[keep].reset_index(drop=True)
    kept["rank"] = np.arange(1, len(kept) + 1)
    return kept


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text that a spreadsheet would run as a formula with an apostrophe (CSV injection)."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if column.dtype.kind in "biufcmM":
            continue
        text = column.astype("string")
        risky = text.str.startswith(_FORMULA_START).fillna(False)
        if risky.any():
            out[name] = text.where(~risky, "'" + text).astype(object)
    return out


def finalize(scores: pd.DataFrame, *, budget: float | None = None, capacity: int | None = None,
             write_all: bool = False):
    """Rank every scored subscriber, choose whom to target, and cut the list.

    Returns ``(rows to write, TargetingSummary)``: every subscriber ranked (``write_all``) or
    the at-risk list, with ``targeted`` set by the budget, the capacity, or (with neither)
    every subscriber whose expected net value is positive.
    """
    from pipeline.errors import first_rows
    from pipeline.targeting import select

    duplicated = scores["subscriber_id"].duplicated(keep=False)
    if duplicated.any():
        ids = scores.loc[duplicated, "subscriber_id"].unique()
        raise DataError(f"subscriber ids repeat across the input: {first_rows(ids).replace('rows ', '').replace('row ', '')}")
    ranked = rank_scores(scores)
    chosen, summary = select(ranked, budget=budget, capacity=capacity)
    ranked["targeted"] = chosen.to_numpy()
    written = ranked if write_all else at_risk(ranked)
    return _in_list_order(consistent_actions(written)), summary


def _in_list_order(frame):
    """``frame`` (or an Arrow table) with the list's columns first, in ``OUTPUT_COLUMNS`` order (no copy when already so)."""
    arrow = not isinstance(frame, pd.DataFrame)
    names = list(frame.column_names if arrow else frame.columns)
    ordered = [c for c in OUTPUT_COLUMNS if c in names]
    columns = ordered + [c for c in names if c not in ordered]
    if names == columns:
        return frame
    return frame.select(columns) if arrow else frame[columns]


#: Decimals kept in CSV lists: probabilities to 6, money to 2 (CRM tools read plain numbers).
_CSV_DECIMALS = {"churn_probability": 6, "expected_save": 6, "estimated_uplift": 6, "expected_loss": 2,
                 "expected_net_value": 2, "expected_incremental_value": 2, "expected_cost": 2, "monthly_value": 2,
                 "clv": 2, "etf_waived": 2, "save_value": 2}


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    decimals = {c: d for c, d in _CSV_DECIMALS.items() if c in frame.columns}
    return frame.round(decimals) if decimals else frame


#: Rows per Parquet row group of a list, and per batch written (CSV and Parquet alike).
WRITE_BATCH = 100_000

#: The list's text columns; always written as plain text, whatever dtype they had in memory.
TEXT_COLUMNS = ("subscriber_id", "risk_tier", "reason_1", "reason_2", "reason_3", "action", "group",
                "model_version", "response_model_version", "campaign_id")


def _check_output(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise DataError(f"{path}: unsupported output type {suffix!r} (expected .csv or .parquet)")
    if not path.parent.exists():
        raise DataError(f"{path}: folder {path.parent} does not exist")
    return suffix


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns (categories while scoring) as plain text, so every path writes the same types."""
    convert = {c: "str" for c in TEXT_COLUMNS if c in frame.columns and frame[c].dtype != "str"}
    return frame.astype(convert) if convert else frame


class ListWriter:
    """Write a list batch by batch, atomically: a temporary name next to ``path``, renamed on ``close``.

    CSV: UTF-8, money and probabilities rounded, spreadsheet formulas neutralised; Parquet:
    row groups of ``WRITE_BATCH`` rows whatever the batches given, so the same rows give the
    same bytes however they arrive.  ``abort`` (or an exception inside ``with``) removes the
    temporary file: nothing partial is ever left.
    """

    def __init__(self, path: str | Path, *, mode: int = 0):
        from pipeline.files import temp_file

        self.path = Path(path)
        self.csv = _check_output(self.path) == ".csv"
        self.mode = mode  # ``pipeline.files.publish``: 0 follows the umask
        self.temp = temp_file(self.path)
        self.rows = 0
        self._started = False
        self._handle = None
        self._writer = None
        self._schema = None
        self._buffer: list = []  # Arrow tables
        self._buffered = 0

    def __enter__(self) -> ListWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def write(self, frame) -> None:
        """Append rows (the list's columns, in order; text columns may be categories), as a frame or an Arrow table."""
        import pyarrow as pa

        table = frame if isinstance(frame, pa.Table) else None
        if table is not None and (self.csv or self._schema is None):
            frame = table.to_pandas() if self.csv else table.slice(0, 0).to_pandas()
        self.rows += len(frame) if table is None else table.num_rows
        if self.csv:
            if self._handle is None:
                self._handle = open(self.temp, "w", encoding="utf-8", newline="")
            neutralise_formulas(_rounded(frame)).to_csv(self._handle, index=False, header=not self._started)
            self._started = True
            return
        if self._schema is None:
            self._schema = pa.Schema.from_pandas(_plain(frame.head(0)), preserve_index=False)
        rows = len(frame) if table is None else table.num_rows
        if rows:
            # to Arrow now (categories to text): buffered batches then join without copies
            table = pa.Table.from_pandas(frame, preserve_index=False) if table is None else table
            self._buffer.append(table.cast(self._schema))
            self._buffered += rows
        while self._buffered >= WRITE_BATCH:
            self._flush(WRITE_BATCH)

    def _flush(self, rows: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        whole = pa.concat_tables(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        batch, rest = whole.slice(0, rows), whole.slice(rows)
        self._buffer = [rest] if len(rest) else []
        self._buffered = len(rest)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.temp, self._schema)
        self._writer.write_table(batch, row_group_size=WRITE_BATCH)

    def close(self) -> Path:
        """Finish the file and move it into place."""
        try:
            if self.csv:
                if self._handle is None:
                    raise DataError(f"{self.path}: nothing to write")
                self._handle.close()
            else:
                if self._schema is None:
                    raise DataError(f"{self.path}: nothing to write")
                if self._buffered:
                    self._flush(self._buffered)
                if self._writer is None:  # no rows: a file with the columns only
                    import pyarrow.parquet as pq

                    pq.write_table(self._schema.empty_table(), self.temp)
                else:
                    self._writer.close()
            from pipeline.files import publish

            publish(self.temp, self.path, self.mode)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Remove the temporary file; the destination is left as it was."""
        for closable in (self._handle, self._writer):
            if closable is not None:
                try:
                    closable.close()
                except Exception:  # noqa: BLE001 - the file is removed anyway
                    pass
        self._handle = self._writer = None
        self.temp.unlink(missing_ok=True)


def write_output(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write CSV (UTF-8, formulas neutralised) or Parquet atomically: nothing partial is ever left."""
    with ListWriter(path) as writer:
        if len(frame) == 0:
            writer.write(frame)
        for start in range(0, len(frame), WRITE_BATCH):
            writer.write(frame.iloc[start:start + WRITE_BATCH])
    return Path(path)


# --------------------------------------------------------------------------------------
# Whole bases in bounded memory: scored chunks in, a ranked list out
# --------------------------------------------------------------------------------------

def in_order(tasks, *, workers: int = 2):
    """Run the functions of no arguments in ``tasks`` on ``workers`` threads; yield their results in order.

    Workers take the next task (advancing ``tasks`` under a lock) while at most ``workers``
    results wait ahead of the one being used, so memory holds about ``workers + 1`` of them.
    An exception raised by a task, or by ``tasks`` itself, is raised here unchanged when its
    turn comes; closing the generator early (an error or an interrupt here) stops the
    workers before their next task.
    """
    import threading

    source = iter(tasks)
    taking = threading.Lock()
    ready = threading.Condition()
    results: dict[int, tuple[bool, object]] = {}
    room = threading.Semaphore(workers + 1)
    stop = threading.Event()
    state = {"taken": 0, "end": None}

    def put(index: int, entry: tuple[bool, object]) -> None:
        with ready:
            results[index] = entry
            ready.notify_all()

    def work() -> None:
        while not stop.is_set():
            if not room.acquire(timeout=0.1):
                continue
            with taking:
                if state["end"] is not None or stop.is_set():
                    room.release()
                    return
                index = state["taken"]
                try:
                    task = next(source)
                except StopIteration:
                    state["end"] = index
                    put(index, (True, _DONE))
                    return
                except BaseException as err:  # noqa: BLE001  (raised again in the consumer)
                    state["end"] = index
                    put(index, (False, err))
                    return
                state["taken"] = index + 1
            try:
                entry = (True, task())
            except BaseException as err:  # noqa: BLE001
                entry = (False, err)
            del task
            put(index, entry)

    threads = [threading.Thread(target=work, name=f"churn-chunk-{n}", daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    try:
        index = 0
        while True:
            with ready:
                while index not in results:
                    ready.wait()
                ok, value = results.pop(index)
            if not ok:
                raise value
            if value is _DONE:
                return
            yield value
            del value
            room.release()
            index += 1
    finally:
        stop.set()


_DONE = object()


def read_ahead(items: Iterator) -> Iterator:
    """Yield ``items`` in order while a background thread produces the next ones (see ``in_order``)."""
    from pipeline.records import deferred

    return in_order(deferred(items), workers=1)


#: Rows buffered per sorted run while merging (the total across runs stays near this).
MERGE_BUFFER_ROWS = 500_000
#: Scored rows gathered (compactly) before they are sorted and written as one run (``--all``):
#: fewer, longer runs make the merge cheaper.
RUN_ROWS = 1_000_000
#: Rows explained per block (blocks are explained on ``scoring.workers`` threads at once).
EXPLAIN_BLOCK_ROWS = 25_000
REASON_COLUMNS = ("reason_1", "reason_2", "reason_3")
_SEQ = "_seq"


class _IdCheck:
    """Subscriber ids repeated across a base, found chunk by chunk from 64-bit hashes of the ids.

    Sorted hash arrays are kept in levels that merge when they reach the same size (like a
    binary counter): 8 bytes per subscriber.  A bitmap of hash prefixes (``2**BITS`` bits)
    lets each chunk search the levels only for the few hashes whose prefix was seen before.
    A repeat is reported with the ids of the chunk where it shows up.
    """

    BITS = 28  # 32 MiB; at 10M subscribers about 4% of new ids need a search

    def __init__(self):
        self.levels: list[np.ndarray] = []
        self.seen = np.zeros(2 ** self.BITS // 8, dtype=np.uint8)

    @staticmethod
    def hashes(ids: pd.Series) -> np.ndarray:
        """The 64-bit hashes of ``ids`` (any thread)."""
        return pd.util.hash_array(ids.to_numpy(dtype=object), categorize=False)

    def add(self, ids: pd.Series, hashed: np.ndarray | None = None) -> None:
        from pipeline.errors import first_rows

        hashed = self.hashes(ids) if hashed is None else hashed
        order = np.sort(hashed)
        repeated = order[1:][order[1:] == order[:-1]]
        prefix = order >> np.uint64(64 - self.BITS)
        byte, bit = prefix >> np.uint64(3), np.left_shift(1, (prefix & np.uint64(7)).astype(np.uint8))
        maybe = order[(self.seen[byte] & bit) != 0]
        for level in self.levels:
            where = np.searchsorted(level, maybe)
            inside = where < len(level)
            hit = maybe[inside][level[where[inside]] == maybe[inside]]
            repeated = np.concatenate([repeated, hit])
        if len(repeated):
            text = ids.to_numpy(dtype=object)
            shown = pd.unique(text[np.isin(hashed, repeated)])
            raise DataError("subscriber ids repeat across the input: "
                            + first_rows(shown).replace("rows ", "").replace("row ", ""))
        np.bitwise_or.at(self.seen, byte, bit)
        self.levels.append(order)
        while len(self.levels) > 1 and len(self.levels[-1]) >= len(self.levels[-2]):
            last = self.levels.pop()
            self.levels[-1] = np.sort(np.concatenate([self.levels[-1], last]), kind="stable")


def _as_arrow(frame: pd.DataFrame):
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)


def _compact(frame: pd.DataFrame, categories: dict[str, list[str]]) -> pd.DataFrame:
    """Repeated text as categories with fixed levels (so chunks concatenate without widening)."""
    return frame.astype({c: pd.CategoricalDtype(levels) for c, levels in categories.items() if c in frame.columns})


def _key_arrays(frame) -> tuple:
    """``rank_order``'s keys, each ascending: loss missing, minus loss, minus probability (numpy), id (Arrow text)."""
    import pyarrow as pa

    if isinstance(frame, pa.Table):
        loss = frame.column("expected_loss").to_numpy().astype("float64")  # blanks as NaN
        proba = frame.column("churn_probability").to_numpy().astype("float64")
        ids = frame.column("subscriber_id").combine_chunks()
    else:
        loss = frame["expected_loss"].to_numpy(dtype="float64", na_value=np.nan)
        proba = frame["churn_probability"].to_numpy(dtype="float64")
        ids = frame["subscriber_id"]
        ids = pa.array(ids.array if isinstance(ids.dtype, pd.StringDtype) else ids.astype("str").array)
    missing = np.isnan(loss)
    # + 0.0 turns -0.0 into 0.0, so that zeros compare equal in every sort
    return missing, np.where(missing, 0.0, -loss) + 0.0, -proba + 0.0, ids


def _sorts_before(keys, bound: tuple, *, inclusive: bool) -> np.ndarray:
    """Which rows (``_key_arrays``) sort before the row ``bound`` (a tuple of its keys), or equal to it."""
    import pyarrow.compute as pc

    missing, loss, proba, ids = keys
    bm, bl, bp, bi = bound
    last = (pc.less_equal if inclusive else pc.less)(ids, bi).to_numpy(zero_copy_only=False)
    return (missing < bm) | ((missing == bm) & ((loss < bl) | ((loss == bl) & (
        (proba < bp) | ((proba == bp) & last)))))


def _last_key(keys) -> tuple:
    missing, loss, proba, ids = keys
    return bool(missing[-1]), float(loss[-1]), float(proba[-1]), ids[len(ids) - 1].as_py()


def merge_runs(paths: list[Path], *, buffer_rows: int = MERGE_BUFFER_ROWS):
    """Merge Parquet runs, each sorted in ``rank_order``, into Arrow tables in ``rank_order`` overall.

    An external k-way merge: each run is read ``buffer_rows / runs`` rows at a time; every
    round emits the buffered rows that sort no later than the earliest last-buffered row of
    a run with more to read (nothing unread can come before them), sorted.  Memory stays
    near ``buffer_rows`` rows whatever the number of rows; the rows stay in Arrow throughout.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [pq.ParquetFile(path) for path in paths]
    step = max(1, buffer_rows // max(1, len(files)))
    batches = [file.iter_batches(batch_size=step) for file in files]
    unread = [file.metadata.num_rows for file in files]
    pending: list = [None] * len(files)
    keys: list = [None] * len(files)
    while True:
        for i in range(len(files)):
            if (pending[i] is None or not pending[i].num_rows) and unread[i] > 0:
                table = pa.Table.from_batches([next(batches[i])])
                unread[i] -= table.num_rows
                pending[i], keys[i] = table, _key_arrays(table)
        live = [i for i in range(len(files)) if pending[i] is not None and pending[i].num_rows]
        if not live:
            return
        waiting = [_last_key(keys[i]) for i in live if unread[i] > 0]
        bound = min(waiting) if waiting else None
        pieces = []
        for i in live:
            take = pending[i].num_rows if bound is None else int(np.count_nonzero(
                _sorts_before(keys[i], bound, inclusive=True)))
            if take:
                pieces.append(pending[i].slice(0, take))
                pending[i] = pending[i].slice(take)
                keys[i] = tuple(array[take:] for array in keys[i])
        merged = pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]
        yield merged.take(rank_order(merged))


@dataclass
class _Prepared:
    """One scored chunk, ready for ``ScoreStream.take`` (``_seq`` still counts from 0)."""

    ids: pd.Series
    hashes: np.ndarray
    probabilities: np.ndarray
    tiers: dict
    #: Rows whose estimated uplift is negative (a contact is expected to push them out).
    harmed: int
    #: ``pipeline.targeting.offer_sweep`` of the chunk.
    sweep: np.ndarray
    loss_at_risk: float
    pool: tuple | None  # (rows worth explaining, their inputs)
    kept: pd.DataFrame
    run: object  # every row as an Arrow table (``write_all``), else None


class ScoreStream:
    """Score a base chunk by chunk and write its list, in memory bounded by the chunks in flight.

    Per chunk (``prepare`` on any thread, then ``take`` in input order; ``add`` does both):
    the rows no rule can list or target (tier ``low`` with an expected net value of at most
    0: every ``select_*`` takes positive net values only) leave memory at once, after
    counting them for the run's metrics; the others are kept compactly.  With
    ``write_all`` every row also goes to a temporary Parquet run, sorted in list order, in a
    folder next to the output, and ``finish`` merges the runs into the output batch by batch.
    Reasons go to the first ``config.scoring.explain_rows`` rows of the list worth explaining
    (a bounded pool of candidates and their inputs is kept while scoring); the other rows worth
    a contact get an action from the rules that do not read reasons.  The output is the same,
    byte for byte, whatever the chunk size and the number of threads.
    """

    def __init__(self, scoring: ScoringModel, config: Config, *, output: str | Path, write_all: bool = False):
        from pipeline.errors import ConfigError
        from pipeline.targeting import (CAMPAIGN_ACTIONS, CONTROL_ACTION, DEFAULT_ACTION, DEFAULT_ACTIONS,
                                        OFFER_SWEEP_MONTHS, parse_rules)

        if config.scoring.explain_rows < 0:
            raise ConfigError("scoring.explain_rows must be 0 or more")
        self.scoring = scoring
        self.config = config
        self.output = Path(output)
        _check_output(self.output)
        self.write_all = write_all
        self.limit = int(config.scoring.explain_rows)
        rules = parse_rules(config.scoring.actions) if config.scoring.actions else DEFAULT_ACTIONS
        self.categories = {
            "risk_tier": list(TIERS),
            "action": sorted({rule.action for rule in rules} | {DEFAULT_ACTION, CONTROL_ACTION, *CAMPAIGN_ACTIONS}),
            "model_version": [str(scoring.version)],
            "response_model_version": ["" if scoring.response is None else str(scoring.response.version)],
        }
        self.rows = 0
        self.tiers = dict.fromkeys(TIERS, 0)
        #: Subscribers whom a contact is expected to push out (negative estimated uplift).
        self.do_not_contact = 0
        #: Subscribers worth a contact and their expected net value at each offer size
        #: (``pipeline.targeting.OFFER_SWEEP_MONTHS``), summed over the base.
        self.sweep = np.zeros((len(OFFER_SWEEP_MONTHS), 2))
        self.loss_at_risk = 0.0
        self.probabilities: list[np.ndarray] = []
        self.kept: list[pd.DataFrame] = []
        self.pool_pieces: list[tuple[pd.DataFrame, pd.DataFrame]] = []
        self.pool_rows = 0
        self.pool_last: tuple | None = None
        self.ids = _IdCheck()
        self.runs: list[Path] = []
        self.pending: list = []  # Arrow tables of scored rows, for the next run
        self.pending_rows = 0
        self.folder: Path | None = None

    # -- per chunk ---------------------------------------------------------------------

    def add(self, out: pd.DataFrame, X: pd.DataFrame) -> None:
        """Take one scored chunk (``score_dataset(..., explain=False)``) and its inputs (same rows)."""
        self.take(self.prepare(out, X))

    def add_rows(self, out: pd.DataFrame, rows: np.ndarray, X: pd.DataFrame) -> None:
        """Like ``add``, with the inputs given only for the rows worth explaining (positions ``rows``)."""
        self.take(self.prepare(out, X, rows=rows))

    def prepare(self, out: pd.DataFrame, X: pd.DataFrame, *, rows: np.ndarray | None = None) -> _Prepared:
        """The work on one scored chunk that needs no other chunk (safe on any thread; ``take`` it in order).

        ``X`` holds the inputs of every row of ``out``, or with ``rows`` only those of ``rows``.
        """
        from pipeline.targeting import _targeting_arrays, offer_sweep

        out = out.reset_index(drop=True)
        if rows is None:
            rows = np.flatnonzero(worth_explaining(out))
            X = X.iloc[rows]
        _targeting_arrays(out)  # missing or infinite money is an error even on rows not kept
        out[_SEQ] = np.arange(len(out), dtype="int64")  # position in the chunk until ``take``
        tier = out["risk_tier"].to_numpy()
        X = X.reset_index(drop=True)
        recommend_rows(out, rows, X, self.config)
        return _Prepared(
            ids=out["subscriber_id"],
            hashes=_IdCheck.hashes(out["subscriber_id"]),
            probabilities=out["churn_probability"].to_numpy(dtype="float64").copy(),
            tiers={name: int(np.count_nonzero(tier == name)) for name in TIERS},
            harmed=int(np.count_nonzero(out["do_not_contact"].to_numpy(dtype=bool))),
            sweep=offer_sweep(out["churn_probability"].to_numpy(), out["expected_save"].to_numpy(),
                              out["save_value"].to_numpy(dtype="float64", na_value=np.nan),
                              out["monthly_value"].to_numpy(dtype="float64", na_value=np.nan), self.config.campaign),
            loss_at_risk=float(np.nansum(out["expected_loss"].to_numpy(dtype="float64")[tier != "low"])),
            pool=(out.iloc[rows].reset_index(drop=True), X) if len(rows) and self.limit else None,
            kept=_compact(out.iloc[rows].drop(columns=list(REASON_COLUMNS)), self.categories),
            run=_as_arrow(_compact(out.drop(columns=list(REASON_COLUMNS)), self.categories)) if self.write_all else None,
        )

    def take(self, chunk: _Prepared) -> None:
        """Add a prepared chunk, the next of the base."""
        import pyarrow as pa

        self.ids.add(chunk.ids, chunk.hashes)
        start = self.rows
        for frame in (chunk.kept, None if chunk.pool is None else chunk.pool[0]):
            if frame is not None:
                frame[_SEQ] += start
        if chunk.run is not None:
            position = chunk.run.column_names.index(_SEQ)
            chunk.run = chunk.run.set_column(position, _SEQ, pa.array(chunk.run.column(position).to_numpy() + start))
        self.rows += len(chunk.ids)
        self.probabilities.append(chunk.probabilities)
        for name, count in chunk.tiers.items():
            self.tiers[name] += count
        self.do_not_contact += chunk.harmed
        self.sweep += chunk.sweep
        self.loss_at_risk += chunk.loss_at_risk
        if chunk.pool is not None:
            self._add_to_pool(*chunk.pool)
        self.kept.append(chunk.kept)
        if self.write_all:
            self._write_run(chunk.run)

    def _add_to_pool(self, out: pd.DataFrame, X: pd.DataFrame) -> None:
        """Keep the rows (and inputs) that may still be among the first ``limit`` rows worth explaining.

        Rows that sort after the ``limit``-th best row seen so far never enter; the pool is cut
        back to ``limit`` rows when it reaches twice that.
        """
        if self.pool_last is not None:
            better = np.flatnonzero(_sorts_before(_key_arrays(out), self.pool_last, inclusive=False))
            if not len(better):
                return
            out, X = out.take(better), X.take(better)
        self.pool_pieces.append((out, X))
        self.pool_rows += len(out)
        if self.pool_rows >= 2 * self.limit:
            self._prune_pool()

    def _prune_pool(self) -> None:
        if not self.pool_pieces:
            return
        out = pd.concat([o for o, _ in self.pool_pieces], ignore_index=True)
        X = pd.concat([x for _, x in self.pool_pieces], ignore_index=True)
        best = rank_order(out)[: self.limit]
        out, X = out.take(best).reset_index(drop=True), X.take(best).reset_index(drop=True)
        self.pool_pieces, self.pool_rows = [(out, X)], len(out)
        if len(out) >= self.limit:
            self.pool_last = _last_key(_key_arrays(out.iloc[-1:]))

    def _write_run(self, out: pd.DataFrame | None) -> None:
        """Gather a scored chunk; write the gathered rows as one sorted run once ``RUN_ROWS`` (or at the end)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if out is not None:  # an Arrow table from ``prepare``: compact, without reasons
            self.pending.append(out)
            self.pending_rows += out.num_rows
            if self.pending_rows < RUN_ROWS:
                return
        if not self.pending:
            return
        if self.folder is None:
            from pipeline.files import temp_folder

            self.folder = temp_folder(self.output)
        path = self.folder / f"run-{len(self.runs):05d}.parquet"
        rows = pa.concat_tables(self.pending) if len(self.pending) > 1 else self.pending[0]
        self.pending, self.pending_rows = [], 0
        pq.write_table(rows.take(rank_order(rows)), path, compression="lz4")
        self.runs.append(path)

    # -- at the end --------------------------------------------------------------------

    def offer_sweep(self) -> pd.DataFrame:
        """The base's offer-size sweep: offer size (months of value), subscribers worth a contact, their net value."""
        from pipeline.targeting import OFFER_SWEEP_MONTHS

        return pd.DataFrame({"offer_months": OFFER_SWEEP_MONTHS, "worth_contacting": self.sweep[:, 0].astype("int64"),
                             "expected_net_value": self.sweep[:, 1]})

    def explained(self) -> pd.DataFrame:
        """Reasons and actions of the first ``limit`` rows worth explaining, by ``_seq``."""
        self._prune_pool()
        if not self.pool_pieces:
            return pd.DataFrame({_SEQ: np.array([], dtype="int64"), **{c: [] for c in (*REASON_COLUMNS, "action")}})
        out, X = self.pool_pieces[0]
        self.pool_pieces, self.pool_rows = [], 0

        def explain_block(start: int) -> pd.DataFrame:
            block = out.iloc[start:start + EXPLAIN_BLOCK_ROWS].reset_index(drop=True)
            inputs = X.iloc[start:start + EXPLAIN_BLOCK_ROWS].reset_index(drop=True)
            explain_rows(self.scoring, block, np.arange(len(block)), inputs, self.config)
            return block[[_SEQ, *REASON_COLUMNS, "action"]]

        blocks = (partial(explain_block, start) for start in range(0, len(out), EXPLAIN_BLOCK_ROWS))
        found = list(in_order(blocks, workers=self.config.scoring.workers))
        return pd.concat(found, ignore_index=True).sort_values(_SEQ, ignore_index=True)

    def finish(self, *, budget: float | None = None, capacity: int | None = None, control_share: float = 0.0,
               seed: int = 0, campaign_id: str | None = None, calls: str | Path | None = None) -> dict:
        """Rank, target, explain and write the list; return what the run's summary needs.

        Each row's action is made consistent with its targeting as it is written
        (``pipeline.targeting.list_actions``), and the written rows are counted
        (``ListTally``, in the result as ``tally``), so what is printed is what the file
        holds.  With ``calls``, the targeted subscribers to contact (the offer group) are
        also written there in call order (``call_list``).

        With ``control_share``, that share of the targeted subscribers (chosen at random by
        ``seed``: ``pipeline.targeting.control_groups``) is held out as the campaign's control
        group: the list gains ``group`` (``offer`` / ``control`` for the targeted, blank for
        the others) and ``campaign_id``, control rows get the control action, and the
        summary's expected figures count the offer group only (the control is not contacted).
        Reasons are found on a second thread while the kept rows are ranked and targeted; with
        ``write_all`` the runs are merged on a second thread while the merged rows are written.
        """
        from pipeline.targeting import TARGETING_COLUMNS, select

        if not self.rows:
            raise DataError("no subscribers to score")
        explaining = ThreadPoolExecutor(1, thread_name_prefix="churn-explain")
        self.tally = ListTally(keep_calls=calls is not None)
        try:
            explained = explaining.submit(self.explained)
            if self.write_all:
                self._write_run(None)
            self.ids = None  # no more chunks: free the id hashes
            probabilities = np.concatenate(self.probabilities)
            self.probabilities = []
            quantiles = np.quantile(probabilities, [0.1, 0.5, 0.9, 0.99])
            stats = {"mean_probability": float(probabilities.mean()),
                     **{f"probability_p{q}": float(v) for q, v in zip((10, 50, 90, 99), quantiles)}}
            del probabilities
            kept = pd.concat(self.kept, ignore_index=True)
            self.kept = []
            if self.write_all:  # ranking and targeting need only these; the runs hold the rest
                kept = kept[[_SEQ, "subscriber_id", "churn_probability", "expected_loss", *TARGETING_COLUMNS]]
            ranked = kept.take(rank_order(kept)).reset_index(drop=True)
            del kept
            chosen, summary = select(ranked, budget=budget, capacity=capacity)
            ranked["targeted"] = chosen.to_numpy()
            groups = None
            if control_share > 0:
                groups, summary = _hold_out_control(ranked, chosen.to_numpy(), summary, control_share, seed)
            design = None if groups is None else (groups, campaign_id or "")
            if self.write_all:
                targeted = np.zeros(self.rows, dtype=bool)
                targeted[ranked[_SEQ].to_numpy()[chosen.to_numpy()]] = True
                if design is not None:
                    codes = np.zeros(self.rows, dtype="int8")
                    codes[ranked[_SEQ].to_numpy()] = groups
                    design = (codes, design[1])
                del ranked
                top, written = self._write_merged(targeted, explained, design)
            else:
                if design is not None:
                    ranked["_group"] = groups
                listed = at_risk(ranked)
                del ranked
                top, written = self._write_listed(listed, explained, design)
        finally:
            explaining.shutdown(wait=False, cancel_futures=True)
        if calls is not None:
            write_output(call_list(self.tally.calls()), calls)
        return {"summary": summary, "top": _plain(top.drop(columns=[_SEQ], errors="ignore")),
                "rows_written": written, "probability_stats": stats, "tally": self.tally}

    def _write(self, batches) -> tuple[pd.DataFrame, int]:
        """Write the list's batches (frames or Arrow tables); return its first 10 rows and its length."""
        top = None
        with ListWriter(self.output, mode=self.config.scoring.file_mode) as writer:
            for batch in batches:
                if top is None:
                    top = batch.head(10).copy() if isinstance(batch, pd.DataFrame) else batch.slice(0, 10).to_pandas()
                self.tally.add(batch)
                writer.write(batch)
        return top, writer.rows

    def _write_listed(self, listed: pd.DataFrame, explained, design=None) -> tuple[pd.DataFrame, int]:
        """Write the ranked list with reasons, a batch at a time (``explained``: a future of ``explained()``)."""
        def batch(start: int):
            rows = _with_explanations(listed.iloc[start:start + WRITE_BATCH].copy(), explained.result())
            if design is not None:
                rows = _with_groups(rows, rows.pop("_group").to_numpy(), design[1])
            return _in_list_order(consistent_actions(rows.drop(columns=[_SEQ])))

        return self._write(batch(start) for start in (range(0, len(listed), WRITE_BATCH) if len(listed) else [0]))

    def _write_merged(self, targeted: np.ndarray, explained, design=None) -> tuple[pd.DataFrame, int]:
        """Write the merged runs with rank, targeting and reasons (``explained``: a future of ``explained()``)."""

        def batches():
            import pyarrow as pa

            done = 0
            for batch in merge_runs(self.runs):
                seq = batch.column(_SEQ).to_numpy()
                rows = batch.num_rows
                batch = batch.add_column(0, "rank", pa.array(np.arange(done + 1, done + rows + 1, dtype="int64")))
                batch = batch.append_column("targeted", pa.array(targeted[seq]))
                batch = _with_explanations(batch, explained.result())
                if design is not None:
                    batch = _with_groups(batch, design[0][seq], design[1])
                done += rows
                yield _in_list_order(consistent_actions(batch.drop_columns([_SEQ])))

        return self._write(read_ahead(batches()))

    def cleanup(self) -> None:
        """Remove the temporary runs (call in all cases, also after an error)."""
        import shutil

        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        self.runs = []


#: Codes of the ``group`` column while scoring: not targeted, offer, control.
_GROUPS = ("", "offer", "control")


def _hold_out_control(ranked: pd.DataFrame, chosen: np.ndarray, summary, share: float, seed: int):
    """Group codes (``_GROUPS``) of ``ranked``'s rows and the summary of the offer group alone."""
    import dataclasses

    from pipeline.targeting import control_groups

    codes = np.zeros(len(ranked), dtype="int8")
    where = np.flatnonzero(chosen)
    groups = control_groups(ranked["subscriber_id"].to_numpy()[where], seed, share)
    codes[where] = np.where(groups == "control", 2, 1)
    offer = codes == 1
    summary = dataclasses.replace(
        summary, control=int(np.count_nonzero(codes == 2)),
        expected_saves=float(ranked["expected_save"].to_numpy()[offer].sum()),
        expected_cost=float(ranked["expected_cost"].to_numpy()[offer].sum()),
        expected_net_value=float(ranked["expected_net_value"].to_numpy()[offer].sum()),
    )
    return codes, summary


def _with_groups(frame, codes: np.ndarray, campaign_id: str):
    """``frame`` (a frame or an Arrow table) with ``group`` and ``campaign_id``; control rows get the control action."""
    import pyarrow as pa

    from pipeline.targeting import CONTROL_ACTION

    group = np.asarray(_GROUPS, dtype=object)[codes]
    campaign = np.where(codes > 0, campaign_id, "").astype(object)
    control = codes == 2
    if isinstance(frame, pa.Table):
        action = frame.column("action").cast(pa.string()).to_numpy(zero_copy_only=False).astype(object)
        action[control] = CONTROL_ACTION
        frame = frame.set_column(frame.column_names.index("action"), "action", pa.array(action, type=pa.string()))
        frame = frame.append_column("group", pa.array(group, type=pa.string()))
        return frame.append_column("campaign_id", pa.array(campaign, type=pa.string()))
    if control.any():
        action = frame["action"].astype("str").to_numpy(dtype=object)
        action[control] = CONTROL_ACTION
        frame["action"] = pd.array(action, dtype="str")
    frame["group"] = pd.array(group, dtype="str")
    frame["campaign_id"] = pd.array(campaign, dtype="str")
    return frame


def _with_explanations(frame, explained: pd.DataFrame):
    """``frame`` (a frame or an Arrow table) with blank reasons, then the reasons and actions of the
    explained rows (by ``_seq``)."""
    import pyarrow as pa

    arrow = isinstance(frame, pa.Table)
    seq = frame.column(_SEQ).to_numpy() if arrow else frame[_SEQ].to_numpy()
    rows = len(seq)
    known = explained[_SEQ].to_numpy()
    if len(known):
        where = np.minimum(np.searchsorted(known, seq), len(known) - 1)
        hit = np.flatnonzero(known[where] == seq)
        source = where[hit]
    else:
        hit = source = np.array([], dtype="int64")
    if not len(hit):  # blank reasons, as one category
        codes = np.zeros(rows, dtype="int8")
        blank = (pa.DictionaryArray.from_arrays(codes, pa.array([""])) if arrow
                 else pd.Categorical.from_codes(codes, categories=[""]))
        columns = dict.fromkeys(REASON_COLUMNS, blank)
    else:
        columns = {}
        for column in REASON_COLUMNS:
            values = np.full(rows, "", dtype=object)
            values[hit] = explained[column].to_numpy(dtype=object)[source]
            columns[column] = values
        action = (frame.column("action").cast(pa.string()).to_numpy(zero_copy_only=False) if arrow
                  else frame["action"].astype("str").to_numpy(dtype=object)).astype(object)
        action[hit] = explained["action"].to_numpy(dtype=object)[source]
        columns["action"] = action
    for column, values in columns.items():
        if not arrow:
            frame[column] = values if isinstance(values, pd.Categorical) else pd.array(values, dtype="str")
            continue
        values = values if isinstance(values, pa.Array) else pa.array(values, type=pa.string())
        if column in frame.column_names:
            frame = frame.set_column(frame.column_names.index(column), column, values)
        else:
            frame = frame.append_column(column, values)
    return frame


# --------------------------------------------------------------------------------------
# One list that says one thing: consistent actions, the counts of what was written, calls
# --------------------------------------------------------------------------------------

def _column(frame, name: str, dtype=None) -> np.ndarray:
    """One column of a frame or an Arrow table as numpy (text as objects, blanks as ``""``)."""
    import pyarrow as pa

    if isinstance(frame, pa.Table):
        column = frame.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(pa.string())
        values = column.to_numpy(zero_copy_only=False)
    else:
        values = frame[name].to_numpy(dtype=object if dtype is object else None)
    if dtype is object:
        values = np.asarray(values, dtype=object)
        values[pd.isna(values)] = ""
        return values.astype(str).astype(object)
    return np.asarray(values, dtype=dtype) if dtype is not None else values


def consistent_actions(frame):
    """``frame`` (a list's rows, as a frame or an Arrow table) with ``action`` made consistent
    with ``targeted``, ``do_not_contact``, ``group`` and ``risk_tier`` (``targeting.list_actions``)."""
    import pyarrow as pa

    from pipeline.targeting import list_actions

    arrow = isinstance(frame, pa.Table)
    names = frame.column_names if arrow else list(frame.columns)
    if "targeted" not in names:
        return frame
    action = list_actions(
        _column(frame, "action", object), targeted=_column(frame, "targeted", bool),
        do_not_contact=_column(frame, "do_not_contact", bool), risk_tier=_column(frame, "risk_tier", object),
        expected_net_value=_column(frame, "expected_net_value", "float64"),
        group=_column(frame, "group", object) if "group" in names else None,
    )
    if arrow:
        return frame.set_column(names.index("action"), "action", pa.array(action, type=pa.string()))
    return frame.assign(action=pd.array(action, dtype="str"))


#: Columns the call list holds, in order: the call order, then the list's own columns.
CALL_ORDER = "call_order"


def call_list(rows: pd.DataFrame) -> pd.DataFrame:
    """The subscribers to contact (targeted, not in the control group), in call order.

    Call order: the largest ``expected_net_value`` first (then the list's ``rank``), so a
    team that stops early has made the calls worth most; for a capacity this is the exact
    best selection at every length.  ``call_order`` counts from 1.
    """
    if len(rows):
        keep = rows["targeted"].astype(bool).to_numpy(copy=True)
        if "group" in rows.columns:
            keep &= rows["group"].astype("str").to_numpy(dtype=object) != "control"
        rows = rows[keep]
    order = np.lexsort((rows["rank"].to_numpy(dtype="int64"),
                        -rows["expected_net_value"].to_numpy(dtype="float64", na_value=-np.inf)))
    ordered = rows.take(order).reset_index(drop=True)
    ordered.insert(0, CALL_ORDER, np.arange(1, len(ordered) + 1, dtype="int64"))
    return ordered


class ListTally:
    """Counts of the rows a list holds, as they are written (so what is printed is what the file says).

    ``rows``, ``tiers`` (tier -> rows), ``targeted``, ``targeted_by_tier``, ``control``,
    ``do_not_contact``, ``actions`` (action -> rows); with ``keep_calls``, the targeted rows
    of the offer group are kept for the call list (``calls``).
    """

    def __init__(self, *, keep_calls: bool = False):
        self.rows = 0
        self.tiers = dict.fromkeys(TIERS, 0)
        self.targeted = 0
        self.targeted_by_tier = dict.fromkeys(TIERS, 0)
        self.control = 0
        self.do_not_contact = 0
        self.actions: dict[str, int] = {}
        self.keep_calls = keep_calls
        self.columns: list[str] = []
        self._calls: list[pd.DataFrame] = []

    def add(self, batch) -> None:
        """Count one written batch (a frame or an Arrow table with the list's columns)."""
        import pyarrow as pa

        n = batch.num_rows if isinstance(batch, pa.Table) else len(batch)
        if not n:
            return
        names = batch.column_names if isinstance(batch, pa.Table) else list(batch.columns)
        self.columns = self.columns or list(names)
        self.rows += n
        tier = _column(batch, "risk_tier", object)
        targeted = _column(batch, "targeted", bool)
        for name in TIERS:
            at = tier == name
            self.tiers[name] += int(np.count_nonzero(at))
            self.targeted_by_tier[name] += int(np.count_nonzero(at & targeted))
        self.targeted += int(np.count_nonzero(targeted))
        self.do_not_contact += int(np.count_nonzero(_column(batch, "do_not_contact", bool)))
        if "group" in names:
            self.control += int(np.count_nonzero(_column(batch, "group", object) == "control"))
        actions, counts = np.unique(_column(batch, "action", object).astype(str), return_counts=True)
        for action, count in zip(actions, counts):
            self.actions[str(action)] = self.actions.get(str(action), 0) + int(count)
        if self.keep_calls and targeted.any():
            where = np.flatnonzero(targeted)
            rows = batch.take(pa.array(where)).to_pandas() if isinstance(batch, pa.Table) else batch.iloc[where]
            self._calls.append(_plain(rows.reset_index(drop=True)))

    @property
    def at_risk(self) -> int:
        """Rows of tier ``medium`` or ``high``."""
        return self.tiers["medium"] + self.tiers["high"]

    @property
    def targeted_low_risk(self) -> int:
        """Targeted rows of tier ``low`` (in the list for their value, not their risk)."""
        return self.targeted_by_tier["low"]

    def calls(self) -> pd.DataFrame:
        """The targeted rows kept (``keep_calls``), in list order."""
        if not self._calls:
            return pd.DataFrame(columns=self.columns or list(OUTPUT_COLUMNS)).astype(
                {"rank": "int64", "targeted": "bool", "expected_net_value": "float64"})
        return pd.concat(self._calls, ignore_index=True)

    def as_dict(self) -> dict:
        """The counts as plain data (for the scoring summary)."""
        return {"rows": self.rows, "tiers": dict(self.tiers), "at_risk": self.at_risk, "targeted": self.targeted,
                "targeted_by_tier": dict(self.targeted_by_tier), "targeted_low_risk": self.targeted_low_risk,
                "control": self.control, "do_not_contact": self.do_not_contact,
                "actions": dict(sorted(self.actions.items(), key=lambda item: (-item[1], item[0])))}


def release_memory(pa) -> None:
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
