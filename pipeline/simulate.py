"""The post-breach subscriber-base generator and its ground truth.

``generate`` writes a synthetic operator's record tables (``pipeline.schema``) for N
subscribers, as they stand on a snapshot date some time after a breach was disclosed,
together with what happens to each subscriber afterwards (``outcomes``) and the ground
truth a real operator never sees (``truth``: each subscriber's true probability of leaving
within the horizon, how a retention offer would change it, and the hazard components).
A randomised retention pilot on the snapshot day (``campaigns``: an offer group and a
control group) lets a response model be learned from the records alone.

The behaviour is a daily proportional-hazard model calibrated to
``docs/simulator.md`` (which names the source of every figure):

    hazard(i, day) = exp(intercept + subscriber effects(i) + random effect(i))
                     * contract multiplier(i, day)
                     * breach multiplier(i, day)
                     * waiver multiplier(i, day)
                     * offer multiplier(i, day)

The intercept is solved (on a fixed calibration sample) so that the base's average monthly
churn without a breach equals ``Scenario.baseline_monthly_churn``.  The offer multiplier is
1 except for the pilot's offer group over the horizon, where it is the very factor the
truth's ``offer_response_uplift`` is computed with.  Subscriber effects are partly
observable before the snapshot (tenure, contract, price, bundles, and a latent
dissatisfaction that shows up as a usage decline, service contacts and porting inquiries)
and partly not (a random effect), so that a good model is good but not perfect.

Randomness: subscribers are generated in fixed blocks of ``RNG_BLOCK`` subscribers, block
``b`` drawing from ``numpy.random.SeedSequence(seed, spawn_key=(b, stream))``.  A
subscriber's records therefore depend only on (seed, scenario, their number), not on the
base size or the chunk size: the concatenated tables are identical for any
``chunk_subscribers``, and part files are identical bytes for identical arguments.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import schema
from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

#: Bumped whenever the same arguments would produce different records.
GENERATOR_VERSION = "1.2"
#: Subscribers per random-number stream (the unit of determinism, see the module docstring).
RNG_BLOCK = 8192
#: The scenario ``generate`` uses when none is named (and so the one ``churn demo`` shows).
DEFAULT_SCENARIO = "usim-whole-base"
#: The ground-truth folder next to the record tables; the pipeline never reads it.
TRUTH = "truth"

_DAYS_PER_MONTH = 365.25 / 12
_MS_PER_DAY = 86_400_000
_NO_DAY = np.iinfo(np.int32).min  # a blank date in the internal day-offset arrays
#: The pilot's offer is "accepted" when the subscriber is still there this many days after
#: the contact (the bill credit goes on the next bill).
PILOT_ACCEPTANCE_DAYS = 30
_OFFER_KINDS = ("bill_credit", "data_bonus")
# Pilot group codes: schema.CAMPAIGN_GROUPS order, -1 outside the pilot.
_OFFER, _CONTROL, _NOT_IN_PILOT = 0, 1, -1

# Plans: name, list price (KRW a month), data allowance (GB a month; inf = unlimited).
# Prices follow the 2024-25 Korean lineups (LTE from ~KRW 25k, 5G unlimited ~KRW 89k);
# the mean fee (~KRW 45k after discounts) is above the published ARPU (KRW 29-34k), which
# averages in second devices and IoT lines that this simulator does not model.
_PLANS = (
    ("lte_basic", 25_000.0, 2.0),
    ("lte_standard", 33_000.0, 7.0),
    ("5g_slim", 49_000.0, 14.0),
    ("5g_standard", 69_000.0, 110.0),
    ("5g_unlimited", 89_000.0, math.inf),
)
_PLAN_NAMES = tuple(p[0] for p in _PLANS)
_PLAN_PRICE = np.array([p[1] for p in _PLANS])
_PLAN_ALLOWANCE = np.array([p[2] for p in _PLANS])
_CONTRACT_TERM_DAYS = np.array([0, 365, 730])  # none, 12m, 24m (schema.CONTRACT_TYPES order)
_REGIONS = (
    ("Seoul", 0.185), ("Gyeonggi", 0.265), ("Incheon", 0.058), ("Busan", 0.064), ("Daegu", 0.046),
    ("Gwangju", 0.028), ("Daejeon", 0.028), ("Ulsan", 0.021), ("Sejong", 0.008), ("Gangwon", 0.029),
    ("Chungbuk", 0.031), ("Chungnam", 0.041), ("Jeonbuk", 0.034), ("Jeonnam", 0.035), ("Gyeongbuk", 0.050),
    ("Gyeongnam", 0.063), ("Jeju", 0.014),
)
_REGION_NAMES = tuple(r[0] for r in _REGIONS)
_REGION_SHARES = np.array([r[1] for r in _REGIONS]) / sum(r[1] for r in _REGIONS)
# Reason codes follow schema.CONTACT_REASONS; channel shares per reason follow schema.CONTACT_CHANNELS
# (call_center, store, app, chat).
_REASON = {name: code for code, name in enumerate(schema.CONTACT_REASONS)}
_CHANNEL_BY_REASON = np.array([
    [0.55, 0.15, 0.20, 0.10],  # billing
    [0.50, 0.25, 0.10, 0.15],  # technical
    [0.30, 0.25, 0.35, 0.10],  # plan_change
    [0.25, 0.60, 0.05, 0.10],  # device
    [0.50, 0.10, 0.20, 0.20],  # breach_inquiry
    [0.70, 0.15, 0.05, 0.10],  # breach_complaint
    [0.05, 0.90, 0.05, 0.00],  # usim_replacement
    [0.55, 0.35, 0.05, 0.05],  # porting_inquiry
    [0.40, 0.20, 0.20, 0.20],  # other
])
_CHANNEL_CUMULATIVE = np.cumsum(_CHANNEL_BY_REASON, axis=1)


@dataclass(frozen=True)
class Scenario:
    """Every parameter of one simulated post-breach world.

    Each field's comment names the public figure it comes from ("facts": sources listed in
    ``docs/simulator.md``, *Sources*), or says it is a modelling assumption;
    ``docs/simulator.md`` tabulates them.  Multipliers act on
    the daily hazard; an "excess" is ``multiplier - 1``, which damping factors scale.
    Dates are ISO ``YYYY-MM-DD`` strings.
    """

    name: str
    description: str
    # ---- calendar ---------------------------------------------------------------------
    #: The day the records are cut: records dated before it are history, after it future.
    snapshot_date: str
    #: The day the breach became public (None: no breach).
    disclosure_date: str | None = None
    #: Default label horizon written to the manifest ("left within 90 days").
    horizon_days: int = 90
    #: Outcomes, usage and contacts are simulated this many days past the snapshot, so
    #: labels at horizons up to this length can be cut.
    simulated_days: int = 180

    # ---- baseline churn (no breach) -----------------------------------------------------
    #: Average monthly churn of the base without a breach. Facts: SKT 0.7-0.9%, KT
    #: 0.9-1.2%, LG U+ 1.0-1.16% a month.
    baseline_monthly_churn: float = 0.010
    #: Hazard multiple while a contract binds (its ETF deters leaving). Assumption.
    in_contract_multiplier: float = 0.5
    #: Hazard multiple with no contract or after it ended. Assumption.
    out_of_contract_multiplier: float = 1.4
    #: Hazard multiple in the first ``contract_expiry_days`` after a contract ends (the ETF
    #: reaches 0 at term end: facts, contracts). Assumption for the size.
    contract_expiry_multiplier: float = 3.0
    contract_expiry_days: int = 60
    #: Extra log-hazard of a brand-new account, fading with ``new_account_decay_months``
    #: (facts: "newer accounts leave most", RAND).
    new_account_effect: float = 1.2
    new_account_decay_months: float = 6.0
    #: Log-hazard per unit of log(fee / fee of the cheapest plan that covers the usage):
    #: paying for more than one uses. Assumption (price effect asked by issue 3).
    overpay_effect: float = 0.8
    #: Log-hazard of a family bundle and of a fixed-line bundle (bundles hold people back:
    #: facts, SKT waiver). Assumption for the size.
    family_bundle_effect: float = -0.45
    fixed_line_bundle_effect: float = -0.3
    #: Log-hazard of an outstanding device instalment (facts, SKT waiver). Assumption.
    instalment_effect: float = -0.15
    #: Log-hazard by age band (schema.AGE_BANDS order); young subscribers switch more. Assumption.
    age_effects: tuple[float, ...] = (0.45, 0.2, 0.0, -0.15, -0.35)
    #: Log-hazard by acquisition channel (schema.CHANNELS order). Assumption.
    channel_effects: tuple[float, ...] = (0.0, 0.35, 0.2, 0.05)
    #: Log-hazard per standard deviation of latent dissatisfaction, which shows before the
    #: snapshot as a usage decline, more service contacts and porting inquiries. Assumption,
    #: sized with ``random_effect_sd`` so that the best model reaches ROC AUC ~0.75-0.88
    #: (facts: real models reach 0.70-0.77; above 0.95 means the generator is too easy).
    dissatisfaction_effect: float = 1.0
    #: Log-hazard per standard deviation of latent financial stress (shows as payment
    #: delays and billing contacts). Assumption.
    financial_stress_effect: float = 0.4
    #: Standard deviation of the unobservable log-hazard random effect (see above).
    random_effect_sd: float = 0.5

    # ---- population ---------------------------------------------------------------------
    #: Share of accounts opened in the last 12 months. Assumption.
    new_account_share: float = 0.12
    #: Shares of contract types none / 12m / 24m (facts: 24-month subsidies and 12/24-month
    #: selective contracts). Assumption for the shares.
    contract_type_shares: tuple[float, float, float] = (0.30, 0.15, 0.55)
    #: Share of contracts that are "selective" 25%-discount contracts (the rest device
    #: subsidies). Their ETF rises over the first half of the term, then falls (facts).
    selective_contract_share: float = 0.6
    #: Range of the peak ETF as a multiple of the monthly fee (facts: up to ~2.7x).
    etf_peak_fee_multiple: tuple[float, float] = (1.5, 2.7)
    #: Share with a family bundle, share with a fixed-line bundle, and the extra chance of
    #: a fixed-line bundle with a family bundle (~26% overall). Assumption.
    family_bundle_share: float = 0.30
    fixed_line_bundle_share: float = 0.15
    fixed_line_given_family: float = 0.35
    #: Shares of age bands (schema.AGE_BANDS order; roughly the adult population of Korea)
    #: and of acquisition channels (schema.CHANNELS order). Assumption.
    age_band_shares: tuple[float, ...] = (0.17, 0.18, 0.22, 0.21, 0.22)
    channel_shares: tuple[float, ...] = (0.42, 0.20, 0.10, 0.28)
    #: Share of blanks in the nullable subscriber columns (age band, region, channel).
    missing_share: float = 0.015

    # ---- breach exposure ----------------------------------------------------------------
    #: Share of the base whose data was exposed.
    exposed_share: float = 0.0
    #: Chance that each kind of data (phone number, USIM key/IMSI, identity number, payment
    #: data) was exposed for an exposed subscriber.
    exposed_data_shares: tuple[float, float, float, float] = (1.0, 1.0, 0.0, 0.0)
    #: Share of exposed subscribers who were directly harmed (fraud losses).
    harmed_share_of_exposed: float = 0.0
    #: Mean fraud loss of a harmed subscriber, KRW (facts: KT, KRW 243M over 368 = 660k).
    fraud_loss_mean: float = 660_000.0
    #: Hazard multiple of an exposed subscriber for ``exposure_effect_days`` after their
    #: notification (facts, derived: x1.5-2 for about 3 months).
    exposure_multiplier: float = 1.75
    #: Hazard multiple of a directly harmed subscriber over the same period (facts,
    #: derived: x3-4; harmed leave ~1.4x as often as other affected, RAND).
    harmed_multiplier: float = 3.5
    exposure_effect_days: int = 90
    #: Spread (log scale) of the breach response between exposed subscribers, driven by a
    #: latent concern that also drives breach-related contacts; mean response unchanged.
    breach_concern_sd: float = 0.5
    #: Notification lags after disclosure: a first wave (this share; exponential lag with
    #: this mean in days), then a second wave uniform over the given day range.
    notification_first_wave_share: float = 1.0
    notification_first_wave_mean_days: float = 5.0
    notification_second_wave_days: tuple[int, int] = (30, 75)
    #: Share of exposed subscribers offered compensation, and its size as a share of one
    #: monthly bill (facts, SKT: 50% off one monthly bill for everyone).
    compensation_share_of_exposed: float = 0.0
    compensation_bill_share: float = 0.5
    #: Day from which the compensation damps the breach response (None: from notification).
    compensation_start: str | None = None
    #: Factor on the breach-response excess once compensated (facts: bill credits about
    #: halve it).
    compensation_damping: float = 0.5
    #: Share of exposed subscribers who replace their USIM card at a store. Assumption.
    usim_replacement_share: float = 0.0
    #: Breach inquiries per unexposed subscriber in the 30 days after disclosure. Assumption.
    public_inquiry_rate: float = 0.0

    # ---- early-termination-fee waiver ---------------------------------------------------
    #: First day of the ETF waiver window (None: no waiver) and its length in days.
    waiver_start: str | None = None
    waiver_days: int = 0
    #: Mean hazard multiple over the window for eligible subscribers whose ETF would have
    #: bound them (in contract on the first day), before damping (facts, derived: x5-7).
    waiver_multiplier: float = 1.0
    #: Share of a window's outflow that comes in its last ``waiver_deadline_days`` days
    #: (facts, KT: 31% in the last two of 14 days).
    waiver_deadline_days: int = 2
    waiver_deadline_share: float = 0.31
    #: Eligible only if the line was activated and its contract started before this day
    #: (facts, KT: joined before 1 Sep 2025; None: everyone is eligible).
    waiver_joined_before: str | None = None
    #: Factors on the breach and waiver excess for subscribers with an outstanding device
    #: instalment, and with a family or fixed-line bundle (facts, SKT: "device instalment
    #: balances and family bundles held people back"). Assumption for the sizes.
    instalment_damping: float = 0.7
    bundle_damping: float = 0.75

    # ---- what subscribers do before they leave ------------------------------------------
    #: Monthly log-usage decline per standard deviation of (positive) dissatisfaction over
    #: the last 6 months before the snapshot (and on after it). Assumption.
    usage_decline_per_month: float = 0.1
    #: Service contacts a month (technical, plan change, device, other), billing contacts a
    #: month, and porting inquiries a month, for an average subscriber. Assumption.
    general_contact_rate: float = 0.08
    billing_contact_rate: float = 0.025
    porting_inquiry_rate: float = 0.006
    #: How strongly dissatisfaction raises service contacts and porting inquiries (log
    #: rate per standard deviation), and financial stress payment delays. Assumption.
    contact_dissatisfaction_loading: float = 0.8
    porting_dissatisfaction_loading: float = 1.2
    delay_stress_loading: float = 1.5
    #: Share of leavers who ask about number porting 1-14 days before they go, and who
    #: wind their usage down in their last 30 days. Assumption.
    porting_intent_share: float = 0.35
    winding_down_share: float = 0.5

    # ---- response to a retention offer (ground truth only) --------------------------------
    #: Beta(alpha, beta) of the share of a subscriber's hazard an offer removes (facts,
    #: EMPC defaults: acceptance ~ Beta(6, 14), mean 0.3); modulated so that response is
    #: only weakly tied to risk (facts: Ascarza 2018).
    offer_acceptance_alpha: float = 6.0
    offer_acceptance_beta: float = 14.0
    #: Spread (log scale) of a subscriber's own responsiveness to offers, independent of
    #: their risk, so that the response is only weakly tied to risk. Assumption.
    persuadability_sd: float = 0.7
    #: Elasticity of the offer response to risk above the baseline: 1.2 means a subscriber
    #: twice as likely to leave as an average one removes 2**-1.2 = 0.44 times the share
    #: of their hazard. Assumption.
    lost_cause_elasticity: float = 1.2
    #: Share of subscribers pushed to leave by being contacted, and the range of the
    #: extra hazard it causes (facts: Ascarza 2018, "retention futility"). Assumption.
    backfire_share: float = 0.05
    backfire_boost: tuple[float, float] = (0.3, 1.0)

    # ---- the randomised retention pilot (records: the campaigns table) -------------------
    #: Share of the base drawn at random into a retention pilot run on the snapshot day
    #: (0: no pilot). Assumption: big enough to learn a response model from the records.
    pilot_share: float = 0.2
    #: Share of the pilot given the offer; the rest is the control group, held out and not
    #: contacted. Assumption (an even split gives the most precise uplift).
    pilot_offer_share: float = 0.5
    #: The offer: a bill credit of this many months of the subscriber's monthly fee. Facts:
    #: SK Telecom's compensation, 50% off one monthly bill.
    pilot_offer_months: float = 0.5

    # ---- a past promotion (records: the campaigns table, offers without a control group) ----
    #: Share of the base offered a promotion (a data bonus) ``promo_days_before`` days before
    #: the snapshot, at random and with no control group (an ordinary marketing offer, not an
    #: experiment); 0: none. Assumption.
    promo_share: float = 0.4
    promo_days_before: int = 180
    #: Its cost to the operator when taken, in months of the monthly fee. Assumption.
    promo_cost_months: float = 0.1
    #: Log-odds of taking the promotion for an average subscriber, and per standard
    #: deviation of persuadability: the "deal-prone" take offers of every kind, so a taken
    #: promotion is a trace, in the records, of how a subscriber will answer a retention
    #: offer (deal proneness: Blattberg, Buesing, Peacock and Sen 1978, Journal of Marketing
    #: Research 15(3); Lichtenstein, Netemeyer and Burton 1995, Journal of Consumer Research
    #: 22(3)). Assumption for the sizes: a trace, not a reading (about 38% take it; 62% of
    #: those one standard deviation above average, 16% of those one below).
    promo_acceptance_log_odds: float = -0.5
    deal_proneness_loading: float = 1.0


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            name="usim-whole-base",
            description=(
                "SK Telecom-like USIM breach (April 2025): the whole base's USIM keys and IMSIs "
                "exposed, 50% off one bill for everyone, and a 10-day ETF waiver late in the horizon"
            ),
            snapshot_date="2025-05-01",
            disclosure_date="2025-04-22",
            baseline_monthly_churn=0.008,  # SKT 0.7-0.9% a month
            exposed_share=1.0,  # 26.95M USIM records: the whole base
            exposed_data_shares=(1.0, 1.0, 0.0, 0.0),
            exposure_multiplier=2.0,  # monthly churn from under 1% to 1.6% in Q2 2025
            harmed_share_of_exposed=0.0,  # no confirmed fraud losses
            notification_first_wave_share=0.85,
            notification_first_wave_mean_days=4.0,
            notification_second_wave_days=(14, 60),
            compensation_share_of_exposed=1.0,  # 50% off one monthly bill for everyone
            compensation_bill_share=0.5,
            compensation_start="2025-07-04",  # announced with the waiver
            usim_replacement_share=0.45,
            waiver_start="2025-07-05",  # ETF waiver 5-14 Jul (10 days)
            waiver_days=10,
            waiver_multiplier=6.0,  # derived: x5-7
            waiver_joined_before=None,  # every subscriber
        ),
        Scenario(
            name="femtocell-waiver",
            description=(
                "KT-like femtocell breach (September 2025): 0.16% of lines exposed, 1.7% of them "
                "defrauded, and a 14-day ETF waiver for lines that joined before 1 Sep"
            ),
            snapshot_date="2025-11-01",
            disclosure_date="2025-09-11",
            baseline_monthly_churn=0.010,  # KT 0.9-1.2% a month
            exposed_share=22_227 / 13_697_079,  # 22,227 of 13,697,079 lines
            exposed_data_shares=(1.0, 1.0, 0.0, 0.0),  # IMSI/IMEI/phone numbers
            harmed_share_of_exposed=368 / 22_227,  # 368 lost KRW 243M to micro-payment fraud
            fraud_loss_mean=243_000_000 / 368,
            exposure_multiplier=2.0,
            harmed_multiplier=3.5,
            notification_first_wave_share=0.25,  # 5,561 first notified, 22,227 after the recount
            notification_first_wave_mean_days=5.0,
            notification_second_wave_days=(30, 75),
            compensation_share_of_exposed=0.0,  # none in the facts
            usim_replacement_share=0.3,
            public_inquiry_rate=0.02,
            waiver_start="2025-12-31",  # 31 Dec 2025 - 13 Jan 2026
            waiver_days=14,
            waiver_multiplier=7.0,  # ~7x the pre-waiver rate
            waiver_deadline_share=0.31,  # 31% in the last two days
            waiver_joined_before="2025-09-01",
        ),
        Scenario(
            name="no-breach",
            description="The same operator with no breach: baseline churn only",
            snapshot_date="2025-05-01",
            disclosure_date=None,
            baseline_monthly_churn=0.010,
        ),
    )
}


# ------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------


def generate(
    n_subscribers: int,
    *,
    seed: int,
    scenario: str | Scenario = DEFAULT_SCENARIO,
    out: str | os.PathLike,
    chunk_subscribers: int = 250_000,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write a synthetic post-breach subscriber base and its ground truth to a folder.

    Writes ``out/<table>/part-00000.parquet, ...`` for every table of
    ``pipeline.schema.TABLES`` (part ``k`` of every table holds the same subscribers, ids
    ``S00000001`` onwards, sorted), ``out/truth/part-*.parquet`` and ``out/manifest.json``.
    The folder appears complete or not at all: everything is written to a temporary folder
    next to ``out`` and renamed into place at the end.

    Parameters
    ----------
    n_subscribers : int
        Size of the base (subscribers active on the snapshot date).
    seed : int
        Non-negative seed; same seed, scenario, size and chunk size give identical bytes.
    scenario : str or Scenario
        A name from ``SCENARIOS`` or a ``Scenario`` (e.g. a ``dataclasses.replace`` of one).
    out : path
        The folder to create.  An existing non-empty folder is refused unless ``overwrite``.
    chunk_subscribers : int
        Subscribers per part file; bounds memory (records do not depend on it).
    overwrite : bool
        Replace an existing base in ``out`` (the new one is written first, then swapped in).
    progress : callable, optional
        Called as ``progress(done, total)`` after each part.

    Returns
    -------
    dict
        The manifest that was written.

    Raises
    ------
    ConfigError
        For invalid arguments, an unknown scenario, a non-empty ``out`` without
        ``overwrite``, or an ``out`` that cannot be written (nothing is left behind).
    """
    scenario = resolve_scenario(scenario)
    _check_count(n_subscribers, "n_subscribers", minimum=1)
    _check_count(seed, "seed", minimum=0)
    _check_count(chunk_subscribers, "chunk_subscribers", minimum=1)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; expected a folder for the generated base")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out}: folder is not empty; choose another folder or pass overwrite=True (--overwrite)")

    staging = out.parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as err:
        raise ConfigError(f"{out}: cannot create the output folder ({err.strerror or err})") from err
    try:
        manifest = _write_base(staging, n_subscribers, seed, scenario, chunk_subscribers, progress)
        _swap_into_place(staging, out)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise ConfigError(f"{out}: cannot write the generated base ({err.strerror or err})") from err
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("generated %d subscribers (scenario %s, seed %d) in %s", n_subscribers, scenario.name, seed, out)
    return manifest


def simulate(
    n_subscribers: int,
    *,
    seed: int,
    scenario: str | Scenario = DEFAULT_SCENARIO,
    first_subscriber: int = 0,
) -> dict[str, Any]:
    """Generate a small base in memory: the same records ``generate`` would write.

    Parameters
    ----------
    n_subscribers : int
        Number of subscribers.
    seed : int
        Non-negative seed.
    scenario : str or Scenario
        A name from ``SCENARIOS`` or a ``Scenario``.
    first_subscriber : int
        0-based number of the first subscriber (``S00000001`` is number 0), so that any
        slice of a large base can be regenerated on its own.

    Returns
    -------
    dict
        ``{table name: pandas.DataFrame}`` for every table of ``pipeline.schema.TABLES``
        (``campaigns`` included: the retention pilot, empty without one) and ``"truth"``,
        plus ``"manifest"`` (a dict).
    """
    import pyarrow as pa

    scenario = resolve_scenario(scenario)
    _check_count(n_subscribers, "n_subscribers", minimum=1)
    _check_count(seed, "seed", minimum=0)
    _check_count(first_subscriber, "first_subscriber", minimum=0)
    calendar = _Calendar.of(scenario)
    id_width = _id_width(first_subscriber + n_subscribers)
    stop = first_subscriber + n_subscribers
    pieces = [_arrow_tables(arrays, first, calendar, id_width)
              for first, arrays in _slices(first_subscriber, stop, seed, scenario, calendar)]
    frames: dict[str, Any] = {name: pa.concat_tables([piece[name] for piece in pieces]).to_pandas()
                              for name in pieces[0]}
    frames["manifest"] = _manifest(scenario, seed, n_subscribers, calendar)
    return frames


def resolve_scenario(scenario: str | Scenario) -> Scenario:
    """Return the ``Scenario`` named ``scenario`` (or ``scenario`` itself), checked.

    Raises
    ------
    ConfigError
        When the name is unknown (the message lists the known ones) or a parameter is out
        of range.
    """
    if isinstance(scenario, Scenario):
        return _check_scenario(scenario)
    if not isinstance(scenario, str) or scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {scenario!r}; expected one of {', '.join(sorted(SCENARIOS))}")
    return _check_scenario(SCENARIOS[scenario])


# ------------------------------------------------------------------------------------------
# argument checks
# ------------------------------------------------------------------------------------------


def _check_count(value: Any, name: str, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer of at least {minimum}, got {value!r}")


def _parse_date(value: str | None, field_name: str, scenario: str) -> np.datetime64 | None:
    if value is None:
        return None
    try:
        return np.datetime64(value, "D")
    except (ValueError, TypeError) as err:
        raise ConfigError(f"scenario {scenario}: {field_name} must be an ISO date YYYY-MM-DD, got {value!r}") from err


def _check_scenario(sc: Scenario) -> Scenario:
    def share(name: str) -> tuple[bool, str]:
        value = getattr(sc, name)
        return 0.0 <= value <= 1.0, f"{name} must be between 0 and 1, got {value!r}"

    def at_least(name: str, minimum: float) -> tuple[bool, str]:
        value = getattr(sc, name)
        return value >= minimum, f"{name} must be at least {minimum}, got {value!r}"

    checks = [
        share("baseline_monthly_churn"), share("exposed_share"), share("harmed_share_of_exposed"),
        share("notification_first_wave_share"), share("compensation_share_of_exposed"),
        share("compensation_damping"), share("instalment_damping"), share("bundle_damping"),
        share("usim_replacement_share"), share("porting_intent_share"), share("winding_down_share"),
        share("backfire_share"), share("new_account_share"), share("selective_contract_share"),
        share("family_bundle_share"), share("fixed_line_bundle_share"), share("missing_share"),
        share("pilot_share"), share("pilot_offer_share"), at_least("pilot_offer_months", 0.0),
        share("promo_share"), at_least("promo_cost_months", 0.0), at_least("deal_proneness_loading", 0.0),
        (1 <= sc.promo_days_before <= 365, f"promo_days_before must be between 1 and 365 (the records' history), "
                                           f"got {sc.promo_days_before!r}"),
        at_least("horizon_days", 1), at_least("simulated_days", sc.horizon_days),
        at_least("exposure_multiplier", 0.0), at_least("harmed_multiplier", 0.0),
        at_least("waiver_multiplier", 0.0), at_least("waiver_days", 0), at_least("exposure_effect_days", 0),
        (0.0 < sc.waiver_deadline_share < 1.0, f"waiver_deadline_share must be between 0 and 1 (exclusive), "
                                               f"got {sc.waiver_deadline_share!r}"),
        (sc.baseline_monthly_churn < 1.0, "baseline_monthly_churn must be below 1"),
        (sc.pilot_share == 0 or sc.simulated_days > PILOT_ACCEPTANCE_DAYS,
         f"simulated_days must be above {PILOT_ACCEPTANCE_DAYS} with a pilot (its offer counts as accepted when "
         f"the subscriber stays {PILOT_ACCEPTANCE_DAYS} days), got {sc.simulated_days}"),
        (len(sc.age_effects) == len(schema.AGE_BANDS) == len(sc.age_band_shares),
         f"age_effects and age_band_shares need {len(schema.AGE_BANDS)} values ({', '.join(schema.AGE_BANDS)})"),
        (len(sc.channel_effects) == len(schema.CHANNELS) == len(sc.channel_shares),
         f"channel_effects and channel_shares need {len(schema.CHANNELS)} values ({', '.join(schema.CHANNELS)})"),
        (len(sc.contract_type_shares) == 3, "contract_type_shares needs 3 values (none, 12m, 24m)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"scenario {sc.name}: {message}")
    for name in ("contract_type_shares", "age_band_shares", "channel_shares"):
        total = sum(getattr(sc, name))
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ConfigError(f"scenario {sc.name}: {name} must sum to 1, got {total:.6g}")
    snapshot = _parse_date(sc.snapshot_date, "snapshot_date", sc.name)
    disclosure = _parse_date(sc.disclosure_date, "disclosure_date", sc.name)
    waiver = _parse_date(sc.waiver_start, "waiver_start", sc.name)
    _parse_date(sc.compensation_start, "compensation_start", sc.name)
    _parse_date(sc.waiver_joined_before, "waiver_joined_before", sc.name)
    if disclosure is not None and disclosure > snapshot:
        raise ConfigError(f"scenario {sc.name}: disclosure_date {sc.disclosure_date} is after snapshot_date "
                          f"{sc.snapshot_date}; expected a breach disclosed on or before the snapshot")
    if sc.exposed_share > 0 and disclosure is None:
        raise ConfigError(f"scenario {sc.name}: exposed_share is {sc.exposed_share} but disclosure_date is not set")
    if waiver is not None:
        first, last = (waiver - snapshot).astype(int), (waiver - snapshot).astype(int) + sc.waiver_days
        if first <= 0 or last > sc.simulated_days or sc.waiver_days < 1:
            raise ConfigError(f"scenario {sc.name}: the waiver window ({sc.waiver_start}, {sc.waiver_days} days) must "
                              f"lie after the snapshot and within the {sc.simulated_days} simulated days")
        if sc.waiver_deadline_days >= sc.waiver_days:
            raise ConfigError(f"scenario {sc.name}: waiver_deadline_days must be shorter than waiver_days")
    return sc


# ------------------------------------------------------------------------------------------
# calendar
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Calendar:
    """A scenario's dates as day offsets from the snapshot (day 0 is the snapshot date)."""

    snapshot: np.datetime64
    disclosure_day: int | None
    compensation_day: int | None
    waiver_first_day: int | None
    waiver_end_day: int | None  # exclusive
    joined_before_day: int | None
    simulated_days: int
    horizon_days: int
    month_start_days: np.ndarray  # usage months: 12 before the snapshot month, then on
    month_lengths: np.ndarray
    #: Index of the snapshot's month in ``month_start_days`` (12 full months precede it).
    months_before_snapshot: int

    @classmethod
    def of(cls, sc: Scenario) -> "_Calendar":
        snapshot = np.datetime64(sc.snapshot_date, "D")

        def offset(value: str | None) -> int | None:
            return None if value is None else int((np.datetime64(value, "D") - snapshot).astype(int))

        snapshot_month = snapshot.astype("datetime64[M]")
        last_day = snapshot + sc.simulated_days - 1
        months = np.arange(snapshot_month - 12, last_day.astype("datetime64[M]") + 1)
        starts = (months.astype("datetime64[D]") - snapshot).astype(int)
        ends = ((months + 1).astype("datetime64[D]") - snapshot).astype(int)
        waiver_first = offset(sc.waiver_start)
        return cls(
            snapshot=snapshot,
            disclosure_day=offset(sc.disclosure_date),
            compensation_day=offset(sc.compensation_start),
            waiver_first_day=waiver_first,
            waiver_end_day=None if waiver_first is None else waiver_first + sc.waiver_days,
            joined_before_day=offset(sc.waiver_joined_before),
            simulated_days=sc.simulated_days,
            horizon_days=sc.horizon_days,
            month_start_days=starts,
            month_lengths=ends - starts,
            months_before_snapshot=12,
        )

    def iso(self, day: int | None) -> str | None:
        return None if day is None else str(self.snapshot + day)


# ------------------------------------------------------------------------------------------
# one block of subscribers: attributes, hazard, outcomes, records
# ------------------------------------------------------------------------------------------

# Independent random streams per block, so that changing how one table is drawn does not
# change the others.
_STREAM_PEOPLE, _STREAM_EXPOSURE, _STREAM_OUTCOME, _STREAM_USAGE, _STREAM_CONTACTS = range(5)
# The pilot draws its members on a stream of its own; the usage and contacts after the
# snapshot of offer-group subscribers whose defection the offer moved, on two more.
_STREAM_PILOT, _STREAM_OFFER_USAGE, _STREAM_OFFER_CONTACTS = range(5, 8)
# The past promotion draws who got it and who took it on a stream of its own.
_STREAM_PROMO = 8
# The stream of the per-base phone-number offset (outside the block numbering).
_PHONE_STREAM = 2**31


def _rng(seed: int, block: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(block, stream)))


def _draw_people(rng: np.random.Generator, size: int, sc: Scenario) -> dict[str, np.ndarray]:
    """Subscriber attributes and latent traits, with dates as day offsets from the snapshot."""
    new = rng.random(size) < sc.new_account_share
    tenure = np.where(
        new,
        rng.integers(1, 366, size),
        366 + (rng.gamma(1.3, 4.0, size) * 365.25).astype(np.int64),
    )
    tenure = np.minimum(tenure, 25 * 365)
    activation = -tenure

    contract_type = rng.choice(3, size, p=sc.contract_type_shares)
    has_contract = contract_type > 0
    term = _CONTRACT_TERM_DAYS[contract_type]
    elapsed = (rng.random(size) * 1.6 * term).astype(np.int64)
    contract_start = np.where(has_contract, np.maximum(activation, -elapsed), _NO_DAY)
    contract_end = np.where(has_contract, contract_start + term, _NO_DAY)
    selective = has_contract & (rng.random(size) < sc.selective_contract_share)

    # Plans: the cheapest plan that covers a subscriber's data need, shifted up or down.
    data_need = rng.lognormal(math.log(7.0), 1.1, size)
    right_plan = np.searchsorted(_PLAN_ALLOWANCE, data_need)
    right_plan = np.minimum(right_plan, len(_PLANS) - 1)
    shift = rng.choice(np.array([-1, 0, 1, 2]), size, p=[0.10, 0.55, 0.25, 0.10])
    plan = np.clip(right_plan + shift, 0, len(_PLANS) - 1)
    overpay = np.maximum(np.log(_PLAN_PRICE[plan] / _PLAN_PRICE[right_plan]), 0.0)
    monthly_fee = _PLAN_PRICE[plan] * np.where(selective, 0.75, 1.0)
    low, high = sc.etf_peak_fee_multiple
    etf_peak = monthly_fee * rng.uniform(low, high, size)
    allowance = _PLAN_ALLOWANCE[plan]
    data_level = np.minimum(data_need, allowance * 1.3)

    # Device instalments: usually bought with a subsidy contract; 24 months.
    instalment_share = np.where(has_contract, np.where(selective, 0.45, 0.8), 0.3)
    has_instalment = rng.random(size) < instalment_share
    own_start = np.maximum(activation, -rng.integers(0, 900, size))
    instalment_start = np.where(has_contract, contract_start, own_start)
    device_price = rng.uniform(900_000, 1_700_000, size)

    family = rng.random(size) < sc.family_bundle_share
    fixed = rng.random(size) < (sc.fixed_line_bundle_share + sc.fixed_line_given_family * family)
    age = rng.choice(len(schema.AGE_BANDS), size, p=sc.age_band_shares)
    region = rng.choice(len(_REGION_NAMES), size, p=_REGION_SHARES)
    channel = rng.choice(len(schema.CHANNELS), size, p=sc.channel_shares)
    age_missing = rng.random(size) < sc.missing_share
    region_missing = rng.random(size) < sc.missing_share
    channel_missing = rng.random(size) < sc.missing_share

    voice_level = rng.lognormal(math.log(170.0), 0.7, size) * np.where(age == 4, 1.3, 1.0)
    sms_level = rng.lognormal(math.log(15.0), 1.0, size)
    dissatisfaction = rng.standard_normal(size)
    stress = rng.standard_normal(size)
    concern = rng.standard_normal(size)
    random_effect = rng.normal(0.0, sc.random_effect_sd, size)
    usage_slope = -sc.usage_decline_per_month * np.maximum(dissatisfaction, 0.0) + rng.normal(0.0, 0.015, size)
    acceptance = rng.beta(sc.offer_acceptance_alpha, sc.offer_acceptance_beta, size)
    persuadability = rng.normal(0.0, sc.persuadability_sd, size)
    backfire = rng.random(size) < sc.backfire_share * np.exp(0.4 * dissatisfaction - 0.08)
    backfire_boost = rng.uniform(*sc.backfire_boost, size)
    return {
        "activation": activation, "tenure": tenure, "contract_type": contract_type, "has_contract": has_contract,
        "term": term, "contract_start": contract_start, "contract_end": contract_end, "selective": selective,
        "plan": plan, "overpay": overpay, "monthly_fee": monthly_fee, "etf_peak": etf_peak, "allowance": allowance,
        "data_level": data_level, "has_instalment": has_instalment, "instalment_start": instalment_start,
        "device_price": device_price, "family": family, "fixed": fixed, "age": age, "region": region,
        "channel": channel, "age_missing": age_missing, "region_missing": region_missing,
        "channel_missing": channel_missing, "voice_level": voice_level, "sms_level": sms_level,
        "dissatisfaction": dissatisfaction, "stress": stress, "concern": concern, "random_effect": random_effect,
        "usage_slope": usage_slope, "acceptance": acceptance, "persuadability": persuadability,
        "backfire": backfire, "backfire_boost": backfire_boost,
    }


def _etf(people: dict[str, np.ndarray], day: int) -> np.ndarray:
    """The early termination fee on ``day``: subsidies fall to 0; selective ETFs rise, then fall."""
    term = np.maximum(people["term"], 1)
    share = (day - people["contract_start"]) / term
    in_contract = people["has_contract"] & (share >= 0) & (share < 1)
    subsidy = people["etf_peak"] * (1 - share)
    selective = people["etf_peak"] * np.where(share < 0.5, share / 0.5, (1 - share) / 0.5)
    return np.where(in_contract, np.where(people["selective"], selective, subsidy), 0.0)


def _instalment_balance(people: dict[str, np.ndarray], day: int) -> np.ndarray:
    paid = np.clip((day - people["instalment_start"]) / 730.0, 0.0, 1.0)
    return np.where(people["has_instalment"], people["device_price"] * (1 - paid), 0.0)


def _draw_exposure(rng: np.random.Generator, people: dict[str, np.ndarray], sc: Scenario,
                   cal: _Calendar) -> dict[str, np.ndarray]:
    """Who was exposed, notified when, harmed, compensated, and eligible for the waiver."""
    size = len(people["tenure"])
    exposed = rng.random(size) < sc.exposed_share
    harmed = exposed & (rng.random(size) < sc.harmed_share_of_exposed)
    data = rng.random((4, size)) < np.asarray(sc.exposed_data_shares)[:, None]
    first_wave = rng.random(size) < sc.notification_first_wave_share
    lag_first = np.floor(rng.exponential(sc.notification_first_wave_mean_days, size))
    low, high = sc.notification_second_wave_days
    lag_second = rng.integers(low, high + 1, size)
    disclosure = cal.disclosure_day if cal.disclosure_day is not None else 0
    notification = np.where(exposed, disclosure + np.where(first_wave, lag_first, lag_second), _NO_DAY).astype(np.int64)
    fraud_loss = np.where(harmed, rng.lognormal(math.log(sc.fraud_loss_mean) - 0.32, 0.8, size), 0.0)
    compensated = exposed & (rng.random(size) < sc.compensation_share_of_exposed)
    compensation = np.where(compensated, np.round(sc.compensation_bill_share * people["monthly_fee"], -1), 0.0)
    usim_replaced = exposed & (rng.random(size) < sc.usim_replacement_share)
    if cal.waiver_first_day is None:
        eligible = np.zeros(size, dtype=bool)
    elif cal.joined_before_day is None:
        eligible = np.ones(size, dtype=bool)
    else:
        eligible = (people["activation"] < cal.joined_before_day) & (
            ~people["has_contract"] | (people["contract_start"] < cal.joined_before_day))
    if cal.waiver_first_day is not None:
        first = cal.waiver_first_day
        bound = eligible & people["has_contract"] & (people["contract_end"] > first) & (_etf(people, first) > 0)
    else:
        bound = np.zeros(size, dtype=bool)
    return {
        "exposed": exposed, "harmed": harmed, "exposed_data": data, "notification": notification,
        "fraud_loss": fraud_loss, "compensated": compensated, "compensation": compensation,
        "usim_replaced": usim_replaced, "eligible": eligible, "bound": bound,
    }


def _log_hazard_effects(people: dict[str, np.ndarray], sc: Scenario) -> np.ndarray:
    """Time-invariant log-hazard of each subscriber relative to the intercept."""
    age_effect = np.where(people["age_missing"], 0.0, np.asarray(sc.age_effects)[people["age"]])
    channel_effect = np.where(people["channel_missing"], 0.0, np.asarray(sc.channel_effects)[people["channel"]])
    balance_now = _instalment_balance(people, 0)
    return (
        sc.new_account_effect * np.exp(-people["tenure"] / _DAYS_PER_MONTH / sc.new_account_decay_months)
        + age_effect
        + channel_effect
        + sc.family_bundle_effect * people["family"]
        + sc.fixed_line_bundle_effect * people["fixed"]
        + sc.instalment_effect * (balance_now > 0)
        + sc.overpay_effect * people["overpay"]
        + sc.dissatisfaction_effect * people["dissatisfaction"]
        + sc.financial_stress_effect * people["stress"]
        + people["random_effect"]
    )


def _contract_multiplier(people: dict[str, np.ndarray], sc: Scenario, days: np.ndarray) -> np.ndarray:
    """(subscribers, days) hazard multiple of the contract status on each day."""
    end = people["contract_end"][:, None]
    has = people["has_contract"][:, None]
    in_contract = has & (days < end)
    expiring = has & (days >= end) & (days < end + sc.contract_expiry_days)
    return np.where(in_contract, sc.in_contract_multiplier,
                    np.where(expiring, sc.contract_expiry_multiplier, sc.out_of_contract_multiplier))


def _damping(people: dict[str, np.ndarray], sc: Scenario, day: int) -> np.ndarray:
    """Factor on a breach or waiver excess from instalment balances and bundles on ``day``."""
    instalment = np.where(_instalment_balance(people, day) > 0, sc.instalment_damping, 1.0)
    bundle = np.where(people["family"] | people["fixed"], sc.bundle_damping, 1.0)
    return instalment * bundle


def _breach_multiplier(people, exposure, sc: Scenario, cal: _Calendar, days: np.ndarray) -> np.ndarray:
    """(subscribers, days) hazard multiple of the breach response (1 for the unexposed)."""
    notified = exposure["notification"][:, None]
    active = exposure["exposed"][:, None] & (days >= notified) & (days < notified + sc.exposure_effect_days)
    multiple = np.where(exposure["harmed"], sc.harmed_multiplier, sc.exposure_multiplier)
    sd = sc.breach_concern_sd
    concern = np.exp(sd * people["concern"] - sd * sd / 2)  # mean 1: spreads the response, keeps its mean
    excess = (multiple - 1.0) * concern * _damping(people, sc, 0)
    excess = excess[:, None] * np.ones(len(days))
    if sc.compensation_damping < 1.0:
        start = notified if cal.compensation_day is None else np.maximum(notified, cal.compensation_day)
        damped = exposure["compensated"][:, None] & (days >= start)
        excess = np.where(damped, excess * sc.compensation_damping, excess)
    return np.where(active, 1.0 + excess, 1.0)


def _waiver_profile(sc: Scenario) -> np.ndarray:
    """Daily shape of the waiver response: mean 1, ``waiver_deadline_share`` in the last days."""
    n, k, share = sc.waiver_days, sc.waiver_deadline_days, sc.waiver_deadline_share
    spike = share * (n - k) / (k * (1 - share))
    low = n / (n - k + k * spike)
    profile = np.full(n, low)
    profile[n - k:] = low * spike
    return profile


def _waiver_multiplier_of(people, exposure, sc: Scenario, cal: _Calendar) -> np.ndarray:
    """Each subscriber's mean hazard multiple over the waiver window (1 when not bound)."""
    if cal.waiver_first_day is None:
        return np.ones(len(people["tenure"]))
    damping = _damping(people, sc, cal.waiver_first_day)
    return np.where(exposure["bound"], 1.0 + (sc.waiver_multiplier - 1.0) * damping, 1.0)


def _waiver_multiplier(level: np.ndarray, sc: Scenario, cal: _Calendar, days: np.ndarray) -> np.ndarray:
    """(subscribers, days) hazard multiple of the ETF waiver: each one's level times the daily shape."""
    window = np.ones(len(days))
    if cal.waiver_first_day is None:
        return window[None, :]
    inside = (days >= cal.waiver_first_day) & (days < cal.waiver_end_day)
    window[inside] = _waiver_profile(sc)
    return np.where(inside[None, :], level[:, None] * window[None, :], 1.0)


@lru_cache(maxsize=16)
def _intercept(sc: Scenario) -> float:
    """Log daily hazard that makes the base's average no-breach churn the baseline.

    Solved on a fixed calibration sample (independent of the user's seed) over the horizon,
    so the intercept is the same for every base of a scenario.
    """
    rng = np.random.default_rng(np.random.SeedSequence(20250422, spawn_key=(0,)))
    people = _draw_people(rng, 4 * RNG_BLOCK, sc)
    days = np.arange(sc.horizon_days)
    hazard = np.exp(_log_hazard_effects(people, sc))[:, None] * _contract_multiplier(people, sc, days)
    target = -math.log(1.0 - sc.baseline_monthly_churn) / _DAYS_PER_MONTH
    return math.log(target) - math.log(float(hazard.mean()))


def _draw_pilot(rng: np.random.Generator, size: int, sc: Scenario) -> np.ndarray:
    """Each subscriber's pilot group: ``_OFFER``, ``_CONTROL`` or ``_NOT_IN_PILOT``.

    Members are drawn independently of everything else (a stream of their own), then split
    at random, so the groups are comparable and the other streams are untouched.
    """
    member = rng.random(size) < sc.pilot_share
    offered = rng.random(size) < sc.pilot_offer_share
    return np.where(member, np.where(offered, _OFFER, _CONTROL), _NOT_IN_PILOT)


def _first_crossing(cumulative: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """The first day each row's cumulative hazard reaches its threshold (``_NO_DAY``: never)."""
    crossed = cumulative >= threshold[:, None]
    return np.where(crossed[:, -1], np.argmax(crossed, axis=1), _NO_DAY).astype(np.int64)


def _life_end(defection: np.ndarray, cal: _Calendar) -> np.ndarray:
    """The first day a subscriber is no longer active: the defection day, or the simulated end."""
    return np.where(defection != _NO_DAY, defection, cal.simulated_days)


def _simulate_block(block: int, seed: int, sc: Scenario, cal: _Calendar) -> dict[str, dict[str, np.ndarray]]:
    """All records of one block of ``RNG_BLOCK`` subscribers, keyed by block-local index."""
    size = RNG_BLOCK
    people = _draw_people(_rng(seed, block, _STREAM_PEOPLE), size, sc)
    exposure = _draw_exposure(_rng(seed, block, _STREAM_EXPOSURE), people, sc, cal)
    # The day each subscriber would leave without a retention contact, what an offer would
    # change, and the pilot's groups.
    hazard = _block_hazard(people, exposure, sc, cal)
    threshold = _rng(seed, block, _STREAM_OUTCOME).exponential(1.0, size)
    uncontacted_defection = _first_crossing(hazard["cumulative"], threshold)
    response = _offer_response(people, exposure, hazard["cumulative"][:, cal.horizon_days - 1], sc, cal)
    group = _draw_pilot(_rng(seed, block, _STREAM_PILOT), size, sc)
    defection = _pilot_defection(group, uncontacted_defection, hazard["daily"], threshold,
                                 response["treated_factor"], cal)
    truth = _truth(people, exposure, hazard, response, group, sc, cal)
    offer_cost = np.round(sc.pilot_offer_months * people["monthly_fee"], -1)
    stayed = (defection == _NO_DAY) | (defection > PILOT_ACCEPTANCE_DAYS)
    accepted = np.where(group == _OFFER, stayed.astype(np.int8), -1)
    usage, contacts = _records_after_the_pilot(
        seed, block, people, exposure, uncontacted_defection, defection, sc, cal)
    return {
        "subscribers": _subscriber_columns(people),
        "usage_monthly": _credit_bills(usage, np.where(accepted == 1, offer_cost, 0.0), cal),
        "contacts": contacts,
        "breach_exposure": _exposure_rows(exposure, sc, cal),
        "outcomes": {"defection_date": defection},
        "campaigns": _campaign_rows(group, offer_cost, accepted,
                                    _draw_promotion(_rng(seed, block, _STREAM_PROMO), people, sc)),
        "truth": truth,
        "_phone": _phone_digits(seed, block),
    }


def _block_hazard(people: dict[str, np.ndarray], exposure: dict[str, np.ndarray], sc: Scenario,
                  cal: _Calendar) -> dict[str, np.ndarray]:
    """Each subscriber's hazard, day by day over the simulated period, and its parts.

    ``base``: the baseline daily hazard; ``no_breach``: with the contract's effect, day by
    day; ``breach`` and ``waiver_level``: the breach's daily multiplier and the waiver's
    level; ``daily``: the hazard without a retention contact; ``cumulative``: its running sum.
    """
    days = np.arange(cal.simulated_days)
    base = np.exp(_intercept(sc) + _log_hazard_effects(people, sc))
    no_breach = base[:, None] * _contract_multiplier(people, sc, days)
    breach = _breach_multiplier(people, exposure, sc, cal, days)
    waiver_level = _waiver_multiplier_of(people, exposure, sc, cal)
    waiver = _waiver_multiplier(waiver_level, sc, cal, days)
    daily = no_breach * breach * waiver
    return {"base": base, "no_breach": no_breach, "breach": breach, "waiver_level": waiver_level,
            "daily": daily, "cumulative": np.cumsum(daily, axis=1)}


def _offer_response(people: dict[str, np.ndarray], exposure: dict[str, np.ndarray], cumulative_horizon: np.ndarray,
                    sc: Scenario, cal: _Calendar) -> dict[str, np.ndarray]:
    """What a retention offer does to each subscriber over the horizon, from their cumulative hazard there.

    A retention offer multiplies the hazard over the horizon by exp(-strength).  The
    response is only weakly tied to risk (Ascarza 2018): an average subscriber removes the
    share drawn as their acceptance; price-sensitive and waiver-bound ones remove more,
    those riskier than an average subscriber at the baseline rate less ("lost causes"),
    and a persuadability trait of its own spreads it further.  Returns the churn
    ``probability`` without a contact, the share of hazard ``removed``, the
    ``treated_factor`` on the hazard and the ``uplift``.
    """
    horizon = cal.horizon_days
    probability = -np.expm1(-cumulative_horizon)
    reference_risk = math.log(-math.log(1.0 - sc.baseline_monthly_churn) / _DAYS_PER_MONTH * horizon)
    log_response = (0.4 * people["overpay"] + 0.5 * exposure["bound"] + people["persuadability"]
                    - sc.lost_cause_elasticity * np.maximum(np.log(cumulative_horizon) - reference_risk, 0.0)
                    - sc.persuadability_sd ** 2 / 2)
    strength = -np.log1p(-people["acceptance"]) * np.exp(log_response)
    removed = -np.expm1(-strength)
    treated_factor = np.where(people["backfire"], 1.0 + people["backfire_boost"], 1.0 - removed)
    uplift = probability + np.expm1(-cumulative_horizon * treated_factor)
    return {"cumulative_horizon": cumulative_horizon, "probability": probability, "removed": removed,
            "treated_factor": treated_factor, "uplift": uplift}


def _pilot_defection(group: np.ndarray, uncontacted_defection: np.ndarray, daily: np.ndarray, threshold: np.ndarray,
                     treated_factor: np.ndarray, cal: _Calendar) -> np.ndarray:
    """The day each subscriber leaves (``_NO_DAY``: never) once the pilot has made its offers.

    The offer group's hazard over the horizon is multiplied by ``treated_factor``, against
    the same threshold, so each leaves within the horizon with probability exactly p - u;
    after the horizon the factor is 1.  Everyone else leaves as without a contact.
    """
    offered = np.flatnonzero(group == _OFFER)
    defection = uncontacted_defection.copy()
    if offered.size:
        days = np.arange(cal.simulated_days)
        factor = np.where(days < cal.horizon_days, treated_factor[offered, None], 1.0)
        defection[offered] = _first_crossing(np.cumsum(daily[offered] * factor, axis=1), threshold[offered])
    return defection


def _truth(people: dict[str, np.ndarray], exposure: dict[str, np.ndarray], hazard: dict[str, np.ndarray],
           response: dict[str, np.ndarray], group: np.ndarray, sc: Scenario, cal: _Calendar) -> dict[str, np.ndarray]:
    """The ground-truth table of one block: what the simulation knows and the records do not show."""
    return {
        "true_churn_probability": response["probability"],
        "cumulative_hazard": response["cumulative_horizon"],
        "offer_response_uplift": response["uplift"],
        "contact_backfire": people["backfire"],
        "baseline_daily_hazard": hazard["base"],
        "contract_multiplier_at_snapshot": _contract_multiplier(people, sc, np.zeros(1, dtype=np.int64))[:, 0],
        "breach_multiplier_mean": hazard["breach"][:, :cal.horizon_days].mean(axis=1),
        "waiver_bound": exposure["bound"],
        "waiver_multiplier": hazard["waiver_level"],
        "exposed": exposure["exposed"],
        "directly_harmed": exposure["harmed"],
        "dissatisfaction": people["dissatisfaction"],
        "financial_stress": people["stress"],
        "breach_concern": np.where(exposure["exposed"], people["concern"], np.nan),
        "random_effect": people["random_effect"],
        "offer_share_removed": np.where(people["backfire"], -people["backfire_boost"], response["removed"]),
        # The latent trait behind the response to offers (log scale, mean 0): unobservable,
        # except through a taken past promotion (deal proneness).
        "persuadability": people["persuadability"],
        "pilot_group": group,
        # The churn a subscriber returns to once the breach has passed: no breach, waiver or offer.
        "lifetime_monthly_churn": -np.expm1(-_DAYS_PER_MONTH * hazard["no_breach"].mean(axis=1)),
    }


def _records_after_the_pilot(seed: int, block: int, people, exposure, uncontacted_defection: np.ndarray,
                             defection: np.ndarray, sc: Scenario, cal: _Calendar):
    """Usage and contact rows: history as without the pilot, the future as it turned out.

    Every row dated before the snapshot (and every row of a subscriber whose defection the
    offer did not move) is what it would be without the pilot, so the history of the offer
    and control groups is comparable by construction: the offer on day 0 cannot change what
    happened before it.  The rows dated on or after the snapshot of subscribers whose
    defection moved are drawn again, on streams of their own, from the new defection date.
    """
    life_end = _life_end(uncontacted_defection, cal)
    usage = _usage_rows(_rng(seed, block, _STREAM_USAGE), people, exposure, uncontacted_defection, life_end, sc, cal)
    contacts = _contact_rows(_rng(seed, block, _STREAM_CONTACTS), people, exposure, uncontacted_defection,
                             life_end, sc, cal)
    moved = np.flatnonzero(defection != uncontacted_defection)
    if moved.size == 0:
        return usage, contacts
    people_moved, exposure_moved = _subset(people, moved), _subset(exposure, moved)
    defection_moved = defection[moved]
    life_end_moved = _life_end(defection_moved, cal)
    usage_moved = _usage_rows(_rng(seed, block, _STREAM_OFFER_USAGE), people_moved, exposure_moved,
                              defection_moved, life_end_moved, sc, cal)
    contacts_moved = _contact_rows(_rng(seed, block, _STREAM_OFFER_CONTACTS), people_moved, exposure_moved,
                                   defection_moved, life_end_moved, sc, cal)
    return (_replace_future(usage, usage_moved, moved, "month"),
            _replace_future(contacts, contacts_moved, moved, "contact_day"))


def _subset(arrays: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    """The per-subscriber arrays (subscribers on the last axis) of the subscribers ``index``."""
    return {name: values[..., index] for name, values in arrays.items()}


def _replace_future(rows: dict[str, np.ndarray], future: dict[str, np.ndarray], moved: np.ndarray,
                    date: str) -> dict[str, np.ndarray]:
    """``rows`` with the rows of subscribers ``moved`` dated on or after day 0 replaced by ``future``'s.

    ``future`` is keyed by position in ``moved``.  The result stays sorted by subscriber,
    and by date within a subscriber (history rows come before the future ones).
    """
    keep = ~(np.isin(rows["_sub"], moved) & (rows[date] >= 0))
    new = future[date] >= 0
    merged = {name: np.concatenate([values[keep], future[name][new]]) for name, values in rows.items()}
    merged["_sub"][keep.sum():] = moved[future["_sub"][new]]
    order = np.argsort(merged["_sub"], kind="stable")
    return {name: values[order] for name, values in merged.items()}


def _credit_bills(usage: dict[str, np.ndarray], credit: np.ndarray, cal: _Calendar) -> dict[str, np.ndarray]:
    """Take each subscriber's ``credit`` off their bill of the month after the snapshot's."""
    following = np.searchsorted(cal.month_start_days, 0, side="right")
    if following == len(cal.month_start_days) or not credit.any():
        return usage
    credited = (usage["month"] == cal.month_start_days[following]) & (credit[usage["_sub"]] > 0)
    bill = np.where(credited, np.maximum(usage["bill_amount"] - credit[usage["_sub"]], 0.0), usage["bill_amount"])
    return {**usage, "bill_amount": bill}


def _draw_promotion(rng: np.random.Generator, people: dict[str, np.ndarray], sc: Scenario) -> dict[str, np.ndarray]:
    """Who was offered the past promotion (active on its day) and who took it (deal-prone ones more often)."""
    size = len(people["tenure"])
    day = -int(sc.promo_days_before)
    offered = (rng.random(size) < sc.promo_share) & (people["activation"] < day)
    z = people["persuadability"] / sc.persuadability_sd if sc.persuadability_sd > 0 else np.zeros(size)
    taken = rng.random(size) < 1.0 / (1.0 + np.exp(-(sc.promo_acceptance_log_odds + sc.deal_proneness_loading * z)))
    return {"offered": offered, "accepted": taken, "day": day,
            "cost": np.round(sc.promo_cost_months * people["monthly_fee"], -1)}


def _campaign_rows(group: np.ndarray, offer_cost: np.ndarray, accepted: np.ndarray,
                   promotion: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Campaign rows, sorted by subscriber then date: the past promotion's offers, then the pilot's members.

    ``campaign`` is 0 for the promotion and 1 for the pilot; ``accepted`` -1 is blank.
    """
    promo = np.flatnonzero(promotion["offered"])
    pilot = np.flatnonzero(group != _NOT_IN_PILOT)
    sub = np.concatenate([promo, pilot])
    rows = {
        "_sub": sub,
        "campaign": np.concatenate([np.zeros(promo.size, np.int8), np.ones(pilot.size, np.int8)]),
        "day": np.concatenate([np.full(promo.size, promotion["day"], np.int64), np.zeros(pilot.size, np.int64)]),
        "group": np.concatenate([np.full(promo.size, _OFFER), group[pilot]]),
        "offer_kind": np.concatenate([np.full(promo.size, 1), np.where(group[pilot] == _OFFER, 0, -1)]),
        "offer_cost": np.concatenate([promotion["cost"][promo], np.where(group[pilot] == _OFFER, offer_cost[pilot], 0.0)]),
        "accepted": np.concatenate([promotion["accepted"][promo].astype(np.int8), accepted[pilot]]),
    }
    order = np.lexsort((rows["day"], sub))
    return {name: values[order] for name, values in rows.items()}


def _subscriber_columns(people: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "activation_date": people["activation"],
        "plan": people["plan"],
        "monthly_fee": people["monthly_fee"],
        "contract_type": people["contract_type"],
        "contract_start": people["contract_start"],
        "contract_end": people["contract_end"],
        "device_instalment_balance": np.round(_instalment_balance(people, 0), -1),
        "early_termination_fee": np.round(_etf(people, 0), -1),
        "family_bundle": people["family"],
        "fixed_line_bundle": people["fixed"],
        "age_band": np.where(people["age_missing"], -1, people["age"]),
        "region": np.where(people["region_missing"], -1, people["region"]),
        "channel": np.where(people["channel_missing"], -1, people["channel"]),
    }


def _usage_rows(rng, people, exposure, defection, life_end, sc: Scenario, cal: _Calendar) -> dict[str, np.ndarray]:
    """Monthly usage: 12 months before the snapshot month, then on while the line is active."""
    starts, lengths = cal.month_start_days, cal.month_lengths
    size = len(life_end)
    lo = np.maximum(starts[None, :], people["activation"][:, None])
    hi = np.minimum((starts + lengths)[None, :], life_end[:, None])
    active_days = hi - lo
    present = active_days > 0
    sub, month = np.nonzero(present)  # row-major: sorted by subscriber, then month
    fraction = active_days[sub, month] / lengths[month]
    months_from_snapshot = month - cal.months_before_snapshot
    trend = np.exp(people["usage_slope"][sub] * np.maximum(0, months_from_snapshot + 7))
    winding = rng.random(size) < sc.winding_down_share
    leaving_soon = (defection[sub] != _NO_DAY) & winding[sub] & (starts[month] + lengths[month] > defection[sub] - 30)
    trend = trend * np.where(leaving_soon, 0.6, 1.0)
    rows = len(sub)
    voice = people["voice_level"][sub] * trend * rng.lognormal(0.0, 0.25, rows) * fraction
    data = people["data_level"][sub] * trend * rng.lognormal(0.0, 0.3, rows) * fraction
    allowance = people["allowance"][sub] * fraction
    data = np.minimum(data, allowance * 1.3)
    sms = rng.poisson(people["sms_level"][sub] * trend * fraction)
    overage = np.minimum(np.maximum(data - allowance, 0.0) * 1_500.0, 20_000.0)
    instalment_start = people["instalment_start"][sub]
    month_end = starts[month] + lengths[month]
    paying_instalment = people["has_instalment"][sub] & (month_end > instalment_start) \
        & (starts[month] < instalment_start + 730)
    instalment = np.where(paying_instalment, people["device_price"][sub] / 24.0, 0.0)
    extras = np.where(rng.random(rows) < 0.35, rng.exponential(4_000.0, rows), 0.0)
    bill = people["monthly_fee"][sub] * fraction + overage + instalment * fraction + extras
    if exposure["compensated"].any():
        credit_day = cal.compensation_day if cal.compensation_day is not None else cal.disclosure_day
        month_of_credit = np.searchsorted(starts, credit_day, side="right")  # the month after it
        credited = exposure["compensated"][sub] & (month == month_of_credit)
        bill = np.where(credited, np.maximum(bill - exposure["compensation"][sub], 0.0), bill)
    late = rng.random(rows) < 1.0 / (1.0 + np.exp(3.0 - sc.delay_stress_loading * people["stress"][sub]))
    delay = np.where(late, rng.geometric(0.12, rows), 0)
    return {
        "_sub": sub, "month": starts[month], "voice_minutes": np.round(voice, 1), "data_gb": np.round(data, 2),
        "sms_count": sms.astype(np.int64), "bill_amount": np.round(bill, -1),
        "payment_delay_days": delay.astype(np.int64),
    }


def _contact_rows(rng, people, exposure, defection, life_end, sc: Scenario, cal: _Calendar) -> dict[str, np.ndarray]:
    """Service contacts from 12 months before the snapshot to the end, sorted by subscriber and time."""
    size = len(life_end)
    start = np.maximum(people["activation"], -365).astype(float)
    end = life_end.astype(float)
    subs, times, reasons = [], [], []

    def poisson_events(rate_per_day: np.ndarray, lo: np.ndarray, hi: np.ndarray, reason_of) -> None:
        span = np.maximum(hi - lo, 0.0)
        counts = rng.poisson(rate_per_day * span)
        sub = np.repeat(np.arange(size), counts)
        subs.append(sub)
        times.append(lo[sub] + rng.random(len(sub)) * span[sub])
        reasons.append(reason_of(len(sub)) if callable(reason_of) else np.full(len(sub), reason_of))

    d, f = people["dissatisfaction"], people["stress"]
    general_reasons = np.array([_REASON[r] for r in ("technical", "plan_change", "device", "other")])
    a, b = sc.contact_dissatisfaction_loading, sc.porting_dissatisfaction_loading
    poisson_events(sc.general_contact_rate / _DAYS_PER_MONTH * np.exp(a * d - a * a / 2), start, end,
                   lambda k: general_reasons[rng.choice(4, k, p=[0.45, 0.2, 0.2, 0.15])])
    poisson_events(sc.billing_contact_rate / _DAYS_PER_MONTH * np.exp(0.6 * f + 0.3 * d - 0.225), start, end,
                   _REASON["billing"])
    poisson_events(sc.porting_inquiry_rate / _DAYS_PER_MONTH * np.exp(b * d - b * b / 2), start, end,
                   _REASON["porting_inquiry"])

    if cal.disclosure_day is not None:
        # Breach-related contacts after notification, fading (exponential lags, mean 10 days).
        exposed, harmed, concern = exposure["exposed"], exposure["harmed"], people["concern"]
        notified = exposure["notification"].astype(float)
        for reason, mean in (
            ("breach_inquiry", 0.4 * np.exp(0.6 * concern - 0.18)),
            ("breach_complaint", 0.06 * np.exp(0.9 * concern + 0.3 * d - 0.45) * np.where(harmed, 4.0, 1.0)),
            ("porting_inquiry", 0.05 * np.exp(0.8 * concern - 0.32) * np.where(harmed, 3.0, 1.0)),
        ):
            counts = rng.poisson(np.where(exposed, mean, 0.0))
            sub = np.repeat(np.arange(size), counts)
            subs.append(sub)
            times.append(notified[sub] + rng.exponential(10.0, len(sub)))
            reasons.append(np.full(len(sub), _REASON[reason]))
        sub = np.nonzero(exposure["usim_replaced"])[0]
        subs.append(sub)
        times.append(notified[sub] + rng.exponential(15.0, len(sub)))
        reasons.append(np.full(len(sub), _REASON["usim_replacement"]))
        # Unexposed subscribers wonder whether they are affected.
        public = np.where(exposed, 0.0, sc.public_inquiry_rate / 30.0)
        lo = np.full(size, float(cal.disclosure_day))
        poisson_events(public, lo, lo + 30.0, _REASON["breach_inquiry"])

    # Some leavers ask about number porting shortly before they go.
    asks = (defection != _NO_DAY) & (rng.random(size) < sc.porting_intent_share)
    sub = np.nonzero(asks)[0]
    subs.append(sub)
    times.append(defection[sub] - rng.uniform(1.0, 14.0, len(sub)))
    reasons.append(np.full(len(sub), _REASON["porting_inquiry"]))

    sub = np.concatenate(subs)
    time = np.concatenate(times)
    reason = np.concatenate(reasons).astype(np.int64)
    keep = (time >= people["activation"][sub]) & (time >= -365) & (time < end[sub])
    sub, time, reason = sub[keep], time[keep], reason[keep]
    order = np.lexsort((time, sub))
    sub, time, reason = sub[order], time[order], reason[order]
    day = np.floor(time)
    # Contacts happen between 08:00 and 22:00.
    seconds = np.floor(8 * 3600 + (time - day) * 14 * 3600)
    channel = (rng.random(len(sub))[:, None] > _CHANNEL_CUMULATIVE[reason][:, :-1]).sum(axis=1)
    return {"_sub": sub, "contact_day": day.astype(np.int64), "contact_second": seconds.astype(np.int64),
            "channel": channel.astype(np.int64), "reason": reason}


def _exposure_rows(exposure, sc: Scenario, cal: _Calendar) -> dict[str, np.ndarray]:
    sub = np.nonzero(exposure["exposed"])[0]
    eligible = exposure["eligible"][sub]
    first = cal.waiver_first_day if cal.waiver_first_day is not None else _NO_DAY
    last = cal.waiver_end_day - 1 if cal.waiver_end_day is not None else _NO_DAY
    return {
        "_sub": sub,
        "exposed_phone_number": exposure["exposed_data"][0][sub],
        "exposed_usim_key": exposure["exposed_data"][1][sub],
        "exposed_identity_number": exposure["exposed_data"][2][sub],
        "exposed_payment_data": exposure["exposed_data"][3][sub],
        "notification_date": exposure["notification"][sub],
        "fraud_loss_amount": np.round(exposure["fraud_loss"][sub], -1),
        "compensation_amount": exposure["compensation"][sub],
        "waiver_eligible": eligible,
        "waiver_start": np.where(eligible, first, _NO_DAY),
        "waiver_end": np.where(eligible, last, _NO_DAY),
    }


def _phone_digits(seed: int, block: int) -> np.ndarray:
    """Eight synthetic digits per subscriber, distinct within a base (a seeded permutation)."""
    offset = int(np.random.SeedSequence(seed, spawn_key=(_PHONE_STREAM,)).generate_state(1)[0]) % 100_000_000
    number = block * RNG_BLOCK + np.arange(RNG_BLOCK, dtype=np.int64)
    return (number * 48_271 + offset) % 100_000_000


# ------------------------------------------------------------------------------------------
# chunks: blocks sliced to a subscriber range, as Arrow tables
# ------------------------------------------------------------------------------------------


def _id_width(n_subscribers: int) -> int:
    return max(8, len(str(n_subscribers)))


def _slice_block(block: dict[str, dict[str, np.ndarray]], lo: int, hi: int) -> dict[str, dict[str, np.ndarray]]:
    """Keep block-local subscribers ``lo <= i < hi``; row tables keep their subscribers' rows."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, columns in block.items():
        if name == "_phone":
            out[name] = columns[lo:hi]
        elif "_sub" in columns:
            first, last = np.searchsorted(columns["_sub"], [lo, hi])
            out[name] = {key: value[first:last] for key, value in columns.items()}
            out[name]["_sub"] = out[name]["_sub"] - lo
        else:
            out[name] = {key: value[lo:hi] for key, value in columns.items()}
    return out


def _slices(first: int, stop: int, seed: int, sc: Scenario, cal: _Calendar):
    """Yield ``(number of the first subscriber, records)`` for each block's share of ``[first, stop)``.

    Row tables carry ``_sub``, the row's subscriber counted from that first subscriber.
    """
    for block in range(first // RNG_BLOCK, (stop - 1) // RNG_BLOCK + 1):
        block_first = block * RNG_BLOCK
        lo, hi = max(first, block_first) - block_first, min(stop, block_first + RNG_BLOCK) - block_first
        yield block_first + lo, _slice_block(_simulate_block(block, seed, sc, cal), lo, hi)


def _dates(days: np.ndarray, cal: _Calendar):
    import pyarrow as pa

    days = np.asarray(days, dtype=np.int64)
    blank = days == _NO_DAY
    epoch_day = int(cal.snapshot.astype("datetime64[D]").astype(np.int64))
    ms = (epoch_day + np.where(blank, 0, days)) * _MS_PER_DAY
    return pa.array(ms, type=pa.timestamp("ms"), mask=blank if blank.any() else None)


def _categories(codes: np.ndarray, names: tuple[str, ...]):
    import pyarrow as pa

    codes = np.asarray(codes, dtype=np.int32)
    blank = codes < 0
    indices = pa.array(np.where(blank, 0, codes), mask=blank if blank.any() else None)
    return pa.DictionaryArray.from_arrays(indices, pa.array(names, type=pa.string())).cast(pa.string())


def _arrow_tables(arrays: dict[str, Any], first: int, cal: _Calendar, id_width: int) -> dict[str, Any]:
    """Arrow tables (schema order and types) of consecutive subscribers from number ``first``."""
    import pyarrow as pa

    numbers = np.arange(first + 1, first + len(arrays["_phone"]) + 1).astype(str)
    ids = pa.array(np.strings.add("S", np.strings.zfill(numbers, id_width)), type=pa.string())
    tables = {
        "subscribers": _subscriber_table(arrays["subscribers"], arrays["_phone"], ids, numbers, cal),
        "usage_monthly": _usage_table(arrays["usage_monthly"], ids, cal),
        "contacts": _contact_table(arrays["contacts"], ids, cal),
        "breach_exposure": _exposure_table(arrays["breach_exposure"], ids, cal),
        "outcomes": {"subscriber_id": ids, "defection_date": _dates(arrays["outcomes"]["defection_date"], cal)},
        "campaigns": _campaign_table(arrays["campaigns"], ids, cal),
    }
    result = {}
    for name, columns in tables.items():
        ordered = {column: columns[column] for column in schema.TABLES[name].names}
        result[name] = pa.table(ordered)
    result[TRUTH] = pa.table(_truth_columns(arrays["truth"], ids))
    return result


def _row_ids(ids, sub: np.ndarray):
    """The subscriber id of each row, from its ``_sub`` (the position in ``ids``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.take(ids, pa.array(sub, type=pa.int64()))


def _subscriber_table(people: dict[str, np.ndarray], phone: np.ndarray, ids, numbers: np.ndarray,
                      cal: _Calendar) -> dict[str, Any]:
    """The subscribers table's Arrow columns, with synthetic names, phone numbers and e-mail addresses."""
    import pyarrow as pa

    return {
        "subscriber_id": ids,
        "activation_date": _dates(people["activation_date"], cal),
        "plan": _categories(people["plan"], _PLAN_NAMES),
        "monthly_fee": pa.array(people["monthly_fee"], type=pa.float64()),
        "contract_type": _categories(people["contract_type"], schema.CONTRACT_TYPES),
        "contract_start": _dates(people["contract_start"], cal),
        "contract_end": _dates(people["contract_end"], cal),
        "device_instalment_balance": pa.array(people["device_instalment_balance"], type=pa.float64()),
        "early_termination_fee": pa.array(people["early_termination_fee"], type=pa.float64()),
        "family_bundle": pa.array(people["family_bundle"], type=pa.bool_()),
        "fixed_line_bundle": pa.array(people["fixed_line_bundle"], type=pa.bool_()),
        "age_band": _categories(people["age_band"], schema.AGE_BANDS),
        "region": _categories(people["region"], _REGION_NAMES),
        "channel": _categories(people["channel"], schema.CHANNELS),
        "name": pa.array(np.strings.add("Subscriber ", numbers), type=pa.string()),
        "phone_number": pa.array(np.strings.add(np.strings.add(
            np.strings.add("010-", np.strings.zfill((phone // 10_000).astype(str), 4)), "-"),
            np.strings.zfill((phone % 10_000).astype(str), 4)), type=pa.string()),
        "email": pa.array(np.strings.add(np.strings.add("s", numbers), "@example.com"), type=pa.string()),
    }


def _usage_table(usage: dict[str, np.ndarray], ids, cal: _Calendar) -> dict[str, Any]:
    """The usage_monthly table's Arrow columns."""
    import pyarrow as pa

    return {
        "subscriber_id": _row_ids(ids, usage["_sub"]),
        "month": _dates(usage["month"], cal),
        "voice_minutes": pa.array(usage["voice_minutes"], type=pa.float64()),
        "data_gb": pa.array(usage["data_gb"], type=pa.float64()),
        "sms_count": pa.array(usage["sms_count"], type=pa.int64()),
        "bill_amount": pa.array(usage["bill_amount"], type=pa.float64()),
        "payment_delay_days": pa.array(usage["payment_delay_days"], type=pa.int64()),
    }


def _contact_table(contact: dict[str, np.ndarray], ids, cal: _Calendar) -> dict[str, Any]:
    """The contacts table's Arrow columns (contact times to the second)."""
    import pyarrow as pa

    epoch_day = int(cal.snapshot.astype(np.int64))
    contact_ms = ((epoch_day + contact["contact_day"]) * 86_400 + contact["contact_second"]) * 1000
    return {
        "subscriber_id": _row_ids(ids, contact["_sub"]),
        "contact_time": pa.array(contact_ms, type=pa.timestamp("ms")),
        "channel": _categories(contact["channel"], schema.CONTACT_CHANNELS),
        "reason": _categories(contact["reason"], schema.CONTACT_REASONS),
    }


def _exposure_table(exposure: dict[str, np.ndarray], ids, cal: _Calendar) -> dict[str, Any]:
    """The breach_exposure table's Arrow columns."""
    import pyarrow as pa

    breach_exposure = {"subscriber_id": _row_ids(ids, exposure["_sub"])}
    for name in ("exposed_phone_number", "exposed_usim_key", "exposed_identity_number", "exposed_payment_data"):
        breach_exposure[name] = pa.array(exposure[name], type=pa.bool_())
    breach_exposure["notification_date"] = _dates(exposure["notification_date"], cal)
    breach_exposure["fraud_loss_amount"] = pa.array(exposure["fraud_loss_amount"], type=pa.float64())
    breach_exposure["compensation_amount"] = pa.array(exposure["compensation_amount"], type=pa.float64())
    breach_exposure["waiver_eligible"] = pa.array(exposure["waiver_eligible"], type=pa.bool_())
    breach_exposure["waiver_start"] = _dates(exposure["waiver_start"], cal)
    breach_exposure["waiver_end"] = _dates(exposure["waiver_end"], cal)
    return breach_exposure


def _campaign_table(rows: dict[str, np.ndarray], ids, cal: _Calendar) -> dict[str, Any]:
    """The campaigns table's Arrow columns, each campaign named by its kind and day."""
    import pyarrow as pa

    promo_days = rows["day"][rows["campaign"] == 0]
    names = np.array([f"promo-{cal.iso(int(promo_days[0]))}" if promo_days.size else "", f"pilot-{cal.iso(0)}"],
                     dtype=object)
    return {
        "subscriber_id": _row_ids(ids, rows["_sub"]),
        "campaign_id": pa.array(names[rows["campaign"]].tolist(), type=pa.string()),
        "contact_date": _dates(rows["day"], cal),
        "group": _categories(rows["group"], schema.CAMPAIGN_GROUPS),
        "offer_kind": _categories(rows["offer_kind"], _OFFER_KINDS),
        "offer_cost": pa.array(rows["offer_cost"], type=pa.float64()),
        "accepted": pa.array(rows["accepted"] == 1, mask=rows["accepted"] < 0, type=pa.bool_()),
    }


def _truth_columns(truth: dict[str, np.ndarray], ids) -> dict[str, Any]:
    """The ground-truth table's Arrow columns, in the simulation's order."""
    import pyarrow as pa

    columns = {"subscriber_id": ids}
    for name, values in truth.items():
        if name == "pilot_group":
            columns[name] = _categories(values, schema.CAMPAIGN_GROUPS)
        else:
            columns[name] = pa.array(values, from_pandas=True)
    return columns


# ------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------


def _manifest(sc: Scenario, seed: int, n_subscribers: int, cal: _Calendar) -> dict[str, Any]:
    return {
        "snapshot_date": sc.snapshot_date,
        "disclosure_date": sc.disclosure_date,
        "scenario": sc.name,
        "seed": int(seed),
        "subscribers": int(n_subscribers),
        "horizon_days": sc.horizon_days,
        "generator_version": GENERATOR_VERSION,
        # Outcomes, usage and contacts are simulated up to (not including) this day.
        "simulated_until": cal.iso(cal.simulated_days),
    }


def _write_base(folder: Path, n_subscribers: int, seed: int, sc: Scenario, chunk_subscribers: int,
                progress: Callable[[int, int], None] | None) -> dict[str, Any]:
    import pyarrow.parquet as pq

    cal = _Calendar.of(sc)
    id_width = _id_width(n_subscribers)
    names = [*schema.TABLES, TRUTH]
    for name in names:
        (folder / name).mkdir()
    rows = dict.fromkeys(names, 0)
    parts = 0
    # Each part is written block by block, so memory is bounded by one block, not a part.
    for part, first in enumerate(range(0, n_subscribers, chunk_subscribers)):
        stop = min(first + chunk_subscribers, n_subscribers)
        writers: dict[str, Any] = {}
        try:
            for slice_first, arrays in _slices(first, stop, seed, sc, cal):
                for name, table in _arrow_tables(arrays, slice_first, cal, id_width).items():
                    if name not in writers:
                        path = folder / name / f"part-{part:05d}.parquet"
                        writers[name] = pq.ParquetWriter(path, table.schema, compression="zstd")
                    # Empty slices too: row group i of every table then holds the subscribers of
                    # row group i of subscribers, which readers use to split big parts.
                    writers[name].write_table(table)
                    rows[name] += table.num_rows
        finally:
            for writer in writers.values():
                writer.close()
        parts = part + 1
        log.debug("part %d: subscribers %d-%d written", part, first + 1, stop)
        if progress is not None:
            progress(stop, n_subscribers)
    manifest = _manifest(sc, seed, n_subscribers, cal)
    manifest["parts"] = parts
    manifest["rows"] = rows
    (folder / schema.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _swap_into_place(staging: Path, out: Path) -> None:
    """Rename the finished ``staging`` folder to ``out``, replacing any old one last."""
    if not out.exists():
        os.rename(staging, out)
        return
    retired = out.parent / f".{out.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    os.rename(out, retired)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(retired, out)
        raise
    shutil.rmtree(retired, ignore_errors=True)


__all__ = ["Scenario", "SCENARIOS", "DEFAULT_SCENARIO", "GENERATOR_VERSION", "RNG_BLOCK", "TRUTH", "generate",
           "simulate", "resolve_scenario"]
