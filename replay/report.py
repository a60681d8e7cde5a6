"""Run reports: counters from the framing/decode stats turned into a dict and a text summary."""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels import stats as S
from kernels.itch_spec import NAMES


def feed_summary(stats: np.ndarray) -> dict[str, Any]:
    """Counts from one stats array: packets, messages by type, gaps, duplicates, problems."""
    by_type = {chr(t): int(stats[S.TYPE_BASE + t]) for t in range(256) if stats[S.TYPE_BASE + t]}
    return {
        **{name: int(stats[slot]) for name, slot in S.INFO.items()},
        "messages_by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1])),
        "problems": {name: int(stats[slot]) for name, slot in S.PROBLEMS.items() if stats[slot]},
    }


def book_summary(state, backend, symbols: list[str], depth: int) -> dict[str, Any]:
    """Book counters plus the top ``depth`` levels of each configured symbol present."""
    out: dict[str, Any] = {"stats": state.counters(), "symbols": {}}
    names = symbols if "*" not in symbols else []
    for name in names:
        loc = state.locate_of(name)
        if loc is not None and depth > 0:
            out["symbols"][name] = {"locate": loc, **state.depth(backend, loc, depth)}
    return out


class FeatureSummary:
    """Running summary of the feature rows per symbol: count, mean spread, last row."""

    def __init__(self) -> None:
        self.count: dict[int, int] = {}
        self.spread_sum: dict[int, float] = {}
        self.last: dict[int, np.ndarray] = {}

    def add(self, batch) -> None:
        from kernels import features as FT

        if batch.n == 0:
            return
        keys = batch.keys[: batch.n, FT.K_LOCATE]
        vals = batch.values[: batch.n]
        for loc in np.unique(keys):
            rows = vals[keys == loc]
            loc = int(loc)
            self.count[loc] = self.count.get(loc, 0) + len(rows)
            self.spread_sum[loc] = self.spread_sum.get(loc, 0.0) + float(rows[:, FT.F_SPREAD].sum())
            self.last[loc] = rows[-1].copy()

    def result(self, state) -> dict[str, Any]:
        from kernels import features as FT

        out = {}
        for loc, n in sorted(self.count.items()):
            last = dict(zip(FT.FEATURE_NAMES, (float(x) for x in self.last[loc])))
            out[state.stock_of(loc) or str(loc)] = {"rows": n, "mean_spread": self.spread_sum[loc] / n, "last": last}
        return out


def truncation_line(decoded: int, trailing: int) -> str:
    return f"{decoded} messages decoded, {trailing} trailing bytes"


def format_summary(rep: dict[str, Any], top_types: int = 30) -> str:
    f = rep["feed"]
    lines = [
        f"hftbot run  config {rep['config_hash']}  backend {rep['backend']}",
        f"input      {rep['input']} ({rep['format']}, {rep['bytes'] / 1e6:,.1f} MB)",
    ]
    if rep["format"] != "itch":
        lines.append(f"packets    {f['packets']:,} read, {f['udp_accepted']:,} feed UDP, "
                     f"{f['filtered']:,} filtered out")
        lines.append(f"moldudp64  {f['mold_packets']:,} packets, sessions {rep['sessions'] or '-'}, "
                     f"heartbeats {f['mold_heartbeats']:,}, end-of-session {f['mold_end_of_session']:,}")
        lines.append(f"sequence   gaps {f['gaps']:,} ({f['gap_messages']:,} messages missing), "
                     f"duplicates dropped {f['duplicate_messages']:,}, "
                     f"unsequenced packets {f['mold_unsequenced_packets']:,}")
    else:
        eos = "yes" if f["end_of_session"] else "no (file incomplete)"
        lines.append(f"binaryfile end-of-session marker: {eos}")
    lines.append(f"messages   {f['decoded']:,} decoded of {f['messages_in']:,} blocks")
    for t, n in list(f["messages_by_type"].items())[:top_types]:
        share = 100.0 * n / max(f["decoded"], 1)
        lines.append(f"  {t}  {NAMES.get(t, '?'):<30} {n:>14,}  {share:5.1f}%")
    if f["problems"]:
        lines.append("skipped    " + ", ".join(f"{k} {v:,}" for k, v in f["problems"].items()))
    else:
        lines.append("skipped    nothing")
    if rep["trailing_bytes"]:
        lines.append(f"truncated  {truncation_line(f['decoded'], rep['trailing_bytes'])}"
                     + (f" ({rep['error']})" if rep.get("error") else ""))
    if "book" in rep:
        bs = rep["book"]["stats"]
        lines.append(f"books      {bs['live_orders']:,} live orders on {bs['live_levels']:,} levels; "
                     f"adds {bs['adds']:,}, deletes {bs['deletes']:,}, replaces {bs['replaces']:,}, "
                     f"executions {bs['executions']:,}, cancels {bs['cancels']:,}, trades {bs['trades']:,}")
        lines.append(f"           missing refs {bs['missing_refs']:,}, duplicate refs {bs['duplicate_refs']:,}, "
                     f"crossed updates {bs['crossed_updates']:,}, locked updates {bs['locked_updates']:,}, "
                     f"books crossed/locked now {bs['crossed_or_locked_books_now']:,}")
        for name, d in rep["book"]["symbols"].items():
            bid = d["bids"][0] if d["bids"] else None
            ask = d["asks"][0] if d["asks"] else None
            fmt = lambda lv: f"{lv['price'] / 1e4:,.4f} x {lv['shares']:,} ({lv['orders']})" if lv else "-"
            lines.append(f"  {name:<8} bid {fmt(bid):<28} ask {fmt(ask):<28} "
                         f"depth {len(d['bids'])}/{len(d['asks'])} levels")
        for name, f in rep.get("features", {}).items():
            last = f["last"]
            lines.append(f"  features {name:<8} rows {f['rows']:,}  mean spread {f['mean_spread'] / 1e4:.4f}  "
                         f"micro {last['microprice'] / 1e4:,.4f}  imbalance {last['imbalance']:+.3f}  "
                         f"ofi {last['ofi']:+,.0f}  flow {last['trade_flow']:+,.0f}  rv {last['rv']:.2e}")
    t = rep["timing"]
    lines.append(f"time       {t['elapsed_s']:.3f} s total, {t['startup_s']:.3f} s to first batch "
                 f"(JIT load + first chunk)")
    lines.append(f"throughput {t['msgs_per_s'] / 1e6:,.2f} M msg/s, {t['mb_per_s']:,.0f} MB/s "
                 f"(read + frame + decode + books + features, one core)")
    return "\n".join(lines)
