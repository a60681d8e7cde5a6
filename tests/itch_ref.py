"""A plain-Python reading of ITCH 5.0 blocks straight from the spec table (test oracle)."""

from __future__ import annotations

from kernels.itch_spec import MESSAGES


def spec_decode(block: bytes) -> dict:
    t = chr(block[0])
    _name, length, fields = MESSAGES[t]
    assert len(block) == length
    out = {"message_type": t}
    for name, off, size, kind, _col, _slot in fields:
        raw = block[off:off + size]
        out[name] = raw.decode("latin-1") if kind == "a" else int.from_bytes(raw, "big")
    return out
