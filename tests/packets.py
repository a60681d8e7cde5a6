"""Hand-built frames and captures for tests (struct only, independent of replay/writers.py)."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import numpy as np

from kernels.itch_spec import LENGTHS


def itch_msg(t: str, locate: int = 1, ts: int = 34_200_000_000_000, fill: int = 0) -> bytes:
    """A message of type ``t`` with a valid header and the rest of the body set to ``fill``."""
    head = t.encode() + struct.pack(">HH", locate, 0) + ts.to_bytes(6, "big")
    return head + bytes([fill]) * (LENGTHS[t] - len(head))


def add_order(ref: int, side: bytes = b"B", shares: int = 100, stock: bytes = b"AAPL", price: int = 1_000_000,
              locate: int = 1, ts: int = 34_200_000_000_000) -> bytes:
    return (b"A" + struct.pack(">HH", locate, 0) + ts.to_bytes(6, "big")
            + struct.pack(">QcI8sI", ref, side, shares, stock.ljust(8), price))


def mold(session: bytes, seq: int, msgs: list[bytes], count: int | None = None) -> bytes:
    blocks = b"".join(struct.pack(">H", len(m)) + m for m in msgs)
    return session.ljust(10)[:10] + struct.pack(">QH", seq, len(msgs) if count is None else count) + blocks


def _csum(header: bytes) -> int:
    s = sum(struct.unpack(f">{len(header) // 2}H", header))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_frame(payload: bytes, dst: str = "233.54.12.111", dport: int = 26477, src: str = "10.1.1.1",
              sport: int = 40000, vlans: tuple[int, ...] = (), frag: int = 0, proto: int = 17) -> bytes:
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, frag, 64, proto, 0,
                     ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    ip = ip[:10] + struct.pack(">H", _csum(ip)) + ip[12:]
    eth = b"\x01\x00\x5e\x36\x0c\x6f" + b"\x02\x00\x00\x00\x00\x01"
    for v in vlans:
        eth += struct.pack(">HH", 0x8100, v)
    return eth + b"\x08\x00" + ip + udp


def pcap_bytes(frames: list[bytes], *, ns: bool = False, big: bool = False, linktype: int = 1,
               snaplen: int | None = None, t0: int = 1_700_000_000) -> bytes:
    e = ">" if big else "<"
    magic = 0xA1B23C4D if ns else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for i, f in enumerate(frames):
        cap = f if snaplen is None else f[:snaplen]
        out.append(struct.pack(e + "IIII", t0 + i, 123 * (i + 1), len(cap), len(f)) + cap)
    return b"".join(out)


def pcapng_bytes(frames: list[bytes], *, t0_ns: int = 1_700_000_000_000_000_000, tsresol: int | None = None) -> bytes:
    """Little-endian pcapng: SHB, one IDB (optionally with if_tsresol), EPBs, one stats block."""
    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    opts = b""
    div = 1000  # microseconds by default
    if tsresol is not None:
        opts = struct.pack("<HHB3x", 9, 1, tsresol) + struct.pack("<HH", 0, 0)
        div = 10 ** (9 - tsresol)
    out.append(block(1, struct.pack("<HHI", 1, 0, 65535) + opts))
    for i, f in enumerate(frames):
        ticks = (t0_ns + i * 1000) // div
        out.append(block(6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(f), len(f)) + f))
    out.append(block(5, struct.pack("<III", 0, 0, 0)))  # interface statistics: skipped
    return b"".join(out)


def binaryfile(msgs: list[bytes], end_of_session: bool = True) -> bytes:
    body = b"".join(struct.pack(">H", len(m)) + m for m in msgs)
    return body + (b"\0\0" if end_of_session else b"")


def lay_out(parts: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Byte strings back to back in one uint8 buffer: (buf, offsets int64, lengths int64),
    arrays at least one long so kernels get a valid buffer for an empty list."""
    buf = np.frombuffer(b"".join(parts) or b"\0", dtype=np.uint8).copy()
    lengths = np.array([len(p) for p in parts] or [0], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return buf, offsets, lengths


def as_array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8).copy()


def read_binaryfile(path) -> tuple[list[bytes], bytes]:
    """Records until the zero-length one; returns (messages, bytes after the records)."""
    data = Path(path).read_bytes()
    p, out = 0, []
    while p + 2 <= len(data):
        (ln,) = struct.unpack_from(">H", data, p)
        if ln == 0:
            return out, data[p:]
        out.append(data[p + 2 : p + 2 + ln])
        p += 2 + ln
    return out, data[p:]
