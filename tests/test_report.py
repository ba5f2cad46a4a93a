"""The list says one thing, and the report, the call list and the summary say what the list says.

Unit tests: the action rules (``targeting.list_actions``), the call order, the interval of a
sum of Bernoulli variables against its exact distribution, the totals chunk by chunk, the
data dictionary.  End to end (slow): a generated base trained and scored with the CLI; the
files beside the list, the terminal's counts, ``churn report`` from the files alone,
``churn models``, and the report in headless Chromium (no console errors, every plot loaded,
its totals equal to the list's; a screenshot is kept under the test's tmp dir).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.lists import OUTPUT_COLUMNS, ListTally, call_list, consistent_actions
from pipeline.summary import BaseTotals, column_dictionary, sum_interval
from pipeline.targeting import (BEYOND_LIMIT_ACTION, CONTROL_ACTION, DEFAULT_ACTION, DO_NOT_CONTACT,
                                LOST_CAUSE_ACTION, NO_CONTACT_ACTIONS, NOT_WORTH_ACTION, TARGETED_ACTION,
                                is_contact, list_actions)

CALL = "Retention call with a personalised offer"


# --- one list that says one thing ---------------------------------------------------------

@pytest.mark.parametrize("rule,targeted,harmful,tier,value,group,expected", [
    (CALL, True, False, "high", 10.0, "", CALL),                       # targeted: the rule's contact
    (DEFAULT_ACTION, True, False, "low", 10.0, "", TARGETED_ACTION),   # targeted: never "No outreach"
    (DEFAULT_ACTION, True, False, "low", 10.0, "offer", TARGETED_ACTION),
    (CALL, True, False, "high", 10.0, "control", CONTROL_ACTION),      # held out: never contacted
    (CALL, False, False, "high", 10.0, "", BEYOND_LIMIT_ACTION),       # worth it, beyond the limit
    (CALL, False, False, "high", -5.0, "", LOST_CAUSE_ACTION),         # high risk, does not pay
    (CALL, False, False, "medium", 0.0, "", NOT_WORTH_ACTION),
    (DEFAULT_ACTION, False, False, "low", -5.0, "", DEFAULT_ACTION),
    (DO_NOT_CONTACT, False, True, "high", -50.0, "", DO_NOT_CONTACT),  # pushed out by a contact
    (CALL, False, True, "high", -50.0, "", DO_NOT_CONTACT),
])
def test_the_action_follows_the_campaign(rule, targeted, harmful, tier, value, group, expected):
    got = list_actions([rule], targeted=[targeted], do_not_contact=[harmful], risk_tier=[tier],
                       expected_net_value=[value], group=[group])
    assert got.tolist() == [expected]


def test_no_row_says_call_unless_targeted_and_every_targeted_row_is_called():
    rng = np.random.default_rng(0)
    n = 5000
    rules = rng.choice([CALL, DEFAULT_ACTION, "Send a personalised retention message", DO_NOT_CONTACT], n)
    targeted = rng.random(n) < 0.3
    harmful = ~targeted & (rng.random(n) < 0.1)
    group = np.where(targeted & (rng.random(n) < 0.2), "control", np.where(targeted, "offer", ""))
    tier = rng.choice(["low", "medium", "high"], n)
    value = np.where(targeted, rng.random(n), rng.normal(size=n))
    action = list_actions(rules, targeted=targeted, do_not_contact=harmful, risk_tier=tier,
                          expected_net_value=value, group=group)
    called = is_contact(action)
    assert (called == (targeted & (group != "control"))).all()
    assert not np.isin(action[called], NO_CONTACT_ACTIONS).any()
    assert (action[group == "control"] == CONTROL_ACTION).all() and (action[harmful] == DO_NOT_CONTACT).all()


def _rows(n=12) -> pd.DataFrame:
    return pd.DataFrame({
        "rank": np.arange(1, n + 1),
        "subscriber_id": [f"S{i:03d}" for i in range(n)],
        "churn_probability": np.linspace(0.5, 0.05, n),
        "risk_tier": ["high"] * 4 + ["medium"] * 4 + ["low"] * (n - 8),
        "expected_loss": np.linspace(1000, 100, n),
        "reason_1": ["Fee waiver window is open now"] * n, "reason_2": [""] * n, "reason_3": [""] * n,
        "action": [CALL] * 8 + [DEFAULT_ACTION] * (n - 8),
        "targeted": [True, False, True, True, False, True, False, False, True, False, True, False][:n],
        "do_not_contact": [False] * n,
        "group": ["offer", "", "control", "offer", "", "offer", "", "", "offer", "", "offer", ""][:n],
        "expected_net_value": [5.0, -1, 9, 7, 2, 11, -3, -1, 3, -2, 7, -4][:n],
        "expected_save": np.full(n, 0.01), "expected_cost": np.full(n, 10.0),
    })


def test_consistent_actions_and_the_call_order():
    rows = consistent_actions(_rows())
    assert rows.loc[rows["group"] == "control", "action"].eq(CONTROL_ACTION).all()
    assert rows.loc[8, "action"] == TARGETED_ACTION  # targeted at low risk: called, never "No outreach"
    assert rows.loc[4, "action"] == BEYOND_LIMIT_ACTION and rows.loc[1, "action"] == LOST_CAUSE_ACTION
    calls = call_list(rows)
    # the offer group only, largest expected net value first, ties by rank
    assert calls["subscriber_id"].tolist() == ["S005", "S003", "S010", "S000", "S008"]
    assert calls["call_order"].tolist() == [1, 2, 3, 4, 5]


def test_the_tally_counts_what_is_written_in_any_batches():
    rows = consistent_actions(_rows())
    whole, pieces = ListTally(keep_calls=True), ListTally(keep_calls=True)
    whole.add(rows)
    for start in range(0, len(rows), 5):
        import pyarrow as pa

        pieces.add(pa.Table.from_pandas(rows.iloc[start:start + 5], preserve_index=False))
    assert whole.as_dict() == pieces.as_dict()
    assert whole.rows == 12 and whole.targeted == 6 and whole.control == 1 and whole.targeted_low_risk == 2
    assert whole.at_risk == 8 and sum(whole.actions.values()) == 12
    assert call_list(pieces.calls())["subscriber_id"].tolist() == call_list(rows)["subscriber_id"].tolist()


# --- the breach's impact: a sum of Bernoulli variables -----------------------------------

def _exact_quantiles(p: np.ndarray, level: float) -> tuple[int, int]:
    """Exact quantiles of the Poisson-binomial distribution, by convolution."""
    dist = np.array([1.0])
    for q in p:
        dist = np.convolve(dist, [1 - q, q])
    cdf = np.cumsum(dist)
    tail = (1 - level) / 2
    return int(np.searchsorted(cdf, tail)), int(np.searchsorted(cdf, 1 - tail))


@pytest.mark.parametrize("seed,n,scale", [(1, 400, 0.05), (2, 2000, 0.02), (3, 150, 0.3), (4, 3000, 0.005)])
def test_the_defections_interval_matches_the_exact_distribution(seed, n, scale):
    rng = np.random.default_rng(seed)
    p = np.clip(rng.exponential(scale, n), 1e-4, 0.95)
    q = p * (1 - p)
    interval = sum_interval(p.sum(), q.sum(), (q * (1 - 2 * p)).sum(), count=True)
    low, high = _exact_quantiles(p, 0.95)
    assert abs(interval.low - low) <= 1 and abs(interval.high - high) <= 1
    assert interval.low <= p.sum() <= interval.high


def test_the_value_interval_covers_simulated_losses():
    rng = np.random.default_rng(7)
    p = np.clip(rng.exponential(0.04, 3000), 1e-4, 0.9)
    value = rng.lognormal(13, 0.6, 3000)
    q = p * (1 - p)
    interval = sum_interval((p * value).sum(), (q * value**2).sum(), (q * (1 - 2 * p) * value**3).sum())
    draws = (rng.random((4000, p.size)) < p) @ value
    assert np.mean((draws >= interval.low) & (draws <= interval.high)) == pytest.approx(0.95, abs=0.012)


def _scored(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.001, 0.4, n)
    out = pd.DataFrame({"churn_probability": p, "save_value": rng.uniform(1e5, 1e6, n),
                        "etf_waived": np.where(rng.random(n) < 0.3, 50_000.0, 0.0),
                        "risk_tier": np.select([p > 0.2, p > 0.1], ["high", "medium"], "low"),
                        "expected_net_value": rng.normal(0, 1000, n), "do_not_contact": rng.random(n) < 0.05})
    inputs = pd.DataFrame({"contract_type": rng.choice(["24m", "none"], n), "tenure_months": rng.integers(0, 90, n),
                           "plan": rng.choice(["5g_slim", "lte_basic"], n)})
    return out, inputs


def test_totals_add_up_the_same_whatever_the_chunks():
    out, inputs = _scored(1000, 5)
    whole = BaseTotals.of(out, inputs)
    merged = BaseTotals()
    for start in range(0, 1000, 333):
        merged.merge(BaseTotals.of(out.iloc[start:start + 333].reset_index(drop=True),
                                   inputs.iloc[start:start + 333]))
    for name in ("expected_defections", "expected_loss"):
        for bound in ("mean", "low", "high"):
            assert merged.impact()[name][bound] == pytest.approx(whole.impact()[name][bound], rel=1e-12)
    pd.testing.assert_frame_equal(pd.DataFrame(merged.segment_table()), pd.DataFrame(whole.segment_table()),
                                  rtol=1e-12)
    assert whole.impact()["expected_defections"]["mean"] == pytest.approx(out["churn_probability"].sum())
    assert whole.impact()["etf_forgone"] == pytest.approx((out["etf_waived"] * out["churn_probability"]).sum())
    segments = pd.DataFrame(whole.segment_table())
    assert set(segments["segment"]) == {"contract_type", "tenure_band", "plan"}
    for _, part in segments.groupby("segment"):
        assert part["subscribers"].sum() == 1000
        assert part["expected_defections"].sum() == pytest.approx(out["churn_probability"].sum())
    curves = whole.value_curves()
    net = np.sort(out["expected_net_value"].to_numpy())[::-1]
    assert max(curves["by_value"]) == pytest.approx(net[net > 0].sum())
    assert curves["by_value"][-1] == pytest.approx(net.sum()) and curves["by_risk"][-1] == pytest.approx(net.sum())


def test_the_dictionary_describes_every_list_column():
    table = column_dictionary(OUTPUT_COLUMNS, currency="KRW", horizon_days=90, base_rate=0.04, medium=1.5, high=3)
    assert table["column"].tolist() == list(OUTPUT_COLUMNS)
    assert (table["meaning"] != "").all()
    assert table.set_index("column").loc["expected_loss", "unit"] == "KRW"
    assert "90 days" in table.set_index("column").loc["churn_probability", "meaning"]


# --- end to end ----------------------------------------------------------------------------

FAST = ("[train]\nsearch_iterations = 1\ncv_folds = 3\nblend = false\n"
        "candidates = [\"logistic\", \"hist_gradient_boosting\"]\n")
CHEAP = "[campaign]\noffer_cost_months = 0.05\ncontact_cost_months = 0.005\n"


def churn(*args, cwd, env=None, check=True):
    from servers import run_churn

    return run_churn(args, cwd, env=env, timeout=900, check=check)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A trained store on a generated base, and a list scored with a cheap offer, a capacity and a control group."""
    from pipeline import simulate

    work = tmp_path_factory.mktemp("report")
    (work / "fast.toml").write_text(FAST)
    (work / "cheap.toml").write_text(CHEAP)
    simulate.generate(3000, seed=11, out=work / "base")
    trained = churn("train", "--data", "base", "--config", "fast.toml", cwd=work,
                    env={"CHURN_PROGRESS_SECONDS": "2"})
    out = churn("score", "--data", "base", "--output", "list.csv", "--capacity", "150", "--control-share", "0.2",
                "--no-response", "--config", "cheap.toml", cwd=work)
    every = churn("score", "--data", "base", "--output", "every.parquet", "--all", "--no-response", "--config",
                  "cheap.toml", "--no-report", cwd=work)
    return work, trained, out, every


@pytest.mark.slow
def test_training_shows_periodic_progress_and_a_leaderboard(scored):
    _, trained, _, _ = scored
    lines = [line for line in trained.stderr.splitlines() if re.match(r"\[\s*[\d.]+s\] ", line)]
    times = [float(re.match(r"\[\s*([\d.]+)s\]", line).group(1)) for line in lines]
    assert len(lines) >= 2 and all(b - a >= 1.9 for a, b in zip(times, times[1:]))  # at most one every 2 s
    assert times[0] >= 1.9  # nothing in the first interval
    assert "candidates (" in trained.stdout and "* chosen" in trained.stdout
    board = trained.stdout[trained.stdout.index("candidates ("):].splitlines()
    assert sum(line.lstrip().startswith("*") for line in board) == 1


@pytest.mark.slow
def test_the_list_the_terminal_and_the_call_list_agree(scored):
    work, _, out, _ = scored
    listed = pd.read_csv(work / "list.csv", keep_default_na=False)
    called = is_contact(listed["action"].to_numpy(dtype=object))
    offer = listed["targeted"] & (listed["group"] != "control")
    assert (called == offer).all()
    assert listed.loc[~listed["targeted"], "action"].isin(NO_CONTACT_ACTIONS).all()
    assert listed.loc[listed["group"] == "control", "action"].eq(CONTROL_ACTION).all()
    assert (listed["risk_tier"].isin(["medium", "high"]) | listed["targeted"]).all()
    tiers = listed["risk_tier"].value_counts()
    at_risk = int(tiers.get("medium", 0) + tiers.get("high", 0))
    low = int(tiers.get("low", 0))
    assert f"wrote {len(listed):,} rows to list.csv: {at_risk:,} at risk (tier medium or high)" in out.stdout
    assert f"and {low:,} at low risk targeted for their value; {int(listed['targeted'].sum()):,} targeted" in out.stdout
    assert f"{at_risk:,} at risk, expected loss" in out.stdout  # the headline count is the file's
    calls = pd.read_csv(work / "list.calls.csv", keep_default_na=False)
    expected = listed[offer].sort_values(["expected_net_value", "rank"], ascending=[False, True])
    assert calls["subscriber_id"].tolist() == expected["subscriber_id"].tolist()
    assert calls["call_order"].tolist() == list(range(1, len(calls) + 1)) and len(calls) == 120
    assert calls.columns.tolist() == ["call_order", *listed.columns]
    assert f"call list: 120 subscribers to contact, in call order, in {work / 'list.calls.csv'}" in out.stdout or \
        "call list: 120 subscribers to contact, in call order, in list.calls.csv" in out.stdout
    dictionary = pd.read_csv(work / "list.dictionary.csv")
    assert dictionary["column"].tolist() == ["call_order", *listed.columns]
    assert dictionary.set_index("column").loc["clv", "unit"] == "KRW"


@pytest.mark.slow
def test_the_summary_adds_up_the_whole_base(scored):
    from pipeline.summary import read_json

    work, _, _, _ = scored
    every = pd.read_parquet(work / "every.parquet")
    summary = read_json(work / "every.summary.json")
    impact = summary["impact"]
    assert impact["subscribers"] == len(every) == summary["list"]["rows"]
    assert impact["expected_defections"]["mean"] == pytest.approx(every["churn_probability"].sum(), rel=1e-9)
    assert impact["expected_loss"]["mean"] == pytest.approx(every["expected_loss"].sum(), rel=1e-9)
    assert impact["etf_forgone"] == pytest.approx((every["etf_waived"] * every["churn_probability"]).sum(), rel=1e-9)
    low, high = impact["expected_defections"]["low"], impact["expected_defections"]["high"]
    assert low < impact["expected_defections"]["mean"] < high
    targeting = summary["campaign"]["targeting"]
    assert targeting["targeted"] == int(every["targeted"].sum())
    assert targeting["expected_net_value"] == pytest.approx(every.loc[every["targeted"], "expected_net_value"].sum())
    assert summary["list"]["counts"]["actions"] == every["action"].value_counts().to_dict()
    why = summary["why_not_called"]
    assert why["lost_cause"] == int((every["action"] == LOST_CAUSE_ACTION).sum())
    assert why["not_worth"] == int((every["action"] == NOT_WORTH_ACTION).sum())
    assert why["low_risk"] == int((every["action"] == DEFAULT_ACTION).sum())
    assert {s["segment"] for s in summary["segments"]} >= {"contract_type", "tenure_band", "exposure_level", "plan"}
    assert summary["models"]["churn"]["metrics"]["roc_auc"] > 0.5 and summary["models"]["churn"]["reliability"]
    assert summary["data"]["snapshot_date"] == "2025-05-01"
    assert summary["campaign"]["pilot_size"] > 0 and not summary["campaign"]["response_measured"]
    assert not (work / "every.report.html").exists()  # --no-report


class _Figures(HTMLParser):
    """``data-key`` -> ``data-value`` of a report, and its tables' rows."""

    def __init__(self):
        super().__init__()
        self.values: dict[str, str] = {}
        self.images = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "data-key" in attrs:
            self.values[attrs["data-key"]] = attrs.get("data-value", "")
        if tag == "img":
            self.images += 1
            assert attrs["src"].startswith("data:image/png;base64,")  # nothing fetched


def _list_figures(listed: pd.DataFrame) -> dict[str, float]:
    offer = listed["targeted"] & (listed["group"] != "control")
    return {"list.rows": len(listed), "campaign.targeted": int(listed["targeted"].sum()),
            "campaign.contacted": int(offer.sum()), "campaign.control": int((listed["group"] == "control").sum()),
            "campaign.expected_saves": listed.loc[offer, "expected_save"].sum(),
            "campaign.expected_cost": listed.loc[offer, "expected_cost"].sum(),
            "campaign.expected_net_value": listed.loc[offer, "expected_net_value"].sum(),
            "list.expected_loss": listed["expected_loss"].sum(),
            "list.at_risk": int(listed["risk_tier"].isin(["medium", "high"]).sum()),
            "why.list.lost_cause": int((listed["action"] == LOST_CAUSE_ACTION).sum()),
            "why.list.beyond_limit": int((listed["action"] == BEYOND_LIMIT_ACTION).sum())}


@pytest.mark.slow
def test_the_report_says_what_the_list_says_and_rebuilds_from_files(scored, tmp_path, monkeypatch):
    work, _, out, _ = scored
    page = (work / "list.report.html").read_text()
    assert "report: " in out.stdout and "<script" not in page and "http://" not in page and "https://" not in page
    figures = _Figures()
    figures.feed(page)
    listed = pd.read_csv(work / "list.csv", keep_default_na=False)
    for key, value in _list_figures(listed).items():
        assert float(figures.values[key]) == pytest.approx(value, rel=1e-9, abs=1e-6), key
    assert figures.images == 4  # segments, value curve, offer sweep, calibration
    calls = pd.read_csv(work / "list.calls.csv", keep_default_na=False)
    first = re.findall(r'<tr data-row="calls\.\d+"><td class="n">(\d+)</td><td class="id">([^<]+)</td>', page)
    assert [sid for _, sid in first] == calls["subscriber_id"].head(50).tolist()
    # `churn report` rebuilds the same page from the list and its summary alone
    again = churn("report", "--scores", "list.csv", "--out", str(tmp_path), cwd=work)
    assert (tmp_path / "list.report.html").read_text() == page
    # and the same page when the list is read a few rows at a time (its memory does not grow with the list)
    from pipeline import report

    summary = json.loads((work / "list.summary.json").read_text())
    monkeypatch.setattr(report, "LIST_BATCH_ROWS", 7)
    assert len(list(report.read_list_batches(work / "list.csv"))) > 10
    assert report.render(work / "list.csv", summary) == page
    assert "added to scoring run" in again.stdout
    # both pages (with ids, and the copy for MLflow without) come from one reading of the list
    readings = []
    read = report.read_list_batches
    monkeypatch.setattr(report, "read_list_batches", lambda path: readings.append(path) or read(path))
    pages = report.render_pages(work / "list.csv", summary)
    assert len(readings) == 1 and pages[True] == page
    assert pages[False] == report.render(work / "list.csv", summary, ids=False) != page


@pytest.mark.slow
def test_the_report_is_logged_to_the_scoring_run_and_models_are_listed(scored):
    import mlflow

    work, _, _, _ = scored
    run_id = json.loads((work / "list.summary.json").read_text())["run_id"]
    client = mlflow.tracking.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    names = {a.path for a in client.list_artifacts(run_id, "report")}
    assert {"report/list.report.html", "report/list.summary.json", "report/list.dictionary.csv"} <= names
    # MLflow holds no subscriber id: its copy of the report leaves the id column out, the file keeps it
    ids = pd.read_csv(work / "list.calls.csv", dtype=str, keep_default_na=False)["subscriber_id"].head(50)
    on_disk = (work / "list.report.html").read_text()
    logged = Path(client.download_artifacts(run_id, "report/list.report.html", str(work / "logged"))).read_text()
    assert all(sid in on_disk for sid in ids) and not [sid for sid in ids if sid in logged]
    assert 'class="id"' not in logged and logged.count('<tr data-row="calls.') == on_disk.count('<tr data-row="calls.')
    from pipeline import report

    assert logged == report.render(work / "list.csv", json.loads((work / "list.summary.json").read_text()), ids=False)
    shutil.rmtree(work / "logged")
    listing = churn("models", cwd=work)
    assert "post-breach-churn" in listing.stdout and "champion" in listing.stdout and "roc_auc=" in listing.stdout
    cards = json.loads(churn("models", "--json", cwd=work).stdout)
    churn_cards = [c for c in cards if c["kind"] == "churn"]
    assert churn_cards[0]["data"]["rows"] > 2000 and len(churn_cards[0]["data"]["content_sha256"]) == 64
    assert churn_cards[0]["data"]["snapshot_date"] == "2025-05-01" and "champion" in churn_cards[0]["aliases"]


@pytest.mark.slow
def test_the_report_in_headless_chromium(scored, tmp_path):
    from browser import BrowserUnavailable, chromium_session

    work, _, _, _ = scored
    listed = pd.read_csv(work / "list.csv", keep_default_na=False)
    try:
        session = chromium_session(tmp_path)
        browser = session.__enter__()
    except BrowserUnavailable as err:
        pytest.skip(f"Chromium unavailable: {err}")
    try:
        browser.open((work / "list.report.html").as_uri())
        console = browser.console()
        assert not [entry for entry in console if entry.get("level") in ("SEVERE", "WARNING")], console
        images = browser.run("return [...document.images].map(i => [i.closest('figure').dataset.plot, i.complete, "
                             "i.naturalWidth, i.naturalHeight])")
        assert sorted(name for name, *_ in images) == ["calibration", "offer_sweep", "segments", "value_curve"]
        assert all(complete and width > 300 and height > 200 for _, complete, width, height in images)
        shown = browser.run("const out = {}; document.querySelectorAll('[data-key]').forEach(e => "
                            "out[e.dataset.key] = [e.dataset.value, e.textContent]); return out;")
        for key, value in _list_figures(listed).items():
            raw, text = shown[key]
            assert float(raw) == pytest.approx(value, rel=1e-9, abs=1e-6), key
            assert text.split(" ")[0].replace(",", "") == (f"{value:.1f}" if key.endswith("saves") else
                                                           f"{value:.0f}"), key
        width = browser.run("return document.documentElement.scrollWidth")
        assert width <= 1366  # readable on a laptop: nothing wider than the window
        shot = browser.screenshot(tmp_path / "report.png")
    finally:
        session.__exit__(None, None, None)
    assert shot.stat().st_size > 50_000
    kept = Path(os.environ.get("CHURN_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
    kept.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, kept / "report.png")  # the test artifact: what the report looked like in Chromium
    print(f"\nreport screenshot: {kept / 'report.png'}")
