"""The scoring summary: what a whole scored base adds up to, written beside its list.

``churn score`` writes ``NAME.summary.json`` next to the list ``NAME.csv`` (or ``.parquet``):
the models and their hold-out metrics, the base rate, the breach's expected impact over the
horizon (with an interval), the same by segment, the campaign (targeting summary, the net
value against the share targeted, the offer-size sweep), why subscribers are not called,
drift warnings and the data's date.  With the list it is everything ``churn report`` needs:
the list holds the rows, the summary what only the whole base knows (the list may hold the
at-risk rows only, and for record bases it holds no features to segment by).

``BaseTotals`` adds the per-subscriber figures up chunk by chunk (``add``, on any thread;
``merge`` in order); ``column_dictionary`` describes the list's columns (``NAME.dictionary.csv``).
Everything here is a pure function of scored rows, apart from ``write_json``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

#: The summary's format; a reader refuses any other.
FORMAT = "churn-scoring-summary/1"
#: Points of the curves of net value against the share targeted.
CURVE_POINTS = 201
#: Segment columns besides ``pipeline.dataset.segments``': the tariff plan.
PLAN_COLUMNS = ("plan",)


# --------------------------------------------------------------------------------------
# The sum of independent Bernoulli variables: a refined normal approximation
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    """A central interval of a sum of independent variables, from its first three cumulants."""

    mean: float
    low: float
    high: float
    level: float
    method: str

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for JSON."""
        return {"mean": self.mean, "low": self.low, "high": self.high, "level": self.level, "method": self.method}


#: How ``sum_interval`` computes its bounds, in words (for the report and the summary).
INTERVAL_METHOD = ("refined normal approximation: mean and variance of the sum of independent Bernoulli "
                   "variables, corrected for skewness by the Cornish-Fisher expansion (third cumulant), "
                   "with a continuity correction for counts")


def sum_interval(mean: float, variance: float, third: float, *, level: float = 0.95,
                 count: bool = False) -> Interval:
    """The central ``level`` interval of a sum of independent variables from its cumulants.

    The number of defections in a base is a sum of independent Bernoulli variables (one per
    subscriber, with the calibrated probability ``p``): a Poisson-binomial variable with mean
    ``sum p``, variance ``sum p (1 - p)`` and third cumulant ``sum p (1 - p) (1 - 2p)``.  Its
    exact distribution takes ``O(n^2)`` to compute; the *refined normal approximation*
    (Volkova 1996; Hong 2013, "On computing the distribution function for the Poisson binomial
    distribution", Computational Statistics & Data Analysis 59) corrects the normal one for
    skewness.  Here its quantiles come from the Cornish-Fisher expansion of the same order,
    ``mean + sd * (z + g (z^2 - 1) / 6)`` with skewness ``g = third / sd^3``; for a ``count``,
    bounds are whole numbers with a continuity correction (``floor(x + 0.5)`` below,
    ``ceil(x - 0.5)`` above).  The value lost, ``sum B_i V_i``, has cumulants ``sum p V``,
    ``sum p (1 - p) V^2``, ``sum p (1 - p) (1 - 2p) V^3`` and is treated the same way
    (without the continuity correction).  Tested against the exact distribution.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    sd = math.sqrt(max(variance, 0.0))
    if sd == 0:
        return Interval(mean, mean, mean, level, INTERVAL_METHOD)
    skew = third / sd**3
    z = NormalDist().inv_cdf(0.5 + level / 2)

    def quantile(zq: float) -> float:
        return mean + sd * (zq + skew * (zq * zq - 1.0) / 6.0)

    low, high = quantile(-z), quantile(z)
    if count:
        low, high = max(0.0, math.floor(low + 0.5)), float(math.ceil(high - 0.5))
    return Interval(float(mean), float(min(low, mean)), float(max(high, mean)), level, INTERVAL_METHOD)


# --------------------------------------------------------------------------------------
# Adding a base up, chunk by chunk
# --------------------------------------------------------------------------------------

#: Per segment level: subscribers, then sums over them.
SEGMENT_FIELDS = ("subscribers", "expected_defections", "variance", "third", "expected_loss", "etf_forgone", "at_risk",
                  "worth_a_call")


def segment_frame(inputs: pd.DataFrame | None) -> pd.DataFrame:
    """The segment columns of scored rows' inputs: contract, tenure band, exposure, plan (those present)."""
    from pipeline.segments import segment_columns

    if inputs is None or not len(inputs.columns):
        return pd.DataFrame(index=range(0 if inputs is None else len(inputs)))
    frame = segment_columns(inputs.reset_index(drop=True))
    for name in PLAN_COLUMNS:
        if name in inputs.columns:
            frame["plan"] = inputs[name].reset_index(drop=True).astype("string").fillna("unknown")
    return frame


@dataclass
class BaseTotals:
    """What a scored base adds up to (see the module docstring); chunks ``add`` and ``merge``."""

    subscribers: int = 0
    #: Cumulants of the number of defections: sum p, sum p(1-p), sum p(1-p)(1-2p).
    defections: np.ndarray = field(default_factory=lambda: np.zeros(3))
    #: Cumulants of the value lost: sum pV, sum p(1-p)V^2, sum p(1-p)(1-2p)V^3.
    loss: np.ndarray = field(default_factory=lambda: np.zeros(3))
    #: Whether any row had a known value (else money figures are unknown).
    valued: bool = False
    #: Fees a waiver forgives, weighted by the probability of leaving; subscribers with a waiver.
    etf_forgone: float = 0.0
    waived: int = 0
    tiers: dict = field(default_factory=lambda: {"low": 0, "medium": 0, "high": 0})
    #: Why subscribers are not worth a call (whole base): do_not_contact, lost causes (tier
    #: high, net value <= 0), not worth it (tier medium, net value <= 0), low risk and not worth
    #: it, and those worth a call (net value > 0).
    reasons: dict = field(default_factory=lambda: dict.fromkeys(
        ("do_not_contact", "lost_cause", "not_worth", "low_risk", "worth_a_call"), 0))
    #: Expected net value and probability of every subscriber (float32), for the curves.
    net_values: list = field(default_factory=list)
    probabilities: list = field(default_factory=list)
    #: (segment, level) -> sums in ``SEGMENT_FIELDS`` order.
    segments: dict = field(default_factory=dict)

    @classmethod
    def of(cls, out: pd.DataFrame, inputs: pd.DataFrame | None = None) -> BaseTotals:
        """The totals of one scored chunk (``score_rows``' columns) and its inputs (same rows), if known."""
        totals = cls()
        p = out["churn_probability"].to_numpy(dtype="float64")
        value = out["save_value"].to_numpy(dtype="float64", na_value=np.nan)
        known = np.isfinite(value)
        v = np.where(known, value, 0.0)
        q = p * (1 - p)
        totals.subscribers = len(p)
        totals.defections = np.array([p.sum(), q.sum(), (q * (1 - 2 * p)).sum()])
        totals.loss = np.array([(p * v).sum(), (q * v * v).sum(), (q * (1 - 2 * p) * v**3).sum()])
        totals.valued = bool(known.any())
        waived = np.nan_to_num(out["etf_waived"].to_numpy(dtype="float64", na_value=np.nan))
        totals.etf_forgone = float((waived * p).sum())
        totals.waived = int(np.count_nonzero(waived > 0))
        tier = out["risk_tier"].astype("str").to_numpy(dtype=object)
        at = {name: tier == name for name in totals.tiers}
        for name in totals.tiers:
            totals.tiers[name] = int(np.count_nonzero(at[name]))
        net = out["expected_net_value"].to_numpy(dtype="float64")
        harmful = out["do_not_contact"].to_numpy(dtype=bool)
        worth = net > 0
        idle = ~worth & ~harmful
        totals.reasons = {"do_not_contact": int(np.count_nonzero(harmful)),
                          "lost_cause": int(np.count_nonzero(idle & at["high"])),
                          "not_worth": int(np.count_nonzero(idle & at["medium"])),
                          "low_risk": int(np.count_nonzero(idle & at["low"])),
                          "worth_a_call": int(np.count_nonzero(worth & ~harmful))}
        totals.net_values = [net.astype("float32")]
        totals.probabilities = [p.astype("float32")]
        segments = segment_frame(inputs)
        if len(segments.columns) and len(segments) == len(p):
            rows = [np.ones_like(p), p, q, q * (1 - 2 * p), p * v, waived * p, (~at["low"]).astype(float),
                    worth.astype(float)]
            for name in segments.columns:
                # sorted levels and each row's level, by hashing (np.unique sorts every row's text)
                codes, keys = pd.factorize(segments[name].astype("str").to_numpy(dtype=object), sort=True)
                sums = np.column_stack([np.bincount(codes, weights=column, minlength=len(keys)) for column in rows])
                for key, total in zip(keys, sums):
                    totals.segments[(name, str(key))] = total
        return totals

    def merge(self, other: BaseTotals) -> None:
        """Add another chunk's totals to these."""
        self.subscribers += other.subscribers
        self.defections = self.defections + other.defections
        self.loss = self.loss + other.loss
        self.valued = self.valued or other.valued
        self.etf_forgone += other.etf_forgone
        self.waived += other.waived
        for name, count in other.tiers.items():
            self.tiers[name] += count
        for name, count in other.reasons.items():
            self.reasons[name] += count
        self.net_values += other.net_values
        self.probabilities += other.probabilities
        for key, total in other.segments.items():
            self.segments[key] = self.segments.get(key, 0) + total

    # -- what the summary says ---------------------------------------------------------

    def impact(self, *, level: float = 0.95) -> dict[str, Any]:
        """Expected defections and value lost over the horizon, with intervals; fees forgone."""
        defections = sum_interval(*self.defections, level=level, count=True)
        out = {"subscribers": self.subscribers, "expected_defections": defections.as_dict(),
               "expected_loss": None, "etf_forgone": None, "subscribers_with_waiver": self.waived}
        if self.valued:
            out["expected_loss"] = sum_interval(*self.loss, level=level).as_dict()
            out["etf_forgone"] = self.etf_forgone
        return out

    def segment_table(self) -> list[dict[str, Any]]:
        """One row per segment level: subscribers, expected defections (with a 95% interval), loss, fees."""
        rows = []
        for (name, level), total in sorted(self.segments.items(), key=lambda item: (item[0][0], -item[1][0])):
            values = dict(zip(SEGMENT_FIELDS, (float(x) for x in total)))
            band = sum_interval(values["expected_defections"], values["variance"], values["third"], count=True)
            rows.append({"segment": name, "level": level, "subscribers": int(values["subscribers"]),
                         "expected_defections": values["expected_defections"], "defections_low": band.low,
                         "defections_high": band.high,
                         "churn_rate": values["expected_defections"] / max(values["subscribers"], 1),
                         "expected_loss": values["expected_loss"] if self.valued else None,
                         "etf_forgone": values["etf_forgone"] if self.valued else None,
                         "at_risk": int(values["at_risk"]), "worth_a_call": int(values["worth_a_call"])})
        return rows

    def value_curves(self, points: int = CURVE_POINTS) -> dict[str, list[float]]:
        """Total expected net value against the share of the base contacted, two ways.

        ``by_value``: contacting subscribers in order of expected net value (the campaign's
        order: its peak is where net values turn negative); ``by_risk``: in order of churn
        probability (calling the riskiest first).  Sampled at ``points`` shares from 0 to 1,
        plus the peak of ``by_value`` exactly.
        """
        if not self.net_values:
            return {"share": [], "by_value": [], "by_risk": []}
        net = np.concatenate(self.net_values).astype("float64")
        proba = np.concatenate(self.probabilities)
        n = len(net)
        by_value = np.r_[0.0, np.cumsum(np.sort(net)[::-1])]
        by_risk = np.r_[0.0, np.cumsum(net[np.argsort(-proba, kind="stable")])]
        counts = np.unique(np.r_[np.round(np.linspace(0, n, points)).astype(int), int(np.count_nonzero(net > 0))])
        return {"share": (counts / n).tolist(), "subscribers": counts.tolist(),
                "by_value": by_value[counts].tolist(), "by_risk": by_risk[counts].tolist()}


# --------------------------------------------------------------------------------------
# The list's columns, described (``NAME.dictionary.csv``)
# --------------------------------------------------------------------------------------

#: column -> (type, unit, meaning); ``{money}`` is replaced by the currency.  Mirrors the
#: column table of ``docs/outputs.md``.
COLUMNS: dict[str, tuple[str, str, str]] = {
    "call_order": ("integer", "", "Order in which to call (call list only): largest expected net value first."),
    "rank": ("integer", "", "Position in the list, 1 = the largest expected loss."),
    "subscriber_id": ("text", "", "The subscriber's identifier, as in the input; no other personal data is written."),
    "churn_probability": ("number 0-1", "probability", "Calibrated probability of leaving within the horizon "
                          "({horizon} days) if nobody contacts the subscriber."),
    "risk_tier": ("text", "", "low / medium / high: the probability as a multiple of the training churn rate "
                  "(medium from {medium}x, high from {high}x the base rate {base_rate})."),
    "expected_loss": ("number", "{money}", "churn_probability x save_value: the value expected to be lost if "
                      "nothing is done (the ranking key)."),
    "reason_1": ("text", "", "The input that raised this subscriber's risk most, in plain words (blank beyond the "
                 "explained rows)."),
    "reason_2": ("text", "", "The second input that raised the risk most."),
    "reason_3": ("text", "", "The third input that raised the risk most."),
    "action": ("text", "", "What to do in this campaign: a contact for targeted rows; 'No outreach: <why>', "
               "'Do not contact' or 'Control group' for the others (never a contact unless targeted)."),
    "targeted": ("true/false", "", "Whether the campaign (budget, capacity, or everyone worth a contact) selects "
                 "this subscriber."),
    "do_not_contact": ("true/false", "", "A retention contact is expected to push this subscriber out (the upper end "
                       "of the one-sided 95% interval of estimated_uplift is below 0)."),
    "group": ("text", "", "offer / control / blank: the targeted subscribers' campaign group (--control-share); "
              "control rows must not be contacted."),
    "expected_net_value": ("number", "{money}", "Expected net value of contacting this subscriber: expected_save x "
                           "save_value - expected_cost; positive means worth a contact."),
    "expected_incremental_value": ("number", "{money}", "The same when it rests on a response model's "
                                   "estimated_uplift; blank without one."),
    "estimated_uplift": ("number -1 to 1", "probability", "How much a contact with the offer lowers the probability "
                         "of leaving (response model); negative: the contact raises it. Blank without one."),
    "expected_save": ("number -1 to 1", "subscribers", "Expected defections one contact prevents (estimated_uplift, "
                      "or churn_probability x the assumed acceptance rate)."),
    "expected_cost": ("number", "{money}", "Expected cost of the contact: contact cost plus the offer for everyone "
                      "contacted who stays."),
    "monthly_value": ("number", "{money} per month", "The subscriber's monthly value (revenue) from the data."),
    "clv": ("number", "{money}", "Customer lifetime value at the subscriber's own expected retention."),
    "etf_waived": ("number", "{money}", "The early termination fee a fee waiver would forgive this subscriber; 0 "
                   "when none applies."),
    "save_value": ("number", "{money}", "What keeping the subscriber is worth: clv less the termination fee "
                   "their leaving would bring in."),
    "model_version": ("text", "", "The registered churn model version behind the scores."),
    "response_model_version": ("text", "", "The registered response model version behind estimated_uplift; "
                               "blank without one."),
    "campaign_id": ("text", "", "The campaign's id for the targeted rows (--control-share only)."),
}


def currency_words(currency: str | None, value_column: str | None) -> str:
    """How money is named: the currency when known, else the value column's unit."""
    if currency:
        return currency
    if value_column:
        return f"currency of {value_column}"
    return "money units (no value column: the campaign's absolute costs)"


def column_dictionary(columns, *, currency: str, horizon_days: int, base_rate: float, medium: float,
                      high: float) -> pd.DataFrame:
    """``column``, ``type``, ``unit``, ``meaning`` of each of ``columns`` (a list's header), in order."""
    rows = []
    for name in columns:
        kind, unit, meaning = COLUMNS.get(str(name), ("", "", ""))
        rows.append({"column": str(name), "type": kind, "unit": unit.format(money=currency),
                     "meaning": meaning.format(horizon=horizon_days, medium=f"{medium:g}", high=f"{high:g}",
                                               base_rate=f"{base_rate:.2%}")})
    return pd.DataFrame(rows, columns=["column", "type", "unit", "meaning"])


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------

def companion(list_path: str | Path, kind: str, suffix: str) -> Path:
    """The path of a file written beside a list: ``at_risk.csv`` -> ``at_risk.<kind><suffix>``."""
    path = Path(list_path)
    return path.with_name(f"{path.stem}.{kind}{suffix}")


def _atomic_text(path: Path, text: str) -> Path:
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_json(summary: dict[str, Any], path: str | Path) -> Path:
    """Write the summary as JSON (atomically; non-finite numbers as null)."""
    return _atomic_text(Path(path), json.dumps(_plain({"format": FORMAT, **summary}), indent=1, allow_nan=False)
                        + "\n")


def write_text(text: str, path: str | Path) -> Path:
    """Write a text file atomically (a temporary name, renamed when complete)."""
    return _atomic_text(Path(path), text)


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a scoring summary written by ``write_json``."""
    from pipeline.errors import DataError

    path = Path(path)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DataError(f"{path}: no scoring summary (written by `churn score` beside its list)") from err
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable scoring summary ({err})") from err
    if not isinstance(summary, dict) or summary.get("format") != FORMAT:
        raise DataError(f"{path}: not a scoring summary of this version (expected format {FORMAT})")
    return summary
