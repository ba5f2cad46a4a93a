"""The list stage: from scored subscribers to the at-risk list, whatever engine scored them.

Pure functions on scored rows (``pipeline.score.score_rows``'s columns), shared by the
streaming scorer (``pipeline.score.ScoreStream``, which ``churn score`` runs on the pandas
and the Spark engine alike) and by ``finalize`` (a scored frame in memory, as in the
notebooks):

1. **rank** (``rank_order``, ``rank_scores``): expected loss, largest first, then
   probability, then id;
2. **choose** (``choose``): whom to target under a budget, a capacity or neither
   (``pipeline.targeting.select``), and, with a control share, who is held out at random;
3. **cut** (``cut``): every subscriber (``--all``) or the at-risk list;
4. **finish rows** (``list_rows``): groups and campaign id, actions made consistent with
   the targeting (``consistent_actions``), the list's columns in order;
5. **count and call** (``ListTally``, ``call_list``): what the list holds, and the
   subscribers to contact in call order.

Explanations come from ``pipeline.score.explain_rows``; ``with_explanations`` merges them
into rows by their position in the base (``SEQ``).  Writing is ``pipeline.output``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.output import plain_text

#: The risk tiers, lowest first (``pipeline.score.risk_tiers``).
TIERS = ("low", "medium", "high")


#: The at-risk list's columns, in order (documented in docs/outputs.md).
OUTPUT_COLUMNS = (
    "rank",
    "subscriber_id",
    "churn_probability",
    "risk_tier",
    "expected_loss",
    "reason_1",
    "reason_2",
    "reason_3",
    "action",
    "targeted",
    "do_not_contact",
    "group",
    "expected_net_value",
    "expected_incremental_value",
    "estimated_uplift",
    "expected_save",
    "expected_cost",
    "monthly_value",
    "clv",
    "etf_waived",
    "save_value",
    "model_version",
    "response_model_version",
    "campaign_id",
)


#: The reason columns, filled by ``pipeline.score.explain_rows`` (blank for rows not explained).
REASON_COLUMNS = ("reason_1", "reason_2", "reason_3")
#: Each scored row's position in the base while a list is built (explanations are merged by it).
SEQ = "_seq"


def key_arrays(frame) -> tuple:
    """``rank_order``'s keys, each ascending: loss missing, minus loss, minus probability (numpy), id (Arrow text)."""
    import pyarrow as pa

    if isinstance(frame, pa.Table):
        loss = frame.column("expected_loss").to_numpy().astype("float64")  # blanks as NaN
        proba = frame.column("churn_probability").to_numpy().astype("float64")
        ids = frame.column("subscriber_id").combine_chunks()
    else:
        loss = frame["expected_loss"].to_numpy(dtype="float64", na_value=np.nan)
        proba = frame["churn_probability"].to_numpy(dtype="float64")
        ids = frame["subscriber_id"]
        ids = pa.array(ids.array if isinstance(ids.dtype, pd.StringDtype) else ids.astype("str").array)
    missing = np.isnan(loss)
    # + 0.0 turns -0.0 into 0.0, so that zeros compare equal in every sort
    return missing, np.where(missing, 0.0, -loss) + 0.0, -proba + 0.0, ids


def sorts_before(keys, bound: tuple, *, inclusive: bool) -> np.ndarray:
    """Which rows (``key_arrays``) sort before the row ``bound`` (a tuple of its keys), or equal to it."""
    import pyarrow.compute as pc

    missing, loss, proba, ids = keys
    bm, bl, bp, bi = bound
    last = (pc.less_equal if inclusive else pc.less)(ids, bi).to_numpy(zero_copy_only=False)
    return (missing < bm) | ((missing == bm) & ((loss < bl) | ((loss == bl) & (
        (proba < bp) | ((proba == bp) & last)))))


def last_key(keys) -> tuple:
    """The keys of the last row of ``keys`` (``key_arrays``), as a tuple ``sorts_before`` takes."""
    missing, loss, proba, ids = keys
    return bool(missing[-1]), float(loss[-1]), float(proba[-1]), ids[len(ids) - 1].as_py()


def rank_order(scores) -> np.ndarray:
    """Positions of ``scores``' rows (a frame or an Arrow table) in list order (see ``rank_scores``), sorted in Arrow.

    Expected loss, largest first and missing last; then probability, largest first; then
    ``subscriber_id`` (text order).  When no expected loss is known at all this is the
    order by probability, then id.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = pa.table(dict(zip("mlpi", key_arrays(scores))))
    return pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in "mlpi"]).to_numpy()


def rank_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Order by expected loss (or probability when no value is known), ties by id; add ``rank`` from 1."""
    ordered = scores.take(rank_order(scores)).reset_index(drop=True)
    ordered.insert(0, "rank", np.arange(1, len(ordered) + 1))
    return ordered


def at_risk(ranked: pd.DataFrame) -> pd.DataFrame:
    """The at-risk list: tier medium or high, or chosen for targeting; ranks renumbered from 1."""
    keep = ranked["risk_tier"].isin(("medium", "high"))
    if "targeted" in ranked.columns:
        keep |= ranked["targeted"].astype(bool)
    kept = ranked[keep].reset_index(drop=True)
    kept["rank"] = np.arange(1, len(kept) + 1)
    return kept


#: Codes of the ``group`` column while the list is built: not targeted, offer, control.
GROUPS = ("", "offer", "control")
#: The column holding those codes on ranked rows until ``list_rows`` turns them into ``group``.
GROUP_CODES = "_group"


@dataclass
class Choice:
    """Whom a list targets: ``targeted`` (one flag per ranked row), the group codes (``GROUPS``)
    when a control group is held out, and the summary (``pipeline.targeting.TargetingSummary``)."""

    targeted: np.ndarray
    groups: np.ndarray | None
    summary: object


def choose(ranked: pd.DataFrame, *, budget: float | None = None, capacity: int | None = None,
           control_share: float = 0.0, seed: int = 0) -> Choice:
    """Choose whom to target among ``ranked`` rows (in list order) and hold out the control group.

    Targeting follows ``pipeline.targeting.select`` (the budget, the capacity, or with neither
    every subscriber whose expected net value is positive).  With ``control_share``, that
    share of the targeted (chosen at random by ``seed``: ``pipeline.targeting.control_groups``)
    becomes the campaign's control group, and the summary's expected figures count the offer
    group only (the control is not contacted).
    """
    from pipeline.targeting import select

    chosen, summary = select(ranked, budget=budget, capacity=capacity)
    targeted = chosen.to_numpy()
    if not control_share > 0:
        return Choice(targeted, None, summary)
    groups, summary = _hold_out_control(ranked, targeted, summary, control_share, seed)
    return Choice(targeted, groups, summary)


def _hold_out_control(ranked: pd.DataFrame, chosen: np.ndarray, summary, share: float, seed: int):
    """Group codes (``GROUPS``) of ``ranked``'s rows and the summary of the offer group alone."""
    import dataclasses

    from pipeline.targeting import control_groups

    codes = np.zeros(len(ranked), dtype="int8")
    where = np.flatnonzero(chosen)
    groups = control_groups(ranked["subscriber_id"].to_numpy()[where], seed, share)
    codes[where] = np.where(groups == "control", 2, 1)
    offer = codes == 1
    summary = dataclasses.replace(
        summary, control=int(np.count_nonzero(codes == 2)),
        expected_saves=float(ranked["expected_save"].to_numpy()[offer].sum()),
        expected_cost=float(ranked["expected_cost"].to_numpy()[offer].sum()),
        expected_net_value=float(ranked["expected_net_value"].to_numpy()[offer].sum()),
    )
    return codes, summary


def cut(ranked: pd.DataFrame, choice: Choice, *, write_all: bool = False) -> pd.DataFrame:
    """``ranked`` with ``targeted`` (and the group codes, ``GROUP_CODES``), cut to the at-risk list
    unless ``write_all``."""
    ranked["targeted"] = choice.targeted
    if choice.groups is not None:
        ranked[GROUP_CODES] = choice.groups
    return ranked if write_all else at_risk(ranked)


def list_rows(rows, *, campaign_id: str = ""):
    """Rows of the list (a frame or an Arrow table, ranked, with ``targeted``) as they are written.

    The group codes (``GROUP_CODES``), when present, become ``group`` and ``campaign_id``
    (``with_groups``), the position column ``SEQ`` goes, actions are made consistent with
    the targeting (``consistent_actions``) and the list's columns come first, in order.
    """
    import pyarrow as pa

    arrow = isinstance(rows, pa.Table)
    names = rows.column_names if arrow else list(rows.columns)
    if GROUP_CODES in names:
        codes = column_values(rows, GROUP_CODES, "int8")
        rows = rows.drop_columns([GROUP_CODES]) if arrow else rows.drop(columns=[GROUP_CODES])
        rows = with_groups(rows, codes, campaign_id)
    if SEQ in names:
        rows = rows.drop_columns([SEQ]) if arrow else rows.drop(columns=[SEQ])
    return in_list_order(consistent_actions(rows))


def finalize(scores: pd.DataFrame, *, budget: float | None = None, capacity: int | None = None,
             write_all: bool = False, control_share: float = 0.0, seed: int = 0, campaign_id: str = ""):
    """The list of a scored frame in memory (``pipeline.score.score_dataset``'s rows), as ``churn score`` builds it.

    Returns ``(rows to write, TargetingSummary)``: every subscriber ranked (``write_all``) or
    the at-risk list, with ``targeted`` set by the budget, the capacity, or (with neither)
    every subscriber whose expected net value is positive; with ``control_share``, that
    share of the targeted is held out (``group``, ``campaign_id``), as ``choose`` says.
    Reasons are the rows' own (``score_dataset`` explains every row worth explaining).
    """
    from pipeline.errors import repeated_ids_error

    duplicated = scores["subscriber_id"].duplicated(keep=False)
    if duplicated.any():
        raise repeated_ids_error(scores.loc[duplicated, "subscriber_id"].unique())
    ranked = rank_scores(scores)
    choice = choose(ranked, budget=budget, capacity=capacity, control_share=control_share, seed=seed)
    return list_rows(cut(ranked, choice, write_all=write_all), campaign_id=campaign_id), choice.summary


def in_list_order(frame):
    """``frame`` (or an Arrow table) with the list's columns first, in ``OUTPUT_COLUMNS`` order (no copy when already so)."""
    arrow = not isinstance(frame, pd.DataFrame)
    names = list(frame.column_names if arrow else frame.columns)
    ordered = [c for c in OUTPUT_COLUMNS if c in names]
    columns = ordered + [c for c in names if c not in ordered]
    if names == columns:
        return frame
    return frame.select(columns) if arrow else frame[columns]






def with_groups(frame, codes: np.ndarray, campaign_id: str):
    """``frame`` (a frame or an Arrow table) with ``group`` and ``campaign_id``; control rows get the control action."""
    import pyarrow as pa

    from pipeline.targeting import CONTROL_ACTION

    group = np.asarray(GROUPS, dtype=object)[codes]
    campaign = np.where(codes > 0, campaign_id, "").astype(object)
    control = codes == 2
    if isinstance(frame, pa.Table):
        action = frame.column("action").cast(pa.string()).to_numpy(zero_copy_only=False).astype(object)
        action[control] = CONTROL_ACTION
        frame = frame.set_column(frame.column_names.index("action"), "action", pa.array(action, type=pa.string()))
        frame = frame.append_column("group", pa.array(group, type=pa.string()))
        return frame.append_column("campaign_id", pa.array(campaign, type=pa.string()))
    if control.any():
        action = frame["action"].astype("str").to_numpy(dtype=object)
        action[control] = CONTROL_ACTION
        frame["action"] = pd.array(action, dtype="str")
    frame["group"] = pd.array(group, dtype="str")
    frame["campaign_id"] = pd.array(campaign, dtype="str")
    return frame


def with_explanations(frame, explained: pd.DataFrame):
    """``frame`` (a frame or an Arrow table) with blank reasons, then the reasons and actions of the
    explained rows (by ``_seq``)."""
    import pyarrow as pa

    arrow = isinstance(frame, pa.Table)
    seq = frame.column(SEQ).to_numpy() if arrow else frame[SEQ].to_numpy()
    rows = len(seq)
    known = explained[SEQ].to_numpy()
    if len(known):
        where = np.minimum(np.searchsorted(known, seq), len(known) - 1)
        hit = np.flatnonzero(known[where] == seq)
        source = where[hit]
    else:
        hit = source = np.array([], dtype="int64")
    if not len(hit):  # blank reasons, as one category
        codes = np.zeros(rows, dtype="int8")
        blank = (pa.DictionaryArray.from_arrays(codes, pa.array([""])) if arrow
                 else pd.Categorical.from_codes(codes, categories=[""]))
        columns = dict.fromkeys(REASON_COLUMNS, blank)
    else:
        columns = {}
        for column in REASON_COLUMNS:
            values = np.full(rows, "", dtype=object)
            values[hit] = explained[column].take(source).to_numpy(dtype=object)
            columns[column] = values
        action = (frame.column("action").cast(pa.string()).to_numpy(zero_copy_only=False) if arrow
                  else frame["action"].astype("str").to_numpy(dtype=object)).astype(object)
        action[hit] = explained["action"].take(source).to_numpy(dtype=object)
        columns["action"] = action
    for column, values in columns.items():
        if not arrow:
            frame[column] = values if isinstance(values, pd.Categorical) else pd.array(values, dtype="str")
            continue
        values = values if isinstance(values, pa.Array) else pa.array(values, type=pa.string())
        if column in frame.column_names:
            frame = frame.set_column(frame.column_names.index(column), column, values)
        else:
            frame = frame.append_column(column, values)
    return frame


def column_values(frame, name: str, dtype=None) -> np.ndarray:
    """One column of a frame or an Arrow table as numpy (text as objects, blanks as ``""``)."""
    import pyarrow as pa

    if isinstance(frame, pa.Table):
        column = frame.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(pa.string())
        if dtype is object and (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            return column.fill_null("").to_numpy(zero_copy_only=False)  # already Python text
        values = column.to_numpy(zero_copy_only=False)
    else:
        values = frame[name].to_numpy(dtype=object if dtype is object else None)
    if dtype is object:
        values = np.asarray(values, dtype=object)
        missing = pd.isna(values)
        if missing.any():
            values = values.copy()  # pandas' arrays can be read-only views
            values[missing] = ""
        # text stays as it is; anything else is written as text (str() of each value)
        return values if pd.api.types.infer_dtype(values) == "string" else values.astype(str).astype(object)
    return np.asarray(values, dtype=dtype) if dtype is not None else values


def value_counts(frame, name: str, where: np.ndarray | None = None) -> dict[str, int]:
    """How many rows (of those ``where`` is True, else all) hold each text of one column of a
    frame or an Arrow table; blanks count as ``""``, as in :func:`column_values`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(frame, pa.Table):
        column = frame.column(name)
        if where is not None:
            column = column.filter(pa.array(where))
        counted = pc.value_counts(column)
        pairs = zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist())
    else:
        column = frame[name] if where is None else frame[name][where]
        counted = column.value_counts(dropna=False, sort=False)
        pairs = zip(counted.index.tolist(), counted.tolist())
    out: dict[str, int] = {}
    for value, count in pairs:
        if not count:  # a category no row holds
            continue
        text = "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)
        out[text] = out.get(text, 0) + int(count)
    return out


def consistent_actions(frame):
    """``frame`` (a list's rows, as a frame or an Arrow table) with ``action`` made consistent
    with ``targeted``, ``do_not_contact``, ``group`` and ``risk_tier`` (``targeting.list_actions``)."""
    import pyarrow as pa

    from pipeline.targeting import list_actions

    arrow = isinstance(frame, pa.Table)
    names = frame.column_names if arrow else list(frame.columns)
    if "targeted" not in names:
        return frame
    action = list_actions(
        column_values(frame, "action", object), targeted=column_values(frame, "targeted", bool),
        do_not_contact=column_values(frame, "do_not_contact", bool), risk_tier=column_values(frame, "risk_tier", object),
        expected_net_value=column_values(frame, "expected_net_value", "float64"),
        group=column_values(frame, "group", object) if "group" in names else None,
    )
    if arrow:
        return frame.set_column(names.index("action"), "action", pa.array(action, type=pa.string()))
    return frame.assign(action=pd.array(action, dtype="str"))


#: Columns the call list holds, in order: the call order, then the list's own columns.
CALL_ORDER = "call_order"


def call_list(rows: pd.DataFrame) -> pd.DataFrame:
    """The subscribers to contact (targeted, not in the control group), in call order.

    Call order: the largest ``expected_net_value`` first (then the list's ``rank``), so a
    team that stops early has made the calls worth most; for a capacity this is the exact
    best selection at every length.  ``call_order`` counts from 1.
    """
    if len(rows):
        keep = rows["targeted"].astype(bool).to_numpy(copy=True)
        if "group" in rows.columns:
            keep &= rows["group"].astype("str").to_numpy(dtype=object) != "control"
        rows = rows[keep]
    order = np.lexsort((rows["rank"].to_numpy(dtype="int64"),
                        -rows["expected_net_value"].to_numpy(dtype="float64", na_value=-np.inf)))
    ordered = rows.take(order).reset_index(drop=True)
    ordered.insert(0, CALL_ORDER, np.arange(1, len(ordered) + 1, dtype="int64"))
    return ordered


class ListTally:
    """Counts of the rows a list holds, as they are written (so what is printed is what the file says).

    ``rows``, ``tiers`` (tier -> rows), ``targeted``, ``targeted_by_tier``, ``control``,
    ``do_not_contact``, ``actions`` (action -> rows); with ``keep_calls``, the targeted rows
    of the offer group are kept for the call list (``calls``).
    """

    def __init__(self, *, keep_calls: bool = False):
        self.rows = 0
        self.tiers = dict.fromkeys(TIERS, 0)
        self.targeted = 0
        self.targeted_by_tier = dict.fromkeys(TIERS, 0)
        self.control = 0
        self.do_not_contact = 0
        self.actions: dict[str, int] = {}
        self.keep_calls = keep_calls
        self.columns: list[str] = []
        self._calls: list[pd.DataFrame] = []

    def add(self, batch) -> None:
        """Count one written batch (a frame or an Arrow table with the list's columns)."""
        import pyarrow as pa

        n = batch.num_rows if isinstance(batch, pa.Table) else len(batch)
        if not n:
            return
        names = batch.column_names if isinstance(batch, pa.Table) else list(batch.columns)
        self.columns = self.columns or list(names)
        self.rows += n
        targeted = column_values(batch, "targeted", bool)
        tiers, targeted_tiers = value_counts(batch, "risk_tier"), value_counts(batch, "risk_tier", targeted)
        for name in TIERS:
            self.tiers[name] += tiers.get(name, 0)
            self.targeted_by_tier[name] += targeted_tiers.get(name, 0)
        self.targeted += int(np.count_nonzero(targeted))
        self.do_not_contact += int(np.count_nonzero(column_values(batch, "do_not_contact", bool)))
        if "group" in names:
            self.control += value_counts(batch, "group").get("control", 0)
        for action, count in value_counts(batch, "action").items():
            self.actions[action] = self.actions.get(action, 0) + count
        if self.keep_calls and targeted.any():
            where = np.flatnonzero(targeted)
            rows = batch.take(pa.array(where)).to_pandas() if isinstance(batch, pa.Table) else batch.iloc[where]
            self._calls.append(plain_text(rows.reset_index(drop=True)))

    @property
    def at_risk(self) -> int:
        """Rows of tier ``medium`` or ``high``."""
        return self.tiers["medium"] + self.tiers["high"]

    @property
    def targeted_low_risk(self) -> int:
        """Targeted rows of tier ``low`` (in the list for their value, not their risk)."""
        return self.targeted_by_tier["low"]

    def calls(self) -> pd.DataFrame:
        """The targeted rows kept (``keep_calls``), in list order."""
        if not self._calls:
            return pd.DataFrame(columns=self.columns or list(OUTPUT_COLUMNS)).astype(
                {"rank": "int64", "targeted": "bool", "expected_net_value": "float64"})
        return pd.concat(self._calls, ignore_index=True)

    def as_dict(self) -> dict:
        """The counts as plain data (for the scoring summary)."""
        return {"rows": self.rows, "tiers": dict(self.tiers), "at_risk": self.at_risk, "targeted": self.targeted,
                "targeted_by_tier": dict(self.targeted_by_tier), "targeted_low_risk": self.targeted_low_risk,
                "control": self.control, "do_not_contact": self.do_not_contact,
                "actions": dict(sorted(self.actions.items(), key=lambda item: (-item[1], item[0])))}
