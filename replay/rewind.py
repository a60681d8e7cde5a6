"""The exchange side of a live-feed test: a MoldUDP64 rewind (retransmission) server that serves
from a capture, and a publisher that replays a capture's packets onto an interface.

Rewind server: a UDP socket takes MoldUDP64 request packets - ``Session(10)
SequenceNumber(8, big-endian) MessageCount(2, big-endian)`` - and answers each with ordinary
MoldUDP64 packets (same session, the requested sequence number, the messages; at most
``max_payload`` bytes of UDP payload each) sent back to the requester's address. The messages
come from a capture (pcap/pcapng) indexed once at start with the replay framing kernels.

Publisher: the capture's UDP payloads are rewritten into Ethernet/IPv4/UDP frames for the test's
own addresses (destination group or address, ports, MACs; IPv4 checksum recomputed) and sent
with an ``AF_PACKET`` socket bound to one interface - in the tests, the veth end inside a
namespace the test created. ``drop`` removes packets on purpose (loss injection) and ``extra``
adds frames (malformed ones, for the XDP counters). ``write_pcap`` writes the same frames to a
file for ``tcpreplay``.

CLI::

    python -m replay.rewind serve CAPTURE --bind 10.0.0.1:9000 [--max-payload 1400] [--drop-replies N]
    python -m replay.rewind publish CAPTURE --iface veth0 --src 10.0.0.1:40000 --dst 239.1.1.1:30001 \
        --dst-mac 02:..:02 [--src-mac ..] [--drop 5,9,10] [--pps 0] [--times send.npy]
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from replay.capture import PCAP_MAGICS, CaptureReader, detect_format
from replay.writers import multicast_mac

MOLD_HEADER = 20


# -- reading a capture's packets -----------------------------------------------------------------
def capture_payloads(path: str | Path, filters: Sequence[str] = ()) -> list[bytes]:
    """The UDP payloads of a capture (pcap or pcapng), in file order."""
    from kernels import cpu as k

    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        import gzip

        data = gzip.decompress(data)
    fmt = detect_format(data[:24])
    buf = np.frombuffer(data, np.uint8)
    from replay.capture import parse_filters

    fip, fport = parse_filters(filters)
    from kernels import stats as S

    stats = S.new_stats()
    cap = len(data) // 16 + 1
    po, pl, prx = np.zeros(cap, np.int64), np.zeros(cap, np.int64), np.zeros(cap, np.int64)
    if fmt == "pcap":
        order, unit = PCAP_MAGICS[data[:4]]
        little = 1 if order == "<" else 0
        link = struct.unpack(order + "I", data[20:24])[0] & 0xFFFF
        n, _, _ = k.index_pcap(buf, 24, len(buf), little, unit, link, fip, fport, len(fip), po, pl, prx, stats)
    elif fmt == "pcapng":
        st = np.zeros(2, np.int64)
        il, ik, iv = np.zeros(16, np.int64), np.zeros(16, np.int64), np.zeros(16, np.int64)
        n, _, _ = k.index_pcapng(buf, 0, len(buf), st, il, ik, iv, fip, fport, len(fip), po, pl, prx, stats)
    else:
        raise ValueError(f"{path}: a pcap or pcapng capture is needed (got {fmt})")
    return [data[int(po[i]): int(po[i] + pl[i])] for i in range(n)]


@dataclass
class MessageStore:
    """Every message of a capture by (session, sequence number)."""

    buf: np.ndarray
    off: np.ndarray
    length: np.ndarray
    seq: np.ndarray
    sess: np.ndarray
    sessions: list[bytes]
    #: session (10 bytes) -> sequence number of its end-of-session packet, for sessions that ended
    ends: dict = field(default_factory=dict)

    @classmethod
    def from_capture(cls, path: str | Path, filters: Sequence[str] = ()) -> "MessageStore":
        reader = CaptureReader(path, filters=list(filters))
        chunks, offs, lens, seqs, sesss = [], [], [], [], []
        base = 0
        for b in reader:
            n = b.n
            o = b.off[:n]
            ln = b.length[:n].astype(np.int64)
            # copy the messages out of the reader's chunk buffer (reused between batches)
            idx = np.repeat(o, ln) + (np.arange(int(ln.sum())) - np.repeat(np.cumsum(ln) - ln, ln))
            chunks.append(b.buf[idx].copy())
            starts = np.cumsum(ln) - ln
            offs.append(starts + base)
            base += int(ln.sum())
            lens.append(ln)
            seqs.append(b.seq[:n].copy())
            sesss.append(b.sess[:n].copy())
        cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt))
        seq = cat(seqs, np.uint64)
        sess = cat(sesss, np.uint16)
        order = np.lexsort((seq, sess))
        from kernels import stats as S

        ends: dict[bytes, int] = {}
        if reader.stats[S.MOLD_END_OF_SESSION] and reader.format in ("pcap", "pcapng"):
            for p in capture_payloads(path, filters):
                if len(p) >= MOLD_HEADER and p[18:20] == b"\xff\xff":
                    ends[bytes(p[:10])] = struct.unpack_from("!Q", p, 10)[0]
        return cls(cat(chunks, np.uint8), cat(offs, np.int64)[order], cat(lens, np.int64)[order], seq[order],
                   sess[order], [s.encode("latin-1") for s in reader.sessions()], ends)

    def end_packet(self, session: bytes, seq: int, count: int) -> bytes | None:
        """The session's end-of-session packet when it ended and ``seq .. seq+count-1`` reaches
        its end (a request for what follows the last message: a client probing for lost tail
        packets learns the session is over), else None."""
        key = bytes(session[:10]).ljust(10, b" ")
        end = self.ends.get(key)
        if end is None or seq + count <= end:
            return None
        return key + struct.pack("!QH", end, 0xFFFF)

    def find(self, session: bytes, seq: int, count: int) -> tuple[int, int, int]:
        """(session index, first row, end row) of messages ``seq .. seq+count-1`` (rows may be
        fewer at the end of the data). Session index -1 when unknown."""
        try:
            s = self.sessions.index(bytes(session))
        except ValueError:
            return -1, 0, 0
        lo_s = int(np.searchsorted(self.sess, s, "left"))
        hi_s = int(np.searchsorted(self.sess, s, "right"))
        q = self.seq[lo_s:hi_s]
        a = lo_s + int(np.searchsorted(q, np.uint64(seq), "left"))
        b = lo_s + int(np.searchsorted(q, np.uint64(seq + count), "left"))
        return s, a, b

    def packets(self, session: bytes, seq: int, count: int, max_payload: int = 1400) -> list[bytes]:
        """MoldUDP64 packets carrying messages ``seq .. seq+count-1`` (what exists of them)."""
        s, a, b = self.find(session, seq, count)
        out: list[bytes] = []
        if s < 0 or a >= b:
            return out
        sess = self.sessions[s].ljust(10, b" ")
        blocks: list[bytes] = []
        size = MOLD_HEADER
        first = int(self.seq[a])
        for r in range(a, b):
            q = int(self.seq[r])
            o, ln = int(self.off[r]), int(self.length[r])
            contiguous = q == first + len(blocks)
            if blocks and (size + 2 + ln > max_payload or not contiguous or len(blocks) >= 0xFFFE):
                out.append(sess + struct.pack("!QH", first, len(blocks)) + b"".join(blocks))
                blocks, size, first = [], MOLD_HEADER, q
            blocks.append(struct.pack("!H", ln) + self.buf[o: o + ln].tobytes())
            size += 2 + ln
        if blocks:
            out.append(sess + struct.pack("!QH", first, len(blocks)) + b"".join(blocks))
        return out


# -- rewind server -------------------------------------------------------------------------------
class RewindServer:
    """Serve retransmission requests from ``store`` on ``sock`` (a bound UDP socket), in a
    thread (``start``/``stop``) or in the foreground (``serve_forever``).

    ``drop_replies``: drop the first N reply packets (tests the client's retries)."""

    def __init__(self, store: MessageStore, sock: socket.socket, *, max_payload: int = 1400,
                 max_count: int = 0xFFFE, drop_replies: int = 0):
        self.store = store
        self.sock = sock
        self.max_payload = int(max_payload)
        self.max_count = int(max_count)
        self.drop_replies = int(drop_replies)
        self.requests = 0
        self.bad_requests = 0
        self.unknown = 0
        self.packets_sent = 0
        self.messages_sent = 0
        self.dropped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sock.settimeout(0.05)

    @classmethod
    def bind(cls, store: MessageStore, address: tuple[str, int], **kw) -> "RewindServer":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(address)
        except BaseException:
            s.close()
            raise
        return cls(store, s, **kw)

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def handle(self, data: bytes, peer: tuple[str, int]) -> int:
        """Answer one request; returns the packets sent."""
        if len(data) != 20:
            self.bad_requests += 1
            return 0
        self.requests += 1
        session = data[:10]
        seq, count = struct.unpack("!QH", data[10:20])
        count = min(count, self.max_count)
        pkts = self.store.packets(session, seq, count, self.max_payload)
        if not pkts:
            self.unknown += 1
        eos = self.store.end_packet(session, seq, count)
        if eos is not None:  # the request reaches past the last message: the session is over
            pkts.append(eos)
        sent = 0
        for p in pkts:
            if self.dropped < self.drop_replies:
                self.dropped += 1
                continue
            sent += 1
            self.packets_sent += 1  # counted before sending: a client may read counters on receipt
            c = struct.unpack_from("!H", p, 18)[0]
            self.messages_sent += 0 if c == 0xFFFF else c
            self.sock.sendto(p, peer)
        return sent

    def serve_forever(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except (socket.timeout, BlockingIOError):
                continue
            except OSError:
                if self._stop.is_set():
                    break
                raise
            self.handle(data, peer)

    def start(self) -> "RewindServer":
        self._thread = threading.Thread(target=self.serve_forever, name="rewind", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.sock.close()

    def __enter__(self) -> "RewindServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def counters(self) -> dict[str, int]:
        return {"requests": self.requests, "bad_requests": self.bad_requests, "unknown": self.unknown,
                "packets_sent": self.packets_sent, "messages_sent": self.messages_sent, "dropped": self.dropped}


# -- publisher -----------------------------------------------------------------------------------
def _mac(text: str) -> bytes:
    raw = bytes(int(x, 16) for x in text.split(":"))
    if len(raw) != 6:
        raise ValueError(f"bad MAC {text!r}")
    return raw


def ip_checksum(hdr: bytes) -> int:
    s = sum(struct.unpack(f"!{len(hdr) // 2}H", hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_frame(payload: bytes, src: tuple[str, int], dst: tuple[str, int], src_mac: str,
              dst_mac: str | None = None, vlan: int | None = None, ip_id: int = 0, ttl: int = 16) -> bytes:
    """One Ethernet/IPv4/UDP frame (UDP checksum 0: none, as feeds send)."""
    dip = ipaddress.IPv4Address(dst[0])
    dmac = _mac(dst_mac) if dst_mac else (multicast_mac(dst[0]) if dip.is_multicast else b"\xff" * 6)
    eth = dmac + _mac(src_mac) + (struct.pack("!HH", 0x8100, vlan) if vlan is not None else b"") + b"\x08\x00"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), ip_id & 0xFFFF, 0x4000, ttl, 17, 0,
                     ipaddress.IPv4Address(src[0]).packed, dip.packed)
    ip = ip[:10] + struct.pack("!H", ip_checksum(ip)) + ip[12:]
    return eth + ip + struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload


def rewrite(payloads: Sequence[bytes], src: tuple[str, int], dst: tuple[str, int], src_mac: str,
            dst_mac: str | None = None, drop: Iterable[int] = (), vlan: int | None = None) -> list[bytes]:
    """The capture's payloads as frames for the test's addresses, minus packets ``drop``."""
    dropped = set(drop)
    return [udp_frame(p, src, dst, src_mac, dst_mac, vlan, i) for i, p in enumerate(payloads) if i not in dropped]


def write_pcap(path: str | Path, frames: Sequence[bytes], start_ns: int = 0) -> None:
    """Frames as a classic nanosecond pcap (link type Ethernet), e.g. for tcpreplay."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))
        for i, fr in enumerate(frames):
            t = start_ns + i * 1000
            f.write(struct.pack("<IIII", t // 1_000_000_000, t % 1_000_000_000, len(fr), len(fr)))
            f.write(fr)


def raw_socket(ifname: str) -> socket.socket:
    """An AF_PACKET socket sending on ``ifname`` (create it inside the namespace of ``ifname``)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind((ifname, 0))
    except BaseException:
        s.close()
        raise
    return s


def publish(sock: socket.socket, frames: Sequence[bytes], pps: float = 0.0,
            send_times: np.ndarray | None = None) -> int:
    """Send ``frames`` in order (``pps`` > 0 paces them); ``send_times[i]`` gets each frame's
    send time (ns since the epoch) when given. Returns frames sent."""
    gap = 1e9 / pps if pps > 0 else 0.0
    t0 = time.perf_counter_ns()
    for i, fr in enumerate(frames):
        if gap:
            due = t0 + int(i * gap)
            while time.perf_counter_ns() < due:
                pass
        if send_times is not None:
            send_times[i] = time.time_ns()
        while True:
            try:
                sock.send(fr)
                break
            except BlockingIOError:  # the device queue is full: retry (never drop silently)
                time.sleep(0)
    return len(frames)


# -- CLI -----------------------------------------------------------------------------------------
def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m replay.rewind", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("serve", help="serve MoldUDP64 retransmission requests from a capture")
    sv.add_argument("capture")
    sv.add_argument("--bind", default="127.0.0.1:0", help="address:port to listen on")
    sv.add_argument("--filter", action="append", default=[], help="group:port of the feed in the capture")
    sv.add_argument("--max-payload", type=int, default=1400)
    sv.add_argument("--drop-replies", type=int, default=0, help="drop the first N reply packets")
    pb = sub.add_parser("publish", help="replay a capture's packets onto an interface (AF_PACKET)")
    pb.add_argument("capture")
    pb.add_argument("--iface", required=True)
    pb.add_argument("--src", required=True, help="source address:port")
    pb.add_argument("--dst", required=True, help="destination group:port")
    pb.add_argument("--src-mac", default="02:00:00:00:00:01")
    pb.add_argument("--dst-mac", default=None, help="default: the group's multicast MAC")
    pb.add_argument("--filter", action="append", default=[])
    pb.add_argument("--drop", default="", help="packet indices to drop (loss injection), comma separated")
    pb.add_argument("--pps", type=float, default=0.0)
    pb.add_argument("--times", default=None, help="write each frame's send time (ns, .npy) here")
    args = ap.parse_args(argv)
    if args.cmd == "serve":
        store = MessageStore.from_capture(args.capture, args.filter)
        srv = RewindServer.bind(store, _hostport(args.bind), max_payload=args.max_payload,
                                drop_replies=args.drop_replies)
        host, port = srv.address
        print(f"rewind server on {host}:{port}: {len(store.seq):,} messages, sessions "
              f"{[s.decode('latin-1') for s in store.sessions]}", flush=True)
        try:
            srv.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            print(f"rewind server: {srv.counters()}", file=sys.stderr, flush=True)
            srv.stop()
        return 0
    drop = [int(x) for x in args.drop.split(",") if x.strip()]
    frames = rewrite(capture_payloads(args.capture, args.filter), _hostport(args.src), _hostport(args.dst),
                     args.src_mac, args.dst_mac, drop)
    times = np.zeros(len(frames), np.int64) if args.times else None
    with raw_socket(args.iface) as s:
        n = publish(s, frames, args.pps, times)
    if times is not None:
        np.save(args.times, times)
    print(f"published {n} frames on {args.iface} ({len(drop)} dropped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
