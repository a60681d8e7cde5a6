"""Render decoded events as JSON-ready dicts with the specification's field names.

Driven by `kernels/itch_spec.py`, reading only the event-table slots each type uses. Numbers
stay integers in wire units (prices fixed point, timestamps ns since midnight); alphas become
strings with their padding kept, as on the wire.
"""

from __future__ import annotations

from typing import Any

from kernels.itch_spec import MESSAGES


def _mask(size: int) -> int:
    return (1 << (8 * size)) - 1


def _field_getters(fields: tuple) -> list:
    getters = []
    for name, _off, size, kind, col, slot in fields:
        if kind == "a":
            if col in ("stock", "mpid"):
                getters.append((name, lambda r, c=col, w=size: int(r[c]).to_bytes(w, "big").decode("latin-1")))
            elif col == "side":
                getters.append((name, lambda r: chr(int(r["side"]))))
            else:  # alpha slots
                getters.append((name, lambda r, s=slot, w=size: bytes(r["alpha"][s:s + w]).decode("latin-1")))
        elif slot is not None:  # 8-byte unsigned fields kept in int64 slots: reinterpret
            getters.append((name, lambda r, c=col, s=slot, m=_mask(size): int(r[c][s]) & m))
        else:
            getters.append((name, lambda r, c=col, m=_mask(size): int(r[c]) & m))
    return getters


_GETTERS = {ord(t): (m[0], _field_getters(m[2])) for t, m in MESSAGES.items()}


def event_fields(row: Any) -> dict[str, Any]:
    """Spec fields of one event (a record of ``EVENT_DTYPE``), without framing fields."""
    kind = int(row["kind"])
    _name, getters = _GETTERS[kind]
    out: dict[str, Any] = {"message_type": chr(kind)}
    for name, get in getters:
        out[name] = get(row)
    return out


def event_json(row: Any, sessions: list[str] | None = None) -> dict[str, Any]:
    """One ``hftbot decode`` line: spec fields plus MoldUDP64 session and sequence if any."""
    out = event_fields(row)
    if sessions:
        out["session"] = sessions[int(row["sess"])]
        out["sequence_number"] = int(row["seq"])
    else:
        out["sequence_number"] = int(row["seq"])
    if int(row["rx"]):
        out["capture_time_ns"] = int(row["rx"])
    return out
