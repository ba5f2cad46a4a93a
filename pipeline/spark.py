"""Scoring on Spark: the registered model applied to a subscriber table with ``spark_udf``.

The pandas engine (``pipeline.score``) scores on one machine; this module applies the same
logged model to a subscriber-level table (a churn table, or the features Parquet of a
record base) with ``mlflow.pyfunc.spark_udf``, so that a Spark cluster does the work.
Either engine gives each subscriber the same churn probability; ranking, tiers and the
at-risk list are then computed from ``(subscriber_id, churn_probability)`` exactly as for
the pandas engine.

How the rows reach the model
    Columns are cast to the types of the model's signature before scoring, the way the
    pandas engine's CSV reader and the model's own ``TableTyper`` would see them: CSV is
    read as text and numbers are parsed with ``try_cast`` (text that is not a number
    becomes missing, as the ``TableTyper`` does), so both engines give the model the same
    values.  The model returns ``[P(stay), P(churn)]`` per row; the last element is kept,
    which stays right if the model is ever logged to return the churn probability alone.

Where things run
    The driver resolves ``model_uri`` (a registry alias on a tracking server, a run, a
    path), downloads the model once and ships it to the executors with the job, so only
    the driver needs to reach the tracking server.  Executors need the same Python
    packages as the driver: ``PYSPARK_PYTHON`` names their interpreter (it defaults to
    this process's Python, right for ``local[N]``; on a cluster set it to the path of an
    identical environment on the workers).  See ``docs/scaling.md``.

Two ways out
    ``score_spark`` collects ``(subscriber_id, churn_probability, kept columns)`` to the
    driver as a pandas frame in input order: the ids and probabilities of 10 million
    subscribers take about 1 GB there.  ``score_spark_to_parquet`` writes them as a Parquet
    dataset instead (one part file per partition, written to a temporary folder and
    renamed into place when complete) and returns its path, for bases whose scores should
    not pass through one machine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError, DataError, ModelError, PipelineError, first_rows

log = logging.getLogger(__name__)

DEFAULT_MASTER = "local[2]"
ID_COLUMN = "subscriber_id"
PROBABILITY_COLUMN = "churn_probability"
UPLIFT_COLUMN = "estimated_uplift"

#: Rows of a text column sampled to decide whether it holds numbers (as the pandas engine does).
SAMPLE_ROWS = 1000

#: Rows handed to the model per call inside each Spark task (Arrow batch size).
DEFAULT_BATCH_ROWS = 10_000

#: The Spark SQL type each MLflow signature column type is cast to before scoring.
SIGNATURE_TO_SPARK = {
    "string": "string",
    "double": "double",
    "float": "float",
    "long": "bigint",
    "integer": "int",
    "boolean": "boolean",
    "datetime": "timestamp",
    "binary": "binary",
}

_NUMERIC = {"double", "float", "bigint", "int"}
#: Spark types a numeric model input may arrive as (text is parsed as pandas would; anything
#: else, such as dates or arrays, is refused before any work).
_NUMBER_SOURCES = {"string", "double", "float", "bigint", "int", "smallint", "tinyint", "boolean", "decimal"}

#: Text that ``pandas.read_csv`` reads as missing (its default ``na_values``).
PANDAS_NA_TEXT = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                  "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")

# Hidden helper columns that carry each row's place in the input.
_FILE, _BLOCK, _ROW = "__churn_file", "__churn_block", "__churn_row"

_PANDAS_WARNING = "PySpark does not yet fully support pandas"

# Errors only, on stderr.  The ``org.apache.spark`` logger is set explicitly, at the root's
# level, so that Spark does not announce "Setting default log level" on start.
_QUIET_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.spark.name = org.apache.spark
logger.spark.level = error
logger.hadoop.name = org.apache.hadoop
logger.hadoop.level = error
"""


def java_available() -> bool:
    """True when a Java runtime for Spark is on ``PATH`` or under ``JAVA_HOME``."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return True
    return shutil.which("java") is not None


def session_conf(master: str, *, batch_rows: int = DEFAULT_BATCH_ROWS) -> dict[str, str]:
    """Spark settings for scoring: Arrow transfers, quiet progress, and loopback-only when local.

    Parameters
    ----------
    master : str
        The Spark master URL, e.g. ``local[2]`` or ``spark://host:7077``.
    batch_rows : int
        Rows handed to the model per call inside each task.
    """
    if batch_rows < 1:
        raise ConfigError(f"batch_rows must be a positive number of rows, got {batch_rows}")
    conf = {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(batch_rows),
        "spark.ui.showConsoleProgress": "false",
        # Python workers must not print pyspark's pandas-version notice on every task.
        "spark.executorEnv.PYTHONWARNINGS": f"ignore:{_PANDAS_WARNING}:FutureWarning",
    }
    if master.startswith("local"):
        # One machine: bind the driver and its block manager to loopback, no web UI port,
        # and a few shuffle partitions instead of 200 (only the id check shuffles).
        conf.update(
            {
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
                "spark.ui.enabled": "false",
                "spark.sql.shuffle.partitions": "4",
            }
        )
    return conf


@contextlib.contextmanager
def spark_session(
    master: str = DEFAULT_MASTER,
    *,
    app_name: str = "post-breach-churn-score",
    python: str | None = None,
    conf: Mapping[str, str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Iterator[Any]:
    """A SparkSession for scoring, stopped on exit.

    Parameters
    ----------
    master : str
        Spark master URL: ``local[2]`` (two worker threads on this machine, the default),
        ``spark://host:7077``, ``yarn``, ``k8s://...``.
    app_name : str
        Name shown in the cluster's UI.
    python : str, optional
        The Python interpreter of the executors.  Default: ``$PYSPARK_PYTHON`` when set,
        else this process's interpreter (``sys.executable``).  Spark reads it from the
        ``PYSPARK_PYTHON`` environment variable, which is therefore set in this process.
    conf : mapping, optional
        Extra Spark settings; they override ``session_conf``'s.
    batch_rows : int
        Rows handed to the model per call inside each task.

    Raises
    ------
    ConfigError
        When pyspark is not installed or no Java runtime is found.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as err:
        raise ConfigError("Spark scoring needs pyspark: pip install 'post-breach-churn[spark]'") from err
    if not java_available():
        raise ConfigError("Spark needs a Java runtime (17 or newer): no java on PATH and JAVA_HOME is not set")
    active = SparkSession.getActiveSession()
    if active is not None:  # Spark allows one context per process: use it, leave it running
        log.warning("using the running Spark session (master %s); master, python and conf are ignored",
                    active.sparkContext.master)
        yield active
        return
    # Spark takes the executors' interpreter from the environment, not from its settings.
    os.environ["PYSPARK_PYTHON"] = python or os.environ.get("PYSPARK_PYTHON") or sys.executable
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # else Spark binds to the host's address
    settings = {**session_conf(master, batch_rows=batch_rows), **dict(conf or {})}
    log_folder = None
    if "spark.driver.extraJavaOptions" not in settings:
        # Spark's driver logs INFO and WARN lines on stderr; keep errors only (a user's own
        # log4j set-up, given through extraJavaOptions, wins).
        log_folder = Path(tempfile.mkdtemp(prefix="churn-spark-log-"))
        (log_folder / "log4j2.properties").write_text(_QUIET_LOG4J2)
        settings["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile={(log_folder / 'log4j2.properties').as_uri()}"
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_PANDAS_WARNING, category=FutureWarning)
            try:
                spark = builder.getOrCreate()
            except Exception as err:  # the JVM did not start: name the cause in one line
                raise ConfigError(f"cannot start Spark (master {master}): {_first_line(err)}") from err
        try:
            yield spark
        finally:
            spark.stop()
    finally:
        if log_folder is not None:
            shutil.rmtree(log_folder, ignore_errors=True)


def signature_types(model_uri: str) -> dict[str, str]:
    """The model's input columns and their MLflow types (``string``, ``double``...), from its signature."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        info = mlflow.models.get_model_info(model_uri)
    except (MlflowException, OSError) as err:
        raise ModelError(f"cannot load model {model_uri}: {_first_line(err)}") from err
    if info.signature is None or info.signature.inputs is None:
        return {}
    return {spec.name: spec.type.name for spec in info.signature.inputs.inputs if getattr(spec, "name", None)}


def input_format(text: str, data_format: str = "auto") -> str:
    """``csv`` or ``parquet``: ``data_format`` itself, or by suffix when ``auto`` (a folder is Parquet)."""
    if data_format not in ("auto", "parquet", "csv"):
        raise ConfigError(f"data_format must be auto, parquet or csv, got {data_format!r}")
    if data_format != "auto":
        return data_format
    lowered = text.lower()
    return "csv" if lowered.endswith((".csv", ".txt", ".csv.gz")) else "parquet"


def read_input(spark, data: str | Path, *, data_format: str = "auto"):
    """A Spark DataFrame of ``data`` (Parquet file or folder, or CSV with a header row).

    CSV is read as text, every column a string, with pandas' missing-value markers
    (``PANDAS_NA_TEXT``) as nulls, so that the values reach the model as the pandas engine
    reads them; ``spark_scores`` casts them to the model's types.  Three hidden
    columns record each row's place in the input (file, block, row), for ``score_spark``
    to return rows in input order.
    """
    from pyspark.errors import AnalysisException

    text = str(data)
    fmt = input_format(text, data_format)
    if "://" not in text and not Path(text).exists():
        raise DataError(f"{text}: file not found")
    reader = spark.read
    if fmt == "csv":
        # RFC 4180 quoting (a doubled quote inside quotes), as pandas and spreadsheets write it.
        reader = reader.option("header", "true").option("escape", '"').option("inferSchema", "false")
    try:
        frame = reader.format(fmt).load(text)
    except AnalysisException as err:
        raise DataError(f"{text}: cannot read with Spark ({_first_line(err)})") from err
    from pyspark.sql import functions as F

    columns = list(frame.columns)
    placed = frame.select(
        "*",
        F.col("_metadata.file_path").alias(_FILE),
        F.col("_metadata.file_block_start").alias(_BLOCK),
        F.monotonically_increasing_id().alias(_ROW),
    )
    if fmt != "csv":
        return placed
    # pandas reads "NA", "null", "n/a"... as missing: so must Spark, or the model sees text.
    blanks = list(PANDAS_NA_TEXT)
    return placed.select(
        *[F.when(F.col(_quote(c)).isin(blanks), F.lit(None)).otherwise(F.col(_quote(c))).alias(c) for c in columns],
        _FILE, _BLOCK, _ROW,
    )


def spark_scores(
    spark,
    data: str | Path,
    *,
    model_uri: str,
    input_columns: Sequence[str],
    id_column: str | None = None,
    keep_columns: Sequence[str] = (),
    data_format: str = "auto",
    partitions: int | None = None,
    uplift_model_uri: str | None = None,
    uplift_columns: Sequence[str] = (),
):
    """The lazy Spark DataFrame of scores: id, probability, kept columns and the input-order columns.

    Checks the columns before any work: every input column the model needs must be
    present, and of a type that can be cast to the model's signature type.

    Parameters
    ----------
    spark : SparkSession
        The session to run on (see ``spark_session``).
    data : str or Path
        A Parquet file or folder, or a CSV file with a header row (``file://``, ``hdfs://``
        and ``s3a://`` URLs work when the cluster can read them).
    model_uri : str
        The model: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/ID/model``.
        MLflow's tracking URI must already point at its store (``pipeline.tracking.connect``).
    input_columns : sequence of str
        The model's raw input columns (its metadata's ``input_columns``), in training order.
    id_column : str, optional
        The subscriber id column; without one, ids are row numbers from 1 (``score_spark``).
    keep_columns : sequence of str
        Columns passed through unchanged beside the scores (e.g. the monthly value).
    data_format : str
        ``auto`` (by suffix: ``.csv``/``.txt``/``.csv.gz`` are CSV, anything else Parquet),
        ``parquet`` or ``csv``.
    partitions : int, optional
        Repartition the input into this many tasks (default: Spark's file splits).
    uplift_model_uri, uplift_columns : optional
        A response model (its pyfunc ``predict`` answers each row's estimated uplift) and its
        raw input columns: the scores then also hold ``estimated_uplift``.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, DoubleType

    import mlflow

    input_columns = list(input_columns)
    if not input_columns:
        raise ModelError(f"model {model_uri}: no input columns given (expected its metadata's input_columns)")
    if partitions is not None and partitions < 1:
        raise ConfigError(f"partitions must be a positive number, got {partitions}")
    kept = [name for name in dict.fromkeys(keep_columns) if name != id_column]
    clashes = [name for name in kept if name in (ID_COLUMN, PROBABILITY_COLUMN)]
    if clashes:
        raise ConfigError(f"cannot keep column(s) {', '.join(clashes)} beside the scores: the output has columns of that name")
    frame = read_input(spark, data, data_format=data_format)
    casts = check_input(frame, input_columns, signature_types(model_uri), source=str(data),
                        other_columns=[*([id_column] if id_column else []), *kept], model_uri=model_uri)
    if partitions is not None:
        frame = frame.repartition(partitions)
    model_inputs = [F.expr(f"try_cast({_quote(name)} AS {casts[name]})").alias(name) if name in casts else F.col(_quote(name))
                    for name in input_columns]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PANDAS_WARNING, category=FutureWarning)
        try:
            predict = mlflow.pyfunc.spark_udf(spark, model_uri, result_type=ArrayType(DoubleType()), env_manager="local")
        except Exception as err:
            raise ModelError(f"cannot load model {model_uri} for Spark: {_first_line(err)}") from err
    if id_column:
        ids = F.trim(F.col(_quote(id_column)).cast("string"))
    else:
        ids = F.lit(None).cast("string")
    # The model answers [P(stay), P(churn)]: the last element is the churn probability.
    probability = F.element_at(predict(F.struct(*model_inputs)), -1)
    uplift = []
    if uplift_model_uri is not None:
        uplift_casts = check_input(frame, list(uplift_columns), signature_types(uplift_model_uri), source=str(data),
                                   model_uri=uplift_model_uri)
        uplift_inputs = [F.expr(f"try_cast({_quote(name)} AS {uplift_casts[name]})").alias(name)
                         if name in uplift_casts else F.col(_quote(name)) for name in uplift_columns]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_PANDAS_WARNING, category=FutureWarning)
            try:
                respond = mlflow.pyfunc.spark_udf(spark, uplift_model_uri, result_type=DoubleType(), env_manager="local")
            except Exception as err:
                raise ModelError(f"cannot load response model {uplift_model_uri} for Spark: {_first_line(err)}") from err
        uplift = [respond(F.struct(*uplift_inputs)).alias(UPLIFT_COLUMN)]
    return frame.select(
        ids.alias(ID_COLUMN),
        probability.alias(PROBABILITY_COLUMN),
        *uplift,
        *[F.col(_quote(name)).alias(name) for name in kept],
        _FILE,
        _BLOCK,
        _ROW,
    )


def check_input(frame, input_columns: Sequence[str], signature: Mapping[str, str], *, source: str,
                other_columns: Sequence[str] = (), model_uri: str = "the model") -> dict[str, str]:
    """Before any work: every column present, numbers where the model takes numbers; the casts to apply.

    A text column (every CSV column) where the signature has a number is mistyped when
    fewer than 95% of the non-blank values among its first ``SAMPLE_ROWS`` rows are numbers
    (``pipeline.prepare.holds_numbers``),
    as the pandas engine judges it; a date, array or other non-numeric type always is.

    Parameters
    ----------
    frame : pyspark.sql.DataFrame
        The input as read.
    input_columns : sequence of str
        The model's input columns.
    signature : mapping
        MLflow type per input column (``signature_types``); columns absent from it are not cast.
    source : str
        The input's name, for messages.
    other_columns : sequence of str
        Further columns that must be present (the id, kept columns).

    Returns
    -------
    dict
        The Spark type each input column is cast to before scoring.

    Raises
    ------
    DataError
        Naming every missing and every mistyped column.
    """
    from pyspark.sql import functions as F

    present = set(frame.columns)
    missing = [name for name in dict.fromkeys([*input_columns, *other_columns]) if name not in present]
    found = {field.name: field.dataType.simpleString().split("(")[0] for field in frame.schema.fields}
    casts, mistyped, text_numbers = {}, [], []
    for name in input_columns:
        expected = signature.get(name)
        if expected is None or name not in present:
            continue
        target = SIGNATURE_TO_SPARK.get(expected)
        if target is None:
            raise ModelError(f"model {model_uri}: column {name} has signature type {expected}, which Spark scoring cannot give it")
        casts[name] = target
        if target in _NUMERIC:
            if found[name] == "string":
                text_numbers.append(name)
            elif found[name] not in _NUMBER_SOURCES:
                mistyped.append(f"{name} ({found[name]}, expected number)")
    if text_numbers:
        sample = frame.select(*[F.col(_quote(name)).alias(name) for name in text_numbers]).limit(SAMPLE_ROWS)
        counts = []
        for i, name in enumerate(text_numbers):
            filled = F.col(_quote(name)).isNotNull() & (F.trim(F.col(_quote(name))) != "")
            number = F.expr(f"try_cast(trim({_quote(name)}) AS double)").isNotNull()
            counts += [F.sum(filled.cast("int")).alias(f"filled_{i}"), F.sum(number.cast("int")).alias(f"numbers_{i}")]
        row = _run(lambda: sample.agg(*counts).collect()[0], model_uri=model_uri)
        from pipeline.prepare import holds_numbers

        for i, name in enumerate(text_numbers):
            filled, numbers = row[f"filled_{i}"] or 0, row[f"numbers_{i}"] or 0
            if filled and not holds_numbers(numbers, filled):
                mistyped.append(f"{name} (text, expected number)")
    from pipeline.inputs import raise_column_problems

    raise_column_problems(source, missing, mistyped)
    return casts


def score_spark(
    data: str | Path,
    *,
    model_uri: str,
    input_columns: Sequence[str],
    id_column: str | None = None,
    keep_columns: Sequence[str] = (),
    spark=None,
    master: str = DEFAULT_MASTER,
    data_format: str = "auto",
    partitions: int | None = None,
    uplift_model_uri: str | None = None,
    uplift_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Score a subscriber table on Spark; one row per input row, in input order, on the driver.

    Parameters
    ----------
    data, model_uri, input_columns, id_column, keep_columns, data_format, partitions
        As for ``spark_scores``.
    spark : SparkSession, optional
        Run on this session; by default a session on ``master`` is started and stopped.
    master : str
        The Spark master URL when no session is given (default ``local[2]``).

    Returns
    -------
    pandas.DataFrame
        ``subscriber_id`` (str), ``churn_probability`` (float64), then ``keep_columns`` as
        read (text for CSV), in the input's order (files by path, rows in file order).

    Raises
    ------
    DataError
        Missing or mistyped columns, unreadable input, blank or repeated ids.
    ModelError
        The model cannot be loaded or cannot score the rows.
    """
    if spark is None:
        with spark_session(master) as session:
            return score_spark(data, model_uri=model_uri, input_columns=input_columns, id_column=id_column,
                               keep_columns=keep_columns, spark=session, data_format=data_format,
                               partitions=partitions, uplift_model_uri=uplift_model_uri,
                               uplift_columns=uplift_columns)
    scores = spark_scores(spark, data, model_uri=model_uri, input_columns=input_columns, id_column=id_column,
                          keep_columns=keep_columns, data_format=data_format, partitions=partitions,
                          uplift_model_uri=uplift_model_uri, uplift_columns=uplift_columns)
    collected = _run(lambda: scores.toPandas(), model_uri=model_uri)
    ordered = collected.sort_values([_FILE, _BLOCK, _ROW], kind="stable").drop(columns=[_FILE, _BLOCK, _ROW])
    ordered = ordered.reset_index(drop=True)
    if id_column:
        _check_ids(ordered[ID_COLUMN], source=str(data), id_column=id_column)
        ordered[ID_COLUMN] = ordered[ID_COLUMN].astype(str)
    else:
        ordered[ID_COLUMN] = pd.Series(range(1, len(ordered) + 1)).astype(str)
    ordered[PROBABILITY_COLUMN] = ordered[PROBABILITY_COLUMN].astype("float64")
    if UPLIFT_COLUMN in ordered.columns:
        ordered[UPLIFT_COLUMN] = ordered[UPLIFT_COLUMN].astype("float64")
    return ordered


def score_spark_to_parquet(
    data: str | Path,
    output: str | Path,
    *,
    model_uri: str,
    input_columns: Sequence[str],
    id_column: str,
    keep_columns: Sequence[str] = (),
    spark=None,
    master: str = DEFAULT_MASTER,
    data_format: str = "auto",
    partitions: int | None = None,
) -> Path | str:
    """Score a subscriber table on Spark and write the scores as a Parquet dataset; return its path.

    For bases whose scores should not be collected on one machine.  The dataset (a folder
    of ``part-*.parquet`` files, in no particular row order) holds ``subscriber_id``,
    ``churn_probability`` and ``keep_columns``.  A local ``output`` is written to a
    temporary folder beside it and renamed into place when complete, so an interrupted run
    leaves nothing; an earlier Spark output there is replaced.  A URL (``s3a://``,
    ``hdfs://``) is written by Spark's own committer, which marks completion with
    ``_SUCCESS``.

    Parameters
    ----------
    output : str or Path
        The folder to write (local path or URL).
    id_column : str
        The subscriber id column (required: row numbers need a global order that a
        distributed write does not keep).
    data, model_uri, input_columns, keep_columns, spark, master, data_format, partitions
        As for ``score_spark``.

    Raises
    ------
    DataError
        As ``score_spark``, and when ``output`` exists and is not an earlier Spark output.
    """
    if not id_column:
        raise DataError(f"{data}: scoring to a Parquet dataset on Spark needs the subscriber id column")
    if spark is None:
        with spark_session(master) as session:
            return score_spark_to_parquet(data, output, model_uri=model_uri, input_columns=input_columns,
                                          id_column=id_column, keep_columns=keep_columns, spark=session,
                                          data_format=data_format, partitions=partitions)
    from pyspark.sql import functions as F

    local = "://" not in str(output) or str(output).startswith("file://")
    target = Path(str(output).removeprefix("file://")) if local else None
    if target is not None:
        _check_output_folder(target)
    scores = spark_scores(spark, data, model_uri=model_uri, input_columns=input_columns, id_column=id_column,
                          keep_columns=keep_columns, data_format=data_format, partitions=partitions)
    blank_or_repeated = (
        scores.groupBy(ID_COLUMN).agg(F.count(F.lit(1)).alias("n"))
        .where((F.col("n") > 1) | F.col(ID_COLUMN).isNull() | (F.col(ID_COLUMN) == ""))
        .limit(5)
    )
    problems = _run(lambda: blank_or_repeated.collect(), model_uri=model_uri)
    if problems:
        shown = ", ".join(repr(row[ID_COLUMN]) if row[ID_COLUMN] else "blank" for row in problems)
        raise DataError(f"{data}: column {id_column}: ids blank or repeated ({shown}); expected one row per subscriber")
    written = scores.drop(_FILE, _BLOCK, _ROW)
    if target is None:
        _run(lambda: written.write.mode("overwrite").parquet(str(output)), model_uri=model_uri)
        return str(output)
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        _run(lambda: written.write.parquet(str(staging)), model_uri=model_uri)
        _swap_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# --- helpers ------------------------------------------------------------------------------


def _quote(name: str) -> str:
    """A column name as Spark SQL reads it, whatever characters it holds."""
    return "`" + str(name).replace("`", "``") + "`"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _run(action, *, model_uri: str):
    """Run a Spark action; turn Spark's failures into the project's one-line errors."""
    from pyspark.errors import AnalysisException, PythonException

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PANDAS_WARNING, category=FutureWarning)
        # pyspark's Arrow-to-pandas conversion still passes ``copy=`` (deprecated in pandas 3).
        warnings.filterwarnings("ignore", message="The copy keyword is deprecated", module="pyspark")
        try:
            return action()
        except PythonException as err:  # the model failed inside a task: its last line says why
            lines = [line for line in str(err).splitlines() if line.strip()]
            raise ModelError(f"model {model_uri} cannot score these rows on Spark: {lines[-1].strip() if lines else err}") from err
        except AnalysisException as err:
            raise DataError(f"Spark cannot run the scoring job: {_first_line(err)}") from err
        except PipelineError:
            raise
        except Exception as err:  # py4j and executor failures
            raise ModelError(f"the Spark scoring job failed: {_first_line(err)}") from err


def _check_ids(ids: pd.Series, *, source: str, id_column: str) -> None:
    # Row positions from 0, as the pandas engine (``pipeline.dataset.table_dataset``) names them.
    blank = (ids.isna() | (ids.astype("string") == "")).to_numpy(dtype=bool)
    if blank.any():
        raise DataError(f"{source}: column {id_column}: {first_rows(np.flatnonzero(blank))} have no id")
    repeated = ids.duplicated(keep=False).to_numpy(dtype=bool)
    if repeated.any():
        raise DataError(
            f"{source}: column {id_column}: {first_rows(np.flatnonzero(repeated))} repeat an id "
            "(expected one row per subscriber)"
        )


def _check_output_folder(target: Path) -> None:
    if not target.parent.is_dir():
        raise DataError(f"{target}: folder {target.parent} does not exist")
    if target.exists() and not _is_spark_output(target):
        raise DataError(f"{target}: exists and is not an earlier Spark scoring output; choose another path")


def _is_spark_output(path: Path) -> bool:
    return path.is_dir() and ((path / "_SUCCESS").exists() or not any(path.iterdir()))


def _swap_into_place(staging: Path, target: Path) -> None:
    """Rename the complete ``staging`` folder to ``target``, replacing an earlier output."""
    if not target.exists():
        staging.rename(target)
        return
    retired = target.parent / f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    target.rename(retired)
    try:
        staging.rename(target)
    except OSError:
        retired.rename(target)
        raise
    shutil.rmtree(retired, ignore_errors=True)
