"""Benchmark batch scoring at subscriber-base scale: ``churn score`` against the bare model and MLflow pyfunc.

Issue 6's goal: a generated base (10,000,000 subscribers by default) scored end to end on
2 cores with peak memory under 2 GiB, at no less than half the rows/s of the bare fitted
model's ``predict_proba`` on the already-prepared feature matrix, and no slower than, with
at most half the peak memory of, ``mlflow.pyfunc.load_model(uri).predict`` on the whole base
in one call.  Three measurements, side by side in one run, each in a fresh subprocess whose
wall time and peak RSS (``resource.getrusage(RUSAGE_CHILDREN)`` of a wrapper process) are
recorded:

- **(a) end to end**: ``churn score --data BASE --output scores.parquet --all`` (read the
  record parts, point-in-time features, model, reasons, actions, drift, ranking, every
  subscriber written as Parquet, the MLflow scoring run), and the CRM variant
  ``churn score --data BASE --output at_risk.csv`` (the at-risk list only, as CSV);
- **(b) bare model**: the model loaded with ``mlflow.sklearn.load_model``, its
  ``predict_proba`` timed alone on the prepared feature matrix read back in 250,000-row
  batches from a Parquet file; and (b') the inner ``HistGradientBoostingClassifier`` alone on
  the already-typed matrix (no ``TableTyper``, no calibration);
- **(c) pyfunc**: ``mlflow.pyfunc.load_model(uri).predict(frame)`` on the whole prepared
  feature frame in one call.  ``--pyfunc-rows N`` predicts only the first N rows in that one
  call when the whole base does not fit in memory, and scales its reading, predicting and
  memory above the loaded model linearly to the base (the table says so).

Every figure comes with CPU time (user + system, all threads: the wrapper's
``RUSAGE_CHILDREN`` for (a), ``time.process_time`` around the timed calls for (b) and (c))
next to wall time, since on a shared machine CPU time is the steadier measure, and with the
1-minute load average before and after each measurement.  Measurements are interleaved
run by run so that a change of load hits them alike.

Setup is cached under ``benchmarks/results/`` (git-ignored) and reused: the scored base
(``pipeline.simulate.generate``, seed 42), a 100,000-subscriber training base (seed 7), a
model trained once with ``churn train`` and a fast config (HistGradientBoosting only, no
search, 3 folds, no blend) into its own SQLite MLflow store, and the prepared feature
matrix (``pipeline.dataset.records_dataset`` chunk by chunk, as scoring computes it)::

    .venv/bin/python benchmarks/scoring.py --pyfunc-rows 2000000    # 10,000,000 subscribers, 1 run each
    .venv/bin/python benchmarks/scoring.py --subscribers 1000000 --profile --stages   # 3 runs each, medians
    .venv/bin/python benchmarks/scoring.py --subscribers 1000000 --only a --config my.toml --tag chunk500k
    .venv/bin/python benchmarks/scoring.py --subscribers 1000000 --iterations 200     # a 200-tree model
    .venv/bin/python benchmarks/scoring.py --subscribers 1000000 --default-model     # churn train's own model
    .venv/bin/python benchmarks/scoring.py --report benchmarks/results/scoring-1000000.json

``--iterations N`` trains a model whose boosting runs exactly N iterations (early stopping
off; the same ``churn train`` otherwise, with ``pipeline.model.make_candidate`` wrapped in
the training subprocess), like the issue's 200-iteration reference model.  ``--default-model``
scores with the model ``churn train`` registers with no configuration (every family, the search
and the blend), the one a user gets; (b') is then left out when that model is a blend.  ``--profile``
runs (a) once more under ``cProfile`` (chunks and reasons on the main thread, so that the profile
sees them: CPU, not wall, time) and reports each stage's cumulative time;
``--stages`` times the stages without a profiler, calling the library functions
``churn score`` calls, chunk by chunk, with the peak RSS reached by each.  ``--config`` is
passed to ``churn score`` (chunk sizes, threads); ``--part-subscribers`` sets the part size
of the generated base.  The tables go to stdout; every run's figures, the configuration and
the package versions to ``benchmarks/results/scoring-<N>[-hgb<I>][-<tag>].json``, which
``--report`` prints again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODEL_NAME = "post-breach-churn"
TRAIN_SEED = 7
GIB = 1024.0

#: The fast training configuration: the real ``churn train``, with selection reduced to
#: the booster's defaults, since the benchmark measures scoring, not selection.
TRAIN_TOML = """\
[train]
candidates = ["hist_gradient_boosting"]
search_iterations = 0
cv_folds = 3
blend = false
"""

_GENERATE = """
import sys
sys.path.insert(0, {root!r})
from pipeline import simulate
simulate.generate({n}, seed={seed}, out={out!r}, chunk_subscribers={part}, overwrite=True)
"""

# ``churn train`` in-process, with HistGradientBoosting fixed to ``iterations`` trees when asked.
_TRAIN = """
import sys
sys.path.insert(0, {root!r})
from pipeline import cli, model

iterations = {iterations!r}
if iterations:
    original = model.make_candidate

    def fixed_iterations(family, **kwargs):
        candidate = original(family, **kwargs)
        if family == "hist_gradient_boosting":
            candidate.set_params(classifier__max_iter=iterations, classifier__early_stopping=False)
        return candidate

    model.make_candidate = fixed_iterations
sys.exit(cli.main({argv!r}))
"""

# The prepared feature matrix: the modelling table scoring builds, chunk by chunk, as Parquet.
_FEATURES = """
import sys
sys.path.insert(0, {root!r})
import pyarrow as pa, pyarrow.parquet as pq
from pipeline.config import load_config
from pipeline.dataset import records_dataset
from pipeline.records import iter_record_chunks
from pipeline.schema import TABLES

config = load_config(None)
writer = None
for chunk in iter_record_chunks({base!r}, chunk_subscribers=config.data.chunk_subscribers,
                                tables=[name for name in TABLES if name != "outcomes"]):
    frame = records_dataset(chunk, require_label=False).frame[{columns!r}]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if writer is None:
        writer = pq.ParquetWriter({temp!r}, table.schema, compression="zstd")
    writer.write_table(table)
writer.close()
"""

# (b): predict_proba alone, timed chunk by chunk on the prepared matrix; then the booster alone.
_BARE = """
import json, sys, time
sys.path.insert(0, {root!r})
import mlflow, pyarrow.parquet as pq
from threadpoolctl import threadpool_limits
from pipeline.model import final_estimator

started = time.perf_counter()
model = mlflow.sklearn.load_model({uri!r})
load_seconds = time.perf_counter() - started
steps = getattr(final_estimator(model), "named_steps", {{}})
typer, booster = steps.get("typer"), steps.get("classifier")
if typer is None or not hasattr(booster, "n_iter_"):  # a blend: no single booster to time alone
    typer = booster = None
read = predict = typing = booster_predict = predict_cpu = booster_cpu = 0.0
rows = 0
batches = pq.ParquetFile({features!r}).iter_batches(batch_size={chunk})
with threadpool_limits(limits={threads}):
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            break
        frame = batch.to_pandas()
        t1, c1 = time.perf_counter(), time.process_time()
        model.predict_proba(frame)
        t2, c2 = time.perf_counter(), time.process_time()
        if booster is not None:
            typed = typer.transform(frame)
            t3, c3 = time.perf_counter(), time.process_time()
            booster.predict_proba(typed)
            t4, c4 = time.perf_counter(), time.process_time()
        else:
            typed, t3, c3, t4, c4 = None, t2, c2, t2, c2
        read += t1 - t0; predict += t2 - t1; typing += t3 - t2; booster_predict += t4 - t3
        predict_cpu += c2 - c1; booster_cpu += c4 - c3
        rows += len(frame)
        del frame, typed
print(json.dumps({{"rows": rows, "load_seconds": load_seconds, "read_seconds": read, "predict_seconds": predict,
                  "typing_seconds": typing, "booster_predict_seconds": booster_predict,
                  "predict_cpu_seconds": predict_cpu, "booster_predict_cpu_seconds": booster_cpu,
                  "booster_iterations": None if booster is None else int(booster.n_iter_),
                  "leaves": None if booster is None else booster.max_leaf_nodes,
                  "columns": None if booster is None else int(booster.n_features_in_)}}))
"""

# (c): mlflow.pyfunc on the whole prepared frame in one call.
_PYFUNC = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
import mlflow, pyarrow.parquet as pq

started = time.perf_counter()
model = mlflow.pyfunc.load_model({uri!r})
t1 = time.perf_counter()
loaded_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
source = pq.ParquetFile({features!r})
groups, rows = [], 0
for group in range(source.num_row_groups):  # the first row groups holding the rows asked for (all by default)
    if {rows} and rows >= {rows}:
        break
    groups.append(group)
    rows += source.metadata.row_group(group).num_rows
frame = source.read_row_groups(groups).to_pandas()
del source
t2, c2 = time.perf_counter(), time.process_time()
scores = model.predict(frame)
t3, c3 = time.perf_counter(), time.process_time()
print(json.dumps({{"rows": len(frame), "load_seconds": t1 - started, "read_seconds": t2 - t1,
                  "predict_seconds": t3 - t2, "outputs": len(scores), "loaded_mib": loaded_mib,
                  "predict_cpu_seconds": c3 - c2}}))
"""

# Unprofiled stage timings: the library calls ``churn score`` makes, chunk by chunk, each timed.
_STAGES = """
import contextlib, json, resource, sys, time
sys.path.insert(0, {root!r})
import numpy as np, pandas as pd
from pipeline import tracking
from pipeline.config import load_config
from pipeline.dataset import records_dataset
from pipeline.drift import DriftCounter
from pipeline.jobs import scoring_model
from pipeline.records import iter_record_chunks, validate_records
from pipeline.schema import TABLES
from pipeline.score import ScoreStream, score_dataset

seconds, cpu, peaks = {{}}, {{}}, {{}}

@contextlib.contextmanager
def stage(name):
    # wall time, CPU time of the process (all threads) and the peak RSS so far, summed over chunks
    wall, processor = time.perf_counter(), time.process_time()
    yield
    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - wall
    cpu[name] = cpu.get(name, 0.0) + time.process_time() - processor
    peaks[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

config = load_config({config!r})
with stage("load model"):
    tracking.connect({uri!r})
    scoring = scoring_model(tracking.load_model({model_uri!r}))
results = {{}}
for write_all, output in ((True, {out!r} + "/stages.parquet"), (False, {out!r} + "/stages.csv")):
    what = "--all, Parquet" if write_all else "at-risk list, CSV"
    drift = DriftCounter(scoring.profile)
    stream = ScoreStream(scoring, config, output=output, write_all=write_all)
    chunks = iter_record_chunks({base!r}, chunk_subscribers=min(config.data.chunk_subscribers, config.scoring.chunk_rows),
                                validate=False, tables=[name for name in TABLES if name != "outcomes"],
                                snapshot_date=config.data.snapshot_date, for_features=True)
    while True:
        with stage(f"read and coerce records ({{what}})"):
            records = next(chunks, None)
        if records is None:
            break
        with stage(f"validate records ({{what}})"):
            records = validate_records(records)
        with stage(f"features (records_dataset) ({{what}})"):
            chunk = records_dataset(records, snapshot_date=config.data.snapshot_date,
                                    horizon_days=config.data.horizon_days, require_label=False)
        del records
        with stage(f"drift counting ({{what}})"):
            drift.add(chunk.frame)
        with stage(f"score without reasons (predict, tiers, value, targeting) ({{what}})"):
            plain = score_dataset(scoring, chunk, config, explain=False)
        with stage(f"keep, actions, pool, sorted run (ScoreStream.add) ({{what}})"):
            stream.add(plain, chunk.frame)
        del chunk, plain
    with stage(f"drift PSI ({{what}})"):
        drift.psi()
    with stage(f"reasons for the first explain_rows ({{what}})"):
        explained = stream.explained()
    stream.explained = lambda explained=explained: explained
    with stage(f"rank, target, merge and write ({{what}})"):
        result = stream.finish()
    stream.cleanup()
    results[what] = {{"rows": stream.rows, "rows_written": result["rows_written"], "explained_rows": len(explained)}}
print(json.dumps({{"seconds": seconds, "cpu_seconds": cpu, "peak_mib_after": peaks, "results": results,
                  "rows": stream.rows}}))
"""


# Wraps one measured command: its wall time and peak RSS, isolated from every other child.
_WRAPPER = """
import json, os, resource, subprocess, sys, time
argv = json.loads(sys.argv[1])
load_before = os.getloadavg()[0]
started = time.perf_counter()
done = subprocess.run(argv, capture_output=True, text=True)
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"returncode": done.returncode, "wall_seconds": wall, "peak_mib": usage.ru_maxrss / 1024,
                  "cpu_seconds": usage.ru_utime + usage.ru_stime, "load_before": load_before,
                  "load_after": os.getloadavg()[0], "stdout": done.stdout[-20000:], "stderr": done.stderr[-4000:]}))
"""


def _run(code: str, *, env: dict[str, str], what: str) -> None:
    """Run setup code in a fresh interpreter; fail with its last lines of stderr."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")


def child_env(uri: str | None = None) -> dict[str, str]:
    """The environment of every child: passive OpenMP waiting (as the CLI sets), the benchmark's store."""
    env = dict(os.environ)
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env["MLFLOW_TRACKING_URI"] = uri or env.get("MLFLOW_TRACKING_URI", "")
    if not env["MLFLOW_TRACKING_URI"]:
        del env["MLFLOW_TRACKING_URI"]
    return env


def churn_command() -> list[str]:
    """The ``churn`` console script of this interpreter's environment (or ``python -m pipeline.cli``)."""
    script = Path(sys.executable).with_name("churn")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipeline.cli"]


def ensure_base(n: int, seed: int, part: int) -> Path:
    """The cached generated base of ``n`` subscribers, generating it (in a subprocess) when missing."""
    sys.path.insert(0, str(ROOT))
    from pipeline import simulate

    suffix = "" if part == 250_000 else f"-part{part}"
    folder = RESULTS / f"scoring-base-{n}-seed{seed}{suffix}"
    manifest = folder / "manifest.json"
    if manifest.exists():
        found = json.loads(manifest.read_text(encoding="utf-8"))
        if found.get("generator_version") == simulate.GENERATOR_VERSION and found.get("subscribers") == n:
            return folder
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    _run(_GENERATE.format(root=str(ROOT), n=n, seed=seed, out=str(folder), part=part), env=child_env(),
         what=f"generating {n:,} subscribers")
    print(f"generated {n:,} subscribers into {folder} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return folder


def ensure_model(train_subscribers: int, iterations: int | None, default: bool = False) -> dict:
    """Train the benchmark's model once with ``churn train`` into its own store; return what it is.

    ``default``: ``churn train`` with no config (every candidate family, search and blend), the
    model a user gets, instead of the fast single-booster configuration.
    """
    folder = RESULTS / (f"scoring-model-{train_subscribers}" + (f"-hgb{iterations}" if iterations else "")
                        + ("-default" if default else ""))
    stamp = folder / "model.json"
    if stamp.exists():
        return json.loads(stamp.read_text(encoding="utf-8"))
    base = ensure_base(train_subscribers, TRAIN_SEED, 250_000)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    uri = f"sqlite:///{(folder / 'mlflow.db').as_posix()}"
    argv = ["train", "--data", str(base), "--tracking-uri", uri]
    if not default:
        (folder / "train.toml").write_text(TRAIN_TOML, encoding="utf-8")
        argv += ["--config", str(folder / "train.toml")]
    started = time.perf_counter()
    _run(_TRAIN.format(root=str(ROOT), iterations=iterations, argv=argv), env=child_env(uri),
         what="churn train")
    seconds = time.perf_counter() - started
    model = {"uri": uri, "model_uri": f"models:/{MODEL_NAME}@champion", "train_base": str(base),
             "train_command": " ".join(["churn", *argv]), "iterations_forced": iterations,
             "train_seconds": seconds, "default_config": default}
    model.update(_describe_model(model))
    stamp.write_text(json.dumps(model, indent=2) + "\n", encoding="utf-8")
    print(f"trained the benchmark model in {seconds:.0f} s ({model_words(model)})", file=sys.stderr)
    return model


def _describe_model(model: dict) -> dict:
    """The model's input columns and booster size, read in a subprocess (keeps this process light)."""
    code = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
from pipeline import tracking
from pipeline.model import final_estimator
tracking.connect({model['uri']!r})
loaded = tracking.load_model({model['model_uri']!r})
steps = getattr(final_estimator(loaded.model), "named_steps", {{}})
booster = steps.get("classifier") if "typer" in steps else None
single = booster is not None and hasattr(booster, "n_iter_")  # one HistGradientBoosting, not a blend
print(json.dumps({{"input_columns": loaded.metadata["input_columns"],
                  "booster_iterations": int(booster.n_iter_) if single else None,
                  "leaves": booster.max_leaf_nodes if single else None, "version": loaded.version,
                  "family": loaded.metadata.get("family"), "calibration": loaded.metadata.get("calibration")}}))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=child_env(model["uri"]),
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def ensure_features(base: Path, columns: list[str]) -> Path:
    """The prepared feature matrix of ``base`` as one Parquet file (a row group per scoring chunk)."""
    path = RESULTS / f"{base.name}-features.parquet"
    if path.exists():
        import pyarrow.parquet as pq

        if pq.read_schema(path).names == list(columns):
            return path
    temp = path.with_suffix(".parquet.tmp")
    started = time.perf_counter()
    _run(_FEATURES.format(root=str(ROOT), base=str(base), columns=list(columns), temp=str(temp)), env=child_env(),
         what="building the feature matrix")
    os.replace(temp, path)
    print(f"prepared the feature matrix {path} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return path


def measure(argv: list[str], env: dict[str, str]) -> dict:
    """Run ``argv`` under the wrapper; its wall time, peak RSS, CPU time, load averages, output."""
    done = subprocess.run([sys.executable, "-c", _WRAPPER, json.dumps(argv)], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["returncode"]:
        raise SystemExit(f"{' '.join(argv)} failed:\n{result['stderr']}")
    lines = result["stdout"].strip().splitlines()
    if lines and lines[-1].startswith("{"):
        result["inner"] = json.loads(lines[-1])
    return result


def score_argv(base: Path, output: Path, model: dict, config: str | None, write_all: bool) -> list[str]:
    """The ``churn score`` command of (a)."""
    argv = [*churn_command(), "score", "--data", str(base), "--output", str(output), "--tracking-uri", model["uri"]]
    if write_all:
        argv.append("--all")
    if config:
        argv += ["--config", str(config)]
    return argv


def _job_seconds(stdout: str) -> float | None:
    """The scoring job's own timer, from ``churn score``'s summary line ("... in 12.3s: ...")."""
    import re

    found = re.search(r" in ([0-9.]+)s:", stdout)
    return float(found.group(1)) if found else None


def profile_stages(base: Path, model: dict, config: str | None, out: Path) -> dict:
    """Run (a) once under cProfile; the seconds of each stage (cumulative, from the profile)."""
    import pstats

    stats_path = out / "score.prof"
    # cProfile sees one thread only: run the chunks (and the reasons' blocks) one after another
    # on the main thread, so every stage is in the profile (the figures are CPU, not wall, time)
    wrapper = out / "profiled_churn.py"
    wrapper.write_text(
        "import concurrent.futures as futures\nimport runpy\nimport pipeline._engine as engine\n"
        "import pipeline.score as score\n"
        "engine.in_order = score.in_order = lambda tasks, workers=2: (task() for task in tasks)\n"
        "class Inline:\n"
        "    def __init__(self, *args, **kwargs): pass\n"
        "    def submit(self, fn, *args, **kwargs):\n"
        "        done = futures.Future()\n"
        "        done.set_result(fn(*args, **kwargs))\n"
        "        return done\n"
        "    def shutdown(self, **kwargs): pass\n"
        "score.ThreadPoolExecutor = Inline\n"
        "runpy.run_module('pipeline.cli', run_name='__main__')\n"
    )
    argv = [sys.executable, "-m", "cProfile", "-o", str(stats_path), str(wrapper),
            *score_argv(base, out / "profiled.parquet", model, config, True)[len(churn_command()):]]
    run = measure(argv, child_env(model["uri"]))
    stats = pstats.Stats(str(stats_path)).stats

    def cumulative(file_suffix: str, name: str, caller: tuple[str, str] | None = None) -> float:
        total = 0.0
        for (filename, _, function), (_, _, _, ct, callers) in stats.items():
            if function != name or not filename.endswith(file_suffix):
                continue
            if caller is None:
                total += ct
            else:
                total += sum(entry[3] for (cfile, _, cfunc), entry in callers.items()
                             if cfunc == caller[1] and cfile.endswith(caller[0]))
        return total

    score_job = ("pipeline/jobs.py", "score_job")
    stages = {
        "whole command (profiled)": cumulative("pipeline/cli.py", "main"),
        "score_job": cumulative(*score_job),
        "load model (tracking.load_model)": cumulative("pipeline/tracking.py", "load_model"),
        "read parts (_read_parquet)": cumulative("pipeline/records.py", "_read_parquet"),
        "coerce types (_prepare_table)": cumulative("pipeline/records.py", "_prepare_table"),
        "validate records (validate_records)": cumulative("pipeline/records.py", "validate_records"),
        "features (build_features)": cumulative("pipeline/features.py", "build_features"),
        "drift counting (DriftCounter.add)": cumulative("pipeline/drift.py", "add"),
        "score_dataset (no reasons)": cumulative("pipeline/score.py", "score_dataset"),
        "  predict (score.predict)": cumulative("pipeline/score.py", "predict", ("pipeline/score.py", "score_dataset")),
        "  campaign values (campaign_values)": cumulative("pipeline/targeting.py", "campaign_values"),
        "per chunk: actions, id hashes, compact rows (ScoreStream.prepare)": cumulative("pipeline/score.py", "prepare"),
        "  actions without reasons (recommend_rows)": cumulative("pipeline/score.py", "recommend_rows"),
        "in order: id check, pool, sorted runs (ScoreStream.take)": cumulative("pipeline/score.py", "take"),
        "  sorted runs (_write_run)": cumulative("pipeline/score.py", "_write_run"),
        "rank, target, explain, merge, write (ScoreStream.finish)": cumulative("pipeline/score.py", "finish"),
        "  reasons: attribution (explain._explain)": cumulative("pipeline/explain.py", "_explain"),
        "  reasons: phrasing (explain.top_reasons)": cumulative("pipeline/explain.py", "top_reasons"),
        "  merge the runs (merge_runs)": cumulative("pipeline/_engine.py", "merge_runs"),
        "  write (ListWriter.write)": cumulative("pipeline/output.py", "write"),
        "input hash (input_hash)": cumulative("pipeline/inputs.py", "input_hash"),
        "log the run (tracking.log_scoring)": cumulative("pipeline/tracking.py", "log_scoring"),
        "quantiles and tier counts in score_job": cumulative("numpy/lib/_function_base_impl.py", "quantile", score_job),
    }
    return {"stages": stages, "wall_seconds": run["wall_seconds"], "peak_mib": run["peak_mib"],
            "load_before": run["load_before"], "load_after": run["load_after"], "profile": str(stats_path)}


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide the figures."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("scikit-learn", "pandas", "numpy", "pyarrow", "mlflow", "skops"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


def _median(runs: list[dict], key) -> float:
    return statistics.median(key(run) for run in runs)


def _seconds(runs: list[dict], key: str) -> str:
    return ", ".join(f"{run[key]:.1f}" for run in runs)


def _fmt_load(runs: list[dict]) -> str:
    values = [v for run in runs for v in (run["load_before"], run["load_after"])]
    return f"{min(values):.1f}-{max(values):.1f}"


def model_words(model: dict) -> str:
    """The benchmark model in words: its booster's size, or its family when it is a blend."""
    calibration = f"{model.get('calibration')} calibration"
    if model.get("booster_iterations") is not None:
        return (f"HistGradientBoosting {model['booster_iterations']} iterations x {model['leaves']} leaves, "
                f"{calibration}")
    return f"{model.get('family')} (churn train's defaults), {calibration}"


def summarise(results: dict) -> dict:
    """Medians of each measurement: rows/s by wall time and by CPU time, wall, peak RSS."""
    n, runs, summary = results["subscribers"], results["runs"], {}
    for which in ("a", "a-csv"):
        if which in runs:
            wall = _median(runs[which], lambda r: r["wall_seconds"])
            cpu = _median(runs[which], lambda r: r["cpu_seconds"])
            job = _median(runs[which], lambda r: r.get("job_seconds") or r["wall_seconds"])
            summary[which] = {"rows": n, "wall": wall, "cpu": cpu, "job": job, "rows_per_second": n / wall,
                              "rows_per_cpu_second": n / cpu, "peak_mib": max(r["peak_mib"] for r in runs[which])}
    if "b" in runs:
        inner = [r["inner"] for r in runs["b"]]
        for key, prefix in (("b", ""), ("b-booster", "booster_")):
            if key == "b-booster" and inner[0].get("booster_iterations") is None:
                continue
            wall = statistics.median(i[f"{prefix}predict_seconds"] for i in inner)
            cpu = statistics.median(i.get(f"{prefix}predict_cpu_seconds", float("nan")) for i in inner)
            summary[key] = {"rows": n, "wall": wall, "cpu": cpu, "rows_per_second": n / wall,
                            "rows_per_cpu_second": n / cpu, "peak_mib": max(r["peak_mib"] for r in runs["b"])}
    if "c" in runs:
        inner = [r["inner"] for r in runs["c"]]
        rows = inner[0]["rows"]
        predict = statistics.median(i["predict_seconds"] for i in inner)
        cpu = statistics.median(i.get("predict_cpu_seconds", float("nan")) for i in inner)
        wall = _median(runs["c"], lambda r: r["wall_seconds"])
        peak = max(r["peak_mib"] for r in runs["c"])
        scale = n / rows
        if rows < n:  # the whole base did not fit: scale reading, predicting and the memory they take
            read = statistics.median(i["read_seconds"] for i in inner)
            loaded = max(i["loaded_mib"] for i in inner)
            wall += (scale - 1) * (read + predict)
            peak = loaded + scale * (peak - loaded)
        summary["c"] = {"rows": rows, "wall": wall, "predict": predict * scale, "cpu": cpu * scale,
                        "rows_per_second": rows / predict, "rows_per_cpu_second": rows / cpu,
                        "process_rows_per_second": n / wall, "peak_mib": peak, "scaled": rows < n}
    return summary


def report(results: dict) -> list[str]:
    """The markdown tables and goal lines of a results dict (as saved in the JSON file)."""
    n, runs, summary, model = results["subscribers"], results["runs"], results["summary"], results["model"]
    lines = [f"{n:,} subscribers, {results['columns']} feature columns; model: {model_words(model)}; "
             f"{results['repeat']} run(s) of each; {results['machine']}", "",
             "| measurement | what is timed | rows/s | wall (median) | runs (s) | CPU | rows per CPU-s | peak RSS "
             "| load avg |", "|---|---|---:|---:|---|---:|---:|---:|---|"]

    def row(label, timed, key, runs_text, load):
        found = summary[key]
        lines.append(f"| {label} | {timed} | {found['rows_per_second']:,.0f} | {found.get('predict', found['wall']):.1f} s "
                     f"| {runs_text} | {found['cpu']:.1f} s | {found['rows_per_cpu_second']:,.0f} "
                     f"| {found['peak_mib'] / GIB:.2f} GiB | {load} |")

    for key, label in (("a", "(a) `churn score --all`, Parquet"), ("a-csv", "(a) `churn score`, at-risk CSV")):
        if key in summary:
            found = summary[key]
            row(label, f"whole command (job's own timer: {found['job']:.1f} s)", key,
                _seconds(runs[key], "wall_seconds"), _fmt_load(runs[key]))
    if "b" in summary:
        inner = [r["inner"] for r in runs["b"]]
        row("(b) bare model (`mlflow.sklearn`)", "`predict_proba` only, in batches", "b",
            _seconds(inner, "predict_seconds"), _fmt_load(runs["b"]))
        if "b-booster" in summary:
            row("(b') its booster alone", "`HistGradientBoostingClassifier.predict_proba` on the typed matrix",
                "b-booster", _seconds(inner, "booster_predict_seconds"), "same process")
    if "c" in summary:
        found = summary["c"]
        inner = [r["inner"] for r in runs["c"]]
        scaled = f"; {found['rows']:,} rows measured, scaled to {n:,}" if found["scaled"] else ""
        row("(c) `mlflow.pyfunc`, one call", f"`predict` only (whole process {found['wall']:.1f} s{scaled})", "c",
            _seconds(inner, "predict_seconds"), _fmt_load(runs["c"]))
    if "a" in summary and "b" in summary:
        a, b = summary["a"], summary["b"]
        lines += ["", f"- (a) / (b) rows/s: {a['rows_per_second'] / b['rows_per_second']:.2f} by wall time, "
                      f"{a['rows_per_cpu_second'] / b['rows_per_cpu_second']:.2f} by CPU time (goal >= 0.5)",
                  f"- (a) peak RSS: {a['peak_mib'] / GIB:.2f} GiB (goal < 2)"]
    if "a" in summary and "c" in summary:
        a, c = summary["a"], summary["c"]
        lines += [f"- (a) wall / (c) whole-process wall: {a['wall'] / c['wall']:.2f}; (a) rows/s / (c) predict-only "
                  f"rows/s: {a['rows_per_second'] / c['rows_per_second']:.2f} by wall, "
                  f"{a['rows_per_cpu_second'] / c['rows_per_cpu_second']:.2f} by CPU (goal: (a) no slower)",
                  f"- (a) peak / (c) peak: {a['peak_mib'] / c['peak_mib']:.2f} (goal <= 0.5)"]
    if "profile" in results:
        found = results["profile"]
        lines += ["", f"Where (a)'s time goes (cProfile, cumulative seconds; profiled wall {found['wall_seconds']:.1f} s, "
                      f"load {found['load_before']:.1f}-{found['load_after']:.1f}):", "",
                  "| stage | seconds |", "|---|---:|"]
        lines += [f"| {stage} | {seconds:.1f} |" for stage, seconds in found["stages"].items()]
    if "stages" in results:
        found = results["stages"]
        counts = "; ".join(f"{what}: {r['explained_rows']:,} of {r['rows']:,} rows explained, "
                           f"{r['rows_written']:,} written" for what, r in found.get("results", {}).items())
        lines += ["", f"(a)'s stages unprofiled (the library calls of `churn score`, timed one by one, "
                      f"`--all` then the at-risk list in one process; {counts}; load "
                      f"{found['load_before']:.1f}-{found['load_after']:.1f}):", "",
                  "| stage | wall s | CPU s | peak RSS so far |", "|---|---:|---:|---:|"]
        lines += [f"| {stage} | {seconds:.1f} | {found.get('cpu_seconds', {}).get(stage, float('nan')):.1f} "
                  f"| {found['peak_mib_after'][stage]:,.0f} MiB |" for stage, seconds in found["seconds"].items()]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000_000, help="size of the scored base")
    parser.add_argument("--seed", type=int, default=42, help="seed of the scored base")
    parser.add_argument("--part-subscribers", type=int, default=250_000,
                        help="subscribers per part file of the generated base (the simulator's default)")
    parser.add_argument("--train-subscribers", type=int, default=100_000, help="size of the training base")
    parser.add_argument("--iterations", type=int, default=None,
                        help="fix the booster to this many iterations (early stopping off)")
    parser.add_argument("--default-model", action="store_true",
                        help="score with the model `churn train` registers with no config (all families, blend), "
                             "not the fast single booster")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs of each measurement, medians reported (default 3, or 1 above 2,000,000)")
    parser.add_argument("--only", nargs="*", choices=("a", "a-csv", "b", "c"), default=("a", "a-csv", "b", "c"),
                        help="measurements to run (none: only --profile / --stages)")
    parser.add_argument("--config", default=None, help="config TOML for (a) (chunk sizes, threads)")
    parser.add_argument("--chunk-rows", type=int, default=250_000, help="rows per batch in (b)")
    parser.add_argument("--threads", type=int, default=2, help="threads in (b) (the config's n_threads for (a))")
    parser.add_argument("--pyfunc-rows", type=int, default=None,
                        help="(c) predicts only the first N rows (whole row groups) in one call, when the whole "
                             "base does not fit in memory; its figures are then scaled to the base")
    parser.add_argument("--profile", action="store_true", help="also profile (a) once with cProfile")
    parser.add_argument("--stages", action="store_true",
                        help="also time (a)'s stages unprofiled, calling the library as churn score does")
    parser.add_argument("--tag", default="", help="suffix of the results file")
    parser.add_argument("--report", metavar="JSON", help="print the tables of a saved results file and stop")
    args = parser.parse_args(argv)
    if args.report:
        results = json.loads(Path(args.report).read_text(encoding="utf-8"))
        results["summary"] = summarise(results)
        print("\n".join(report(results)))
        return 0
    repeat = args.repeat or (3 if args.subscribers <= 2_000_000 else 1)

    sys.path.insert(0, str(ROOT))
    base = ensure_base(args.subscribers, args.seed, args.part_subscribers)
    model = ensure_model(args.train_subscribers, args.iterations, args.default_model)
    env = child_env(model["uri"])
    name = (f"scoring-{args.subscribers}" + (f"-hgb{args.iterations}" if args.iterations else "")
            + ("-default" if args.default_model else "") + (f"-{args.tag}" if args.tag else ""))
    out = RESULTS / name
    out.mkdir(parents=True, exist_ok=True)
    n = args.subscribers
    results: dict = {"subscribers": n, "repeat": repeat, "model": {k: v for k, v in model.items()
                                                                      if k != "input_columns"},
                     "columns": len(model["input_columns"]) - 1, "config": args.config,
                     "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
                     "versions": package_versions(), "runs": {}}
    if "b" in args.only or "c" in args.only:
        features = ensure_features(base, model["input_columns"])
    # Interleave the measurements run by run, so that a change in the machine's load hits them alike.
    for number in range(repeat):
        for which in ("a", "a-csv", "b", "c"):
            if which not in args.only:
                continue
            if which == "a":
                run = measure(score_argv(base, out / "scores.parquet", model, args.config, True), env)
                run["job_seconds"] = _job_seconds(run["stdout"])
            elif which == "a-csv":
                run = measure(score_argv(base, out / "at_risk.csv", model, args.config, False), env)
                run["job_seconds"] = _job_seconds(run["stdout"])
            elif which == "b":
                code = _BARE.format(root=str(ROOT), uri=model["model_uri"], features=str(features),
                                    chunk=args.chunk_rows, threads=args.threads)
                run = measure([sys.executable, "-c", code], env)
            else:
                code = _PYFUNC.format(root=str(ROOT), uri=model["model_uri"], features=str(features),
                                      rows=args.pyfunc_rows or 0)
                run = measure([sys.executable, "-c", code], env)
            results["runs"].setdefault(which, []).append(run)
            print(f"run {number + 1}/{repeat} {which}: {run['wall_seconds']:.1f} s, {run['peak_mib']:,.0f} MiB "
                  f"(load {run['load_before']:.1f})", file=sys.stderr)
    if args.profile:
        results["profile"] = profile_stages(base, model, args.config, out)
    if args.stages:
        code = _STAGES.format(root=str(ROOT), config=args.config, uri=model["uri"], model_uri=model["model_uri"],
                              base=str(base), out=str(out))
        run = measure([sys.executable, "-c", code], env)
        results["stages"] = {**run["inner"], "wall_seconds": run["wall_seconds"], "peak_mib": run["peak_mib"],
                             "load_before": run["load_before"], "load_after": run["load_after"]}

    results["summary"] = summarise(results)
    print("\n".join(report(results)))
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
