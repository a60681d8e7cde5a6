"""The run loop: a frame source, an engine (``pipeline/engine.py``) and an order gateway
(``pipeline/execution.py``), with a lifecycle.

In order: validate the config and refuse a leftover kill file; open the feed; build the engine;
print the banner (config hash, kill file, run directory); **compile every kernel** (before
anything connects: a FIX session must never wait for the compiler); start the venue and log on
(a keepalive thread answers heartbeats whenever the loop is busy); replay, one ``engine.step``
per batch, with the kill switch watched from a thread (``pipeline/control.py``); drain the
venue; log out; stop every child; write the report (``replay/run_report.py``).

Watching it: the Prometheus endpoint (``pipeline/metrics.py``, ``metrics.*``) is up from the
start to the end of the run (``metrics.linger_s`` longer for a last scrape), progress bars on a
terminal (``pipeline/progress.py``), every line an event (``pipeline/logs.py``; JSON with
``logging.json=true``).

SIGINT / SIGTERM stop the replay between batches: working orders are cancelled and their acks
awaited (``bridge.cancel_timeout_s``), then the session logs out, the venue stops and the report
is marked ``interrupted``. A second signal forces the exit. A failure at any stage still writes
the report, with the stage and the error, and re-raises.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from pipeline import backends
from pipeline.config import config_hash, validate
from pipeline.control import (KillFileError, RunControl, refuse_leftover, resolve_kill_file, write_control_file,
                              RC_CONFIG, RC_ERROR, RC_INCOMPLETE, RC_KILLED)
from pipeline.engine import KILL_CODES, make_engine
from pipeline.execution import NOT_DRAINED, Execution, format_execution, not_drained_why
from pipeline.feed import open_reader, resolve_input, sample_path
from pipeline.latency import format_latencies
from pipeline.logs import EventLog, as_event_log
from pipeline.metrics import MetricsError, linger, serve
from pipeline.progress import NullProgress, open_progress
from kernels.stats import DECODED, MESSAGES_IN
from replay.report import feed_summary, format_intents, format_risk, format_summary
from replay.report_html import write_report
from replay.run_report import empty_risk_raw, risk_in_dollars, run_meta, skeleton, utc
from replay.timeline import Timeline, save_histograms

def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's to fix (exit status 2: config, input, environment)."""
    from omegaconf.errors import OmegaConfBaseException

    from bridges.fix.bridge import FixError
    from pipeline.backends import BackendError
    from pipeline.config import ConfigError
    from replay.capture import CaptureError

    return (ConfigError, BackendError, CaptureError, FileNotFoundError, FixError, KillFileError,
            MetricsError, OmegaConfBaseException)


class Run:
    """One run's state: what the report needs, whatever stage it ends in."""

    def __init__(self, cfg: DictConfig, out_dir: Path | None, log: Callable[[str], None]):
        self.cfg, self.out_dir = cfg, out_dir
        self.log: EventLog = as_event_log(log)
        self.rep = skeleton(run_meta(str(cfg.backend.name), config_hash(cfg), out_dir))
        self.stage = "config"
        self.t0 = time.perf_counter()
        self.marks: dict[str, float] = {}
        self.reader = None
        self.engine = None
        self.ex: Execution | None = None
        self.ctl: RunControl | None = None
        self.kill_file: Path | None = None
        self.kill_logged = False
        # watching: read by the metrics collector (scrape thread) and the progress display
        self.feed_ts = 0            # newest ITCH timestamp processed, ns since midnight
        self.input_size = 0         # bytes of the input file (0: live or compressed)
        self.metrics = None
        self.progress: NullProgress = NullProgress()
        self.timeline: Timeline | None = None   # per-batch samples for report.html (replay/timeline.py)

    def mark(self, name: str) -> None:
        self.marks[name] = time.perf_counter()


def run(cfg: DictConfig, out_dir: Path | None = None, log: Callable[[str], None] = print,
        signals: bool = True) -> dict[str, Any]:
    """Replay (or receive live) the configured feed through the pipeline; return the report
    (also saved as ``out_dir/report.json``). ``rep['run']['status']`` is completed, killed,
    interrupted, failed or incomplete (the local venue did not drain), and
    ``rep['run']['exit_code']`` the process's exit status. On a
    failure the report is written and the exception re-raised. ``signals``: take SIGINT,
    SIGTERM and SIGUSR1 (main thread only)."""
    r = Run(cfg, out_dir, log)
    error: BaseException | None = None
    try:
        _run(r, signals)
    except BaseException as exc:  # noqa: BLE001 - reported, then re-raised
        error = exc
        r.rep["error"] = {"stage": r.stage, "type": type(exc).__name__, "message": str(exc)}
    finally:
        _shutdown(r, error)
    if error is not None:
        raise error
    return r.rep


def _run(r: Run, signals: bool) -> None:
    cfg, log = r.cfg, r.log
    validate(cfg)
    _watch(r)
    r.kill_file = resolve_kill_file(cfg.risk.kill.file)
    r.rep["kill_switch"]["kill_file"] = str(r.kill_file) if r.kill_file else None
    refuse_leftover(r.kill_file)
    backend = backends.load(cfg.backend.name)

    r.stage = "feed"
    r.progress.stage("setup", "opening the feed")
    live = cfg.feed.source == "live"
    live_sync = None
    if live:
        from pipeline.live import open_live_source, sync_risk

        r.reader = open_live_source(cfg.feed, log)
        path = f"live:{cfg.feed.live.interface}"
        live_sync = lambda risk: sync_risk(r.reader, risk)  # noqa: E731
    else:
        if not cfg.feed.path and not sample_path(cfg.feed.sample).is_file():
            sp = sample_path(cfg.feed.sample)  # generated now: show the bytes written as it goes
            r.progress.stage("generate", sp.name, watch=[sp.with_suffix(sp.suffix + ".part"), sp])
        path = resolve_input(cfg.feed, log)
        r.reader = open_reader(cfg.feed, path)
    r.rep["input"]["path"] = str(path)
    if not live:
        r.input_size = _input_size(Path(path))

    r.stage = "build"
    r.progress.stage("setup", "building the engine")
    engine = make_engine(cfg, backend, r.reader, live_sync, log)
    r.engine = engine
    r.rep["run"]["engine"] = engine.name
    if r.out_dir is not None:
        write_control_file(r.out_dir, r.kill_file)
    log.event("start", f"hftbot run  config {r.rep['run']['config_hash']}  backend {cfg.backend.name}  "
              f"engine {engine.name}  pid {r.rep['run']['pid']}", config_hash=r.rep['run']['config_hash'],
              backend=str(cfg.backend.name), engine=engine.name, pid=r.rep['run']['pid'],
              run_dir=str(r.out_dir) if r.out_dir is not None else None)
    log(f"kill       file {r.kill_file or '(none)'}" + ("; SIGUSR1" if cfg.risk.kill.signal else "")
        + "  (hftbot kill" + (f" --run {r.out_dir}" if r.out_dir is not None else "") + ")")
    if r.out_dir is not None:
        log(f"run dir    {r.out_dir}")
    if cfg.bridge.enabled:  # QuickFIX's import resets SIGINT (RunControl.reassert): import it first
        from bridges.fix.bridge import import_quickfix

        import_quickfix()
    r.ctl = RunControl(r.kill_file, engine.request_kill, KILL_CODES, poll_s=float(cfg.risk.kill.poll_ms) / 1e3,
                       signals=signals, usr1=signals and bool(cfg.risk.kill.signal),
                       on_force=lambda: r.ex.force_stop() if r.ex is not None else None).start()
    r.mark("setup")

    # compile before connecting: the first batch of a cold cache takes minutes of compiling
    r.stage = "compile"
    r.progress.stage("compile", "compiling (or loading from the numba cache)")
    it = iter(r.reader)
    first = None if live else next(it, None)   # frames the first chunk (compiles the framing kernels)
    if cfg.bridge.enabled:
        r.ex = Execution(cfg, r.out_dir or Path("runs") / "adhoc", None if live else path, engine.book.sym,
                         engine.risk, log, on_exec=engine.exec_sink)
        r.ex.feed_events = lambda: int(r.reader.stats[DECODED])   # what the venue replays too
        # the local venue starts now and compiles its own kernels on the other core meanwhile;
        # nothing connects to it before everything here is compiled
        r.ex.launch_venue()
    times = engine.warm(first, log)
    if cfg.bridge.enabled:
        # the bridge, built but not connected: its codec compiled, its tables faulted in
        t = time.perf_counter()
        log("compile    fix codec ...")
        r.ex.prepare()
        times["fix codec"] = time.perf_counter() - t
        times.update(engine.prepare(r.ex, log))
    r.rep["timing"]["compile_by_stage_s"] = {k: round(v, 3) for k, v in times.items()}
    r.mark("compile")
    log.event("compile", f"compile    done in {r.marks['compile'] - r.marks['setup']:.1f} s ("
              + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()) + ")",
              seconds=round(r.marks['compile'] - r.marks['setup'], 3), by_stage=r.rep["timing"]["compile_by_stage_s"])

    r.stage = "connect"
    r.progress.stage("connect", "starting the venue and logging on" if r.ex is not None else "")
    if r.ex is not None:
        r.ex.start()
        r.ctl.reassert()
    engine.attach(r.ex)
    r.mark("connect")
    r.timeline = Timeline.for_engine(engine)   # its clock starts with the replay

    r.stage = "replay"
    r.progress.start_replay(Path(str(path)).name, r.input_size or None)
    pace0: tuple[int, int] | None = None
    batches = itertools.chain([first], it) if first is not None else it
    for batch in batches:
        if r.ctl.stop_requested:
            break
        if cfg.feed.pace:
            pace0 = _pace(batch, pace0, float(cfg.feed.speed), r)
            if r.ctl.stop_requested:
                break
        r.feed_ts = engine.step(batch) or r.feed_ts
        r.timeline.record(r.feed_ts, batch.n, engine.risk)
        r.progress.replay(r.reader.bytes_read, int(r.reader.stats[MESSAGES_IN]), r.feed_ts)
        _check_kill(r)
    r.mark("replay")

    r.stage = "drain"
    r.progress.end_replay()
    r.progress.stage("drain", "the venue's last reports")
    if r.ctl.stop_requested:
        _interrupted(r)
    elif r.ex is not None:
        r.ex.finish(stop=lambda: bool(r.ctl.stop_requested))
        if r.ctl.stop_requested:   # a signal during the drain: cancel and stop as at any other time
            _interrupted(r)
    _check_kill(r)
    engine.finish()
    r.timeline.finish(r.feed_ts, engine.risk)
    r.mark("drain")


def _watch(r: Run) -> None:
    """The metrics endpoint and the progress display (both read the run, never the hot path)."""
    cfg = r.cfg
    check_watch_config(cfg)
    if "metrics" in cfg:
        r.metrics = serve(cfg.metrics, r, r.log)
    lc = cfg.get("logging")
    if lc is not None and lc.progress and not lc.json:
        r.progress = open_progress(True)
        r.log.listeners.append(r.progress.note)
        r.progress.stage("setup", "")


def check_watch_config(cfg: DictConfig) -> None:
    """``logging`` and ``metrics`` values (ConfigError naming the key)."""
    from pipeline.config import ConfigError

    if "logging" in cfg and str(cfg.logging.level).lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"logging.level: must be debug, info, warning or error (got {cfg.logging.level!r})")
    if "metrics" in cfg:
        m = cfg.metrics
        if not 0 <= int(m.port) <= 65535:
            raise ConfigError(f"metrics.port: must be in 0..65535 (0 = a free port) (got {m.port!r})")
        if not str(m.host):
            raise ConfigError("metrics.host: must be an address to listen on, e.g. 127.0.0.1 (got '')")
        if not 0 <= float(m.linger_s) <= 3600:
            raise ConfigError(f"metrics.linger_s: must be in 0..3600 s (got {m.linger_s!r})")


def _input_size(path: Path) -> int:
    """Bytes the reader will read from ``path`` (0 when unknown: a gzip file is read decompressed)."""
    try:
        with path.open("rb") as f:
            if f.read(2) == b"\x1f\x8b":
                return 0
        return path.stat().st_size
    except OSError:
        return 0


def _stop_cancels(ctl: RunControl | None, reason: str) -> bool:
    """Whether the engine's engaged kill switch (no ``ctl.kill`` recorded) is a stop signal's own
    cancels (``_interrupted``: the kill switch's cancel-all, reason manual) rather than a loss or
    drawdown kill, which keeps its own reason through the stop's cancel-all."""
    return ctl is not None and bool(ctl.stop_requested) and reason == "manual"


def _check_kill(r: Run) -> None:
    """Once the engine's state shows the kill switch engaged (by the watcher thread, SIGUSR1, or
    the loss / drawdown limit): send the cancels now and say so loudly, once."""
    if r.kill_logged or r.engine is None or r.ctl is None:
        return
    risk = r.engine.risk
    engaged = risk.killed or (r.engine.name == "gpu" and r.ctl.kill is not None)
    if not engaged:
        return
    if r.ctl.kill is None and _stop_cancels(r.ctl, risk.kill_reason):
        return   # not a kill: no banner saying the run goes on and exits 3, no limit kill noted
    if r.ctl.kill is None:
        r.ctl.note_limit_kill(risk.kill_reason)
    k = r.ctl.kill
    sent = r.engine.service_kill()
    k.open_orders_at_kill = r.engine.open_orders()
    r.kill_logged = True
    reaction = f", {(k.wall_ns - k.file_mtime_ns) / 1e6:.1f} ms after the file appeared" if k.file_mtime_ns else ""
    r.log("!" * 100)
    r.log(f"KILL SWITCH ENGAGED ({k.reason}, {k.source}) at {utc(k.wall_ns / 1e9)}{reaction}: every new order is "
          f"refused and the working orders are cancelled ({sent} cancels sent now). The run goes on with market "
          f"data only and exits with status {RC_KILLED}.")
    r.log("!" * 100)


def _interrupted(r: Run) -> None:
    """A stop signal: no more market data; cancel every working order and wait (bounded) for
    the acks; then the caller logs out and stops the venue."""
    sig = r.ctl.stop_requested
    r.log(f"stop       {sig}: no more market data; cancelling working orders "
          f"(a second {sig} forces the exit)")
    e = r.engine
    sent = e.cancel_all()
    closed = True
    if r.ex is not None:
        closed = r.ex.wait_cancels(e.open_orders, float(r.cfg.bridge.cancel_timeout_s))
    left = e.open_orders()
    r.rep["interrupt"] = {"signal": sig, "cancels_sent": int(sent), "open_orders_after": int(left),
                          "all_closed": bool(closed and left == 0)}
    r.log(f"stop       {sent} cancels sent; {left} orders still open"
          + ("" if closed else f" after bridge.cancel_timeout_s={r.cfg.bridge.cancel_timeout_s}"))


def _pace(batch, pace0: tuple[int, int] | None, speed: float, r: Run) -> tuple[int, int]:
    """Recorded pace: wait until the batch's first capture time, relative to the first batch's,
    has elapsed on the wall clock (divided by ``speed``). Batch granularity. The wait takes
    execution reports (and so answers heartbeats) and returns early on a stop signal."""
    rx = batch.rx[: batch.n]
    t = int(rx[0]) if batch.n else 0
    now = time.perf_counter_ns()
    if pace0 is None or t <= 0:
        return pace0 or (t, now)
    due = pace0[1] + int((t - pace0[0]) / speed)
    while not r.ctl.stop_requested:
        left = (due - time.perf_counter_ns()) / 1e9
        if left <= 0:
            break
        if r.ex is not None:
            r.ex.pump(min(left, 0.05))
        else:
            time.sleep(min(left, 0.05))
    return pace0


def _shutdown(r: Run, error: BaseException | None) -> None:
    """Log out, stop the venue, close the feed, write and print the report. Never raises."""
    r.progress.close()  # the summary prints below, with no live display
    t_stop = time.perf_counter()
    for what, fn in (("fix + venue", (r.ex.stop if r.ex is not None else None)),
                     ("feed", getattr(r.reader, "close", None)),
                     ("signals", (r.ctl.close if r.ctl is not None else None))):
        if fn is None:
            continue
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - every part is stopped; errors go to the report
            r.log(f"error      stopping {what}: {exc!r}")
            if r.rep["error"]["stage"] is None:
                r.rep["error"] = {"stage": f"stop {what}", "type": type(exc).__name__, "message": str(exc)}
    try:
        _fill_report(r, error, time.perf_counter() - t_stop)
    except Exception as exc:  # noqa: BLE001 - a partial report is still written
        r.log(f"error      building the report: {exc!r}")
        if r.rep["error"]["stage"] is None:
            r.rep["error"] = {"stage": "report", "type": type(exc).__name__, "message": str(exc)}
    if r.out_dir is not None and r.cfg.report.save:
        try:
            r.out_dir.mkdir(parents=True, exist_ok=True)
            (r.out_dir / "report.json").write_text(json.dumps(r.rep, indent=2, default=str))
            r.log.event("report", f"report     {r.out_dir / 'report.json'} ({r.rep['run']['status']}, exit status "
                        f"{r.rep['run']['exit_code']})", **_headline(r.rep))
        except OSError as exc:
            r.log(f"error      writing the report: {exc!r}")
        if r.cfg.report.html:
            _write_plots(r)
    _unwatch(r)


def _write_plots(r: Run) -> None:
    """Beside report.json: timeline.npz, latency.hdr.json, report.html and its PNGs
    (replay/report_html.py). Never raises: a failed plot is logged, the run's status stands."""
    try:
        if r.timeline is not None:
            r.timeline.save(r.out_dir)
        save_histograms(r.out_dir, [r.engine.lat if r.engine is not None else None,
                                    r.ex.lat if r.ex is not None else None])
        t = time.perf_counter()
        page = write_report(r.out_dir, r.rep)
        r.log.event("report_html", f"report     {page} with plots ({time.perf_counter() - t:.1f} s)", path=str(page))
    except Exception as exc:  # noqa: BLE001 - the plots never fail a run
        r.log(f"error      writing report.html: {exc!r}")


def _not_drained(d: dict[str, Any]) -> str:
    """Why a run is ``incomplete``: the venue's drain outcome and how far it got."""
    of = f" of {d['feed_events']:,}" if d["feed_events"] else ""
    return f"the venue did not drain ({not_drained_why(d)}): it applied {d['venue_events']:,}{of} market events"


def _headline(rep: dict[str, Any]) -> dict[str, Any]:
    """The report's key figures, as fields of the ``report`` event."""
    ex, rk = rep["execution"], rep["risk"]
    return {"path": str(Path(rep["run"]["run_dir"] or ".") / "report.json"), "status": rep["run"]["status"],
            "exit_code": rep["run"]["exit_code"], "messages": rep["feed"]["messages_in"],
            "msgs_per_s": round(rep["timing"]["msgs_per_s"], 1), "intents": rk["intents"],
            "rejected": rk["rejected"], "orders": ex["new_sent"], "fills": ex["fills"],
            "pnl_usd": rk["pnl_usd"].get("total", 0.0), "kill_switch": rk["kill_switch"]}


def _unwatch(r: Run) -> None:
    """The run is over: the endpoint serves the final values (``metrics.linger_s``), then closes."""
    r.stage = "done"
    if r.metrics is None:
        return
    try:
        linger(r.cfg.metrics, r.metrics, r.log)
    except BaseException as exc:  # noqa: BLE001 - a Ctrl-C while lingering ends it; the report is written
        r.log(f"metrics    linger ended: {type(exc).__name__}")
    finally:
        try:
            r.metrics.close()
        except Exception as exc:  # noqa: BLE001 - never raises
            r.log(f"error      closing the metrics endpoint: {exc!r}")


def _fill_report(r: Run, error: BaseException | None, stop_s: float) -> None:
    rep, cfg = r.rep, r.cfg
    t_end = time.perf_counter()
    ctl = r.ctl
    status, code = "completed", 0
    if error is not None:
        status, code = "failed", (RC_CONFIG if isinstance(error, user_errors()) else RC_ERROR)
        if isinstance(error, KeyboardInterrupt):   # Ctrl-C before the run's own handlers were in
            status, code = "interrupted", 130
            rep["interrupt"]["signal"] = "SIGINT"
    elif ctl is not None and ctl.stop_requested:
        status, code = "interrupted", 128 + ctl.stop_signal
    elif ctl is not None and ctl.kill is not None or (r.engine is not None and r.engine.risk.killed):
        status, code = "killed", RC_KILLED
    elif r.ex is not None and r.ex.drain["outcome"] in NOT_DRAINED:
        # the market data ran to its end, but the local venue did not finish the replay: its
        # reports after the point it reached (fills included) never came
        status, code = "incomplete", RC_INCOMPLETE
    rep["run"].update(status=status, exit_code=code, ended_utc=utc())
    reader = r.reader
    if reader is not None:
        feed = feed_summary(reader.stats)
        rep["feed"] = feed
        rep["input"].update(format=reader.format, bytes=int(reader.bytes_read), sessions=list(reader.sessions()),
                            trailing_bytes=int(reader.trailing_bytes), error=reader.error)
        if cfg.feed.source == "live" and hasattr(reader, "counters"):
            rep["live"] = reader.counters()
    e = r.engine
    if e is not None:
        snap = e.snapshot(int(cfg.book.depth))
        rep["book"], rep["features"], rep["intents"] = snap["book"], snap["features"], snap["intents"]
        risk_raw = snap["risk"]
        rep["risk"] = risk_in_dollars(risk_raw)
        rep["model"].update(e.model_info() or {})
    else:
        risk_raw = None
    if r.ex is not None:
        rep["execution"].update(enabled=True, **{k: v for k, v in r.ex.summary().items() if k != "latency"})
    if ctl is not None and ctl.kill is not None:
        k = ctl.kill
        if risk_raw is not None:
            k.cancels = int(risk_raw["risk_cancels"]["kill"])
        rep["kill_switch"].update(k.as_dict())
    elif risk_raw is not None and risk_raw["kill_switch"] != "off":
        # engaged by the engine's own state: a loss or drawdown limit, or a stop signal's cancels
        rep["kill_switch"].update(engaged=True, reason=risk_raw["kill_switch"],
                                  source="stop" if _stop_cancels(ctl, risk_raw["kill_switch"]) else "limit",
                                  cancels_sent=int(risk_raw["risk_cancels"]["kill"]))
    m, t0 = r.marks, r.t0
    tm = rep["timing"]

    def span(a: str, b: str) -> float:
        return round(m[b] - m[a], 6) if a in m and b in m else 0.0

    msgs = int(rep["feed"]["messages_in"])
    replay_s = span("connect", "replay")
    tm.update(total_s=round(t_end - t0, 6), setup_s=round(m["setup"] - t0, 6) if "setup" in m else 0.0,
              compile_s=span("setup", "compile"), connect_s=span("compile", "connect"), replay_s=replay_s,
              drain_s=span("replay", "drain"), stop_s=round(stop_s, 6), messages=msgs,
              msgs_per_s=msgs / replay_s if replay_s > 0 else 0.0,
              # no rate without a message: a run stopped before its first batch had still read a
              # chunk (before the replay began), which over a ~0 s replay gave 49,345 MB/s
              mb_per_s=rep["input"]["bytes"] / replay_s / 1e6 if replay_s > 0 and msgs > 0 else 0.0)
    lat = dict(e.lat.summary()) if e is not None else {}
    if r.ex is not None:
        lat.update(r.ex.lat.summary())
    rep["latency"] = lat
    _print(r, risk_raw)


def _print(r: Run, risk_raw: dict[str, Any] | None) -> None:
    rep, log = r.rep, r.log
    if rep["run"]["status"] == "failed" and r.reader is None:
        log(f"failed     at {rep['error']['stage']}: {rep['error']['message']}")
        return
    log(format_summary(rep, r.cfg.report.top_types))
    per_packet = r.engine is not None and r.engine.name == "per_packet"
    if rep["model"]["backend"]:
        log(format_intents(rep, per_packet))
    if per_packet:
        log("per-packet mode: feature summaries are not collected (feed.per_packet=true)")
    log("\n".join(format_risk(risk_raw if risk_raw is not None else empty_risk_raw())))
    for line in format_execution(rep["execution"] if rep["execution"]["enabled"] else {}) + \
            format_latencies(rep["latency"]):
        log(line)
    st = rep["run"]["status"]
    if st != "completed":
        why = {"killed": f"kill switch ({rep['kill_switch']['reason']}, {rep['kill_switch']['source']})",
               "interrupted": f"{rep['interrupt']['signal']}",
               "failed": f"{rep['error']['type']} at {rep['error']['stage']}: {rep['error']['message']}",
               "incomplete": _not_drained(rep["execution"]["drain"])}[st]
        log(f"status     {st.upper()}: {why}")
