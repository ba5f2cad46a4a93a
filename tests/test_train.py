"""Selection and calibration (train.py), and behavioural tests of a model trained on generated records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.config import Config, with_overrides
from pipeline.dataset import table_dataset
from pipeline.train import _choose_calibration, _oof_proba, train


def _table(n=3000, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    z = rng.normal(size=n)
    plan = rng.choice(["a", "b", "c"], size=n)
    logit = -2.5 + 1.2 * x + 0.6 * z + np.where(plan == "a", 0.7, 0.0)
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame({"id": np.arange(n).astype(str), "x": x, "z": z, "plan": plan, "fee": rng.uniform(10, 50, n),
                         "churn": y.astype(int)})


FAST = with_overrides(Config(), train={"search_iterations": 1, "cv_folds": 3, "candidates": ("logistic",)})


def test_calibration_improves_brier_of_a_miscalibrated_model():
    from pipeline.model import make_candidate

    frame = _table()
    y = frame["churn"].to_numpy()
    # class weights push every probability up: accurate ranking, dishonest probabilities
    skewed = make_candidate("logistic", drop_columns=("id",), classifier__class_weight="balanced")
    oof = _oof_proba(skewed, frame.drop(columns=["churn"]), y, FAST)
    method, scores = _choose_calibration(y, oof, FAST)
    assert method in ("sigmoid", "isotonic")
    assert scores[method] < 0.8 * scores["uncalibrated"]


def test_train_is_reproducible_and_reports_the_holdout():
    dataset = table_dataset(_table(), id_column="id", target="churn", value_column="fee")
    first, second = train(dataset, FAST), train(dataset, FAST)
    np.testing.assert_array_equal(first.holdout_proba, second.holdout_proba)
    assert len(first.holdout_index) == 600 and first.train_rows == 2400
    assert first.metrics["n_rows"] == 600 and 0.7 < first.metrics["roc_auc"] < 0.9
    assert first.calibration_scores[first.calibration] <= first.calibration_scores["uncalibrated"] + 1e-3
    assert list(first.candidates.columns[:4]) == ["candidate", "family", "params", "roc_auc"]
    assert first.input_columns == ["id", "x", "z", "plan", "fee"]


def test_too_few_churners_is_a_clear_error():
    from pipeline.errors import DataError

    frame = _table(200).assign(churn=[1] * 3 + [0] * 197)
    with pytest.raises(DataError, match="only 3 churners and 197 stayers; training needs at least 6 of each"):
        train(table_dataset(frame, id_column="id", target="churn"), FAST)


def test_skops_round_trip_gives_identical_probabilities(tmp_path):
    import skops.io

    from pipeline.tracking import TRUSTED_TYPES, check_trusted

    dataset = table_dataset(_table(), id_column="id", target="churn")
    model = train(dataset, with_overrides(FAST, train={"candidates": ("logistic", "hist_gradient_boosting")})).model
    assert set(check_trusted(model)) <= set(TRUSTED_TYPES)
    path = tmp_path / "model.skops"
    skops.io.dump(model, path)
    loaded = skops.io.load(path, trusted=list(TRUSTED_TYPES))
    rows = dataset.frame.head(500)
    np.testing.assert_array_equal(loaded.predict_proba(rows), model.predict_proba(rows))


@pytest.fixture(scope="module")
def records_model(tmp_path_factory):
    from pipeline.dataset import records_dataset
    from pipeline.records import load_records
    from pipeline.simulate import generate

    out = tmp_path_factory.mktemp("base") / "base"
    generate(20_000, seed=3, out=out)
    dataset = records_dataset(load_records(out))
    config = with_overrides(Config(), train={"search_iterations": 0, "cv_folds": 3, "blend": False,
                                             "candidates": ("hist_gradient_boosting",)})
    return train(dataset, config).model, dataset


def test_falling_usage_raises_risk(records_model):
    model, dataset = records_model
    rows = dataset.frame.head(2000)
    falling = rows.assign(data_gb_last3_to_prev3=0.4, voice_minutes_last3_to_prev3=0.4,
                          data_gb_slope_6m=-1.0, voice_minutes_slope_6m=-20.0)
    steady = rows.assign(data_gb_last3_to_prev3=1.0, voice_minutes_last3_to_prev3=1.0,
                         data_gb_slope_6m=0.0, voice_minutes_slope_6m=0.0)
    assert model.predict_proba(falling)[:, 1].mean() > model.predict_proba(steady)[:, 1].mean()


def test_porting_inquiries_raise_risk(records_model):
    model, dataset = records_model
    rows = dataset.frame.head(2000)
    asked = rows.assign(porting_inquiries_90d=2.0, porting_inquiries_since_disclosure=2.0)
    quiet = rows.assign(porting_inquiries_90d=0.0, porting_inquiries_since_disclosure=0.0)
    assert model.predict_proba(asked)[:, 1].mean() > model.predict_proba(quiet)[:, 1].mean()
