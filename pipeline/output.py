"""Writing lists: CSV or Parquet, atomically, the same bytes however the rows arrive.

``ListWriter`` writes a list batch by batch under a temporary name and renames it into place
when complete (nothing partial is ever left, and a file already there stays as it was until
then); CSV text that a spreadsheet would run as a formula is neutralised
(``neutralise_formulas``) and money and probabilities are rounded; Parquet row groups have a
fixed size.  ``check_destination`` is the one check of a list's destination, made before any
work.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.errors import DataError

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


def check_destination(path: str | Path, *, kind: str = "output", parquet_only: bool = False) -> str:
    """Before any work: a file to write is CSV or Parquet (only Parquet with ``parquet_only``),
    in a folder that exists; its suffix.  ``kind`` names the file in the error (``output``,
    ``call list``, ``feature table``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if parquet_only and suffix not in (".parquet", ".pq"):
        raise DataError(f"{path}: the {kind} is written as Parquet (.parquet)")
    if suffix not in (".csv", ".parquet", ".pq"):
        raise DataError(f"{path}: unsupported {kind} type {suffix!r} (expected .csv or .parquet)")
    if not path.parent.exists():
        raise DataError(f"{path}: folder {path.parent} does not exist")
    return suffix


def plain_text(frame: pd.DataFrame) -> pd.DataFrame:
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
        self.csv = check_destination(self.path) == ".csv"
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
            self._schema = pa.Schema.from_pandas(plain_text(frame.head(0)), preserve_index=False)
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
