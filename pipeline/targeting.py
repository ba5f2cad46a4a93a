"""The economics of retention: lifetime value, expected loss, and whom to target for a budget."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import CampaignConfig


def monthly_discount_rate(annual_rate: float) -> float:
    """The monthly rate equivalent to a yearly discount rate."""
    return (1.0 + annual_rate) ** (1.0 / 12.0) - 1.0


def clv(monthly_value, campaign: CampaignConfig):
    """Customer lifetime value from the monthly value (Gupta and Lehmann 2003).

    ``CLV = m * r / (1 + i - r)`` per month, with margin ``m = margin * monthly value``,
    monthly retention ``r`` and the monthly discount rate ``i``.  With KRW 30,000 a month,
    a 40% margin, 1% monthly churn and a 10% yearly discount this is about KRW 660,000.
    """
    r = campaign.monthly_retention
    i = monthly_discount_rate(campaign.annual_discount_rate)
    margin = campaign.margin * np.asarray(monthly_value, dtype="float64")
    value = margin * r / (1.0 + i - r)
    if isinstance(monthly_value, pd.Series):
        return pd.Series(value, index=monthly_value.index, name="clv")
    return value
