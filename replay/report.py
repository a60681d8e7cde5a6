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
    """Book counters, what the books dropped and why (``drops``), and the top ``depth`` levels
    of each configured symbol present."""
    out: dict[str, Any] = {"stats": state.counters(), "drops": state.drops(), "symbols": {}}
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


def format_risk(risk: dict[str, Any]) -> list[str]:
    """Summary lines for the risk stage (``pipeline.risk.RiskStage.summary()``): intents,
    rejections by reason name, kill switch, orders, fills, PnL and exposure (money is Price(4)
    x shares in the dict, printed in dollars). The run loop appends them to the summary."""
    d = 10_000.0
    down = ", FIX session down" if risk["disconnected"] else ""
    # the reason alone ("kill switch manual") read as if someone had pressed it; a run's stop
    # cancels its working orders through the kill switch too, reason manual
    ks = risk["kill_switch"]
    kill = "kill switch off" if ks == "off" else f"kill switch engaged ({ks})"
    lines = [f"risk       {risk['intents']:,} intents: {risk['accepted']:,} accepted, {risk['rejected']:,} "
             f"rejected; {kill}{down}"]
    rej = risk["rejections"]
    if rej:
        by_count = sorted(rej.items(), key=lambda kv: -kv[1])
        lines.append("rejected   " + ", ".join(f"{k} {v:,}" for k, v in by_count))
    else:
        lines.append("rejected   nothing")
    rc, h = risk["risk_cancels"], risk["hedges"]
    lines.append(f"orders     {risk['open_orders']:,} open; {risk['exec_events']:,} execution events, "
                 f"{risk['fills']:,} fills ({risk['filled_qty']:,} shares), unknown "
                 f"{risk['unknown_exec']:,}, overfills {risk['overfills']:,}; risk cancels: kill "
                 f"{rc['kill']:,}, disconnect {rc['disconnect']:,}, throttle {rc['throttle']:,}; hedges "
                 f"{h['sent']:,} sent, {h['rejected']:,} rejected")
    if risk["strategies_disabled"]:
        lines.append(f"disabled   strategies {risk['strategies_disabled']} (repeated-execution throttle; "
                     "re-enable by hand)")
    p, e = risk["pnl"], risk["exposure"]
    lines.append(f"pnl        ${p['total'] / d:,.2f} (realised ${p['realised'] / d:,.2f}, unrealised "
                 f"${p['unrealised'] / d:,.2f}, peak ${p['peak'] / d:,.2f}); exposure gross "
                 f"${e['gross'] / d:,.0f}, net ${e['net_short'] / d:,.0f}..${e['net_long'] / d:,.0f}, "
                 f"credit ${e['credit'] / d:,.0f}")
    for name, q in list(risk["positions"].items())[:20]:
        lines.append(f"  {name:<8} position {q['position']:+,}  mark {q['mark'] / d:,.4f}  realised "
                     f"${q['realised'] / d:,.2f}  unrealised ${q['unrealised'] / d:,.2f}")
    f = risk["feed"]
    if f["gaps"] or f["sessions_with_open_gap"]:
        lines.append(f"stale      {f['gaps']:,} feed gaps; sessions with an open gap: "
                     f"{f['sessions_with_open_gap']}")
    return lines


def truncation_line(decoded: int, trailing: int, error: str | None = None) -> str:
    """How the input ended early: ``"101 messages decoded, 15 trailing bytes"`` (and why, when
    ``error`` says), or ``"12 messages decoded, then the compressed stream is corrupt at byte K
    (...)"`` when a gzip file is damaged (``CaptureReader.error``)."""
    from replay.capture import COMPRESSED_DAMAGE

    if error and error.startswith(COMPRESSED_DAMAGE):
        return f"{decoded} messages decoded, then {error}" + (f"; {trailing} trailing bytes" if trailing else "")
    return f"{decoded} messages decoded, {trailing} trailing bytes" + (f" ({error})" if error else "")


def drops_text(drops: list[dict[str, Any]]) -> str:
    """Book drops (``BookState.drops()``) in words: ``"bad_locate 38 (stock locate above
    book.max_symbols (4,096): raise book.max_symbols), missing_refs 1"``."""
    parts = []
    for d in drops:
        why = f" ({d['what']}: raise {d['config_key']})" if d.get("config_key") else ""
        parts.append(f"{d['reason']} {d['count']:,}{why}")
    return ", ".join(parts)


def input_lines(feed: dict[str, Any], trailing: int, error: str | None,
                drops: list[dict[str, Any]] | None = None) -> list[tuple[str, str]]:
    """What was skipped or cut off, as ``(label, text)`` lines; the same words for every command
    (``hftbot run``'s summary, ``decode``, ``book``). ``feed``: ``feed_summary()``; ``drops``:
    what the books dropped (``BookState.drops()``). "skipped nothing" only when nothing was
    skipped anywhere."""
    parts = []
    if feed["problems"]:
        parts.append(", ".join(f"{k} {v:,}" for k, v in feed["problems"].items()))
    if drops:
        parts.append("books: " + drops_text(drops))
    lines = [("skipped", "; ".join(parts) if parts else "nothing")]
    if trailing or error:
        lines.append(("truncated", truncation_line(feed["decoded"], trailing, error)))
    return lines


def config_drop_lines(drops: list[dict[str, Any]], events: int) -> list[str]:
    """One loud line per drop the configuration causes (a book too small for the feed)."""
    return [f"{d['count']:,} of {events:,} book events dropped: {d['what']}; raise {d['config_key']}"
            for d in drops if d.get("config_key")]


def format_summary(rep: dict[str, Any], top_types: int = 30) -> str:
    f = rep["feed"]
    inp = rep["input"]
    lines = [
        f"hftbot run  config {rep['run']['config_hash']}  backend {rep['run']['backend']}  "
        f"engine {rep['run']['engine']}",
        f"input      {inp['path']} ({inp['format']}, {inp['bytes'] / 1e6:,.1f} MB)",
    ]
    if inp["format"] != "itch":
        lines.append(f"packets    {f['packets']:,} read, {f['udp_accepted']:,} feed UDP, "
                     f"{f['filtered']:,} filtered out")
        lines.append(f"moldudp64  {f['mold_packets']:,} packets, sessions {inp['sessions'] or '-'}, "
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
    drops = rep.get("book", {}).get("drops", [])
    for label, text in input_lines(f, inp["trailing_bytes"], inp.get("error"), drops):
        lines.append(f"{label:<10} {text}")
    if "book" in rep:
        bs = rep["book"]["stats"]
        for text in config_drop_lines(drops, bs.get("events", 0)):
            lines.append(f"config     {text}")
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
    lines.append(f"time       {t['total_s']:.2f} s total: set-up {t['setup_s']:.2f} s, compile {t['compile_s']:.2f} s, "
                 f"connect {t['connect_s']:.2f} s, replay {t['replay_s']:.2f} s, drain {t['drain_s']:.2f} s, "
                 f"stop {t['stop_s']:.2f} s")
    if t["messages"] == 0:
        lines.append("throughput none: no message was replayed")
    else:
        lines.append(f"throughput {t['msgs_per_s'] / 1e6:,.2f} M msg/s, {t['mb_per_s']:,.0f} MB/s over the replay "
                     f"({t['messages']:,} messages in {t['replay_s']:.3f} s: read, frame, decode, books, features, "
                     f"model, strategy, risk, FIX; compile and connect excluded)")
    return "\n".join(lines)


class IntentSummary:
    """Order intents counted by symbol and side (and by kind: quote, take, cancel), plus the
    model rows seen; ``format_intents`` prints it."""

    def __init__(self) -> None:
        self.counts: dict[int, np.ndarray] = {}  # locate -> [buy, sell, quote, take, cancel]
        self.predictions = 0

    def add(self, batch, predictions: int = 0) -> None:
        from kernels import intents as IN

        self.predictions += int(predictions)
        if batch is None or batch.n == 0:
            return
        r = batch.rows[: batch.n]
        cancel = r[:, IN.I_KIND] == IN.KIND_CANCEL
        cols = (r[:, IN.I_SIDE] == IN.SIDE_BUY, r[:, IN.I_SIDE] == IN.SIDE_SELL,
                ~cancel & (r[:, IN.I_STYLE] == IN.STYLE_QUOTE), ~cancel & (r[:, IN.I_STYLE] == IN.STYLE_TAKE), cancel)
        table = np.stack(cols, axis=1).astype(np.int64)
        for loc in np.unique(r[:, IN.I_LOCATE]):
            c = self.counts.setdefault(int(loc), np.zeros(5, np.int64))
            c += table[r[:, IN.I_LOCATE] == loc].sum(axis=0)

    def result(self, state, counters: dict[str, int] | None = None) -> dict[str, Any]:
        by_symbol = {}
        for loc, c in sorted(self.counts.items()):
            by_symbol[state.stock_of(loc) or str(loc)] = dict(zip(("buy", "sell", "quote", "take", "cancel"),
                                                                  (int(x) for x in c)))
        total = int(sum(int(c[0] + c[1]) for c in self.counts.values()))
        return {"predictions": self.predictions, "total": total, "by_symbol": by_symbol, "strategy": counters or {}}


def format_intents(rep: dict[str, Any], per_packet: bool = False) -> str:
    """Summary lines for the model and the strategy: predictions, intents by symbol and side.

    ``per_packet``: the per-packet driver (``feed.per_packet=true``) collects no feature or intent
    summary, so predictions are not counted and the intents come from the strategy's own counters
    (quotes + takes + cancels), without the split by symbol."""
    m, it = rep.get("model", {}), rep.get("intents", {})
    lines = []
    if m:
        made = ("predictions not counted per packet (feed.per_packet=true)" if per_packet
                else f"{it.get('predictions', 0):,} predictions")
        lines.append(f"model      {m['path']} ({m['backend']}), {made}; horizon {m['horizon_rows']} rows")
    if it and it.get("strategy"):
        s = it["strategy"]
        total = int(s["quotes"]) + int(s["takes"]) + int(s["cancels"]) if per_packet else it["total"]
        lines.append(f"intents    {total:,}: {s['quotes']:,} quotes, {s['takes']:,} takes, {s['cancels']:,} "
                     f"cancels; held back by position {s['held_by_position']:,}, by self-cross "
                     f"{s['held_self_cross']:,}; rows skipped: book {s['skipped_book']:,}, interval "
                     f"{s['skipped_interval']:,}")
        for name, c in ({} if per_packet else it["by_symbol"]).items():
            lines.append(f"  {name:<8} buy {c['buy']:>8,}  sell {c['sell']:>8,}   (quote {c['quote']:,}, take "
                         f"{c['take']:,}, cancel {c['cancel']:,})")
    return "\n".join(lines)
