"""Point-in-time features: one row per subscriber from the record tables and a snapshot date.

``build_features(records, snapshot_date)`` is the relational half of the model: joins and
aggregations over the subscriber record tables (``pipeline.schema``), stateless and
identical at training and scoring time.  Everything learned from data (imputation,
encodings, scaling) lives in the fitted scikit-learn pipeline (``pipeline.model``), not here.

The point-in-time rule: only what was known *strictly before* the snapshot enters a
feature.  A usage month counts once the whole month has ended before the snapshot day; a
contact counts when ``contact_time < snapshot``; a breach exposure counts once the
subscriber was notified (``notification_date < snapshot``; an exposed subscriber not yet
notified looks unexposed); a retention offer counts when ``contact_date < snapshot`` (control
rows of a campaign were never contacted and never count).  Outcomes only ever decide labels
(``make_labels``) and which subscribers had already left.  Personal fields (name, phone
number, email) are never read.

``FEATURE_CATALOGUE`` describes every output column in plain language, with the phrase a
retention agent sees when the feature raises or lowers a subscriber's risk
(``reason_text``).  ``docs/features.md`` documents the same columns.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError, DataError, first_rows
from pipeline.schema import BREACH_REASONS

logger = logging.getLogger(__name__)

ID_COLUMN = "subscriber_id"
LABEL_COLUMN = "churned"

#: Average length of a Gregorian month in days: tenure and contract months are days / this.
DAYS_PER_MONTH = 30.4375
#: Service contacts are counted over this many days before the snapshot (and before the disclosure).
CONTACT_WINDOW_DAYS = 90
#: Points each kind of exposed data adds to ``exposure_severity`` (summed; 0 to 9).  A phone
#: number alone enables spam and smishing (1); a USIM key enables SIM cloning (2); an identity
#: number or payment data enables identity theft or direct fraud (3 each).
SEVERITY_WEIGHTS = {
    "exposed_phone_number": 1.0,
    "exposed_usim_key": 2.0,
    "exposed_identity_number": 3.0,
    "exposed_payment_data": 3.0,
}
#: Retention offers (campaign rows of the ``offer`` group) are counted over this many days before the snapshot.
OFFER_WINDOW_DAYS = 365
COMPLAINT_REASONS = ("breach_complaint",)
PORTING_REASONS = ("porting_inquiry",)

_DAY = np.timedelta64(1, "D")
_NS = "datetime64[ns]"


# --------------------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Feature:
    """One output column of ``build_features``, described for analysts and retention agents.

    ``raises`` and ``lowers`` are the phrases shown when the feature raises or lowers a
    subscriber's risk.  They may contain ``{value}`` (the value in its unit, e.g. ``"2
    months"``, ``"KRW 40,000"``, ``"3 complaints"``) and ``{trend}`` (a change, e.g. ``"fell
    40%"``).  Phrases only state what is true of the subscriber: yes/no features follow the
    actual value (``raises`` describes ``risky_value``, ``lowers`` the other one), a value of
    0 gets the ``zero`` phrase when there is one, a missing value the ``missing`` phrase.
    """

    name: str
    family: str
    kind: str  # "number", "flag" or "category"
    unit: str
    meaning: str
    computed: str
    raises: str
    lowers: str
    missing: str = ""
    zero: str = ""
    risky_value: float = 1.0
    #: ``{trend}`` is measured against this value: 1 for ratios, 0 for slopes.
    pivot: float = 0.0
    #: Words for category values (e.g. ``"12m"`` -> ``"a 12-month contract"``).
    labels: dict = field(default_factory=dict)
    #: Singular and plural noun of a count (e.g. ``("complaint", "complaints")``).
    noun: tuple[str, str] = ()


def _f(name, family, kind, unit, meaning, computed, raises, lowers=None, **extra) -> Feature:
    return Feature(name, family, kind, unit, meaning, computed, raises, raises if lowers is None else lowers, **extra)


_CONTRACT_LABELS = {"none": "no contract", "12m": "a 12-month contract", "24m": "a 24-month contract"}
_CHANNEL_LABELS = {"store": "a store", "online": "the online shop", "telesales": "telesales", "dealer": "a dealer"}
_WINDOW_TEXT = {
    "90d": ("in the 90 days before the snapshot", "in the last 90 days"),
    "90d_before_disclosure": ("in the 90 days before the breach was disclosed", "before the breach"),
    "since_disclosure": ("from the breach disclosure to the snapshot", "since the breach"),
}
_WINDOW_RULE = {
    "90d": f"contacts with snapshot - {CONTACT_WINDOW_DAYS} days <= contact_time < snapshot",
    "90d_before_disclosure": (
        f"contacts with disclosure - {CONTACT_WINDOW_DAYS} days <= contact_time < disclosure "
        "(0 without a disclosure date)"
    ),
    "since_disclosure": "contacts with disclosure <= contact_time < snapshot (0 without a disclosure date)",
}
_GROUP_TEXT = {
    "contacts": ("service contacts for any reason", "any reason", ("service contact", "service contacts")),
    "breach_contacts": (
        "breach-related contacts (breach inquiry or complaint, USIM replacement, porting inquiry)",
        "reason in " + ", ".join(BREACH_REASONS),
        ("breach-related contact", "breach-related contacts"),
    ),
    "complaint_contacts": (
        "complaints (breach complaints)",
        "reason in " + ", ".join(COMPLAINT_REASONS),
        ("complaint", "complaints"),
    ),
    "porting_inquiries": (
        "inquiries about porting the number to another operator",
        "reason in " + ", ".join(PORTING_REASONS),
        ("question about porting their number", "questions about porting their number"),
    ),
    "other_contacts": (
        "contacts for other reasons (billing, technical, plan change, device, other)",
        "reason not breach-related",
        ("other service contact", "other service contacts"),
    ),
}


def _contact_features() -> list[Feature]:
    features = []
    for window, (window_meaning, window_short) in _WINDOW_TEXT.items():
        for group, (group_meaning, group_rule, noun) in _GROUP_TEXT.items():
            features.append(
                _f(
                    f"{group}_{window}",
                    "contacts",
                    "number",
                    "count",
                    f"Number of {group_meaning} {window_meaning}.",
                    f"count of {_WINDOW_RULE[window]}, {group_rule}",
                    f"{{value}} {window_short}",
                    zero=f"No {noun[1]} {window_short}",
                    noun=noun,
                )
            )
    return features


_NO_USAGE = "No recent usage on record"
_NO_BILLS = "No recent bills on record"
_NOT_EXPOSED = "Not notified of any exposure"
_FEATURES: list[Feature] = [
    # Contract and switching cost (subscribers table, state at the snapshot)
    _f("tenure_months", "contract", "number", "months",
       "How long the subscriber has been with us.",
       f"(snapshot - activation_date) in days / {DAYS_PER_MONTH}",
       "Customer for only {value}", "Customer for {value}"),
    _f("contract_type", "contract", "category", "category",
       "Contract commitment: none, 12-month or 24-month.",
       "subscribers.contract_type as text",
       "On {value}", missing="Contract type unknown", labels=_CONTRACT_LABELS),
    _f("months_left_on_contract", "contract", "number", "months",
       "Months until the contract ends (0 when there is no contract or it has ended).",
       f"max(contract_end - snapshot, 0) in days / {DAYS_PER_MONTH}; 0 when contract_type is 'none' "
       "and no end date is set; missing when a contract has no end date",
       "Contract ends in {value}", "{value} left on contract",
       missing="Contract end date unknown", zero="Out of contract: free to leave"),
    _f("early_termination_fee", "contract", "number", "KRW",
       "Early termination fee (ETF) the subscriber would pay to leave now.",
       "subscribers.early_termination_fee (the fee at the snapshot)",
       "Fee to leave now is only {value}", "Would pay {value} to leave now", zero="No fee to leave now"),
    _f("etf_to_monthly_fee", "contract", "number", "x monthly fee",
       "Early termination fee as a multiple of the monthly fee.",
       "early_termination_fee / monthly_fee; missing when the monthly fee is 0",
       "Fee to leave is only {value}", "Fee to leave is {value}",
       missing="Fee to leave not comparable (no monthly fee)", zero="No fee to leave now"),
    _f("device_instalment_balance", "contract", "number", "KRW",
       "Device instalments still to pay.",
       "subscribers.device_instalment_balance",
       "Only {value} left to pay on the device", "Still owes {value} on the device",
       zero="Device fully paid off"),
    _f("instalment_to_monthly_fee", "contract", "number", "x monthly fee",
       "Device instalment balance as a multiple of the monthly fee.",
       "device_instalment_balance / monthly_fee; missing when the monthly fee is 0",
       "Device balance is only {value}", "Device balance is {value}",
       missing="Device balance not comparable (no monthly fee)", zero="Device fully paid off"),
    _f("family_bundle", "contract", "flag", "0/1",
       "1 when the line is part of a family bundle.",
       "subscribers.family_bundle as 0/1",
       "No family bundle", "Part of a family bundle", risky_value=0.0),
    _f("fixed_line_bundle", "contract", "flag", "0/1",
       "1 when the line is bundled with home internet or a fixed line.",
       "subscribers.fixed_line_bundle as 0/1",
       "No home internet or fixed-line bundle", "Bundled with home internet or a fixed line", risky_value=0.0),
    # Profile (subscribers table)
    _f("plan", "profile", "category", "category",
       "Tariff plan.", "subscribers.plan as text",
       "On the {value} plan", missing="Plan unknown"),
    _f("monthly_fee", "profile", "number", "KRW",
       "Monthly fee of the plan.", "subscribers.monthly_fee",
       "Pays {value} a month", zero="Pays no monthly fee"),
    _f("age_band", "profile", "category", "category",
       "Age band of the subscriber.", "subscribers.age_band as text",
       "Age {value}", missing="Age unknown"),
    _f("region", "profile", "category", "category",
       "Region of the subscriber.", "subscribers.region as text",
       "Lives in {value}", missing="Region unknown"),
    _f("channel", "profile", "category", "category",
       "Sales channel the subscriber joined through.", "subscribers.channel as text",
       "Joined through {value}", missing="Sales channel unknown", labels=_CHANNEL_LABELS),
    # Usage (usage_monthly, months that ended before the snapshot)
    _f("usage_history_months", "usage", "number", "months",
       "Months of usage history on record before the snapshot.",
       "count of usage_monthly rows whose month ended before the snapshot",
       "Only {value} of usage history", "{value} of usage history", zero="No usage history on record"),
    _f("data_gb_mean_3m", "usage", "number", "GB",
       "Average monthly data use over the last 3 complete months.",
       "mean data_gb over the 3 calendar months before the snapshot's month (months with a row)",
       "Uses only {value} of data a month", "Uses {value} of data a month",
       missing=_NO_USAGE, zero="Uses no mobile data"),
    _f("data_gb_mean_6m", "usage", "number", "GB",
       "Average monthly data use over the last 6 complete months.",
       "mean data_gb over the 6 calendar months before the snapshot's month (months with a row)",
       "Uses only {value} of data a month", "Uses {value} of data a month",
       missing=_NO_USAGE, zero="Uses no mobile data"),
    _f("voice_minutes_mean_3m", "usage", "number", "minutes",
       "Average monthly call minutes over the last 3 complete months.",
       "mean voice_minutes over the 3 calendar months before the snapshot's month",
       "Calls only {value} a month", "Calls {value} a month", missing=_NO_USAGE, zero="Makes no calls"),
    _f("voice_minutes_mean_6m", "usage", "number", "minutes",
       "Average monthly call minutes over the last 6 complete months.",
       "mean voice_minutes over the 6 calendar months before the snapshot's month",
       "Calls only {value} a month", "Calls {value} a month", missing=_NO_USAGE, zero="Makes no calls"),
    _f("data_gb_slope_6m", "usage", "number", "GB per month",
       "Trend of data use: change per month over the last 6 complete months.",
       "least-squares slope of data_gb on the month number over the last 6 months; missing with "
       "fewer than 2 months",
       "Data use {trend} a month", missing="Too little usage history for a trend",
       zero="Data use steady over the last 6 months"),
    _f("voice_minutes_slope_6m", "usage", "number", "minutes per month",
       "Trend of call minutes: change per month over the last 6 complete months.",
       "least-squares slope of voice_minutes on the month number over the last 6 months; missing "
       "with fewer than 2 months",
       "Calling {trend} a month", missing="Too little usage history for a trend",
       zero="Calling steady over the last 6 months"),
    _f("data_gb_last3_to_prev3", "usage", "number", "ratio",
       "Data use of the last 3 months relative to the 3 months before (1 = unchanged, 0.6 = fell 40%).",
       "mean data_gb of months -3..-1 / mean of months -6..-4; missing when either is empty or "
       "the earlier mean is 0",
       "Data use {trend} in the last 3 months", missing="Too little usage history to compare", pivot=1.0),
    _f("voice_minutes_last3_to_prev3", "usage", "number", "ratio",
       "Call minutes of the last 3 months relative to the 3 months before.",
       "mean voice_minutes of months -3..-1 / mean of months -6..-4; missing when either is empty "
       "or the earlier mean is 0",
       "Calling {trend} in the last 3 months", missing="Too little usage history to compare", pivot=1.0),
    # Bills and payments (usage_monthly)
    _f("bill_amount_mean_6m", "billing", "number", "KRW",
       "Average monthly bill over the last 6 complete months.",
       "mean bill_amount over the last 6 months",
       "Average bill {value}", missing=_NO_BILLS),
    _f("bill_amount_last", "billing", "number", "KRW",
       "The most recent bill (latest month with a bill within the last 6 months).",
       "bill_amount of the latest usage month within the last 6 months",
       "Last bill {value}", missing=_NO_BILLS),
    _f("bill_last_to_mean_6m", "billing", "number", "ratio",
       "Last bill relative to the 6-month average bill (1 = usual, 1.3 = 30% higher).",
       "bill_amount_last / bill_amount_mean_6m; missing when the mean is 0",
       "Last bill {trend} against the 6-month average", missing=_NO_BILLS, pivot=1.0),
    _f("payment_delay_mean_6m", "billing", "number", "days",
       "Average days a bill was paid late over the last 6 complete months.",
       "mean payment_delay_days over the last 6 months",
       "Pays bills {value} late on average", missing=_NO_BILLS, zero="Pays bills on time"),
    _f("payment_delay_max_6m", "billing", "number", "days",
       "Longest payment delay over the last 6 complete months.",
       "max payment_delay_days over the last 6 months",
       "Paid a bill {value} late", missing=_NO_BILLS, zero="Pays bills on time"),
    _f("months_paid_late_6m", "billing", "number", "months",
       "Number of the last 6 complete months whose bill was paid late.",
       "count of the last 6 months with payment_delay_days > 0 (0 without usage rows)",
       "Paid late in {value} of the last 6", zero="No late payment in the last 6 months"),
    # Service contacts (contacts before the snapshot)
    *_contact_features(),
    _f("days_since_last_contact", "contacts", "number", "days",
       "Days since the subscriber last contacted customer service.",
       "(snapshot - latest contact_time before the snapshot) in days; missing when never",
       "Contacted us {value} ago", "Last contacted us {value} ago", missing="No service contact on record"),
    # Breach exposure and fee waiver (breach_exposure rows notified before the snapshot)
    _f("exposed", "breach", "flag", "0/1",
       "1 when the subscriber was notified that their data was exposed in the breach.",
       "1 when a breach_exposure row has notification_date < snapshot",
       "Data exposed in the breach", "Not affected by the breach"),
    _f("phone_number_exposed", "breach", "flag", "0/1",
       "1 when the phone number was exposed.", "breach_exposure.exposed_phone_number (notified rows)",
       "Phone number exposed in the breach", "Phone number not exposed"),
    _f("usim_key_exposed", "breach", "flag", "0/1",
       "1 when the USIM authentication key (IMSI/Ki) was exposed.",
       "breach_exposure.exposed_usim_key (notified rows)",
       "USIM key exposed in the breach", "USIM key not exposed"),
    _f("identity_number_exposed", "breach", "flag", "0/1",
       "1 when the national identity number was exposed.",
       "breach_exposure.exposed_identity_number (notified rows)",
       "Identity number exposed in the breach", "Identity number not exposed"),
    _f("payment_data_exposed", "breach", "flag", "0/1",
       "1 when payment data was exposed.", "breach_exposure.exposed_payment_data (notified rows)",
       "Payment data exposed in the breach", "Payment data not exposed"),
    _f("exposure_severity", "breach", "number", "score 0-9",
       "How sensitive the exposed data was: phone number 1, USIM key 2, identity number 3, payment data 3, summed.",
       "sum of SEVERITY_WEIGHTS over the exposed items (0 when not exposed)",
       "Sensitive data exposed (severity {value})", "Less sensitive data exposed (severity {value})",
       zero="No data exposed"),
    _f("fraud_loss_amount", "breach", "number", "KRW",
       "Money lost to fraud caused by the breach (direct harm).",
       "breach_exposure.fraud_loss_amount (0 when not exposed)",
       "Lost {value} to fraud after the breach", zero="No fraud loss"),
    _f("directly_harmed", "breach", "flag", "0/1",
       "1 when the subscriber lost money to breach-related fraud.",
       "fraud_loss_amount > 0",
       "Directly harmed by breach fraud", "Not harmed by fraud"),
    _f("notification_lag_days", "breach", "number", "days",
       "Days between the breach disclosure and this subscriber's notification.",
       "notification_date - disclosure date; missing when not exposed or no disclosure date",
       "Notified {value} after the disclosure", missing=_NOT_EXPOSED,
       zero="Notified on the day of the disclosure"),
    _f("days_since_notification", "breach", "number", "days",
       "Days since the subscriber was notified of their exposure.",
       "snapshot - notification_date; missing when not exposed",
       "Notified of the breach {value} ago", missing=_NOT_EXPOSED),
    _f("compensation_amount", "breach", "number", "KRW",
       "Compensation (bill credit) offered for the breach.",
       "breach_exposure.compensation_amount (0 when not exposed)",
       "Compensation of only {value}", "Received {value} compensation", zero="No compensation received"),
    _f("compensation_to_monthly_fee", "breach", "number", "x monthly fee",
       "Compensation as a multiple of the monthly fee.",
       "compensation_amount / monthly_fee; missing when the monthly fee is 0",
       "Compensation worth only {value}", "Compensation worth {value}",
       missing="Compensation not comparable (no monthly fee)", zero="No compensation received"),
    _f("waiver_eligible", "breach", "flag", "0/1",
       "1 when the subscriber may leave without the early termination fee during a waiver window.",
       "breach_exposure.waiver_eligible (notified rows)",
       "Eligible to leave without a termination fee", "Not eligible for the fee waiver"),
    _f("waiver_window_open", "breach", "flag", "0/1",
       "1 when the fee-waiver window is open on the snapshot day.",
       "waiver_eligible and waiver_start <= snapshot <= waiver_end",
       "Fee waiver window is open now", "Fee waiver window is not open"),
    _f("days_until_waiver_start", "breach", "number", "days",
       "Days until the fee-waiver window opens (0 once it is open).",
       "max(waiver_start - snapshot, 0) in days for eligible subscribers whose window has not ended; "
       "missing otherwise",
       "Fee waiver opens in {value}", missing="No upcoming fee waiver", zero="Fee waiver window is open now"),
    _f("days_left_in_waiver_window", "breach", "number", "days",
       "Days during which the subscriber can still leave without the fee (0 when none).",
       "waiver_end - max(waiver_start, snapshot) + 1 day for eligible subscribers (0 when the window "
       "has ended or they are not eligible; missing when the window's end is unknown)",
       "{value} left to leave without a fee", missing="Fee waiver window dates unknown",
       zero="No fee-free window to leave"),
    _f("waiver_relieves_etf", "breach", "flag", "0/1",
       "1 when the waiver would lift a termination fee that binds today (eligible, fee > 0, window not over).",
       "waiver_eligible and early_termination_fee > 0 and not (waiver_end < snapshot)",
       "Fee waiver removes their termination fee", "Waiver does not change their cost to leave"),
    _f("etf_waivable_amount", "breach", "number", "KRW",
       "Termination fee the waiver would lift (0 when it would lift none).",
       "early_termination_fee when waiver_relieves_etf, else 0",
       "Could leave and save {value} in fees", zero="No fee to save by leaving"),
    # Retention offers (campaigns rows of the offer group dated before the snapshot; control rows never count)
    _f("retention_offers_365d", "campaigns", "number", "count",
       f"Number of retention offers made to the subscriber in the {OFFER_WINDOW_DAYS} days before the snapshot.",
       f"count of campaigns rows with group offer and snapshot - {OFFER_WINDOW_DAYS} days <= contact_date < snapshot",
       "{value} in the last year", zero="No retention offer in the last year",
       noun=("retention offer", "retention offers")),
    _f("retention_offers_accepted_365d", "campaigns", "number", "count",
       f"Number of retention offers the subscriber took in the {OFFER_WINDOW_DAYS} days before the snapshot.",
       f"count of campaigns rows with group offer, accepted true and snapshot - {OFFER_WINDOW_DAYS} days <= "
       "contact_date < snapshot (blank accepted counts as not taken)",
       "Took {value} in the last year", zero="Took no retention offer in the last year",
       noun=("retention offer", "retention offers")),
    _f("days_since_retention_offer", "campaigns", "number", "days",
       "Days since the subscriber was last made a retention offer.",
       "(snapshot - latest contact_date of an offer-group campaigns row before the snapshot) in days; "
       "missing when never",
       "Made a retention offer {value} ago", "Last made a retention offer {value} ago",
       missing="No retention offer on record"),
]

#: Every output column of ``build_features`` except the id, in output order.
FEATURE_CATALOGUE: dict[str, Feature] = {feature.name: feature for feature in _FEATURES}
FEATURE_COLUMNS: tuple[str, ...] = tuple(FEATURE_CATALOGUE)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(f.name for f in _FEATURES if f.kind == "category")
NUMERIC_FEATURES: tuple[str, ...] = tuple(f.name for f in _FEATURES if f.kind != "category")


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The feature columns of ``frame``: every column but the id and the label, in order."""
    return [column for column in frame.columns if column not in (ID_COLUMN, LABEL_COLUMN)]


def describe_features() -> pd.DataFrame:
    """The catalogue as a table: name, family, kind, unit, meaning and how it is computed."""
    rows = [
        {
            "name": f.name,
            "family": f.family,
            "kind": f.kind,
            "unit": f.unit,
            "meaning": f.meaning,
            "computed": f.computed,
            "raises_risk": f.raises,
            "lowers_risk": f.lowers,
        }
        for f in _FEATURES
    ]
    return pd.DataFrame(rows)


def _format_value(feature: Feature, value: float, unit: str | None = None) -> str:
    """``value`` in words with its unit, e.g. ``"KRW 40,000"``, ``"2 months"``, ``"3 complaints"``."""
    unit = unit or feature.unit
    magnitude = abs(value)
    if unit == "KRW":
        return f"KRW {value:,.0f}"
    if unit == "x monthly fee":
        return f"{value:.1f}x the monthly fee"
    if unit in ("months", "days"):
        if magnitude < 0.5:
            return f"less than a {unit[:-1]}"
        if unit == "months" and magnitude >= 24:
            return f"{magnitude / 12:.0f} years"
        whole = round(magnitude)
        return f"{whole:.0f} {unit[:-1] if whole == 1 else unit}"
    if unit == "count":
        whole = round(magnitude)
        singular, plural = feature.noun or ("", "")
        return f"{whole:.0f} {singular if whole == 1 else plural}".rstrip()
    if unit == "ratio":
        return f"{value:.2f}x"
    if unit in ("GB", "GB per month"):
        return f"{magnitude:.1f} GB"
    if unit in ("minutes", "minutes per month"):
        return f"{magnitude:.0f} minutes"
    if unit == "score 0-9":
        return f"{value:.0f} of 9"
    return f"{value:g}"


def _trend(feature: Feature, value: float) -> str:
    """The change against the feature's pivot in words: ``"fell 40%"``, ``"rose by 1.5 GB"``."""
    change = value - feature.pivot
    if feature.unit == "ratio":
        percent = round(abs(change) * 100)
        if percent == 0:
            return "held steady"
        return f"{'rose' if change > 0 else 'fell'} {percent}%"
    text = _format_value(feature, change)
    if text.startswith("0 ") or text.startswith("0.0 "):
        return "held steady"
    return f"{'rose' if change > 0 else 'fell'} by {text}"


def reason_text(feature: str, value, direction) -> str:
    """A plain-language reason for a retention agent, e.g. ``"Data use fell 40% in the last 3 months"``.

    Parameters
    ----------
    feature : str
        A column of ``build_features``.  Other columns (e.g. from a single-table churn file)
        get a generic phrase naming the column and value.
    value
        The subscriber's value of that feature (missing values get the feature's
        ``missing`` phrase).
    direction : str or float
        ``"raises"`` or ``"lowers"`` (the feature's effect on this subscriber's risk), or a
        signed contribution whose sign says the same.  Yes/no features follow the value,
        so that the phrase is always true of the subscriber.
    """
    if isinstance(direction, str):
        if direction not in ("raises", "lowers"):
            raise ValueError(f"direction must be 'raises', 'lowers' or a signed number, got {direction!r}")
        raises = direction == "raises"
    else:
        raises = float(direction) >= 0
    spec = FEATURE_CATALOGUE.get(feature)
    missing = value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))
    if spec is None:
        label = str(feature).replace("_", " ")
        return f"{label}: missing" if missing else f"{label}: {value}"
    if missing:
        return spec.missing or f"{spec.meaning.rstrip('.')} unknown"
    if spec.kind == "category":
        return spec.raises.format(value=spec.labels.get(str(value), str(value)))
    number = float(value)
    if spec.kind == "flag":
        return spec.raises if number == spec.risky_value else spec.lowers
    if number == 0 and spec.zero:
        return spec.zero
    template = spec.raises if raises else spec.lowers
    return template.format(value=_format_value(spec, number), trend=_trend(spec, number))


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _timestamp(value, what: str) -> pd.Timestamp | None:
    """A calendar day (midnight, no time zone) or None."""
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what} {value!r} is not a date; expected YYYY-MM-DD") from err
    if stamp is pd.NaT:
        return None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert(None)
    return stamp.normalize()


def resolve_snapshot(records, snapshot_date=None) -> pd.Timestamp:
    """The snapshot day: ``snapshot_date`` when given, else the records' own snapshot date."""
    snapshot = _timestamp(snapshot_date, "snapshot_date")
    if snapshot is None:
        snapshot = _timestamp(getattr(records, "snapshot_date", None), f"{records.source}: snapshot_date")
    if snapshot is None:
        raise DataError(
            f"{records.source}: no snapshot date; pass snapshot_date or load records whose manifest has one"
        )
    return snapshot


def _earliest_notification(records, snapshot: pd.Timestamp) -> pd.Timestamp | None:
    exposure = records.breach_exposure
    if exposure is None or len(exposure) == 0 or "notification_date" not in exposure.columns:
        return None
    notified = _dates(exposure, "notification_date", "breach_exposure", records.source)
    notified = notified[notified < np.datetime64(snapshot, "ns")]
    if notified.size == 0:
        return None
    return pd.Timestamp(notified.min())


def resolve_disclosure(records, snapshot: pd.Timestamp, disclosure_date=None) -> pd.Timestamp | None:
    """The breach disclosure day as known at the snapshot, or None.

    ``disclosure_date`` when given, else the records' own disclosure date, else the earliest
    notification date before the snapshot.  A disclosure on or after the snapshot had not
    happened yet, so it is None.
    """
    disclosure = _timestamp(disclosure_date, "disclosure_date")
    if disclosure is None:
        disclosure = _timestamp(getattr(records, "disclosure_date", None), f"{records.source}: disclosure_date")
    if disclosure is None:
        disclosure = _earliest_notification(records, snapshot)
    if disclosure is not None and disclosure >= snapshot:
        return None
    return disclosure


def _require(frame: pd.DataFrame, columns: Iterable[str], table: str, source: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: table {table} lacks column(s) {', '.join(missing)}; "
            f"expected {', '.join(columns)} (see pipeline/schema.py)"
        )


def _dates(frame: pd.DataFrame, column: str, table: str, source: str) -> np.ndarray:
    """A date or timestamp column as ``datetime64[ns]`` (NaT for blanks)."""
    values = frame[column]
    if not pd.api.types.is_datetime64_any_dtype(values.dtype):
        try:
            values = pd.to_datetime(values)
        except (TypeError, ValueError) as err:
            raise DataError(f"{source}: table {table}, column {column}: not dates ({err})") from err
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert(None)
    return values.to_numpy(dtype=_NS)


def _floats(frame: pd.DataFrame, column: str, table: str, source: str) -> np.ndarray:
    try:
        return frame[column].to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError) as err:
        raise DataError(f"{source}: table {table}, column {column}: expected numbers ({err})") from err


def _texts(values: pd.Series) -> pd.Series:
    """Any id or category column as the ``str`` dtype (blanks stay missing)."""
    return values.astype("str")


def _positions(subscriber_ids, ids: pd.Series, rows: np.ndarray | None = None) -> np.ndarray:
    """Position in ``subscriber_ids`` (a pyarrow array) of each id of ``ids`` (or of ``ids[rows]``).

    -1 for ids that are not there.  Hashing happens in Arrow, on the selected rows only.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(ids.dtype, pd.CategoricalDtype):
        # Map the few categories, not the many rows.
        category_positions = _positions(subscriber_ids, pd.Series(ids.cat.categories))
        codes = ids.cat.codes.to_numpy()
        codes = codes if rows is None else codes[rows]
        return np.where(codes >= 0, category_positions[codes], -1)
    values = pa.array(_texts(ids))
    if rows is not None:
        values = values.take(pa.array(rows))
    if values.type != subscriber_ids.type:
        values = values.cast(subscriber_ids.type)
    found = pc.index_in(values, value_set=subscriber_ids)
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _counts(codes: np.ndarray, mask: np.ndarray | None, n: int) -> np.ndarray:
    selected = codes if mask is None else codes[mask]
    return np.bincount(selected, minlength=n).astype("float64")


def _sums(codes: np.ndarray, values: np.ndarray, mask: np.ndarray | None, n: int) -> np.ndarray:
    if mask is not None:
        codes, values = codes[mask], values[mask]
    return np.bincount(codes, weights=values, minlength=n)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, missing where the denominator is 0 or missing."""
    out = np.full(numerator.shape, np.nan)
    valid = denominator > 0
    np.divide(numerator, denominator, out=out, where=valid)
    return out


def _days(later: np.ndarray, earlier) -> np.ndarray:
    return (later - earlier) / _DAY


# --------------------------------------------------------------------------------------
# Feature families
# --------------------------------------------------------------------------------------

_SUBSCRIBER_COLUMNS = (
    ID_COLUMN,
    "activation_date",
    "plan",
    "monthly_fee",
    "contract_type",
    "contract_end",
    "device_instalment_balance",
    "early_termination_fee",
    "family_bundle",
    "fixed_line_bundle",
    "age_band",
    "region",
    "channel",
)


def _active_subscribers(records, snapshot: pd.Timestamp) -> pd.DataFrame:
    """Subscribers active at the snapshot, personal fields never read, with a fresh RangeIndex."""
    subscribers = records.subscribers
    _require(subscribers, _SUBSCRIBER_COLUMNS, "subscribers", records.source)
    snap = np.datetime64(snapshot, "ns")
    activation = _dates(subscribers, "activation_date", "subscribers", records.source)
    active = activation < snap
    outcomes = records.outcomes
    if outcomes is not None and len(outcomes):
        _require(outcomes, (ID_COLUMN, "defection_date"), "outcomes", records.source)
        defection = _dates(outcomes, "defection_date", "outcomes", records.source)
        left_before = outcomes.loc[defection < snap, ID_COLUMN]
        if len(left_before):
            active &= ~_texts(subscribers[ID_COLUMN]).isin(_texts(left_before)).to_numpy()
    frame = subscribers.loc[active, list(_SUBSCRIBER_COLUMNS)].reset_index(drop=True)
    frame[ID_COLUMN] = _texts(frame[ID_COLUMN])
    duplicated = frame[ID_COLUMN].duplicated()
    if duplicated.any():
        raise DataError(
            f"{records.source}: table subscribers, column {ID_COLUMN}: ids must be unique; "
            f"{first_rows(frame.loc[duplicated, ID_COLUMN])} repeat"
        )
    return frame


def _subscriber_features(subs: pd.DataFrame, snapshot: pd.Timestamp, source: str) -> dict:
    snap = np.datetime64(snapshot, "ns")
    activation = _dates(subs, "activation_date", "subscribers", source)
    contract_end = _dates(subs, "contract_end", "subscribers", source)
    contract_type = _texts(subs["contract_type"])
    fee = _floats(subs, "monthly_fee", "subscribers", source)
    etf = _floats(subs, "early_termination_fee", "subscribers", source)
    instalment = _floats(subs, "device_instalment_balance", "subscribers", source)

    months_left = np.maximum(_days(contract_end, snap), 0.0) / DAYS_PER_MONTH
    no_contract = (contract_type == "none").to_numpy()
    months_left = np.where(np.isnat(contract_end) & no_contract, 0.0, months_left)
    return {
        "tenure_months": _days(snap, activation) / DAYS_PER_MONTH,
        "contract_type": contract_type,
        "months_left_on_contract": months_left,
        "early_termination_fee": etf,
        "etf_to_monthly_fee": _ratio(etf, fee),
        "device_instalment_balance": instalment,
        "instalment_to_monthly_fee": _ratio(instalment, fee),
        "family_bundle": _floats(subs, "family_bundle", "subscribers", source),
        "fixed_line_bundle": _floats(subs, "fixed_line_bundle", "subscribers", source),
        "plan": _texts(subs["plan"]),
        "monthly_fee": fee,
        "age_band": _texts(subs["age_band"]),
        "region": _texts(subs["region"]),
        "channel": _texts(subs["channel"]),
    }


_USAGE_COLUMNS = (ID_COLUMN, "month", "voice_minutes", "data_gb", "bill_amount", "payment_delay_days")


def _usage_features(usage: pd.DataFrame | None, ids, n: int, snapshot: pd.Timestamp, source: str) -> dict:
    """Usage level, trend, bills and payment delays over complete months before the snapshot."""
    if usage is None:
        usage = pd.DataFrame({column: [] for column in _USAGE_COLUMNS})
    _require(usage, _USAGE_COLUMNS, "usage_monthly", source)
    months = _dates(usage, "month", "usage_monthly", source)
    # Months before the snapshot's month: -1 is the last complete month, -6 six months back.
    # A month counts once it has fully ended before the snapshot day, i.e. its calendar
    # month is earlier than the snapshot's.
    offset = months.astype("datetime64[M]").astype(np.int64) - np.datetime64(snapshot, "M").astype(np.int64)
    complete = np.flatnonzero(~np.isnat(months) & (offset < 0))
    del months
    codes = _positions(ids, usage[ID_COLUMN], complete)
    known = codes >= 0
    features = {"usage_history_months": _counts(codes, known, n)}

    # Everything else looks at the last 6 complete months only: pick those rows once.
    in_last6 = known & (offset[complete] >= -6)
    rows = complete[in_last6]
    codes, offset = codes[in_last6], offset[rows].astype("float64")

    def column(name: str) -> np.ndarray:
        return _floats(usage, name, "usage_monthly", source)[rows]

    data, voice = column("data_gb"), column("voice_minutes")
    last3 = offset >= -3
    prev3 = ~last3
    n6 = _counts(codes, None, n)
    n3 = _counts(codes, last3, n)
    n_prev3 = _counts(codes, prev3, n)

    def mean(values, mask, count):
        return _ratio(_sums(codes, values, mask, n), count)

    def slope(values):
        sx = np.bincount(codes, weights=offset, minlength=n)
        sy = np.bincount(codes, weights=values, minlength=n)
        sxy = np.bincount(codes, weights=offset * values, minlength=n)
        sxx = np.bincount(codes, weights=offset * offset, minlength=n)
        return _ratio(n6 * sxy - sx * sy, n6 * sxx - sx * sx)

    data_3m, data_6m = mean(data, last3, n3), mean(data, None, n6)
    voice_3m, voice_6m = mean(voice, last3, n3), mean(voice, None, n6)
    features.update(
        data_gb_mean_3m=data_3m,
        data_gb_mean_6m=data_6m,
        voice_minutes_mean_3m=voice_3m,
        voice_minutes_mean_6m=voice_6m,
        data_gb_slope_6m=slope(data),
        voice_minutes_slope_6m=slope(voice),
        data_gb_last3_to_prev3=_ratio(data_3m, mean(data, prev3, n_prev3)),
        voice_minutes_last3_to_prev3=_ratio(voice_3m, mean(voice, prev3, n_prev3)),
    )
    del data, voice

    bill, delay = column("bill_amount"), column("payment_delay_days")
    latest = np.full(n, -np.inf)
    np.maximum.at(latest, codes, offset)
    is_latest = offset == latest[codes]
    bill_last = np.full(n, np.nan)
    bill_last[codes[is_latest]] = bill[is_latest]
    bill_6m = mean(bill, None, n6)
    delay_max = np.full(n, -np.inf)
    np.maximum.at(delay_max, codes, delay)
    features.update(
        bill_amount_mean_6m=bill_6m,
        bill_amount_last=bill_last,
        bill_last_to_mean_6m=_ratio(bill_last, bill_6m),
        payment_delay_mean_6m=mean(delay, None, n6),
        payment_delay_max_6m=np.where(n6 > 0, delay_max, np.nan),
        months_paid_late_6m=_counts(codes, delay > 0, n),
    )
    return features


_CONTACT_COLUMNS = (ID_COLUMN, "contact_time", "reason")


def _contacts_features(
    contacts: pd.DataFrame | None,
    ids,
    n: int,
    snapshot: pd.Timestamp,
    disclosure: pd.Timestamp | None,
    source: str,
) -> dict:
    """Counts by reason group and window, and days since the last contact."""
    if contacts is None:
        contacts = pd.DataFrame({ID_COLUMN: [], "contact_time": pd.to_datetime([]), "reason": []})
    _require(contacts, _CONTACT_COLUMNS, "contacts", source)
    snap = np.datetime64(snapshot, "ns")
    times = _dates(contacts, "contact_time", "contacts", source)
    before = np.flatnonzero(times < snap)  # NaT compares False
    codes = _positions(ids, contacts[ID_COLUMN], before)
    known = codes >= 0
    rows = before[known]
    codes, times = codes[known], times[rows]
    reason = contacts["reason"]
    groups = {
        "contacts": None,
        "breach_contacts": reason.isin(BREACH_REASONS).to_numpy()[rows],
        "complaint_contacts": reason.isin(COMPLAINT_REASONS).to_numpy()[rows],
        "porting_inquiries": reason.isin(PORTING_REASONS).to_numpy()[rows],
    }
    groups["other_contacts"] = ~groups["breach_contacts"]
    window = np.timedelta64(CONTACT_WINDOW_DAYS, "D")
    windows = {"90d": times >= snap - window}
    if disclosure is None:
        nothing = np.zeros(times.shape, dtype=bool)
        windows.update(**{"90d_before_disclosure": nothing, "since_disclosure": nothing})
    else:
        disclosed = np.datetime64(disclosure, "ns")
        windows["90d_before_disclosure"] = (times >= disclosed - window) & (times < disclosed)
        windows["since_disclosure"] = times >= disclosed
    features = {}
    for window_name, in_window in windows.items():
        for group_name, in_group in groups.items():
            mask = in_window if in_group is None else in_window & in_group
            features[f"{group_name}_{window_name}"] = _counts(codes, mask, n)
    latest = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(latest, codes, times.astype(np.int64))
    has_contact = latest != np.iinfo(np.int64).min
    last_days = (snap.astype(np.int64) - latest.astype("float64")) / 86_400e9
    features["days_since_last_contact"] = np.where(has_contact, last_days, np.nan)
    return features


_EXPOSURE_COLUMNS = (
    ID_COLUMN,
    *SEVERITY_WEIGHTS,
    "notification_date",
    "fraud_loss_amount",
    "compensation_amount",
    "waiver_eligible",
    "waiver_start",
    "waiver_end",
)


def _exposure_features(
    exposure: pd.DataFrame | None,
    ids,
    n: int,
    snapshot: pd.Timestamp,
    disclosure: pd.Timestamp | None,
    fee: np.ndarray,
    etf: np.ndarray,
    source: str,
) -> dict:
    """Breach exposure, harm, notification, compensation and the fee-waiver window."""
    if exposure is None:
        exposure = pd.DataFrame({column: [] for column in _EXPOSURE_COLUMNS})
    _require(exposure, _EXPOSURE_COLUMNS, "breach_exposure", source)
    snap = np.datetime64(snapshot, "ns")
    notified = _dates(exposure, "notification_date", "breach_exposure", source)
    # An exposure counts once the subscriber was told about it.
    before = np.flatnonzero(notified < snap)
    codes = _positions(ids, exposure[ID_COLUMN], before)
    known = codes >= 0
    rows = before[known]
    codes = codes[known]
    repeated = np.bincount(codes, minlength=n) > 1
    if repeated.any():
        raise DataError(
            f"{source}: table breach_exposure, column {ID_COLUMN}: one row per subscriber expected; "
            f"subscriber(s) {', '.join(str(i) for i in ids.take(np.flatnonzero(repeated)[:5]).to_pylist())} repeat"
        )

    def scatter(values: np.ndarray, default) -> np.ndarray:
        out = np.full(n, default, dtype=values.dtype if values.dtype.kind == "M" else "float64")
        out[codes] = values[rows]
        return out

    def floats(column: str) -> np.ndarray:
        return scatter(_floats(exposure, column, "breach_exposure", source), 0.0)

    def dates(column: str) -> np.ndarray:
        return scatter(_dates(exposure, column, "breach_exposure", source), np.datetime64("NaT", "ns"))

    features: dict[str, np.ndarray] = {"exposed": _counts(codes, None, n)}
    severity = np.zeros(n)
    for column, weight in SEVERITY_WEIGHTS.items():
        flag = floats(column)
        features[column.removeprefix("exposed_") + "_exposed"] = flag
        severity += weight * flag
    features["exposure_severity"] = severity
    fraud = floats("fraud_loss_amount")
    features["fraud_loss_amount"] = fraud
    features["directly_harmed"] = (fraud > 0).astype("float64")
    notification = dates("notification_date")
    if disclosure is None:
        features["notification_lag_days"] = np.full(n, np.nan)
    else:
        features["notification_lag_days"] = _days(notification, np.datetime64(disclosure, "ns"))
    features["days_since_notification"] = _days(snap, notification)
    compensation = floats("compensation_amount")
    features["compensation_amount"] = compensation
    features["compensation_to_monthly_fee"] = _ratio(compensation, fee)

    eligible = floats("waiver_eligible") > 0
    start, end = dates("waiver_start"), dates("waiver_end")
    over = end < snap  # NaT compares False: an unknown end is not over
    pending = eligible & ~over
    opened = eligible & (start <= snap) & (snap <= end)
    first_free_day = np.where(np.isnat(start) | (start < snap), snap, start)
    days_left = np.maximum(_days(end, first_free_day) + 1.0, 0.0)
    relieves = pending & (etf > 0)
    features.update(
        waiver_eligible=eligible.astype("float64"),
        waiver_window_open=opened.astype("float64"),
        days_until_waiver_start=np.where(pending, np.maximum(_days(start, snap), 0.0), np.nan),
        days_left_in_waiver_window=np.where(pending, days_left, 0.0),
        waiver_relieves_etf=relieves.astype("float64"),
        etf_waivable_amount=np.where(relieves, etf, 0.0),
    )
    return features


_CAMPAIGN_COLUMNS = (ID_COLUMN, "contact_date", "group", "accepted")


def _campaign_features(campaigns: pd.DataFrame | None, ids, n: int, snapshot: pd.Timestamp, source: str) -> dict:
    """Retention offers made before the snapshot: how many in the last year, how many taken, how long ago.

    Only rows of the ``offer`` group are contacts; ``control`` rows were held out and never count.
    """
    if campaigns is None:
        campaigns = pd.DataFrame({column: [] for column in _CAMPAIGN_COLUMNS})
    _require(campaigns, _CAMPAIGN_COLUMNS, "campaigns", source)
    snap = np.datetime64(snapshot, "ns")
    contacted = _dates(campaigns, "contact_date", "campaigns", source)
    offered = (_texts(campaigns["group"]) == "offer").to_numpy(dtype=bool)
    before = np.flatnonzero(offered & (contacted < snap))  # NaT compares False
    codes = _positions(ids, campaigns[ID_COLUMN], before)
    known = codes >= 0
    rows = before[known]
    codes, contacted = codes[known], contacted[rows]
    accepted = _floats(campaigns, "accepted", "campaigns", source)[rows] == 1  # blank: not known to be taken
    in_window = contacted >= snap - np.timedelta64(OFFER_WINDOW_DAYS, "D")
    latest = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(latest, codes, contacted.astype(np.int64))
    has_offer = latest != np.iinfo(np.int64).min
    return {
        "retention_offers_365d": _counts(codes, in_window, n),
        "retention_offers_accepted_365d": _counts(codes, in_window & accepted, n),
        "days_since_retention_offer": np.where(
            has_offer, (snap.astype(np.int64) - latest.astype("float64")) / 86_400e9, np.nan
        ),
    }


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def build_features(records, snapshot_date=None, *, disclosure_date=None) -> pd.DataFrame:
    """Point-in-time features: one row per subscriber active at the snapshot.

    Parameters
    ----------
    records : pipeline.records.Records
        The record tables (or one chunk of them, split by subscriber).  Optional tables may
        be ``None``; an absent table gives exactly the features of an empty one.
    snapshot_date : date-like, optional
        The day features are cut at (midnight).  Defaults to ``records.snapshot_date``.
    disclosure_date : date-like, optional
        The day the breach was disclosed.  Defaults to ``records.disclosure_date``, else the
        earliest notification date before the snapshot, else none (then the
        ``*_since_disclosure`` and ``*_90d_before_disclosure`` counts are 0 and
        ``notification_lag_days`` is missing).  A date on or after the snapshot counts as
        no disclosure yet.

    Returns
    -------
    pandas.DataFrame
        ``subscriber_id`` (str) first, then ``FEATURE_COLUMNS``: float64 numbers and 0/1
        flags, ``str`` categories (never ``category``).  Rows are the subscribers activated
        before the snapshot, in the order of the subscribers table, minus those whose
        outcome shows they left before the snapshot (only when outcomes are present).
        Only records dated strictly before the snapshot are used (campaign rows of the
        ``control`` group never); personal fields are never read.
    """
    snapshot = resolve_snapshot(records, snapshot_date)
    disclosure = resolve_disclosure(records, snapshot, disclosure_date)
    import pyarrow as pa

    subscribers = _active_subscribers(records, snapshot)
    n = len(subscribers)
    ids = pa.array(subscribers[ID_COLUMN])
    source = records.source
    columns: dict = {ID_COLUMN: subscribers[ID_COLUMN]}
    columns.update(_subscriber_features(subscribers, snapshot, source))
    columns.update(_usage_features(records.usage_monthly, ids, n, snapshot, source))
    columns.update(_contacts_features(records.contacts, ids, n, snapshot, disclosure, source))
    columns.update(
        _exposure_features(
            records.breach_exposure,
            ids,
            n,
            snapshot,
            disclosure,
            columns["monthly_fee"],
            columns["early_termination_fee"],
            source,
        )
    )
    columns.update(_campaign_features(records.campaigns, ids, n, snapshot, source))
    frame = pd.DataFrame(columns, index=pd.RangeIndex(n))
    frame = frame[[ID_COLUMN, *FEATURE_COLUMNS]]
    logger.debug("built %d features for %d subscribers at %s", len(FEATURE_COLUMNS), n, snapshot.date())
    return frame


def waiver_forgives(records, frame: pd.DataFrame, snapshot_date=None) -> np.ndarray:
    """The termination fee a fee waiver would forgive each subscriber of ``frame``: money, not a feature.

    Like the feature ``etf_waivable_amount`` (``early_termination_fee`` where the subscriber is
    eligible and the waiver window has not ended), but read from every ``breach_exposure``
    row, notified before the snapshot or not: a waiver is the operator's own policy, known
    for everyone it covers, so a subscriber whose notification goes out after the snapshot
    still leaves for free during the window.  The features keep to what the subscriber had
    been told (``build_features``); this serves the value of a save
    (``pipeline.targeting.save_value``).  Rows of ``frame`` are ``build_features``' rows.
    """
    exposure = records.breach_exposure
    n = len(frame)
    etf = frame["early_termination_fee"].to_numpy(dtype="float64", na_value=np.nan) if n else np.zeros(0)
    if exposure is None or not len(exposure) or not n:
        return np.zeros(n)
    source = records.source
    snap = np.datetime64(resolve_snapshot(records, snapshot_date), "ns")
    import pyarrow as pa

    codes = _positions(pa.array(frame[ID_COLUMN].astype(str)), exposure[ID_COLUMN])
    found = codes >= 0
    eligible = np.zeros(n, dtype=bool)
    end = np.full(n, np.datetime64("NaT", "ns"))
    eligible[codes[found]] = _floats(exposure, "waiver_eligible", "breach_exposure", source)[found] > 0
    end[codes[found]] = _dates(exposure, "waiver_end", "breach_exposure", source)[found]
    pending = eligible & ~(end < snap)
    return np.where(pending & (etf > 0), np.nan_to_num(etf), 0.0)


def make_labels(records, snapshot_date=None, *, horizon_days: int = 90) -> pd.Series:
    """The label ``churned``: 1 when the subscriber left within ``horizon_days`` of the snapshot.

    Rows and index match ``build_features(records, snapshot_date)`` row for row (the same
    subscribers in the same order, RangeIndex).  A subscriber counts as churned when
    ``snapshot <= defection_date < snapshot + horizon_days``; one without an outcome row or
    with a blank defection date stayed.

    Raises
    ------
    DataError
        When the records have no outcomes table.
    """
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, (int, np.integer)) or horizon_days <= 0:
        raise ConfigError(f"horizon_days must be a positive whole number of days, got {horizon_days!r}")
    if records.outcomes is None:
        raise DataError(f"{records.source}: no outcomes table; labels need defection dates (training data only)")
    snapshot = resolve_snapshot(records, snapshot_date)
    _require(records.outcomes, (ID_COLUMN, "defection_date"), "outcomes", records.source)
    subscribers = _active_subscribers(records, snapshot)
    outcomes = records.outcomes
    defection = _dates(outcomes, "defection_date", "outcomes", records.source)
    snap = np.datetime64(snapshot, "ns")
    within = (defection >= snap) & (defection < snap + np.timedelta64(horizon_days, "D"))
    churned = subscribers[ID_COLUMN].isin(_texts(outcomes.loc[within, ID_COLUMN]))
    return pd.Series(churned.to_numpy().astype("int64"), index=pd.RangeIndex(len(subscribers)), name=LABEL_COLUMN)


def iter_features(chunks: Iterable, snapshot_date=None, *, disclosure_date=None) -> Iterator[pd.DataFrame]:
    """``build_features`` on each chunk of records (split by subscriber), yielded in turn.

    Features are per subscriber, so the concatenated chunks equal ``build_features`` on
    the whole base, provided every chunk is cut at the same snapshot and disclosure day.
    The snapshot defaults to the first chunk's; the disclosure day must be given or carried
    by the records: inferring it from one chunk's notifications would make features depend
    on how the base was split, so that raises ``DataError``.
    """
    given = _timestamp(snapshot_date, "snapshot_date")
    snapshot = None
    for number, chunk in enumerate(chunks, start=1):
        chunk_snapshot = resolve_snapshot(chunk, given)
        if snapshot is None:
            snapshot = chunk_snapshot
        elif chunk_snapshot != snapshot:
            raise DataError(f"{chunk.source}: chunk {number} has snapshot {chunk_snapshot.date()}, expected {snapshot.date()}")
        disclosure = disclosure_date if disclosure_date is not None else chunk.disclosure_date
        if disclosure is None and _earliest_notification(chunk, snapshot) is not None:
            raise DataError(
                f"{chunk.source}: chunk {number} has no disclosure date; pass disclosure_date (inferring it from "
                "one chunk's notification dates would make features depend on the chunking)"
            )
        yield build_features(chunk, snapshot, disclosure_date=disclosure)


def build_features_chunked(chunks: Iterable, snapshot_date=None, *, disclosure_date=None) -> pd.DataFrame:
    """``iter_features`` concatenated: the features of a base read chunk by chunk."""
    frames = list(iter_features(chunks, snapshot_date, disclosure_date=disclosure_date))
    if not frames:
        raise DataError("no chunks of records to build features from")
    return pd.concat(frames, ignore_index=True)
