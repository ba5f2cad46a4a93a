"""The project's own exceptions.  The CLI turns each into one ``error:`` line."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error the pipeline reports to a user."""


class ConfigError(PipelineError):
    """The configuration or the command-line options are invalid."""


class DataError(PipelineError):
    """Input data is missing, unreadable or violates the expected schema.

    Messages name the file or table, the column, the first offending rows and what was
    expected, so that a user can find and fix the record.
    """


class ModelError(PipelineError):
    """A model cannot be trained, loaded or applied to the given data."""


class TrackingError(PipelineError):
    """The MLflow tracking store or model registry cannot be used."""


def first_rows(labels, limit: int = 5) -> str:
    """Format the first few offending row labels, e.g. ``rows 3, 7, 9 (and 12 more)``."""
    labels = list(labels)
    shown = ", ".join(str(label) for label in labels[:limit])
    more = f" (and {len(labels) - limit} more)" if len(labels) > limit else ""
    noun = "row" if len(labels) == 1 else "rows"
    return f"{noun} {shown}{more}"
