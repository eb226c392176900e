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
from typing import Any, Final, TextIO

import orjson

from .redact import MASK, mask_authorization

#: Attributes every ``LogRecord`` has; anything else on a record came from ``extra=``
#: (except uvicorn's ``color_message``, the same message with terminal colour codes).
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message"}
)
#: Libraries that would log one line per Klaviyo request at INFO.
_CHATTY: Final = ("httpx", "httpcore", "aiohttp")


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
        return self.mask(self.inner.format(record))

    def mask(self, text: str) -> str:
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
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        return self.render(
            record.created,
            record.levelname,
            record.name,
            message,
            fields_of(record),
            record.exc_text,
        )

    def render(
        self,
        created: float,
        level_name: str,
        logger: str,
        message: str,
        fields: dict[str, Any],
        exception: str | None = None,
    ) -> str:
        """The line of a record with these attributes (``log_fields`` has no record)."""
        line: dict[str, Any] = {
            "time": self._time(created),
            "level": level_name.lower(),
            "logger": logger,
            "message": message,
        }
        line.update(fields)
        if exception:
            line["exception"] = exception
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


class LineHandler(logging.StreamHandler[TextIO]):
    """The service's handler: a ``StreamHandler`` that :func:`log_fields` may also write to."""


def log_fields(
    logger: logging.Logger, level: int, fields: dict[str, Any], msg: str, *args: object
) -> None:
    """``logger.log(level, msg, *args, extra=fields)``, written straight to the service's JSON
    handler when it is the only handler to see the line: the same line, without the
    ``LogRecord`` (its caller look-up, thread and process names), the handler chain and the
    formatter's sorting of a record's attributes, which were most of a line's cost (one line a
    request; bench/optimisations.md). Anything else installed (a filter, a second handler,
    pytest's capture, the terminal format) gets the record, through ``logger.log``."""
    if not logger.isEnabledFor(level):
        return  # LOG_LEVEL (or logging.disable) drops the line, as logger.log would
    handler = _sole_json_handler(logger, level, fields)
    if handler is None:
        logger.log(level, msg, *args, extra=fields, stacklevel=2)
        return
    formatter = handler.formatter
    assert isinstance(formatter, RedactSecrets)  # noqa: S101 -- _sole_json_handler checked it
    assert isinstance(formatter.inner, JsonFormatter)  # noqa: S101
    handler.acquire()  # as Handler.handle: one line at a time, the formatter's clock included
    try:
        try:
            message = msg % args if args else msg
            line = formatter.inner.render(
                time.time(), logging.getLevelName(level), logger.name, message, fields
            )
            handler.stream.write(formatter.mask(line) + handler.terminator)
            handler.flush()
        except RecursionError:  # as StreamHandler.emit
            raise
        except Exception:  # as StreamHandler.emit: reported, never raised
            record = logger.makeRecord(
                logger.name, level, "(unknown file)", 0, msg, args, None, extra=fields
            )
            handler.handleError(record)
    finally:
        handler.release()


def _sole_json_handler(
    logger: logging.Logger, level: int, fields: dict[str, Any]
) -> LineHandler | None:
    """The handler ``configure`` installed with the JSON format, when ``logger.log`` would
    hand the record to it alone, unfiltered, with no field that ``extra=`` refuses."""
    if logger.filters or not _STANDARD.isdisjoint(fields):
        return None
    found: logging.Handler | None = None
    node: logging.Logger | None = logger
    while node is not None:  # as Logger.callHandlers walks
        for handler in node.handlers:
            if found is not None:
                return None
            found = handler
        if not node.propagate:
            break
        node = node.parent
    if type(found) is not LineHandler or found.filters or level < found.level:
        return None
    formatter = found.formatter
    if type(formatter) is not RedactSecrets or type(formatter.inner) is not JsonFormatter:
        return None
    return found


def configure(secrets: Iterable[str], level: str = "INFO", *, json: bool | None = None) -> None:
    """Install the handler on the root logger (idempotent: replaces our earlier handler)."""
    handler = LineHandler(sys.stdout)
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
