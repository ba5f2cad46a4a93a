"""Byte-identity check of the lists: same code behaviour, same list bytes.

Runs the whole pipeline on small inputs, from a clean store, and writes the SHA-256 of every
list and call list to ``OUT/hashes.json``; with ``--compare REF.json`` it then compares them
with an earlier run's and exits 1 on any difference.  Use it around a refactoring that must
not change behaviour: run it once before (the reference), then after each step::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/list_identity.py /tmp/ident-ref
    PYTHONPATH=$PWD .venv/bin/python benchmarks/list_identity.py /tmp/ident-new --compare /tmp/ident-ref/hashes.json

Inputs (all made here, nothing downloaded):

- a record base from the simulator (``churn generate``, 5,000 subscribers, seed 7; it holds a
  pilot campaign, so the response model is trained and used too), trained with a fast config
  into a temporary SQLite MLflow store, then scored with ``--all``, as the default at-risk CSV,
  and with ``--budget`` (list and call list) and ``--capacity``, and by risk (``--no-response``,
  with an offer cheap enough that subscribers of this base are targeted) with a budget, and
  with ``--all`` and a capacity, each with a control group;
- the notebooks' path on that record base: the registered models scored in memory with
  ``score_dataset`` and cut with ``finalize`` (at-risk list, and with a budget and a control
  group, with the response model and by risk), written with ``write_output``; the lists by
  risk are subscriber for subscriber those of ``churn score --no-response`` (so the two paths
  through the list stage give the same bytes: ``notebook_risk_budget.csv`` and
  ``records_risk_budget.csv``);
- a flat churn table (``tests/test_cli_table.py``'s ``churn_table``, 3,000 rows; and, when
  ``--telco PATH`` names the IBM Telco customer churn CSV, that table too, read in place),
  trained and scored with ``--all`` and ``--capacity``.

A caveat for references made from another checkout with this venv: ``PYTHONPATH`` puts that
checkout's ``pipeline`` first, but the venv's editable install still resolves modules that only
the installed tree has (so an old checkout can import a new module from it). The notebook step
then fails loudly rather than mixing the two; the ``churn`` runs are not affected.

Run ids, timestamps and paths differ between runs, so summaries, reports and data dictionaries
are hashed for information only (``other``); the lists (``*.csv``, ``*.parquet``, call lists)
are what is compared.  The ``churn`` command is run as ``python -c 'from pipeline.cli import
main'`` with this repository first on ``PYTHONPATH``, so the working copy is what runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAST = """
[train]
search_iterations = 1
cv_folds = 3
blend = false
candidates = {candidates}
"""
LIST_SUFFIXES = (".csv", ".parquet")
#: An offer cheap enough that targeting by risk calls subscribers of the small base.
CHEAP_OFFER = "[campaign]\noffer_cost_months = 0.05\ncontact_cost_months = 0.005\n"


def churn(args: list[str], cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    code = "import sys; from pipeline.cli import main; sys.argv[0] = 'churn'; sys.exit(main())"
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True)
    print(f"  churn {' '.join(args)}  ({time.perf_counter() - started:.0f} s)", flush=True)
    if result.returncode != 0:
        sys.exit(f"churn {' '.join(args)} failed:\n{result.stderr[-4000:]}")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_records(work: Path, subscribers: int, seed: int) -> None:
    (work / "fast.toml").write_text(FAST.format(candidates='["logistic", "hist_gradient_boosting"]'))
    uri = ["--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"]
    churn(["generate", "--subscribers", str(subscribers), "--seed", str(seed), "--out", "base"], work)
    churn(["train", "--data", "base", "--config", "fast.toml", *uri], work)
    out = work / "lists"
    out.mkdir()
    churn(["score", "--data", "base", "--output", "lists/records_all.parquet", "--all", *uri], work)
    churn(["score", "--data", "base", "--output", "lists/records_at_risk.csv", *uri], work)
    churn(["score", "--data", "base", "--output", "lists/records_budget.csv", "--budget", "2000", *uri], work)
    churn(
        ["score", "--data", "base", "--output", "lists/records_capacity.parquet", "--capacity", "150",
         "--control-share", "0.1", "--campaign-id", "ident", *uri],
        work,
    )
    # targeting by risk (no response model) with a cheap offer, so that subscribers are targeted,
    # and a control group held out
    (work / "cheap.toml").write_text(CHEAP_OFFER)
    risk = ["--no-response", "--control-share", "0.2", "--seed", "3", "--campaign-id", "ident", "--config", "cheap.toml"]
    churn(["score", "--data", "base", "--output", "lists/records_risk_budget.csv", "--budget", "500000", *risk, *uri],
          work)
    churn(["score", "--data", "base", "--output", "lists/records_risk_all.parquet", "--all", "--capacity", "300",
           *risk, *uri], work)


NOTEBOOK = """
import sys
from pathlib import Path

from pipeline import jobs, tracking
from pipeline.config import load_config
from pipeline.dataset import records_dataset
from pipeline.records import load_records
from pipeline.score import score_dataset

try:  # where the list stage put them (issue 15), else where they were before
    from pipeline.lists import finalize
    from pipeline.output import write_output
    response_scorer = lambda config, say: jobs.response_scorer(config, None, True, say)
except ImportError:
    from pipeline.score import finalize, write_output
    response_scorer = lambda config, say: jobs._response_scorer(config, None, True, say)
scoring_model = jobs.scoring_model

config = load_config(None)
tracking.connect(sys.argv[1])
scoring = scoring_model(tracking.load_model(tracking.model_uri(config.tracking.model_name)))
scoring.response = response_scorer(config, print)
dataset = records_dataset(load_records("base"), require_label=False)
scores = score_dataset(scoring, dataset, config)
listed, _ = finalize(scores)
write_output(listed, Path("lists/notebook_at_risk.csv"))
try:
    listed, _ = finalize(scores, budget=2000, control_share=0.1, seed=3, campaign_id="ident")
    write_output(listed, Path("lists/notebook_budget_control.csv"))
    scoring.response = None  # by risk, as `churn score --no-response --config cheap.toml`
    config = load_config("cheap.toml")
    scores = score_dataset(scoring, dataset, config)
    listed, _ = finalize(scores, budget=500000, control_share=0.2, seed=3, campaign_id="ident")
    write_output(listed, Path("lists/notebook_risk_budget.csv"))  # the same bytes as records_risk_budget.csv
except TypeError:  # before finalize took a control group
    pass
"""


def run_notebook_path(work: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", NOTEBOOK, f"sqlite:///{work / 'mlflow.db'}"], cwd=work, env=env,
                            capture_output=True, text=True)
    print(f"  notebook path: score_dataset + finalize  ({time.perf_counter() - started:.0f} s)", flush=True)
    if result.returncode != 0:
        sys.exit(f"the notebook path failed:\n{result.stderr[-4000:]}")


def run_table(work: Path, name: str, table: Path, train_args: list[str], candidates: str) -> None:
    (work / f"{name}.toml").write_text(FAST.format(candidates=candidates))
    uri = ["--tracking-uri", f"sqlite:///{work / (name + '.db')}"]
    churn(["train", "--data", str(table), *train_args, "--config", f"{name}.toml", *uri], work)
    churn(["score", "--data", str(table), "--output", f"lists/{name}_all.csv", "--all", *uri], work)
    churn(["score", "--data", str(table), "--output", f"lists/{name}_capacity.parquet", "--capacity", "100", *uri], work)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="empty folder (created) for the runs and hashes.json")
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--telco", type=Path, help="the IBM Telco customer churn CSV, read in place")
    parser.add_argument("--compare", type=Path, help="an earlier hashes.json: exit 1 when any list differs")
    args = parser.parse_args()
    work = args.out.resolve()
    work.mkdir(parents=True, exist_ok=False)

    print("records:", flush=True)
    run_records(work, args.subscribers, args.seed)
    run_notebook_path(work)

    sys.path.insert(0, str(ROOT))
    from tests.test_cli_table import churn_table

    churn_table(n=3000, seed=3).to_csv(work / "table.csv", index=False)
    print("table:", flush=True)
    run_table(
        work, "table", work / "table.csv",
        ["--id", "customer", "--target", "Churn", "--positive", "Yes", "--value", "monthly"],
        '["logistic", "hist_gradient_boosting"]',
    )
    if args.telco:
        print("telco:", flush=True)
        run_table(
            work, "telco", args.telco.resolve(),
            ["--id", "customerID", "--target", "Churn", "--positive", "Yes", "--value", "MonthlyCharges"],
            '["logistic", "hist_gradient_boosting"]',
        )

    lists, other = {}, {}
    for path in sorted((work / "lists").iterdir()):
        name = path.name
        is_list = name.endswith(LIST_SUFFIXES) and not name.endswith((".dictionary.csv",))
        (lists if is_list else other)[name] = sha256(path)
    hashes = {"lists": lists, "other": other}
    (work / "hashes.json").write_text(json.dumps(hashes, indent=2) + "\n")
    print(f"{len(lists)} lists hashed: {work / 'hashes.json'}")

    if args.compare:
        reference = json.loads(args.compare.read_text())["lists"]
        new = sorted(set(lists) - set(reference))  # lists the reference's code could not make
        for name in new:
            print(f"new (not in the reference): {name}")
        differ = sorted(n for n in reference if reference.get(n) != lists.get(n))
        for name in differ:
            print(f"DIFFERS: {name}  {reference.get(name, 'missing')[:12]} -> {lists.get(name, 'missing')[:12]}")
        print("identical" if not differ else f"{len(differ)} of {len(reference)} lists differ")
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
