"""Modelling tables: one row per subscriber, from a single churn table or from records.

A ``Dataset`` holds the raw feature columns the model takes (``frame``), the 0/1 label
when known, the subscriber ids, and the monthly value per subscriber when known.  Two
sources give one: any churn table (CSV or Parquet; ``table_dataset``) and subscriber
records cut at a snapshot date (``records_dataset``, through ``pipeline.features``).

Response (uplift) modelling learns from randomised retention campaigns: ``Dataset.treatment``
is 1 for the ``offer`` group, 0 for ``control`` and missing for rows in no experiment.
``campaign_dataset`` builds the response table of a record base (one row per campaign row,
cut at the campaign's start); a single table names its treatment column
(``table_dataset(..., treatment_column=...)``) and ``churn_rows`` / ``response_rows`` split
it.  Churn labels stay clean: ``records_dataset`` leaves out subscribers who were made an
offer within the outcome window, and ``Dataset.excluded`` counts every row left out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import DataError, first_rows

_POSITIVE = {"1", "1.0", "true", "yes", "y", "t", "churn", "churned"}
_NEGATIVE = {"0", "0.0", "false", "no", "n", "f", "stay", "stayed"}
#: Spellings of a treatment column (case-insensitive, trimmed); blanks are rows in no experiment.
_TREATED = {"offer", "treatment", "treated", "1", "1.0", "true", "yes"}
_CONTROL = {"control", "0", "0.0", "false", "no"}
_TREATMENT_SPELLINGS = "offer/control, treatment/control, treated/control, 1/0, true/false or yes/no"
#: Fewest rows of each group (offer, control) that response modelling accepts.
MIN_GROUP_ROWS = 20

#: Reasons in ``Dataset.excluded`` (reason -> rows left out).
EXCLUDED_OFFERED_IN_HORIZON = "made a retention offer within the outcome window (outcome reflects the offer)"
EXCLUDED_CAMPAIGN_AFTER_SNAPSHOT = "campaign starts after the snapshot (outcome window not observed yet)"
EXCLUDED_INACTIVE_AT_CAMPAIGN_START = "not an active subscriber at the campaign start"
EXCLUDED_NOT_RANDOMISED = "campaign without both an offer and a control group (not randomised: says nothing about the response)"
EXCLUDED_TREATED = "in the offer group (treated): outcome reflects the offer"
EXCLUDED_NO_EXPERIMENT = "in no experiment (treatment unknown)"


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
    dropped : dict
        Columns of the source never given to the model, and why.
    period : Series or None
        Each row's snapshot date when the rows come from several snapshots (or campaign
        starts), else ``None``.
    treatment : Series or None
        For response modelling: 1.0 for rows in the ``offer`` group of a randomised
        campaign, 0.0 for the ``control`` group, NaN for rows in no experiment; ``None``
        when the source says nothing about treatment.
    excluded : dict
        Rows of the source left out of the table: reason -> number of rows (only reasons
        that left some out; the ``EXCLUDED_*`` constants of this module name them).
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
    #: 1.0 offer group, 0.0 control group, NaN in no experiment; ``None`` when unknown for all rows.
    treatment: pd.Series | None = None
    #: Rows left out of the source, by reason (reason -> rows).
    excluded: dict = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return len(self.frame)

    def content_hash(self) -> str:
        """SHA-256 of the rows' contents (features, label, period, treatment), for lineage; order-sensitive."""
        digest = hashlib.sha256()
        hashed = pd.util.hash_pandas_object(self.frame, index=False).to_numpy()
        digest.update(hashed.tobytes())
        if self.label is not None:
            digest.update(np.asarray(self.label, dtype="int8").tobytes())
        if self.period is not None:
            digest.update(np.asarray(self.period, dtype="datetime64[ns]").tobytes())
        if self.treatment is not None:
            digest.update(b"treatment")
            digest.update(np.asarray(self.treatment, dtype="float64").tobytes())
        return digest.hexdigest()

    def subset(self, keep, *, reason: str | None = None) -> "Dataset":
        """The rows where ``keep`` (a boolean array aligned with ``frame``) holds, every aligned field cut alike.

        With ``reason``, the number of rows left out is added to ``excluded`` under it.
        """
        keep = np.asarray(keep, dtype=bool)
        if keep.all():
            return self
        excluded = dict(self.excluded)
        if reason is not None:
            excluded[reason] = excluded.get(reason, 0) + int((~keep).sum())
        return replace(_take(self, np.flatnonzero(keep)), excluded=excluded)


def read_table(path: str | Path, *, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file, or fail with one line naming the file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: a folder that is not a record folder (no subscribers table) and not a table "
                        "file (CSV or Parquet)")
    suffix = _table_suffix(path)
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path, columns=columns)
        else:
            frame = pd.read_csv(path, usecols=columns, low_memory=False)
    except pd.errors.EmptyDataError as err:
        raise DataError(f"{path}: empty file (no header row, no rows)") from err
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise DataError(f"{path}: cannot read ({str(err).splitlines()[0]})") from err
    if not len(frame):
        raise DataError(f"{path}: no rows (the table has {len(frame.columns)} column(s) and no data)")
    return frame


def check_source(data: str, *, records_only: bool = False) -> None:
    """Before any work: the input is there and holds rows, or one ``DataError`` line says what is wrong.

    A database URL is checked when it is read.  A folder must be a record folder with
    subscribers (a folder with other record tables but no subscribers, or with none at all,
    says so); a file must be a CSV or Parquet table (unless ``records_only``) with a header
    naming each column once and at least one row.
    """
    from pipeline.errors import hide_credentials
    from pipeline.records import is_record_source, record_tables_in, subscriber_count

    if "://" in str(data):
        return
    path = Path(data)
    if not path.exists():
        raise DataError(f"{hide_credentials(data)}: not found (expected a record folder, a database URL or a CSV or "
                        "Parquet table)")
    if path.is_dir():
        if not is_record_source(path):
            found = record_tables_in(path)
            if found:
                raise DataError(f"{path}: no subscribers table (looked for subscribers/part-*.parquet, "
                                f"subscribers.parquet and subscribers.csv; the folder has {', '.join(found)})")
            raise DataError(f"{path}: not a record folder (no subscribers table, nor any other record table) and not "
                            "a table file (CSV or Parquet)")
        if subscriber_count(path) == 0:
            raise DataError(f"{path}: the subscribers table has no rows")
        return
    if records_only:
        raise DataError(f"{path}: not a record folder or database URL")
    suffix = _table_suffix(path)
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            rows = pq.ParquetFile(path).metadata.num_rows
        else:
            rows = len(pd.read_csv(path, nrows=1))
    except pd.errors.EmptyDataError as err:
        raise DataError(f"{path}: empty file (no header row, no rows)") from err
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise DataError(f"{path}: cannot read ({str(err).splitlines()[0]})") from err
    if rows == 0:
        raise DataError(f"{path}: no rows (the table has a header and no data)")


def refuse_infinite(frame: pd.DataFrame, source: str) -> None:
    """Raise at the first column holding an infinite number (or text such as ``inf``), naming its first rows.

    Checked before anything computes on the column, so no numeric warning comes first.  Rows
    are the frame's index labels (0-based rows of the table, for a CSV read in chunks too).
    """
    from pipeline.prepare import to_numbers

    for name in frame.columns:
        column = frame[name]
        if column.dtype.kind == "f":
            infinite = np.isinf(column.to_numpy(dtype="float64"))
        elif column.dtype.kind in "biumMc":
            continue
        else:
            infinite = np.isinf(to_numbers(column).to_numpy())
        if infinite.any():
            verb = "is" if infinite.sum() == 1 else "are"
            raise DataError(f"{source}: column {name}: {first_rows(frame.index[infinite])} {verb} infinite "
                            "(expected a finite number or a blank)")


def _table_suffix(path: Path) -> str:
    """The suffix of a table file (``.csv``, ``.parquet``...), after checking its type and header."""
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv", ".txt", ".gz"):
        raise DataError(f"{path}: unsupported file type {suffix!r} (expected .csv or .parquet)")
    check_header(path)
    return suffix


def check_header(path: str | Path) -> None:
    """Refuse a table whose header names a column twice (a reader would silently rename the second)."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            names = list(pq.read_schema(path).names)
        elif suffix in (".csv", ".txt"):
            with open(path, newline="", encoding="utf-8-sig") as handle:
                names = next(csv.reader(handle), [])
        else:
            return
    except (OSError, UnicodeDecodeError, csv.Error, pa.ArrowException) as err:
        raise DataError(f"{path}: cannot read ({str(err).splitlines()[0]})") from err
    seen: dict[str, list[int]] = {}
    for position, name in enumerate(names):
        seen.setdefault(str(name).strip(), []).append(position)
    repeated = {name: places for name, places in seen.items() if len(places) > 1}
    if repeated:
        name, places = next(iter(repeated.items()))
        others = f" (and {len(repeated) - 1} more repeated name(s))" if len(repeated) > 1 else ""
        raise DataError(f"{path}: column {name} appears {len(places)} times (columns "
                        f"{', '.join(str(p + 1) for p in places)}){others}; column names must be unique")


def parse_label(values: pd.Series, *, positive: str | None, where: str) -> pd.Series:
    """Turn a label column into 0/1.

    With ``positive`` the rows equal to it (case-insensitive, blanks trimmed) are 1 and
    every other non-blank value 0; without it, 1/true/yes and 0/false/no are understood.
    """
    text = values.astype("string").str.strip()
    blank = text.isna() | (text == "")
    if blank.any():
        rows = np.flatnonzero(blank.to_numpy())
        raise DataError(f"{where}: {first_rows(rows)} {'has' if len(rows) == 1 else 'have'} no label")
    lowered = text.str.lower()
    if positive is not None:
        label = lowered == str(positive).strip().lower()
        if not label.any():
            raise DataError(f"{where}: no row has the positive label {positive!r} "
                            f"({_shown_values(values, text, limit=10, label='values seen')})")
        others = lowered[~label].value_counts()
        if len(others) > 1:  # a label has two values: a third is a typo or another outcome, never "stayed"
            usual = others.index[0]
            bad = np.flatnonzero((~label & (lowered != usual)).to_numpy())
            shown = _may_show(values, text)
            if shown:
                seen = ", ".join(sorted(map(str, text.iloc[bad].unique()))[:5])
                said = f"have {seen}" if len(bad) > 1 else f"has {seen}"
            else:
                said = f"have other values ({len(others)} distinct besides the positive one, not shown)"
            usual_text = f" ({text[lowered == usual].iloc[0]!r} here)" if shown else ""
            raise DataError(f"{where}: {first_rows(bad)} {said}: a label takes two values, "
                            f"{positive!r} (churned) and one other{usual_text}; fix or remove those rows")
        return label.astype("int8").rename("churned")
    known = lowered.isin(_POSITIVE | _NEGATIVE)
    if not known.all():
        bad = np.flatnonzero(~known.to_numpy())
        if _may_show(values, text):
            seen = ", ".join(sorted(map(str, text[~known].unique()))[:5])
            have = f"{'has' if len(bad) == 1 else 'have'} {seen}, which is not"
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
    from pipeline.prepare import to_numbers

    numbers = to_numbers(values)
    bad = numbers.isna() | (numbers < 0) | np.isinf(numbers)
    if bad.any():
        raise DataError(
            f"{where}: {first_rows(np.flatnonzero(bad.to_numpy()))} are not a non-negative number "
            "(the monthly value must be known for every subscriber)"
        )
    return numbers.rename("monthly_value")


def parse_treatment(values: pd.Series, *, where: str, show_values: bool = True) -> pd.Series:
    """Turn a treatment column into 1.0 (offer), 0.0 (control) or NaN (blank: in no experiment).

    Accepted spellings, case-insensitive and trimmed: offer/control, treatment/control,
    treated/control, 1/0, true/false and yes/no.

    Parameters
    ----------
    values : Series
        The column as read.
    where : str
        The source and column, starting every message.
    show_values : bool
        Whether messages may show the offending values (not for personal-looking columns).

    Returns
    -------
    Series
        float64 named ``treatment``, same index as ``values``.

    Raises
    ------
    DataError
        When a value is none of the accepted spellings, naming the first rows and the values seen.
    """
    text = values.astype("string").str.strip().str.lower()
    blank = (text.isna() | (text == "")).to_numpy(dtype=bool)
    treated = text.isin(_TREATED).to_numpy(dtype=bool)
    control = text.isin(_CONTROL).to_numpy(dtype=bool)
    bad = ~(blank | treated | control)
    if bad.any():
        positions = np.flatnonzero(bad)
        verb = "has" if len(positions) == 1 else "have"
        if show_values:
            seen = pd.unique(values.astype("string").str.strip().to_numpy(dtype=object)[positions[:5]])
            said = f"{verb} " + ", ".join(f"'{value}'" for value in seen)
        else:
            said = "are not a treatment group" if len(positions) > 1 else "is not a treatment group"
        raise DataError(
            f"{where}: {first_rows(positions)} {said} (expected {_TREATMENT_SPELLINGS}; blank for rows in no experiment)"
        )
    treatment = np.where(treated, 1.0, np.where(control, 0.0, np.nan))
    return pd.Series(treatment, index=values.index, name="treatment", dtype="float64")


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
    treatment_column: str | None = None,
) -> Dataset:
    """A modelling table from one churn table: every other column is a candidate feature.

    Without an id column the row number (from 1) serves as the subscriber id.  With a
    ``time_column`` the table may hold several snapshots (one row per subscriber per date):
    the column's dates become ``Dataset.period`` and are not a feature.  With a
    ``treatment_column`` (the group of a randomised retention campaign, see
    :func:`parse_treatment`) the column becomes ``Dataset.treatment`` and is not a feature.
    """
    refuse_infinite(frame, source)
    roles = (id_column, value_column, time_column, treatment_column)
    missing = [c for c in roles if c is not None and c not in frame.columns]
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
        if name in (id_column, target, treatment_column):
            continue
        reason = looks_personal(name, frame[name])
        if reason:
            personal[str(name)] = reason
    treatment = None
    if treatment_column is not None:
        shown = not looks_personal(treatment_column, frame[treatment_column].head(500))
        treatment = parse_treatment(frame[treatment_column], where=f"{source}: column {treatment_column}",
                                    show_values=shown).reset_index(drop=True)
    period = None
    if time_column is not None:
        period = pd.to_datetime(frame[time_column], errors="coerce", format="mixed")
        bad = period.isna().to_numpy()
        if bad.any():
            raise DataError(f"{source}: column {time_column}: {first_rows(np.flatnonzero(bad))} are not dates")
        period = period.reset_index(drop=True).rename("snapshot_date")
    roles = (target, time_column, treatment_column)
    dropped = [c for c in roles if c is not None and c in frame.columns] + [c for c in personal if c not in roles]
    features = frame.drop(columns=dropped) if dropped else frame
    reasons = dict(personal)
    if time_column:
        reasons[time_column] = "snapshot date of the row (folds by time)"
    if treatment_column:
        reasons[treatment_column] = "treatment group of a randomised campaign (not a feature)"
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
        dropped=reasons,
        period=period,
        treatment=treatment,
    )


def records_dataset(records, *, snapshot_date=None, horizon_days: int = 90, require_label: bool = True,
                    earlier_snapshots: tuple[str, ...] = ()) -> Dataset:
    """A modelling table from subscriber records: point-in-time features at the snapshot.

    With ``earlier_snapshots``, the features and labels at each of those dates are stacked
    before the snapshot's (one row per subscriber per date, each cut at its own date), and
    ``Dataset.period`` says which date each row belongs to.  Only point-in-time values enter:
    at an earlier date a contract that started later is unknown (its type and months left are
    missing), and the features of ``UNDATED_FEATURES`` (amounts the subscribers table holds as
    of the main snapshot only) are left out of every row, and listed in ``Dataset.dropped``.

    For training (``require_label``), churn labels stay clean: subscribers in the ``offer``
    group of a campaign with a ``contact_date`` in ``[snapshot, snapshot + horizon_days)``
    are left out (their outcome reflects the offer, not what happens without a call) and
    counted in ``Dataset.excluded``; ``control`` rows stay.  The same holds at each earlier
    snapshot.  Scoring (``require_label=False``) leaves nobody out.
    """
    if earlier_snapshots:
        from pipeline.features import resolve_snapshot

        main = resolve_snapshot(records, snapshot_date)
        dates = sorted({pd.Timestamp(d) for d in earlier_snapshots})
        late = [d for d in dates if d >= pd.Timestamp(main)]
        if late:
            raise DataError(f"{records.source}: training snapshot {late[0].date()} is not before the snapshot {pd.Timestamp(main).date()}")
        parts = [_as_of(records_dataset(records, snapshot_date=d.date().isoformat(), horizon_days=horizon_days,
                                        require_label=require_label), records, d) for d in dates]
        parts.append(records_dataset(records, snapshot_date=snapshot_date, horizon_days=horizon_days,
                                     require_label=require_label))
        stamps = [*dates, pd.Timestamp(main)]
        period = pd.Series(np.repeat(np.asarray(stamps, dtype="datetime64[ns]"), [p.n_rows for p in parts]),
                           name="snapshot_date")
        stacked = _stack(parts)
        stacked.period = period
        # Amounts the subscribers table holds only as of the main snapshot are not known at the
        # earlier dates: no row gets them, so the model never learns from a value from its future.
        undated = [c for c in UNDATED_FEATURES if c in stacked.frame.columns]
        stacked.frame = stacked.frame.drop(columns=undated)
        stacked.dropped = {**stacked.dropped, **dict.fromkeys(undated, UNDATED_REASON)}
        return stacked

    dataset = _snapshot_dataset(records, snapshot_date, horizon_days, require_label)
    if require_label:
        from pipeline.features import resolve_snapshot

        offered = _offered_within(records, resolve_snapshot(records, snapshot_date), horizon_days)
        if len(offered):
            dataset = dataset.subset(~dataset.ids.isin(offered).to_numpy(), reason=EXCLUDED_OFFERED_IN_HORIZON)
    return dataset


#: Record features built from amounts the subscribers table holds as of the main snapshot
#: only (the fee to leave, the device balance, the plan's fee, and what depends on them):
#: with earlier training snapshots they are left out of the model (``docs/training.md``).
UNDATED_FEATURES = ("early_termination_fee", "etf_to_monthly_fee", "device_instalment_balance",
                    "instalment_to_monthly_fee", "monthly_fee", "compensation_to_monthly_fee", "waiver_relieves_etf",
                    "etf_waivable_amount")
UNDATED_REASON = ("known only at the main snapshot (an amount of the subscribers table), not at the earlier "
                  "training snapshots: left out so no row learns from a later value")


def _as_of(dataset: Dataset, records, day: pd.Timestamp) -> Dataset:
    """An earlier snapshot's rows with the contract features it cannot know made missing.

    The subscribers table holds the current contract: a subscriber whose contract started on or
    after ``day`` was on another (unknown) contract then, so its type and months left are unknown.
    """
    from pipeline import features

    subscribers = records.subscribers
    if "contract_start" not in subscribers.columns or not dataset.n_rows:
        return dataset
    start = pd.Series(features._dates(subscribers, "contract_start", "subscribers", records.source),
                      index=features._texts(subscribers[features.ID_COLUMN]).to_numpy())
    start = start[~start.index.duplicated()]
    later = (start.reindex(dataset.ids.to_numpy()).to_numpy() >= np.datetime64(day, "ns"))
    if later.any():
        frame = dataset.frame.copy()
        frame.loc[later, "months_left_on_contract"] = np.nan
        frame.loc[later, "contract_type"] = None
        dataset = replace(dataset, frame=frame)
    return dataset


def _snapshot_dataset(records, snapshot_date, horizon_days: int, require_label: bool) -> Dataset:
    """Features (and labels when outcomes are there) of every active subscriber at one snapshot; nobody left out."""
    from pipeline import features

    frame = features.build_features(records, snapshot_date)
    label = None
    if records.outcomes is not None:
        label = features.make_labels(records, snapshot_date, horizon_days=horizon_days)
        label = label.astype("int8").reset_index(drop=True)  # same rows, same order as the features
    elif require_label:
        raise DataError(f"{records.source}: the outcomes table is needed to train (it gives the labels)")
    ids = frame[features.ID_COLUMN].astype(str).reset_index(drop=True)
    value = frame["monthly_fee"].astype("float64").reset_index(drop=True).rename("monthly_value")
    # What a waiver would forgive, from the operator's waiver policy (every exposure row):
    # money for the value of a save, not a feature (``features.waiver_forgives``).
    extra = {"etf_waivable": pd.Series(features.waiver_forgives(records, frame, snapshot_date), name="etf_waivable")}
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


def _stack(parts: list[Dataset]) -> Dataset:
    """Datasets of the same source and columns one after the other (``excluded`` summed)."""
    last = parts[-1]

    def concat(name):
        series = [getattr(p, name) for p in parts]
        return None if any(s is None for s in series) else pd.concat(series, ignore_index=True)

    excluded: dict = {}
    for part in parts:
        for reason, count in part.excluded.items():
            excluded[reason] = excluded.get(reason, 0) + count
    return replace(
        last,
        frame=pd.concat([p.frame for p in parts], ignore_index=True),
        ids=concat("ids"),
        label=concat("label"),
        monthly_value=concat("monthly_value"),
        extra={k: pd.concat([p.extra[k] for p in parts], ignore_index=True) for k in last.extra},
        period=concat("period"),
        treatment=concat("treatment"),
        excluded=excluded,
    )


def _offered_within(records, snapshot: pd.Timestamp, horizon_days: int) -> np.ndarray:
    """Ids of the subscribers in the ``offer`` group of a campaign contacted in ``[snapshot, snapshot + horizon)``."""
    from pipeline import features

    campaigns = records.campaigns
    if campaigns is None or len(campaigns) == 0:
        return np.array([], dtype=object)
    features._require(campaigns, (features.ID_COLUMN, "contact_date", "group"), "campaigns", records.source)
    contacted = features._dates(campaigns, "contact_date", "campaigns", records.source)
    snap = np.datetime64(snapshot, "ns")
    within = (contacted >= snap) & (contacted < snap + np.timedelta64(horizon_days, "D"))
    offered = within & (features._texts(campaigns["group"]) == "offer").to_numpy(dtype=bool)
    return pd.unique(features._texts(campaigns[features.ID_COLUMN]).to_numpy(dtype=object)[offered])


class NoCampaignError(DataError):
    """The records hold no randomised campaign a response could be learned from (not a fault in them)."""


def _no_campaign(source: str, why: str) -> DataError:
    return NoCampaignError(f"{source}: no randomised campaign to learn a response from: {why}")


def campaign_dataset(records, *, horizon_days: int, snapshot_date=None) -> Dataset:
    """The response modelling table of a record base: one row per campaign row, cut at its campaign's start.

    Every campaign (``campaign_id``) whose start, its earliest ``contact_date``, is on or
    before the snapshot gives one row per campaign row, ``offer`` or ``control`` (later
    campaigns' outcome windows are not observed yet: their rows are left out and counted).
    Rows are ordered by campaign start, then as in the campaigns table.

    Parameters
    ----------
    records : pipeline.records.Records
        A record base with ``campaigns`` and ``outcomes`` tables.
    horizon_days : int
        The outcome window: ``label`` is 1 when the subscriber left within this many days
        of the campaign's start (``start <= defection_date < start + horizon_days``).
    snapshot_date : date-like, optional
        The last day a campaign may start on; defaults to ``records.snapshot_date``.

    Returns
    -------
    Dataset
        ``frame`` holds ``build_features`` cut at the campaign's start (one feature build per
        distinct start date); ``treatment`` is 1.0 for ``offer`` rows and 0.0 for ``control``;
        ``period`` is the campaign start; ``monthly_value`` and ``extra["etf_waivable"]`` as
        :func:`records_dataset` gives them, ``extra["campaign_id"]`` the campaign of each row
        and ``extra["offer_cost"]`` its ``offer_cost`` (when the table has it).  Subscribers
        not active at their campaign's start (not yet activated, or already left) are left
        out; ``excluded`` counts the rows left out by reason.

    Raises
    ------
    DataError
        No campaigns table, no campaign row usable (empty table, every campaign after the
        snapshot or without a control group, no subscriber active at its campaign's start),
        or no outcomes table.  Campaigns with only one group (ordinary offers, not
        experiments) are left out and counted in ``excluded``.
    """
    from pipeline import features

    source = records.source
    campaigns = records.campaigns
    if campaigns is None:
        raise _no_campaign(source, "the records have no campaigns table")
    if records.outcomes is None:
        raise DataError(f"{source}: the outcomes table is needed to learn a response (it gives the labels)")
    snapshot = features.resolve_snapshot(records, snapshot_date)
    features._require(campaigns, (features.ID_COLUMN, "campaign_id", "contact_date", "group"), "campaigns", source)
    if len(campaigns) == 0:
        raise _no_campaign(source, "the campaigns table is empty")

    campaign = features._texts(campaigns["campaign_id"]).reset_index(drop=True)
    contacted = pd.Series(features._dates(campaigns, "contact_date", "campaigns", source))
    start = contacted.groupby(campaign, dropna=False, sort=False).transform("min").to_numpy(dtype="datetime64[ns]")
    observed = start <= np.datetime64(snapshot, "ns")
    excluded = {}
    if (~observed).any():
        excluded[EXCLUDED_CAMPAIGN_AFTER_SNAPSHOT] = int((~observed).sum())
    if not observed.any():
        first = pd.Timestamp(start.min()).date()
        raise _no_campaign(source, f"every campaign starts after the snapshot {snapshot.date()} (the first on {first})")

    group = features._texts(campaigns["group"]).reset_index(drop=True)
    randomised = _randomised(campaign, group)
    if (observed & ~randomised).any():
        excluded[EXCLUDED_NOT_RANDOMISED] = int((observed & ~randomised).sum())
    observed &= randomised
    if not observed.any():
        raise _no_campaign(source, "no campaign started by the snapshot has both an offer and a control group")

    rows = np.flatnonzero(observed)
    rows = rows[np.argsort(start[rows], kind="stable")]
    ids = features._texts(campaigns[features.ID_COLUMN]).to_numpy(dtype=object)
    parts, kept_rows, inactive = [], [], 0
    for day in np.unique(start[rows]):
        at_day = rows[start[rows] == day]
        table = _snapshot_dataset(records, pd.Timestamp(day), horizon_days, require_label=True)
        positions = pd.Index(table.ids).get_indexer(ids[at_day])
        active = positions >= 0
        inactive += int((~active).sum())
        if active.any():
            parts.append(_take(table, positions[active]))
            kept_rows.append(at_day[active])
    if inactive:
        excluded[EXCLUDED_INACTIVE_AT_CAMPAIGN_START] = inactive
    if not parts:
        raise _no_campaign(source, "no campaign row is of a subscriber active at its campaign's start")

    dataset = _stack(parts)
    kept = np.concatenate(kept_rows)
    dataset.treatment = pd.Series((group.to_numpy(dtype=object)[kept] == "offer").astype("float64"), name="treatment")
    dataset.period = pd.Series(start[kept], name="campaign_start")
    dataset.extra["campaign_id"] = pd.Series(campaign.to_numpy(dtype=object)[kept], name="campaign_id", dtype="str")
    if "offer_cost" in campaigns.columns:
        cost = features._floats(campaigns, "offer_cost", "campaigns", source)[kept]
        dataset.extra["offer_cost"] = pd.Series(cost, name="offer_cost")
    dataset.excluded = excluded
    return dataset


def _randomised(campaign: pd.Series, group: pd.Series) -> np.ndarray:
    """Rows of campaigns with both an offer and a control group: the only ones a response can be learned from."""
    frame = pd.DataFrame({"campaign": campaign, "group": group})
    groups = frame.groupby("campaign", sort=False, dropna=False)["group"].agg(lambda values: frozenset(values.dropna()))
    both = {name for name, seen in groups.items() if {"offer", "control"} <= seen}
    return campaign.isin(both).to_numpy()


def _take(dataset: Dataset, positions: np.ndarray) -> Dataset:
    """The rows at ``positions`` (repeats allowed), every aligned field alike."""

    def take(series):
        return None if series is None else series.take(positions).reset_index(drop=True)

    return replace(
        dataset,
        frame=dataset.frame.take(positions).reset_index(drop=True),
        ids=take(dataset.ids),
        label=take(dataset.label),
        monthly_value=take(dataset.monthly_value),
        extra={name: take(series) for name, series in dataset.extra.items()},
        period=take(dataset.period),
        treatment=take(dataset.treatment),
    )


def churn_rows(dataset: Dataset) -> Dataset:
    """The rows a churn model may learn from: every row but the treated ones (``treatment == 1``).

    A treated row's outcome reflects the offer, not what happens without a call; the rows left
    out are counted in ``excluded``.  Control rows and rows in no experiment stay.  A dataset
    without ``treatment`` is returned as is.
    """
    if dataset.treatment is None:
        return dataset
    return dataset.subset((dataset.treatment != 1).to_numpy(), reason=EXCLUDED_TREATED)


def response_rows(dataset: Dataset) -> Dataset:
    """The rows a response model may learn from: those with a known treatment (offer or control).

    Rows in no experiment (``treatment`` missing) are left out and counted in ``excluded``.

    Raises
    ------
    DataError
        When the offer or the control group has fewer than ``MIN_GROUP_ROWS`` (20) rows.
    """
    treatment = dataset.treatment
    if treatment is None:
        treatment = pd.Series(np.nan, index=range(dataset.n_rows))
    offer, control = int((treatment == 1).sum()), int((treatment == 0).sum())
    unknown = dataset.n_rows - offer - control
    if offer < MIN_GROUP_ROWS or control < MIN_GROUP_ROWS:
        outside = f"; {unknown} rows are in no experiment" if unknown else ""
        raise DataError(
            f"{dataset.source}: too few rows to learn a response: {offer} in the offer group and {control} in the "
            f"control group (expected at least {MIN_GROUP_ROWS} in each{outside})"
        )
    return dataset.subset(treatment.notna().to_numpy(), reason=EXCLUDED_NO_EXPERIMENT)
