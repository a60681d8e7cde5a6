"""Latency histograms for run reports (HdrHistogram: fixed memory, 3 significant digits).

``Latencies`` keeps one histogram per name (``decode``, ``book``, ..., ``tick_to_trade``), in
nanoseconds; ``summary()`` gives count, min, p50, p99, p99.9 and max for each.
"""

from __future__ import annotations

from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_NS = 1
HIGHEST_NS = 3_600_000_000_000   # one hour
DIGITS = 3


class Latencies:
    def __init__(self) -> None:
        self.h: dict[str, HdrHistogram] = {}
        self.unit: dict[str, str] = {}

    def record(self, name: str, ns: int, count: int = 1, unit: str = "ns") -> None:
        h = self.h.get(name)
        if h is None:
            h = self.h[name] = HdrHistogram(LOWEST_NS, HIGHEST_NS, DIGITS)
            self.unit[name] = unit
        h.record_value(min(max(int(ns), LOWEST_NS), HIGHEST_NS), int(count))

    def summary(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, h in self.h.items():
            if h.get_total_count() == 0:
                continue
            out[name] = {
                "count": int(h.get_total_count()),
                "min_ns": int(h.get_min_value()),
                "p50_ns": int(h.get_value_at_percentile(50)),
                "p99_ns": int(h.get_value_at_percentile(99)),
                "p99_9_ns": int(h.get_value_at_percentile(99.9)),
                "max_ns": int(h.get_max_value()),
                "what": self.unit[name],
            }
        return out


def fmt_ns(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


#: values a percentile needs before it says more than the maximum: the p99 of fewer than 100
#: values is the largest of them (and so is the p99.9 of fewer than 1,000)
PCT_MIN_COUNT = {"p50_ns": 1, "p99_ns": 100, "p99_9_ns": 1000}
TOO_FEW = "-"


def enough_values(count: int, key: str) -> bool:
    """Whether a row of ``count`` values has a figure of its own for ``key`` (``PCT_MIN_COUNT``;
    count, min and max always)."""
    return int(count) >= PCT_MIN_COUNT.get(key, 0)


def pct_cell(s: dict[str, Any], key: str) -> str:
    """``s[key]`` formatted, or ``TOO_FEW`` when the row holds fewer values than that percentile
    needs (``enough_values``): a per-batch row of 8 values has no p99 of its own."""
    return fmt_ns(s[key]) if enough_values(s["count"], key) else TOO_FEW


def too_few_note(lat: dict[str, dict[str, Any]]) -> str | None:
    """The footnote for ``TOO_FEW`` cells, when a row has them."""
    if all(enough_values(s["count"], "p99_9_ns") for s in lat.values()):
        return None
    return (f"'{TOO_FEW}': fewer values than the percentile needs (p99: 100, p99.9: 1,000); the max is the "
            "largest value recorded")


def format_latencies(lat: dict[str, dict[str, Any]]) -> list[str]:
    if not lat:
        return []
    w = max(22, *(len(n) for n in lat))
    lines = [f"latency (HdrHistogram){' ' * (w - 15)}count        p50        p99      p99.9        max   what"]
    for name, s in lat.items():
        lines.append(f"  {name:<{w}} {s['count']:>9,} {pct_cell(s, 'p50_ns'):>10} {pct_cell(s, 'p99_ns'):>10} "
                     f"{pct_cell(s, 'p99_9_ns'):>10} {fmt_ns(s['max_ns']):>10}   {s['what']}")
    note = too_few_note(lat)
    if note:
        lines.append(f"  {note}")
    return lines
