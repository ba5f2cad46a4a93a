"""The list stage (``pipeline.lists``): rank, choose, cut and finish rows, the same for every engine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipeline.config import Config
from pipeline.errors import DataError
from pipeline.lists import (GROUP_CODES, SEQ, ListTally, choose, cut, finalize, in_list_order, list_rows,
                            rank_scores, value_counts, with_explanations)
from pipeline.score import ScoringModel, score_rows
from pipeline.targeting import CONTROL_ACTION, is_contact


def _scores(n=400, seed=0) -> pd.DataFrame:
    """Scored rows as ``score_rows`` makes them, from known probabilities and monthly values."""
    rng = np.random.default_rng(seed)
    scoring = ScoringModel(model=None, version="7", input_columns=[], base_rate=0.1)
    proba = rng.uniform(0.01, 0.6, n)
    value = rng.choice([20.0, 40.0, 80.0], n)
    return score_rows(scoring, [f"S{i:04d}" for i in rng.permutation(n)], proba, Config(), monthly_value=value)


def test_without_a_control_share_nobody_is_held_out():
    ranked = rank_scores(_scores())
    choice = choose(ranked)
    assert choice.groups is None
    assert choice.targeted.sum() == choice.summary.targeted == (ranked["expected_net_value"] > 0).sum() > 0


def test_the_control_group_is_the_exact_share_seeded_and_the_summary_counts_the_offer_group():
    ranked = rank_scores(_scores())
    plain = choose(ranked, capacity=100)
    held = choose(ranked, capacity=100, control_share=0.2, seed=3)
    assert (held.targeted == plain.targeted).all()  # holding out changes who is called, not who is chosen
    assert np.count_nonzero(held.groups == 2) == 20 == held.summary.control
    assert np.count_nonzero(held.groups == 1) == 80
    assert (held.groups[~held.targeted] == 0).all()
    offer = held.groups == 1
    assert held.summary.expected_net_value == pytest.approx(ranked["expected_net_value"].to_numpy()[offer].sum())
    again = choose(ranked, capacity=100, control_share=0.2, seed=3)
    other = choose(ranked, capacity=100, control_share=0.2, seed=4)
    assert (again.groups == held.groups).all()
    assert (other.groups != held.groups).any()


def test_finalize_with_a_control_group_labels_groups_and_gives_control_rows_the_control_action():
    listed, summary = finalize(_scores(), capacity=100, control_share=0.2, seed=3, campaign_id="c-1")
    targeted = listed["targeted"].to_numpy()
    assert targeted.sum() == 100
    assert listed.loc[targeted, "group"].value_counts().to_dict() == {"offer": 80, "control": 20}
    assert (listed.loc[~targeted, "group"] == "").all()
    assert (listed.loc[targeted, "campaign_id"] == "c-1").all() and (listed.loc[~targeted, "campaign_id"] == "").all()
    control = listed["group"] == "control"
    assert (listed.loc[control, "action"] == CONTROL_ACTION).all()
    assert is_contact(listed.loc[listed["group"] == "offer", "action"].to_numpy(dtype=object)).all()
    assert summary.control == 20
    assert list(listed.columns[:3]) == ["rank", "subscriber_id", "churn_probability"]
    assert listed["rank"].tolist() == list(range(1, len(listed) + 1))


def test_finalize_cuts_to_the_at_risk_list_unless_asked_for_every_row():
    scores = _scores()
    listed, _ = finalize(scores)
    every, _ = finalize(scores, write_all=True)
    assert len(every) == len(scores)
    keep = every["risk_tier"].isin(["medium", "high"]) | every["targeted"]
    assert listed["subscriber_id"].tolist() == every.loc[keep, "subscriber_id"].tolist()
    assert listed["rank"].tolist() == list(range(1, len(listed) + 1))


def test_finalize_refuses_repeated_ids_and_names_them():
    scores = _scores(10)
    scores.loc[3, "subscriber_id"] = scores.loc[7, "subscriber_id"]
    with pytest.raises(DataError, match=f"repeat across the input: {scores.loc[7, 'subscriber_id']}"):
        finalize(scores)


def test_list_rows_are_the_same_from_a_frame_and_from_an_arrow_table():
    """The stream finishes pandas batches (the at-risk list) and Arrow batches (``--all``) alike."""
    ranked = rank_scores(_scores())
    ranked[SEQ] = np.arange(len(ranked), dtype="int64")
    rows = cut(ranked, choose(ranked, capacity=50, control_share=0.1, seed=1), write_all=True)
    assert GROUP_CODES in rows.columns
    from_frame = list_rows(rows.copy(), campaign_id="x")
    from_arrow = list_rows(pa.Table.from_pandas(rows, preserve_index=False), campaign_id="x").to_pandas()
    assert SEQ not in from_frame.columns and GROUP_CODES not in from_frame.columns
    assert list(from_frame.columns) == list(from_arrow.columns)
    for column in from_frame.columns:
        assert from_frame[column].astype(str).tolist() == from_arrow[column].astype(str).tolist(), column


@pytest.mark.parametrize("kind", ["str", "object", "category", "arrow", "arrow dictionary"])
def test_value_counts_count_blanks_as_empty_text_whatever_the_column_type(kind):
    values = ["b", None, "a", "b", "", "c", None]
    where = np.array([1, 0, 1, 1, 1, 0, 1], dtype=bool)
    column = {"str": pd.array(values, dtype="str"), "object": pd.Series(values, dtype=object),
              "category": pd.Categorical(values, categories=["a", "b", "c", "", "unused"]),
              "arrow": pa.array(values), "arrow dictionary": pa.array(values).dictionary_encode()}[kind]
    table = pa.table({"x": column}) if kind.startswith("arrow") else pd.DataFrame({"x": column})
    assert value_counts(table, "x") == {"a": 1, "b": 2, "c": 1, "": 3}
    assert value_counts(table, "x", where) == {"a": 1, "b": 2, "": 2}


def test_the_tally_counts_a_list_the_same_from_frames_and_from_arrow_batches():
    ranked = rank_scores(_scores())
    ranked[SEQ] = np.arange(len(ranked), dtype="int64")
    rows = list_rows(cut(ranked, choose(ranked, capacity=50, control_share=0.2, seed=1), write_all=True),
                     campaign_id="x")
    from_frames, from_arrow = ListTally(), ListTally()
    for start in range(0, len(rows), 64):
        batch = rows.iloc[start:start + 64]
        from_frames.add(batch)
        from_arrow.add(pa.Table.from_pandas(batch, preserve_index=False).unify_dictionaries())
    tier, targeted = rows["risk_tier"].astype(str), rows["targeted"].astype(bool)
    expected = {
        "rows": len(rows), "tiers": {name: int((tier == name).sum()) for name in ("low", "medium", "high")},
        "targeted": 50, "targeted_by_tier": {name: int((tier[targeted] == name).sum()) for name in ("low", "medium", "high")},
        "control": 10, "do_not_contact": int(rows["do_not_contact"].sum()),
        "actions": rows["action"].astype(str).value_counts().to_dict(),
    }
    for tally in (from_frames, from_arrow):
        got = tally.as_dict()
        assert {key: got[key] for key in expected} == expected


def test_explanations_land_on_their_rows_by_position_in_the_base():
    frame = in_list_order(rank_scores(_scores(20)))
    frame[SEQ] = np.arange(20, dtype="int64")[::-1]
    explained = pd.DataFrame({SEQ: [2, 5], "reason_1": ["a", "b"], "reason_2": ["", ""], "reason_3": ["", ""],
                              "action": ["call", "text"]})
    merged = with_explanations(frame.copy(), explained)
    at = {int(s): i for i, s in enumerate(merged[SEQ])}
    assert merged["reason_1"].iloc[at[2]] == "a" and merged["action"].iloc[at[5]] == "text"
    assert (merged["reason_1"].drop(index=[at[2], at[5]]) == "").all()
