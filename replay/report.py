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
    t = rep["timing"]
    lines.append(f"time       {t['elapsed_s']:.3f} s total, {t['startup_s']:.3f} s to first batch "
                 f"(JIT load + first chunk)")
    lines.append(f"throughput {t['msgs_per_s'] / 1e6:,.2f} M msg/s, {t['mb_per_s']:,.0f} MB/s "
                 f"(read + frame + decode, one core)")
    return "\n".join(lines)
