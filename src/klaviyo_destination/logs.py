"""Logging setup: one line per record, JSON when not on a terminal, secrets masked.

Secrets travel as ``SecretStr`` everywhere; the filter here is the last line of defence, should a
third-party library ever log a header or a URL that carries one.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Final

import orjson

MASK: Final = "***"


class RedactSecrets(logging.Filter):
    """Replaces every known secret value in a record's rendered message (and traceback)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        for secret in self.secrets:
            message = message.replace(secret, MASK)
        record.msg, record.args = message, None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            for secret in self.secrets:
                text = text.replace(secret, MASK)
            record.exc_text, record.exc_info = text, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line).decode()


def configure(secrets: Iterable[str], level: str = "INFO") -> None:
    """Install the handler on the root logger (idempotent: replaces our earlier handler)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.set_name("klaviyo-destination")
    tty = sys.stdout.isatty()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        if tty
        else JsonFormatter()
    )
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == handler.get_name():
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
