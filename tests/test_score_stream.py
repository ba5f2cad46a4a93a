"""Scoring whole bases in bounded memory: sorted runs merged into the list, explained rows, ids, drift.

The end-to-end tests score a generated record base with a real model in a temporary MLflow
store and compare the bytes of lists written in many chunks with lists written in one.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.drift import DriftCounter
from pipeline.errors import DataError
from pipeline._engine import IdCheck, merge_runs, parquet_batches
from pipeline.lists import in_list_order, rank_order, rank_scores
from pipeline.output import ListWriter, write_output

FAST = "[train]\nsearch_iterations = 1\ncv_folds = 3\nblend = false\n"
CHEAP_OFFER = "[campaign]\noffer_cost_months = 0.05\ncontact_cost_months = 0.005\n"


def _tied_scores(n=5000, seed=3) -> pd.DataFrame:
    """Scores with many exact ties in loss and probability, and some unknown losses."""
    rng = np.random.default_rng(seed)
    proba = rng.choice([0.05, 0.1, 0.2, 0.4], size=n)
    value = rng.choice([100.0, 250.0, 400.0], size=n)
    loss = proba * value
    loss[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "subscriber_id": [f"S{i:06d}" for i in rng.permutation(n)],
        "churn_probability": proba,
        "expected_loss": loss,
        "risk_tier": np.where(proba >= 0.2, "high", "low"),
        "action": "call",
    })


def _runs(scores: pd.DataFrame, folder: Path, size: int, group_rows: int | None = None) -> list[Path]:
    paths = []
    for number, start in enumerate(range(0, len(scores), size)):
        chunk = scores.iloc[start:start + size]
        path = folder / f"run-{number}.parquet"
        pq.write_table(pa.Table.from_pandas(chunk.take(rank_order(chunk)), preserve_index=False), path,
                       row_group_size=group_rows)
        paths.append(path)
    return paths


@pytest.mark.parametrize("size,buffer_rows,group_rows", [(700, 2000, None), (700, 2000, 64),  # runs of many row groups
                                                         pytest.param(1, 50_000, None, marks=pytest.mark.slow),  # a file per row
                                                         (5000, 10, None)])
def test_merged_runs_equal_the_in_memory_ranking_ties_included(tmp_path, size, buffer_rows, group_rows):
    scores = _tied_scores()
    expected = rank_scores(scores)
    merged = pa.concat_tables(list(merge_runs(_runs(scores, tmp_path, size, group_rows),
                                              buffer_rows=buffer_rows))).to_pandas()
    assert merged["subscriber_id"].tolist() == expected["subscriber_id"].tolist()
    # ties: equal losses and probabilities go by id; unknown losses last
    tied = expected[expected["expected_loss"].eq(expected["expected_loss"].iloc[0])]
    assert tied["subscriber_id"].is_monotonic_increasing and len(tied) > 10
    assert expected["expected_loss"].iloc[-1] != expected["expected_loss"].iloc[-1]


def test_parquet_batches_read_every_row_in_order_a_row_group_at_a_time(tmp_path):
    table = pa.table({"a": np.arange(250), "b": [f"t{i}" for i in range(250)]})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=100)
    batches = list(parquet_batches(pq.ParquetFile(tmp_path / "t.parquet"), batch_rows=30, columns=["b"]))
    assert [batch.num_rows for batch in batches] == [30, 30, 30, 10] * 2 + [30, 20]  # never across two groups
    assert pa.Table.from_batches(batches).equals(table.select(["b"]))
    pq.write_table(table.slice(0, 0), tmp_path / "empty.parquet")
    assert list(parquet_batches(pq.ParquetFile(tmp_path / "empty.parquet"), batch_rows=30)) == []


def test_compact_gives_the_categories_astype_gives_for_any_text_storage():
    """Arrow-backed text is coded in Arrow; the result is what ``astype(CategoricalDtype)``
    gives: values outside the levels and blanks missing, the index and other columns kept."""
    from pipeline._engine import compact

    rng = np.random.default_rng(4)
    n = 5_000
    values = rng.choice(["call", "offer", "skip", "unknown", None], n).tolist()
    frame = pd.DataFrame({
        "action": pd.Series(values, dtype="str"),
        "python_text": pd.Series(values, dtype="string[python]"),
        "objects": pd.Series(values, dtype=object),
        "number": np.arange(n),
    }, index=np.arange(n)[::-1] * 3)
    levels = {"action": ["call", "offer", "skip"], "python_text": ["call", "offer", "skip"],
              "objects": ["call", "offer", "skip"], "absent": ["x"]}
    with warnings.catch_warnings():  # pandas 3 warns that astype will refuse values outside the levels
        warnings.simplefilter("ignore")
        expected = frame.astype({name: pd.CategoricalDtype(level) for name, level in levels.items() if name != "absent"})
    pd.testing.assert_frame_equal(compact(frame, levels), expected)
    assert compact(frame, {"action": [str(i) for i in range(300)]})["action"].isna().all()


def test_lexsort_ranking_matches_a_three_key_sort():
    scores = _tied_scores(seed=9)
    for frame in (scores, scores.assign(expected_loss=np.nan)):
        key = "expected_loss" if frame["expected_loss"].notna().any() else "churn_probability"
        reference = frame.sort_values([key, "churn_probability", "subscriber_id"], ascending=[False, False, True],
                                      kind="stable")
        assert rank_scores(frame)["subscriber_id"].tolist() == reference["subscriber_id"].tolist()


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_list_written_in_uneven_batches_is_the_same_bytes(tmp_path, suffix, monkeypatch):
    import pipeline.output as output

    monkeypatch.setattr(output, "WRITE_BATCH", 1000)
    frame = in_list_order(rank_scores(_tied_scores()).assign(action=lambda f: f["action"].astype("category")))
    whole = write_output(frame, tmp_path / f"whole{suffix}").read_bytes()
    with ListWriter(tmp_path / f"pieces{suffix}") as writer:
        for start, stop in [(0, 3), (3, 1800), (1800, 1801), (1801, 5000)]:
            writer.write(frame.iloc[start:stop])
    assert (tmp_path / f"pieces{suffix}").read_bytes() == whole
    if suffix == ".parquet":
        assert [pq.ParquetFile(tmp_path / "whole.parquet").metadata.row_group(i).num_rows for i in range(5)] == [1000] * 5
        assert pd.read_parquet(tmp_path / "whole.parquet")["action"].dtype == "str"


def test_an_aborted_writer_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with ListWriter(tmp_path / "list.parquet") as writer:
            writer.write(_tied_scores(10))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_repeated_ids_are_found_across_chunks_and_named():
    check = IdCheck()
    for start in range(0, 4000, 500):
        check.add(pd.Series([f"S{i}" for i in range(start, start + 500)]))
    with pytest.raises(DataError, match=r"^subscriber ids repeat across the input: S3999, S17$"):
        check.add(pd.Series(["new-1", "S3999", "S17"]))
    with pytest.raises(DataError, match="repeat across the input: twice"):
        IdCheck().add(pd.Series(["twice", "once", "twice"]))


def test_drift_counts_the_same_sample_whatever_the_chunks():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=50_000), "c": rng.choice(["a", "b", None], size=50_000)})
    reference = {"x": {"kind": "numeric", "edges": [-1.0, 0.0, 1.0], "shares": [0.2, 0.3, 0.3, 0.2, 0.0]},
                 "c": {"kind": "categorical", "levels": ["a", "b"], "shares": [0.4, 0.4, 0.2]}}
    one = DriftCounter(reference, exact_rows=10_000, every=10)
    one.add(frame)
    many = DriftCounter(reference, exact_rows=10_000, every=10)
    for start in range(0, len(frame), 777):
        many.add(frame.iloc[start:start + 777])
    for name in reference:
        np.testing.assert_allclose(one.counts[name], many.counts[name])
        # 10,000 rows counted once, then every 10th of the other 40,000 weighted by 10
        assert one.counts[name].sum() == pytest.approx(10_000 + 10 * 4_000)
    exact = DriftCounter(reference, exact_rows=10**9)
    exact.add(frame)
    assert abs(exact.psi()["x"] - one.psi()["x"]) < 0.01


# --- end to end, on a generated base with a real model ----------------------------------


def churn(*args, cwd):
    from servers import run_churn

    return run_churn(args, cwd, env={"CHURN_PROGRESS": "1"}, timeout=900)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("stream")
    (work / "fast.toml").write_text(FAST)
    from pipeline import simulate

    # parts of 700 subscribers, each in row groups of at most 8,192: chunks of 300 split nothing
    # below a part, so 300 gives one chunk per part and 100,000 one chunk in all
    simulate.generate(4000, seed=5, out=work / "base", chunk_subscribers=700)
    churn("train", "--data", "base", "--config", "fast.toml", cwd=work)
    # many chunks on three threads against one chunk on one thread
    (work / "small.toml").write_text("[scoring]\nchunk_rows = 300\nexplain_rows = 150\nworkers = 3\n")
    (work / "whole.toml").write_text("[scoring]\nchunk_rows = 100000\nexplain_rows = 150\nworkers = 1\n")
    return work


@pytest.mark.slow  # trains a model through `churn`
@pytest.mark.parametrize("name,extra", [("all.parquet", ["--all"]), ("all.csv", ["--all"]),
                                        ("list.csv", []), ("cap.parquet", ["--all", "--capacity", "40"])])
def test_many_chunks_on_many_threads_give_the_bytes_of_one_chunk(trained, name, extra):
    work = trained
    small = churn("score", "--data", "base", "--output", f"small-{name}", "--config", "small.toml", *extra, cwd=work)
    churn("score", "--data", "base", "--output", f"whole-{name}", "--config", "whole.toml", *extra, cwd=work)
    assert (work / f"small-{name}").read_bytes() == (work / f"whole-{name}").read_bytes()
    assert "scored 700 / 4,000 rows" in small.stderr  # one chunk per part: 6 runs merged
    assert not [p for p in work.iterdir() if p.name.startswith((f".small-{name}", f".whole-{name}"))]


@pytest.mark.slow  # trains a model through `churn`
def test_reasons_go_to_the_first_rows_worth_a_call(trained):
    work = trained
    churn("score", "--data", "base", "--output", "every.parquet", "--all", "--config", "small.toml", cwd=work)
    every = pd.read_parquet(work / "every.parquet")
    worth = every[(every["risk_tier"] != "low") | (every["expected_net_value"] > 0)]
    assert len(worth) > 150
    explained = every["reason_1"] != ""
    # only the first 150 rows worth a call are explained (a few may have no risk-raising input)
    assert set(every.index[explained]) <= set(worth.index[:150])
    assert explained[worth.index[:150]].mean() > 0.9
    # beyond them: blank reasons, and actions from the rules that do not need reasons
    later = worth.iloc[150:]
    assert (later[["reason_1", "reason_2", "reason_3"]] == "").all().all()
    assert later["action"].ne("No outreach: standard service and breach notice").any()
    assert (every.loc[~every.index.isin(worth.index), "action"] == "No outreach: standard service and breach notice").all()
    assert every["rank"].tolist() == list(range(1, len(every) + 1))


@pytest.mark.slow  # trains a model through `churn`
def test_many_sorted_runs_merged_give_the_same_bytes(trained, tmp_path):
    work = trained
    churn("score", "--data", "base", "--output", "reference.parquet", "--all", "--config", "whole.toml", cwd=work)
    # score_job in a fresh interpreter (MLflow's tracking state is global), with runs of one
    # 700-row chunk each (6 runs) merged 133 rows per run at a time
    code = f"""
import json
import pipeline.score as score
from pipeline.config import load_config
from pipeline.jobs import score_job
score.RUN_ROWS = 500
score.MERGE_BUFFER_ROWS = 800
score.EXPLAIN_BLOCK_ROWS = 40
outcome = score_job({str(work / "base")!r}, {str(tmp_path / "merged.parquet")!r},
                    config=load_config({str(work / "small.toml")!r}), uri={f"sqlite:///{work / 'mlflow.db'}"!r},
                    write_all=True)
print(json.dumps([outcome.rows_written, outcome.rows_scored]))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[4000, 4000]"
    assert (tmp_path / "merged.parquet").read_bytes() == (work / "reference.parquet").read_bytes()
    # no runs left behind: the list and the files beside it only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged.dictionary.csv", "merged.parquet",
                                                          "merged.report.html", "merged.summary.json"]


@pytest.mark.slow  # trains a model through `churn`
def test_rules_on_reasons_apply_to_explained_rows_only(trained):
    work = trained
    # a cheap offer with the response assumed: the at-risk subscribers are worth a call, so
    # targeted, and their action is the rule table's (an untargeted row says why it is not called)
    (work / "rules.toml").write_text(
        CHEAP_OFFER + "\n[scoring]\nexplain_rows = 20\n\n"
        "[[scoring.actions]]\nwhen = { reason_1_feature = [\"!=\", \"\"], risk_tier = [\"in\", [\"high\", \"medium\"]] }\n"
        "action = \"Call about the first reason\"\n\n"
        "[[scoring.actions]]\nwhen = { risk_tier = [\"in\", [\"high\", \"medium\"]] }\naction = \"Message\"\n"
    )
    churn("score", "--data", "base", "--output", "rules.csv", "--config", "rules.toml", "--no-response", cwd=work)
    listed = pd.read_csv(work / "rules.csv", keep_default_na=False)
    at_risk = listed[listed["risk_tier"].isin(["high", "medium"]) & listed["targeted"]]
    assert at_risk["rank"].iloc[:10].tolist() == list(range(1, 11))
    explained = at_risk["reason_1"] != ""
    assert explained.sum() <= 20 and explained.iloc[:10].all()
    assert (at_risk.loc[explained, "action"] == "Call about the first reason").all()
    # beyond the explained rows the reason column is blank but present, so the rule never matches
    assert (at_risk.loc[~explained, "action"] == "Message").all() and (~explained).sum() > 100



@pytest.mark.slow  # trains a model through `churn`
def test_control_groups_are_random_reproducible_and_the_same_whatever_the_chunks(trained):
    work = trained
    for name, scoring in (("small", "chunk_rows = 300\nworkers = 3"), ("whole", "chunk_rows = 100000\nworkers = 1")):
        (work / f"{name}-cheap.toml").write_text(f"{CHEAP_OFFER}\n[scoring]\n{scoring}\nexplain_rows = 150\n")
    runs = {}
    for name, seed, extra in (("small", "3", ["--all"]), ("whole", "3", ["--all"]), ("listed", "3", []),
                              ("other", "4", ["--all"])):
        config = "small-cheap.toml" if name == "small" else "whole-cheap.toml"
        out = churn("score", "--data", "base", "--output", f"ctl-{name}.parquet", "--config", config, "--capacity",
                    "60", "--control-share", "0.25", "--seed", seed, "--no-response", *extra, cwd=work)
        runs[name] = (pd.read_parquet(work / f"ctl-{name}.parquet"), out)
    assert (work / "ctl-small.parquet").read_bytes() == (work / "ctl-whole.parquet").read_bytes()
    every, out = runs["whole"]
    targeted = every[every["targeted"]]
    assert len(targeted) == 60 and (targeted["group"] == "control").sum() == 15
    assert set(every.loc[~every["targeted"], "group"]) == {""} and set(targeted["group"]) == {"offer", "control"}
    control = targeted[targeted["group"] == "control"]
    assert (control["action"] == "Control group: do not contact (measures what the campaign changes)").all()
    assert (targeted["action"][targeted["group"] == "offer"] != control["action"].iloc[0]).all()
    campaign = targeted["campaign_id"].unique()
    assert len(campaign) == 1 and campaign[0].startswith("c") and set(every.loc[~every["targeted"], "campaign_id"]) == {""}
    assert f"control group: 15 of the 60 targeted held out at random (campaign {campaign[0]}); contact the other 45" \
        in out.stdout
    # The expected figures printed count the contacted (offer) group only.
    offer = targeted[targeted["group"] == "offer"]
    assert f"expected saves {offer['expected_save'].sum():,.1f}" in out.stdout
    # The at-risk list holds the same targeted subscribers in the same groups.
    listed, _ = runs["listed"]
    merged = listed.merge(targeted[["subscriber_id", "group"]], on="subscriber_id", suffixes=("", "_all"))
    assert len(merged) == 60 and (merged["group"] == merged["group_all"]).all()
    # Another seed holds out another group (of the same size).
    other, _ = runs["other"]
    other_control = set(other.loc[other["group"] == "control", "subscriber_id"])
    assert len(other_control) == 15 and other_control != set(control["subscriber_id"])


@pytest.mark.slow  # trains a model through `churn`
def test_the_notebook_path_and_churn_score_write_the_same_list(trained, tmp_path):
    """One list stage: a frame scored in memory and cut with ``finalize`` (the notebooks) gives
    the bytes of ``churn score`` streaming the base, with a budget and a control group."""
    work = trained
    (work / "cheap.toml").write_text(CHEAP_OFFER)
    out = churn("score", "--data", "base", "--output", "cli.csv", "--config", "cheap.toml", "--budget", "500000",
                "--control-share", "0.2", "--seed", "3", "--campaign-id", "nb", "--no-response", cwd=work)
    assert "control group:" in out.stdout  # subscribers were targeted, and some held out
    code = f"""
from pipeline import jobs, tracking
from pipeline.config import load_config
from pipeline.dataset import records_dataset
from pipeline.lists import finalize
from pipeline.output import write_output
from pipeline.records import load_records
from pipeline.score import score_dataset

config = load_config({str(work / "cheap.toml")!r})
tracking.connect({f"sqlite:///{work / 'mlflow.db'}"!r})
scoring = jobs.scoring_model(tracking.load_model(tracking.model_uri(config.tracking.model_name)))
scores = score_dataset(scoring, records_dataset(load_records({str(work / "base")!r}), require_label=False), config)
listed, _ = finalize(scores, budget=500000, control_share=0.2, seed=3, campaign_id="nb")
write_output(listed, {str(tmp_path / "notebook.csv")!r})
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "notebook.csv").read_bytes() == (work / "cli.csv").read_bytes()


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_in_order_keeps_order_raises_errors_unchanged_and_stops_when_closed(workers):
    import random
    import threading
    import time
    from functools import partial

    from pipeline.errors import DataError
    from pipeline._engine import in_order

    def slow(number):  # later tasks often finish first
        time.sleep(random.Random(number).random() / 200)
        return number * number

    assert list(in_order((partial(slow, n) for n in range(40)), workers=workers)) == [n * n for n in range(40)]
    assert list(in_order(iter([]), workers=workers)) == []

    def broken():
        raise DataError("base/usage_monthly: column month: row 7 is not a date")

    got = in_order(iter([partial(slow, 1), broken, partial(slow, 3)]), workers=workers)
    assert next(got) == 1
    with pytest.raises(DataError, match=r"^base/usage_monthly: column month: row 7 is not a date$"):
        next(got)

    def failing_source():  # the source itself fails (a record part that cannot be opened)
        yield partial(slow, 2)
        raise DataError("base/subscribers/part-00001.parquet: cannot read it as Parquet")

    got = in_order(failing_source(), workers=workers)
    assert next(got) == 4
    with pytest.raises(DataError, match="part-00001"):
        next(got)

    started = []

    def endless():
        for number in range(10_000):
            started.append(number)
            yield partial(slow, number)

    early = in_order(endless(), workers=workers)
    assert [next(early), next(early)] == [0, 1]
    time.sleep(0.3)
    assert len(started) <= 2 + workers + 1  # bounded: at most workers + 1 results ahead
    early.close()
    time.sleep(0.5)
    settled = len(started)
    time.sleep(0.3)
    assert len(started) == settled
    assert not any(t.name.startswith("churn-chunk-") for t in threading.enumerate())


def test_in_order_runs_tasks_at_once():
    import threading

    from pipeline._engine import in_order

    barrier = threading.Barrier(2, timeout=5)  # both tasks must be running together to pass

    def meet(number):
        barrier.wait()
        return number

    assert list(in_order(iter([lambda: meet(0), lambda: meet(1)]), workers=2)) == [0, 1]
