"""The scoring report: one self-contained HTML page from a list and its scoring summary.

``render(list_path, summary)`` reads the list ``churn score`` wrote (CSV or Parquet) and its
scoring summary (``pipeline.summary``, ``NAME.summary.json``) and returns one HTML page:
inline CSS, plots embedded as base64 PNG, no script and nothing fetched, so it opens from a
file anywhere.  Four parts: the breach's impact, the campaign, the model's health and the
first subscribers to call.  Every figure about the list is computed from the list itself
(``ListFigures``); what only the whole base knows (expected defections, segments, the curves)
comes from the summary.  Each figure carries ``data-key`` and ``data-value`` attributes, so a
test can check it against the list.

``write_report`` renders and writes the page (atomically) beside the list.  With
``ids=False`` the first-calls table leaves the subscriber ids out (the call order stays, so
the call list finds each row): that copy is the one logged to MLflow, which never holds an
identifier of a subscriber.  ``render_pages`` (and ``write_report(copy_without_ids=...)``)
renders both from one reading of the list.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import DataError

#: The list's columns the report reads.
LIST_COLUMNS = ("rank", "subscriber_id", "churn_probability", "risk_tier", "expected_loss", "reason_1", "reason_2",
                "reason_3", "action", "targeted", "do_not_contact", "group", "expected_net_value", "estimated_uplift",
                "expected_save", "expected_cost", "etf_waived")
_TEXT = ("subscriber_id", "risk_tier", "reason_1", "reason_2", "reason_3", "action", "group")


#: Rows of a list read at a time: the report's memory does not grow with the list.
LIST_BATCH_ROWS = 262_144


def read_list_batches(path: str | Path, batch_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """The columns of a list the report reads (CSV or Parquet), text blanks as ``""``, ``batch_rows``
    (``LIST_BATCH_ROWS``) rows at a time in the list's order; at least one batch."""
    batch_rows = batch_rows or LIST_BATCH_ROWS
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such list (give the file `churn score --output` wrote)")
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv"):
        raise DataError(f"{path}: unsupported list type {suffix!r} (expected .csv or .parquet)")
    try:
        if suffix == ".csv":
            header = pd.read_csv(path, nrows=0).columns
            columns = [c for c in LIST_COLUMNS if c in header]
            _check_list_columns(path, columns)
            read = partial(pd.read_csv, path, usecols=columns, dtype={c: "str" for c in _TEXT if c in header},
                           keep_default_na=False, na_values={c: [""] for c in header if c not in _TEXT})
            batches, empty = read(chunksize=batch_rows), read(nrows=0)
        else:
            import pyarrow.parquet as pq

            from pipeline._engine import parquet_batches

            source = pq.ParquetFile(path)
            columns = [c for c in LIST_COLUMNS if c in set(source.schema_arrow.names)]
            _check_list_columns(path, columns)
            batches = (batch.to_pandas() for batch in parquet_batches(source, batch_rows=batch_rows, columns=columns))
            empty = source.schema_arrow.empty_table().select(columns).to_pandas()
        for frame in _at_least_one(batches, empty):
            yield _normalise_list(frame)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read the list ({str(err).splitlines()[0]})") from err


def _at_least_one(items: Iterable, empty: Any) -> Iterator:
    """The items, or ``empty`` alone when there are none."""
    seen = False
    for item in items:
        seen = True
        yield item
    if not seen:
        yield empty


def _check_list_columns(path: Path, columns: list[str]) -> None:
    missing = [c for c in ("rank", "subscriber_id", "churn_probability", "risk_tier", "action", "targeted")
               if c not in columns]
    if missing:
        raise DataError(f"{path}: not a list written by `churn score` (no column {', '.join(missing)})")


def _normalise_list(frame: pd.DataFrame) -> pd.DataFrame:
    """Text blanks as ``""``, ``targeted`` and ``do_not_contact`` as booleans."""
    for name in _TEXT:
        if name in frame.columns:
            frame[name] = frame[name].fillna("").astype("str")
    for name in ("targeted", "do_not_contact"):
        if name in frame.columns:
            frame[name] = frame[name].astype("str").str.lower().isin(("true", "1")) \
                if frame[name].dtype != bool else frame[name]
    return frame


@dataclass
class ListFigures:
    """What a list says, computed from its rows (so the report equals the list)."""

    rows: int
    tiers: dict[str, int]
    targeted: int
    control: int
    contacted: int
    expected_saves: float
    expected_cost: float
    expected_net_value: float
    expected_loss: float
    do_not_contact: int
    actions: dict[str, int]
    calls: pd.DataFrame
    reasons: pd.DataFrame
    reasons_of: str
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_batches(cls, batches: Iterable[pd.DataFrame], *, first_rows: int = 0) -> ListFigures:
        """Count and add up a list read in batches (``read_list_batches``), in memory that does not
        grow with the list: the money columns, the reasons given and (with ``first_rows``) only the
        first ``first_rows`` calls are kept.  ``extra["watch"]`` holds the list's first
        ``first_rows`` rows."""
        from pipeline.lists import CALL_ORDER, REASON_COLUMNS, call_list

        rows, tiers, actions = 0, dict.fromkeys(("low", "medium", "high"), 0), pd.Series(dtype="int64")
        counts = dict.fromkeys(("targeted", "control", "contacted", "do_not_contact", "at_risk"), 0)
        money: dict[str, list[np.ndarray]] = {c: [] for c in ("expected_save", "expected_cost", "expected_net_value",
                                                               "expected_loss")}
        present: set[str] = set()
        calls, watch = [], []
        reasons: dict[str, dict[str, list[pd.Series]]] = {pool: {c: [] for c in REASON_COLUMNS}
                                                           for pool in ("contacted", "at_risk")}
        for listed in batches:
            present |= set(listed.columns)
            targeted = listed["targeted"].to_numpy(dtype=bool)
            control = (listed["group"].to_numpy(dtype=object) == "control" if "group" in listed
                       else np.zeros(len(listed), bool))
            contacted = targeted & ~control
            at_risk = listed["risk_tier"].isin(("medium", "high")).to_numpy(dtype=bool)
            rows += len(listed)
            for tier in tiers:
                tiers[tier] += int((listed["risk_tier"] == tier).sum())
            for name, where in (("targeted", targeted), ("control", control), ("contacted", contacted),
                                ("at_risk", at_risk)):
                counts[name] += int(where.sum())
            if "do_not_contact" in listed:
                counts["do_not_contact"] += int(listed["do_not_contact"].sum())
            for column, values in money.items():
                if column in listed:
                    where = slice(None) if column == "expected_loss" else contacted
                    values.append(listed[column].to_numpy(dtype="float64", na_value=np.nan)[where])
            for pool, where in (("contacted", contacted), ("at_risk", at_risk)):
                for column in REASON_COLUMNS:
                    if column in listed:
                        text = listed[column][where]
                        reasons[pool][column].append(text[text != ""])
            actions = actions.add(listed["action"].value_counts(), fill_value=0)
            called = call_list(listed)
            calls.append(called.head(first_rows) if first_rows else called)
            if not watch or sum(len(w) for w in watch) < first_rows:
                watch.append(listed.head(first_rows))

        def total(column: str) -> float:
            if column not in present:
                return float("nan")
            return float(np.nansum(np.concatenate(money[column])))

        pool = "contacted" if counts["contacted"] else "at_risk"
        texts = [piece for column in REASON_COLUMNS for piece in reasons[pool][column]]
        said = pd.concat(texts, ignore_index=True) if texts else pd.Series(dtype="str")
        table = (said.value_counts().rename_axis("reason").reset_index(name="subscribers").head(10)
                 if len(said) else pd.DataFrame(columns=["reason", "subscribers"]))
        table["share"] = table["subscribers"] / max(counts[pool], 1)
        called = call_list(pd.concat(calls, ignore_index=True).drop(columns=[CALL_ORDER]))
        called = called.head(first_rows) if first_rows else called
        figures = cls(
            rows=rows, tiers=tiers, targeted=counts["targeted"], control=counts["control"],
            contacted=counts["contacted"], expected_saves=total("expected_save"), expected_cost=total("expected_cost"),
            expected_net_value=total("expected_net_value"), expected_loss=total("expected_loss"),
            do_not_contact=counts["do_not_contact"],
            actions={str(k): int(v) for k, v in actions.items()},
            calls=called,
            reasons=table, reasons_of="the subscribers to call" if counts["contacted"] else "the subscribers at risk",
        )
        figures.extra["watch"] = pd.concat(watch, ignore_index=True).head(first_rows)
        return figures


# --------------------------------------------------------------------------------------
# Plots (matplotlib on the Agg canvas, as PNG with fixed metadata)
# --------------------------------------------------------------------------------------

def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _money_axis(axes, axis: str = "y") -> None:
    from matplotlib.ticker import FuncFormatter

    formatter = FuncFormatter(lambda v, _: _short(v))
    (axes.yaxis if axis == "y" else axes.xaxis).set_major_formatter(formatter)


def _short(value: float) -> str:
    """1,234,567 -> 1.2M (axis labels)."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{sign}{value / size:.3g}{unit}"
    return f"{sign}{value:.3g}"


def plot_value_curve(curves: dict, *, chosen_share: float | None, chosen_value: float | None, label: str):
    """Total expected net value against the share of the base contacted: by value (the campaign's order)
    and by risk (calling the riskiest first), the campaign's choice marked."""
    from pipeline.evaluate import HIGHLIGHT_COLOUR, MODEL_COLOUR, REFERENCE_COLOUR, new_figure

    figure = new_figure(6.4, 4.2)
    axes = figure.add_subplot()
    share = np.asarray(curves["share"], dtype="float64") * 100
    axes.plot(share, curves["by_value"], color=MODEL_COLOUR, lw=2, label="by expected net value (campaign order)")
    axes.plot(share, curves["by_risk"], color=REFERENCE_COLOUR, lw=1.5, ls="--", label="by churn risk (riskiest first)")
    axes.axhline(0, color="black", lw=0.6)
    if chosen_share is not None and chosen_value is not None:
        axes.plot([chosen_share * 100], [chosen_value], marker="o", ms=8, color=HIGHLIGHT_COLOUR, ls="none",
                  label=label)
    axes.set(xlabel="share of the base contacted (%)", ylabel="total expected net value",
             title="Campaign value against the share contacted")
    _money_axis(axes)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    return figure


def plot_segments(table: pd.DataFrame, *, baseline: pd.DataFrame | None = None):
    """Expected defections per segment level (one panel per segment), with 95% intervals."""
    from pipeline.evaluate import MODEL_COLOUR, REFERENCE_COLOUR, new_figure

    names = list(dict.fromkeys(table["segment"]))
    figure = new_figure(6.8, 1.2 + 1.5 * len(names))
    panels = figure.subplots(len(names), 1, squeeze=False)[:, 0]
    for axes, name in zip(panels, names):
        part = table[table["segment"] == name]
        y = np.arange(len(part))
        mean = part["expected_defections"].to_numpy(dtype="float64")
        low = mean - part["defections_low"].to_numpy(dtype="float64")
        high = part["defections_high"].to_numpy(dtype="float64") - mean
        axes.barh(y, mean, xerr=[np.maximum(low, 0), np.maximum(high, 0)], color=MODEL_COLOUR, alpha=0.85,
                  label="with the breach", height=0.6 if baseline is None else 0.4,
                  align="center" if baseline is None else "edge")
        if baseline is not None:
            base = baseline[baseline["segment"] == name].set_index("level")["expected_defections"]
            axes.barh(y - 0.4, base.reindex(part["level"]).fillna(0).to_numpy(), color=REFERENCE_COLOUR,
                      alpha=0.8, height=0.4, align="edge", label="baseline (no breach)")
        axes.set_yticks(y, part["level"].tolist(), fontsize=8)
        axes.invert_yaxis()
        axes.set_title(name.replace("_", " "), fontsize=9, loc="left")
        axes.grid(alpha=0.3, axis="x")
    panels[-1].set_xlabel("expected defections over the horizon (95% interval)")
    panels[0].legend(fontsize=7, loc="lower right")
    return figure


def plot_reliability(table: pd.DataFrame):
    """The churn model's calibration on its hold-out: observed against predicted churn, per bin."""
    from pipeline.evaluate import MODEL_COLOUR, REFERENCE_COLOUR, new_figure

    figure = new_figure(4.6, 4.2)
    axes = figure.add_subplot()
    predicted = table["mean_predicted"].to_numpy(dtype="float64")
    observed = table["observed_rate"].to_numpy(dtype="float64")
    upper = min(1.0, max(float(predicted.max()), float(observed.max()), 0.05) * 1.1)
    axes.plot([0, upper], [0, upper], color=REFERENCE_COLOUR, ls=":", lw=1, label="perfectly calibrated")
    axes.plot(predicted, observed, marker="o", color=MODEL_COLOUR, lw=2, label="model (hold-out bins)")
    axes.set(xlim=(0, upper), ylim=(0, upper), xlabel="predicted churn probability", ylabel="observed churn rate",
             title="Calibration (churn model, hold-out)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left")
    return figure


# --------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------

CSS = """
:root { --ink: #1f2933; --muted: #5f6b7a; --line: #d9dee5; --accent: #1f77b4; --warn: #b35c00; --bad: #c0392b; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; color: var(--ink);
       margin: 0; background: #f6f7f9; }
main { max-width: 72rem; margin: 0 auto; padding: 1.5rem 1.25rem 3rem; background: #fff; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; } h2 { font-size: 1.25rem; margin: 2.2rem 0 .6rem;
border-bottom: 2px solid var(--line); padding-bottom: .25rem; } h3 { font-size: 1rem; margin: 1.4rem 0 .4rem; }
p.lead { color: var(--muted); margin: 0 0 1rem; } nav a { margin-right: 1rem; color: var(--accent); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(13rem, 1fr)); gap: .75rem; margin: .6rem 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: .6rem .8rem; }
.card .label { color: var(--muted); font-size: .82rem; } .card .big { font-size: 1.35rem; font-weight: 600; }
.card .sub { color: var(--muted); font-size: .8rem; }
.table-wrap { overflow-x: auto; margin: .4rem 0 1rem; }
table { border-collapse: collapse; width: 100%; font-size: .86rem; }
th, td { padding: .3rem .5rem; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #eef1f5; position: sticky; top: 0; } tr:nth-child(even) td { background: #fafbfc; }
td.n, th.n { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.id { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; white-space: nowrap; }
figure { margin: .8rem 0 1.2rem; } figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: .82rem; }
.note { border-left: 4px solid var(--warn); background: #fff7ec; padding: .5rem .8rem; margin: .6rem 0; }
.warn { color: var(--warn); } .grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(22rem, 1fr));
gap: 1rem; align-items: start; }
footer { color: var(--muted); font-size: .8rem; margin-top: 2.5rem; }
"""


def _e(text: Any) -> str:
    return html.escape("" if text is None else str(text))


def _num(value: Any, kind: str = "count", currency: str = "") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if kind == "text" or isinstance(value, str):
        return str(value)
    if kind == "count":
        return f"{value:,.0f}"
    if kind == "money":
        return f"{value:,.0f}" + (f" {currency}" if currency else "")
    if kind == "percent":
        return f"{value:.1%}"
    if kind == "points":
        return f"{value * 100:.2f} pts"
    if kind == "probability":
        return f"{value:.3f}"
    if kind == "saves":
        return f"{value:,.1f}"
    return f"{value:,.4g}"


def _value(key: str, value: Any, kind: str = "count", currency: str = "") -> str:
    """A figure with its machine-readable twin (``data-key``, ``data-value``) for checking."""
    raw = "" if value is None else (repr(float(value)) if isinstance(value, (int, float, np.integer, np.floating))
                                    else str(value))
    return f'<span data-key="{_e(key)}" data-value="{_e(raw)}">{_e(_num(value, kind, currency))}</span>'


def _card(label: str, body: str, sub: str = "") -> str:
    return (f'<div class="card"><div class="label">{_e(label)}</div><div class="big">{body}</div>'
            + (f'<div class="sub">{sub}</div>' if sub else "") + "</div>")


def _figure_html(key: str, figure, caption: str) -> str:
    return (f'<figure data-plot="{_e(key)}"><img alt="{_e(caption)}" src="data:image/png;base64,{_png(figure)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _table(frame: pd.DataFrame, formats: dict[str, str], *, key: str = "", currency: str = "",
           headers: dict[str, str] | None = None, id_columns: tuple[str, ...] = ()) -> str:
    headers = headers or {}
    numeric = {c for c, kind in formats.items() if kind != "text"}
    def title(column: str) -> str:
        text = headers.get(column, column)
        return f"{text} ({currency})" if formats.get(column) == "money" and currency else text

    head = "".join(f'<th class="{"n" if c in numeric else ""}">{_e(title(c))}</th>' for c in frame.columns)
    body = []
    for i, row in enumerate(frame.itertuples(index=False)):
        cells = []
        for column, value in zip(frame.columns, row):
            kind = formats.get(column, "text")
            if kind == "text":
                css = "id" if column in id_columns else ""
                cells.append(f'<td class="{css}">{_e(value)}</td>')
            else:
                shown = _num(None if pd.isna(value) else value, kind)
                cells.append(f'<td class="n">{_e(shown)}</td>')
        body.append(f'<tr data-row="{_e(key)}.{i}">' + "".join(cells) + "</tr>")
    return (f'<div class="table-wrap"><table data-table="{_e(key)}"><thead><tr>{head}</tr></thead><tbody>'
            + "".join(body) + "</tbody></table></div>")


def _impact(summary: dict, figures: ListFigures, baseline: dict | None, currency: str, plots: list[str]) -> str:
    impact = summary.get("impact") or {}
    days = summary.get("horizon_days", 90)
    defections = impact.get("expected_defections") or {}
    loss = impact.get("expected_loss")
    parts = ['<section id="impact"><h2>Breach impact</h2>',
             f'<p class="lead">Over the next {days} days, if nobody is contacted: the sum of the calibrated '
             "probabilities (expected defections) and of the expected loss (probability x the value of a save) over "
             f"all {_e(_num(impact.get('subscribers', 0)))} subscribers scored.</p>", '<div class="cards">']
    level = f"{defections.get('level', 0.95):.0%}"
    parts.append(_card("Expected defections", _value("impact.expected_defections", defections.get("mean")),
                       f"{level} interval {_value('impact.defections_low', defections.get('low'))} to "
                       f"{_value('impact.defections_high', defections.get('high'))}"))
    if loss:
        parts.append(_card("Lifetime value they take", _value("impact.expected_loss", loss["mean"], "money", currency),
                           f"{level} interval {_value('impact.loss_low', loss['low'], 'money', currency)} to "
                           f"{_value('impact.loss_high', loss['high'], 'money', currency)}"))
        parts.append(_card("Fees forfeited through waivers",
                           _value("impact.etf_forgone", impact.get("etf_forgone"), "money", currency),
                           f"termination fees waived x probability of leaving; "
                           f"{impact.get('subscribers_with_waiver', 0):,} subscribers under a waiver"))
    parts.append(_card("In this list", _value("list.rows", figures.rows),
                       f"{_value('list.at_risk', figures.tiers['medium'] + figures.tiers['high'])} at risk "
                       f"(tier medium or high), expected loss {_value('list.expected_loss', figures.expected_loss, 'money', currency)}"))
    parts.append("</div>")
    if baseline is not None:
        base = (baseline.get("impact") or {}).get("expected_defections") or {}
        extra = (defections.get("mean") or 0) - (base.get("mean") or 0)
        base_loss = ((baseline.get("impact") or {}).get("expected_loss") or {}).get("mean")
        parts.append('<h3>Against the same base without the breach</h3><div class="cards">')
        parts.append(_card("Expected defections without the breach", _value("baseline.expected_defections",
                                                                             base.get("mean")),
                           f"{level} interval {_e(_num(base.get('low')))} to {_e(_num(base.get('high')))}"))
        parts.append(_card("Defections the breach adds", _value("baseline.excess_defections", extra),
                           f"{extra / max(base.get('mean') or 1, 1e-9):.0%} more than without it"))
        if loss and base_loss is not None:
            parts.append(_card("Value the breach adds to the loss",
                               _value("baseline.excess_loss", loss["mean"] - base_loss, "money", currency)))
        parts.append(f'</div><p class="lead">Baseline: the scoring summary of {_e(baseline.get("list", {}).get("file"))}'
                     " (the same subscribers scored without the breach, e.g. the simulator's no-breach scenario).</p>")
    segments = pd.DataFrame(summary.get("segments") or [])
    if len(segments):
        base_segments = pd.DataFrame((baseline or {}).get("segments") or []) if baseline is not None else None
        parts.append(_figure_html("segments", plot_segments(segments, baseline=base_segments if base_segments is not None
                                                            and len(base_segments) else None),
                                  "Expected defections by segment (contract, tenure band, exposure, plan), "
                                  "with 95% intervals"))
        plots.append("segments")
        shown = segments[["segment", "level", "subscribers", "expected_defections", "defections_low",
                          "defections_high", "churn_rate", "expected_loss", "etf_forgone", "at_risk"]]
        parts.append("<h3>By segment</h3>" + _table(
            shown, {"subscribers": "count", "expected_defections": "count", "defections_low": "count",
                    "defections_high": "count", "churn_rate": "percent", "expected_loss": "money",
                    "etf_forgone": "money", "at_risk": "count"}, key="segments", currency=currency,
            headers={"expected_defections": "expected defections", "defections_low": "low (95%)",
                     "defections_high": "high (95%)", "churn_rate": "expected churn", "expected_loss": "value lost",
                     "etf_forgone": "fees forfeited", "at_risk": "at risk"}))
    else:
        parts.append('<p class="note">No segment columns (contract, tenure, exposure, plan) were found in the '
                     "scored rows.</p>")
    parts.append(f'<p class="lead">Intervals: {_e(defections.get("method", ""))}.</p></section>')
    return "".join(parts)


_WHY = {
    "do_not_contact": "Do not contact: a contact is expected to push them out (estimated uplift below 0)",
    "lost_cause": "Lost causes: high risk, but a call is not expected to pay back (too little saved for its cost)",
    "not_worth": "Not worth a call: medium risk, the expected saves do not pay back the call and offer",
    "low_risk": "Low risk and not worth a call (not in an at-risk list)",
    "beyond_limit": "Worth a call, but beyond the budget or capacity",
}


def _campaign(summary: dict, figures: ListFigures, currency: str, plots: list[str]) -> str:
    """The campaign section: its figures, its value curves, who is not called and why, the top reasons."""
    campaign = summary.get("campaign") or {}
    targeting = campaign.get("targeting") or {}
    rule = targeting.get("rule", "all")
    limit = {"budget": f"a budget of {_num(targeting.get('limit'), 'money', currency)}",
             "capacity": f"a capacity of {_num(targeting.get('limit'))} calls",
             "all": "no limit (everyone worth a call)"}.get(rule, rule)
    parts = ['<section id="campaign"><h2>The campaign</h2>', _campaign_cards(campaign, figures, limit, currency)]
    if not campaign.get("response_measured"):
        parts.append(_assumed_response_note(campaign))
    if (campaign.get("value_curves") or {}).get("share"):
        parts.append(_campaign_plots(summary, campaign, limit, plots))
    parts.append(_why_not_called(summary, figures))
    parts.append(f"<h3>Top reasons among {_e(figures.reasons_of)}</h3>")
    if len(figures.reasons):
        parts.append(_table(figures.reasons, {"subscribers": "count", "share": "percent"}, key="reasons"))
    else:
        parts.append("<p>No reasons in the list.</p>")
    parts.append("</section>")
    return "".join(parts)


def _campaign_cards(campaign: dict, figures: ListFigures, limit: str, currency: str) -> str:
    """The campaign's basis and limit, and the contacted group's figures from the list, as cards."""
    basis = ("the response model's estimated uplift" if campaign.get("response_measured")
             else "an assumed response (no response model)")
    return "".join([
        f'<p class="lead">Targeting by {_e(basis)}, with {_e(limit)}; an offer of '
        f"{_e(campaign.get('offer_months'))} months of the monthly value. Figures for the contacted group "
        "(targeted, not held out as control), from the list.</p>", '<div class="cards">',
        _card("Subscribers to call", _value("campaign.contacted", figures.contacted),
              f"{_value('campaign.targeted', figures.targeted)} targeted, "
              f"{_value('campaign.control', figures.control)} held out as control"),
        _card("Expected saves", _value("campaign.expected_saves", figures.expected_saves, "saves"),
              "defections the contacts are expected to prevent"),
        _card("Expected cost", _value("campaign.expected_cost", figures.expected_cost, "money", currency)),
        _card("Expected net value", _value("campaign.expected_net_value", figures.expected_net_value, "money",
                                           currency)),
        "</div>"])


def _assumed_response_note(campaign: dict) -> str:
    """The warning shown when no response model was trained, with the pilot that would measure the response."""
    pilot = campaign.get("pilot_size")
    return ('<p class="note"><strong>The response is assumed.</strong> No response model was trained on a '
            "randomised campaign, so each contact is assumed to save "
            f"{_e(_num(campaign.get('acceptance_rate'), 'percent'))} of would-be churners, which favours the "
            "riskiest subscribers, often those a call cannot keep. "
            + (f"Run a randomised pilot first: {_value('campaign.pilot_size', pilot)} subscribers offered and "
               f"as many held out detect a {100 * (campaign.get('detectable_uplift') or 0):.1f}-point drop in "
               "churn with 80% power at 5% significance." if pilot else "") + "</p>")


def _campaign_plots(summary: dict, campaign: dict, limit: str, plots: list[str]) -> str:
    """The value curves with the campaign marked and, when there is one to show, the offer sweep."""
    curves = campaign["value_curves"]
    targeting = campaign.get("targeting") or {}
    n = max(summary.get("impact", {}).get("subscribers") or 1, 1)
    chosen_share = targeting.get("targeted", 0) / n
    label = f"the campaign: {targeting.get('targeted', 0):,} targeted ({limit})"
    parts = ['<div class="grid2">']
    parts.append(_figure_html("value_curve", plot_value_curve(curves, chosen_share=chosen_share,
                                                              chosen_value=targeting.get("expected_net_value"),
                                                              label=label),
                              "Total expected net value against the share of the base contacted, in the "
                              "campaign's order and calling the riskiest first; the dot is the campaign"))
    plots.append("value_curve")
    sweep = pd.DataFrame(campaign.get("offer_sweep") or [])
    if len(sweep) and sweep["worth_contacting"].sum() >= 0 and summary.get("valued", True):
        from pipeline.evaluate import plot_offer_sweep

        parts.append(_figure_html("offer_sweep", plot_offer_sweep(sweep, chosen_months=float(
            campaign.get("offer_months") or 0), measured=bool(campaign.get("response_measured"))),
            "Net value of contacting everyone worth it against the offer's size (the offer made marked); "
            "labels: subscribers worth a contact"))
        plots.append("offer_sweep")
    parts.append("</div>")
    return "".join(parts)


def _why_not_called(summary: dict, figures: ListFigures) -> str:
    """Why subscribers are not called: each reason's count in the whole base and among the list's rows."""
    from pipeline.targeting import (BEYOND_LIMIT_ACTION, DEFAULT_ACTION, DO_NOT_CONTACT, LOST_CAUSE_ACTION,
                                    NOT_WORTH_ACTION)

    why = summary.get("why_not_called") or {}
    listed = {"do_not_contact": figures.actions.get(DO_NOT_CONTACT, 0),
              "lost_cause": figures.actions.get(LOST_CAUSE_ACTION, 0),
              "not_worth": figures.actions.get(NOT_WORTH_ACTION, 0),
              "low_risk": figures.actions.get(DEFAULT_ACTION, 0),
              "beyond_limit": figures.actions.get(BEYOND_LIMIT_ACTION, 0)}
    rows = "".join(
        f"<tr><td>{_e(_WHY[k])}</td><td class='n'>{_value(f'why.base.{k}', why.get(k))}</td>"
        f"<td class='n'>{_value(f'why.list.{k}', listed[k])}</td></tr>" for k in _WHY)
    return ("<h3>Who is not worth a call, and why</h3>"
            '<div class="table-wrap"><table data-table="why"><thead><tr><th>why</th><th class="n">whole base</th>'
            f'<th class="n">rows in this list</th></tr></thead><tbody>{rows}</tbody></table></div>'
            '<p class="lead">Each untargeted row of the list says why in its action. A subscriber is worth a call '
            "when the expected saves times the value of a save exceed the contact and the offer.</p>")


def _health(summary: dict, currency: str, plots: list[str]) -> str:
    models = summary.get("models") or {}
    parts = ['<section id="health"><h2>Model health</h2>']
    data = summary.get("data") or {}
    parts.append(f'<p class="lead">Data scored: {_e(data.get("source"))}, snapshot '
                 f'{_value("data.snapshot_date", data.get("snapshot_date") or "not recorded", "text")}; scored '
                 f'{_e(summary.get("scored_at"))}.</p>')
    rows = []
    for kind in ("churn", "response"):
        card = models.get(kind)
        if not card:
            rows.append(f"<tr><td>{kind}</td><td colspan='5'>none: "
                        + ("targeting assumes the response" if kind == "response" else "") + "</td></tr>")
            continue
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in (card.get("metrics") or {}).items())
        trained = card.get("data") or {}
        lineage = ", ".join(x for x in (
            f"sha256 {trained['content_sha256'][:12]}" if trained.get("content_sha256") else "",
            f"{trained['rows']:,} rows" if trained.get("rows") else "",
            f"snapshot {trained['snapshot_date']}" if trained.get("snapshot_date") else "") if x)
        rows.append(f"<tr><td>{kind}</td><td>{_e(card.get('name', card.get('uri')))} "
                    f"{_value(f'models.{kind}.version', card.get('version'), 'text')}"
                    f"{' (' + ', '.join(card.get('aliases') or []) + ')' if card.get('aliases') else ''}</td>"
                    f"<td>{_e(card.get('family'))}</td><td>{_e(metrics)}</td><td>{_e(lineage)}</td>"
                    f"<td>{_e(card.get('trained_at'))}</td></tr>")
    parts.append('<div class="table-wrap"><table data-table="models"><thead><tr><th>model</th><th>version</th>'
                 "<th>family</th><th>hold-out metrics</th><th>trained on</th><th>trained</th></tr></thead><tbody>"
                 + "".join(rows) + "</tbody></table></div>")
    parts.append(f"<p>Base rate (training churn rate): {_value('models.base_rate', summary.get('base_rate'), 'percent')}."
                 "</p>")
    reliability = pd.DataFrame(((models.get("churn") or {}).get("reliability")) or [])
    drift = summary.get("drift") or {}
    parts.append('<div class="grid2">')
    if len(reliability):
        parts.append(_figure_html("calibration", plot_reliability(reliability),
                                  "Calibration of the churn model on its hold-out: observed against predicted churn"))
        plots.append("calibration")
    else:
        parts.append('<p class="note">No calibration table was logged with the churn model\'s run.</p>')
    warnings = drift.get("warnings") or []
    psi = drift.get("psi") or {}
    block = ["<div><h3>Drift</h3>"]
    if warnings:
        block.append("<ul>" + "".join(f'<li class="warn">{_e(w)}</li>' for w in warnings) + "</ul>")
    else:
        block.append(f"<p>No input drifts beyond a population stability index of {_e(drift.get('threshold'))}.</p>")
    if psi:
        top = pd.DataFrame({"input": list(psi)[:8], "PSI": list(psi.values())[:8]})
        block.append(_table(top, {"PSI": "other"}, key="psi"))
    block.append("</div>")
    parts.append("".join(block) + "</div></section>")
    return "".join(parts)


def _calls(figures: ListFigures, summary: dict, currency: str, rows: int, ids: bool = True) -> str:
    calls = figures.calls.head(rows)
    measured = (summary.get("campaign") or {}).get("response_measured")
    parts = ['<section id="calls">']
    if len(calls):
        parts.append(f"<h2>The first {len(calls):,} subscribers to call</h2>"
                     '<p class="lead">In call order: the largest expected net value first, so a team that stops '
                     "early has made the calls worth most. "
                     + ("Ids only; no personal data.</p>" if ids else
                        "Subscriber ids are left out of this copy (the one kept in MLflow): the call "
                        "order finds each row in the call list.</p>"))
        shown = calls
    else:
        parts.append("<h2>Nobody to call with this offer</h2>"
                     '<p class="lead">No subscriber is expected to pay back a contact. The first subscribers of the '
                     "list (by expected loss) are shown as a watch list: their action says why they are not called."
                     "</p>")
        shown = figures.extra["watch"]
    table = pd.DataFrame({
        "#": shown["call_order"] if len(calls) else shown["rank"],
        **({"subscriber": shown["subscriber_id"]} if ids else {}), "tier": shown["risk_tier"], "probability": shown["churn_probability"],
        **({"uplift": shown["estimated_uplift"]} if measured and "estimated_uplift" in shown else {}),
        "net value": shown["expected_net_value"] if "expected_net_value" in shown else np.nan,
        "reasons": ["; ".join(r for r in (a, b, c) if r) for a, b, c in
                    zip(shown.get("reason_1", ""), shown.get("reason_2", ""), shown.get("reason_3", ""))],
        "action": shown["action"]})
    parts.append(_table(table, {"#": "count", "probability": "probability", "uplift": "points",
                                "net value": "money"}, key="calls" if len(calls) else "watch", currency=currency,
                        id_columns=("subscriber",)))
    parts.append("</section>")
    return "".join(parts)


def render(list_path: str | Path, summary: dict, *, baseline: dict | None = None, first_calls: int = 50,
           ids: bool = True) -> str:
    """The report page for the list at ``list_path`` and its scoring summary (and a no-breach ``baseline`` summary);
    ``ids=False`` leaves subscriber ids out."""
    return render_pages(list_path, summary, baseline=baseline, first_calls=first_calls, ids=(ids,))[ids]


def render_pages(list_path: str | Path, summary: dict, *, baseline: dict | None = None, first_calls: int = 50,
                 ids: tuple[bool, ...] = (True, False)) -> dict[bool, str]:
    """The report page with subscriber ids (``True``) and without (``False``), from one reading of the list.

    The list's figures and the plots are computed once; only the first-calls table differs.
    """
    figures = ListFigures.of_batches(read_list_batches(list_path), first_rows=first_calls)
    currency = summary.get("currency") or ""
    plots: list[str] = []
    models = summary.get("models") or {}
    churn = models.get("churn") or {}
    response = models.get("response") or {}
    title = f"Post-breach churn: {Path(list_path).name}"
    header = (f"<h1>{_e(title)}</h1><p class=\"lead\">{_value('impact.subscribers', (summary.get('impact') or {}).get('subscribers'))} "
              f"subscribers scored {_e(summary.get('scored_at'))} with churn model version {_e(churn.get('version'))}"
              + (f" and response model version {_e(response.get('version'))}" if response else " (no response model)")
              + f"; data snapshot {_e((summary.get('data') or {}).get('snapshot_date') or 'not recorded')}; money in "
              f"{_e(currency or 'the value column currency')}.</p>"
              '<nav><a href="#impact">Breach impact</a><a href="#campaign">The campaign</a>'
              '<a href="#health">Model health</a><a href="#calls">First calls</a></nav>')
    body = "".join([header, _impact(summary, figures, baseline, currency, plots),
                    _campaign(summary, figures, currency, plots), _health(summary, currency, plots)])
    footer = (f"<footer>Written by <code>churn report</code> from {_e(Path(list_path).name)} and its scoring summary "
              f"(scoring run {_e(summary.get('run_id'))}). Plots: {_e(', '.join(plots))}.</footer>")
    top = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
           f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main data-plots=\"{_e(','.join(plots))}\">")
    return {with_ids: top + body + _calls(figures, summary, currency, first_calls, with_ids) + footer
            + "</main></body></html>\n" for with_ids in ids}


def write_report(list_path: str | Path, summary: dict, *, out_dir: str | Path | None = None,
                 baseline: dict | None = None, first_calls: int = 50, ids: bool = True,
                 copy_without_ids: str | Path | None = None) -> Path:
    """Render the report and write it as ``NAME.report.html`` in ``out_dir`` (default: beside the list);
    ``ids=False`` leaves subscriber ids out (the copy for MLflow).

    ``copy_without_ids``: a folder that also receives the page without subscriber ids, from the
    same rendering (the list is read and the plots drawn once).
    """
    from pipeline.summary import write_text

    list_path = Path(list_path)
    folder = Path(out_dir) if out_dir is not None else list_path.parent
    copy = None if copy_without_ids is None else Path(copy_without_ids)
    for where in (folder, copy):
        if where is not None and not where.is_dir():
            raise DataError(f"{where}: no such folder for the report")
    pages = render_pages(list_path, summary, baseline=baseline, first_calls=first_calls,
                         ids=(ids,) if copy is None else (ids, False))
    name = f"{list_path.stem}.report.html"
    if copy is not None:
        write_text(pages[False], copy / name)
    return write_text(pages[ids], folder / name)
