"""``report.html``: one self-contained page per run, with plots (``hftbot report RUN_DIR``).

From a run directory (``report.json``, schema ``replay/run_report.py``; and when the run wrote
them, ``timeline.npz`` and ``latency.hdr.json`` from ``replay/timeline.py``) this writes:

============================  ===============================================================
``latency_stages.png``        per-stage latency as a percentile plot (log-log: latency against
                              1 / (1 - percentile), the HdrHistogram plot)
``tick_to_trade.png``         the same for tick-to-trade (``*_to_trade`` and ``tick_*`` histograms)
``pnl.png``                   realised, unrealised and total PnL over feed time
``position.png``              position per symbol (the largest few) and gross shares over feed time
``rejects.png``               rejects by reason: risk check, venue, cancel rejects
``throughput.png``            messages/s per batch over the replay
``report.html``               all of the above embedded as base64 PNG, with the summary tables;
                              no script, no external resource: it opens offline
============================  ===============================================================

A plot whose data the run did not record (an older run without ``timeline.npz``; a run that sent
no order) is still drawn, saying what is missing, so every report has the same six pictures.
Without ``latency.hdr.json`` the latency plots use report.json's summary points (min, p50, p99,
p99.9, max). Matplotlib runs headless (Agg canvas, no pyplot state).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from replay.timeline import HISTOGRAMS_FILE, TIMELINE_FILE, load_histograms, load_timeline

DOLLAR = 10_000.0
REPORT_FILE = "report.html"
#: (file stem, title) of every plot, in page order
PLOTS = (
    ("latency_stages", "Latency per stage"),
    ("tick_to_trade", "Tick-to-trade"),
    ("pnl", "PnL over feed time"),
    ("position", "Position over feed time"),
    ("rejects", "Rejects by reason"),
    ("throughput", "Messages/s over the replay"),
)
TOP_SYMBOLS = 8
DPI = 100


class ReportError(ValueError):
    """The run directory cannot be reported on (no report.json, unreadable files)."""


# --- input -----------------------------------------------------------------------------------------
def load_report(run_dir: Path | str) -> dict[str, Any]:
    """``run_dir/report.json`` as a dict; ``ReportError`` with one line if absent or not a report."""
    d = Path(run_dir)
    if not d.is_dir():
        raise ReportError(f"{d}: no such run directory")
    path = d / "report.json"
    if not path.is_file():
        raise ReportError(f"{d}: no report.json (not a run directory, or the run wrote no report)")
    try:
        rep = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReportError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(rep, dict) or rep.get("schema") != "hftbot.run_report":
        raise ReportError(f"{path}: not an hftbot run report (no \"schema\": \"hftbot.run_report\")")
    return rep


# --- formatting ------------------------------------------------------------------------------------
from pipeline.latency import fmt_ns, pct_cell, too_few_note  # noqa: E402  (the summary's formatting)


def fmt_clock(ns: float) -> str:
    """ITCH time (ns since midnight) as HH:MM:SS.mmm."""
    s = max(float(ns), 0.0) / 1e9
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{sec:06.3f}"


def fmt_usd(v: float) -> str:
    return f"-${-v:,.2f}" if v < 0 else f"${v:,.2f}"


def is_tick_to_trade(name: str) -> bool:
    """End-to-end figures (``tick_to_trade``, ``batch_to_trade``; ``tick_no_order``: the same path
    for packets that sent no order) go on the tick-to-trade plot, the rest on the stage plot."""
    return "to_trade" in name or name.startswith("tick_")


# --- figures ---------------------------------------------------------------------------------------
def _figure(width: float = 9.0, height: float = 4.2):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _empty(fig, title: str, why: str):
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True, fontsize=11, color="#555555",
            transform=ax.transAxes)
    return fig


def _percentile_curve(h) -> tuple[np.ndarray, np.ndarray]:
    """(x = 1 / (1 - p), latency ns) over the histogram: 0 %, then nines up to the last sample."""
    n = int(h.get_total_count())
    kmax = np.log10(max(n, 1))
    ks = np.linspace(0.0, kmax, max(int(kmax * 60), 2))
    pct = 100.0 * (1.0 - 10.0 ** -ks)
    vals = np.array([h.get_value_at_percentile(float(p)) for p in pct], np.float64)
    x, y = 10.0 ** ks, np.maximum(vals, 1.0)
    return np.append(x, max(x[-1], 1.0) * 1.0001), np.append(y, max(float(h.get_max_value()), 1.0))


def _summary_curve(s: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The five points report.json keeps: min (0 %), p50, p99, p99.9, max (the last sample)."""
    n = max(int(s["count"]), 1)
    inner = [(x, s[k]) for x, k in ((2.0, "p50_ns"), (100.0, "p99_ns"), (1000.0, "p99_9_ns")) if x < n]
    pts = [(1.0, s["min_ns"])] + inner + [(max(float(n), 2.0), s["max_ns"])]
    return np.array([p[0] for p in pts]), np.maximum(np.array([p[1] for p in pts], np.float64), 1.0)


def _latency_axes(ax, top: float) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

    ax.set_xscale("log")
    ax.set_yscale("log")
    nines = max(int(np.ceil(np.log10(max(top, 10.0)))), 1)
    ticks = [1.0, 2.0] + [10.0 ** k for k in range(1, nines + 1)]
    labels = {1.0: "0%", 2.0: "50%"}
    for k in range(1, nines + 1):
        labels[10.0 ** k] = f"{100 * (1 - 10.0 ** -k):.{max(k - 2, 0)}f}%"
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: labels.get(v, "")))
    ax.yaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_ns(v)))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (log scale)")
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", axis="y", alpha=0.1)


def latency_figure(rep: dict[str, Any], hist: dict[str, tuple[str, Any]] | None, title: str,
                   want: Callable[[str], bool], none_why: str):
    """Percentile plot of the histograms whose name ``want`` accepts (the full distribution from
    ``latency.hdr.json``, else report.json's summary points)."""
    fig = _figure()
    names = [n for n in rep.get("latency", {}) if want(n)]
    if hist is not None:
        names += [n for n in hist if want(n) and n not in names]
    if not names:
        return _empty(fig, title, none_why)
    ax = fig.add_subplot()
    top = 10.0
    points_only = False
    for name in names:
        if hist is not None and name in hist:
            x, y = _percentile_curve(hist[name][1])
            n = int(hist[name][1].get_total_count())
            ax.plot(x, y, drawstyle="steps-post", label=f"{name} (n={n:,})")
        else:
            s = rep["latency"][name]
            x, y = _summary_curve(s)
            n = int(s["count"])
            ax.plot(x, y, "o--", label=f"{name} (n={n:,}; report.json points)")
            points_only = True
        top = max(top, float(x[-1]))
    _latency_axes(ax, top)
    note = ("; dashed: min, p50, p99, p99.9, max from report.json (no full histogram saved)"
            if points_only else "")
    ax.set_title(f"{title}: latency against percentile, log scales (HdrHistogram{note})", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


def _feed_x(tl: dict[str, np.ndarray]) -> tuple[np.ndarray, str, Callable[[float, Any], str]]:
    """The x axis of the timeline plots: feed time when the run reached any, else wall seconds."""
    feed = tl["feed_ns"].astype(np.float64)
    if feed.size and feed.max() > 0:
        feed = np.where(feed > 0, feed, feed[feed > 0].min())
        return feed, "feed time (ITCH, HH:MM:SS)", lambda v, _: fmt_clock(v)
    wall = (tl["wall_ns"] - tl["t0_ns"]).astype(np.float64) / 1e9
    return wall, "seconds since the replay started (no feed time reached)", lambda v, _: f"{v:g}"


def _time_axis(ax, fmt) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.xaxis.set_major_formatter(FuncFormatter(fmt))
    ax.grid(True, alpha=0.3)


def _no_timeline_why(tl_error: str | None) -> str:
    return tl_error or f"this run recorded no {TIMELINE_FILE} (time series come from runs that write it)"


def pnl_figure(rep: dict[str, Any], tl: dict[str, np.ndarray] | None, tl_error: str | None):
    fig = _figure()
    title = PLOTS[2][1]
    if tl is None or tl["wall_ns"].size == 0:
        return _empty(fig, title, _no_timeline_why(tl_error))
    if not bool(tl.get("risk_live", True)):
        p = rep["risk"]["pnl_usd"]
        return _empty(fig, title, f"the risk state lives on the GPU during the run: no PnL over time.\n"
                                  f"At the end: total {fmt_usd(p['total'])} (realised "
                                  f"{fmt_usd(p['realised'])}, unrealised {fmt_usd(p['unrealised'])})")
    x, xlabel, fmt = _feed_x(tl)
    rp, up = tl["pnl_realised"] / DOLLAR, tl["pnl_unrealised"] / DOLLAR
    ax = fig.add_subplot()
    ax.plot(x, rp + up, drawstyle="steps-post", lw=2, label="total")
    ax.plot(x, rp, drawstyle="steps-post", label="realised")
    ax.plot(x, up, drawstyle="steps-post", label="unrealised")
    _mark_end(ax, tl, x, rp + up)
    ax.axhline(0.0, color="#888888", lw=0.8)
    ax.set_ylabel("US dollars")
    ax.set_xlabel(xlabel)
    _time_axis(ax, fmt)
    fills = int(tl["fills"][-1])
    ax.set_title(f"{title}  ({int((tl['batch'] == 1).sum()):,} batches, {fills:,} fills)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


def _mark_end(ax, tl: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> None:
    """The row taken after the drain (``batch`` 0: the venue's last reports), as a marker."""
    end = np.flatnonzero(tl["batch"] == 0)
    if end.size:
        ax.plot(x[end], y[end], "k*", ms=9, label="after the drain (last execution reports)")


def _symbol_names(rep: dict[str, Any]) -> dict[int, str]:
    out = {}
    for name, p in rep.get("risk", {}).get("positions", {}).items():
        if isinstance(p, dict) and "locate" in p:
            out[int(p["locate"])] = str(name)
    return out


def position_figure(rep: dict[str, Any], tl: dict[str, np.ndarray] | None, tl_error: str | None):
    fig = _figure()
    title = PLOTS[3][1]
    if tl is None or tl["wall_ns"].size == 0:
        return _empty(fig, title, _no_timeline_why(tl_error))
    if not bool(tl.get("risk_live", True)):
        return _empty(fig, title, "the risk state lives on the GPU during the run: no positions over time "
                                  "(the final positions are in report.json)")
    rows, locs, qty = tl["pos_row"], tl["pos_locate"], tl["pos_qty"]
    if qty.size == 0:
        nb = int((tl["batch"] == 1).sum())
        return _empty(fig, title, f"flat throughout: no position after any of the {nb:,} batches, "
                                  "nor after the drain")
    x, xlabel, fmt = _feed_x(tl)
    nb = tl["wall_ns"].size
    uniq, inv = np.unique(locs, return_inverse=True)
    dense = np.zeros((uniq.size, nb), np.int64)
    dense[inv, rows] = qty
    order = np.argsort(-np.abs(dense).max(axis=1), kind="stable")[:TOP_SYMBOLS]
    names = _symbol_names(rep)
    ax = fig.add_subplot()
    for k in order:
        loc = int(uniq[k])
        ax.plot(x, dense[k], drawstyle="steps-post", label=names.get(loc, f"locate {loc}"))
    gross = np.abs(dense).sum(axis=0)
    ax.plot(x, gross, drawstyle="steps-post", color="#444444", ls="--", lw=1, label="gross (all symbols)")
    _mark_end(ax, tl, x, gross)
    ax.axhline(0.0, color="#888888", lw=0.8)
    ax.set_ylabel("shares (+ long, - short)")
    ax.set_xlabel(xlabel)
    _time_axis(ax, fmt)
    more = f"; the {TOP_SYMBOLS} largest of {uniq.size}" if uniq.size > TOP_SYMBOLS else ""
    held = f"{uniq.size} symbol{'s' if uniq.size != 1 else ''} held a position"
    ax.set_title(f"{title}  ({held}{more})", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


def reject_counts(rep: dict[str, Any]) -> dict[str, int]:
    """Every reject by source and reason: ``risk: reason`` (the pre-trade check), ``venue:
    reason`` (orders the venue rejected), ``cancel: reason`` (cancel / replace rejects)."""
    out: dict[str, int] = {}
    for src, d in (("risk", rep.get("risk", {}).get("rejections", {})),
                   ("venue", rep.get("execution", {}).get("venue_rejects_by_reason", {})),
                   ("cancel", rep.get("execution", {}).get("cancel_rejects_by_reason", {}))):
        for reason, n in (d or {}).items():
            if int(n):
                out[f"{src}: {reason}"] = int(n)
    return out


def rejects_figure(rep: dict[str, Any]):
    title = PLOTS[4][1]
    counts = reject_counts(rep)
    if not counts:
        fig = _figure(9.0, 2.4)
        r = rep.get("risk", {})
        return _empty(fig, title, f"no rejects: {int(r.get('intents', 0)):,} intents, "
                                  f"{int(r.get('accepted', 0)):,} accepted by risk, none refused by the "
                                  "venue")
    items = sorted(counts.items(), key=lambda kv: kv[1])
    fig = _figure(9.0, max(2.4, 0.8 + 0.32 * len(items)))
    ax = fig.add_subplot()
    colors = {"risk": "#d62728", "venue": "#ff7f0e", "cancel": "#9467bd"}
    bars = ax.barh([k for k, _ in items], [v for _, v in items],
                   color=[colors[k.split(":")[0]] for k, _ in items])
    ax.bar_label(bars, labels=[f"{v:,}" for _, v in items], padding=3, fontsize=8)
    ax.set_xlabel("rejects")
    ax.margins(x=0.15)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(f"{title}  ({sum(counts.values()):,} in all)", fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
    return fig


def throughput_figure(rep: dict[str, Any], tl: dict[str, np.ndarray] | None, tl_error: str | None):
    fig = _figure()
    title = PLOTS[5][1]
    if tl is None or not (tl["batch"] == 1).any():
        why = _no_timeline_why(tl_error) if tl is None else "the replay processed no batch"
        return _empty(fig, title, why)
    b = tl["batch"] == 1
    wall = (tl["wall_ns"][b] - tl["t0_ns"]).astype(np.float64) / 1e9
    start = np.concatenate([[0.0], wall[:-1]])
    dur = np.maximum(wall - start, 1e-9)
    msgs = tl["messages"][b]
    rate = msgs / dur
    ax = fig.add_subplot()
    ax.bar(start, rate, width=dur, align="edge", color="#1f77b4", edgecolor="#1f77b4", lw=0.3,
           label=f"per batch ({wall.size:,} batches)")
    overall = float(rep.get("timing", {}).get("msgs_per_s", 0.0))
    if overall > 0:
        ax.axhline(overall, color="#d62728", ls="--", lw=1, label=f"whole replay: {overall:,.0f} msgs/s")
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e6:g} M" if v >= 1e6 else f"{v:,.0f}"))
    ax.set_ylabel("messages / s")
    ax.set_xlabel("seconds since the replay started (wall clock)")
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{title}  ({int(msgs.sum()):,} messages in {wall[-1]:.2f} s)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


def figures(run_dir: Path, rep: dict[str, Any]) -> dict[str, bytes]:
    """Every plot of ``PLOTS`` as PNG bytes."""
    tl_error = None
    try:
        tl = load_timeline(run_dir)
    except ValueError as exc:
        tl, tl_error = None, str(exc)
    try:
        hist = load_histograms(run_dir)
    except ValueError:
        hist = None
    figs = {
        "latency_stages": latency_figure(rep, hist, PLOTS[0][1], lambda n: not is_tick_to_trade(n),
                                         "no per-stage latency recorded: the run processed no batch, or the "
                                         "per-packet engine timed whole packets (see tick-to-trade)"),
        "tick_to_trade": latency_figure(rep, hist, PLOTS[1][1], is_tick_to_trade,
                                        "no tick-to-trade: the run sent no order"),
        "pnl": pnl_figure(rep, tl, tl_error),
        "position": position_figure(rep, tl, tl_error),
        "rejects": rejects_figure(rep),
        "throughput": throughput_figure(rep, tl, tl_error),
    }
    return {k: _png(f) for k, f in figs.items()}


# --- html ------------------------------------------------------------------------------------------
CSS = """
body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1000px;color:#222}
h1{font-size:20px;margin-bottom:4px} h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right} th{background:#f4f4f4}
td.l,th.l{text-align:left} td.n{white-space:nowrap} .meta{color:#555;font-size:13px}
.status-completed{color:#2ca02c} .status-failed,.status-killed{color:#d62728}
.status-interrupted,.status-incomplete{color:#ff7f0e}
figure{margin:12px 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:12px;color:#555} pre{font-size:12px;background:#f8f8f8;padding:8px;overflow:auto}
"""


def _e(v: Any) -> str:
    return html.escape(str(v))


def _table(head: list[str], rows: list[list[Any]], left: set[int] = frozenset({0})) -> str:
    """A table; columns in ``left`` are left-aligned text, the others right-aligned numbers."""
    def cell(tag: str, i: int, c: Any) -> str:
        return f"<{tag} class=\"l\">{_e(c)}</{tag}>" if i in left else f"<{tag} class=\"n\">{_e(c)}</{tag}>"

    th = "".join(cell("th", i, h) for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def resolved_config_text(run_dir: Path) -> str | None:
    """The run's resolved config as written by Hydra (``.hydra/config.yaml``) or by the run
    (``config.yaml``), or None."""
    for rel in (".hydra/config.yaml", "config.yaml"):
        p = run_dir / rel
        if p.is_file():
            try:
                return p.read_text()
            except (OSError, UnicodeDecodeError):
                return None
    return None


def render_html(run_dir: Path, rep: dict[str, Any], pngs: dict[str, bytes]) -> str:
    run, tm, risk, ex, feed = rep["run"], rep["timing"], rep["risk"], rep["execution"], rep["feed"]
    pnl = risk["pnl_usd"]
    st = str(run.get("status", "?"))
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>hftbot run {_e(run.get('started_utc', ''))}</title><style>{CSS}</style></head><body>",
        f"<h1>hftbot run <span class=\"status-{_e(st)}\">{_e(st)}</span> "
        f"(exit status {_e(run.get('exit_code'))})</h1>",
        f"<p class=\"meta\">{_e(run_dir)}<br>started {_e(run.get('started_utc'))}, "
        f"ended {_e(run.get('ended_utc'))}; config {_e(run.get('config_hash'))}; "
        f"backend {_e(run.get('backend'))}, engine {_e(run.get('engine'))}"
        f"<br>git {_e(run.get('git_commit') or '?')}{' (dirty)' if run.get('git_dirty') else ''}; "
        f"{_e(run.get('host'))}, {_e(run.get('cpu_model'))}, {_e(run.get('cpus'))} CPUs; "
        f"Python {_e(run.get('python'))}, numba {_e(run.get('numba'))}</p>",
    ]
    if rep.get("error", {}).get("stage"):
        er = rep["error"]
        parts.append(f"<p class=\"status-failed\">error at {_e(er['stage'])}: {_e(er['type'])}: "
                     f"{_e(er['message'])}</p>")
    if rep.get("kill_switch", {}).get("engaged") and rep["kill_switch"].get("source") == "stop":
        k = rep["kill_switch"]   # a stop signal's cancels went through the kill switch: not a kill
        parts.append(f"<p>stop: working orders cancelled through the kill switch ({_e(k['reason'])}); "
                     f"{_e(k['cancels_sent'])} cancels sent</p>")
    elif rep.get("kill_switch", {}).get("engaged"):
        k = rep["kill_switch"]
        parts.append(f"<p class=\"status-killed\">kill switch engaged: {_e(k['reason'])} ({_e(k['source'])}) "
                     f"at {_e(k['at_utc'])}; {_e(k['cancels_sent'])} cancels sent</p>")
    dr = ex.get("drain") or {}
    if dr.get("outcome") in ("stalled", "venue_exited"):
        ve, fe = int(dr.get("venue_events") or 0), int(dr.get("feed_events") or 0)
        parts.append(f"<p class=\"status-incomplete\">the venue did not drain ({_e(dr['outcome'])}, "
                     f"waited {float(dr.get('wait_s') or 0):.1f} s): it applied {ve:,} of {fe:,} market events; "
                     "reports after that point never came</p>")
    parts.append("<h2>Summary</h2>")
    parts.append(_table(["", ""], [
        ["input", f"{rep['input'].get('path')} ({rep['input'].get('format')}, "
                  f"{int(rep['input'].get('bytes') or 0) / 1e6:,.1f} MB)"],
        ["messages", f"{int(feed.get('decoded', 0)):,} decoded of {int(feed.get('messages_in', 0)):,}"],
        ["replay", f"{float(tm['replay_s']):.3f} s, {float(tm['msgs_per_s']):,.0f} msgs/s, "
                   f"{float(tm['mb_per_s']):,.1f} MB/s"],
        ["timing", f"total {float(tm['total_s']):.1f} s: setup {float(tm['setup_s']):.1f}, compile "
                   f"{float(tm['compile_s']):.1f}, connect {float(tm['connect_s']):.1f}, replay "
                   f"{float(tm['replay_s']):.1f}, drain {float(tm['drain_s']):.1f}, "
                   f"stop {float(tm['stop_s']):.1f}"],
        ["intents", f"{int(risk['intents']):,}: {int(risk['accepted']):,} accepted, "
                    f"{int(risk['rejected']):,} rejected by risk"],
        ["orders", f"{int(ex.get('new_sent', 0)):,} new, {int(ex.get('cancel_sent', 0)):,} cancels, "
                   f"{int(ex.get('orders_rejected', 0)):,} rejected by the venue"],
        ["fills", f"{int(risk['fills']):,} fills, {int(ex.get('filled_shares', 0)):,} shares"],
        ["PnL", f"{fmt_usd(pnl['total'])} (realised {fmt_usd(pnl['realised'])}, unrealised "
                f"{fmt_usd(pnl['unrealised'])}, peak {fmt_usd(pnl['peak'])})"],
        ["kill switch", risk.get("kill_switch", "off")],
    ], left={0, 1}))
    lat = rep.get("latency", {})
    if lat:
        parts.append("<h2>Latency</h2>")
        parts.append(_table(["stage", "count", "min", "p50", "p99", "p99.9", "max", "what"], [
            [n, f"{s['count']:,}", fmt_ns(s["min_ns"]), pct_cell(s, "p50_ns"), pct_cell(s, "p99_ns"),
             pct_cell(s, "p99_9_ns"), fmt_ns(s["max_ns"]), s["what"]] for n, s in lat.items()], left={0, 7}))
        note = too_few_note(lat)
        if note:
            parts.append(f"<p>{_e(note)}</p>")
    for stem, title in PLOTS:
        b64 = base64.b64encode(pngs[stem]).decode("ascii")
        parts.append(f"<h2>{_e(title)}</h2><figure><img class=\"plot\" id=\"plot-{stem}\" "
                     f"alt=\"{_e(title)}\" src=\"data:image/png;base64,{b64}\">"
                     f"<figcaption>{_e(stem)}.png</figcaption></figure>")
    cfg = resolved_config_text(run_dir)
    if cfg is not None:
        parts.append("<h2>Resolved config</h2><details><summary>config.yaml</summary>"
                     f"<pre>{_e(cfg)}</pre></details>")
    sources = ["report.json"] + [f for f in (TIMELINE_FILE, HISTOGRAMS_FILE) if (run_dir / f).is_file()]
    parts.append(f"<p class=\"meta\">made from {_e(', '.join(sources))} by replay/report_html.py</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run_dir: Path | str, rep: dict[str, Any] | None = None) -> Path:
    """Write the PNGs and ``report.html`` into ``run_dir``; return the HTML's path.
    ``rep``: the report (read from ``run_dir/report.json`` when not given). ``ReportError`` if
    there is no report; ``OSError`` if the directory is not writable."""
    d = Path(run_dir)
    if rep is None:
        rep = load_report(d)
    try:
        pngs = figures(d, rep)
        page = render_html(d, rep, pngs)
    except (KeyError, TypeError) as exc:
        raise ReportError(f"{d / 'report.json'}: missing or mistyped field {exc} (schema_version "
                          f"{rep.get('schema_version')!r})") from None
    for stem, data in pngs.items():
        (d / f"{stem}.png").write_bytes(data)
    out = d / REPORT_FILE
    out.write_text(page, encoding="utf-8")
    return out


# --- hftbot report ----------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (runs/DATE/TIME) holding report.json")


def cmd_report(args: argparse.Namespace) -> int:
    try:
        out = write_report(args.run_dir)
    except (ReportError, OSError) as exc:
        print(f"hftbot report: error: {exc}", file=sys.stderr)
        return 2
    print(f"hftbot report: {out} ({', '.join(f'{s}.png' for s, _ in PLOTS)} beside it)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hftbot report", description="write report.html and PNG plots for a run")
    add_arguments(p)
    return cmd_report(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
