"""Post-breach churn: predict which subscribers will leave after a data breach, and whom to call first.

Stages, one module each: ``records`` (load and validate subscriber records), ``simulate``
(a calibrated post-breach base), ``features`` (point-in-time features), ``prepare`` (column
typing for any churn table), ``model`` (candidate pipelines), ``train`` (selection and
calibration), ``evaluate`` (metrics and plots), ``explain`` (reasons), ``targeting``
(value and budgets), ``score`` (batch scoring and at-risk lists), ``tracking`` (MLflow)
and ``cli`` (the ``churn`` command).  Importing the package is cheap: heavy libraries load
inside the functions that need them.
"""

__version__ = "0.1.0"
