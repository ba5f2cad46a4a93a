"""Batch scoring: from a model and subscribers' inputs to scored rows, and whole bases to lists.

``score_dataset`` applies a fitted model (``ScoringModel``, and its response model) to a
modelling table and returns one row per subscriber (``score_rows``): probability, risk
tier, lifetime value, expected loss and campaign economics; ``explain_rows`` gives reasons
and the rule table's action.  What becomes of scored rows (rank, targets, cut, actions) is
the list stage's (``pipeline.lists``: ``finalize`` for a scored frame in memory).

``ScoreStream`` is what ``churn score`` uses for whole bases, on either engine: it takes
scored chunks, keeps only the rows a list can hold (and, with ``--all``, writes sorted runs
to merge), explains the first ``scoring.explain_rows`` rows worth a contact, and has the list
stage build the list batch by batch as ``pipeline.output.ListWriter`` writes it, in memory
bounded by about one chunk.  The mechanics (ordered worker pool, run merging, id check) are
in ``pipeline._engine``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline._engine import IdCheck, as_arrow, compact, in_order, merge_runs, read_ahead, release_memory
from pipeline.config import Config
from pipeline.errors import DataError, ModelError
from pipeline.inputs import InputContract, check_columns
from pipeline.lists import (GROUP_CODES, REASON_COLUMNS, SEQ, TIERS, ListTally, call_list, choose, cut, key_arrays,
                            last_key, list_rows, rank_order, sorts_before, with_explanations)
from pipeline.output import WRITE_BATCH, ListWriter, check_destination, plain_text, write_output


def predict(model, frame: pd.DataFrame, input_columns: list[str], *, n_threads: int = 2) -> np.ndarray:
    """Churn probabilities for raw rows (the model's own input columns, in training order)."""
    from threadpoolctl import threadpool_limits

    from pipeline.model import predict_threads

    try:
        with threadpool_limits(limits=n_threads), predict_threads(n_threads):
            return model.predict_proba(frame[input_columns])[:, 1]
    except (ValueError, TypeError) as err:
        raise ModelError(f"the model cannot score these rows: {str(err).splitlines()[0]}") from err


def risk_tiers(proba: np.ndarray, base_rate: float, config: Config) -> np.ndarray:
    """``high`` / ``medium`` / ``low`` from the probability as a multiple of the training churn rate."""
    medium = min(config.scoring.medium_risk_multiple * base_rate, 0.999)
    high = min(config.scoring.high_risk_multiple * base_rate, 0.999)
    return np.select([proba >= high, proba >= medium], ["high", "medium"], "low")


@dataclass
class ResponseScorer:
    """A loaded response (uplift) model: what a retention contact changes for each subscriber."""

    model: object
    version: str
    input_columns: list[str]
    #: Where it was loaded from (the Spark engine loads it again there, from verified files).
    uri: str = ""

    def uplift(self, frame: pd.DataFrame, *, n_threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """Each row's estimated reduction of its churn probability by a retention contact, and its
        standard error (``pipeline.response.ResponseModel.predict_se``)."""
        from threadpoolctl import threadpool_limits

        check_columns(frame, self.input_columns, source="the response model's input")
        try:
            with threadpool_limits(limits=n_threads):
                raw = self.model.line_input(frame[self.input_columns])
                return self.model.calibrate(raw), self.model.uncertainty(raw)
        except (ValueError, TypeError) as err:
            raise ModelError(f"the response model cannot score these rows: {str(err).splitlines()[0]}") from err


#: A contact is expected to push a subscriber out (``do_not_contact``) when even the upper
#: end of the one-sided 95% interval of the estimated uplift is below 0.
HARM_Z = 1.6449


@dataclass
class ScoringModel:
    """A loaded model and what scoring needs to know about it (from its MLflow metadata)."""

    model: object
    version: str
    input_columns: list[str]
    base_rate: float
    mode: str = "table"
    id_column: str | None = None
    value_column: str | None = None
    label_column: str | None = None
    signature: dict[str, str] = field(default_factory=dict)
    profile: dict = field(default_factory=dict)
    #: The response model scored next to this one, when one is registered.
    response: ResponseScorer | None = None

    @property
    def contract(self) -> InputContract:
        """What the model takes (``pipeline.inputs.InputContract``), from its metadata and signature."""
        return InputContract(columns=tuple(self.input_columns), types=dict(self.signature), mode=self.mode,
                             id_column=self.id_column, value_column=self.value_column,
                             label_column=self.label_column)


def score_rows(scoring: ScoringModel, ids, proba: np.ndarray, config: Config, *, monthly_value=None,
               etf_waived=None, etf=None, uplift=None, uplift_se=None) -> pd.DataFrame:
    """The list columns from probabilities: tier, value, expected loss and campaign economics.

    ``etf`` is each subscriber's early termination fee and ``etf_waived`` the part a fee
    waiver would forgive (``pipeline.targeting.save_value``); ``uplift`` a response model's
    estimate of what a contact changes (without it the response is assumed,
    ``pipeline.targeting.campaign_values``) and ``uplift_se`` its standard error, from which
    ``do_not_contact`` follows (``HARM_Z``).  Reasons and actions start blank
    (``explain_rows`` fills them); one row per id, in order.
    """
    from pipeline.targeting import (DEFAULT_ACTION, campaign_values, clv, expected_saves, save_value,
                                    subscriber_monthly_churn)

    campaign = config.campaign
    proba = np.asarray(proba, dtype="float64")
    out = pd.DataFrame({"subscriber_id": pd.Series(ids).astype(str).to_numpy(), "churn_probability": proba})
    out["risk_tier"] = risk_tiers(proba, scoring.base_rate, config)
    if monthly_value is not None:
        value = np.asarray(monthly_value, dtype="float64")
        churn = subscriber_monthly_churn(proba, scoring.base_rate, campaign) if campaign.lifetime_from_model else None
        out["monthly_value"] = value
        out["clv"] = clv(value, campaign, monthly_churn=churn)
        out["etf_waived"] = 0.0 if etf_waived is None else np.nan_to_num(np.asarray(etf_waived, dtype="float64"))
        out["save_value"] = save_value(out["clv"].to_numpy(), etf, out["etf_waived"].to_numpy())
        out["expected_loss"] = proba * out["save_value"]
        economics = campaign_values(proba, out["save_value"].to_numpy(), campaign, monthly_value=value, uplift=uplift)
    else:
        for column in ("monthly_value", "clv", "etf_waived", "save_value", "expected_loss"):
            out[column] = np.nan
        economics = campaign_values(proba, campaign.default_clv, campaign, uplift=uplift)
    for column in ("expected_save", "expected_cost", "expected_net_value"):
        out[column] = economics[column].to_numpy()
    if uplift is not None:
        out["estimated_uplift"] = expected_saves(proba, uplift=uplift)
        out["expected_incremental_value"] = out["expected_net_value"]
        se = np.zeros(len(out)) if uplift_se is None else np.asarray(uplift_se, dtype="float64")
        out["do_not_contact"] = out["estimated_uplift"].to_numpy() + HARM_Z * se < 0
    else:
        out["estimated_uplift"] = np.nan
        out["expected_incremental_value"] = np.nan
        out["do_not_contact"] = False
    for k in (1, 2, 3):
        out[f"reason_{k}"] = ""
    out["action"] = DEFAULT_ACTION
    out["model_version"] = str(scoring.version)
    out["response_model_version"] = "" if scoring.response is None else str(scoring.response.version)
    return out


def worth_explaining(out: pd.DataFrame) -> np.ndarray:
    """Rows a retention team will see: at risk, or with a positive expected net value."""
    return (out["risk_tier"] != "low").to_numpy() | (out["expected_net_value"] > 0).to_numpy()


def _actions_for(out: pd.DataFrame, rows: np.ndarray, found: pd.DataFrame, X: pd.DataFrame,
                 config: Config) -> np.ndarray:
    """The rule table's action for ``out``'s rows at ``rows``, given their reasons and inputs ``X``."""
    from pipeline.targeting import parse_rules, recommend_actions

    context = pd.concat(
        [out.iloc[rows].reset_index(drop=True), found.reset_index(drop=True),
         X.drop(columns=[c for c in out.columns if c in X.columns]).reset_index(drop=True)],
        axis=1,
    )
    rules = parse_rules(config.scoring.actions) if config.scoring.actions else None
    actions = recommend_actions(context, rules, strict=True) if rules else recommend_actions(context)
    return actions.to_numpy()


def explain_rows(scoring: ScoringModel, out: pd.DataFrame, rows: np.ndarray, X: pd.DataFrame,
                 config: Config) -> None:
    """Fill ``reason_1..3`` and ``action`` of ``out`` at positions ``rows``; ``X`` holds those rows' inputs."""
    from pipeline.explain import reasons

    if len(rows) == 0:
        return
    found = reasons(scoring.model, X[scoring.input_columns], k=3, n_threads=config.train.n_threads)
    actions = _actions_for(out, rows, found, X, config)
    for k in (1, 2, 3):
        out.loc[rows, f"reason_{k}"] = found[f"reason_{k}"].fillna("").to_numpy()
    out.loc[rows, "action"] = actions


def recommend_rows(out: pd.DataFrame, rows: np.ndarray, X: pd.DataFrame, config: Config) -> None:
    """Fill ``action`` of ``out`` at positions ``rows`` from the rule table, without reasons.

    For listed subscribers beyond the explained ones: rules on ``reason_*_feature`` do not
    match (the reasons are blank); every other rule applies as usual.
    """
    if len(rows) == 0:
        return
    blank = pd.DataFrame({f"reason_{k}_feature": np.full(len(rows), "", dtype=object) for k in (1, 2, 3)})
    out.loc[rows, "action"] = _actions_for(out, rows, blank, X, config)


def score_dataset(scoring: ScoringModel, dataset, config: Config, *, explain: bool = True,
                  n_threads: int | None = None) -> pd.DataFrame:
    """Score every row of one chunk: probability, tier, value, expected loss, targeting, reasons.

    One output row per input row, in input order.  With ``explain``, reasons and actions are
    given to every row worth a retention team's time (at risk, or with a positive expected
    net value); the others keep blanks, since explaining costs two to three predictions.
    ``churn score`` passes ``explain=False`` and lets ``ScoreStream`` explain the top of the
    list only.  ``n_threads`` (default ``config.train.n_threads``) bounds the model's threads.
    """
    check_columns(dataset.frame, scoring.input_columns, source=dataset.source)
    threads = n_threads or config.train.n_threads
    proba = predict(scoring.model, dataset.frame, scoring.input_columns, n_threads=threads)
    uplift, uplift_se = (None, None) if scoring.response is None else scoring.response.uplift(dataset.frame,
                                                                                               n_threads=threads)
    waived = dataset.extra.get("etf_waivable")
    etf = dataset.frame["early_termination_fee"] if scoring.mode == "records" and waived is not None else None
    out = score_rows(scoring, dataset.ids, proba, config, monthly_value=dataset.monthly_value,
                     etf_waived=None if waived is None else waived.to_numpy(),
                     etf=None if etf is None else etf.to_numpy(dtype="float64", na_value=np.nan), uplift=uplift,
                     uplift_se=uplift_se)
    if explain:
        rows = np.flatnonzero(worth_explaining(out))
        explain_rows(scoring, out, rows, dataset.frame.iloc[rows], config)
    return out


# --------------------------------------------------------------------------------------
# Whole bases in bounded memory: scored chunks in, a ranked list out
# --------------------------------------------------------------------------------------


#: Rows buffered per sorted run while merging (the total across runs stays near this).
MERGE_BUFFER_ROWS = 500_000
#: Scored rows gathered (compactly) before they are sorted and written as one run (``--all``):
#: fewer, longer runs make the merge cheaper.
RUN_ROWS = 1_000_000
#: Rows per Parquet row group of a run.  The merge decodes each run a row group at a time
#: (``parquet_batches``), so it holds at most a group per run: one group of 1M rows per run
#: took the peak of a 10M-row base's merge from 1.8 to 2.4 GiB.
RUN_GROUP_ROWS = 16_384
#: Rows explained per block (blocks are explained on ``scoring.workers`` threads at once).
EXPLAIN_BLOCK_ROWS = 25_000


@dataclass
class _Prepared:
    """One scored chunk, ready for ``ScoreStream.take`` (``_seq`` still counts from 0)."""

    ids: pd.Series
    hashes: np.ndarray
    probabilities: np.ndarray
    tiers: dict
    #: Rows whose estimated uplift is negative (a contact is expected to push them out).
    harmed: int
    #: ``pipeline.targeting.offer_sweep`` of the chunk.
    sweep: np.ndarray
    loss_at_risk: float
    pool: tuple | None  # (rows worth explaining, their inputs)
    kept: pd.DataFrame
    run: object  # every row as an Arrow table (``write_all``), else None


class ScoreStream:
    """Score a base chunk by chunk and write its list, in memory bounded by the chunks in flight.

    Per chunk (``prepare`` on any thread, then ``take`` in input order; ``add`` does both):
    the rows no rule can list or target (tier ``low`` with an expected net value of at most
    0: every ``select_*`` takes positive net values only) leave memory at once, after
    counting them for the run's metrics; the others are kept compactly.  With
    ``write_all`` every row also goes to a temporary Parquet run, sorted in list order, in a
    folder next to the output, and ``finish`` merges the runs into the output batch by batch.
    Reasons go to the first ``config.scoring.explain_rows`` rows of the list worth explaining
    (a bounded pool of candidates and their inputs is kept while scoring); the other rows worth
    a contact get an action from the rules that do not read reasons.  The output is the same,
    byte for byte, whatever the chunk size and the number of threads.
    """

    def __init__(self, scoring: ScoringModel, config: Config, *, output: str | Path, write_all: bool = False):
        from pipeline.errors import ConfigError
        from pipeline.targeting import (CAMPAIGN_ACTIONS, CONTROL_ACTION, DEFAULT_ACTION, DEFAULT_ACTIONS,
                                        OFFER_SWEEP_MONTHS, parse_rules)

        if config.scoring.explain_rows < 0:
            raise ConfigError("scoring.explain_rows must be 0 or more")
        self.scoring = scoring
        self.config = config
        self.output = Path(output)
        check_destination(self.output)
        self.write_all = write_all
        self.limit = int(config.scoring.explain_rows)
        rules = parse_rules(config.scoring.actions) if config.scoring.actions else DEFAULT_ACTIONS
        self.categories = {
            "risk_tier": list(TIERS),
            "action": sorted({rule.action for rule in rules} | {DEFAULT_ACTION, CONTROL_ACTION, *CAMPAIGN_ACTIONS}),
            "model_version": [str(scoring.version)],
            "response_model_version": ["" if scoring.response is None else str(scoring.response.version)],
        }
        self.rows = 0
        self.tiers = dict.fromkeys(TIERS, 0)
        #: Subscribers whom a contact is expected to push out (negative estimated uplift).
        self.do_not_contact = 0
        #: Subscribers worth a contact and their expected net value at each offer size
        #: (``pipeline.targeting.OFFER_SWEEP_MONTHS``), summed over the base.
        self.sweep = np.zeros((len(OFFER_SWEEP_MONTHS), 2))
        self.loss_at_risk = 0.0
        self.probabilities: list[np.ndarray] = []
        self.kept: list[pd.DataFrame] = []
        self.pool_pieces: list[tuple[pd.DataFrame, pd.DataFrame]] = []
        self.pool_rows = 0
        self.pool_last: tuple | None = None
        self.ids = IdCheck()
        self.runs: list[Path] = []
        self.pending: list = []  # Arrow tables of scored rows, for the next run
        self.pending_rows = 0
        self.folder: Path | None = None

    # -- per chunk ---------------------------------------------------------------------

    def add(self, out: pd.DataFrame, X: pd.DataFrame) -> None:
        """Take one scored chunk (``score_dataset(..., explain=False)``) and its inputs (same rows)."""
        self.take(self.prepare(out, X))

    def add_rows(self, out: pd.DataFrame, rows: np.ndarray, X: pd.DataFrame) -> None:
        """Like ``add``, with the inputs given only for the rows worth explaining (positions ``rows``)."""
        self.take(self.prepare(out, X, rows=rows))

    def prepare(self, out: pd.DataFrame, X: pd.DataFrame, *, rows: np.ndarray | None = None) -> _Prepared:
        """The work on one scored chunk that needs no other chunk (safe on any thread; ``take`` it in order).

        ``X`` holds the inputs of every row of ``out``, or with ``rows`` only those of ``rows``.
        """
        from pipeline.targeting import offer_sweep, targeting_arrays

        out = out.reset_index(drop=True)
        if rows is None:
            rows = np.flatnonzero(worth_explaining(out))
            X = X.iloc[rows]
        targeting_arrays(out)  # missing or infinite money is an error even on rows not kept
        out[SEQ] = np.arange(len(out), dtype="int64")  # position in the chunk until ``take``
        tier = out["risk_tier"].to_numpy()
        X = X.reset_index(drop=True)
        recommend_rows(out, rows, X, self.config)
        return _Prepared(
            ids=out["subscriber_id"],
            hashes=IdCheck.hashes(out["subscriber_id"]),
            probabilities=out["churn_probability"].to_numpy(dtype="float64").copy(),
            tiers={name: int(np.count_nonzero(tier == name)) for name in TIERS},
            harmed=int(np.count_nonzero(out["do_not_contact"].to_numpy(dtype=bool))),
            sweep=offer_sweep(out["churn_probability"].to_numpy(), out["expected_save"].to_numpy(),
                              out["save_value"].to_numpy(dtype="float64", na_value=np.nan),
                              out["monthly_value"].to_numpy(dtype="float64", na_value=np.nan), self.config.campaign),
            loss_at_risk=float(np.nansum(out["expected_loss"].to_numpy(dtype="float64")[tier != "low"])),
            pool=(out.iloc[rows].reset_index(drop=True), X) if len(rows) and self.limit else None,
            kept=compact(out.iloc[rows].drop(columns=list(REASON_COLUMNS)), self.categories),
            run=as_arrow(compact(out.drop(columns=list(REASON_COLUMNS)), self.categories)) if self.write_all else None,
        )

    def take(self, chunk: _Prepared) -> None:
        """Add a prepared chunk, the next of the base."""
        import pyarrow as pa

        self.ids.add(chunk.ids, chunk.hashes)
        start = self.rows
        for frame in (chunk.kept, None if chunk.pool is None else chunk.pool[0]):
            if frame is not None:
                frame[SEQ] += start
        if chunk.run is not None:
            position = chunk.run.column_names.index(SEQ)
            chunk.run = chunk.run.set_column(position, SEQ, pa.array(chunk.run.column(position).to_numpy() + start))
        self.rows += len(chunk.ids)
        self.probabilities.append(chunk.probabilities)
        for name, count in chunk.tiers.items():
            self.tiers[name] += count
        self.do_not_contact += chunk.harmed
        self.sweep += chunk.sweep
        self.loss_at_risk += chunk.loss_at_risk
        if chunk.pool is not None:
            self._add_to_pool(*chunk.pool)
        self.kept.append(chunk.kept)
        if self.write_all:
            self._write_run(chunk.run)

    def _add_to_pool(self, out: pd.DataFrame, X: pd.DataFrame) -> None:
        """Keep the rows (and inputs) that may still be among the first ``limit`` rows worth explaining.

        Rows that sort after the ``limit``-th best row seen so far never enter; the pool is cut
        back to ``limit`` rows when it reaches twice that.
        """
        if self.pool_last is not None:
            better = np.flatnonzero(sorts_before(key_arrays(out), self.pool_last, inclusive=False))
            if not len(better):
                return
            out, X = out.take(better), X.take(better)
        self.pool_pieces.append((out, X))
        self.pool_rows += len(out)
        if self.pool_rows >= 2 * self.limit:
            self._prune_pool()

    def _prune_pool(self) -> None:
        if not self.pool_pieces:
            return
        out = pd.concat([o for o, _ in self.pool_pieces], ignore_index=True)
        X = pd.concat([x for _, x in self.pool_pieces], ignore_index=True)
        best = rank_order(out)[: self.limit]
        out, X = out.take(best).reset_index(drop=True), X.take(best).reset_index(drop=True)
        self.pool_pieces, self.pool_rows = [(out, X)], len(out)
        if len(out) >= self.limit:
            self.pool_last = last_key(key_arrays(out.iloc[-1:]))

    def _write_run(self, out: pd.DataFrame | None) -> None:
        """Gather a scored chunk; write the gathered rows as one sorted run once ``RUN_ROWS`` (or at the end)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if out is not None:  # an Arrow table from ``prepare``: compact, without reasons
            self.pending.append(out)
            self.pending_rows += out.num_rows
            if self.pending_rows < RUN_ROWS:
                return
        if not self.pending:
            return
        if self.folder is None:
            from pipeline.files import temp_folder

            self.folder = temp_folder(self.output)
        path = self.folder / f"run-{len(self.runs):05d}.parquet"
        rows = pa.concat_tables(self.pending) if len(self.pending) > 1 else self.pending[0]
        self.pending, self.pending_rows = [], 0
        pq.write_table(rows.take(rank_order(rows)), path, compression="lz4", row_group_size=RUN_GROUP_ROWS)
        self.runs.append(path)

    # -- at the end --------------------------------------------------------------------

    def offer_sweep(self) -> pd.DataFrame:
        """The base's offer-size sweep: offer size (months of value), subscribers worth a contact, their net value."""
        from pipeline.targeting import OFFER_SWEEP_MONTHS

        return pd.DataFrame({"offer_months": OFFER_SWEEP_MONTHS, "worth_contacting": self.sweep[:, 0].astype("int64"),
                             "expected_net_value": self.sweep[:, 1]})

    def explained(self) -> pd.DataFrame:
        """Reasons and actions of the first ``limit`` rows worth explaining, by ``_seq``."""
        self._prune_pool()
        if not self.pool_pieces:
            return pd.DataFrame({SEQ: np.array([], dtype="int64"), **{c: [] for c in (*REASON_COLUMNS, "action")}})
        out, X = self.pool_pieces[0]
        self.pool_pieces, self.pool_rows = [], 0

        def explain_block(start: int) -> pd.DataFrame:
            block = out.iloc[start:start + EXPLAIN_BLOCK_ROWS].reset_index(drop=True)
            inputs = X.iloc[start:start + EXPLAIN_BLOCK_ROWS].reset_index(drop=True)
            explain_rows(self.scoring, block, np.arange(len(block)), inputs, self.config)
            return block[[SEQ, *REASON_COLUMNS, "action"]]

        blocks = (partial(explain_block, start) for start in range(0, len(out), EXPLAIN_BLOCK_ROWS))
        found = list(in_order(blocks, workers=self.config.scoring.workers))
        return pd.concat(found, ignore_index=True).sort_values(SEQ, ignore_index=True)

    def finish(self, *, budget: float | None = None, capacity: int | None = None, control_share: float = 0.0,
               seed: int = 0, campaign_id: str | None = None, calls: str | Path | None = None) -> dict:
        """Rank, target, explain and write the list; return what the run's summary needs.

        The list stage (``pipeline.lists``) decides: the kept rows are ranked
        (``rank_order``), targeted and split into offer and control groups (``choose``: with
        ``control_share``, that share of the targeted, chosen at random by ``seed``, is held
        out as campaign ``campaign_id``'s control group), cut (``cut``) and finished batch by
        batch as they are written (``list_rows``).  The written rows are counted
        (``ListTally``, in the result as ``tally``), so what is printed is what the file
        holds.  With ``calls``, the targeted subscribers to contact (the offer group) are
        also written there in call order (``call_list``).  Reasons are found on a second
        thread while the kept rows are ranked and targeted; with ``write_all`` the runs are
        merged on a second thread while the merged rows are written.
        """
        if not self.rows:
            raise DataError("no subscribers to score")
        explaining = ThreadPoolExecutor(1, thread_name_prefix="churn-explain")
        self.tally = ListTally(keep_calls=calls is not None)
        try:
            explained = explaining.submit(self.explained)
            if self.write_all:
                self._write_run(None)
            self.ids = None  # no more chunks: free the id hashes
            stats = self._probability_stats()
            ranked = self._ranked_kept()
            choice = choose(ranked, budget=budget, capacity=capacity, control_share=control_share, seed=seed)
            if self.write_all:  # the runs hold every row: only the ranked rows' positions are needed
                order = ranked[SEQ].to_numpy()
                del ranked
                top, written = self._write_merged(order, choice, explained, campaign_id or "")
            else:
                listed = cut(ranked, choice)
                del ranked
                top, written = self._write_listed(listed, explained, campaign_id or "")
        finally:
            explaining.shutdown(wait=False, cancel_futures=True)
        if calls is not None:
            write_output(call_list(self.tally.calls()), calls)
        return {"summary": choice.summary, "top": plain_text(top.drop(columns=[SEQ], errors="ignore")),
                "rows_written": written, "probability_stats": stats, "tally": self.tally}

    def _probability_stats(self) -> dict[str, float]:
        """The base's mean churn probability and its 10th, 50th, 90th and 99th percentiles."""
        probabilities = np.concatenate(self.probabilities)
        self.probabilities = []
        quantiles = np.quantile(probabilities, [0.1, 0.5, 0.9, 0.99])
        return {"mean_probability": float(probabilities.mean()),
                **{f"probability_p{q}": float(v) for q, v in zip((10, 50, 90, 99), quantiles)}}

    def _ranked_kept(self) -> pd.DataFrame:
        """The kept rows in list order (with ``write_all``, only the columns ranking and targeting read)."""
        from pipeline.targeting import TARGETING_COLUMNS

        kept = pd.concat(self.kept, ignore_index=True)
        self.kept = []
        if self.write_all:  # ranking and targeting need only these; the runs hold the rest
            kept = kept[[SEQ, "subscriber_id", "churn_probability", "expected_loss", *TARGETING_COLUMNS]]
        return kept.take(rank_order(kept)).reset_index(drop=True)

    def _write(self, batches) -> tuple[pd.DataFrame, int]:
        """Write the list's batches (frames or Arrow tables); return its first 10 rows and its length."""
        top = None
        with ListWriter(self.output, mode=self.config.scoring.file_mode) as writer:
            for batch in batches:
                if top is None:
                    top = batch.head(10).copy() if isinstance(batch, pd.DataFrame) else batch.slice(0, 10).to_pandas()
                self.tally.add(batch)
                writer.write(batch)
        return top, writer.rows

    def _write_listed(self, listed: pd.DataFrame, explained, campaign_id: str) -> tuple[pd.DataFrame, int]:
        """Write the cut list with reasons, a batch at a time (``explained``: a future of ``explained()``)."""
        def batch(start: int):
            rows = with_explanations(listed.iloc[start:start + WRITE_BATCH].copy(), explained.result())
            return list_rows(rows, campaign_id=campaign_id)

        return self._write(batch(start) for start in (range(0, len(listed), WRITE_BATCH) if len(listed) else [0]))

    def _write_merged(self, order: np.ndarray, choice, explained, campaign_id: str) -> tuple[pd.DataFrame, int]:
        """Write every row, from the merged runs, with rank, targeting, groups and reasons.

        ``order`` holds the positions in the base (``SEQ``) of the ranked kept rows that
        ``choice`` is about; ``explained`` is a future of ``explained()``.
        """
        import pyarrow as pa

        targeted = np.zeros(self.rows, dtype=bool)
        targeted[order[choice.targeted]] = True
        codes = None
        if choice.groups is not None:
            codes = np.zeros(self.rows, dtype="int8")
            codes[order] = choice.groups

        def batches():
            done = 0
            for batch in merge_runs(self.runs, buffer_rows=MERGE_BUFFER_ROWS):
                seq = batch.column(SEQ).to_numpy()
                rows = batch.num_rows
                batch = batch.add_column(0, "rank", pa.array(np.arange(done + 1, done + rows + 1, dtype="int64")))
                batch = batch.append_column("targeted", pa.array(targeted[seq]))
                batch = with_explanations(batch, explained.result())
                if codes is not None:
                    batch = batch.append_column(GROUP_CODES, pa.array(codes[seq]))
                done += rows
                yield list_rows(batch, campaign_id=campaign_id)
                release_memory(pa)  # each batch's text columns are freed; hand the memory back

        return self._write(read_ahead(batches()))

    def cleanup(self) -> None:
        """Remove the temporary runs (call in all cases, also after an error)."""
        import shutil

        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        self.runs = []
