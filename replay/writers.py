"""Streaming capture writers: Nasdaq BinaryFILE and MoldUDP64-over-UDP in classic pcap.

Both take batches of ITCH messages as one ``uint8`` buffer plus offset/length arrays (the same
shape the generator and the decode kernels use) and frame them with compiled kernels into one
preallocated output buffer that is flushed to the file in chunks (8 MiB by default). Memory is
bounded whatever the file size, and no Python object is made per packet or per message, so a
100M-message file costs the same per message as a small one. ``write_message`` (one ``bytes``
at a time) exists for small hand-built inputs in tests.

Bodies are plain functions compiled with ``njit(cache=True)``; they use the big-endian writers of
``kernels/wire.py`` and copy message bytes with an LLVM ``memcpy`` intrinsic (``_memcpy``), so
they are CPU-only: this is host I/O, not a kernel shared with the GPU backend.

MoldUDP64 packing: consecutive messages go into the same packet while its UDP payload (20-byte
Mold header + 2-byte length + message per block) stays within ``max_payload`` bytes (and, if
``max_delay_ns`` is given, while a message is no later than that after the packet's first one).
A packet is written when the next message does not fit, so the file does not depend on how the
caller splits its batches. A packet carries the capture time of its first message. Sequence
numbers start at 1; a heartbeat carries the next expected sequence number with count 0, the
end-of-session packet count 0xFFFF.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from typing import BinaryIO

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, register_jitable

from kernels.wire import wr_u16, wr_u32_le, wr_u64

DEFAULT_CHUNK_BYTES = 8 << 20

PCAP_MAGIC_NS = 0xA1B23C4D
PCAP_MAGIC_US = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
MOLD_HEADER = 20
MOLD_HEARTBEAT = 0
MOLD_END_OF_SESSION = 0xFFFF
MAX_MOLD_COUNT = 0xFFFE  # 0xFFFF is the end-of-session marker

# MoldPcapWriter state slots (one int64 array shared by the kernels)
ST_POS = 0          # write position in the output buffer
ST_OPEN = 1         # start of the open (not yet finished) packet record, -1 when none
ST_OPEN_COUNT = 2   # messages in the open packet
ST_OPEN_PAYLOAD = 3  # UDP payload bytes of the open packet so far (Mold header included)
ST_OPEN_TS = 4      # capture time of the open packet (its first message), ns since epoch
ST_OPEN_SEQ = 5     # sequence number of the open packet's first message
ST_NEXT_SEQ = 6     # next message sequence number
ST_IP_ID = 7        # IPv4 identification of the next packet
ST_PACKETS = 8      # packets finished
ST_MESSAGES = 9     # messages written
N_ST = 10


# --------------------------------------------------------------------------------------------
# kernel bodies
# --------------------------------------------------------------------------------------------

@intrinsic
def _memcpy(typingctx, dst, d, src, s, n):
    """``dst[d:d+n] = src[s:s+n]`` for distinct C-contiguous uint8 arrays, as one LLVM memcpy
    (a byte loop runs ~1.5 ns/byte here; numba's slice assignment ~3x faster, memcpy ~10x).
    No bounds checks: callers check. CPU only (the writers are host I/O, not shared kernels)."""
    for a in (dst, src):
        if not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
                and a.dtype == types.uint8):
            return None  # typing error: only C-contiguous 1-D uint8 arrays
    sig = types.void(dst, d, src, s, n)

    def codegen(context, builder, signature, args):
        dst_v, d_v, src_v, s_v, n_v = args
        dary = context.make_array(signature.args[0])(context, builder, dst_v)
        sary = context.make_array(signature.args[2])(context, builder, src_v)
        dptr = builder.gep(dary.data, [d_v])
        sptr = builder.gep(sary.data, [s_v])
        cgutils.raw_memcpy(builder, dptr, sptr, n_v, 1)
        return context.get_dummy_value()

    return sig, codegen


@register_jitable(inline="always")
def _copy(dst, d, src, s, n):
    _memcpy(dst, np.int64(d), src, np.int64(s), np.int64(n))


def frame_binaryfile(buf, off, length, start, n, out, pos):
    """Append BinaryFILE records (u16 big-endian length + message) for messages ``start..n-1``.

    ``buf[off[i]:off[i]+length[i]]`` is message ``i``; records go to ``out[pos:]`` while they
    fit. Returns ``(next_message, new_pos)``: the caller flushes ``out[:new_pos]`` and calls
    again when ``next_message < n``. Lengths must be 1..65535 (checked by the caller).
    """
    cap = out.shape[0]
    i = start
    while i < n:
        ln = np.int64(length[i])
        if pos + 2 + ln > cap:
            break
        wr_u16(out, pos, ln)
        _copy(out, pos + 2, buf, np.int64(off[i]), ln)
        pos += 2 + ln
        i += 1
    return i, pos


@register_jitable
def _ip_checksum(b, o):
    """Internet checksum of the 20-byte IPv4 header at ``b[o:]`` (checksum field zeroed first)."""
    b[o + 10] = 0
    b[o + 11] = 0
    s = np.int64(0)
    for j in range(0, 20, 2):
        s += (np.int64(b[o + j]) << 8) | np.int64(b[o + j + 1])
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    c = (~s) & 0xFFFF
    b[o + 10] = (c >> 8) & 0xFF
    b[o + 11] = c & 0xFF


@register_jitable
def _begin_packet(out, p, tmpl, hdr_len, ts_ns, nanosecond):
    """Write the pcap record header's timestamp and copy the frame template at ``out[p:]``."""
    sec = ts_ns // 1000000000
    frac = ts_ns - sec * 1000000000
    if not nanosecond:
        frac = frac // 1000
    wr_u32_le(out, p, sec)
    wr_u32_le(out, p + 4, frac)
    _copy(out, p + 16, tmpl, 0, hdr_len)


@register_jitable
def _finish_packet(out, p, hdr_len, ip_off, payload, count, seq, ip_id):
    """Fill the lengths, IPv4 id and checksum, UDP length, Mold sequence and count of the
    packet record at ``out[p:]`` whose UDP payload is ``payload`` bytes."""
    frame = hdr_len - MOLD_HEADER + payload
    wr_u32_le(out, p + 8, frame)
    wr_u32_le(out, p + 12, frame)
    ip = p + 16 + ip_off
    wr_u16(out, ip + 2, 28 + payload)
    wr_u16(out, ip + 4, ip_id & 0xFFFF)
    _ip_checksum(out, ip)
    wr_u16(out, ip + 24, 8 + payload)
    wr_u64(out, ip + 38, seq)
    wr_u16(out, ip + 46, count)


@register_jitable
def _close_open(out, st, hdr_len, ip_off):
    p = st[ST_OPEN]
    if p < 0:
        return
    _finish_packet(out, p, hdr_len, ip_off, st[ST_OPEN_PAYLOAD], st[ST_OPEN_COUNT],
                   st[ST_OPEN_SEQ], st[ST_IP_ID])
    st[ST_IP_ID] = (st[ST_IP_ID] + 1) & 0xFFFF
    st[ST_PACKETS] += 1
    st[ST_OPEN] = -1
    st[ST_OPEN_COUNT] = 0
    st[ST_OPEN_PAYLOAD] = 0


def mold_close_open(out, st, hdr_len, ip_off):
    """Finish the open packet, if any (its record becomes final in ``out``)."""
    _close_open(out, st, hdr_len, ip_off)


def mold_pack(buf, off, length, ts_ns, start, n, tmpl, hdr_len, ip_off, out, st, max_payload,
              max_delay_ns, nanosecond):
    """Pack messages ``start..n-1`` into MoldUDP64 packets, as pcap records in ``out``.

    Message ``i`` is ``buf[off[i]:off[i]+length[i]]`` captured at ``ts_ns[i]`` (ns since the
    epoch). ``tmpl[:hdr_len]`` is the frame up to and including the 20-byte Mold header
    (Ethernet, optional 802.1Q, IPv4 at ``ip_off``, UDP, session); lengths, checksum, sequence
    and count are filled per packet. The last packet stays open across calls (``st``), so the
    packing does not depend on batch boundaries. ``max_delay_ns < 0`` means no time limit.
    Returns the next message to pack: less than ``n`` when ``out`` is full (the caller flushes
    and calls again).
    """
    cap = out.shape[0]
    rec_max = 16 + hdr_len - MOLD_HEADER + max_payload
    # the state lives in locals inside the loop (stores to ``out`` could alias ``st``)
    pos = st[ST_POS]
    op = st[ST_OPEN]
    count = st[ST_OPEN_COUNT]
    payload = st[ST_OPEN_PAYLOAD]
    open_ts = st[ST_OPEN_TS]
    open_seq = st[ST_OPEN_SEQ]
    next_seq = st[ST_NEXT_SEQ]
    ip_id = st[ST_IP_ID]
    packets = st[ST_PACKETS]
    i = start
    while i < n:
        ln = np.int64(length[i])
        t = ts_ns[i]
        if op >= 0:
            if (payload + 2 + ln <= max_payload and count < MAX_MOLD_COUNT
                    and (max_delay_ns < 0 or t - open_ts <= max_delay_ns)):
                wr_u16(out, pos, ln)
                _copy(out, pos + 2, buf, np.int64(off[i]), ln)
                pos += 2 + ln
                payload += 2 + ln
                count += 1
                next_seq += 1
                i += 1
                continue
            _finish_packet(out, op, hdr_len, ip_off, payload, count, open_seq, ip_id)
            ip_id = (ip_id + 1) & 0xFFFF
            packets += 1
            op = -1
            count = 0
            payload = 0
        if pos + rec_max > cap:
            break
        _begin_packet(out, pos, tmpl, hdr_len, t, nanosecond)
        op = pos
        open_ts = t
        open_seq = next_seq
        count = 0
        payload = MOLD_HEADER
        pos += 16 + hdr_len
        # the message goes in on the next turn of the loop (it always fits an empty packet)
    st[ST_MESSAGES] += next_seq - st[ST_NEXT_SEQ]
    st[ST_POS] = pos
    st[ST_OPEN] = op
    st[ST_OPEN_COUNT] = count
    st[ST_OPEN_PAYLOAD] = payload
    st[ST_OPEN_TS] = open_ts
    st[ST_OPEN_SEQ] = open_seq
    st[ST_NEXT_SEQ] = next_seq
    st[ST_IP_ID] = ip_id
    st[ST_PACKETS] = packets
    return i


def mold_control(tmpl, hdr_len, ip_off, out, st, ts_ns, count, nanosecond):
    """Write a header-only Mold packet (heartbeat: count 0, end of session: 0xFFFF) carrying the
    next expected sequence number. The open packet must be closed and room left (caller)."""
    p = st[ST_POS]
    _begin_packet(out, p, tmpl, hdr_len, ts_ns, nanosecond)
    _finish_packet(out, p, hdr_len, ip_off, MOLD_HEADER, count, st[ST_NEXT_SEQ], st[ST_IP_ID])
    st[ST_IP_ID] = (st[ST_IP_ID] + 1) & 0xFFFF
    st[ST_PACKETS] += 1
    st[ST_POS] = p + 16 + hdr_len


_jit = njit(cache=True, nogil=True)
_frame_binaryfile = _jit(frame_binaryfile)
_mold_pack = _jit(mold_pack)
_mold_close_open = _jit(mold_close_open)
_mold_control = _jit(mold_control)


# --------------------------------------------------------------------------------------------
# Python side
# --------------------------------------------------------------------------------------------

def pack_messages(messages: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate small hand-built messages into ``(buf uint8, off int64, length int64)``."""
    lens = np.array([len(m) for m in messages], dtype=np.int64)
    off = np.zeros(len(messages), dtype=np.int64)
    if len(messages) > 1:
        off[1:] = np.cumsum(lens)[:-1]
    buf = np.frombuffer(b"".join(messages), dtype=np.uint8).copy()
    return buf, off, lens


def _check_batch(buf, off, length, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    buf = np.ascontiguousarray(buf, dtype=np.uint8)
    off = np.ascontiguousarray(off, dtype=np.int64)
    length = np.ascontiguousarray(length)
    if length.dtype not in (np.int32, np.int64):
        length = length.astype(np.int64)
    if off.shape != length.shape or off.ndim != 1:
        raise ValueError("off and length must be 1-D arrays of the same length")
    if len(off):
        lo = int(length.min())
        if lo < 1 or int(length.max()) > max_len:
            raise ValueError(f"message lengths must be within 1..{max_len}, got {lo}..{int(length.max())}")
        if int(off.min()) < 0 or int((off + length).max()) > buf.shape[0]:
            raise ValueError("a message lies outside buf")
    return buf, off, length


class _FileSink:
    """An output buffer flushed to a binary file."""

    def __init__(self, path: str | os.PathLike, chunk_bytes: int):
        self.out = np.empty(int(chunk_bytes), dtype=np.uint8)
        self._f: BinaryIO | None = open(path, "wb")
        self.bytes_written = 0
        self.path = os.fspath(path)

    def write_out(self, n: int) -> None:
        if n:
            assert self._f is not None
            self._f.write(memoryview(self.out[:n]))
            self.bytes_written += n

    def write_raw(self, data: bytes) -> None:
        assert self._f is not None
        self._f.write(data)
        self.bytes_written += len(data)

    def close_file(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    @property
    def closed(self) -> bool:
        return self._f is None


class BinaryFileWriter(_FileSink):
    """Nasdaq BinaryFILE: each message as a 2-byte big-endian length and the message bytes;
    ``close(end_of_session=True)`` appends the zero-length end-of-session record."""

    def __init__(self, path: str | os.PathLike, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES):
        if chunk_bytes < 65537:
            raise ValueError("chunk_bytes must hold the largest record (65537 bytes)")
        super().__init__(path, chunk_bytes)
        self.pos = 0
        self.n_messages = 0

    def write_messages(self, buf: np.ndarray, off: np.ndarray, length: np.ndarray,
                       ts_ns: np.ndarray | None = None) -> None:
        """Append messages ``buf[off[i]:off[i]+length[i]]`` (``ts_ns`` is accepted and ignored:
        BinaryFILE carries no capture time)."""
        if self.closed:
            raise ValueError("writer is closed")
        buf, off, length = _check_batch(buf, off, length, 0xFFFF)
        n = len(off)
        i = 0
        while i < n:
            i, self.pos = _frame_binaryfile(buf, off, length, i, n, self.out, self.pos)
            if i < n:
                self.write_out(self.pos)
                self.pos = 0
        self.n_messages += n

    def write_message(self, msg: bytes, ts_ns: int = 0) -> None:
        """One message (small hand-built inputs)."""
        self.write_messages(*pack_messages([bytes(msg)]))

    def flush(self) -> None:
        self.write_out(self.pos)
        self.pos = 0

    def close(self, end_of_session: bool = True) -> None:
        if self.closed:
            return
        self.flush()
        if end_of_session:
            self.write_raw(b"\x00\x00")
        self.close_file()

    def __enter__(self) -> "BinaryFileWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _mac(text: str) -> bytes:
    raw = bytes(int(x, 16) for x in text.replace("-", ":").split(":"))
    if len(raw) != 6:
        raise ValueError(f"bad MAC address {text!r}")
    return raw


def multicast_mac(group: str) -> bytes:
    """01:00:5e + the low 23 bits of an IPv4 multicast group (RFC 1112)."""
    ip = int(ipaddress.IPv4Address(group))
    return bytes((0x01, 0x00, 0x5E, (ip >> 16) & 0x7F, (ip >> 8) & 0xFF, ip & 0xFF))


class MoldPcapWriter(_FileSink):
    """ITCH messages as MoldUDP64 packets over UDP/IPv4/Ethernet in a classic pcap file.

    ``session``: the 10-byte Mold session (shorter text is space padded). ``src``/``dst``:
    (IPv4, UDP port); a multicast ``dst`` gets the matching 01:00:5e MAC unless ``dst_mac`` is
    given. ``vlan``: 802.1Q VLAN id, or None for untagged frames. ``nanosecond``: pcap with ns
    timestamps (magic a1b23c4d), else µs (a1b2c3d4); little-endian, link type Ethernet.
    ``max_payload``: UDP payload budget per packet (Mold header included). ``max_delay_ns``: if
    given, a packet only takes messages captured within that time of its first message.
    """

    def __init__(self, path: str | os.PathLike, *, session: bytes | str = b"0000000001",
                 src: tuple[str, int] = ("10.0.0.1", 40000),
                 dst: tuple[str, int] = ("233.54.12.111", 26477), vlan: int | None = None,
                 nanosecond: bool = True, max_payload: int = 1400, snaplen: int = 65535,
                 max_delay_ns: int | None = None, ttl: int = 64,
                 src_mac: str = "02:00:00:00:00:01", dst_mac: str | None = None,
                 first_seq: int = 1, chunk_bytes: int = DEFAULT_CHUNK_BYTES):
        sess = session.encode("ascii") if isinstance(session, str) else bytes(session)
        if len(sess) > 10:
            raise ValueError(f"Mold session is 10 bytes, got {sess!r}")
        self.session = sess.ljust(10, b" ")
        eth_len = 14 if vlan is None else 18
        hdr_len = eth_len + 20 + 8 + MOLD_HEADER
        if max_payload < MOLD_HEADER + 3 or max_payload > 65535 - 28:
            raise ValueError(f"max_payload must be within {MOLD_HEADER + 3}..{65535 - 28}")
        if hdr_len - MOLD_HEADER + max_payload > snaplen:
            raise ValueError("snaplen is smaller than the largest packet (max_payload + headers)")
        if vlan is not None and not 0 <= vlan < 4096:
            raise ValueError(f"VLAN id must be 0..4095, got {vlan}")
        if chunk_bytes < 4 * (16 + hdr_len + max_payload):
            raise ValueError("chunk_bytes too small for the packet size")
        src_ip, src_port = src
        dst_ip, dst_port = dst
        dip = ipaddress.IPv4Address(dst_ip)
        if dst_mac is not None:
            dmac = _mac(dst_mac)
        elif dip.is_multicast:
            dmac = multicast_mac(dst_ip)
        else:
            dmac = _mac("02:00:00:00:00:02")
        eth = dmac + _mac(src_mac)
        if vlan is not None:
            eth += struct.pack("!HH", 0x8100, vlan)
        eth += b"\x08\x00"
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0x4000, ttl, 17, 0,
                         ipaddress.IPv4Address(src_ip).packed, dip.packed)
        udp = struct.pack("!HHHH", src_port, dst_port, 0, 0)
        mold = self.session + bytes(10)
        tmpl = eth + ip + udp + mold
        assert len(tmpl) == hdr_len
        super().__init__(path, chunk_bytes)
        self.tmpl = np.frombuffer(tmpl, dtype=np.uint8).copy()
        self.hdr_len = hdr_len
        self.ip_off = eth_len
        self.max_payload = int(max_payload)
        self.max_delay_ns = -1 if max_delay_ns is None else int(max_delay_ns)
        self.nanosecond = bool(nanosecond)
        self.snaplen = int(snaplen)
        self.st = np.zeros(N_ST, dtype=np.int64)
        self.st[ST_OPEN] = -1
        self.st[ST_NEXT_SEQ] = int(first_seq)
        self.rec_max = 16 + hdr_len - MOLD_HEADER + self.max_payload
        magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
        self.write_raw(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, self.snaplen, LINKTYPE_ETHERNET))

    # -- counters ----------------------------------------------------------------------------
    @property
    def next_seq(self) -> int:
        """Sequence number the next message will get."""
        return int(self.st[ST_NEXT_SEQ])

    @property
    def n_messages(self) -> int:
        return int(self.st[ST_MESSAGES])

    @property
    def n_packets(self) -> int:
        """Packets finished so far (an open packet is counted once it is written)."""
        return int(self.st[ST_PACKETS])

    # -- writing -----------------------------------------------------------------------------
    def _flush_committed(self) -> None:
        """Write every finished packet; move the open one (if any) to the buffer's start."""
        st = self.st
        pos = int(st[ST_POS])
        op = int(st[ST_OPEN])
        end = op if op >= 0 else pos
        self.write_out(end)
        if op >= 0:
            self.out[: pos - op] = self.out[op:pos]
            st[ST_OPEN] = 0
        st[ST_POS] = pos - end

    def write_messages(self, buf: np.ndarray, off: np.ndarray, length: np.ndarray,
                       ts_ns: np.ndarray) -> None:
        """Append messages ``buf[off[i]:off[i]+length[i]]`` captured at ``ts_ns[i]`` (int64 ns
        since the epoch, non-decreasing)."""
        if self.closed:
            raise ValueError("writer is closed")
        buf, off, length = _check_batch(buf, off, length, self.max_payload - MOLD_HEADER - 2)
        ts = np.ascontiguousarray(ts_ns, dtype=np.int64)
        if ts.shape != off.shape:
            raise ValueError("ts_ns must have one entry per message")
        n = len(off)
        i = 0
        while i < n:
            i = _mold_pack(buf, off, length, ts, i, n, self.tmpl, self.hdr_len, self.ip_off,
                           self.out, self.st, self.max_payload, self.max_delay_ns, self.nanosecond)
            if i < n:
                self._flush_committed()

    def write_message(self, msg: bytes, ts_ns: int) -> None:
        """One message (small hand-built inputs)."""
        buf, off, ln = pack_messages([bytes(msg)])
        self.write_messages(buf, off, ln, np.array([ts_ns], dtype=np.int64))

    def flush_packet(self) -> None:
        """Finish the open packet now (the next message starts a new one)."""
        _mold_close_open(self.out, self.st, self.hdr_len, self.ip_off)

    def _control(self, ts_ns: int, count: int) -> None:
        if self.closed:
            raise ValueError("writer is closed")
        self.flush_packet()
        if int(self.st[ST_POS]) + self.rec_max > self.out.shape[0]:
            self._flush_committed()
        _mold_control(self.tmpl, self.hdr_len, self.ip_off, self.out, self.st, int(ts_ns), count,
                      self.nanosecond)

    def heartbeat(self, ts_ns: int) -> None:
        """A heartbeat packet (count 0, sequence number = next expected) at ``ts_ns``."""
        self._control(ts_ns, MOLD_HEARTBEAT)

    def end_session(self, ts_ns: int) -> None:
        """The end-of-session packet (count 0xFFFF, sequence number = next expected)."""
        self._control(ts_ns, MOLD_END_OF_SESSION)

    def close(self) -> None:
        if self.closed:
            return
        self.flush_packet()
        self._flush_committed()
        self.close_file()

    def __enter__(self) -> "MoldPcapWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
