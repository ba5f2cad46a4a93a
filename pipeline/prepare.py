"""Column typing for any churn table: the first, learned step of every model pipeline.

``TableTyper`` is a scikit-learn transformer.  ``fit`` decides, for every raw column, whether
it is numeric, boolean or categorical, or why it must be dropped (identifier, personal data,
constant, empty, free text); ``transform`` applies those decisions to new rows: numbers stored
as text become floats, blanks become missing, yes/no become 0/1, and categories become a
pandas ``Categorical`` with the levels seen in training (rare and unseen levels fold into
``"__other__"``).  Because it lives inside the fitted pipeline, the logged model takes raw
rows, and training and scoring share one code path.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

OTHER = "__other__"

#: Column names that carry personal data (matched on lower-cased, underscore-separated names):
#: a whole name such as ``name`` or ``phone``, or a suffix such as ``..._phone_number``.
#: Deliberately narrow: ``PhoneService`` or ``Voice mail plan`` are features, not personal data.
_PERSONAL_NAME = re.compile(
    r"^(name|names|phone|mobile|telephone|tel|cell|msisdn|email|mail|address|street|postcode|zip|zip_code|"
    r"ssn|passport|dob|iban|imsi|imei)$"
    r"|(^|_)(first_name|last_name|full_name|given_name|family_name|surname|customer_name|subscriber_name|"
    r"phone_number|phone_no|mobile_number|mobile_no|cell_number|telephone_number|email|email_address|e_mail|"
    r"street_address|home_address|postal_address|birth_date|date_of_birth|identity_number|id_number|"
    r"national_id|passport_number|card_number)$"
)
_EMAIL_VALUE = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)
_PHONE_VALUE = re.compile(r"^\+?[\d(][\d\s().-]{7,}\d$")
_DECIMAL_VALUE = re.compile(r"^-?\d+\.\d+$")
#: Identity numbers: a Korean resident registration number (YYMMDD-NNNNNNN, the dash
#: optional), a US social security number (NNN-NN-NNNN).
_IDENTITY_VALUE = re.compile(r"^(\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])-?[1-8]\d{6}|\d{3}-\d{2}-\d{4})$")
#: A person's name: two or three capitalised alphabetic words ("Jane Doe", "Min-jun Kim",
#: "Mary O'Neil"), or a Hangul name of two to four syllables.
_NAME_WORD = r"(?:Mc|Mac|O')?[A-Z][a-z]+(?:[-'][A-Za-z][a-z]+)?"
_LATIN_NAME = re.compile(rf"^{_NAME_WORD}(?:\s+{_NAME_WORD}){{1,2}}$")
_HANGUL_NAME = re.compile(r"^[가-힣]{2,4}$")
_ID_NAME = re.compile(r"(^|_)(id|key|uuid|guid|code|number|no|num)$")
_TRUE = {"yes", "y", "true", "t", "1", "1.0"}
_FALSE = {"no", "n", "false", "f", "0", "0.0"}
#: Values looked at to decide whether a column looks personal.
_SAMPLE = 1000
#: A shape must fit at least this share of a column's non-blank values.
_SHARE = 0.8
#: Distinct values at least this share of a column's, and at least ``_MIN_DISTINCT`` of
#: them, make a column "near-unique": identifiers, names, free text, never categories.
_DISTINCT_SHARE = 0.9
_MIN_DISTINCT = 50


#: A number written with thousands separators: ``1,234``, ``-12,345.67``, ``+1,000,000``.
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")


def to_numbers(values: pd.Series) -> pd.Series:
    """Numbers from text as float64 (missing where the text is not a number), the one parser of numbers in text.

    Blanks around a value are ignored, and thousands separators are understood
    (``"1,234.5"`` is 1234.5), whatever stage reads the column: the typing step of every
    model (training and scoring alike), a table's value column, the scoring input check, drift
    and record tables.  Other text (``"1,2"``, ``"abc"``) is missing.
    """
    if values.dtype.kind in "biuf":
        return values.astype("float64")
    text = values.astype("string")
    codes, distinct = pd.factorize(text)
    if 2 * len(distinct) <= len(text):  # repeated texts (levels, codes): parse each once
        parsed = _parse_numbers(pd.Series(distinct, dtype=text.dtype))
        numbers = np.full(len(text), np.nan)
        known = codes >= 0
        numbers[known] = parsed[codes[known]]
    else:
        numbers = _parse_numbers(text)
    return pd.Series(numbers, index=values.index, name=values.name)


def _parse_numbers(text: pd.Series) -> np.ndarray:
    """``to_numbers``' parser on a ``string`` Series, as float64."""
    text = text.str.strip()
    grouped = text.str.match(_THOUSANDS).fillna(False).to_numpy(dtype=bool)
    if grouped.any():
        text = text.where(~grouped, text.str.replace(",", "", regex=False))
    return np.asarray(pd.to_numeric(text, errors="coerce"), dtype="float64")


#: A text column holds numbers when at least this share of its non-blank values are numbers
#: (``to_numbers``).  The one rule of every stage that asks: the typing step, the personal
#: data checks, the scoring input check (pandas and Spark), drift and the input example.
NUMERIC_SHARE = 0.95


def holds_numbers(numbers: int, filled: int, share: float = NUMERIC_SHARE) -> bool:
    """Whether ``numbers`` numbers among ``filled`` non-blank values make a column of numbers.

    At least ``share`` of them (95%: 19 of 20 is enough, 18 of 19 is not); never when no value
    is filled in.  For counts made elsewhere (Spark); ``text_numbers`` counts a pandas column.
    """
    return filled > 0 and numbers / filled >= share


def text_numbers(values: pd.Series, share: float = NUMERIC_SHARE) -> pd.Series | None:
    """The numbers a text column holds (``to_numbers``, same index), or None when it does not hold numbers.

    Blank values (missing, empty or spaces) are not counted; the column holds numbers when
    at least ``share`` of the others are numbers (``holds_numbers``).
    """
    filled = int(_as_text(values).notna().sum())
    numbers = to_numbers(values)
    return numbers if holds_numbers(int(numbers.notna().sum()), filled, share) else None


def _normalise_name(name: object) -> str:
    text = re.sub(r"([a-z])([A-Z])", r"\1_\2", str(name))
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _as_text(column: pd.Series) -> pd.Series:
    """Strings with surrounding blanks removed; blank strings become missing."""
    text = column.astype("string").str.strip()
    return text.mask(text == "")


def _personal_numbers(numbers: np.ndarray) -> str | None:
    """Why whole numbers (float64, none missing) look like phone or identity numbers stored as numbers, or None.

    Mostly values of 9 to 13 digits (a phone number without its leading 0 such as
    1012345678, +82 10... as 821012345678, a 13-digit resident registration number, a
    9-digit social security number), mostly distinct: no count or amount looks like that.
    """
    if not len(numbers):
        return None
    whole = numbers[np.isfinite(numbers) & (numbers == np.round(numbers))]
    if len(whole) < _SHARE * len(numbers):
        return None
    digits = np.floor(np.log10(np.clip(np.abs(whole), 1, None))) + 1
    shaped = (digits >= 9) & (digits <= 13) & (whole > 0)
    if shaped.mean() < _SHARE:
        return None
    if len(np.unique(whole)) < max(2, 0.5 * len(whole)):
        return None
    return "personal data (phone or identity numbers stored as numbers)"


def _personal_text(sample: pd.Series) -> str | None:
    """Why text values look personal (emails, identity or phone numbers, names), or None.

    Each test is made once per distinct value and weighted by how often it occurs, which gives
    the shares and medians of the whole sample at a fraction of the cost on categories.
    """
    counts = sample.value_counts(sort=False)
    levels = pd.Series(counts.index, dtype=sample.dtype)
    weight = counts.to_numpy(dtype="int64")

    def share(mask: pd.Series) -> float:
        return float(weight[mask.to_numpy(dtype=bool)].sum()) / float(weight.sum())

    def median_digits() -> float:
        return float(np.median(np.repeat(levels.str.count(r"\d").to_numpy(dtype="int64"), weight)))

    if share(levels.str.match(_EMAIL_VALUE)) > 0.5:
        return "personal data (email addresses)"
    if share(levels.str.match(_IDENTITY_VALUE)) > 0.5 and median_digits() in (9, 13):
        return "personal data (identity numbers)"
    decimal = levels.str.match(_DECIMAL_VALUE)
    if share(levels.str.match(_PHONE_VALUE) & ~decimal) > 0.5 and median_digits() >= 9:
        return "personal data (phone numbers)"
    distinct = len(levels)
    names = levels.str.match(_LATIN_NAME) | levels.str.match(_HANGUL_NAME)
    if share(names) >= _SHARE and distinct >= 20 and distinct >= 0.3 * len(sample):
        return "personal data (person names)"
    numeric = holds_numbers(int(weight[to_numbers(levels).notna().to_numpy()].sum()), len(sample))
    if not numeric and distinct >= _MIN_DISTINCT and distinct >= _DISTINCT_SHARE * len(sample):
        return "identifier or free text (mostly distinct values)"
    return None


def looks_personal(name: object, values: pd.Series) -> str | None:
    """Why a column looks like personal data or an identifier (a reason string), or ``None``.

    Decided by the column's name (``name``, ``phone_number``...) and by its values, whatever
    the name: email addresses; identity numbers (Korean resident registration numbers,
    US social security numbers); phone numbers with or without separators, as text or as
    whole numbers of 9 to 13 digits; person names (two or three capitalised words, or
    Hangul names of two to four syllables, many distinct); and near-unique text
    (identifiers, free text).  Categories such as ``Month-to-month``, ``Fiber optic``,
    ``Electronic check``, state codes or yes/no are not flagged.

    Parameters
    ----------
    name : object
        The column's name.
    values : Series
        Its values (the first non-blank ones are looked at).

    Returns
    -------
    str or None
        The reason, e.g. ``"personal data (phone numbers)"``; None when it looks ordinary.
    """
    if _PERSONAL_NAME.search(_normalise_name(name)):
        return "personal data (column name)"
    if values.dtype.kind in "cmM":
        return None
    if values.dtype.kind in "iuf":
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
        return _personal_numbers(numbers[~np.isnan(numbers)][:_SAMPLE])
    if values.dtype.kind == "b":
        return None
    raw = values.dropna().iloc[: 4 * _SAMPLE]
    key = _text_key(raw)
    if key not in _TEXT_VERDICTS:
        if len(_TEXT_VERDICTS) >= _TEXT_VERDICTS_KEPT:
            _TEXT_VERDICTS.clear()
        _TEXT_VERDICTS[key] = _text_verdict(_as_text(raw).dropna().iloc[:_SAMPLE])
    return _TEXT_VERDICTS[key]


#: Verdicts of ``looks_personal`` on text, by the values it looked at (``_text_key``): model
#: selection types the same fold's rows once per candidate, and the verdict of the same values
#: is the same.  At most ``_TEXT_VERDICTS_KEPT`` are kept.
_TEXT_VERDICTS: dict[tuple[str, bytes], str | None] = {}
_TEXT_VERDICTS_KEPT = 4096


def _text_key(raw: pd.Series) -> tuple[str, bytes]:
    """The dtype and a 128-bit digest of ``raw``'s values, in order (not its index)."""
    import hashlib

    hashed = pd.util.hash_pandas_object(raw, index=False).to_numpy()
    return str(raw.dtype), hashlib.blake2b(hashed.tobytes(), digest_size=16).digest()


def _text_verdict(sample: pd.Series) -> str | None:
    """``looks_personal``'s verdict on the first non-blank texts of a column."""
    if sample.empty:
        return None
    reason = _personal_text(sample)
    numbers = text_numbers(sample) if reason is None else None
    return _personal_numbers(numbers.dropna().to_numpy()) if numbers is not None else reason


def yes_no_levels(values: pd.Series) -> list[str]:
    """The two values of a yes/no column as written (e.g. ``["No", "Yes"]``); empty for any other column."""
    text = _as_text(values).dropna()
    distinct = sorted(str(v) for v in text.unique()[:3])
    lowered = {v.lower() for v in distinct}
    if len(distinct) == 2 and lowered <= _TRUE | _FALSE and lowered & _TRUE and lowered & _FALSE:
        return distinct
    return []


def _fold_levels(column: pd.Series, levels: list[str]) -> pd.Categorical:
    """A text column as a categorical of ``levels`` (``OTHER`` last): blanks missing, any
    other value not among the levels ``OTHER``.

    A column of strings (or of string categories) is read through its distinct values, each
    cleaned and looked up once; a column of mixed Python objects value by value, since
    ``1`` and ``1.0`` are one distinct value but two texts.
    """
    known = pd.Index(levels[:-1], dtype=object)
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes, distinct = column.cat.codes.to_numpy(), column.cat.categories
        by_distinct = pd.api.types.infer_dtype(distinct, skipna=True) == "string"
    else:
        by_distinct = pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty")
        if by_distinct:
            codes, distinct = pd.factorize(column, use_na_sentinel=True)
    if not by_distinct:
        text = _as_text(column).astype(object)
        folded = text.where(text.isin(known) | text.isna(), OTHER)
        return pd.Categorical(folded, categories=levels)
    text = _as_text(pd.Series(np.asarray(distinct, dtype=object), dtype=object)).astype(object)
    where = known.get_indexer(text)
    mapped = np.where(text.isna().to_numpy(), -1, np.where(where >= 0, where, len(levels) - 1))
    # a missing value's code, -1, takes the -1 appended last
    return pd.Categorical.from_codes(np.append(mapped, -1)[np.asarray(codes)], categories=levels)


class TableTyper(TransformerMixin, BaseEstimator):
    """Learn the type of every raw column and apply it consistently to new rows.

    Parameters
    ----------
    drop_columns : tuple of str
        Columns never used as features (the id, the label, a value column).
    max_levels : int
        Categories keep at most this many most frequent levels; the rest become ``"__other__"``.
    min_level_count : int
        Levels seen fewer times than this in training become ``"__other__"``.
    max_unique_ratio : float
        Text columns whose share of distinct values exceeds this are identifiers or free
        text, and are dropped.
    numeric_text_share : float
        A text column whose non-blank values parse as numbers at least this often is numeric.

    Attributes
    ----------
    kinds_ : dict
        ``column -> "numeric" | "boolean" | "categorical"`` for every kept column.
    levels_ : dict
        ``column -> list of levels`` for categorical columns (``"__other__"`` last).
    dropped_ : dict
        ``column -> reason`` for every input column not used.
    """

    def __init__(
        self,
        drop_columns: tuple[str, ...] = (),
        max_levels: int = 60,
        min_level_count: int = 5,
        max_unique_ratio: float = 0.5,
        numeric_text_share: float = NUMERIC_SHARE,
    ):
        self.drop_columns = drop_columns
        self.max_levels = max_levels
        self.min_level_count = min_level_count
        self.max_unique_ratio = max_unique_ratio
        self.numeric_text_share = numeric_text_share

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        return tags

    def _frame(self, X, *, reset: bool) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, reset=reset, skip_check_array=True)
            return X
        array = validate_data(self, X, reset=reset, dtype=None, ensure_all_finite="allow-nan")
        return pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])

    def _infer(self, name: str, column: pd.Series, n_rows: int) -> tuple[str, object]:
        """Return (kind, detail) where kind is a feature kind or "drop" with a reason."""
        if name in set(self.drop_columns):
            return "drop", "excluded by configuration (id, label or value column)"
        personal = looks_personal(name, column)
        if personal:
            return "drop", personal
        if column.dtype.kind in "mM":
            return "drop", "date or time (derive features from it first)"
        if column.dtype.kind == "b":
            column = column.astype(float)
        if column.dtype.kind in "iuf":
            values = column.to_numpy(dtype="float64", na_value=np.nan)
            observed = values[~np.isnan(values)]
            if not len(observed):
                return "drop", "empty"
            if observed.min() == observed.max():
                return "drop", "constant"
            if (
                column.dtype.kind in "iu"
                and _ID_NAME.search(_normalise_name(name))
                and len(np.unique(observed)) == len(observed) == n_rows
            ):
                return "drop", "identifier (unique integer per row)"
            return "numeric", None
        observed = _as_text(column).dropna()
        if observed.empty:
            return "drop", "empty"
        # Each distinct text once, with how often it occurs (most frequent first).
        counts = observed.value_counts(sort=True)
        distinct = counts.index
        if len(distinct) == 1:
            return "drop", "constant"
        lowered = {str(v).lower() for v in distinct}
        if len(distinct) == 2 and lowered <= _TRUE | _FALSE and lowered & _TRUE and lowered & _FALSE:
            return "boolean", None
        # text_numbers' rule, parsing each distinct text once
        numbers = to_numbers(pd.Series(distinct, dtype=observed.dtype))
        parsed = numbers.notna().to_numpy()
        if holds_numbers(int(counts.to_numpy()[parsed].sum()), len(observed), self.numeric_text_share):
            return ("numeric", None) if numbers[parsed].nunique() > 1 else ("drop", "constant")
        if len(distinct) / len(observed) > self.max_unique_ratio and len(distinct) > self.max_levels:
            return "drop", "identifier or free text (mostly distinct values)"
        counts = counts[counts >= self.min_level_count].iloc[: self.max_levels]
        levels = sorted(str(level) for level in counts.index)
        if not levels:
            return "drop", "no level frequent enough"
        return "categorical", levels

    def fit(self, X, y=None):
        """Learn each column's kind (and categorical levels) from the training rows."""
        frame = self._frame(X, reset=True)
        self.kinds_: dict[str, str] = {}
        self.levels_: dict[str, list[str]] = {}
        self.dropped_: dict[str, str] = {}
        for name in frame.columns:
            kind, detail = self._infer(str(name), frame[name], len(frame))
            if kind == "drop":
                self.dropped_[str(name)] = detail
                continue
            self.kinds_[str(name)] = kind
            if kind == "categorical":
                self.levels_[str(name)] = [*detail, OTHER]
        self.n_features_out_ = len(self.kinds_)
        return self

    def transform(self, X):
        """Apply the learned types: a frame of float and categorical columns, in training order."""
        check_is_fitted(self, "kinds_")
        frame = self._frame(X, reset=False)
        out = {}
        for name, kind in self.kinds_.items():
            column = frame[name]
            if kind == "numeric":
                if column.dtype.kind in "biuf":
                    out[name] = column.astype("float64").to_numpy()
                else:
                    out[name] = to_numbers(column).to_numpy()
            elif kind == "boolean":
                if column.dtype.kind in "biuf":
                    out[name] = column.astype("float64").to_numpy()
                else:
                    lowered = _as_text(column).str.lower()
                    values = np.where(lowered.isin(_TRUE), 1.0, np.where(lowered.isin(_FALSE), 0.0, np.nan))
                    out[name] = values.astype("float64")
            else:
                out[name] = _fold_levels(column, self.levels_[name])
        result = pd.DataFrame(out, index=frame.index if isinstance(X, pd.DataFrame) else None)
        if not isinstance(X, pd.DataFrame) and not self.levels_:
            return result.to_numpy(dtype="float64")
        return result

    def get_feature_names_out(self, input_features=None):
        """Names of the kept columns, in output order."""
        check_is_fitted(self, "kinds_")
        return np.asarray(list(self.kinds_), dtype=object)

    def columns_report(self) -> pd.DataFrame:
        """One row per input column: what it became and why (for logging with the run)."""
        check_is_fitted(self, "kinds_")
        rows = [{"column": c, "use": k, "reason": ""} for c, k in self.kinds_.items()]
        rows += [{"column": c, "use": "dropped", "reason": r} for c, r in self.dropped_.items()]
        return pd.DataFrame(rows, columns=["column", "use", "reason"])


def numeric_columns(frame: pd.DataFrame) -> list[str]:
    """Columns of a typed frame that are not categorical (a ColumnTransformer selector)."""
    return [c for c in frame.columns if not isinstance(frame[c].dtype, pd.CategoricalDtype)]


def categorical_columns(frame: pd.DataFrame) -> list[str]:
    """Categorical columns of a typed frame (a ColumnTransformer selector)."""
    return [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
