"""Run logs: readable lines by default, one JSON object per line with ``logging.json=true``.

The run loop and its parts log through one callable, ``log(text)`` (``pipeline/run.py`` passes
it down). ``EventLog`` is that callable: each call is one *event*; the event's name is the line's
first word (the run's lines are ``"compile    done in ..."``, ``"fix        logged on ..."``),
and ``log.event(name, text, **fields)`` adds structured fields. Records go through the
``hftbot`` logger, so Python ``logging`` calls of the library (``hftbot.execution``...) land in
the same stream, in the same format.

JSON lines carry ``ts`` (UTC, ISO-8601, ms), ``level``, ``event``, ``msg`` and the fields::

    {"ts": "2026-12-06T20:41:03.512Z", "level": "info", "event": "compile", "msg": "done in 4.1 s",
     "seconds": 4.1, "by_stage": {"decode": 0.4}}

Hydra's own records (``hydra``, the root logger) go to the run directory's ``run.log``
(``conf/hydra/job_logging/hftbot.yaml``), never into the summary on the terminal.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, Callable

#: the logger every run record goes through
LOGGER = "hftbot"
_HANDLER_TAG = "_hftbot_console"


def _utc(created: float) -> str:
    t = dt.datetime.fromtimestamp(created, dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _utc(record.created), "level": record.levelname.lower(),
                               "event": getattr(record, "event", None) or _event_of_logger(record.name),
                               "msg": record.getMessage()}
        for k, v in (getattr(record, "fields", None) or {}).items():
            out.setdefault(k, v)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The run's own lines as they are; records of other loggers get their level and name."""

    def format(self, record: logging.LogRecord) -> str:
        text = getattr(record, "text", None)
        if text is not None:
            return text
        level = "" if record.levelno <= logging.INFO else f"{record.levelname}: "
        line = f"{_event_of_logger(record.name):<10} {level}{record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class FileFormatter(logging.Formatter):
    """The run directory's ``run.log``: time, level, event (or logger) and the text."""

    def format(self, record: logging.LogRecord) -> str:
        text = getattr(record, "text", None)
        event = getattr(record, "event", None) or record.name
        line = f"[{_utc(record.created)}][{record.levelname.lower()}][{event}] {text if text is not None else record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _event_of_logger(name: str) -> str:
    return name.rsplit(".", 1)[-1] if name.startswith(LOGGER + ".") else name


class _Stdout(logging.StreamHandler):
    """Writes to ``sys.stdout`` as it is at each record: a live progress display redirects it so
    that lines appear above the bars (``pipeline/progress.py``)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def configure(json_lines: bool = False, level: str = "info") -> logging.Logger:
    """Set up the ``hftbot`` logger's console handler (stdout), replacing one set up before.
    The logger still propagates, so Hydra's file handler (the run directory's ``run.log``) gets
    every record too."""
    lg = logging.getLogger(LOGGER)
    for h in list(lg.handlers):
        if getattr(h, _HANDLER_TAG, False):
            lg.removeHandler(h)
    h = _Stdout()
    setattr(h, _HANDLER_TAG, True)
    h.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    lg.addHandler(h)
    lg.setLevel(_level(level))
    return lg


def _level(name: str) -> int:
    v = logging.getLevelName(str(name).upper())
    if not isinstance(v, int):
        raise ValueError(f"logging.level: must be debug, info, warning or error (got {name!r})")
    return v


def split_event(text: str) -> tuple[str, str]:
    """``"compile    done in 4 s"`` -> ``("compile", "done in 4 s")``; a line that does not start
    with a lower-case word (the summary's tables) is event ``summary``."""
    head, sep, rest = text.partition(" ")
    if head and head.isascii() and head.replace("-", "").replace("_", "").isalpha() and head.islower() and sep:
        return head, rest.strip()
    return "summary", text


class EventLog:
    """The run's ``log`` callable. ``log(text)``: one event at info level (its name from the
    first word); ``log.event(name, text, **fields)`` with structured fields; ``log.warning``.

    ``sink``: where lines go instead of the ``hftbot`` logger (tests: ``lines.append``); it gets
    the text only. ``progress``: told each line, so a spinner can show what is going on."""

    def __init__(self, sink: Callable[[str], None] | None = None, logger: logging.Logger | None = None):
        self.sink = sink
        self.logger = logger or logging.getLogger(LOGGER)
        self.listeners: list[Callable[[str, str], None]] = []

    def __call__(self, text: str) -> None:
        name, msg = split_event(str(text))
        self._emit(logging.INFO, name, msg, str(text), {})

    def event(self, name: str, text: str, level: int = logging.INFO, **fields: Any) -> None:
        """One event with fields; ``text`` is the readable line."""
        _, msg = split_event(text)
        self._emit(level, name, msg, text, fields)

    def warning(self, text: str, **fields: Any) -> None:
        name, msg = split_event(text)
        self._emit(logging.WARNING, name, msg, text, fields)

    def _emit(self, level: int, name: str, msg: str, text: str, fields: dict[str, Any]) -> None:
        for fn in self.listeners:
            try:
                fn(name, msg)
            except Exception:  # noqa: BLE001 - a display never stops the run or its log
                pass
        if self.sink is not None:
            self.sink(text)
            return
        self.logger.log(level, msg, extra={"event": name, "fields": fields, "text": text})


def as_event_log(log: Callable[[str], None] | EventLog | None) -> EventLog:
    """``run(log=...)`` takes any callable: ``print`` (the default) means the ``hftbot`` logger
    (set up with readable lines if nothing set it up), anything else is a sink for the text."""
    if isinstance(log, EventLog):
        return log
    if log is None or log is print:
        lg = logging.getLogger(LOGGER)
        if not any(getattr(h, _HANDLER_TAG, False) for h in lg.handlers):
            configure()
        return EventLog()
    return EventLog(sink=log)
