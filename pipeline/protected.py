"""Protected traits: columns that must never be why a retention agent calls someone.

A column is a protected trait when its name, normalised (``SeniorCitizen`` ->
``senior_citizen``, ``Marital Status`` -> ``marital_status``), names gender or sex, age (an
age, an age band, a birth year or date, senior citizen), marital status (married, spouse,
partner), religion, ethnicity or race, nationality or citizenship, disability, pregnancy or
sexual orientation.  Detection is by name only: values cannot tell a gender column from any
other two-level category.

What follows (``docs/training.md``, *Protected traits*):

- such a column is left out of the model's features unless ``[data] use_protected`` names
  it (``pipeline.train``);
- it is never given as a reason, used as a feature or not (``pipeline.explain``);
- each training run logs ``evaluation/fairness.csv``: per protected segment present in the
  hold-out, the share on the at-risk list, calibration and top-decile lift
  (``fairness_table``), whether or not the column was a feature.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

#: Name tokens (of the normalised, underscore-separated name) and the trait each names.
_TOKENS = {
    "gender": "gender", "sex": "gender", "genders": "gender",
    "age": "age", "ages": "age", "birthyear": "age", "birthday": "age", "dob": "age", "senior": "age",
    "elderly": "age", "seniorcitizen": "age",
    "marital": "marital status", "married": "marital status", "marriage": "marital status",
    "spouse": "marital status", "partner": "marital status", "widowed": "marital status",
    "divorced": "marital status",
    "religion": "religion", "religious": "religion", "faith": "religion",
    "ethnicity": "ethnicity", "ethnic": "ethnicity", "race": "ethnicity", "racial": "ethnicity",
    "nationality": "nationality", "citizenship": "nationality", "nation": "nationality",
    "disability": "disability", "disabled": "disability", "handicap": "disability", "impairment": "disability",
    "pregnant": "pregnancy", "pregnancy": "pregnancy", "maternity": "pregnancy",
    "orientation": "sexual orientation", "lgbt": "sexual orientation",
}
#: Multi-token names (joined with ``_``) and their trait.
_PHRASES = {
    "birth_year": "age", "year_of_birth": "age", "birth_date": "age", "date_of_birth": "age",
    "country_of_birth": "nationality", "birth_country": "nationality", "national_origin": "nationality",
}
#: ``age`` preceded by one of these is the age of something else (``account_age``, ``device_age``).
_NOT_A_PERSON = {"account", "contract", "device", "line", "plan", "subscription", "data", "handset", "phone", "sim",
                 "usim", "card", "network", "bill", "debt", "invoice", "ticket", "sub"}


def _normalise(name: object) -> str:
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name))
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def protected_trait(name: object) -> str | None:
    """The protected trait a column's name names (``"gender"``, ``"age"``...), or None.

    Parameters
    ----------
    name : object
        A column name, as written in the data (``gender``, ``SeniorCitizen``, ``age_band``).

    Returns
    -------
    str or None
        ``gender``, ``age``, ``marital status``, ``religion``, ``ethnicity``, ``nationality``,
        ``disability``, ``pregnancy`` or ``sexual orientation``; None for other columns.
    """
    normal = _normalise(name)
    for phrase, trait in _PHRASES.items():
        if re.search(rf"(^|_){phrase}($|_)", normal):
            return trait
    tokens = normal.split("_")
    for position, token in enumerate(tokens):
        trait = _TOKENS.get(token)
        if trait is None:
            continue
        if trait == "age" and token in ("age", "ages") and position and tokens[position - 1] in _NOT_A_PERSON:
            continue
        return trait
    return None


def protected_columns(columns) -> dict[str, str]:
    """``column -> trait`` for every protected column among ``columns`` (in their order)."""
    found = {}
    for column in columns:
        trait = protected_trait(column)
        if trait is not None:
            found[str(column)] = trait
    return found


def _segments(values: pd.Series, *, max_levels: int = 12) -> pd.Series:
    """Segment labels of one protected column: its levels, or bands of a many-valued number."""
    if values.dtype.kind in "biuf" and values.nunique(dropna=True) > max_levels:
        numbers = values.astype("float64")
        edges = np.unique(np.nanquantile(numbers, np.linspace(0, 1, 6))) if numbers.notna().any() else []
        if len(edges) >= 2:
            bands = pd.cut(numbers, edges, include_lowest=True, duplicates="drop")
            return bands.astype("string").fillna("missing")
    text = values.astype("string").str.strip()
    text = text.mask(text == "").fillna("missing")
    counts = text.value_counts()
    if len(counts) > max_levels:
        text = text.where(text.isin(counts.index[: max_levels - 1]), "other")
    return text


def fairness_table(frame: pd.DataFrame, y: np.ndarray, proba: np.ndarray, at_risk: np.ndarray,
                   *, used: set[str] | frozenset = frozenset()) -> pd.DataFrame:
    """Per protected segment of the hold-out: list share, calibration and top-decile lift.

    Parameters
    ----------
    frame : DataFrame
        The hold-out rows (raw columns, protected ones included whether or not they were features).
    y : array
        Observed churn (0/1) of those rows.
    proba : array
        The model's churn probabilities of those rows.
    at_risk : array of bool
        Rows in the at-risk tiers (``medium`` or ``high``), i.e. on the list.
    used : set of str
        Protected columns the model took as features (``[data] use_protected``).

    Returns
    -------
    DataFrame
        One row per (column, segment): ``column``, ``trait``, ``used_as_feature``, ``segment``,
        ``rows``, ``share_of_holdout``, ``share_of_at_risk_list``, ``at_risk_rate`` (share of the
        segment on the list), ``mean_predicted``, ``observed_churn``, ``calibration_ratio``
        (mean predicted / observed), ``top_decile_lift`` (churn among the segment's 10%
        highest probabilities over the segment's churn rate; missing when undefined).
        Empty (with those columns) when the data holds no protected column.
    """
    columns = ["column", "trait", "used_as_feature", "segment", "rows", "share_of_holdout", "share_of_at_risk_list",
               "at_risk_rate", "mean_predicted", "observed_churn", "calibration_ratio", "top_decile_lift"]
    y = np.asarray(y, dtype="float64")
    proba = np.asarray(proba, dtype="float64")
    at_risk = np.asarray(at_risk, dtype=bool)
    listed = max(int(at_risk.sum()), 1)
    rows = []
    for column, trait in protected_columns(frame.columns).items():
        segments = _segments(frame[column].reset_index(drop=True))
        for segment in sorted(segments.unique(), key=str):
            mask = (segments == segment).to_numpy()
            n = int(mask.sum())
            observed = float(y[mask].mean())
            predicted = float(proba[mask].mean())
            lift = np.nan
            top = max(1, int(np.ceil(0.1 * n)))
            if observed > 0 and n >= 10:
                order = np.argsort(-proba[mask], kind="stable")[:top]
                lift = float(y[mask][order].mean() / observed)
            rows.append({
                "column": column, "trait": trait, "used_as_feature": column in used, "segment": str(segment),
                "rows": n, "share_of_holdout": n / len(y), "share_of_at_risk_list": float(at_risk[mask].sum() / listed),
                "at_risk_rate": float(at_risk[mask].mean()), "mean_predicted": predicted, "observed_churn": observed,
                "calibration_ratio": predicted / observed if observed > 0 else np.nan, "top_decile_lift": lift,
            })
    return pd.DataFrame(rows, columns=columns)
