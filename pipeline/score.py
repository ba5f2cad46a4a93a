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
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.errors import DataError, ModelError

TIERS = ("low", "medium", "high")

OUTPUT_COLUMNS = (
    "rank",
    "subscriber_id",
    "churn_probability",
    "risk_tier",
    "monthly_value",
    "clv",
    "etf_waived",
    "expected_loss",
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


def score_dataset(model, dataset, *, base_rate: float, input_columns: list[str], model_version: str,
                  config: Config) -> pd.DataFrame:
    """Score every row of ``dataset``: one output row per input row, in input order."""
    from pipeline.targeting import clv

    check_columns(dataset.frame, input_columns, source=dataset.source)
    proba = predict(model, dataset.frame, input_columns, n_threads=config.train.n_threads)
    out = pd.DataFrame({"subscriber_id": dataset.ids.astype(str).to_numpy(), "churn_probability": proba})
    out["risk_tier"] = risk_tiers(proba, base_rate, config)
    if dataset.monthly_value is not None:
        value = dataset.monthly_value.to_numpy(dtype="float64")
        out["monthly_value"] = value
        out["clv"] = clv(value, config.campaign)
        waived = dataset.extra.get("etf_waivable")
        out["etf_waived"] = 0.0 if waived is None else waived.to_numpy(dtype="float64")
        out["expected_loss"] = proba * (out["clv"] + out["etf_waived"])
    else:
        for column in ("monthly_value", "clv", "etf_waived", "expected_loss"):
            out[column] = np.nan
    out["model_version"] = str(model_version)
    return out


def rank_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Order by expected loss (or probability when no value is known), ties by id; add ``rank`` from 1."""
    key = "expected_loss" if scores["expected_loss"].notna().any() else "churn_probability"
    ordered = scores.sort_values([key, "churn_probability", "subscriber_id"], ascending=[False, False, True],
                                 kind="stable").reset_index(drop=True)
    ordered.insert(0, "rank", np.arange(1, len(ordered) + 1))
    return ordered


def at_risk(ranked: pd.DataFrame) -> pd.DataFrame:
    """The subscribers at risk (tier medium or high), keeping the ranking; ranks renumbered from 1."""
    kept = ranked[ranked["risk_tier"].isin(("medium", "high"))].reset_index(drop=True)
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
            neutralise_formulas(frame).to_csv(temp, index=False, encoding="utf-8", float_format="%.6g")
        else:
            frame.to_parquet(temp, index=False)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path
