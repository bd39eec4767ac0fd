"""Remove personal data from log output, including the text of logged exceptions.

Log calls pass ids, never personal data, but an exception's text can quote the data it failed on:
PostgreSQL's DETAIL repeats the key or row ("Key (cpf)=(...) already exists", "Failing row
contains (...)"), pydantic repeats the invalid input, and a partner's error can echo an address.
`RedactingFormatter` therefore rebuilds every exception text from safe parts and then replaces
anything shaped like a CPF, an e-mail address or a phone number with `[redacted]`.

NOTE: no pattern matches a full name, so names are removed only where a text is known to quote
data: PostgreSQL DETAIL, the quoted value of a data exception, an asyncpg query argument and a
pydantic input. A name in any other exception message reaches the log.
"""

import logging
import re
import traceback
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import asyncpg
import pydantic_core

REDACTED = "[redacted]"

# A CPF formatted (123.456.789-09) or as 11 bare digits, not part of a longer word or number.
_CPF = r"(?<![\w.-])\d{3}\.?\d{3}\.?\d{3}-?\d{2}(?![\w-])"
_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
# Brazilian phone numbers: "+55 (11) 98765-4321", "11 98765 4321", "98765-4321", "+5511987654321",
# "1187654321". Any other number of 10 or 11 digits, such as a Unix time in seconds, is redacted as well.
_PHONE = (
    r"(?<![\w-])(?:"
    r"(?:\+55[\s.-]?)?\(?\d{2}\)?[\s.-]?9?\d{4}[\s-]\d{4}"
    r"|9?\d{4}-\d{4}"
    r"|\+?(?:55)?\d{10,11}"
    r")(?![\w-])"
)
_PERSONAL_DATA = re.compile(f"{_CPF}|{_EMAIL}|{_PHONE}")

# PostgreSQL data exceptions (SQLSTATE class 22) quote the rejected value, as in
# 'invalid input syntax for type uuid: "..."'.
_QUOTED_VALUE = re.compile(r'"(?:[^"]|"")*"')
# asyncpg reports a Python value it cannot encode as "invalid input for query argument $2: <repr> (<cause>)",
# raised as asyncpg.DataError (a PostgresError with SQLSTATE 22000) from the encoder's error.
_QUERY_ARGUMENT = re.compile(r"^(invalid input for query argument \$\d+(?: in element #\d+ of executemany\(\) sequence)?):.*", re.S)

# PostgreSQL names the objects involved in these fields; they help operators and contain no personal data.
_POSTGRES_IDS = ("schema_name", "table_name", "column_name", "constraint_name", "data_type_name")

_CAUSE_SEPARATOR = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT_SEPARATOR = "\nDuring handling of the above exception, another exception occurred:\n\n"


def redact(text: str) -> str:
    """Replace every CPF, e-mail address and phone number in `text` with `[redacted]`."""
    return _PERSONAL_DATA.sub(REDACTED, text)


def safe_error_text(error: BaseException) -> str:
    """Return the text of `error` without the parts that quote the data it failed on."""
    if isinstance(error, asyncpg.PostgresError):
        return _postgres_text(error)
    if isinstance(error, asyncpg.InterfaceError):
        return _asyncpg_message(error)
    if isinstance(error, pydantic_core.ValidationError):
        return _validation_text(error)
    try:
        return str(error)
    except Exception:
        return f"<{type(error).__name__}: str() failed>"


def _asyncpg_message(error: asyncpg.PostgresError | asyncpg.InterfaceError) -> str:
    message = str(error.args[0]) if error.args else ""
    return _QUERY_ARGUMENT.sub(r"\1: (value withheld)", message)


def _postgres_text(error: asyncpg.PostgresError) -> str:
    message = _asyncpg_message(error)
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate and sqlstate.startswith("22"):
        message = _QUOTED_VALUE.sub("(value withheld)", message)

    fields = [f"sqlstate={sqlstate}"]
    fields += [f"{name.removesuffix('_name')}={getattr(error, name)}" for name in _POSTGRES_IDS if getattr(error, name, None)]
    if getattr(error, "detail", None):
        fields.append("detail withheld")
    return f"{message} ({' '.join(fields)})"


def _validation_text(error: pydantic_core.ValidationError) -> str:
    problems = [
        f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']} [type={item['type']}]"
        for item in error.errors(include_url=False, include_context=False, include_input=False)
    ]
    return f"{error.error_count()} validation error(s) for {error.title}: " + "; ".join(problems)


def _withholds_cause_text(error: BaseException) -> bool:
    # asyncpg raises this error from the encoder's own error, whose text may quote the value too.
    if not isinstance(error, asyncpg.PostgresError | asyncpg.InterfaceError) or not error.args:
        return False
    return _QUERY_ARGUMENT.match(str(error.args[0])) is not None


def format_exception_safely(error: BaseException) -> str:
    """Format `error` and its chain as `traceback` does, with `safe_error_text` in place of each text."""
    return "".join(_chain_lines(error, seen=set(), text_withheld=False))


def _chain_lines(error: BaseException, seen: set[int], text_withheld: bool) -> list[str]:
    seen.add(id(error))
    lines: list[str] = []

    cause, context = error.__cause__, error.__context__
    if cause is not None and id(cause) not in seen:
        lines += _chain_lines(cause, seen, _withholds_cause_text(error))
        lines.append(_CAUSE_SEPARATOR)
    elif context is not None and not error.__suppress_context__ and id(context) not in seen:
        lines += _chain_lines(context, seen, False)
        lines.append(_CONTEXT_SEPARATOR)

    if error.__traceback__ is not None:
        lines.append("Traceback (most recent call last):\n")
        lines += traceback.format_tb(error.__traceback__)
    text = "(text withheld)" if text_withheld else safe_error_text(error)
    lines.append(f"{_qualified_name(type(error))}: {text}\n")

    if isinstance(error, BaseExceptionGroup):
        for number, member in enumerate(error.exceptions, start=1):
            member_text = "".join(_chain_lines(member, seen, False))
            lines.append(f"  +---- sub-exception {number} ----\n")
            lines += ["  | " + line + "\n" for line in member_text.splitlines()]
    return lines


def _qualified_name(kind: type[BaseException]) -> str:
    if kind.__module__ in ("builtins", "__main__"):
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


class _SafeError:
    """Stand-in for an exception passed as a log argument, so `%s` and `%r` print its safe text."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __str__(self) -> str:
        return safe_error_text(self.error)

    def __repr__(self) -> str:
        return f"{type(self.error).__name__}({safe_error_text(self.error)!r})"


def _safe_argument(value: Any) -> Any:
    return _SafeError(value) if isinstance(value, BaseException) else value


def safe_message(record: logging.LogRecord) -> str:
    """Return the record's message as `getMessage` builds it, with exceptions in safe form and personal data redacted."""
    message = safe_error_text(record.msg) if isinstance(record.msg, BaseException) else str(record.msg)
    arguments = record.args
    if isinstance(arguments, Mapping):
        message = message % {key: _safe_argument(value) for key, value in arguments.items()}
    elif arguments:
        message = message % tuple(_safe_argument(value) for value in arguments)
    return redact(message)


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class RedactingFormatter(logging.Formatter):
    """`logging.Formatter` that writes exceptions with `safe_error_text` and redacts the whole message.

    It never reads or fills `record.exc_text`, because another formatter may have cached the
    unredacted text there.
    """

    def format(self, record: logging.LogRecord) -> str:
        record.message = safe_message(record)
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)

        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + redact(self.formatStack(record.stack_info))
        return text

    def formatException(self, ei: ExcInfo) -> str:  # noqa: N802 (logging's name)
        error = ei[1]
        if error is None:
            return super().formatException(ei)
        return redact(format_exception_safely(error).rstrip("\n"))
