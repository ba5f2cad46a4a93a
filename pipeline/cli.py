"""The ``churn`` command: a thin layer that parses options, calls ``pipeline.jobs`` and prints.

Heavy libraries load inside the commands, so ``churn --help`` answers at once.  Every
failure is one ``error:`` line on stderr and a non-zero exit; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from pipeline import __version__

DEFAULT_MODEL_NAME = "post-breach-churn"
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def _common(parser: argparse.ArgumentParser, *, tracking: bool = True) -> None:
    parser.add_argument("--config", metavar="TOML", help="configuration file (defaults otherwise)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    if tracking:
        parser.add_argument(
            "--tracking-uri",
            metavar="URI",
            help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)",
        )
        parser.add_argument(
            "--model-name", metavar="NAME", default=None, help=f"registered model name (default {DEFAULT_MODEL_NAME})"
        )


class _Parser(argparse.ArgumentParser):
    """argparse with errors in the house format: one ``error:`` line first, then a short hint."""

    def error(self, message: str):
        self.exit(2, f"error: {message}\n{self.format_usage().strip().splitlines()[0][:200]}\n"
                     f"run `{self.prog} --help` for every option\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``churn`` parser: one sub-command each, its options added by ``_<command>_options``."""
    parser = _Parser(
        prog="churn",
        description="Predict which subscribers will leave after a data breach, and whom to call first.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _generate_options(commands.add_parser("generate", help="generate a synthetic post-breach subscriber base"))
    _train_options(commands.add_parser("train", help="train, evaluate, track and register a churn model"))
    _score_options(commands.add_parser("score", help="score a subscriber base and write the ranked at-risk list"))
    _report_options(commands.add_parser(
        "report", help="write the HTML report of a scored list (from the list and its summary)"))
    _models_options(commands.add_parser(
        "models", help="list registered model versions: aliases, hold-out metrics, training data"))
    _measure_options(commands.add_parser(
        "measure", help="measure what randomised campaigns changed: realised uplift with a 95%% CI"))
    _features_options(commands.add_parser(
        "features", help="write the point-in-time feature table of a record base (Parquet)"))
    _promote_options(commands.add_parser("promote", help="make a registered model version the champion by hand"))
    _demo_options(commands.add_parser(
        "demo", help="generate a base, train, register, score and summarise, end to end"))
    return parser


def _generate_options(gen: argparse.ArgumentParser) -> None:
    """``churn generate``: the size, seed and scenario of a synthetic base, and where it goes."""
    gen.add_argument("--subscribers", type=int, default=100_000, metavar="N", help="number of subscribers")
    gen.add_argument("--seed", type=int, default=42, metavar="S", help="random seed (same seed, same base)")
    gen.add_argument("--scenario", default=None, help="breach scenario by name (see docs/simulator.md)")
    gen.add_argument("--out", required=True, metavar="DIR", help="folder to write the record tables to")
    gen.add_argument("--overwrite", action="store_true", help="replace an existing base in DIR")
    _common(gen, tracking=False)


def _train_options(tr: argparse.ArgumentParser) -> None:
    """``churn train``: the data and how to read it, what to leave out, the seed and the time budget."""
    tr.add_argument("--data", required=True, metavar="PATH",
                    help="record folder, database URL, or one churn table (CSV or Parquet)")
    tr.add_argument("--id", dest="id_column", metavar="COL", help="subscriber id column (single table)")
    tr.add_argument("--target", metavar="COL", help="churn label column (single table)")
    tr.add_argument("--positive", metavar="VALUE", help="label value that means churned, when not 1/true/yes")
    tr.add_argument("--value", dest="value_column", metavar="COL", help="monthly monetary value column")
    tr.add_argument("--snapshot", metavar="DATE", help="snapshot date for records (default: the manifest's)")
    tr.add_argument("--time-column", metavar="COL",
                    help="a table's snapshot-date column, when it holds several snapshots (folds then go by time)")
    tr.add_argument("--disclosure", metavar="DATE", help="breach disclosure date for records (default: the manifest's)")
    tr.add_argument("--treatment", dest="treatment_column", metavar="COL",
                    help="a table's randomised campaign group column (offer/control): trains a response model too")
    tr.add_argument("--no-response", dest="use_response", action="store_false",
                    help="train the churn model only, even when the data holds a randomised campaign")
    tr.add_argument("--exclude", nargs="+", default=[], metavar="COL",
                    help="columns never used as features (added to data.exclude_columns)")
    tr.add_argument("--seed", type=int, default=None, help="random seed (default from config: 42)")
    tr.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                    help="seconds model selection and fitting may take; candidates that would not fit are "
                         "skipped and named (train.time_budget_seconds)")
    _common(tr)


def _score_options(sc: argparse.ArgumentParser) -> None:
    """``churn score``: the data, the list, the models, the campaign's limit and control group, the outputs."""
    sc.add_argument("--data", required=True, metavar="PATH", help="record folder, database URL, or one table")
    sc.add_argument("--output", required=True, metavar="PATH", help="output file (.csv or .parquet)")
    sc.add_argument("--model", metavar="URI", help=f"model URI (default models:/{DEFAULT_MODEL_NAME}@champion)")
    sc.add_argument("--all", dest="write_all", action="store_true", help="write every subscriber, not only at-risk")
    sc.add_argument("--snapshot", metavar="DATE", help="snapshot date for records (default: the manifest's)")
    sc.add_argument("--disclosure", metavar="DATE", help="breach disclosure date for records (default: the manifest's)")
    limit = sc.add_mutually_exclusive_group()
    limit.add_argument("--budget", type=float, metavar="AMOUNT",
                       help="campaign budget: target the subscribers that maximise expected net retained value")
    limit.add_argument("--capacity", type=int, metavar="N", help="calls the team can make: target the best N")
    sc.add_argument("--engine", choices=("pandas", "spark"), default="pandas",
                    help="pandas: stream on this machine (default); spark: score a table with Spark")
    sc.add_argument("--response-model", metavar="URI",
                    help="response model URI (default models:/<model name>-response@champion, when registered)")
    sc.add_argument("--no-response", dest="use_response", action="store_false",
                    help="target by risk even when a response model is registered")
    sc.add_argument("--control-share", type=float, metavar="SHARE",
                    help="hold out this share of the targeted subscribers at random as a control group (e.g. 0.1)")
    sc.add_argument("--campaign-id", metavar="ID", help="the campaign's id in the list (default: derived from the inputs)")
    sc.add_argument("--seed", type=int, default=None, help="seed of the control group (default from config: 42)")
    sc.add_argument("--calls", metavar="PATH",
                    help="the call list: targeted subscribers in call order (default with --budget or --capacity: "
                         "NAME.calls.csv beside the list)")
    sc.add_argument("--no-report", dest="report", action="store_false",
                    help="do not write the HTML report (the summary and data dictionary are still written)")
    _common(sc)


def _report_options(rp: argparse.ArgumentParser) -> None:
    """``churn report``: the scored list, where the page goes, a baseline list to compare with."""
    rp.add_argument("--scores", required=True, metavar="PATH", help="a list written by `churn score` (.csv or .parquet)")
    rp.add_argument("--out", metavar="DIR", help="folder for NAME.report.html (default: beside the list)")
    rp.add_argument("--baseline", metavar="SCORES",
                    help="a list of the same base scored without the breach (e.g. the no-breach scenario), to compare")
    rp.add_argument("--no-log", dest="log", action="store_false",
                    help="do not add the report to the scoring run in MLflow")
    _common(rp)


def _models_options(mo: argparse.ArgumentParser) -> None:
    """``churn models``: a table, or JSON."""
    mo.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _common(mo)


def _measure_options(me: argparse.ArgumentParser) -> None:
    """``churn measure``: the records, which campaign, and up to when outcomes are known."""
    me.add_argument("--data", required=True, metavar="PATH",
                    help="record folder or database URL with the campaigns and outcomes tables")
    me.add_argument("--campaign", metavar="ID", help="measure this campaign only (default: every campaign)")
    me.add_argument("--snapshot", metavar="DATE", help="outcomes are known up to this date (default: the manifest's)")
    _common(me)


def _features_options(fe: argparse.ArgumentParser) -> None:
    """``churn features``: the records, the output file and the dates."""
    fe.add_argument("--data", required=True, metavar="PATH", help="record folder or database URL")
    fe.add_argument("--output", required=True, metavar="PATH", help="output file (.parquet)")
    fe.add_argument("--snapshot", metavar="DATE", help="snapshot date (default: the manifest's)")
    fe.add_argument("--disclosure", metavar="DATE", help="breach disclosure date (default: the manifest's)")
    _common(fe, tracking=False)


def _promote_options(pr: argparse.ArgumentParser) -> None:
    """``churn promote``: the version to make champion."""
    pr.add_argument("version", type=int, help="model version number")
    _common(pr)


def _demo_options(demo: argparse.ArgumentParser) -> None:
    """``churn demo``: the base's size and seed, and the working folder."""
    demo.add_argument("--subscribers", type=int, default=100_000, metavar="N")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--workdir", default=".", metavar="DIR", help="where data/, outputs/ and the MLflow store go")
    _common(demo)


#: Seconds between progress lines when stderr is not a terminal (logs, ``tee``, CI).
PROGRESS_SECONDS = 30.0


class Progress:
    """Progress lines on stderr: every step on a terminal (or with ``CHURN_PROGRESS=1``); elsewhere
    (logs, ``tee``, CI) at most one line every ``interval`` seconds, the latest step, so a long
    command shows it is alive without flooding the log; ``CHURN_PROGRESS=0`` silences it.

    With an ``interval``, a quiet step still gets a line every ``interval`` seconds (a
    background timer repeats the latest step, marked ``still``), and nothing is printed in
    the first ``interval`` seconds: quick commands stay quiet.
    """

    def __init__(self, enabled: bool, *, interval: float = 0.0):
        self.enabled = enabled
        self.interval = interval
        self.started = time.perf_counter()
        self.last_print = self.started
        self.latest: str | None = None
        self.latest_shown = True
        self._timer = None

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        if not self.interval:
            self._print(message)
            return
        self.latest, self.latest_shown = message, False
        if time.perf_counter() - self.last_print >= self.interval:
            self._print(message)
        self._arm()

    def _print(self, message: str) -> None:
        now = time.perf_counter()
        print(f"[{now - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)
        self.last_print = now
        self.latest_shown = message == self.latest

    def _arm(self) -> None:
        import threading

        if self._timer is not None:
            return
        self._timer = threading.Timer(max(0.5, self.interval - (time.perf_counter() - self.last_print)), self._tick)
        self._timer.daemon = True
        self._timer.start()

    def _tick(self) -> None:
        self._timer = None
        if self.latest is not None and time.perf_counter() - self.last_print >= self.interval - 0.05:
            self._print(self.latest if not self.latest_shown else f"still: {self.latest}")
        self._arm()

    def close(self) -> None:
        """Stop the timer (at the end of a command)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.latest = None


def _config(args):
    from pipeline.config import load_config, with_overrides

    config = load_config(args.config)
    overrides = {}
    if getattr(args, "model_name", None):
        overrides["tracking"] = {"model_name": args.model_name}
    if getattr(args, "seed", None) is not None and args.command in ("train", "demo", "score"):
        overrides["train"] = {"seed": args.seed}
    if getattr(args, "time_budget", None) is not None:
        overrides["train"] = {**overrides.get("train", {}), "time_budget_seconds": args.time_budget}
    if getattr(args, "exclude", None):
        overrides["data"] = {"exclude_columns": tuple(dict.fromkeys([*config.data.exclude_columns, *args.exclude]))}
    return with_overrides(config, **overrides) if overrides else config


def _fmt_money(value: float) -> str:
    return f"{value:,.0f}"


def cmd_generate(args, progress: Progress) -> int:
    from pipeline.jobs import generate_job

    def step(done: int, total: int) -> None:
        progress(f"generated {done:,} / {total:,} subscribers")

    manifest = generate_job(args.subscribers, seed=args.seed, out=args.out, scenario=args.scenario,
                            overwrite=args.overwrite, progress=step)
    print(f"wrote {args.subscribers:,} subscribers to {args.out} "
          f"(scenario {manifest.get('scenario')}, snapshot {manifest.get('snapshot_date')})")
    return 0


def cmd_train(args, progress: Progress) -> int:
    from pipeline.jobs import train_job
    from pipeline.tracking import resolve_uri

    config = _config(args)
    outcome = train_job(
        args.data, config=config, uri=resolve_uri(args.tracking_uri), id_column=args.id_column, target=args.target,
        positive=args.positive, value_column=args.value_column, snapshot_date=args.snapshot,
        disclosure_date=args.disclosure, time_column=args.time_column, treatment_column=args.treatment_column,
        use_response=args.use_response, progress=progress,
    )
    m = outcome.metrics
    print(f"trained {outcome.family} ({_calibration_words(outcome.calibration)}) on {outcome.rows:,} rows; hold-out: "
          f"ROC AUC {m['roc_auc']:.3f}, PR AUC {m['pr_auc']:.3f}, Brier {m['brier']:.4f}, "
          f"top-decile lift {m['top_decile_lift']:.2f}, EMPC {m['empc']:.4g}")
    if outcome.dropped:
        print("columns not used: " + "; ".join(f"{c} ({r})" for c, r in outcome.dropped.items()))
    print(f"run {outcome.run_id}; registered {config.tracking.model_name} version {outcome.version}")
    print(outcome.message)
    for reason, rows in outcome.excluded.items():
        print(f"rows left out of churn training: {rows:,} ({reason})")
    _print_response(outcome.response)
    if outcome.service:
        print(outcome.service)
    for line in _leaderboard(outcome):
        print(line)
    return 0


def _leaderboard(outcome, top: int = 8) -> list[str]:
    """The candidates selection compared (cross-validated), best first, the chosen one marked."""
    import pandas as pd

    table = getattr(outcome, "candidates", None)
    if table is None or not len(table):
        return []
    shown = table.head(top).copy()
    shown.insert(0, "", ["*" if c == outcome.chosen_candidate else "" for c in shown["candidate"]])
    columns = ["", "candidate", "family", "roc_auc", "pr_auc", "brier", "fit_seconds"]
    shown = shown[[c for c in columns if c in shown.columns]].rename(
        columns={"roc_auc": "cv ROC AUC", "pr_auc": "cv PR AUC", "brier": "cv Brier", "fit_seconds": "fit s"})
    lines = [f"candidates ({len(table)} cross-validated, best {min(top, len(table))} shown; * chosen):"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        lines += ["  " + line for line in shown.to_string(index=False, float_format=lambda v: f"{v:.4f}").splitlines()]
    raced, skipped = getattr(outcome, "raced_out", []), getattr(outcome, "skipped", [])
    if raced:
        lines.append(f"  {len(raced)} search draw(s) stopped early, clearly behind the leader: "
                     + ", ".join(f"{r['candidate']} after {r['folds']} folds" for r in raced))
    if skipped:
        lines.append(f"  {len(skipped)} candidate(s) skipped to stay within the time budget: {'; '.join(skipped)}")
    return lines


def _print_response(response) -> None:
    """What training learned about the response to an offer, or why it learned nothing."""
    if response is None:
        return
    if response.skipped:
        print(f"no response model: {response.skipped}")
        return
    m = response.metrics
    risk = f" (risk as uplift {m['qini_coefficient_risk']:.3f})" if "qini_coefficient_risk" in m else ""
    print(f"response model {response.learner} on {response.rows:,} campaign rows; hold-out: Qini coefficient "
          f"{m['qini_coefficient']:.3f}{risk}, a contact lowers churn by {m['ate'] * 100:.2f} points on average "
          f"[95% CI {m['ate_ci_low'] * 100:.2f}, {m['ate_ci_high'] * 100:.2f}]")
    if not response.heterogeneous:
        print("  no difference in response between subscribers was detected: the model predicts the average effect")
    print(f"registered {response.model_name} version {response.version}; {response.message}")


def _targeting_lines(outcome) -> list[str]:
    """The campaign a list proposes, in words: whom, what it buys, and what held it back."""
    t = outcome.targeting
    if t is None:
        return []
    basis = "estimated response to the offer" if outcome.response_version else "churn risk (response assumed)"
    limit = {"budget": f"budget {_fmt_money(t.limit or 0)}", "capacity": f"capacity {int(t.limit or 0):,} calls",
             "all": "no limit"}[t.rule]
    contacted = t.targeted - t.control
    lines = [f"targeting by {basis} ({limit}): {t.targeted:,} subscribers, expected saves {t.expected_saves:,.1f}, "
             f"cost {_fmt_money(t.expected_cost)}, expected net value {_fmt_money(t.expected_net_value)}"
             + (" (the contacted group)" if t.control else "")]
    if not t.targeted:
        lines.append("  no subscriber is expected to pay back a contact with this offer: nobody to call (the scoring "
                     "run's plots/offer_sweep.png shows what a smaller offer would change)")
    elif t.rule in ("budget", "capacity") and t.limited_by_value:
        used = (f"{t.expected_cost / t.limit:.0%} of the budget spent" if t.rule == "budget" and t.limit
                else f"{t.targeted:,} of {int(t.limit or 0):,} calls used")
        lines.append(f"  the limit was not reached ({used}): no other subscriber is expected to pay back a contact")
    if outcome.do_not_contact:
        lines.append(f"  {outcome.do_not_contact:,} subscribers are marked \"do not contact\": a retention offer is "
                     "expected to push them out")
    if t.control:
        lines.append(f"control group: {t.control:,} of the {t.targeted:,} targeted held out at random (campaign "
                     f"{outcome.campaign_id}); contact the other {contacted:,} and record both groups in the "
                     "campaigns table, then run `churn measure`")
    return lines


def _print_score(outcome) -> None:
    response = f" and response model version {outcome.response_version}" if outcome.response_version else ""
    print(f"scored {outcome.rows_scored:,} subscribers with model version {outcome.model_version}{response} in "
          f"{outcome.seconds:.1f}s: {outcome.at_risk:,} at risk, expected loss among them "
          f"{_fmt_money(outcome.expected_loss_at_risk)}")
    for line in _targeting_lines(outcome):
        print(line)
    for line in [*outcome.notes, *outcome.drift_warnings]:
        print(f"warning: {line}", file=sys.stderr)
    for line in _file_lines(outcome):
        print(line)


def _file_lines(outcome) -> list[str]:
    """What was written where, with the list's own counts (the terminal says what the file holds)."""
    tally = outcome.tally
    if tally is None:
        return [f"wrote {outcome.rows_written:,} rows to {outcome.output}"]
    parts = [f"{tally.at_risk:,} at risk (tier medium or high)"]
    if tally.tiers["low"]:
        low = tally.targeted_low_risk
        parts.append(f"{tally.tiers['low']:,} at low risk" + (f" ({low:,} of them targeted for their value)"
                                                              if low and low < tally.tiers["low"] else
                                                              " targeted for their value" if low else ""))
    lines = [f"wrote {tally.rows:,} rows to {outcome.output}: " + " and ".join(parts)
             + f"; {tally.targeted:,} targeted"]
    files = outcome.files or {}
    if "calls" in files:
        lines.append(f"call list: {tally.targeted - tally.control:,} subscribers to contact, in call order, in "
                     f"{files['calls']}")
    if "dictionary" in files:
        lines.append(f"data dictionary: {files['dictionary']}; scoring summary: {files.get('summary')}")
    if "report" in files:
        lines.append(f"report: {files['report']}")
    return lines


def cmd_score(args, progress: Progress) -> int:
    from pipeline.jobs import score_job
    from pipeline.tracking import resolve_uri

    config = _config(args)
    outcome = score_job(args.data, args.output, config=config, uri=resolve_uri(args.tracking_uri), model=args.model,
                        write_all=args.write_all, snapshot_date=args.snapshot, disclosure_date=args.disclosure,
                        budget=args.budget, capacity=args.capacity, engine=args.engine,
                        response_model=args.response_model, use_response=args.use_response,
                        control_share=args.control_share, campaign_id=args.campaign_id, calls=args.calls,
                        report=args.report, progress=progress)
    _print_score(outcome)
    return 0


def cmd_report(args, progress: Progress) -> int:
    from pipeline.jobs import report_job
    from pipeline.tracking import resolve_uri

    config = _config(args)
    path, logged = report_job(args.scores, config=config, out_dir=args.out, baseline=args.baseline,
                              uri=resolve_uri(args.tracking_uri) if args.log else None, progress=progress)
    print(f"report: {path}")
    if logged:
        print(f"added to scoring run {logged}")
    return 0


def cmd_models(args, progress: Progress) -> int:
    import json

    from pipeline.jobs import models_job
    from pipeline.tracking import resolve_uri

    cards = models_job(config=_config(args), uri=resolve_uri(args.tracking_uri))
    if args.json:
        print(json.dumps(cards, indent=1))
        return 0
    if not cards:
        print(f"no registered versions of {_config(args).tracking.model_name} (run `churn train` first)")
        return 0
    for line in _models_table(cards):
        print(line)
    return 0


def _models_table(cards: list[dict]) -> list[str]:
    """One line per version: name, version, aliases, family, hold-out metrics, training data, date."""
    import pandas as pd

    rows = []
    for card in cards:
        metrics = card.get("metrics") or {}
        data = card.get("data") or {}
        shown = ("roc_auc", "pr_auc", "brier", "top_decile_lift", "empc") if card["kind"] == "churn" else \
            ("qini_coefficient", "ate", "ate_ci_low", "ate_ci_high")
        rows.append({
            "model": card["name"], "version": card["version"], "aliases": ",".join(card.get("aliases") or []) or "-",
            "family": card.get("family") or "-",
            "hold-out": " ".join(f"{k}={metrics[k]:.4g}" for k in shown if k in metrics) or "-",
            "data sha256": (data.get("content_sha256") or "-")[:12],
            "rows": f"{data['rows']:,}" if data.get("rows") else "-",
            "snapshot": data.get("snapshot_date") or "-",
            "trained": (card.get("trained_at") or "-")[:16].replace("T", " "),
        })
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 80):
        return pd.DataFrame(rows).to_string(index=False).splitlines()


def cmd_measure(args, progress: Progress) -> int:
    from pipeline.jobs import measure_job
    from pipeline.tracking import resolve_uri

    outcome = measure_job(args.data, config=_config(args), uri=resolve_uri(args.tracking_uri), campaign=args.campaign,
                          snapshot_date=args.snapshot, progress=progress)
    for row in outcome.table.itertuples(index=False):
        print(f"campaign {row.campaign_id} ({row.start}): {row.n_offer:,} offered, {row.n_control:,} held out; churn "
              f"{row.churn_offer:.2%} offered vs {row.churn_control:.2%} held out: uplift {row.uplift * 100:.2f} points "
              f"[95% CI {row.uplift_low * 100:.2f}, {row.uplift_high * 100:.2f}], about {row.saves:,.0f} defections "
              f"prevented [{row.saves_low:,.0f}, {row.saves_high:,.0f}]")
    print(f"run {outcome.run_id}" + (f"; also logged to scoring run(s) {', '.join(outcome.scoring_runs)}"
                                     if outcome.scoring_runs else ""))
    return 0


def cmd_features(args, progress: Progress) -> int:
    from pipeline.jobs import features_job

    path, rows = features_job(args.data, args.output, config=_config(args), snapshot_date=args.snapshot,
                              disclosure_date=args.disclosure, progress=progress)
    print(f"wrote the features of {rows:,} subscribers to {path}")
    return 0


def cmd_promote(args, progress: Progress) -> int:
    from pipeline.jobs import promote_job
    from pipeline.tracking import resolve_uri

    print(promote_job(args.version, config=_config(args), uri=resolve_uri(args.tracking_uri)))
    return 0


def _calibration_words(method: str) -> str:
    return "no calibration needed" if method == "none" else f"{method} calibration"


def cmd_demo(args, progress: Progress) -> int:
    import pandas as pd

    from pipeline.jobs import generate_job, score_job, train_job
    from pipeline.errors import hide_credentials
    from pipeline.tracking import resolve_uri, ui_command

    # The demo trains and scores exactly as churn train and churn score do, with the same
    # defaults (or the --config file's settings).
    config = _config(args)
    workdir = Path(args.workdir).resolve()
    data_dir = workdir / "data" / "demo"
    outputs = workdir / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    uri = resolve_uri(args.tracking_uri, workdir)
    started = time.perf_counter()
    progress(f"generating {args.subscribers:,} subscribers into {data_dir}")
    generate_job(args.subscribers, seed=args.seed, out=str(data_dir), scenario=None, overwrite=True,
                 progress=lambda done, total: progress(f"generated {done:,} / {total:,}"))
    trained = train_job(str(data_dir), config=config, uri=uri, progress=progress)
    at_risk_path = outputs / "at_risk.csv"
    scored = score_job(str(data_dir), str(at_risk_path), config=config, uri=uri, progress=progress)
    m = trained.metrics
    print(f"\nPost-breach churn demo: {args.subscribers:,} synthetic subscribers, seed {args.seed}")
    print(f"model: {trained.family} ({_calibration_words(trained.calibration)}); hold-out ROC AUC {m['roc_auc']:.3f}, "
          f"top-decile lift {m['top_decile_lift']:.2f}, Brier {m['brier']:.4f}")
    print(f"registered {config.tracking.model_name} version {trained.version}; {trained.message}")
    _print_response(trained.response)
    print(f"at risk: {scored.at_risk:,} subscribers; expected value at risk {_fmt_money(scored.expected_loss_at_risk)} KRW")
    for line in _file_lines(scored)[:1]:
        print(line)
    t = scored.targeting
    print(f"worth a retention call: {t.targeted:,} subscribers; expected saves {t.expected_saves:,.0f}, "
          f"cost {_fmt_money(t.expected_cost)} KRW, expected net value {_fmt_money(t.expected_net_value)} KRW")
    for line in _targeting_lines(scored)[1:]:
        print(line)
    for line in scored.notes:
        print(f"warning: {line}", file=sys.stderr)
    shown = ("rank", "subscriber_id", "churn_probability", "risk_tier", "expected_loss",
             *(("estimated_uplift",) if scored.response_version else ()), "reason_1")
    columns = [c for c in shown if c in scored.top.columns]
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.max_colwidth", 70):
        print("\ntop 10:")
        print(scored.top[columns].to_string(index=False, float_format=lambda v: f"{v:,.3f}" if v < 1 else f"{v:,.0f}"))
    for line in _leaderboard(trained):
        print(line)
    print(f"\nfiles: records {data_dir}; at-risk list {at_risk_path}")
    for line in _file_lines(scored)[1:]:
        if not line.startswith("report: "):
            print(line)
    print(f"MLflow store: {hide_credentials(uri)}")
    print(f"open the MLflow UI: {ui_command(uri)}")
    print(f"done in {time.perf_counter() - started:.0f}s")
    if "report" in scored.files:
        print(f"report (open in a browser): {scored.files['report']}")
    return 0


COMMANDS = {"generate": cmd_generate, "train": cmd_train, "score": cmd_score, "features": cmd_features,
            "promote": cmd_promote, "measure": cmd_measure, "demo": cmd_demo, "report": cmd_report,
            "models": cmd_models}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _stop_cleanly_on_signals() -> None:
    """Ctrl-C and a scheduler's SIGTERM both end the command cleanly: no partial output.

    Set explicitly, since a process started in the background inherits an ignored SIGINT.
    """
    import signal

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def _progress() -> Progress:
    """Every step on a terminal or with ``CHURN_PROGRESS=1``; none with ``CHURN_PROGRESS=0``; else periodic
    (every ``CHURN_PROGRESS_SECONDS``, default ``PROGRESS_SECONDS``)."""
    asked = os.environ.get("CHURN_PROGRESS")
    if asked == "0":
        return Progress(False)
    if asked == "1" or sys.stderr.isatty():
        return Progress(True)
    try:
        interval = float(os.environ.get("CHURN_PROGRESS_SECONDS", PROGRESS_SECONDS))
    except ValueError:
        interval = PROGRESS_SECONDS
    return Progress(True, interval=max(interval, 1.0))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``churn`` console script."""
    # First of all, so that an interrupt while the heavy libraries load or a store is being
    # reached ends like any other: one line, no traceback, nothing written.
    _stop_cleanly_on_signals()
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted; no output was written", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # OpenMP threads that spin while waiting slow boosting down badly when the cores are
    # shared (CI, busy servers); passive waiting costs nothing on an idle machine.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    progress = _progress()
    from pipeline.errors import PipelineError, caused_by_interrupt, hide_credentials

    try:
        return COMMANDS[args.command](args, progress)
    except Exception as err:
        if caused_by_interrupt(err):
            raise KeyboardInterrupt from err
        if args.debug:
            raise
        if isinstance(err, PipelineError):
            print(f"error: {hide_credentials(err)}", file=sys.stderr)
            return EXIT_ERROR
        # an unexpected failure still ends in one line, not a traceback
        text = str(err).splitlines()[0] if str(err) else ""
        print(f"error: {type(err).__name__}: {hide_credentials(text)} (rerun with --debug for details)", file=sys.stderr)
        return EXIT_ERROR
    finally:
        progress.close()


if __name__ == "__main__":
    sys.exit(main())
