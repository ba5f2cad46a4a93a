"""The call-centre answer over REST: probability, tier, reasons and action for each subscriber.

A small MLflow pyfunc *wrapper* around the registered models, logged as "models from code"
(this file, not a pickle) and registered beside them as ``<model name>-service`` by
``churn train``.  ``mlflow models serve -m models:/post-breach-churn-service@champion`` serves
it (``docs/scaling.md``, *REST*).  When the server starts, the wrapper loads the churn
model's ``champion`` (and the response model's, when one is registered) through
``pipeline.tracking.load_model``, so the files are checked against their recorded hash as for
``churn score``; the tracking store is the server's ``MLFLOW_TRACKING_URI``.

Each request row is a subscriber as ``churn score`` takes them: a row of the table the
model was trained on, or for record models a row of ``churn features`` (its features, the
id, ``monthly_fee``, ``early_termination_fee`` and ``etf_waiver_forgives``).  The answer per
row is what the list says for that subscriber in a campaign without a budget or capacity
(everyone worth a contact is targeted): ``subscriber_id``, ``churn_probability``,
``risk_tier``, ``reason_1..3``, ``action``, ``targeted`` (worth a contact),
``do_not_contact``, ``estimated_uplift``, ``expected_net_value``, ``expected_loss``,
``model_version`` and ``response_model_version``.  Every row is explained.
"""

from __future__ import annotations

import json
import os
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

#: The answer's columns, in order.
ANSWER_COLUMNS = ("subscriber_id", "churn_probability", "risk_tier", "reason_1", "reason_2", "reason_3", "action",
                  "targeted", "do_not_contact", "estimated_uplift", "expected_net_value", "expected_loss",
                  "model_version", "response_model_version")


class ChurnService(PythonModel):
    """Scores request rows with the registered champions, as one row of ``churn score``'s list each."""

    def load_context(self, context) -> None:
        """Load the churn model (and the response model, when registered), checked, from the registry."""
        from pipeline import tracking
        from pipeline.config import Config, config_from_dict
        from pipeline.jobs import response_scorer, scoring_model

        settings = dict(context.model_config or {})
        uri = os.environ.get("MLFLOW_TRACKING_URI") or settings.get("tracking_uri")
        if not uri:
            raise RuntimeError("set MLFLOW_TRACKING_URI to the store that holds the registered models")
        tracking.connect(uri)
        values = json.loads(settings.get("config") or "{}")
        self.config = config_from_dict(values, "the service's configuration") if values else Config()
        self.scoring = scoring_model(tracking.load_model(settings["churn_model"]))
        self.scoring.response = response_scorer(self.config, settings.get("response_model"),
                                                bool(settings.get("response_model")), lambda message: None)

    def predict(self, context, model_input, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One answer row per request row (``ANSWER_COLUMNS``)."""
        return answer(self.scoring, pd.DataFrame(model_input), self.config)


def answer(scoring, rows: pd.DataFrame, config) -> pd.DataFrame:
    """What the list says for each of ``rows`` (request rows, as ``churn score`` takes them)."""
    from pipeline.dataset import table_dataset
    from pipeline.inputs import with_waiver
    from pipeline.score import explain_rows, score_dataset
    from pipeline.targeting import list_actions

    roles = scoring.contract.roles()
    id_column = roles["id"] if roles["id"] in rows.columns else None
    value_column = roles["value"] if roles["value"] in rows.columns else None
    frame = rows.drop(columns=[c for c in (scoring.label_column,) if c and c in rows.columns])
    dataset = table_dataset(frame.reset_index(drop=True), id_column=id_column, target=None,
                            value_column=value_column, source="request", require_label=False)
    if id_column is None:
        dataset.ids = pd.Series(np.arange(1, len(frame) + 1).astype(str), name="subscriber_id")
    if scoring.mode == "records":
        dataset = with_waiver(dataset)
    out = score_dataset(scoring, dataset, config, explain=False)
    explain_rows(scoring, out, np.arange(len(out)), dataset.frame, config)
    worth = out["expected_net_value"].to_numpy(dtype="float64") > 0
    targeted = worth & ~out["do_not_contact"].to_numpy(dtype=bool)
    out["targeted"] = targeted
    out["action"] = list_actions(out["action"].to_numpy(dtype=object), targeted=targeted,
                                 do_not_contact=out["do_not_contact"].to_numpy(dtype=bool),
                                 risk_tier=out["risk_tier"].to_numpy(dtype=object),
                                 expected_net_value=out["expected_net_value"].to_numpy(dtype="float64"))
    answer = out[list(ANSWER_COLUMNS)].copy()
    for column in ("reason_1", "reason_2", "reason_3", "action", "risk_tier", "subscriber_id"):
        answer[column] = answer[column].astype("str")
    return answer


mlflow.models.set_model(ChurnService())
