"""Post-breach churn: predict which subscribers will leave after a data breach, and whom to call first.

Stages, one module each: ``records`` (load and validate subscriber records), ``simulate``
(a calibrated post-breach base), ``features`` (point-in-time features), ``prepare`` (column
typing for any churn table), ``model`` (candidate pipelines), ``train`` (selection and
calibration), ``evaluate`` (metrics and plots), ``explain`` (reasons), ``targeting``
(value and budgets), ``score`` (batch scoring and at-risk lists), ``tracking`` (MLflow)
and ``cli`` (the ``churn`` command).  Importing the package is cheap: heavy libraries load
inside the functions that need them.
"""

import os

# OpenMP threads (scikit-learn's HistGradientBoosting, BLAS) sleep instead of spinning while
# they wait for work: on a shared two-core machine a spinning pool cost 4 to 15 times the CPU
# of the same fits (docs/BENCHMARKS.md, "Training speed"; benchmarks/omp_wait.py).  Set before
# any OpenMP runtime loads; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# MLflow 3 sends usage telemetry by default: each process that imports it fetches a
# configuration from mlflow-telemetry.io and then posts records of the calls it makes
# (log_model, register_model, ...).  A breached company's analytics do not phone home, and
# this tool runs offline: telemetry is off unless the user set MLFLOW_DISABLE_TELEMETRY
# (MLflow reads it once, when it is first imported, so this must come before that).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

__version__ = "0.1.0"
