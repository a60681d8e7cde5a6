"""Streaming capture readers: pcap (µs/ns, either byte order), pcapng, Nasdaq BinaryFILE.

The format is detected from the content (gzip-compressed files too). A file is read in chunks
into one preallocated buffer, so a multi-GB capture replays in bounded memory; the compiled
framing kernels (`kernels/framing.py`) walk each chunk and hand back message blocks. Python
touches chunks, never packets or messages. A BinaryFILE chunk goes out unframed
(``RecordBatch``): ``DecodeStage`` walks its records straight into the event table
(``kernels/itch.py: decode_binaryfile``), and any other consumer gets its frame index on first
read, as from every other format.

Everything skipped is counted by reason in ``reader.stats`` (slots in `kernels/stats.py`);
bytes left over at the end of a file (a truncated last record or message) are in
``reader.trailing_bytes`` and reported, never silently dropped.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import numpy as np

from kernels import framing as F
from kernels import stats as S
from kernels.itch_spec import LENGTHS
from kernels.state import Frames, MoldSessions, Payloads

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),     # little-endian, nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"

MIN_CHUNK = 1 << 20  # must hold the largest capture record (F.MAX_RECORD)
MIN_BATCH_ROWS = 1 << 16  # must hold the messages of the largest MoldUDP64 packet


class CaptureError(ValueError):
    """The input cannot be read as a capture at all (unknown format, corrupt header)."""


def detect_format(head: bytes) -> str:
    """``"pcap"``, ``"pcapng"`` or ``"itch"`` (BinaryFILE) from the first bytes of a file."""
    if head[:4] in PCAP_MAGICS:
        return "pcap"
    if head[:4] == PCAPNG_MAGIC:
        return "pcapng"
    if len(head) >= 3:
        return "itch"
    raise CaptureError(f"file too short to be a capture ({len(head)} bytes)")


def parse_filters(specs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``["233.54.12.111:26477", "233.54.12.112", ":26478"]`` -> (ip uint32[], port int64[]).

    An empty address or port (or ``*``) matches any. An empty list accepts all UDP.
    """
    ips, ports = [], []
    for spec in specs:
        text = str(spec).strip()
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
        try:
            ip = 0 if host in ("", "*") else int(ipaddress.IPv4Address(host))
            prt = 0 if port in ("", "*") else int(port)
        except ValueError as exc:
            raise ValueError(f"bad feed filter {text!r}: expected 'a.b.c.d:port' ({exc})") from None
        if not 0 <= prt <= 65535:
            raise ValueError(f"bad feed filter {text!r}: port out of range")
        ips.append(ip)
        ports.append(prt)
    return np.array(ips, dtype=np.int64), np.array(ports, dtype=np.int64)


@dataclass
class MessageBatch:
    """Message blocks found in one chunk. Views into the reader's buffer: valid until the
    reader is advanced, so decode a batch before asking for the next one."""

    buf: np.ndarray
    off: np.ndarray
    length: np.ndarray
    seq: np.ndarray
    sess: np.ndarray
    rx: np.ndarray
    n: int


#: a BinaryFILE chunk as the record walk takes it (``RecordBatch.records``): ``buf[pos:end]``,
#: the sequence number of its first message, and the most records one batch may hold
Records = namedtuple("Records", "buf pos end next_seq max_msgs")


class RecordBatch(MessageBatch):
    """A batch of Nasdaq BinaryFILE records (at least one complete record at ``pos``), handed
    out before it is framed, so a decoder can walk the records straight into its event table
    (``DecodeStage`` with ``kernels.cpu.decode_binaryfile``) and no frame index is written.

    It is a ``MessageBatch`` to every other consumer: reading ``off``, ``length``, ``seq``,
    ``sess``, ``rx`` or ``n`` frames the chunk with ``index_binaryfile`` into the reader's
    frame index (once), exactly as the reader framed every chunk before. Either way the reader
    goes on from where the batch ended: ``framed()``. Valid until the reader is advanced, as
    every batch.
    """

    def __init__(self, records: Records, index: tuple, backend, stats: np.ndarray):
        # not the dataclass __init__: the frame-index fields are computed (properties below)
        self.buf = records.buf
        self._records = records
        self._index = index     # the reader's (off, length, seq, sess, rx) arrays
        self._k = backend       # the reader's framing backend
        #: the reader's counters (a walk counts into them: ``DecodeStage`` checks it is given these)
        self.stats = stats
        self._end: tuple[int, int, int] | None = None  # (records, new_pos, status) once known
        self._indexed = False

    def __repr__(self) -> str:
        r = self._records
        return f"RecordBatch(pos={r.pos}, end={r.end}, next_seq={r.next_seq}, framed={self._end})"

    # -- the record walk ------------------------------------------------------------------------
    def records(self) -> Records | None:
        """The chunk to walk, or None once it has been walked or framed."""
        return None if self._end is not None else self._records

    def walked(self, n: int, pos: int, status: int) -> None:
        """A decoder walked ``records()``: ``n`` records up to ``pos``, ``status`` (MORE / EOS),
        every counter, ``END_OF_SESSION`` included, added to ``stats``."""
        if self._end is not None:
            raise RuntimeError("this BinaryFILE batch was already walked or framed")
        self._end = (int(n), int(pos), int(status))

    def framed(self) -> tuple[int, int, int]:
        """``(records, new_pos, status)`` of this batch, framing it now if nothing has."""
        if self._end is None:
            self._frame(self.stats)
        return self._end  # type: ignore[return-value]

    # -- MessageBatch fields --------------------------------------------------------------------
    def _frame(self, stats: np.ndarray) -> None:
        r = self._records
        n, pos, status = self._k.index_binaryfile(r.buf, r.pos, r.end, np.uint64(r.next_seq), *self._index,
                                                  stats)
        if self._end is not None and self._end != (n, pos, status):  # cannot happen: the same walk
            raise RuntimeError(f"BinaryFILE framing disagrees with the record walk: {(n, pos, status)} "
                               f"vs {self._end}")
        self._end = (n, pos, status)
        self._indexed = True

    def _frames(self) -> tuple:
        if not self._indexed:
            # walked already: frame again for the index alone (its counters were counted by the walk)
            self._frame(self.stats if self._end is None else S.new_stats())
        return self._index

    @property
    def off(self) -> np.ndarray:  # type: ignore[override]
        return self._frames()[0]

    @property
    def length(self) -> np.ndarray:  # type: ignore[override]
        return self._frames()[1]

    @property
    def seq(self) -> np.ndarray:  # type: ignore[override]
        return self._frames()[2]

    @property
    def sess(self) -> np.ndarray:  # type: ignore[override]
        return self._frames()[3]

    @property
    def rx(self) -> np.ndarray:  # type: ignore[override]
        return self._frames()[4]

    @property
    def n(self) -> int:  # type: ignore[override]
        return self.framed()[0]


#: how ``CaptureReader.error`` starts when a gzip stream is damaged (reports key on it)
COMPRESSED_DAMAGE = "the compressed stream is corrupt at byte"


class GzipStream:
    """A gzip file (one member or several, concatenated) decompressed as a stream, for
    ``readinto``. A corrupt or truncated compressed stream does not raise: the data ends where
    the damage is, and ``damage`` says where, as a byte offset into the compressed file.

    ``zlib`` reports a corrupt deflate block or a bad CRC only as an exception for the whole
    input it was given; the piece is then fed again one byte at a time (from a copy of the
    decompressor taken before it) to find the exact offset and keep every byte before it.
    """

    PIECE = 1 << 16   # compressed bytes fed at a time
    OUT = 1 << 22     # decompressed bytes produced at a time at most (a gzip bomb stays bounded)

    def __init__(self, path: Path):
        self.raw = open(path, "rb")
        self.d: zlib._Decompress | None = None  # type: ignore[name-defined]
        self.inbuf = b""           # compressed bytes read, not yet consumed
        self.in_pos = 0            # compressed offset of inbuf[0]
        self.out = bytearray()     # decompressed bytes not yet handed out
        self.out_pos = 0
        self.done = False
        #: why the stream ended early: "the compressed stream is corrupt at byte K (...)", or None
        self.damage: str | None = None
        self.damage_at: int | None = None

    def __enter__(self) -> "GzipStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.raw.close()

    def read(self, n: int) -> bytes:
        buf = bytearray(n)
        got = self.readinto(buf)
        return bytes(buf[:got])

    def readinto(self, b) -> int:
        mv = memoryview(b).cast("B")
        n = 0
        while n < len(mv):
            avail = len(self.out) - self.out_pos
            if avail:
                take = min(avail, len(mv) - n)
                mv[n:n + take] = self.out[self.out_pos:self.out_pos + take]
                self.out_pos += take
                n += take
                continue
            if self.done:
                break
            self.out.clear()
            self.out_pos = 0
            self._step()
        return n

    # -- internals ----------------------------------------------------------------------------
    def _fail(self, at: int, why: str) -> None:
        self.damage_at = at
        self.damage = f"{COMPRESSED_DAMAGE} {at:,} ({why})"
        self.done = True

    def _refill(self, need: int) -> bool:
        """At least ``need`` bytes in ``inbuf`` unless the file ends; False if it is empty."""
        while len(self.inbuf) < need:
            more = self.raw.read(self.PIECE)
            if not more:
                break
            self.inbuf += more
        return bool(self.inbuf)

    def _consume(self, k: int) -> None:
        self.inbuf = self.inbuf[k:]
        self.in_pos += k

    def _step(self) -> None:
        if self.d is None:  # between members: another member, zero padding, or the end
            if not self._refill(2):
                self.done = True
                return
            if self.inbuf[:2] == GZIP_MAGIC:
                self.d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif not self.inbuf.strip(b"\0"):  # zero padding after the last member (tape, dd)
                self._consume(len(self.inbuf))
                return
            else:
                at = self.in_pos + len(self.inbuf) - len(self.inbuf.lstrip(b"\0"))
                self._fail(at, "bytes after the end of a gzip member that start no new member")
                return
        if not self._refill(1):
            self._fail(self.in_pos, "the file ends inside a gzip member: truncated")
            return
        data = self.inbuf[: self.PIECE]
        before = self.d.copy()
        try:
            self.out += self.d.decompress(data, self.OUT)
        except zlib.error as exc:
            self.d = before
            self._bytewise(data, str(exc))
            return
        used = len(data) - len(self.d.unconsumed_tail)
        if self.d.eof:
            used -= len(self.d.unused_data)
            self.d = None
        self._consume(used)

    def _bytewise(self, data: bytes, why: str) -> None:
        """Feed ``data`` one byte at a time to find the byte zlib rejects; keep the output before it."""
        d = self.d
        for k in range(len(data)):
            try:
                self.out += d.decompress(data[k:k + 1])
            except zlib.error as exc:
                why = f"zlib: {exc}"
                if "incorrect data check" in why or "incorrect length check" in why:
                    why += "; the damage is somewhere in the gzip member that ends there, so the data " \
                           "before it may be damaged too"
                self._fail(self.in_pos + k, why)
                return
            if d.eof:  # cannot happen: the error was inside this member
                break
        self._fail(self.in_pos + len(data), f"zlib: {why}")


def _open(path: Path) -> BinaryIO | GzipStream:
    raw = open(path, "rb")
    if raw.read(2) == GZIP_MAGIC:
        raw.close()
        return GzipStream(path)
    raw.seek(0)
    return raw


#: the length of each ITCH 5.0 message type (0: not a type), to tell a capture from other bytes
_ITCH_LENGTH = np.zeros(256, np.int64)
for _t, _n in LENGTHS.items():
    _ITCH_LENGTH[ord(_t)] = _n

FORMAT_NAMES = {"pcap": "pcap", "pcapng": "pcapng", "itch": "Nasdaq BinaryFILE (no pcap or pcapng magic)"}


@dataclass
class ContentCheck:
    """What ``CaptureReader.check_content`` found at the start of a file."""

    format: str
    blocks: int       # message blocks framed
    good: int         # of which ITCH messages (known type, right length)
    error: str | None  # framing stopped early (corrupt record, truncated, damaged compression)
    trailing: int      # bytes that are no record (after the last one, or after end-of-session)
    payloads: int = 0  # UDP payloads of the feed (pcap, pcapng)
    not_mold: int = 0  # of which not MoldUDP64 packets (too short, truncated, impossible sequence)

    def is_capture(self, min_share: float = 0.5) -> bool:
        if self.blocks:
            return self.good >= min_share * self.blocks
        return not (self.error or self.trailing or self.not_mold > min_share * self.payloads)

    def describe(self) -> str:
        if self.error:
            why = f"; {self.error}"
        elif self.trailing:
            why = f"; {self.trailing:,} bytes that are no record"
        elif self.not_mold:
            why = (f"; {self.not_mold:,} of {self.payloads:,} UDP payloads are not MoldUDP64 packets: if the "
                   f"feed is in there, select it with feed.filters or --filter GROUP:PORT")
        else:
            why = ""
        return (f"not a capture: {self.good} of {self.blocks} blocks were ITCH messages "
                f"(read as {FORMAT_NAMES[self.format]}{why})")


class CaptureReader:
    """Iterate over the message blocks of a pcap, pcapng or BinaryFILE capture.

    ``backend`` is a kernels backend module (`kernels.cpu`); framing is sequential work and
    always runs there.
    """

    def __init__(self, path: str | Path, *, filters: Sequence[str] = (), chunk_bytes: int = 4 << 20,
                 batch_rows: int = 1 << 18, max_sessions: int = 64, backend=None):
        if backend is None:
            from kernels import cpu as backend
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"capture not found: {self.path}")
        if chunk_bytes < MIN_CHUNK:
            raise ValueError(f"feed.chunk_bytes must be at least {MIN_CHUNK}, got {chunk_bytes}")
        self.k = backend
        self.chunk_bytes = int(chunk_bytes)
        if batch_rows < MIN_BATCH_ROWS:
            raise ValueError(f"feed.batch_rows must be at least {MIN_BATCH_ROWS}, got {batch_rows}")
        #: messages per batch at most (one MoldUDP64 packet holds up to 65535)
        self.batch_rows = int(batch_rows)
        self.filt_ip, self.filt_port = parse_filters(filters)
        self.stats = S.new_stats()
        self.trailing_bytes = 0
        self.error: str | None = None
        self.sess_id = np.zeros((max_sessions, 10), dtype=np.uint8)
        self.sess_next = np.zeros(max_sessions, dtype=np.uint64)
        self.n_sess = np.zeros(1, dtype=np.int64)
        self.bytes_read = 0
        #: where a gzip-compressed file is damaged (compressed byte offset), or None
        self.damage_at: int | None = None
        self._probing = False  # check_content is reading the start of the file
        with _open(self.path) as f:
            head = f.read(24)
            damage = getattr(f, "damage", None)
        if damage and len(head) < 24:
            raise CaptureError(f"{self.path}: nothing could be read: {damage}")
        self.format = detect_format(head)

    # -- public -------------------------------------------------------------------------------
    def sessions(self) -> list[str]:
        """MoldUDP64 session names by session index (BinaryFILE: none)."""
        return [bytes(self.sess_id[i]).decode("latin-1") for i in range(int(self.n_sess[0]))]

    def __iter__(self) -> Iterator[MessageBatch]:
        with _open(self.path) as f:
            if self.format == "itch":
                yield from self._binaryfile(f)
            else:
                yield from self._capture(f)
            if isinstance(f, GzipStream) and f.damage:  # the data ended at the damage
                self.damage_at = f.damage_at
                self.error = f.damage

    def check_content(self, min_share: float = 0.5, sample_blocks: int = 4096) -> ContentCheck:
        """Read the start of the file (at most one chunk, ``sample_blocks`` message blocks) and
        raise ``CaptureError`` unless it is an ITCH capture: "not a capture: 0 of 34 blocks were
        ITCH messages". A block is an ITCH message when its type is known and its length is that
        type's (what the decoder accepts). Not a capture: fewer than ``min_share`` of the blocks
        are; or no block, and the framing broke (corrupt or truncated record, damaged
        compression, bytes that are no record) or most UDP payloads are not MoldUDP64 (another
        protocol). A well-formed capture with no feed messages in it (heartbeats only, every
        packet filtered out) passes.

        Leaves the reader as it was: iteration starts again from the first byte."""
        blocks = good = 0
        it = iter(self)
        self._probing = True
        try:
            for batch in it:
                n = batch.n
                kinds = batch.buf[batch.off[:n]]
                good += int(np.count_nonzero(_ITCH_LENGTH[kinds] == batch.length[:n]))
                blocks += n
                if blocks >= sample_blocks or self.bytes_read > self.chunk_bytes:
                    break
        finally:
            it.close()
            self._probing = False
        st = self.stats
        not_mold = sum(int(st[k]) for k in (S.MOLD_SHORT, S.MOLD_TRUNCATED, S.MOLD_BAD_SEQUENCE,
                                             S.MOLD_TOO_MANY_SESSIONS))
        res = ContentCheck(self.format, blocks, good, self.error, int(self.trailing_bytes),
                           int(st[S.MOLD_PACKETS]), not_mold)
        self._reset()
        if not res.is_capture(min_share):
            raise CaptureError(f"{self.path}: {res.describe()}")
        return res

    # -- internals ----------------------------------------------------------------------------
    def _reset(self) -> None:
        """Back to the state before the first batch (counters, sessions, errors)."""
        self.stats[:] = 0
        self.trailing_bytes = 0
        self.error = None
        self.damage_at = None
        self.sess_id[:] = 0
        self.sess_next[:] = 0
        self.n_sess[:] = 0
        self.bytes_read = 0

    def _alloc(self, rows: int) -> tuple[np.ndarray, ...]:
        return (np.zeros(rows, np.int64), np.zeros(rows, np.int32), np.zeros(rows, np.uint64),
                np.zeros(rows, np.uint16), np.zeros(rows, np.int64))

    def _fill(self, f: BinaryIO, buf: np.ndarray, pos: int, end: int) -> tuple[int, bool]:
        """Move the unconsumed tail to the front and read more; returns (end, eof)."""
        tail = end - pos
        if pos and tail:
            buf[:tail] = buf[pos:end]
        got = f.readinto(memoryview(buf)[tail:])  # type: ignore[attr-defined]
        got = got or 0
        self.bytes_read += got
        return tail + got, got == 0

    def _binaryfile(self, f: BinaryIO) -> Iterator[MessageBatch]:
        """Chunks with at least one complete record go out as ``RecordBatch`` (framed by their
        consumer: walked into an event table, or indexed when read as a ``MessageBatch``)."""
        buf = np.empty(self.chunk_bytes, dtype=np.uint8)
        index = self._alloc(self.batch_rows)
        next_seq = 1
        pos = end = 0
        eof = False
        while True:
            if not eof:
                end, eof = self._fill(f, buf, pos, end)
                pos = 0
            blen = (int(buf[pos]) << 8 | int(buf[pos + 1])) if pos + 2 <= end else 0
            if blen and pos + 2 + blen <= end:  # a complete record: a batch of at least one
                rec = Records(buf, pos, end, next_seq, self.batch_rows)
                batch = RecordBatch(rec, index, self.k, self.stats)
                yield batch
                n, pos, status = batch.framed()
            else:  # no record here (the end of the session, or the chunk ends inside one)
                n, pos, status = self.k.index_binaryfile(buf, pos, end, np.uint64(next_seq), *index,
                                                         self.stats)
            next_seq += n
            if status == F.EOS:
                rest = end - pos
                while not eof and not self._probing:  # garbage after the end-of-session record: count it
                    got = f.readinto(memoryview(buf)) or 0
                    self.bytes_read += got
                    rest += got
                    eof = got == 0
                if rest:
                    self.stats[S.AFTER_END_OF_SESSION] += rest
                    self.trailing_bytes += rest
                return
            if eof and n == 0:
                self._trailing(end - pos)
                return

    def _capture(self, f: BinaryIO) -> Iterator[MessageBatch]:
        buf = np.empty(self.chunk_bytes, dtype=np.uint8)
        pay_rows = self.chunk_bytes // 16 + 1
        pay_off = np.zeros(pay_rows, np.int64)
        pay_len = np.zeros(pay_rows, np.int64)
        pay_rx = np.zeros(pay_rows, np.int64)
        off, length, seq, sess, rx = self._alloc(self.batch_rows)
        pay = Payloads(buf, pay_off, pay_len, pay_rx)
        sessions = MoldSessions(self.sess_id, self.sess_next, self.n_sess)
        msgs = Frames(buf, off, length, seq, sess, rx)
        end, eof = self._fill(f, buf, 0, 0)
        pos = 0
        if self.format == "pcap":
            if end < 24:
                self._trailing(end, "truncated pcap global header")
                return
            order, ns_per_unit = PCAP_MAGICS[bytes(buf[:4])]
            little = 1 if order == "<" else 0
            linktype = struct.unpack(order + "I", bytes(buf[20:24]))[0] & 0xFFFF
            pos = 24
        else:
            state = np.zeros(2, np.int64)
            if_link = np.zeros(16, np.int64)
            if_kind = np.zeros(16, np.int64)
            if_val = np.zeros(16, np.int64)
        while True:
            if self.format == "pcap":
                n, pos, status = self.k.index_pcap(buf, pos, end, little, ns_per_unit, linktype,
                                                   self.filt_ip, self.filt_port, len(self.filt_ip),
                                                   pay_off, pay_len, pay_rx, self.stats)
            else:
                n, pos, status = self.k.index_pcapng(buf, pos, end, state, if_link, if_kind, if_val,
                                                     self.filt_ip, self.filt_port, len(self.filt_ip),
                                                     pay_off, pay_len, pay_rx, self.stats)
            i = 0
            while i < n:
                m, i = self.k.split_mold(pay, i, n, sessions, msgs, self.stats)
                if m < 0:  # cannot happen with rows >= 65535; guard against a future change
                    raise RuntimeError("message index overflow: batch_rows below one packet's messages")
                if m:
                    yield MessageBatch(buf, off, length, seq, sess, rx, m)
            if status == F.CORRUPT:
                rest = end - pos
                while not self._probing:  # (check_content: the rest of a broken file is not read)
                    got = f.readinto(memoryview(buf)) or 0
                    if not got:
                        break
                    self.bytes_read += got
                    rest += got
                self._trailing(rest, f"corrupt capture record at byte {self.bytes_read - rest}")
                return
            if n == pay_rows:
                continue  # output full: more records wait in this chunk
            if eof:
                self._trailing(end - pos)
                return
            end, eof = self._fill(f, buf, pos, end)
            pos = 0

    def _trailing(self, count: int, why: str = "truncated last record") -> None:
        if count > 0:
            self.trailing_bytes += count
            self.stats[S.TRAILING_BYTES] += count
            self.error = f"{why}: {count} trailing bytes"
