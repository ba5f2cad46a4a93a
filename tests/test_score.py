"""Scoring helpers: tiers, ranking, the at-risk cut, CSV formula neutralisation, atomic writes."""

import numpy as np
import pandas as pd
import pytest

from pipeline.config import Config
from pipeline.errors import DataError
from pipeline.lists import at_risk, rank_scores
from pipeline.output import neutralise_formulas, write_output
from pipeline.score import risk_tiers


def _scores():
    return pd.DataFrame(
        {
            "subscriber_id": ["a", "b", "c", "d"],
            "churn_probability": [0.10, 0.50, 0.30, 0.05],
            "risk_tier": ["medium", "high", "high", "low"],
            "expected_loss": [500.0, 100.0, 900.0, 10.0],
        }
    )


def test_tiers_are_multiples_of_the_training_churn_rate():
    tiers = risk_tiers(np.array([0.01, 0.16, 0.29, 0.31, 0.9]), base_rate=0.1, config=Config())
    assert tiers.tolist() == ["low", "medium", "medium", "high", "high"]


def test_rank_by_expected_loss_then_cut_at_risk():
    ranked = rank_scores(_scores())
    assert ranked["subscriber_id"].tolist() == ["c", "a", "b", "d"]
    assert ranked["rank"].tolist() == [1, 2, 3, 4]
    listed = at_risk(ranked)
    assert listed["subscriber_id"].tolist() == ["c", "a", "b"] and listed["rank"].tolist() == [1, 2, 3]


def test_rank_by_probability_when_no_value_is_known():
    ranked = rank_scores(_scores().assign(expected_loss=np.nan))
    assert ranked["subscriber_id"].tolist() == ["b", "c", "a", "d"]


def test_formula_text_is_neutralised_for_spreadsheets():
    frame = pd.DataFrame({"id": ["=1+1", "+cmd", "-2", "@SUM(A1)", "ok"], "x": [-1.0, 2.0, 3.0, 4.0, 5.0]})
    out = neutralise_formulas(frame)
    assert out["id"].tolist() == ["'=1+1", "'+cmd", "'-2", "'@SUM(A1)", "ok"]
    assert out["x"].tolist() == [-1.0, 2.0, 3.0, 4.0, 5.0]
    assert frame["id"].iloc[0] == "=1+1"  # the input frame is not mutated


def test_csv_output_is_neutralised_and_written_whole(tmp_path):
    path = write_output(pd.DataFrame({"subscriber_id": ["=HYPERLINK(1)"], "p": [0.5]}), tmp_path / "list.csv")
    assert path.read_text(encoding="utf-8").splitlines() == ["subscriber_id,p", "'=HYPERLINK(1),0.5"]
    assert [p.name for p in tmp_path.iterdir()] == ["list.csv"]


def test_parquet_round_trip_and_same_bytes_on_rerun(tmp_path):
    frame = _scores()
    first = write_output(frame, tmp_path / "a.parquet").read_bytes()
    second = write_output(frame, tmp_path / "a.parquet").read_bytes()
    assert first == second
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), frame)


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    target = tmp_path / "list.parquet"
    target.write_bytes(b"previous list")
    real = pq.ParquetWriter.write_table

    def boom(self, *args, **kwargs):
        real(self, *args, **kwargs)  # half a file on disk, then the disk fills up
        raise OSError("disk full")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", boom)
    with pytest.raises(OSError, match="disk full"):
        write_output(_scores(), target)
    assert target.read_bytes() == b"previous list"
    assert [p.name for p in tmp_path.iterdir()] == ["list.parquet"]


def test_bad_output_paths_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match=r"unsupported output type '\.xlsx'"):
        write_output(_scores(), tmp_path / "x.xlsx")
    with pytest.raises(DataError, match="does not exist"):
        write_output(_scores(), tmp_path / "missing" / "x.csv")
