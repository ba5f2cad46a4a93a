"""The project's own exceptions.  The CLI turns each into one ``error:`` line."""

from __future__ import annotations

import re


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


def caused_by_interrupt(err: BaseException | None) -> bool:
    """Whether an interrupt lies in ``err``'s chain.

    A library that catches it while it loads (pybind11 modules turn it into ``ImportError: initialization
    failed``) or an error wrapped ``from`` it must not hide that the user stopped the command.
    """
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def first_rows(labels, limit: int = 5) -> str:
    """Format the first few offending row labels, e.g. ``rows 3, 7, 9 (and 12 more)``."""
    labels = list(labels)
    shown = ", ".join(str(label) for label in labels[:limit])
    more = f" (and {len(labels) - limit} more)" if len(labels) > limit else ""
    noun = "row" if len(labels) == 1 else "rows"
    return f"{noun} {shown}{more}"


def repeated_ids_error(ids) -> DataError:
    """The error for subscriber ids that appear more than once in one input, naming the first few."""
    return DataError("subscriber ids repeat across the input: "
                     + first_rows(ids).replace("rows ", "").replace("row ", ""))


_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/?#@]*(?:@[^\s/?#@]*)*)@")
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;](?:password|passwd|pwd|pass|token|access_token|secret|api_key|apikey|access_key|sslpassword)=)"
    r"[^&;#\s]*",
    re.IGNORECASE,
)


def hide_credentials(text: object) -> str:
    """``text`` with the password of every URL in it replaced by ``***``.

    ``scheme://user:password@host`` becomes ``scheme://user:***@host`` wherever it occurs
    (a message may quote a URL inside other text), and secret query parameters such as
    ``?password=...`` or ``&token=...`` lose their values.  A password holding an unescaped
    ``@`` is hidden whole: the user part ends at the first ``:`` and the host starts after
    the last ``@``.  Used by every message that may show a URL and by what reaches MLflow.

    Parameters
    ----------
    text : object
        A URL, a path or any message (converted with ``str``).

    Returns
    -------
    str
        The text with credentials masked; unchanged when it holds none.
    """

    def mask(match: re.Match) -> str:
        user, colon, _password = match.group("userinfo").partition(":")
        return f"{match.group('scheme')}{user}{':***' if colon else ''}@"

    return _SECRET_QUERY.sub(r"\g<key>***", _URL_USERINFO.sub(mask, str(text)))


def one_line(err: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type when empty), credentials hidden, at most ``limit`` characters."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    text = hide_credentials(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
