"""Logging: one JSON object per line with every ``extra=`` field kept, and secrets masked.

The stdlib's ``logging`` with a formatter that renders ``extra`` (no second logging library):
a record's own attributes beyond the standard ``LogRecord`` ones are its fields, so
``logger.info("klaviyo retry scheduled", extra={"endpoint": ..., "retry_wait": 2.0})`` comes out
with ``endpoint`` and ``retry_wait`` as keys. On a terminal the same fields follow the message
as ``key=value``. Secrets travel as ``SecretStr`` everywhere; :class:`RedactSecrets`, masking
the finished line, is the last line of defence, should a library ever log a header or a URL
that carries one.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import Any, Final

import orjson

from .redact import MASK, mask_authorization

#: Attributes every ``LogRecord`` has; anything else on a record came from ``extra=``
#: (except uvicorn's ``color_message``, the same message with terminal colour codes).
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message"}
)
#: Libraries that would log one line per Klaviyo request at INFO.
_CHATTY: Final = ("httpx", "httpcore")


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of a record."""
    return {key: value for key, value in vars(record).items() if key not in _STANDARD}


class RedactSecrets(logging.Formatter):
    """Renders with ``inner`` and masks, in the finished line, every known secret value (as it
    is and as JSON escapes it) and any value of an Authorization header: one pass over one
    string, whatever the message, the fields or the traceback held."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self.inner = inner
        needles = {s for s in secrets if s}
        needles |= {orjson.dumps(s).decode()[1:-1] for s in needles}
        self.needles = sorted(needles, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        for needle in self.needles:
            if needle in text:
                text = text.replace(needle, MASK)
        return mask_authorization(text)


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", **fields, "exception"?}`` on one line."""

    _second = -1
    _stamp = ""

    def _time(self, created: float) -> str:
        # One strftime a second: the service logs a line per request.
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(created))
        return self._stamp

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(fields_of(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line, default=repr).decode()


class TextFormatter(logging.Formatter):
    """For a terminal: the usual line, then the fields as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = fields_of(record)
        if not fields:
            return text
        head, newline, tail = text.partition("\n")  # keep a traceback below the fields
        pairs = " ".join(f"{key}={value}" for key, value in fields.items())
        return f"{head} {pairs}{newline}{tail}"


def configure(secrets: Iterable[str], level: str = "INFO", *, json: bool | None = None) -> None:
    """Install the handler on the root logger (idempotent: replaces our earlier handler)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.set_name("klaviyo-destination")
    use_json = not sys.stdout.isatty() if json is None else json
    handler.setFormatter(RedactSecrets(JsonFormatter() if use_json else TextFormatter(), secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == handler.get_name():
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
