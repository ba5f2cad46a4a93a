"""Modelling tables: one row per subscriber, from a single churn table or from records.

A ``Dataset`` holds the raw feature columns the model takes (``frame``), the 0/1 label
when known, the subscriber ids, and the monthly value per subscriber when known.  Two
sources give one: any churn table (CSV or Parquet; ``table_dataset``) and subscriber
records cut at a snapshot date (``records_dataset``, through ``pipeline.features``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import DataError, first_rows

_POSITIVE = {"1", "1.0", "true", "yes", "y", "t", "churn", "churned"}
_NEGATIVE = {"0", "0.0", "false", "no", "n", "f", "stay", "stayed"}


@dataclass
class Dataset:
    """A modelling table.

    Attributes
    ----------
    frame : DataFrame
        The model's raw input columns (including the id column, which the model drops).
    ids : Series
        Subscriber ids, as strings, aligned with ``frame``.
    label : Series or None
        1 for churners, 0 otherwise.
    monthly_value : Series or None
        Monthly monetary value per subscriber (revenue), when known.
    mode : str
        ``"table"`` or ``"records"``.
    id_column, label_column, value_column : str or None
        Column names in the source.
    source : str
        Where the rows came from (a path or URL with credentials removed).
    extra : dict
        Columns used to compute outputs but not by the model (e.g. the ETF a waiver would
        waive), as Series aligned with ``frame``.
    """

    frame: pd.DataFrame
    ids: pd.Series
    label: pd.Series | None
    monthly_value: pd.Series | None
    mode: str
    id_column: str
    label_column: str | None
    value_column: str | None
    source: str
    extra: dict = field(default_factory=dict)
    #: Columns of the source never given to the model, and why (personal data).
    dropped: dict = field(default_factory=dict)
    #: Each row's snapshot date when the rows come from several snapshots (then a subscriber
    #: has one row per date, and training's folds go by time); ``None`` for one snapshot.
    period: pd.Series | None = None

    @property
    def n_rows(self) -> int:
        return len(self.frame)

    def content_hash(self) -> str:
        """SHA-256 of the rows' contents (features and label), for lineage; order-sensitive."""
        digest = hashlib.sha256()
        hashed = pd.util.hash_pandas_object(self.frame, index=False).to_numpy()
        digest.update(hashed.tobytes())
        if self.label is not None:
            digest.update(np.asarray(self.label, dtype="int8").tobytes())
        if self.period is not None:
            digest.update(np.asarray(self.period, dtype="datetime64[ns]").tobytes())
        return digest.hexdigest()


def read_table(path: str | Path, *, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file, or fail with one line naming the file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path, columns=columns)
        if suffix in (".csv", ".txt", ".gz"):
            return pd.read_csv(path, usecols=columns, low_memory=False)
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise DataError(f"{path}: cannot read ({str(err).splitlines()[0]})") from err
    raise DataError(f"{path}: unsupported file type {suffix!r} (expected .csv or .parquet)")


def parse_label(values: pd.Series, *, positive: str | None, where: str) -> pd.Series:
    """Turn a label column into 0/1.

    With ``positive`` the rows equal to it (case-insensitive, blanks trimmed) are 1 and
    every other non-blank value 0; without it, 1/true/yes and 0/false/no are understood.
    """
    text = values.astype("string").str.strip()
    blank = text.isna() | (text == "")
    if blank.any():
        raise DataError(f"{where}: {first_rows(np.flatnonzero(blank.to_numpy()))} have no label")
    lowered = text.str.lower()
    if positive is not None:
        label = lowered == str(positive).strip().lower()
        if not label.any():
            raise DataError(f"{where}: no row has the positive label {positive!r} "
                            f"({_shown_values(values, text, limit=10, label='values seen')})")
        return label.astype("int8").rename("churned")
    known = lowered.isin(_POSITIVE | _NEGATIVE)
    if not known.all():
        bad = np.flatnonzero(~known.to_numpy())
        if _may_show(values, text):
            seen = ", ".join(sorted(map(str, text[~known].unique()))[:5])
            have = f"have {seen}, which is not"
        else:
            have = f"have values ({_shown_values(values, text[~known], limit=5)}) that are not"
        raise DataError(
            f"{where}: {first_rows(bad)} {have} 1/0, true/false or yes/no "
            "(name the churn value with --positive)"
        )
    label = lowered.isin(_POSITIVE).astype("int8").rename("churned")
    if label.nunique() < 2:
        raise DataError(f"{where}: every row has the same label; a model needs churners and stayers")
    return label


#: A label column with more distinct values than this is no label; its values are not shown.
_MAX_SHOWN_LEVELS = 20


def _may_show(values: pd.Series, text: pd.Series) -> bool:
    """Whether a message may quote this column's values: few distinct values, nothing personal-looking."""
    from pipeline.prepare import looks_personal

    return text.nunique() <= _MAX_SHOWN_LEVELS and looks_personal(values.name, values) is None


def _shown_values(values: pd.Series, text: pd.Series, *, limit: int, label: str = "") -> str:
    """The first distinct values for a message, or only their count when they may not be shown."""
    distinct = text.dropna().unique()
    if _may_show(values, text):
        shown = ", ".join(sorted(map(str, distinct))[:limit])
        return f"{label}: {shown}" if label else shown
    return (f"{len(distinct):,} distinct value(s), not shown: the column looks like personal data or an "
            "identifier")


def parse_value(values: pd.Series, *, where: str) -> pd.Series:
    """Monthly value as non-negative floats; numbers stored as text are accepted."""
    numbers = pd.to_numeric(values.astype("string").str.strip(), errors="coerce").astype("float64")
    bad = numbers.isna() | (numbers < 0)
    if bad.any():
        raise DataError(
            f"{where}: {first_rows(np.flatnonzero(bad.to_numpy()))} are not a non-negative number "
            "(the monthly value must be known for every subscriber)"
        )
    return numbers.rename("monthly_value")


def table_dataset(
    frame: pd.DataFrame,
    *,
    id_column: str | None,
    target: str | None,
    positive: str | None = None,
    value_column: str | None = None,
    source: str = "<table>",
    require_label: bool = True,
    time_column: str | None = None,
) -> Dataset:
    """A modelling table from one churn table: every other column is a candidate feature.

    Without an id column the row number (from 1) serves as the subscriber id.  With a
    ``time_column`` the table may hold several snapshots (one row per subscriber per date):
    the column's dates become ``Dataset.period`` and are not a feature.
    """
    missing = [c for c in (id_column, value_column, time_column) if c is not None and c not in frame.columns]
    if require_label and target is not None and target not in frame.columns:
        missing.append(target)
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)} (columns present: {', '.join(map(str, frame.columns[:30]))})")
    if id_column is None:
        ids = pd.Series(np.arange(1, len(frame) + 1).astype(str), index=frame.index, name="subscriber_id")
    else:
        ids = frame[id_column].astype("string").str.strip()
        blank = ids.isna() | (ids == "")
        if blank.any():
            raise DataError(f"{source}: column {id_column}: {first_rows(np.flatnonzero(blank.to_numpy()))} have no id")
        keys = ids.to_frame()
        if time_column is not None:
            keys[time_column] = frame[time_column].astype("string")
        duplicated = keys.duplicated(keep=False)
        if duplicated.any():
            per = f" and {time_column}" if time_column else ""
            raise DataError(
                f"{source}: column {id_column}{per}: {first_rows(np.flatnonzero(duplicated.to_numpy()))} repeat an id "
                f"(expected one row per subscriber{' per snapshot' if time_column else ''})"
            )
        ids = ids.astype(str).rename("subscriber_id")
    label = None
    if target is not None and target in frame.columns:
        label = parse_label(frame[target], positive=positive, where=f"{source}: column {target}")
    value = parse_value(frame[value_column], where=f"{source}: column {value_column}") if value_column else None
    from pipeline.prepare import looks_personal

    personal = {}
    for name in frame.columns:
        if name in (id_column, target):
            continue
        reason = looks_personal(name, frame[name])
        if reason:
            personal[str(name)] = reason
    period = None
    if time_column is not None:
        period = pd.to_datetime(frame[time_column], errors="coerce", format="mixed")
        bad = period.isna().to_numpy()
        if bad.any():
            raise DataError(f"{source}: column {time_column}: {first_rows(np.flatnonzero(bad))} are not dates")
        period = period.reset_index(drop=True).rename("snapshot_date")
    dropped = [c for c in (target, time_column) if c is not None and c in frame.columns] + list(personal)
    features = frame.drop(columns=dropped) if dropped else frame
    return Dataset(
        frame=features,
        ids=ids.reset_index(drop=True),
        label=None if label is None else label.reset_index(drop=True),
        monthly_value=None if value is None else value.reset_index(drop=True),
        mode="table",
        id_column=id_column or "subscriber_id",
        label_column=target,
        value_column=value_column,
        source=source,
        dropped={**personal, **({time_column: "snapshot date of the row (folds by time)"} if time_column else {})},
        period=period,
    )


def records_dataset(records, *, snapshot_date=None, horizon_days: int = 90, require_label: bool = True,
                    earlier_snapshots: tuple[str, ...] = ()) -> Dataset:
    """A modelling table from subscriber records: point-in-time features at the snapshot.

    With ``earlier_snapshots``, the features and labels at each of those dates are stacked
    before the snapshot's (one row per subscriber per date, each cut at its own date), and
    ``Dataset.period`` says which date each row belongs to.
    """
    from pipeline import features

    if earlier_snapshots:
        from pipeline.features import resolve_snapshot

        main = resolve_snapshot(records, snapshot_date)
        dates = sorted({pd.Timestamp(d) for d in earlier_snapshots})
        late = [d for d in dates if d >= pd.Timestamp(main)]
        if late:
            raise DataError(f"{records.source}: training snapshot {late[0].date()} is not before the snapshot {pd.Timestamp(main).date()}")
        parts = [records_dataset(records, snapshot_date=d.date().isoformat(), horizon_days=horizon_days,
                                 require_label=require_label) for d in dates]
        parts.append(records_dataset(records, snapshot_date=snapshot_date, horizon_days=horizon_days,
                                     require_label=require_label))
        stamps = [*dates, pd.Timestamp(main)]
        period = pd.Series(np.repeat(np.asarray(stamps, dtype="datetime64[ns]"), [p.n_rows for p in parts]),
                           name="snapshot_date")
        stacked = parts[-1]
        return Dataset(
            frame=pd.concat([p.frame for p in parts], ignore_index=True),
            ids=pd.concat([p.ids for p in parts], ignore_index=True),
            label=None if stacked.label is None else pd.concat([p.label for p in parts], ignore_index=True),
            monthly_value=pd.concat([p.monthly_value for p in parts], ignore_index=True),
            mode="records", id_column=stacked.id_column, label_column=stacked.label_column,
            value_column=stacked.value_column, source=stacked.source,
            extra={k: pd.concat([p.extra[k] for p in parts], ignore_index=True) for k in stacked.extra},
            period=period,
        )

    frame = features.build_features(records, snapshot_date)
    label = None
    if records.outcomes is not None:
        label = features.make_labels(records, snapshot_date, horizon_days=horizon_days)
        label = label.astype("int8").reset_index(drop=True)  # same rows, same order as the features
    elif require_label:
        raise DataError(f"{records.source}: the outcomes table is needed to train (it gives the labels)")
    ids = frame[features.ID_COLUMN].astype(str).reset_index(drop=True)
    value = frame["monthly_fee"].astype("float64").reset_index(drop=True).rename("monthly_value")
    extra = {}
    if "etf_waivable_amount" in frame.columns:
        extra["etf_waivable"] = frame["etf_waivable_amount"].astype("float64").reset_index(drop=True)
    return Dataset(
        frame=frame.reset_index(drop=True),
        ids=ids,
        label=label,
        monthly_value=value,
        mode="records",
        id_column=features.ID_COLUMN,
        label_column="churned",
        value_column="monthly_fee",
        source=records.source,
        extra=extra,
    )


def segments(frame: pd.DataFrame) -> pd.DataFrame:
    """Segment columns for per-segment metrics: contract type, tenure band, exposure level."""
    out = {}
    lowered = {str(c).lower(): c for c in frame.columns}
    for name in ("contract_type", "contract"):
        if name in lowered:
            out["contract_type"] = frame[lowered[name]].astype("string").fillna("unknown")
            break
    for name in ("tenure_months", "tenure"):
        if name in lowered:
            months = pd.to_numeric(frame[lowered[name]], errors="coerce")
            bands = pd.cut(months, [-np.inf, 6, 12, 24, 60, np.inf], labels=["0-6m", "6-12m", "1-2y", "2-5y", "5y+"])
            out["tenure_band"] = bands.astype("string").fillna("unknown")
            break
    if "exposure_severity" in lowered:
        severity = pd.to_numeric(frame[lowered["exposure_severity"]], errors="coerce").fillna(0)
        level = np.select([severity <= 0, severity < 3], ["not exposed", "low"], "high")
        if "fraud_loss_amount" in lowered:
            harmed = pd.to_numeric(frame[lowered["fraud_loss_amount"]], errors="coerce").fillna(0) > 0
            level = np.where(harmed, "harmed", level)
        out["exposure_level"] = pd.Series(level, index=frame.index)
    return pd.DataFrame(out, index=frame.index)
