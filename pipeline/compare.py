"""``hftbot compare RUN_A RUN_B ...``: runs side by side.

Each argument is a run directory (``runs/DATE/TIME``) holding ``report.json``; its resolved config
is read from ``.hydra/config.yaml`` (written by Hydra for ``hftbot run``) or ``config.yaml``.
The comparison has the config keys whose values differ, then the run, feed, trading (PnL,
fills, orders), rejects by reason and latency percentiles of every run, one column per run
(plus ``B - A`` when there are two). It is printed as a table; ``--html OUT`` also writes it as
one self-contained HTML page with a latency chart.
"""

from __future__ import annotations

import argparse
import base64
import html
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.latency import enough_values
from replay.report_html import CSS, ReportError, fmt_ns, load_report, reject_counts

MISSING = "-"


class CompareError(ValueError):
    """A run directory cannot be compared (one line, for the user)."""


@dataclass
class RunInfo:
    path: Path
    label: str
    rep: dict[str, Any]
    config: dict[str, Any] | None      # flattened resolved config (dotted keys), None if none saved
    config_file: Path | None


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b.c": value}; lists stay values."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict) and v:
                out.update(flatten(v, key))
            else:
                out[key] = v
    else:
        out[prefix] = d
    return out


def load_config(run_dir: Path) -> tuple[dict[str, Any] | None, Path | None]:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for rel in (".hydra/config.yaml", "config.yaml"):
        p = run_dir / rel
        if not p.is_file():
            continue
        try:
            cfg = OmegaConf.load(p)
        except (OSError, ValueError, OmegaConfBaseException) as exc:
            raise CompareError(f"{p}: not a readable config ({str(exc).splitlines()[0]})") from None
        try:
            data = OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException:  # interpolations that only Hydra resolves (${now:...}, ${hydra:...})
            data = OmegaConf.to_container(cfg, resolve=False)
        return flatten(data), p
    return None, None


def load_runs(paths: list[str]) -> list[RunInfo]:
    runs = []
    for i, raw in enumerate(paths):
        p = Path(raw)
        try:
            rep = load_report(p)
        except ReportError as exc:
            raise CompareError(str(exc)) from None
        cfg, cfg_file = load_config(p)
        letter = chr(ord("A") + i) if i < 26 else f"R{i + 1}"
        runs.append(RunInfo(p, letter, rep, cfg, cfg_file))
    return runs


def _fmt_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def config_differences(runs: list[RunInfo]) -> list[tuple[str, list[str]]]:
    """(key, value per run) for every config key whose value is not the same in every run; a
    key absent from a run's config shows ``-``. Runs without a saved config are left out of the
    comparison (their column shows ``(no config saved)``)."""
    have = [r for r in runs if r.config is not None]
    if len(have) < 2:
        return []
    keys = sorted(set().union(*(r.config.keys() for r in have)))
    out = []
    for k in keys:
        vals = [(_fmt_value(r.config[k]) if k in r.config else MISSING) if r.config is not None else
                "(no config saved)" for r in runs]
        if len({v for r, v in zip(runs, vals) if r.config is not None}) > 1:
            out.append((k, vals))
    return out


def _get(d: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


#: (section, row label, getter, kind) - kind: "int", "usd", "rate", "s", "text"
def metric_rows(runs: list[RunInfo]) -> list[tuple[str, str, list[Any], str]]:
    rows: list[tuple[str, str, list[Any], str]] = []

    def add(section: str, label: str, kind: str, *keys: str) -> None:
        rows.append((section, label, [_get(r.rep, *keys) for r in runs], kind))

    add("run", "status", "text", "run", "status")
    add("run", "exit status", "text", "run", "exit_code")
    add("run", "engine", "text", "run", "engine")
    add("run", "backend", "text", "run", "backend")
    add("run", "config hash", "text", "run", "config_hash")
    commits = [(_get(r.rep, "run", "git_commit") or "?")[:12]
               + (" dirty" if _get(r.rep, "run", "git_dirty") else "") for r in runs]
    rows.append(("run", "git commit", commits, "text"))
    add("run", "started (UTC)", "text", "run", "started_utc")
    add("feed", "input", "text", "input", "path")
    add("feed", "messages decoded", "int", "feed", "decoded")
    add("feed", "replay s", "s", "timing", "replay_s")
    add("feed", "msgs/s", "rate", "timing", "msgs_per_s")
    add("feed", "compile s", "s", "timing", "compile_s")
    add("trading", "intents", "int", "risk", "intents")
    add("trading", "accepted by risk", "int", "risk", "accepted")
    add("trading", "rejected by risk", "int", "risk", "rejected")
    add("trading", "orders sent (new)", "int", "execution", "new_sent")
    add("trading", "cancels sent", "int", "execution", "cancel_sent")
    add("trading", "rejected by venue", "int", "execution", "orders_rejected")
    add("trading", "fills", "int", "risk", "fills")
    add("trading", "filled shares", "int", "execution", "filled_shares")
    add("trading", "open orders at end", "int", "risk", "open_orders")
    add("trading", "PnL total $", "usd", "risk", "pnl_usd", "total")
    add("trading", "PnL realised $", "usd", "risk", "pnl_usd", "realised")
    add("trading", "PnL unrealised $", "usd", "risk", "pnl_usd", "unrealised")
    add("trading", "PnL peak $", "usd", "risk", "pnl_usd", "peak")
    add("trading", "gross exposure $", "usd", "risk", "exposure_usd", "gross")
    add("trading", "kill switch", "text", "risk", "kill_switch")
    rejects = [reject_counts(r.rep) for r in runs]
    for reason in sorted(set().union(*rejects)):
        rows.append(("rejects", reason, [c.get(reason, 0) for c in rejects], "int"))
    names: list[str] = []
    for r in runs:
        names += [n for n in r.rep.get("latency", {}) if n not in names]
    for n in names:
        for q, key in (("count", "count"), ("p50", "p50_ns"), ("p99", "p99_ns"), ("p99.9", "p99_9_ns"),
                       ("max", "max_ns")):
            # a percentile only where the run's row holds the values it needs (the summary's rule)
            vals = [_get(r.rep, "latency", n, key)
                    if enough_values(_get(r.rep, "latency", n, "count", default=0), key) else None for r in runs]
            rows.append(("latency", f"{n} {q}", vals, "int" if q == "count" else "ns"))
    return rows


def fmt_cell(v: Any, kind: str) -> str:
    if v is None:
        return MISSING
    if kind == "int":
        return f"{int(v):,}"
    if kind == "usd":
        return f"{float(v):,.2f}"
    if kind == "rate":
        return f"{float(v):,.0f}"
    if kind == "s":
        return f"{float(v):.3f}"
    if kind == "ns":
        return fmt_ns(float(v))
    return _fmt_value(v)


def fmt_delta(vals: list[Any], kind: str) -> str:
    if len(vals) != 2 or kind == "text" or any(v is None for v in vals):
        return ""
    d = float(vals[1]) - float(vals[0])
    if d == 0:
        return "="
    sign = "+" if d > 0 else "-"
    if kind == "ns":
        pct = f" ({d / float(vals[0]) * 100:+.0f}%)" if vals[0] else ""
        return f"{sign}{fmt_ns(abs(d))}{pct}"
    if kind == "int":
        return f"{int(d):+,}"
    if kind == "usd":
        return f"{d:+,.2f}"
    if kind == "rate":
        pct = f" ({d / float(vals[0]) * 100:+.0f}%)" if vals[0] else ""
        return f"{d:+,.0f}{pct}"
    return f"{d:+.3f}"


def table_rows(runs: list[RunInfo]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(header, [(section, cells)]): the whole comparison as text cells."""
    two = len(runs) == 2
    head = ["", *[r.label for r in runs]] + (["B - A"] if two else [])
    out: list[tuple[str, list[str]]] = []
    for key, vals in config_differences(runs):
        out.append(("config (differences)", [key, *vals] + ([""] if two else [])))
    if not any(r.config is not None for r in runs) or sum(r.config is not None for r in runs) < 2:
        hashes = {_get(r.rep, "run", "config_hash") for r in runs}
        out.append(("config (differences)", ["(no resolved config saved: config hashes "
                                             + ("equal" if len(hashes) == 1 else "differ") + ")",
                                             *["" for _ in runs]] + ([""] if two else [])))
    for section, label, vals, kind in metric_rows(runs):
        cells = [label, *(fmt_cell(v, kind) for v in vals)] + ([fmt_delta(vals, kind)] if two else [])
        out.append((section, cells))
    return head, out


def _clip(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: long ones keep both ends (paths differ at the end)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def format_table(runs: list[RunInfo], width: int = 30) -> str:
    """The comparison as text: one column per run (cells clipped to ``width`` characters)."""
    head, rows = table_rows(runs)
    ncol = len(head)
    cells_of = [[_clip(c, 48 if i == 0 else width) for i, c in enumerate(cells)] for _, cells in rows]
    w = [max([len(head[i])] + [len(c[i]) for c in cells_of]) for i in range(ncol)]
    lines = [f"{r.label} = {r.path}" for r in runs]
    if not any(s == "config (differences)" for s, _ in rows):
        lines.append("config: the same in every run")

    def line(cells: list[str]) -> str:
        return "  " + cells[0].ljust(w[0]) + "".join("  " + c.rjust(w[i]) for i, c in enumerate(cells) if i)

    lines += ["", line(head)]
    section = None
    for (s, _), cells in zip(rows, cells_of):
        if s != section:
            lines.append(s)
            section = s
        lines.append(line(cells))
    return "\n".join(lines)


def latency_chart(runs: list[RunInfo]) -> bytes | None:
    """Grouped bars: p50 and p99 of every latency name, one colour per run (log scale)."""
    import numpy as np
    from matplotlib.ticker import FuncFormatter

    from replay.report_html import _figure, _png

    names: list[str] = []
    for r in runs:
        names += [n for n in r.rep.get("latency", {}) if n not in names]
    if not names:
        return None
    fig = _figure(10.0, max(3.0, 0.9 + 0.55 * len(names)))
    ax = fig.add_subplot()
    h = 0.8 / len(runs)
    y = np.arange(len(names))
    lo = None
    for i, r in enumerate(runs):
        lat = r.rep.get("latency", {})
        have = [k for k, n in enumerate(names) if _get(lat, n, "p50_ns")]   # a run without the figure: no bar
        if not have:
            continue
        p50 = np.array([lat[names[k]]["p50_ns"] for k in have], np.float64)
        p99 = np.array([max(lat[names[k]]["p99_ns"], lat[names[k]]["p50_ns"]) for k in have], np.float64)
        lo = min(lo, float(p50.min())) if lo is not None else float(p50.min())
        pos = y[have] - 0.4 + h * (i + 0.5)
        ax.barh(pos, p99, height=h * 0.9, alpha=0.35, color=f"C{i}")
        ax.barh(pos, p50, height=h * 0.9, color=f"C{i}",
                label=f"{r.label} ({r.path.name}): p50 solid, p99 light")
    if lo is None:
        return None
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(left=lo / 3)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_ns(v)))
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title("latency p50 / p99 per stage (log scale)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def render_html(runs: list[RunInfo]) -> str:
    head, rows = table_rows(runs)
    e = html.escape
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>hftbot compare</title>",
             f"<style>{CSS}</style></head><body><h1>hftbot compare: {len(runs)} runs</h1><ul class=\"meta\">"]
    for r in runs:
        cf = f" (config {e(str(r.config_file))})" if r.config_file else " (no resolved config saved)"
        parts.append(f"<li><b>{e(r.label)}</b> = {e(str(r.path))}{cf}</li>")
    parts.append("</ul>")
    if not any(s == "config (differences)" for s, _ in rows):
        parts.append("<p>config: the same in every run</p>")
    section = None
    for s, cells in rows:
        if s != section:
            if section is not None:
                parts.append("</table>")
            parts.append(f"<h2>{e(s)}</h2><table><tr>" + "".join(
                f"<th class=\"l\">{e(h)}</th>" if i == 0 else f"<th>{e(h)}</th>" for i, h in enumerate(head))
                + "</tr>")
            section = s
        parts.append("<tr>" + "".join(f"<td class=\"l\">{e(c)}</td>" if i == 0 else f"<td>{e(c)}</td>"
                                      for i, c in enumerate(cells)) + "</tr>")
    if section is not None:
        parts.append("</table>")
    png = latency_chart(runs)
    if png is not None:
        parts.append("<h2>latency chart</h2><figure>"
                     "<img class=\"plot\" alt=\"latency p50 and p99 per stage\" "
                     f"src=\"data:image/png;base64,{base64.b64encode(png).decode('ascii')}\"></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="two or more run directories (runs/DATE/TIME), each holding report.json")
    p.add_argument("--html", metavar="OUT", help="also write the comparison as one self-contained HTML page")


def cmd_compare(args: argparse.Namespace) -> int:
    try:
        if len(args.runs) < 2:
            raise CompareError("give at least two run directories")
        runs = load_runs(args.runs)
        if args.html:
            out = Path(args.html)
            if not out.parent.is_dir():
                raise CompareError(f"--html {out}: directory {out.parent} does not exist")
            if out.is_dir():
                raise CompareError(f"--html {out}: is a directory (give a file name)")
    except CompareError as exc:
        print(f"hftbot compare: error: {exc}", file=sys.stderr)
        return 2
    try:
        print(format_table(runs), flush=True)
    except BrokenPipeError:  # `hftbot compare A B | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if args.html:
        try:
            out.write_text(render_html(runs), encoding="utf-8")
        except OSError as exc:
            print(f"hftbot compare: error: --html {out}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"\nhtml: {out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hftbot compare", description="put runs side by side")
    add_arguments(p)
    return cmd_compare(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
