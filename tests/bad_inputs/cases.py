"""The bad-input corpus: each case writes a few small files, runs one `churn` command and names
the one `error:` line it must print (a regex, matched against the whole first line).

``tests/test_bad_inputs.py`` runs every case through the installed console script
(``tests/servers.py: run_churn``) and checks the exit code, that stderr is that one line (argument
errors: that line first, then at most two short lines of usage), and that nothing was written,
registered or moved.  ``docs/robustness.md`` lists the same cases with the line a user sees.

``model=True`` cases run in a folder whose store holds a registered table model trained on
``table.csv`` (``test_bad_inputs.trained``), so they fail after the model is loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    expected: str
    setup: Callable[[Path], None] = lambda folder: None
    exit_code: int = 1
    model: bool = False
    #: Paths (relative to the case folder) that must not exist afterwards.
    not_written: tuple[str, ...] = ("out.csv",)


def table(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """A small valid churn table: id, two numbers, a category, a value and a Yes/No label."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n).round(3)
    return pd.DataFrame({
        "customer": [f"C{i:04d}" for i in range(n)],
        "x": x,
        "tenure": rng.integers(0, 60, n),
        "contract": rng.choice(["Month-to-month", "One year", "Two year"], n),
        "monthly": rng.uniform(20, 100, n).round(2),
        "Churn": np.where(rng.random(n) < 1 / (1 + np.exp(-(x - 1))), "Yes", "No"),
    })


def _csv(name: str, frame_or_text, **kwargs) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        if isinstance(frame_or_text, str):
            (folder / name).write_text(frame_or_text)
        else:
            frame = frame_or_text() if callable(frame_or_text) else frame_or_text
            frame.to_csv(folder / name, index=False, **kwargs)
    return write


def _parquet(name: str, frame) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (frame() if callable(frame) else frame).to_parquet(folder / name, index=False)
    return write


def _both(*steps) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        for step in steps:
            step(folder)
    return write


def _mkdir(name: str, *steps) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (folder / name).mkdir()
        for step in steps:
            step(folder / name)
    return write


def _link(name: str, target: str) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        os.symlink(target, folder / name)
    return write


def _toml(text: str) -> Callable[[Path], None]:
    return _csv("c.toml", text)


def _with(**changes) -> Callable[[], pd.DataFrame]:
    """The table with some cells changed: ``column=(row, value)`` or ``column=[(row, value), ...]``."""
    def build() -> pd.DataFrame:
        frame = table()
        for column, edits in changes.items():
            for row, value in edits if isinstance(edits, list) else [edits]:
                if not isinstance(value, (int, float, np.floating)) or frame[column].dtype.kind not in "if":
                    frame[column] = frame[column].astype(object)
                frame.loc[row, column] = value
        return frame
    return build


def _subscribers_only(rows: int) -> Callable[[Path], None]:
    """A record folder whose subscribers table has the model's columns and ``rows`` rows."""
    def write(folder: Path) -> None:
        frame = pd.DataFrame({
            "subscriber_id": [f"S{i}" for i in range(rows)], "activation_date": ["2024-01-01"] * rows,
            "plan": ["basic"] * rows, "monthly_fee": [30000.0] * rows, "contract_type": ["none"] * rows,
            "contract_start": [None] * rows, "contract_end": [None] * rows,
            "device_instalment_balance": [0.0] * rows, "early_termination_fee": [0.0] * rows,
            "family_bundle": [False] * rows, "fixed_line_bundle": [False] * rows, "age_band": ["30-39"] * rows,
            "region": ["Seoul"] * rows, "channel": ["store"] * rows,
        })
        frame.to_csv(folder / "subscribers.csv", index=False)
    return write


TABLE = _csv("t.csv", table)
TRAIN = ("train", "--data", "t.csv", "--id", "customer", "--target", "Churn", "--positive", "Yes")
SCORE = ("score", "--data", "t.csv", "--output", "out.csv")
ARG = 2  # argparse's exit code

CASES: list[Case] = [
    # --- zero rows, missing and unreadable inputs -----------------------------------------
    Case("score_csv_header_only", SCORE, r"error: t\.csv: no rows \(the table has a header and no data\)",
         _csv("t.csv", "customer,x,tenure,contract,monthly\n")),
    Case("score_csv_empty_file", SCORE, r"error: t\.csv: empty file \(no header row, no rows\)", _csv("t.csv", "")),
    Case("score_parquet_no_rows", ("score", "--data", "t.parquet", "--output", "out.csv"),
         r"error: t\.parquet: no rows \(the table has a header and no data\)", _parquet("t.parquet", lambda: table().head(0))),
    Case("score_record_folder_no_subscribers_rows", ("score", "--data", "base", "--output", "out.csv"),
         r"error: base: the subscribers table has no rows", _mkdir("base", _subscribers_only(0))),
    Case("score_folder_without_subscribers", ("score", "--data", "base", "--output", "out.csv"),
         r"error: base: no subscribers table \(looked for subscribers/part-\*\.parquet, subscribers\.parquet and "
         r"subscribers\.csv; the folder has usage_monthly\)",
         _mkdir("base", _csv("usage_monthly.csv", "subscriber_id,month\nS1,2025-01-01\n"))),
    Case("score_folder_not_a_record_source", ("score", "--data", "notes", "--output", "out.csv"),
         r"error: notes: not a record folder \(no subscribers table, nor any other record table\) and not a table file "
         r"\(CSV or Parquet\)", _mkdir("notes", _csv("readme.txt", "hello\n"))),
    Case("score_input_not_found", ("score", "--data", "nope.csv", "--output", "out.csv"),
         r"error: nope\.csv: not found \(expected a record folder, a database URL or a CSV or Parquet table\)"),
    Case("score_input_unsupported_type", ("score", "--data", "t.xlsx", "--output", "out.csv"),
         r"error: t\.xlsx: unsupported file type '\.xlsx' \(expected \.csv or \.parquet\)", _csv("t.xlsx", "x\n1\n")),
    Case("score_duplicate_header", SCORE, r"error: t\.csv: column x appears 2 times \(columns 2, 4\); column names must be unique",
         _csv("t.csv", "customer,x,tenure,x\nC1,1,2,3\n")),
    # --- outputs ---------------------------------------------------------------------------
    Case("score_output_is_the_input", ("score", "--data", "t.csv", "--output", "t.csv"),
         r"error: t\.csv: --output is the input --data t\.csv; write to another file \(the input would be overwritten\)",
         TABLE, not_written=()),
    Case("score_output_is_the_input_relative", ("score", "--data", "t.csv", "--output", "sub/../t.csv"),
         r"error: sub/\.\./t\.csv: --output is the input --data t\.csv; .*", _both(TABLE, _mkdir("sub")), not_written=()),
    Case("score_output_is_the_input_through_a_link", ("score", "--data", "t.csv", "--output", "link.csv"),
         r"error: link\.csv: --output is the input --data t\.csv; .*", _both(TABLE, _link("link.csv", "t.csv")),
         not_written=()),
    Case("score_output_inside_the_record_folder", ("score", "--data", "base", "--output", "base/list.csv"),
         r"error: base/list\.csv: --output is inside the input record folder base; write it elsewhere .*",
         _mkdir("base", _subscribers_only(3)), not_written=("base/list.csv",)),
    Case("score_output_unsupported_type", ("score", "--data", "t.csv", "--output", "out.txt"),
         r"error: out\.txt: unsupported output type '\.txt' \(expected \.csv or \.parquet\)", TABLE,
         not_written=("out.txt",)),
    Case("score_output_folder_missing", ("score", "--data", "t.csv", "--output", "nowhere/out.csv"),
         r"error: nowhere/out\.csv: folder nowhere does not exist", TABLE, not_written=("nowhere",)),
    Case("features_output_inside_the_record_folder", ("features", "--data", "base", "--output", "base/f.parquet"),
         r"error: base/f\.parquet: --output is inside the input record folder base; .*",
         _mkdir("base", _subscribers_only(3)), not_written=("base/f.parquet",)),
    Case("features_output_not_parquet", ("features", "--data", "base", "--output", "f.csv"),
         r"error: f\.csv: the feature table is written as Parquet \(\.parquet\)", _mkdir("base", _subscribers_only(3)),
         not_written=("f.csv",)),
    Case("features_of_a_table", ("features", "--data", "t.csv", "--output", "f.parquet"),
         r"error: t\.csv: not a record folder or database URL", TABLE, not_written=("f.parquet",)),
    # --- arguments and configuration --------------------------------------------------------
    Case("score_budget_not_a_number", (*SCORE, "--budget", "abc"),
         r"error: argument --budget: invalid float value: 'abc'", TABLE, exit_code=ARG),
    Case("score_capacity_not_whole", (*SCORE, "--capacity", "1.5"),
         r"error: argument --capacity: invalid int value: '1\.5'", TABLE, exit_code=ARG),
    Case("score_budget_and_capacity", (*SCORE, "--budget", "10", "--capacity", "5"),
         r"error: argument --capacity: not allowed with argument --budget", TABLE, exit_code=ARG),
    Case("score_unknown_option", (*SCORE, "--bogus"), r"error: unrecognized arguments: --bogus", TABLE, exit_code=ARG),
    Case("score_unknown_engine", (*SCORE, "--engine", "dask"),
         r"error: argument --engine: invalid choice: 'dask' \(choose from '?pandas'?, '?spark'?\)", TABLE, exit_code=ARG),
    Case("score_negative_budget", (*SCORE, "--budget", "-5"), r"error: --budget and --capacity must not be negative",
         TABLE),
    Case("score_control_share_out_of_range", (*SCORE, "--control-share", "1.5"),
         r"error: --control-share must be at least 0 and below 1, got 1\.5", TABLE),
    Case("no_command", (), r"error: the following arguments are required: COMMAND", exit_code=ARG),
    Case("train_without_data", ("train",), r"error: the following arguments are required: --data", exit_code=ARG),
    Case("promote_not_a_number", ("promote", "seven"), r"error: argument version: invalid int value: 'seven'",
         exit_code=ARG),
    Case("config_unknown_key", (*SCORE, "--config", "c.toml"),
         r"error: c\.toml \[scoring\]: unknown key\(s\) file_mod; expected one of .*",
         _both(TABLE, _toml("[scoring]\nfile_mod = 0o640\n"))),
    Case("config_file_mode_unreadable_by_owner", (*SCORE, "--config", "c.toml"),
         r"error: scoring\.file_mode must be 0 \(follow the umask\) or a mode such as 0o640 that lets the owner read and write",
         _both(TABLE, _toml("[scoring]\nfile_mode = 0o400\n"))),
    Case("config_not_found", (*SCORE, "--config", "missing.toml"), r"error: missing\.toml: config file not found", TABLE),
    # --- training tables ----------------------------------------------------------------------
    Case("train_duplicate_header", TRAIN,
         r"error: t\.csv: column tenure appears 2 times \(columns 3, 7\); column names must be unique",
         _csv("t.csv", lambda: table().assign(extra=1).rename(columns={"extra": "tenure"}))),
    Case("train_header_only", TRAIN, r"error: t\.csv: no rows \(the table has a header and no data\)",
         _csv("t.csv", lambda: table().head(0))),
    Case("train_third_label_value", TRAIN,
         r"error: t\.csv: column Churn: rows 3, 7 have maybe: a label takes two values, 'Yes' \(churned\) and one "
         r"other \('No' here\); fix or remove those rows", _csv("t.csv", _with(Churn=[(3, "maybe"), (7, "maybe")]))),
    Case("train_unknown_label_without_positive", TRAIN[:-2],
         r"error: t\.csv: column Churn: row 5 has Unknown, which is not 1/0, true/false or yes/no \(name the churn "
         r"value with --positive\)", _csv("t.csv", _with(Churn=(5, "Unknown")))),
    Case("train_blank_label", TRAIN, r"error: t\.csv: column Churn: row 4 has no label",
         _csv("t.csv", _with(Churn=(4, "")))),
    Case("train_infinity_as_text", TRAIN,
         r"error: t\.csv: column x: row 6 is infinite \(expected a finite number or a blank\)",
         _csv("t.csv", _with(x=(6, "inf")))),
    Case("train_infinity_in_parquet", ("train", "--data", "t.parquet", "--id", "customer", "--target", "Churn",
                                      "--positive", "Yes"),
         r"error: t\.parquet: column monthly: rows 2, 9 are infinite \(expected a finite number or a blank\)",
         _parquet("t.parquet", _with(monthly=[(2, np.inf), (9, -np.inf)]))),
    Case("train_value_column_infinite", (*TRAIN, "--value", "monthly"),
         r"error: t\.csv: column monthly: row 1 is infinite \(expected a finite number or a blank\)",
         _csv("t.csv", _with(monthly=(1, "Infinity")))),
    Case("train_repeated_id", TRAIN,
         r"error: t\.csv: column customer: rows 0, 1 repeat an id \(expected one row per subscriber\)",
         _csv("t.csv", _with(customer=(1, "C0000")))),
    Case("train_missing_target_column", ("train", "--data", "t.csv", "--id", "customer", "--target", "churned"),
         r"error: t\.csv: missing column\(s\) churned \(columns present: customer, x, tenure, contract, monthly, Churn\)",
         TABLE),
    Case("train_table_without_target", ("train", "--data", "t.csv"),
         r"error: t\.csv: a single table needs --target \(the churn label column\) and usually --id", TABLE),
    Case("train_exclude_unknown_column", (*TRAIN, "--exclude", "tenur"),
         r"error: t\.csv: data\.exclude_columns / --exclude names tenur, which the data does not have \(columns: "
         r"customer, x, tenure, contract, monthly\)", TABLE),
    Case("train_use_protected_unknown_column", (*TRAIN, "--config", "c.toml"),
         r"error: t\.csv: data\.use_protected names gender, which the data does not have .*",
         _both(TABLE, _toml('[data]\nuse_protected = ["gender"]\n'))),
    Case("train_snapshots_closer_than_the_label_window", (*TRAIN, "--time-column", "month"),
         r"error: t\.csv: every training snapshot's label window \(90 days, data\.horizon_days\) overlaps the hold-out "
         r"from 2025-02-01; add snapshots at least that long before it",
         _csv("t.csv", lambda: pd.concat([table(seed=1).assign(month="2025-01-01"),
                                          table(seed=2).assign(month="2025-02-01")], ignore_index=True))),
    # --- records --------------------------------------------------------------------------------
    Case("records_infinite_fee", ("features", "--data", "base", "--output", "f.parquet", "--snapshot", "2025-05-01"),
         r"error: base: subscribers\.monthly_fee: row 1 is infinite \(expected a finite number\)",
         _mkdir("base", _subscribers_only(3), lambda f: (f / "subscribers.csv").write_text(
             (f / "subscribers.csv").read_text().replace("S1,2024-01-01,basic,30000.0", "S1,2024-01-01,basic,inf")
         )), not_written=("f.parquet",)),
    # --- scoring with a trained model -------------------------------------------------------------
    Case("score_infinite_value", SCORE, r"error: t\.csv: column x: row 3 is infinite \(expected a finite number or a blank\)",
         _csv("t.csv", _with(x=(3, "-inf"))), model=True),
    Case("score_missing_model_column", SCORE, r"error: t\.csv: missing column\(s\) the model needs: tenure",
         _csv("t.csv", lambda: table().drop(columns=["tenure"])), model=True),
    Case("score_text_where_a_number_is_expected", SCORE,
         r"error: t\.csv: mistyped column\(s\): x \(text, expected number\)",
         _csv("t.csv", lambda: table().assign(x="high")), model=True),
]
