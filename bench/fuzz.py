"""``make fuzz``: millions of mutated packets through the compiled framing and decode kernels.

Each batch is a pcap file image: a window of real-looking MoldUDP64/ITCH packets (from the
synthetic feed generator) with random bytes overwritten (headers of every layer, lengths, message
counts, sequence numbers, message bodies), now and then a record header too and a cut-off end.
The compiled CPU kernels frame it (``index_pcap``), split it (``split_mold``) and decode it
(``decode_batch``), exactly as a replay does. Every 10th batch is a Nasdaq BinaryFILE image
instead (``index_binaryfile``).

Then every byte is accounted for, independently of the kernels' counters: a second walk over the
same bytes (``_account_pcap``, compiled too) assigns each byte to exactly one of

  decoded   a message the decoder accepted (its length prefix included)
  framing   the headers around accepted data (pcap, Ethernet, IPv4, UDP, MoldUDP64)
  skipped   by reason: a record the packet parser refused (by its reason), a MoldUDP64 packet
            refused (short, impossible sequence number), a block the decoder refused (unknown
            type, bad length), a duplicate, the bytes after a packet's declared messages
  trailing  the bytes after the last complete record (framing stopped: truncated or corrupt)

and checks ``bytes in == decoded + framing + skipped + trailing`` for every batch, and that the
walk agrees with the kernels: the same accepted payloads, the same message blocks, the same
counts by reason. A crash, an exception or a disagreement stops the run with the batch's seed.

  python -m bench.fuzz [--packets 10000000] [--seed 1] [--batch 4096]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import njit

from kernels import cpu
from kernels import framing as F
from kernels import stats as S
from kernels.events import EventTable
from kernels.itch_spec import LENGTHS
from kernels.state import Events, Frames, MoldSessions, Payloads
from kernels.wire import rd_u16, rd_u32_e, rd_u64

ITCH_LENGTH = np.zeros(256, np.int64)
for _t, _n in LENGTHS.items():
    ITCH_LENGTH[ord(_t)] = _n

# byte classes of the account (index into the ``acct`` array)
A_DECODED, A_FRAMING, A_TRAILING = 0, 1, 2
A_RECORD = 3          # + the parse_packet reason slot offset below: a refused record, by reason
A_MOLD_SHORT = 20
A_MOLD_BAD_SEQ = 21
A_MOLD_TRAILING = 22  # after the declared messages, or after a truncated block
A_DUP_OR_EMPTY = 23   # complete blocks split_mold did not deliver (duplicates; empty blocks are 0 bytes)
A_UNKNOWN_TYPE = 24
A_BAD_LENGTH = 25
A_AFTER_EOS = 26
N_ACCT = 32
MOLD_SESSION_AT = 14 + 20 + 8  # a generated packet's MoldUDP64 session: after Ethernet, IPv4 (no options), UDP
RECORD_REASONS = (S.FILTERED, S.NON_IPV4, S.IP_FRAGMENT, S.BAD_IP, S.BAD_UDP, S.SNAP_TRUNCATED, S.BAD_LINKTYPE)
ACCT_NAMES = {A_DECODED: "decoded", A_FRAMING: "framing", A_TRAILING: "trailing", A_MOLD_SHORT: "mold_short",
              A_MOLD_BAD_SEQ: "mold_bad_sequence", A_MOLD_TRAILING: "mold_trailing_or_truncated",
              A_DUP_OR_EMPTY: "duplicate_messages", A_UNKNOWN_TYPE: "unknown_type", A_BAD_LENGTH: "bad_length",
              A_AFTER_EOS: "after_end_of_session"}
for _i, _slot in enumerate(RECORD_REASONS):
    ACCT_NAMES[A_RECORD + _i] = {v: k for k, v in S.PROBLEMS.items()}.get(_slot, "filtered")


@njit(cache=True)
def _record_reason_index(code):
    for i in range(len(RECORD_REASONS)):
        if RECORD_REASONS[i] == code:
            return i
    return -1


@njit(cache=True)
def _account_block(t, blen, item_len, acct):
    """A delivered message block of type ``t``, ``blen`` bytes (+2 for its length): decoded, an
    unknown type or a length the type does not have."""
    want = ITCH_LENGTH[t]
    if want == 0:
        acct[A_UNKNOWN_TYPE] += 2 + blen
    elif want != blen:
        acct[A_BAD_LENGTH] += 2 + blen
    else:
        acct[A_DECODED] += 2 + blen
        item_len[t] += 1


@njit(cache=True)
def _account_pcap(buf, end, little, linktype, kpos, pay_off, pay_len, n_pay, msg_off, msg_len, n_msg,
                  item_len, acct, check):
    """Walk the pcap image ``buf[:end]`` again and put every byte in one class of ``acct``.

    Compares as it goes with what the kernels produced (``kpos``: where framing stopped; the
    accepted payloads; the delivered message blocks). ``check`` counts [records refused by reason
    (7), payloads, blocks, short, bad seq, mold trailing/truncated, complete blocks]; returns an
    error code (0: agrees)."""
    pos = 24
    acct[A_FRAMING] += 24
    ip = 0   # next kernel payload to match
    im = 0   # next kernel message block to match
    while True:
        if pos + 16 > end:
            break
        incl = rd_u32_e(buf, pos + 8, little)
        orig = rd_u32_e(buf, pos + 12, little)
        if incl > F.MAX_RECORD or pos + 16 + incl > end:
            break
        code, po, pl = F.parse_packet(buf, pos + 16, incl, orig, linktype, np.zeros(0, np.int64),
                                      np.zeros(0, np.int64), 0)
        if code != 0:
            r = _record_reason_index(code)
            if r < 0:
                return 1
            acct[A_RECORD + r] += 16 + incl
            check[r] += 1
            pos += 16 + incl
            continue
        # an accepted packet: the kernel must have the same payload next
        if ip >= n_pay or pay_off[ip] != po or pay_len[ip] != pl:
            return 2
        ip += 1
        check[7] += 1
        acct[A_FRAMING] += 16 + incl - pl
        # MoldUDP64: the rules of split_mold, bytes instead of counts
        e = po + pl
        if pl < 20:
            acct[A_MOLD_SHORT] += pl
            check[9] += 1
        elif rd_u64(buf, po + 10) >= F.SEQ_LIMIT:
            acct[A_MOLD_BAD_SEQ] += pl
            check[10] += 1
        else:
            acct[A_FRAMING] += 20
            count = rd_u16(buf, po + 18)
            o = po + 20
            complete = True
            if count != 0 and count != 0xFFFF:
                for _ in range(count):
                    if o + 2 > e:
                        complete = False
                        break
                    blen = rd_u16(buf, o)
                    if o + 2 + blen > e:
                        complete = False
                        break
                    check[12] += 1
                    if im < n_msg and msg_off[im] == o + 2:  # delivered: the decoder's verdict
                        if msg_len[im] != blen:
                            return 3
                        im += 1
                        _account_block(buf[o + 2], blen, item_len, acct)
                    else:  # not delivered: a duplicate (or an empty block, 2 bytes)
                        acct[A_DUP_OR_EMPTY] += 2 + blen
                    o += 2 + blen
            if not complete or o < e:  # a truncated block, or bytes after the declared messages
                acct[A_MOLD_TRAILING] += e - o
                check[11] += 1
        pos += 16 + incl
    if pos != kpos:
        return 4
    if ip != n_pay:
        return 5
    if im != n_msg:
        return 6
    acct[A_TRAILING] += end - pos
    return 0


@njit(cache=True)
def _account_binaryfile(buf, end, n_msg, msg_off, msg_len, kpos, eos, item_len, acct):
    """The BinaryFILE image: every record, the end-of-session record and what follows."""
    pos = 0
    im = 0
    while pos + 2 <= end:
        blen = rd_u16(buf, pos)
        if blen == 0:
            acct[A_FRAMING] += 2
            pos += 2
            acct[A_AFTER_EOS] += end - pos
            if not eos or pos != kpos:
                return 7
            return 0 if im == n_msg else 6
        if pos + 2 + blen > end:
            break
        if im >= n_msg or msg_off[im] != pos + 2 or msg_len[im] != blen:
            return 3
        im += 1
        _account_block(buf[pos + 2], blen, item_len, acct)
        pos += 2 + blen
    if eos or pos != kpos or im != n_msg:
        return 4
    acct[A_TRAILING] += end - pos
    return 0


class Pool:
    """Records of a generated pcap and the messages of a generated BinaryFILE, to cut windows from."""

    def __init__(self, messages: int, seed: int):
        from replay.generator import generate

        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp) / "p.pcap", fmt="pcap", n_messages=messages, n_symbols=32, seed=seed)
            generate(Path(tmp) / "b.itch", fmt="itch", n_messages=messages, n_symbols=32, seed=seed)
            pcap = np.fromfile(Path(tmp) / "p.pcap", np.uint8)
            itch = np.fromfile(Path(tmp) / "b.itch", np.uint8)
        self.header = pcap[:24].copy()
        self.little = 1 if bytes(self.header[:4]) in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else 0
        self.linktype = int.from_bytes(bytes(self.header[20:24]), "little" if self.little else "big") & 0xFFFF
        starts = []
        pos = 24
        while pos + 16 <= len(pcap):
            starts.append(pos)
            pos += 16 + int.from_bytes(bytes(pcap[pos + 8:pos + 12]), "little" if self.little else "big")
        self.rec = pcap
        self.rec_start = np.array(starts + [pos], np.int64)
        first = int(self.rec_start[0]) + 16
        if self.linktype != 1 or bytes(pcap[first + 12:first + 15]) != b"\x08\x00\x45":
            raise RuntimeError("the generator's packets are no longer Ethernet + IPv4 without options: "
                               "update MOLD_SESSION_AT")
        starts = []
        pos = 0
        while pos + 2 <= len(itch):
            n = int.from_bytes(bytes(itch[pos:pos + 2]), "big")
            if n == 0:
                break
            starts.append(pos)
            pos += 2 + n
        self.itch = itch
        self.itch_start = np.array(starts + [pos], np.int64)


class Fuzzer:
    def __init__(self, pool: Pool, batch: int):
        self.pool, self.batch = pool, batch
        widest = int(np.max(np.diff(pool.rec_start)))
        cap = 24 + batch * max(widest, 64) + 4096
        self.buf = np.zeros(cap, np.uint8)
        self.pay_off = np.zeros(batch + 16, np.int64)
        self.pay_len = np.zeros(batch + 16, np.int64)
        self.pay_rx = np.zeros(batch + 16, np.int64)
        rows = cap // 2 + 65536
        self.msg = tuple(np.zeros(rows, dt) for dt in (np.int64, np.int32, np.uint64, np.uint16, np.int64))
        self.table = EventTable(rows)
        self.events = Events(*self.table.columns())
        self.sess = MoldSessions(np.zeros((batch + 16, 10), np.uint8), np.zeros(batch + 16, np.uint64),
                                 np.zeros(1, np.int64))
        self.stats = S.new_stats()
        self.session_ids = np.frombuffer(b"".join(b"F%09d" % j for j in range(batch)), np.uint8).reshape(batch, 10)
        self.acct = np.zeros(N_ACCT, np.int64)
        self.check = np.zeros(16, np.int64)
        self.types = np.zeros(256, np.int64)
        self.bytes_in = 0
        self.packets = 0
        self.batches = 0

    def _mutate(self, rng, end: int, body_lo: np.ndarray, body_len: np.ndarray, hdr: int) -> int:
        """Overwrite random bytes: mostly inside record bodies, sometimes a record header (``hdr``
        bytes before a body); maybe cut the end. Returns the new end."""
        buf = self.buf
        k = len(body_lo)
        nflip = int(rng.integers(k // 8, k + 1))
        rec = rng.integers(0, k, nflip)
        at = body_lo[rec] + (rng.random(nflip) * body_len[rec]).astype(np.int64)
        buf[at] = rng.integers(0, 256, nflip, dtype=np.uint8)
        if rng.random() < 0.3:  # zero a byte: lengths and counts become small or zero
            at = body_lo[rec[: nflip // 4]] + (rng.random(nflip // 4) * body_len[rec[: nflip // 4]]).astype(np.int64)
            buf[at] = 0
        if rng.random() < 0.05:  # a record header: framing may stop here (corrupt) or resynchronise wrongly
            r = int(rng.integers(0, k))
            buf[body_lo[r] - hdr + int(rng.integers(0, hdr))] = int(rng.integers(0, 256))
        if rng.random() < 0.2:
            end -= int(rng.integers(0, min(end, 400)))
        return end

    def pcap_batch(self, rng) -> None:
        p = self.pool
        k = self.batch
        a = int(rng.integers(0, len(p.rec_start) - 1 - k))
        lo, hi = int(p.rec_start[a]), int(p.rec_start[a + k])
        buf = self.buf
        buf[:24] = p.header
        end = 24 + hi - lo
        buf[24:end] = p.rec[lo:hi]
        body_lo = p.rec_start[a:a + k] - lo + 24 + 16
        body_len = np.diff(p.rec_start[a:a + k + 1]) - 16
        if rng.random() < 0.5:
            # every packet its own MoldUDP64 session: a mutated sequence number then spoils one
            # packet, not the rest of its session (duplicates), and more mutated messages reach decode
            buf[body_lo[:, None] + MOLD_SESSION_AT + np.arange(10)[None, :]] = self.session_ids
        end = self._mutate(rng, end, body_lo, body_len, 16)
        st = np.zeros_like(self.stats)
        n, pos, status = cpu.index_pcap(buf[:end], 24, end, p.little, 1000, p.linktype, np.zeros(0, np.int64),
                                        np.zeros(0, np.int64), 0, self.pay_off, self.pay_len, self.pay_rx, st)
        if n == len(self.pay_off):
            raise AssertionError("payload rows full: batch larger than the rows")
        self.sess.n_sess[0] = 0
        frames = Frames(buf, *self.msg)
        m, i = cpu.split_mold(Payloads(buf, self.pay_off, self.pay_len, self.pay_rx), 0, n, self.sess, frames, st)
        if i != n or m < 0:
            raise AssertionError(f"split_mold stopped at packet {i} of {n} ({m})")
        rows = cpu.decode_batch(frames, m, 0, self.events, st)
        # the account, and its agreement with the kernels
        acct = np.zeros(N_ACCT, np.int64)
        chk = np.zeros(16, np.int64)
        types = np.zeros(256, np.int64)
        err = _account_pcap(buf, end, p.little, p.linktype, pos, self.pay_off, self.pay_len, n, self.msg[0],
                            self.msg[1], m, types, acct, chk)
        if err:
            raise AssertionError(f"the byte walk disagrees with the kernels (code {err})")
        if acct.sum() != end:
            raise AssertionError(f"bytes in {end} != accounted {int(acct.sum())}")
        for r, slot in enumerate(RECORD_REASONS):
            if chk[r] != st[slot]:
                raise AssertionError(f"{slot}: walk {chk[r]} records, kernel {st[slot]}")
        pairs = ((chk[7], st[S.UDP_ACCEPTED]), (chk[9], st[S.MOLD_SHORT]), (chk[10], st[S.MOLD_BAD_SEQUENCE]),
                 (chk[11], st[S.MOLD_TRAILING] + st[S.MOLD_TRUNCATED]),
                 (chk[12], m + st[S.MOLD_DUP_MESSAGES] + st[S.MOLD_EMPTY_MESSAGE]),
                 (rows, st[S.DECODED]), (m, st[S.MESSAGES_IN]), (st[S.MOLD_TOO_MANY_SESSIONS], 0))
        for got, want in pairs:
            if got != want:
                raise AssertionError(f"walk and kernel counters disagree: {pairs}")
        if not np.array_equal(types, st[S.TYPE_BASE:S.TYPE_BASE + 256]):
            raise AssertionError("decoded message types disagree")
        self._add(st, acct, types, end)

    def binaryfile_batch(self, rng) -> None:
        p = self.pool
        k = self.batch
        a = int(rng.integers(0, len(p.itch_start) - 1 - k))
        lo, hi = int(p.itch_start[a]), int(p.itch_start[a + k])
        buf = self.buf
        end = hi - lo
        buf[:end] = p.itch[lo:hi]
        body_lo = p.itch_start[a:a + k] - lo + 2
        body_len = np.diff(p.itch_start[a:a + k + 1]) - 2
        end = self._mutate(rng, end, body_lo, body_len, 2)
        st = np.zeros_like(self.stats)
        off, ln, seq, sess, rx = self.msg
        n, pos, status = cpu.index_binaryfile(buf[:end], 0, end, np.uint64(1), off, ln, seq, sess, rx, st)
        if n == len(off):
            raise AssertionError("message rows full")
        rows = cpu.decode_batch(Frames(buf, *self.msg), n, 0, self.events, st)
        acct = np.zeros(N_ACCT, np.int64)
        types = np.zeros(256, np.int64)
        err = _account_binaryfile(buf, end, n, off, ln, pos, status == F.EOS, types, acct)
        if err:
            raise AssertionError(f"the byte walk disagrees with the kernels (code {err})")
        if acct.sum() != end or rows != st[S.DECODED] or not np.array_equal(types, st[S.TYPE_BASE:S.TYPE_BASE + 256]):
            raise AssertionError("BinaryFILE bytes or counts disagree")
        self._add(st, acct, types, end)

    def _add(self, st, acct, types, end) -> None:
        self.stats += st
        self.acct += acct
        self.types += types
        self.bytes_in += end
        self.packets += int(st[S.PACKETS]) if st[S.PACKETS] else int(st[S.MESSAGES_IN])
        self.batches += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=10_000_000, help="mutated packets (and BinaryFILE records) at least")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4096, help="packets per batch")
    ap.add_argument("--pool", type=int, default=300_000, help="messages of the generated feed cut into windows")
    args = ap.parse_args(argv)
    if args.packets < 1 or args.batch < 16 or args.pool < 10 * args.batch:
        ap.error("--packets >= 1, --batch >= 16, --pool >= 10 x --batch")
    t0 = time.perf_counter()
    pool = Pool(args.pool, args.seed)
    fz = Fuzzer(pool, min(args.batch, len(pool.rec_start) // 4, len(pool.itch_start) // 4))
    t1 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    b = 0
    while fz.packets < args.packets:
        seed = int(rng.integers(0, 2**63))
        brng = np.random.default_rng(seed)
        try:
            if b % 10 == 9:
                fz.binaryfile_batch(brng)
            else:
                fz.pcap_batch(brng)
        except Exception as exc:  # noqa: BLE001 - reported with the batch's seed, then the run fails
            print(f"FAIL batch {b} (seed {seed}, {'binaryfile' if b % 10 == 9 else 'pcap'}): "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        b += 1
        if b % 200 == 0:
            print(f"  {fz.packets:,} packets, {fz.bytes_in / 1e6:,.0f} MB, {time.perf_counter() - t1:,.0f} s",
                  flush=True)
    t2 = time.perf_counter()
    print(report(fz, t2 - t1, t1 - t0))
    return 0


def report(fz: Fuzzer, secs: float, setup: float) -> str:
    a = fz.acct
    st = fz.stats
    skipped = {ACCT_NAMES.get(i, str(i)): int(a[i]) for i in range(A_RECORD, N_ACCT) if a[i]}
    total = int(a[A_DECODED] + a[A_FRAMING] + a[A_TRAILING] + sum(skipped.values()))
    lines = [
        f"fuzz: {fz.packets:,} mutated packets and records in {fz.batches:,} batches, {secs:,.1f} s "
        f"({fz.packets / secs / 1e6:,.2f} M/s; set-up {setup:,.1f} s): 0 crashes, 0 disagreements",
        f"  frames: {int(st[S.PACKETS]):,} pcap records, {int(st[S.UDP_ACCEPTED]):,} UDP payloads, "
        f"{int(st[S.MESSAGES_IN]):,} message blocks, {int(st[S.DECODED]):,} decoded",
        f"  bytes in {fz.bytes_in:,} = decoded {int(a[A_DECODED]):,} + framing {int(a[A_FRAMING]):,} + skipped "
        f"{sum(skipped.values()):,} + trailing {int(a[A_TRAILING]):,}"
        + ("  (every byte accounted for)" if total == fz.bytes_in else f"  MISMATCH {total:,}"),
        "  skipped bytes by reason: " + ", ".join(f"{k} {v:,}" for k, v in sorted(skipped.items(), key=lambda kv: -kv[1])),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
