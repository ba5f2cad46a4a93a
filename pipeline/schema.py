"""The subscriber record model: the tables an operator keeps, their columns and rules.

This module is the contract between the simulator (which writes these tables), the
loader and validator (``pipeline.records``) and feature extraction (``pipeline.features``).
``docs/records.md`` documents every column.

Every table is keyed on ``subscriber_id``.  Dates are calendar dates (``datetime64``
normalised to midnight); ``contact_time`` is a timestamp.  Money is in the operator's
currency (the simulator uses KRW).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One column of a record table.

    ``kind`` is one of ``id``, ``str``, ``category``, ``float``, ``int``, ``bool``,
    ``date`` and ``timestamp``.  ``allowed`` lists the values a category may take.
    ``nullable`` says whether blanks are allowed; ``required`` whether the column must be
    present at all.  ``personal`` marks personal data that must never reach features,
    logs or outputs.
    """

    name: str
    kind: str
    required: bool = True
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    minimum: float | None = None
    personal: bool = False


@dataclass(frozen=True)
class Table:
    """A record table: its columns, and whether a base must have it."""

    name: str
    columns: tuple[Column, ...]
    required: bool = True
    #: True when ``subscriber_id`` is unique in this table.
    unique_subscriber: bool = False
    #: Pairs (earlier, later) of date columns that must be in order when both are set.
    ordered_dates: tuple[tuple[str, str], ...] = ()

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)


CONTRACT_TYPES = ("none", "12m", "24m")
AGE_BANDS = ("18-29", "30-39", "40-49", "50-59", "60+")
CHANNELS = ("store", "online", "telesales", "dealer")
CONTACT_CHANNELS = ("call_center", "store", "app", "chat")
#: Contact reasons; the ``breach_*``, ``usim_replacement`` and ``porting_inquiry`` reasons
#: are the breach-related ones.
CONTACT_REASONS = (
    "billing",
    "technical",
    "plan_change",
    "device",
    "breach_inquiry",
    "breach_complaint",
    "usim_replacement",
    "porting_inquiry",
    "other",
)
BREACH_REASONS = ("breach_inquiry", "breach_complaint", "usim_replacement", "porting_inquiry")
#: Groups of a randomised retention campaign: ``offer`` was contacted with the offer,
#: ``control`` was held out at random and not contacted.
CAMPAIGN_GROUPS = ("offer", "control")

SUBSCRIBERS = Table(
    "subscribers",
    (
        Column("subscriber_id", "id"),
        Column("activation_date", "date"),
        Column("plan", "category"),
        Column("monthly_fee", "float", minimum=0),
        Column("contract_type", "category", allowed=CONTRACT_TYPES),
        Column("contract_start", "date", nullable=True),
        Column("contract_end", "date", nullable=True),
        Column("device_instalment_balance", "float", minimum=0),
        Column("early_termination_fee", "float", minimum=0),
        Column("family_bundle", "bool"),
        Column("fixed_line_bundle", "bool"),
        Column("age_band", "category", allowed=AGE_BANDS, nullable=True),
        Column("region", "category", nullable=True),
        Column("channel", "category", allowed=CHANNELS, nullable=True),
        Column("name", "str", required=False, nullable=True, personal=True),
        Column("phone_number", "str", required=False, nullable=True, personal=True),
        Column("email", "str", required=False, nullable=True, personal=True),
    ),
    unique_subscriber=True,
    ordered_dates=(("activation_date", "contract_start"), ("contract_start", "contract_end")),
)

USAGE_MONTHLY = Table(
    "usage_monthly",
    (
        Column("subscriber_id", "id"),
        #: First day of the month the row describes.
        Column("month", "date"),
        Column("voice_minutes", "float", minimum=0),
        Column("data_gb", "float", minimum=0),
        Column("sms_count", "int", minimum=0),
        Column("bill_amount", "float", minimum=0),
        Column("payment_delay_days", "int", minimum=0),
    ),
    required=False,
)

CONTACTS = Table(
    "contacts",
    (
        Column("subscriber_id", "id"),
        Column("contact_time", "timestamp"),
        Column("channel", "category", allowed=CONTACT_CHANNELS),
        Column("reason", "category", allowed=CONTACT_REASONS),
    ),
    required=False,
)

BREACH_EXPOSURE = Table(
    "breach_exposure",
    (
        Column("subscriber_id", "id"),
        Column("exposed_phone_number", "bool"),
        Column("exposed_usim_key", "bool"),
        Column("exposed_identity_number", "bool"),
        Column("exposed_payment_data", "bool"),
        Column("notification_date", "date"),
        Column("fraud_loss_amount", "float", minimum=0),
        Column("compensation_amount", "float", minimum=0),
        Column("waiver_eligible", "bool"),
        Column("waiver_start", "date", nullable=True),
        Column("waiver_end", "date", nullable=True),
    ),
    required=False,
    unique_subscriber=True,
    ordered_dates=(("waiver_start", "waiver_end"),),
)

OUTCOMES = Table(
    "outcomes",
    (
        Column("subscriber_id", "id"),
        #: The day the subscriber left; blank while they stay.
        Column("defection_date", "date", nullable=True),
    ),
    required=False,
    unique_subscriber=True,
)

CAMPAIGNS = Table(
    "campaigns",
    (
        Column("subscriber_id", "id"),
        #: The campaign (or pilot) the row belongs to; one campaign, one randomisation.
        Column("campaign_id", "str"),
        #: The day the subscriber was contacted (``offer``) or held out (``control``).
        Column("contact_date", "date"),
        #: ``offer`` or ``control``, assigned at random within the campaign.
        Column("group", "category", allowed=CAMPAIGN_GROUPS),
        #: What was offered, e.g. ``bill_credit``; blank for the control group.
        Column("offer_kind", "category", nullable=True),
        #: What the offer costs the operator when it is taken (0 for the control group).
        Column("offer_cost", "float", minimum=0),
        #: Whether the subscriber took the offer; blank for the control group or when unknown.
        Column("accepted", "bool", nullable=True),
    ),
    required=False,
)

TABLES: dict[str, Table] = {
    table.name: table for table in (SUBSCRIBERS, USAGE_MONTHLY, CONTACTS, BREACH_EXPOSURE, OUTCOMES, CAMPAIGNS)
}

#: The manifest file a record folder may carry: ``{"snapshot_date": "YYYY-MM-DD",
#: "disclosure_date": "YYYY-MM-DD", "scenario": ..., "seed": ..., "subscribers": N}``.
MANIFEST = "manifest.json"

PERSONAL_COLUMNS = tuple(c.name for t in TABLES.values() for c in t.columns if c.personal)
