"""Plain UDP socket receive, batched: the fallback when XDP is unavailable (same downstream).

``UdpReceiver`` binds one socket per feed (multicast groups are joined on the configured
interface) and reads with ``recvmmsg(2)`` into one preallocated buffer of fixed-size slots: one
system call per batch of datagrams, no Python object per packet. Payloads land at
``buf[off[i] : off[i] + length[i]]`` (UDP payloads: ``link = "payload"``). The same class, bound
to an ephemeral port, carries the rewind (retransmission) requests and their replies.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import socket
import struct
from typing import Sequence

import numpy as np

MSG_DONTWAIT = 0x40
SO_RCVBUFFORCE = 33
IP_MULTICAST_ALL = 49

_libc = ctypes.CDLL(None, use_errno=True)


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(_Iovec)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint32)]


_libc.recvmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_Mmsghdr), ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
_libc.recvmmsg.restype = ctypes.c_int


def _ifaddr(ifname: str | None) -> str:
    """IPv4 address of an interface (for IP_ADD_MEMBERSHIP / IP_MULTICAST_IF); 0.0.0.0 for any."""
    if not ifname:
        return "0.0.0.0"
    import fcntl

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        res = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", ifname.encode()[:15]))  # SIOCGIFADDR
        return socket.inet_ntoa(res[20:24])
    except OSError as exc:
        raise OSError(exc.errno, f"interface {ifname!r} has no IPv4 address: {exc.strerror}") from None
    finally:
        s.close()


class UdpBatchSocket:
    """One UDP socket read by ``recvmmsg`` into preallocated slots."""

    def __init__(self, bind: tuple[str, int] = ("0.0.0.0", 0), *, group: str | None = None,
                 ifname: str | None = None, batch: int = 256, slot: int = 2048, rcvbuf: int = 32 << 20):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s = self.sock
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if group is not None:
                addr = _ifaddr(ifname)
                s.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)  # only the groups joined here
                s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                             socket.inet_aton(group) + socket.inet_aton(addr))
            s.bind(bind)
        except BaseException:
            self.sock.close()
            raise
        self.batch, self.slot = int(batch), int(slot)
        self.buf = np.zeros(self.batch * self.slot, np.uint8)
        base = self.buf.__array_interface__["data"][0]
        self.iov = (_Iovec * self.batch)()
        self.msgs = (_Mmsghdr * self.batch)()
        for i in range(self.batch):
            self.iov[i].base = base + i * self.slot
            self.iov[i].len = self.slot
            self.msgs[i].hdr.iov = ctypes.pointer(self.iov[i])
            self.msgs[i].hdr.iovlen = 1
        # msg_len of every mmsghdr, as a numpy view (no per-packet Python)
        stride = ctypes.sizeof(_Mmsghdr) // 4
        lens = np.frombuffer((ctypes.c_uint32 * (stride * self.batch)).from_address(ctypes.addressof(self.msgs)),
                             np.uint32)
        self._lens = lens.reshape(self.batch, stride)[:, _Mmsghdr.len.offset // 4]
        self.off = np.arange(self.batch, dtype=np.int64) * self.slot
        self.length = np.zeros(self.batch, np.int64)
        self.packets = 0
        self.bytes = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def recv(self, timeout_ms: int = 0) -> int:
        """Datagrams now in ``buf[off[i]:off[i]+length[i]]``, waiting up to ``timeout_ms``."""
        fd = self.sock.fileno()
        n = _libc.recvmmsg(fd, self.msgs, self.batch, MSG_DONTWAIT, None)
        if n < 0 and timeout_ms:
            e = ctypes.get_errno()
            if e not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise OSError(e, f"recvmmsg: {os.strerror(e)}")
            select.select([fd], [], [], timeout_ms / 1000)
            n = _libc.recvmmsg(fd, self.msgs, self.batch, MSG_DONTWAIT, None)
        if n < 0:
            e = ctypes.get_errno()
            if e in (errno.EAGAIN, errno.EWOULDBLOCK):
                return 0
            raise OSError(e, f"recvmmsg: {os.strerror(e)}")
        self.length[:n] = self._lens[:n]
        self.packets += n
        self.bytes += int(self.length[:n].sum())
        return n

    def release(self) -> None:
        """Nothing to give back (the slots are reused by the next ``recv``)."""

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sock.sendto(data, addr)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "UdpBatchSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class UdpReceiver:
    """The feeds' sockets (one per (group, port)), read in turn; ``recv`` returns one socket's
    batch (``self.buf``/``off``/``length`` point at it)."""

    link = "payload"

    def __init__(self, feeds: Sequence[tuple[str, int]], ifname: str | None = None, *, batch: int = 256,
                 slot: int = 2048, rcvbuf: int = 32 << 20):
        self.socks: list[UdpBatchSocket] = []
        try:
            for group, port in feeds:
                mc = socket.inet_aton(group)[0] >= 224 and socket.inet_aton(group)[0] < 240
                self.socks.append(UdpBatchSocket((group if mc else "0.0.0.0", port), group=group if mc else None,
                                                 ifname=ifname, batch=batch, slot=slot, rcvbuf=rcvbuf))
        except BaseException:
            self.close()
            raise
        if not self.socks:
            raise ValueError("no feeds to receive")
        self.poller = select.poll()
        for s in self.socks:
            self.poller.register(s.fileno(), select.POLLIN)
        self._next = 0
        self._cur = self.socks[0]

    def fileno(self) -> int:
        return self.socks[0].fileno()

    @property
    def buf(self) -> np.ndarray:
        return self._cur.buf

    @property
    def off(self) -> np.ndarray:
        return self._cur.off

    @property
    def length(self) -> np.ndarray:
        return self._cur.length

    @property
    def packets(self) -> int:
        return sum(s.packets for s in self.socks)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.socks)

    def recv(self, timeout_ms: int = 0) -> int:
        for attempt in range(2):
            for _ in range(len(self.socks)):
                s = self.socks[self._next]
                self._next = (self._next + 1) % len(self.socks)
                n = s.recv(0)
                if n:
                    self._cur = s
                    return n
            if attempt == 0 and timeout_ms:
                self.poller.poll(timeout_ms)
            else:
                break
        return 0

    def release(self) -> None:
        pass

    def statistics(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        for s in self.socks:
            s.close()
        self.socks = []

    def __enter__(self) -> "UdpReceiver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
