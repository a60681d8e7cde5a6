"""The venue's journal: an append-only JSON-lines file in the state dir.

Records (one JSON object a line, key ``t`` the type):

- ``{"t": "start", ...}``: a venue process started (its config and pid).
- ``{"t": "act", "a": {...}, "dup": bool}``: a client request the venue accepted for processing
  (every processed ClOrdID, with its effective time). The matching engine is deterministic in
  (capture, actions with effective times), so re-running these against the capture restores
  every order, its queue state and its fills exactly.
- ``{"t": "rep", "r": {...}}``: a report the venue sent (execution report or cancel reject),
  with the fill, the order state and the ExecID; after a restart, reports the engine generates
  again are not sent twice (their ExecIDs are here).
- ``{"t": "clock", "ns": T}``: the venue clock reached T (written now and then; restore uses
  the sim clock file's VENUE_CLOCK_NS, or the last of these when the file is gone).

Each record is written with one ``write`` and flushed to the OS, so ``kill -9`` loses nothing
already written; a torn last line (power loss) is ignored on read and counted.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterator

JOURNAL_NAME = "venue.journal"


class Journal:
    def __init__(self, state_dir: str | os.PathLike):
        self.path = Path(state_dir) / JOURNAL_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = False
        if self.path.is_file() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
        self._f = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()
        if torn:  # a torn last record: start the next one on its own line
            self._f.write("\n")
            self._f.flush()

    def write(self, rec: dict[str, Any]) -> None:
        """Append one record (thread-safe; one write, flushed to the OS)."""
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        with self._lock:
            self._f.write(line)
            self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def read_records(state_dir: str | os.PathLike) -> tuple[list[dict[str, Any]], int]:
    """All complete records of the journal, and the number of unreadable lines skipped."""
    path = Path(state_dir) / JOURNAL_NAME
    if not path.is_file():
        return [], 0
    out, bad = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                bad += 1  # torn tail
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
    return out, bad


def _reports(state_dir) -> Iterator[dict[str, Any]]:
    recs, _ = read_records(state_dir)
    for r in recs:
        if r.get("t") == "rep":
            yield r["r"]


def fills(state_dir: str | os.PathLike) -> dict[str, list[dict[str, int]]]:
    """Per ClOrdID (the order's ClOrdID at the time of each fill), the fills sent:
    ``[{"qty", "price" (Price(4)), "ts", "order_id", "symbol", "side" (0 buy, 1 sell)}]``."""
    out: dict[str, list[dict[str, int]]] = defaultdict(list)
    for r in _reports(state_dir):
        if r["msg"] == "8" and r["exec_type"] == "F":
            out[r["clid"]].append({"qty": r["last_qty"], "price": r["last_px"], "ts": r["ts"],
                                   "order_id": r["order_id"], "symbol": r["symbol"], "side": r["side"]})
    return dict(out)


def summary(state_dir: str | os.PathLike) -> dict[str, Any]:
    """What the venue sent, from its journal: per-symbol net position (shares, buys positive)
    and traded notional, fills, order outcomes, acknowledgements per ClOrdID."""
    recs, bad = read_records(state_dir)
    pos: dict[str, int] = defaultdict(int)
    notional: dict[str, int] = defaultdict(int)
    outcomes: Counter[str] = Counter()
    acks: Counter[str] = Counter()
    final: dict[str, str] = {}
    n_fills = filled = 0
    n_act = 0
    starts = 0
    last_clock = -1
    for rec in recs:
        t = rec.get("t")
        if t == "act":
            n_act += 1
        elif t == "start":
            starts += 1
        elif t == "clock":
            last_clock = max(last_clock, rec["ns"])
        elif t == "rep":
            r = rec["r"]
            if r["msg"] == "9":
                outcomes["cancel_rejected" if r["response_to"] == "1" else "replace_rejected"] += 1
                acks[r["clid"]] += 1
                continue
            et = r["exec_type"]
            if et == "F":
                sgn = 1 if r["side"] == 0 else -1
                pos[r["symbol"]] += sgn * r["last_qty"]
                notional[r["symbol"]] += sgn * r["last_qty"] * r["last_px"]
                n_fills += 1
                filled += r["last_qty"]
                if r["ord_status"] == "2":
                    final[r["order_id"]] = "filled"
            elif et == "0":
                acks[r["clid"]] += 1
                outcomes["accepted"] += 1
            elif et == "8":
                acks[r["clid"]] += 1
                outcomes["rejected"] += 1
            elif et == "4":
                if r["orig_clid"]:
                    acks[r["clid"]] += 1
                    final[r["order_id"]] = "canceled"
                else:
                    final[r["order_id"]] = "ioc_canceled"
            elif et == "5":
                acks[r["clid"]] += 1
                outcomes["replaced"] += 1
    for v in final.values():
        outcomes[v] += 1
    return {
        "positions": dict(pos), "notional": dict(notional), "fills": n_fills, "filled_shares": filled,
        "outcomes": dict(outcomes), "acks": dict(acks), "actions": n_act, "starts": starts,
        "last_clock_ns": last_clock, "bad_lines": bad,
    }
