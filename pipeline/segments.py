"""Segments of a base, one definition: contract type, tenure band, exposure level.

Training's per-segment hold-out metrics (``evaluation/segments.csv``), the scoring summary's
``segments`` and the report all cut a base with these functions, so a subscriber falls in the
same segment everywhere.

Boundaries (``docs/outputs.md``): every band includes its lower bound and excludes its upper
one, so a subscriber of exactly 12 months is ``1-2y`` (a whole year), and one of exactly 6
months is ``6-12m``; an exposure severity of exactly 3 (phone number and USIM key, the SK
Telecom breach) is ``high``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import DataError, first_rows

#: Tenure bands: (label, lower bound in months, inclusive; upper bound, exclusive).
TENURE_BANDS = (("0-6m", 0, 6), ("6-12m", 6, 12), ("1-2y", 12, 24), ("2-5y", 24, 60), ("5y+", 60, math.inf))

#: Exposure levels, from least to most affected.
EXPOSURE_LEVELS = ("not_exposed", "low", "high", "directly_harmed")

#: An exposure severity (``exposure_severity``, 0 to 9) from this score up is ``high``.
HIGH_SEVERITY = 3

#: The label of a segment whose column is blank or not a valid number, in ``segment_columns``.
UNKNOWN = "unknown"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def tenure_band(tenure_months: Any) -> pd.Series:
    """Tenure in months as ordered bands ``0-6m``, ``6-12m``, ``1-2y``, ``2-5y``, ``5y+``.

    Lower bounds are inclusive (12 months is ``1-2y``); blanks stay blank; a negative or
    non-numeric tenure is a DataError.

    Examples
    --------
    >>> tenure_band([0, 5.9, 6, 12, 59, 60]).tolist()
    ['0-6m', '0-6m', '6-12m', '1-2y', '2-5y', '5y+']
    """
    months = pd.Series(tenure_months) if not isinstance(tenure_months, pd.Series) else tenure_months
    numeric = pd.to_numeric(months, errors="coerce")
    bad = np.flatnonzero((numeric.isna() & months.notna()).to_numpy() | (numeric < 0).to_numpy())
    if bad.size:
        raise DataError(
            f"tenure_band: tenure in months must be a non-negative number; got {_plain(months.iloc[bad[0]])!r} "
            f"in {first_rows(months.index[bad])}"
        )
    labels = [label for label, _, _ in TENURE_BANDS]
    edges = [low for _, low, _ in TENURE_BANDS] + [math.inf]
    bands = pd.cut(numeric, bins=edges, right=False, labels=labels, ordered=True)
    return bands.rename("tenure_band")


def exposure_level(severity: pd.Series, fraud_loss: pd.Series | None = None) -> pd.Series:
    """How hard the breach hit each subscriber: ``not_exposed``, ``low``, ``high`` or ``directly_harmed``.

    Parameters
    ----------
    severity
        The numeric ``exposure_severity`` score (0 to 9): ``not_exposed`` at 0 or below (and
        when blank), ``low`` above 0 and below ``HIGH_SEVERITY`` (3), ``high`` from 3 up.
    fraud_loss
        Optional fraud loss per subscriber (same index); a loss above 0 makes the subscriber
        ``directly_harmed`` whatever their exposure.
    """
    if severity.dtype == bool:
        raise DataError("exposure_level: exposure must be a numeric severity score (0-9), not a yes/no flag")
    scores = pd.to_numeric(severity, errors="coerce")
    bad = np.flatnonzero((scores.isna() & severity.notna()).to_numpy())
    if bad.size:
        raise DataError(
            "exposure_level: exposure must be a numeric severity score (0-9); "
            f"got {_plain(severity.iloc[bad[0]])!r} in {first_rows(severity.index[bad])}"
        )
    values = scores.fillna(0).to_numpy(dtype="float64")
    level = np.select([values <= 0, values < HIGH_SEVERITY], ["not_exposed", "low"], "high").astype(object)
    if fraud_loss is not None:
        if len(fraud_loss) != len(severity):
            raise DataError(f"exposure_level: fraud_loss has {len(fraud_loss)} rows but exposure has {len(severity)}")
        harmed = pd.to_numeric(fraud_loss, errors="coerce").fillna(0).to_numpy() > 0
        level[harmed] = "directly_harmed"
    return pd.Series(
        pd.Categorical(level, categories=EXPOSURE_LEVELS, ordered=True), index=severity.index, name="exposure_level"
    )


def segment_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Segment columns of a feature frame for per-segment figures: contract type, tenure band, exposure level.

    Columns are found by name, whatever their case (``contract_type`` or ``contract``,
    ``tenure_months`` or ``tenure``, ``exposure_severity`` and ``fraud_loss_amount``); those
    absent give no segment.  Never fails on bad values: a blank, negative or non-numeric
    tenure and a blank contract are ``unknown``, a non-numeric severity or fraud loss counts
    as 0 (not exposed, not harmed).
    """
    from pipeline.prepare import to_numbers

    out = {}
    lowered = {str(c).lower(): c for c in frame.columns}
    for name in ("contract_type", "contract"):
        if name in lowered:
            out["contract_type"] = frame[lowered[name]].astype("string").fillna(UNKNOWN)
            break
    for name in ("tenure_months", "tenure"):
        if name in lowered:
            months = to_numbers(frame[lowered[name]])
            out["tenure_band"] = tenure_band(months.where(months >= 0)).astype("string").fillna(UNKNOWN)
            break
    if "exposure_severity" in lowered:
        severity = to_numbers(frame[lowered["exposure_severity"]])
        fraud = to_numbers(frame[lowered["fraud_loss_amount"]]) if "fraud_loss_amount" in lowered else None
        out["exposure_level"] = exposure_level(severity, fraud).astype("string")
    return pd.DataFrame(out, index=frame.index)


__all__ = [
    "EXPOSURE_LEVELS",
    "HIGH_SEVERITY",
    "TENURE_BANDS",
    "UNKNOWN",
    "exposure_level",
    "segment_columns",
    "tenure_band",
]
