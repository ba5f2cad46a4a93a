"""Every input the pipeline reads, checked against what the model takes, in one place.

Three kinds of input: a **record folder** (CSV or Parquet tables, ``docs/records.md``), a
**database URL** holding the same tables (SQLite, PostgreSQL), and a single **churn table**
(CSV or Parquet; also a feature table written by ``churn features``).  Here they are told
apart (``is_records``), loaded for training (``load_dataset``), streamed for scoring in
chunks (``input_chunks``, ``table_chunks``), hashed for lineage (``input_hash``), and
checked before any work:

- against the **input contract** (``InputContract``) that a fitted model carries in its
  MLflow metadata and signature: its raw input columns in training order, their types, the
  kind of data it was trained on (records or a table) and the roles of the id, value and
  label columns.  ``check_signature`` names every missing and every mistyped column at once,
  with the same rule for numbers the model's typing step uses
  (``pipeline.prepare.text_numbers``: at least 95% of the non-blank values);
- and for paths (``check_paths``): the output is not the input, the input holds rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.errors import DataError, hide_credentials

#: The column of a feature table (``churn features``) with what a fee waiver would forgive
#: each subscriber (``features.waiver_forgives``: money for the value of a save, not a
#: feature); a feature table without it falls back on the feature ``etf_waivable_amount``.
WAIVER_COLUMN = "etf_waiver_forgives"


@dataclass(frozen=True)
class InputContract:
    """What a fitted model takes, stored with it (its MLflow metadata and signature).

    ``columns``: its raw input columns, in training order; ``types``: their signature types
    (``double``, ``long``, ``string``...); ``mode``: ``records`` (trained on records: it
    scores record folders, databases and feature tables) or ``table`` (one churn table);
    ``id_column``, ``value_column``, ``label_column``: the roles of a table's columns.
    """

    columns: tuple[str, ...]
    types: dict[str, str] = field(default_factory=dict)
    mode: str = "table"
    id_column: str | None = None
    value_column: str | None = None
    label_column: str | None = None

    def roles(self) -> dict[str, str | None]:
        """The id, value, waiver and fee columns of a table scored by this model (a feature table
        for record models)."""
        from pipeline.features import ID_COLUMN

        if self.mode == "records":
            return {"id": ID_COLUMN, "value": "monthly_fee", "waiver": WAIVER_COLUMN, "etf": "early_termination_fee"}
        return {"id": self.id_column, "value": self.value_column, "waiver": None, "etf": None}


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
    treatment_column: str | None = None,
    response: bool = False,
):
    """A ``Dataset`` from a record folder, a database URL or one churn table.

    For training (``require_label``), records are stacked over ``data.training_snapshots``
    and a table's ``time_column`` (or ``data.time_column``) gives each row's snapshot date.

    With ``response``, returns ``(churn dataset, response dataset or None, why none)``: the
    response dataset holds the rows of randomised campaigns (the records' ``campaigns``
    table, or the rows of a table whose ``treatment_column`` says offer or control), and the
    churn dataset leaves out the subscribers whose outcome an offer changed.
    """
    from pipeline.dataset import (NoCampaignError, campaign_dataset, check_source, churn_rows, read_table,
                                  records_dataset, response_rows, table_dataset)

    check_source(data)
    if is_records(data):
        from pipeline.records import load_records

        snapshot = snapshot_date or config.data.snapshot_date
        records = load_records(data, snapshot_date=snapshot, disclosure_date=disclosure_date)
        if not require_label:
            records = records.without("outcomes")
        churn = records_dataset(
            records,
            snapshot_date=snapshot,
            horizon_days=config.data.horizon_days,
            require_label=require_label,
            earlier_snapshots=config.data.training_snapshots if require_label else (),
        )
        if not response:
            return churn
        try:
            return churn, campaign_dataset(records, horizon_days=config.data.horizon_days, snapshot_date=snapshot), None
        except NoCampaignError as err:
            return churn, None, str(err).split(": ", 1)[-1]
    if require_label and target is None:
        raise DataError(f"{hide_credentials(data)}: a single table needs --target (the churn label column) and usually --id")
    frame = read_table(data)
    dataset = table_dataset(
        frame, id_column=id_column, target=target, positive=positive, value_column=value_column,
        source=str(data), require_label=require_label,
        time_column=(time_column or config.data.time_column) if require_label else None,
        treatment_column=treatment_column,
    )
    if not response:
        return dataset
    if treatment_column is None:
        return dataset, None, "a single table needs --treatment COL (its randomised offer/control column)"
    return churn_rows(dataset), response_rows(dataset), None


def record_total(data: str) -> int | None:
    import json

    manifest = Path(data) / "manifest.json"
    if manifest.is_file():
        try:
            return int(json.loads(manifest.read_text()).get("subscribers"))
        except (ValueError, TypeError):
            return None
    return None


def table_total(data: str) -> int | None:
    if Path(data).suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(data).metadata.num_rows
        except (OSError, ValueError):
            return None
    return None


def input_chunks(data: str, scoring, *, config: Config, snapshot_date: str | None = None,
                 disclosure_date: str | None = None):
    """Check the input against the model, then stream it as modelling-table chunks.

    Returns ``(tasks, total rows or None)``: each task is a function of no arguments that
    gives the next chunk's modelling table (``Dataset``), and may run on any thread (record
    parts are read only then).  The check happens before any scoring work.
    """
    from pipeline.records import deferred

    contract = scoring.contract
    if contract.mode == "records" and is_records(data):
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
        return (partial(build, reader) for reader in readers), record_total(data)
    if is_records(data):
        raise DataError(f"{hide_credentials(data)}: the model was trained on a single table; give a CSV or Parquet file")
    check_signature(column_kinds(table_sample(data)), contract, source=str(data))
    columns = contract.roles()
    chunks = table_chunks(data, rows=config.scoring.chunk_rows, id_column=columns["id"],
                          value_column=columns["value"], label_column=contract.label_column)
    if contract.mode == "records":  # a feature table written by `churn features`
        chunks = (with_waiver(chunk) for chunk in chunks)
    return deferred(chunks), table_total(data)


def _features_of(read, *, snapshot_date: str | None, horizon_days: int):
    """The modelling table of one record chunk (``read()`` gives its records)."""
    from pipeline.dataset import records_dataset

    return records_dataset(read(), snapshot_date=snapshot_date, horizon_days=horizon_days, require_label=False)


def with_waiver(chunk):
    """``chunk`` (a feature table's ``Dataset``) with what a fee waiver forgives each subscriber, when
    the table says (``WAIVER_COLUMN``, else the feature ``etf_waivable_amount``)."""
    for column in (WAIVER_COLUMN, "etf_waivable_amount"):
        if column in chunk.frame.columns:
            chunk.extra["etf_waivable"] = chunk.frame[column].astype("float64").reset_index(drop=True)
            break
    return chunk


def check_paths(data: str, output: str, *, records_only: bool = False) -> None:
    """Before any work: the output is not the input, the input holds rows, and what killed runs
    left next to the output is swept (``pipeline.files.sweep_leftovers``)."""
    from pipeline.dataset import check_source
    from pipeline.files import check_output_path, sweep_leftovers

    check_output_path(output, data)
    check_source(data, records_only=records_only)
    sweep_leftovers(output)


def input_hash(data: str) -> str:
    """SHA-256 of the input: its files (all files of a record folder, in name order), or a
    database's record tables row by row (``records.database_digest``)."""
    import hashlib

    from pipeline.records import database_digest

    if "://" in str(data):
        return database_digest(str(data))
    digest = hashlib.sha256()
    path = Path(data)
    if not path.exists():
        raise DataError(f"{data}: not found (the input to hash for the run's lineage)")
    files = sorted(p for p in path.rglob("*") if p.is_file() and "truth" not in p.parts) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def data_snapshot(data: str, snapshot_date: str | None, config: Config) -> str | None:
    """The snapshot date of a record source (the option, the config, else its manifest); None for tables."""
    import json

    date = snapshot_date or config.data.snapshot_date
    if date:
        return str(date)
    manifest = Path(str(data)) / "manifest.json"
    if "://" not in str(data) and manifest.is_file():
        try:
            return json.loads(manifest.read_text()).get("snapshot_date")
        except (OSError, ValueError):
            return None
    return None


def check_columns(frame: pd.DataFrame, expected: list[str], *, source: str) -> None:
    """Fail with the full list of model input columns missing from ``frame``."""
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) the model needs: {', '.join(map(str, missing))}"
        )


def check_signature(columns: dict[str, str], contract: InputContract, *, source: str) -> None:
    """Before any work: every model input column present, and numbers where numbers are expected.

    ``columns`` maps the input's column names to a kind (``number``, ``text`` or ``other``,
    from the file schema or the first rows).  The error names every missing column, and every
    column holding text where the model takes numbers and the text is not numeric.
    """
    missing = [c for c in contract.columns if c not in columns]
    mistyped = [
        f"{c} ({columns[c]}, expected number)"
        for c in contract.columns
        if c in columns and contract.types.get(c) in ("double", "float", "long", "integer")
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

        from pipeline._engine import parquet_batches

        try:
            batches = (batch.to_pandas() for batch in parquet_batches(pq.ParquetFile(path), batch_rows=rows))
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

            from pipeline._engine import parquet_batches

            batch = next(parquet_batches(pq.ParquetFile(path), batch_rows=rows), None)
            return batch.to_pandas() if batch is not None else pd.DataFrame()
        return pd.read_csv(path, nrows=rows, low_memory=False)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise DataError(f"{path}: cannot read ({str(err).splitlines()[0]})") from err
