"""Benchmark the pipeline's model selection against plain peers on public churn tables.

On IBM's Telco Customer Churn table and the Orange/BigML churn table (80% and 20% parts
joined), repeated stratified 5-fold cross-validation (3 repeats, fixed seed) compares, on
the same folds and the same raw columns:

- ``pipeline``: the real ``churn train`` selection, ``pipeline.train.train(dataset,
  config)``, scored with the model it returns for registration.  ``train`` selects and
  evaluates on 80% of the rows it is given and then refits its choice on all of them, so
  this model, like the baselines, is fit on all of the fold's training rows.
- baselines with default hyperparameters: logistic regression (median imputation, scaling,
  one-hot), scikit-learn's HistGradientBoostingClassifier (native categories), LightGBM
  (pandas categories) and CatBoost (declared categorical features).  Every baseline reads
  the columns as typed by the pipeline's own ``TableTyper`` fit on the fold's training
  rows, so typing (``TotalCharges`` stored as text, yes/no flags) is the same for all.

Per fold it records ROC AUC, PR AUC (average precision), top-decile lift, Brier score and
fit seconds (wall clock and process CPU); it prints a markdown table of mean and standard
deviation over the folds, checks the goal of issue 5 (the pipeline's mean ROC AUC, PR AUC
and top-decile lift at least the best baseline's, its Brier score below every baseline's,
under 60 s of fitting per fold; margins are paired per fold) and writes
``benchmarks/results/accuracy.md`` and ``accuracy.json`` (per-fold values)::

    .venv/bin/python benchmarks/accuracy.py                   # 15 folds per dataset
    .venv/bin/python benchmarks/accuracy.py --quick           # 1 repeat: 5 folds
    .venv/bin/python benchmarks/accuracy.py --threads 1       # one thread per model
    .venv/bin/python benchmarks/accuracy.py --dataset bigml --models pipeline catboost
    .venv/bin/python benchmarks/accuracy.py --config my.toml --tag my  # another pipeline config
    .venv/bin/python benchmarks/accuracy.py --from-json benchmarks/results/accuracy.json  # table only

``--threads`` sets the boosters' thread counts and limits every OpenMP/BLAS pool (so also
HistGradientBoosting inside the pipeline) for the whole run.

The datasets are read from ``../shared/datasets`` beside the repository (``--datasets DIR``
elsewhere); a missing file is skipped with a message.  Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASETS = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Threads a model may use by default (the benchmark machine has 2 cores; runs are sequential).
THREADS = 2
#: Models in report order; the first two are the pipeline, the rest plain baselines.
PIPELINE_MODELS = ("pipeline",)
BASELINES = ("logistic", "hist_gradient_boosting", "lightgbm", "catboost")
METRICS = ("roc_auc", "pr_auc", "top_decile_lift", "brier", "fit_seconds", "fit_cpu_seconds")
#: Issue 5's goal: fitting under this many seconds per fold.
FIT_SECONDS_GOAL = 60.0
#: The BigML table's charges, summed into a monthly value for the pipeline's profit metrics.
BIGML_CHARGES = ("Total day charge", "Total eve charge", "Total night charge", "Total intl charge")
BIGML_VALUE = "monthly_charge"



@dataclass(frozen=True)
class BenchData:
    """One benchmark table: raw rows with the label, and how the pipeline reads them.

    ``frame`` holds every raw column (label included).  ``monthly_value`` is the value per
    subscriber given to the pipeline for its own hold-out profit metrics; it is a feature
    only when it is a raw column (``value_column``), never when it was derived.
    """

    name: str
    source: str
    frame: pd.DataFrame
    y: np.ndarray
    id_column: str | None
    target: str
    positive: str
    value_column: str | None
    monthly_value: pd.Series | None = None


def load_telco(folder: Path) -> BenchData | None:
    """IBM's Telco Customer Churn table, or ``None`` (with a message) when it is absent."""
    from pipeline.dataset import parse_label, read_table

    path = folder / "telco_customer_churn.csv"
    if not path.exists():
        print(f"skipping telco: {path} not found")
        return None
    frame = read_table(path)
    y = parse_label(frame["Churn"], positive="Yes", where=f"{path}: column Churn").to_numpy().astype(int)
    return BenchData("telco", str(path), frame, y, "customerID", "Churn", "Yes", "MonthlyCharges")


def load_bigml(folder: Path) -> BenchData | None:
    """The Orange/BigML churn table (80% and 20% parts joined), or ``None`` when absent.

    It has no subscriber id, so the row number serves; the monthly value is the sum of
    the day, evening, night and international charges, given to the pipeline as its value
    but not as a feature (the baselines do not get the sum either).
    """
    from pipeline.dataset import parse_label, read_table

    paths = [folder / "churn-bigml-80.csv", folder / "churn-bigml-20.csv"]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"skipping bigml: {', '.join(missing)} not found")
        return None
    frame = pd.concat([read_table(p) for p in paths], ignore_index=True)
    y = parse_label(frame["Churn"], positive="true", where=f"{paths[0].parent}: column Churn").to_numpy().astype(int)
    value = frame[list(BIGML_CHARGES)].astype("float64").sum(axis=1).rename("monthly_value")
    return BenchData(
        "bigml", " + ".join(map(str, paths)), frame, y, None, "Churn", "true", None, monthly_value=value
    )


LOADERS: dict[str, Callable[[Path], BenchData | None]] = {"telco": load_telco, "bigml": load_bigml}


# --------------------------------------------------------------------------------------
# Models: each takes the raw training rows and returns a function of raw rows -> P(churn)
# --------------------------------------------------------------------------------------


def pipeline_dataset(data: BenchData, rows: np.ndarray):
    """The pipeline's ``Dataset`` for some rows of ``data``, as ``churn train`` would read them."""
    from pipeline.dataset import table_dataset

    part = data.frame.iloc[rows].reset_index(drop=True)
    if data.monthly_value is not None:
        part = part.assign(**{BIGML_VALUE: data.monthly_value.iloc[rows].to_numpy()})
    dataset = table_dataset(
        part,
        id_column=data.id_column,
        target=data.target,
        positive=data.positive,
        value_column=data.value_column or (BIGML_VALUE if data.monthly_value is not None else None),
        source=f"{data.name} (fold)",
    )
    if data.value_column is None and data.monthly_value is not None:
        # The derived value is for the pipeline's profit metrics only, not a feature.
        dataset = dataclasses.replace(dataset, frame=dataset.frame.drop(columns=[BIGML_VALUE]))
    return dataset


def raw_features(data: BenchData, rows: np.ndarray) -> pd.DataFrame:
    """The raw feature columns of some rows (label removed), as the fitted models take them."""
    return data.frame.iloc[rows].drop(columns=[data.target]).reset_index(drop=True)


def fit_pipeline(data: BenchData, rows: np.ndarray, config) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``pipeline.train.train`` on the rows; return fitted models by name and what was chosen."""
    from pipeline.train import train

    clock, cpu = time.perf_counter(), time.process_time()
    result = train(pipeline_dataset(data, rows), config)
    trained = {"pipeline": (result.model, time.perf_counter() - clock, time.process_time() - cpu)}
    # The model takes its input columns only: protected traits (gender, senior citizen, partner),
    # left out of features by default since issue 12, are not among them.
    inputs = list(result.input_columns)
    candidates = result.candidates
    chosen = {
        "family": result.family,
        "calibration": result.calibration,
        "params": _plain(result.params),
        "train_seconds": result.timings.get("total_seconds"),
        "selection_seconds": result.timings.get("selection_seconds"),
        "best_single_cv_auc": float(candidates.loc[candidates["family"] != "blend", "roc_auc"].max()),
        "blend_cv_auc": (float(candidates.loc[candidates["family"] == "blend", "roc_auc"].iloc[0])
                         if (candidates["family"] == "blend").any() else None),
        "calibration_brier": {k: float(v) for k, v in result.calibration_scores.items()},
        "internal_holdout_auc": float(result.metrics["roc_auc"]),
        "input_columns": inputs,
        "raced_out": len(result.raced_out),
        "skipped": len(result.skipped),
    }
    return trained, chosen


def _plain(value: Any) -> Any:
    """JSON-friendly copy of parameters (numpy scalars and tuples made plain)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _logistic(seed: int, threads: int):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from pipeline.prepare import categorical_columns, numeric_columns

    encode = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric_columns),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical_columns),
        ]
    )
    return Pipeline([("encode", encode), ("classifier", LogisticRegression(max_iter=5000, random_state=seed))])


def _hist_gradient_boosting(seed: int, threads: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)


def _lightgbm(seed: int, threads: int):
    from lightgbm import LGBMClassifier

    return LGBMClassifier(random_state=seed, n_jobs=threads, verbose=-1)


class _CatBoost:
    """Default CatBoost with the typed frame's categorical columns declared as such."""

    def __init__(self, seed: int, threads: int):
        self.seed = seed
        self.threads = threads

    @staticmethod
    def _as_catboost(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
        from pipeline.prepare import categorical_columns

        names = categorical_columns(frame)
        # CatBoost wants categories as text without missing values.
        text = {name: frame[name].astype(object).where(frame[name].notna(), "__missing__").astype(str) for name in names}
        return frame.assign(**text), names

    def fit(self, X: pd.DataFrame, y: np.ndarray):
        from catboost import CatBoostClassifier

        frame, names = self._as_catboost(X)
        self.model_ = CatBoostClassifier(
            random_seed=self.seed, thread_count=self.threads, verbose=0, allow_writing_files=False, cat_features=names
        )
        self.model_.fit(frame, y)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict_proba(self._as_catboost(X)[0])


BASELINE_FACTORIES: dict[str, Callable[[int, int], Any]] = {
    "logistic": _logistic,
    "hist_gradient_boosting": _hist_gradient_boosting,
    "lightgbm": _lightgbm,
    "catboost": _CatBoost,
}


def available_baselines(names: list[str]) -> list[str]:
    """The requested baselines whose package imports; the others are skipped with a message."""
    kept = []
    for name in names:
        module = {"lightgbm": "lightgbm", "catboost": "catboost"}.get(name)
        if module is not None:
            try:
                __import__(module)
            except ImportError:
                print(f"skipping {name}: the {module} package is not installed (pip install {module})")
                continue
        kept.append(name)
    return kept


def fit_baseline(name: str, data: BenchData, rows: np.ndarray, seed: int, threads: int = THREADS):
    """Fit one baseline on the rows (typed by ``TableTyper``); return (predict function, wall s, CPU s)."""
    from pipeline.prepare import TableTyper

    clock, cpu = time.perf_counter(), time.process_time()
    drop = (data.id_column,) if data.id_column else ()
    typer = TableTyper(drop_columns=drop).set_output(transform="pandas").fit(raw_features(data, rows))
    model = BASELINE_FACTORIES[name](seed, threads).fit(typer.transform(raw_features(data, rows)), data.y[rows])
    wall, used = time.perf_counter() - clock, time.process_time() - cpu

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return model.predict_proba(typer.transform(frame))[:, 1]

    return predict, wall, used


# --------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------


def fold_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC (average precision), top-decile lift and Brier score of one fold."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    from pipeline.evaluate import top_decile_lift

    return {
        "roc_auc": float(roc_auc_score(y, proba)),
        "pr_auc": float(average_precision_score(y, proba)),
        "top_decile_lift": float(top_decile_lift(y, proba)),
        "brier": float(brier_score_loss(y, proba)),
    }


def run_dataset(
    data: BenchData,
    *,
    models: list[str],
    repeats: int,
    seed: int,
    config,
    threads: int = THREADS,
    max_folds: int | None = None,
) -> list[dict[str, Any]]:
    """Every model on every fold (or the first ``max_folds``) of one dataset: one record per (fold, model)."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    folds = RepeatedStratifiedKFold(n_splits=5, n_repeats=repeats, random_state=seed)
    records = []
    wanted_pipeline = [m for m in models if m in PIPELINE_MODELS]
    baselines = [m for m in models if m in BASELINES]
    for fold, (train_rows, test_rows) in enumerate(folds.split(np.zeros(len(data.y)), data.y)):
        if max_folds is not None and fold >= max_folds:
            break
        test_frame, y_test = raw_features(data, test_rows), data.y[test_rows]
        fitted: dict[str, tuple[Callable[[pd.DataFrame], np.ndarray], float, float]] = {}
        chosen = None
        if wanted_pipeline:
            trained, chosen = fit_pipeline(data, train_rows, config)
            for name in wanted_pipeline:
                model, wall, used = trained[name]
                columns = [c for c in chosen["input_columns"] if c != data.target]
                fitted[name] = (lambda frame, model=model, columns=columns: model.predict_proba(frame[columns])[:, 1],
                                wall, used)
        for name in baselines:
            fitted[name] = fit_baseline(name, data, train_rows, seed, threads)
        for name in models:
            predict, wall, used = fitted[name]
            record = {"dataset": data.name, "fold": fold, "model": name,
                      **fold_metrics(y_test, predict(test_frame)), "fit_seconds": wall, "fit_cpu_seconds": used}
            if name in PIPELINE_MODELS:
                record["chosen"] = chosen
            records.append(record)
        shown = "  ".join(f"{r['model']} {r['roc_auc']:.3f}/{r['fit_seconds']:.0f}s" for r in records[-len(models):])
        print(f"{data.name} fold {fold + 1}/{5 * repeats}: {shown}"
              + (f"  [pipeline chose {chosen['family']}, {chosen['calibration']}]" if chosen else ""), flush=True)
    return records


def summarise(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Mean and standard deviation of every metric per dataset and model (report order kept)."""
    frame = pd.DataFrame([{k: r[k] for k in ("dataset", "model", *METRICS)} for r in records])
    grouped = frame.groupby(["dataset", "model"], sort=False)[list(METRICS)]
    summary = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).add_suffix("_std"))
    summary["folds"] = grouped.size()
    return summary.reset_index()


def markdown_table(summary: pd.DataFrame) -> str:
    """The summary as a markdown table: mean ± standard deviation over the folds."""
    header = ("| dataset | model | folds | ROC AUC | PR AUC | top-decile lift | Brier | fit s (wall) | fit s (CPU) |\n"
              "|---|---|---:|---:|---:|---:|---:|---:|---:|")
    lines = [header]
    formats = {"roc_auc": ".3f", "pr_auc": ".3f", "top_decile_lift": ".2f", "brier": ".4f",
               "fit_seconds": ".1f", "fit_cpu_seconds": ".1f"}
    for row in summary.itertuples(index=False):
        cells = [f"{getattr(row, m + '_mean'):{f}} ± {getattr(row, m + '_std'):{f}}" for m, f in formats.items()]
        lines.append(f"| {row.dataset} | {row.model} | {row.folds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goal_check(summary: pd.DataFrame, records: list[dict[str, Any]]) -> str:
    """Issue 5's goal, per dataset and pipeline variant, as markdown lines with the margins.

    Each margin is the mean over the folds of the pipeline's value minus the best baseline's on
    the same fold, with its standard error (folds of repeated CV overlap, so it is optimistic).
    """
    folds = pd.DataFrame([{k: r[k] for k in ("dataset", "fold", "model", *METRICS)} for r in records])
    lines = []
    for dataset, rows in summary.groupby("dataset", sort=False):
        rows = rows.set_index("model")
        baselines = [m for m in rows.index if m in BASELINES]
        if not baselines:
            continue
        paired = folds[folds["dataset"] == dataset].pivot(index="fold", columns="model")
        for variant in [m for m in rows.index if m in PIPELINE_MODELS]:
            parts, met = [], True
            for metric, label, higher in (("roc_auc", "ROC AUC", True), ("pr_auc", "PR AUC", True),
                                          ("top_decile_lift", "lift", True), ("brier", "Brier", False)):
                means = rows.loc[baselines, f"{metric}_mean"]
                best = means.idxmax() if higher else means.idxmin()
                difference = paired[metric][variant] - paired[metric][best]
                margin = difference.mean()
                error = difference.std(ddof=1) / np.sqrt(len(difference)) if len(difference) > 1 else float("nan")
                met &= bool(margin >= 0) if higher else bool(margin < 0)
                digits = 4 if metric == "brier" else 3
                parts.append(f"{label} {margin:+.{digits}f} ± {error:.{digits}f} vs {best}")
            fit, cpu = rows.loc[variant, "fit_seconds_mean"], rows.loc[variant, "fit_cpu_seconds_mean"]
            met &= bool(fit < FIT_SECONDS_GOAL)
            slowest = f", slowest fold {rows.loc[variant, 'fit_seconds_max']:.1f} s" if "fit_seconds_max" in rows else ""
            parts.append(f"fit {fit:.1f} s wall mean ({cpu:.1f} s CPU){slowest}")
            lines.append(f"- {dataset}, {variant}: **{'met' if met else 'not met'}** ({'; '.join(parts)})")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    """Machine and package versions the figures were measured with."""
    versions = {}
    for package in ("scikit-learn", "numpy", "pandas", "lightgbm", "catboost"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    import hashlib

    # Which pipeline code was measured: the tree may change between runs.
    sources = {name: hashlib.sha256((ROOT / "pipeline" / name).read_bytes()).hexdigest()[:12]
               for name in ("train.py", "model.py", "prepare.py", "config.py")}
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(), **versions, "pipeline_sources_sha256": sources}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS, metavar="DIR",
                        help=f"folder holding the CSV files (default: {DEFAULT_DATASETS})")
    parser.add_argument("--dataset", action="append", choices=sorted(LOADERS), dest="names",
                        help="run only this dataset (repeatable; default: all)")
    parser.add_argument("--models", nargs="+", choices=[*PIPELINE_MODELS, *BASELINES],
                        default=[*PIPELINE_MODELS, *BASELINES], help="models to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="one repeat (5 folds) instead of three")
    parser.add_argument("--max-folds", type=int, metavar="N", help="stop after N folds per dataset (smoke runs)")
    parser.add_argument("--threads", type=int, default=THREADS, metavar="N",
                        help=f"threads for boosters and OpenMP/BLAS pools (default: {THREADS})")
    parser.add_argument("--seed", type=int, default=20240917, help="seed of the folds and of every model")
    parser.add_argument("--config", type=Path, metavar="TOML", help="pipeline config (default: the defaults)")
    parser.add_argument("--out", type=Path, default=RESULTS, metavar="DIR", help="where accuracy.md/json go")
    parser.add_argument("--tag", default="accuracy", help="file name stem of the outputs (default: accuracy)")
    parser.add_argument("--from-json", type=Path, metavar="JSON",
                        help="only rewrite the table from a saved results JSON (no fitting)")
    parser.add_argument("--verbose", action="store_true", help="show the pipeline's progress messages")
    return parser.parse_args(argv)


def report(records: list[dict[str, Any]], run: dict[str, Any]) -> tuple[pd.DataFrame, str]:
    """The summary and the markdown text (command, date, machine, table, goal) of one run."""
    summary = summarise(records)
    slowest = pd.DataFrame([{k: r[k] for k in ("dataset", "model", "fit_seconds")} for r in records])
    slowest = slowest.groupby(["dataset", "model"], sort=False)["fit_seconds"].max().rename("fit_seconds_max")
    summary = summary.merge(slowest.reset_index(), on=["dataset", "model"])
    env = run["environment"]
    started = dt.datetime.fromisoformat(run["started"])
    text = (f"Command: `{run['command']}`  \nDate: {started:%Y-%m-%d %H:%M} UTC; {run['elapsed_seconds'] / 60:.0f} min; "
            f"{env['cpus']} CPUs, {run.get('threads', THREADS)} thread(s) per model, "
            f"load average at start {env['load_average_at_start'][0]:.1f}; scikit-learn {env['scikit-learn']}, "
            f"lightgbm {env['lightgbm']}, catboost {env['catboost']}\n\n"
            f"{markdown_table(summary)}\n\nGoal (issue 5; margins are paired per fold, ± standard error):\n"
            f"{goal_check(summary, records)}\n")
    return summary, text


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print and write the table; 0 on success, 1 when no dataset was found."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    warnings.filterwarnings("ignore", message=".*does not have valid feature names.*")
    if args.from_json is not None:
        run = json.loads(args.from_json.read_text(encoding="utf-8"))
        _, text = report(run["folds"], run)
        print(text)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.tag}.md").write_text(text, encoding="utf-8")
        print(f"wrote {args.out / (args.tag + '.md')}")
        return 0
    import sklearn.ensemble  # noqa: F401  (loads scikit-learn's OpenMP runtime, so the limit below reaches it)
    from threadpoolctl import threadpool_limits

    from pipeline.config import load_config

    from pipeline.config import with_overrides

    # The pipeline gets the same thread count and seed as the baselines (``train`` limits its
    # own pools), so on a fold where it keeps a family at its defaults the paired difference
    # is the pipeline's doing, not the seed's.
    config = with_overrides(load_config(args.config), train={"n_threads": args.threads, "seed": args.seed})
    repeats = 1 if args.quick else 3
    models = [m for m in args.models if m in PIPELINE_MODELS] + available_baselines(
        [m for m in args.models if m in BASELINES])
    datasets = [d for d in (LOADERS[name](args.datasets) for name in (args.names or list(LOADERS))) if d is not None]
    if not datasets:
        print(f"no dataset found in {args.datasets}; nothing measured")
        return 1
    started = dt.datetime.now(dt.timezone.utc)
    run = {"command": ("python benchmarks/accuracy.py " + " ".join(sys.argv[1:] if argv is None else argv)).strip(),
           "started": started.isoformat(), "seed": args.seed, "repeats": repeats, "threads": args.threads,
           "config": _plain(config.flat()), "environment": environment()}
    records = []
    # One pool size for everything (OpenMP in HistGradientBoosting, BLAS), as for the boosters.
    with threadpool_limits(limits=args.threads):
        for data in datasets:
            print(f"{data.name}: {len(data.y):,} rows, churn rate {data.y.mean():.3f}, {5 * repeats} folds", flush=True)
            records += run_dataset(data, models=models, repeats=repeats, seed=args.seed, config=config,
                                   threads=args.threads, max_folds=args.max_folds)
    run["elapsed_seconds"] = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()
    summary, text = report(records, run)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}.md").write_text(text, encoding="utf-8")
    payload = {**run, "summary": summary.to_dict(orient="records"), "folds": records}
    (args.out / f"{args.tag}.json").write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    print(f"wrote {args.out / (args.tag + '.md')} and {args.tag}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
