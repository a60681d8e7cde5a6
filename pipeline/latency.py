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


def format_latencies(lat: dict[str, dict[str, Any]]) -> list[str]:
    if not lat:
        return []
    w = max(22, *(len(n) for n in lat))
    lines = [f"latency (HdrHistogram){' ' * (w - 15)}count        p50        p99      p99.9        max   what"]
    for name, s in lat.items():
        lines.append(f"  {name:<{w}} {s['count']:>9,} {fmt_ns(s['p50_ns']):>10} {fmt_ns(s['p99_ns']):>10} "
                     f"{fmt_ns(s['p99_9_ns']):>10} {fmt_ns(s['max_ns']):>10}   {s['what']}")
    return lines
