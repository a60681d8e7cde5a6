"""The run report (``report.json``): a stable, versioned schema.

Every run writes the same keys, whatever happened (zeros, empty maps or nulls where nothing did):
a completed replay, a killed one, an interrupted one and one that failed at start all validate
against ``SCHEMA`` (JSON Schema, draft 2020-12; ``tests/test_run_control.py`` checks it). Money
is in decimal US dollars (keys end in ``_usd``); prices in the feed's Price(4) integers are
named ``*_px4``; times are ns (latency), s (durations) or ISO-8601 UTC strings.

Version history: 1 (2026-12-06): first versioned schema. 2 (2026-12-06): status ``incomplete`` (the
local venue did not drain: exit status 4) and ``execution.drain`` (how the end-of-replay wait for
the venue ended and how far the venue got).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
DOLLAR = 10_000  # Price(4) x shares per dollar

STATUSES = ("completed", "killed", "interrupted", "failed", "incomplete")

#: ``execution.drain.outcome``: the local venue drained; it made no progress for
#: ``bridge.drain_timeout_s``; its process exited first; the run never got to the drain (stopped
#: by a signal, failed, no FIX); no local venue (a remote counterparty: nothing to wait for)
DRAIN_OUTCOMES = ("drained", "stalled", "venue_exited", "interrupted", "not_waited", "no_local_venue")

#: ``execution.drain`` of a run that never reached the drain (``pipeline/execution.py drain_summary``)
EMPTY_DRAIN: dict[str, Any] = {"outcome": "not_waited", "drained": False, "wait_s": 0.0, "timeout_s": 0.0,
                               "venue_clock_ns": -1, "market_clock_ns": -1, "venue_events": 0, "feed_events": 0}

#: sections every report has, with their empty value
EMPTY_EXECUTION: dict[str, Any] = {
    "enabled": False, "session_date": "", "clordid_prefix": "", "messages_sent": 0, "new_sent": 0,
    "cancel_sent": 0, "replace_sent": 0, "orders_filled": 0, "orders_partially_filled": 0, "orders_cancelled": 0,
    "orders_rejected": 0, "orders_working": 0, "requests_rejected": 0, "reports": 0, "duplicate_reports": 0,
    "bad_reports": 0, "unknown_clordid": 0, "bad_rows": 0, "illegal_transitions": 0, "session_rejects": 0,
    "business_rejects": 0, "callback_errors": 0, "logons": 0, "logouts": 0, "keepalive_polls": 0,
    "resent_possresend": 0, "backlog_rows": 0, "venue_rejects_by_reason": {}, "cancel_rejects_by_reason": {},
    "fills": 0, "filled_shares": 0, "hedges_sent": 0, "venue": {}, "drain": EMPTY_DRAIN,
}
EMPTY_MODEL: dict[str, Any] = {"backend": None, "path": None, "horizon_rows": 0}
EMPTY_KILL: dict[str, Any] = {"engaged": False, "reason": None, "source": None, "at_utc": None,
                              "reaction_ms": None, "cancels_sent": 0, "open_orders_at_kill": 0, "kill_file": None}
EMPTY_INTERRUPT: dict[str, Any] = {"signal": None, "cancels_sent": 0, "open_orders_after": 0, "all_closed": True}
EMPTY_ERROR: dict[str, Any] = {"stage": None, "type": None, "message": None}

_LAT = {"type": "object", "required": ["count", "min_ns", "p50_ns", "p99_ns", "p99_9_ns", "max_ns", "what"],
        "properties": {k: {"type": "integer", "minimum": 0} for k in
                       ("count", "min_ns", "p50_ns", "p99_ns", "p99_9_ns", "max_ns")} | {"what": {"type": "string"}}}


def _obj(required: dict[str, Any], extra: bool = True) -> dict[str, Any]:
    return {"type": "object", "required": sorted(required), "properties": required, "additionalProperties": extra}


_NUM = {"type": "number"}
_INT = {"type": "integer"}
_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_MAP = {"type": "object"}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "hftbot run report",
    **_obj({
        "schema": {"const": "hftbot.run_report"},
        "schema_version": {"const": SCHEMA_VERSION},
        "run": _obj({
            "status": {"enum": list(STATUSES)}, "exit_code": _INT, "started_utc": _STR, "ended_utc": _STR,
            "git_commit": _NSTR, "git_dirty": {"type": ["boolean", "null"]}, "host": _STR, "cpu_model": _STR,
            "cpus": _INT, "python": _STR, "numba": _STR, "pid": _INT, "backend": _STR, "engine": _NSTR,
            "config_hash": _STR, "run_dir": _NSTR, "command": _STR,
        }, extra=False),
        "error": _obj({"stage": _NSTR, "type": _NSTR, "message": _NSTR}, extra=False),
        "interrupt": _obj({"signal": _NSTR, "cancels_sent": _INT, "open_orders_after": _INT,
                           "all_closed": {"type": "boolean"}}, extra=False),
        "kill_switch": _obj({"engaged": {"type": "boolean"}, "reason": _NSTR, "source": _NSTR, "at_utc": _NSTR,
                             "reaction_ms": {"type": ["number", "null"]}, "cancels_sent": _INT,
                             "open_orders_at_kill": _INT, "kill_file": _NSTR}, extra=False),
        "input": _obj({"path": _NSTR, "format": _NSTR, "bytes": _INT, "sessions": {"type": "array"},
                       "trailing_bytes": _INT, "error": _NSTR}, extra=False),
        "feed": _obj({"messages_in": _INT, "decoded": _INT, "messages_by_type": _MAP, "problems": _MAP}),
        "book": _obj({"stats": _MAP, "drops": {"type": "array", "items": {"type": "object"}}, "symbols": _MAP}),
        "features": _MAP,
        "model": _obj({"backend": _NSTR, "path": _NSTR, "horizon_rows": _INT}, extra=False),
        "intents": _obj({"predictions": _INT, "total": _INT, "by_symbol": _MAP, "strategy": _MAP}),
        "risk": _obj({"intents": _INT, "accepted": _INT, "rejected": _INT, "rejections": _MAP,
                      "kill_switch": _STR, "open_orders": _INT, "fills": _INT, "pnl_usd": _obj(
                          {"realised": _NUM, "unrealised": _NUM, "total": _NUM, "peak": _NUM}, extra=False),
                      "exposure_usd": _obj({"gross": _NUM, "net_long": _NUM, "net_short": _NUM, "credit": _NUM},
                                           extra=False),
                      "positions": _MAP}),
        "execution": _obj({k: ({"type": "boolean"} if isinstance(v, bool) else _INT if isinstance(v, int)
                               else _STR if isinstance(v, str) else _MAP) for k, v in EMPTY_EXECUTION.items()}
                          | {"drain": _obj({
                              "outcome": {"enum": list(DRAIN_OUTCOMES)},
                              "drained": {"type": "boolean"}, "wait_s": _NUM, "timeout_s": _NUM,
                              "venue_clock_ns": _INT, "market_clock_ns": _INT, "venue_events": _INT,
                              "feed_events": _INT}, extra=False)}),
        "live": _MAP,
        "timing": _obj({"total_s": _NUM, "setup_s": _NUM, "compile_s": _NUM, "compile_by_stage_s": _MAP,
                        "connect_s": _NUM, "replay_s": _NUM, "drain_s": _NUM, "stop_s": _NUM,
                        "messages": _INT, "msgs_per_s": _NUM, "mb_per_s": _NUM, "what": _STR}, extra=False),
        "latency": {"type": "object", "additionalProperties": _LAT},
    }, extra=False),
}


def utc(ts: float | None = None) -> str:
    t = dt.datetime.now(dt.timezone.utc) if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    return t.isoformat(timespec="milliseconds")


def _git(*args: str) -> str | None:
    repo = Path(__file__).resolve().parents[1]
    try:
        r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_meta(backend: str, config_hash: str, run_dir: Path | None) -> dict[str, Any]:
    """The ``run`` section's fixed part, taken at start."""
    import numba

    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"status": "failed", "exit_code": 1, "started_utc": utc(), "ended_utc": "",
            "git_commit": _git("rev-parse", "HEAD"), "git_dirty": None if status is None else bool(status),
            "host": socket.gethostname(), "cpu_model": cpu_model(), "cpus": os.cpu_count() or 0,
            "python": platform.python_version(), "numba": numba.__version__, "pid": os.getpid(),
            "backend": backend, "engine": None, "config_hash": config_hash,
            "run_dir": str(run_dir) if run_dir is not None else None, "command": " ".join(sys.argv)}


def usd(v: int) -> float:
    """Price(4) x shares -> dollars (exact to the cent's hundredth)."""
    return round(int(v) / DOLLAR, 4)


def risk_in_dollars(risk: dict[str, Any]) -> dict[str, Any]:
    """``RiskStage.summary()`` (money in Price(4) x shares) with money in dollars: ``pnl`` ->
    ``pnl_usd``, ``exposure`` -> ``exposure_usd``, per position ``cost``/``realised``/
    ``unrealised`` -> ``*_usd`` and ``mark`` -> ``mark_px4`` (the feed's price integer)."""
    out = {k: v for k, v in risk.items() if k not in ("pnl", "exposure", "positions")}
    out["pnl_usd"] = {k: usd(v) for k, v in risk.get("pnl", {}).items()}
    out["exposure_usd"] = {k: usd(v) for k, v in risk.get("exposure", {}).items()}
    pos = {}
    for name, p in risk.get("positions", {}).items():
        q = dict(p)
        for k in ("cost", "realised", "unrealised"):
            if k in q:
                q[f"{k}_usd"] = usd(q.pop(k))
        if "mark" in q:
            q["mark_px4"] = q.pop("mark")
        pos[name] = q
    out["positions"] = pos
    return out


def empty_risk_raw() -> dict[str, Any]:
    """``RiskStage.summary()`` of a run where nothing happened (every key, zeros)."""
    return {"intents": 0, "accepted": 0, "rejected": 0, "rejections": {}, "kill_switch": "off", "disconnected": False,
            "open_orders": 0, "exec_events": 0, "fills": 0, "filled_qty": 0, "unknown_exec": 0, "overfills": 0,
            "bad_exec": 0, "risk_cancels": {"kill": 0, "disconnect": 0, "throttle": 0},
            "hedges": {"sent": 0, "rejected": 0, "unpriced": 0}, "strategies_disabled": [],
            "pnl": {"realised": 0, "unrealised": 0, "total": 0, "peak": 0},
            "exposure": {"gross": 0, "net_long": 0, "net_short": 0, "credit": 0},
            "feed": {"gaps": 0, "sessions_with_open_gap": []}, "positions": {}}


def empty_risk() -> dict[str, Any]:
    return risk_in_dollars(empty_risk_raw())


def empty_book() -> dict[str, Any]:
    from pipeline.book import BookState

    return {"stats": {k: 0 for k in BookState(16, 16, 16).counters()}, "drops": [], "symbols": {}}


def skeleton(meta: dict[str, Any]) -> dict[str, Any]:
    """A report with every key present and nothing happened: the start of every run's report."""
    return {
        "schema": "hftbot.run_report", "schema_version": SCHEMA_VERSION, "run": meta,
        "error": dict(EMPTY_ERROR), "interrupt": dict(EMPTY_INTERRUPT), "kill_switch": dict(EMPTY_KILL),
        "input": {"path": None, "format": None, "bytes": 0, "sessions": [], "trailing_bytes": 0, "error": None},
        "feed": _empty_feed(),
        "book": empty_book(), "features": {}, "model": dict(EMPTY_MODEL),
        "intents": {"predictions": 0, "total": 0, "by_symbol": {}, "strategy": {}}, "risk": empty_risk(),
        "execution": {**EMPTY_EXECUTION, "drain": dict(EMPTY_DRAIN)}, "live": {},
        "timing": {"total_s": 0.0, "setup_s": 0.0, "compile_s": 0.0, "compile_by_stage_s": {}, "connect_s": 0.0,
                   "replay_s": 0.0, "drain_s": 0.0, "stop_s": 0.0, "messages": 0, "msgs_per_s": 0.0, "mb_per_s": 0.0,
                   "what": "msgs_per_s and mb_per_s: messages / replay_s, the replay loop only (after compile and "
                           "connect, before the drain)"},
        "latency": {},
    }


def _empty_feed() -> dict[str, Any]:
    from kernels.stats import new_stats
    from replay.report import feed_summary

    return feed_summary(new_stats())


def validate_report(rep: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``rep`` does not follow ``SCHEMA``."""
    import jsonschema

    jsonschema.validate(rep, SCHEMA)
