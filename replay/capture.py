"""Streaming capture readers: pcap (µs/ns, either byte order), pcapng, Nasdaq BinaryFILE.

The format is detected from the content (gzip-compressed files too). A file is read in chunks
into one preallocated buffer, so a multi-GB capture replays in bounded memory; the compiled
framing kernels (`kernels/framing.py`) walk each chunk and hand back message blocks. Python
touches chunks, never packets or messages.

Everything skipped is counted by reason in ``reader.stats`` (slots in `kernels/stats.py`);
bytes left over at the end of a file (a truncated last record or message) are in
``reader.trailing_bytes`` and reported, never silently dropped.
"""

from __future__ import annotations

import gzip
import ipaddress
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import numpy as np

from kernels import framing as F
from kernels import stats as S
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


def _open(path: Path) -> BinaryIO:
    raw = open(path, "rb")
    if raw.read(2) == GZIP_MAGIC:
        raw.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    raw.seek(0)
    return raw


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
        with _open(self.path) as f:
            self.format = detect_format(f.read(24))

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

    # -- internals ----------------------------------------------------------------------------
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
        buf = np.empty(self.chunk_bytes, dtype=np.uint8)
        off, length, seq, sess, rx = self._alloc(self.batch_rows)
        next_seq = 1
        pos = end = 0
        eof = False
        while True:
            if not eof:
                end, eof = self._fill(f, buf, pos, end)
                pos = 0
            n, pos, status = self.k.index_binaryfile(buf, pos, end, np.uint64(next_seq), off, length,
                                                     seq, sess, rx, self.stats)
            next_seq += n
            if n:
                yield MessageBatch(buf, off, length, seq, sess, rx, n)
            if status == F.EOS:
                rest = end - pos
                while not eof:  # garbage after the end-of-session record: count it, keep going
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
                while True:
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
