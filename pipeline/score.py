"""Batch scoring and at-risk lists.

``score_dataset`` applies a fitted model to a modelling table and returns one row per
subscriber: probability, lifetime value, expected loss, risk tier.  ``rank_scores`` orders
rows by expected loss (probability when no value is known), ``at_risk`` keeps the
subscribers at risk, and ``write_output`` writes CSV or Parquet atomically (a temporary
name, renamed when complete), with spreadsheet formulas neutralised in CSV text.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
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
    "expected_net_value",
    "expected_save",
    "expected_cost",
    "monthly_value",
    "clv",
    "etf_waived",
    "model_version",
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

    try:
        with threadpool_limits(limits=n_threads):
            return model.predict_proba(frame[input_columns])[:, 1]
    except (ValueError, TypeError) as err:
        raise ModelError(f"the model cannot score these rows: {str(err).splitlines()[0]}") from err


def risk_tiers(proba: np.ndarray, base_rate: float, config: Config) -> np.ndarray:
    """``high`` / ``medium`` / ``low`` from the probability as a multiple of the training churn rate."""
    medium = min(config.scoring.medium_risk_multiple * base_rate, 0.999)
    high = min(config.scoring.high_risk_multiple * base_rate, 0.999)
    return np.select([proba >= high, proba >= medium], ["high", "medium"], "low")


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
            text = column.astype("string").str.strip()
            text = text[text.notna() & (text != "")]
            parsed = pd.to_numeric(text, errors="coerce")
            kinds[str(name)] = "number" if len(text) == 0 or parsed.notna().mean() >= 0.95 else "text"
    return kinds


def score_rows(scoring: ScoringModel, ids, proba: np.ndarray, config: Config, *, monthly_value=None,
               etf_waived=None) -> pd.DataFrame:
    """The list columns from probabilities: tier, value, expected loss and campaign economics.

    Reasons and actions start blank (``explain_rows`` fills them); one row per id, in order.
    """
    from pipeline.targeting import DEFAULT_ACTION, campaign_values, clv

    proba = np.asarray(proba, dtype="float64")
    out = pd.DataFrame({"subscriber_id": pd.Series(ids).astype(str).to_numpy(), "churn_probability": proba})
    out["risk_tier"] = risk_tiers(proba, scoring.base_rate, config)
    if monthly_value is not None:
        value = np.asarray(monthly_value, dtype="float64")
        out["monthly_value"] = value
        out["clv"] = clv(value, config.campaign)
        out["etf_waived"] = 0.0 if etf_waived is None else np.nan_to_num(np.asarray(etf_waived, dtype="float64"))
        out["expected_loss"] = proba * (out["clv"] + out["etf_waived"])
        economics = campaign_values(proba, out["clv"] + out["etf_waived"], config.campaign, monthly_value=value)
    else:
        for column in ("monthly_value", "clv", "etf_waived", "expected_loss"):
            out[column] = np.nan
        economics = campaign_values(proba, config.campaign.default_clv, config.campaign)
    for column in ("expected_save", "expected_cost", "expected_net_value"):
        out[column] = economics[column].to_numpy()
    for k in (1, 2, 3):
        out[f"reason_{k}"] = ""
    out["action"] = DEFAULT_ACTION
    out["model_version"] = str(scoring.version)
    return out


def worth_explaining(out: pd.DataFrame) -> np.ndarray:
    """Rows a retention team will see: at risk, or with a positive expected net value."""
    return (out["risk_tier"] != "low").to_numpy() | (out["expected_net_value"] > 0).to_numpy()


def explain_rows(scoring: ScoringModel, out: pd.DataFrame, rows: np.ndarray, X: pd.DataFrame,
                 config: Config) -> None:
    """Fill ``reason_1..3`` and ``action`` of ``out`` at positions ``rows``; ``X`` holds those rows' inputs."""
    from pipeline.explain import reasons
    from pipeline.targeting import parse_rules, recommend_actions

    if len(rows) == 0:
        return
    found = reasons(scoring.model, X[scoring.input_columns], k=3, n_threads=config.train.n_threads)
    context = pd.concat(
        [out.iloc[rows].reset_index(drop=True), found.reset_index(drop=True),
         X.drop(columns=[c for c in out.columns if c in X.columns]).reset_index(drop=True)],
        axis=1,
    )
    rules = parse_rules(config.scoring.actions) if config.scoring.actions else None
    actions = recommend_actions(context, rules, strict=True) if rules else recommend_actions(context)
    for k in (1, 2, 3):
        out.loc[rows, f"reason_{k}"] = found[f"reason_{k}"].fillna("").to_numpy()
    out.loc[rows, "action"] = actions.to_numpy()


def score_dataset(scoring: ScoringModel, dataset, config: Config, *, explain: bool = True) -> pd.DataFrame:
    """Score every row of one chunk: probability, tier, value, expected loss, targeting, reasons.

    One output row per input row, in input order.  Reasons and actions are given to the
    rows worth a retention team's time (at risk, or with a positive expected net value);
    the others keep blanks, since explaining costs two to three predictions.
    """
    check_columns(dataset.frame, scoring.input_columns, source=dataset.source)
    proba = predict(scoring.model, dataset.frame, scoring.input_columns, n_threads=config.train.n_threads)
    waived = dataset.extra.get("etf_waivable")
    out = score_rows(scoring, dataset.ids, proba, config, monthly_value=dataset.monthly_value,
                     etf_waived=None if waived is None else waived.to_numpy())
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


def rank_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Order by expected loss (or probability when no value is known), ties by id; add ``rank`` from 1."""
    key = "expected_loss" if scores["expected_loss"].notna().any() else "churn_probability"
    ordered = scores.sort_values([key, "churn_probability", "subscriber_id"], ascending=[False, False, True],
                                 kind="stable").reset_index(drop=True)
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
    ordered = [c for c in OUTPUT_COLUMNS if c in written.columns]
    return written[ordered + [c for c in written.columns if c not in ordered]], summary


#: Decimals kept in CSV lists: probabilities to 6, money to 2 (CRM tools read plain numbers).
_CSV_DECIMALS = {"churn_probability": 6, "expected_save": 6, "expected_loss": 2, "expected_net_value": 2,
                 "expected_cost": 2, "monthly_value": 2, "clv": 2, "etf_waived": 2}


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    decimals = {c: d for c, d in _CSV_DECIMALS.items() if c in frame.columns}
    return frame.round(decimals) if decimals else frame


def write_output(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write CSV (UTF-8, formulas neutralised) or Parquet atomically: nothing partial is ever left."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise DataError(f"{path}: unsupported output type {suffix!r} (expected .csv or .parquet)")
    if not path.parent.exists():
        raise DataError(f"{path}: folder {path.parent} does not exist")
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        if suffix == ".csv":
            neutralise_formulas(_rounded(frame)).to_csv(temp, index=False, encoding="utf-8")
        else:
            frame.to_parquet(temp, index=False)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path
