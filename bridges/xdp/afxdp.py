"""AF_XDP receive socket: UMEM in page-locked host memory, fill and RX rings driven in batches by
compiled code, frames handed to decode in place (no copy).

The UMEM is one anonymous shared mapping, ``mlock``-ed (and registered with CUDA as mapped
pinned memory when numba-cuda finds a GPU, so a GPU kernel can read frames where the NIC wrote
them). The four rings are the kernel's own memory, ``mmap``-ed and viewed as numpy arrays; the
njit functions below move descriptors between them - Python makes one call per batch, never per
packet. A batch's frames stay owned by the caller until the next ``recv`` (they are what the
``MessageBatch`` views point at) and go back to the fill ring then.

Copy mode is the default (what veth and most drivers give); ``zerocopy=True`` asks for zero-copy
(NICs whose driver supports it). The socket is bound to one (interface, queue); its fd goes into
the XDP program's XSKMAP at that queue (``XdpProgram.set_socket``).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import select
import socket
import struct


import numpy as np
from numba import njit

AF_XDP = 44
SOL_XDP = 283
XDP_MMAP_OFFSETS = 1
XDP_RX_RING = 2
XDP_TX_RING = 3
XDP_UMEM_REG = 4
XDP_UMEM_FILL_RING = 5
XDP_UMEM_COMPLETION_RING = 6
XDP_STATISTICS = 7
XDP_COPY = 1 << 1
XDP_ZEROCOPY = 1 << 2
XDP_PGOFF_RX_RING = 0
XDP_UMEM_PGOFF_FILL_RING = 0x100000000
XDP_UMEM_PGOFF_COMPLETION_RING = 0x180000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.munlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.setsockopt.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]
_libc.getsockopt.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                             ctypes.POINTER(ctypes.c_uint32)]
_libc.bind.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]


class XskError(OSError):
    pass


def _check(rc: int, what: str) -> None:
    if rc < 0:
        e = ctypes.get_errno()
        raise XskError(e, f"{what}: {os.strerror(e)}")


# --- ring kernels (njit; one call per batch) ----------------------------------------------------
def rx_take(rx_prod, rx_cons, rx_desc, mask, max_n, out_addr, out_len):
    """Take up to ``max_n`` descriptors from the RX ring into ``out_addr``/``out_len`` and
    release their ring slots (the frames stay ours until ``fill_put``). x86 is TSO: the
    producer is read before the descriptors, and the consumer written after them."""
    prod = np.int64(rx_prod[0])
    cons = np.int64(rx_cons[0])
    n = (prod - cons) & 0xFFFFFFFF
    if n > max_n:
        n = max_n
    for i in range(n):
        j = (cons + i) & mask
        out_addr[i] = rx_desc[j, 0]
        out_len[i] = np.int64(rx_desc[j, 1] & np.uint64(0xFFFFFFFF))
    rx_cons[0] = np.uint32((cons + n) & 0xFFFFFFFF)
    return n


def fill_put(fq_prod, fq_cons, fq_desc, mask, size, addrs, n, chunk_mask):
    """Give ``n`` frames (their chunk start: ``addr & chunk_mask``) back to the fill ring.
    Returns how many fit (the rest stay with the caller)."""
    prod = np.int64(fq_prod[0])
    used = (prod - np.int64(fq_cons[0])) & 0xFFFFFFFF
    free = size - used
    k = n if n < free else free
    for i in range(k):
        fq_desc[(prod + i) & mask] = np.uint64(addrs[i]) & np.uint64(chunk_mask)
    fq_prod[0] = np.uint32((prod + k) & 0xFFFFFFFF)
    return k


_jit = njit(cache=True, nogil=True)
_rx_take = _jit(rx_take)
_fill_put = _jit(fill_put)


class _SockaddrXdp(ctypes.Structure):
    _fields_ = [("family", ctypes.c_uint16), ("flags", ctypes.c_uint16), ("ifindex", ctypes.c_uint32),
                ("queue_id", ctypes.c_uint32), ("shared_umem_fd", ctypes.c_uint32)]


def _register_cuda(addr: int, size: int, owner):
    """Register the UMEM with CUDA as mapped pinned memory (numba-cuda, a real GPU); None
    otherwise. Untested without a GPU: import-guarded."""
    try:
        if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
            return None
        from numba import cuda

        if not cuda.is_available():
            return None
        return cuda.current_context().mempin(owner, addr, size, mapped=True)
    except Exception:  # noqa: BLE001 - optional: any failure means "no GPU registration"
        return None


class XskSocket:
    """One AF_XDP socket on (``ifname``, ``queue``) with its own UMEM.

    ``recv(timeout_ms)`` returns the number of frames now in ``self.addr[:n]`` (offsets into
    ``self.buf``, the UMEM as uint8) and ``self.length[:n]``; Ethernet frames. The previous
    batch's frames are recycled first.
    """

    link = "eth"

    def __init__(self, ifname: str, queue: int = 0, *, frames: int = 8192, frame_size: int = 2048,
                 ring: int = 4096, batch: int = 1024, zerocopy: bool = False, gpu: bool = True):
        for name, v in (("frames", frames), ("ring", ring), ("frame_size", frame_size)):
            if v <= 0 or v & (v - 1):
                raise ValueError(f"{name} must be a power of two, got {v}")
        if frame_size < 2048:
            raise ValueError("frame_size must be >= 2048")
        self.ifname, self.queue = ifname, int(queue)
        self.frame_size, self.n_frames, self.ring_size = frame_size, frames, ring
        self.batch = int(batch)
        self.fd = -1
        self._maps: list[mmap.mmap] = []
        size = frames * frame_size
        self.umem = mmap.mmap(-1, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        self.buf = np.frombuffer(self.umem, dtype=np.uint8)
        self.umem_addr = self.buf.__array_interface__["data"][0]
        self.locked = _libc.mlock(ctypes.c_void_p(self.umem_addr), size) == 0
        self.cuda_mem = _register_cuda(self.umem_addr, size, self.umem) if gpu else None
        try:
            self._open(ifname, queue, zerocopy)
        except BaseException:
            self.close()
            raise
        self.addr = np.zeros(self.batch, np.uint64)
        self.length = np.zeros(self.batch, np.int64)
        self.n_out = 0  # frames of the last batch, still held by the caller
        self.chunk_mask = ~(frame_size - 1) & 0xFFFFFFFFFFFFFFFF
        # hand every frame to the kernel (the fill ring may be smaller: the rest wait in spare)
        all_addrs = np.arange(frames, dtype=np.uint64) * np.uint64(frame_size)
        k = _fill_put(self.fq_prod, self.fq_cons, self.fq_desc, ring - 1, ring, all_addrs, frames,
                      np.uint64(self.chunk_mask))
        self.spare = np.zeros(frames, np.uint64)
        self.n_spare = frames - k
        self.spare[: self.n_spare] = all_addrs[k:]
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)
        self.packets = 0
        self.bytes = 0

    def _sockopt(self, opt: int, value: bytes) -> None:
        b = ctypes.create_string_buffer(value, len(value))
        _check(_libc.setsockopt(self.fd, SOL_XDP, opt, b, len(value)), f"setsockopt(SOL_XDP, {opt})")

    def _open(self, ifname: str, queue: int, zerocopy: bool) -> None:
        fd = _libc.socket(AF_XDP, socket.SOCK_RAW, 0)
        if fd < 0:
            e = ctypes.get_errno()
            raise XskError(e, f"socket(AF_XDP): {os.strerror(e)} (kernel without CONFIG_XDP_SOCKETS, or not root)")
        self.fd = fd
        size = self.n_frames * self.frame_size
        self._sockopt(XDP_UMEM_REG, struct.pack("<QQIII", self.umem_addr, size, self.frame_size, 0, 0))
        ring = struct.pack("<I", self.ring_size)
        self._sockopt(XDP_UMEM_FILL_RING, ring)
        self._sockopt(XDP_UMEM_COMPLETION_RING, ring)
        self._sockopt(XDP_RX_RING, ring)
        off = ctypes.create_string_buffer(128)
        ln = ctypes.c_uint32(128)
        _check(_libc.getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS, off, ctypes.byref(ln)), "getsockopt(XDP_MMAP_OFFSETS)")
        rx, _tx, fr, cr = (struct.unpack_from("<QQQQ", off.raw, 32 * i) for i in range(4))
        n = self.ring_size
        rx_map = self._map(rx[2] + n * 16, XDP_PGOFF_RX_RING)
        fq_map = self._map(fr[2] + n * 8, XDP_UMEM_PGOFF_FILL_RING)
        self._map(cr[2] + n * 8, XDP_UMEM_PGOFF_COMPLETION_RING)
        self.rx_prod = np.frombuffer(rx_map, np.uint32, 1, rx[0])
        self.rx_cons = np.frombuffer(rx_map, np.uint32, 1, rx[1])
        self.rx_desc = np.frombuffer(rx_map, np.uint64, 2 * n, rx[2]).reshape(n, 2)
        self.fq_prod = np.frombuffer(fq_map, np.uint32, 1, fr[0])
        self.fq_cons = np.frombuffer(fq_map, np.uint32, 1, fr[1])
        self.fq_desc = np.frombuffer(fq_map, np.uint64, n, fr[2])
        try:
            ifindex = socket.if_nametoindex(ifname)
        except OSError:
            raise XskError(19, f"no network interface {ifname!r}") from None
        sa = _SockaddrXdp(AF_XDP, XDP_ZEROCOPY if zerocopy else XDP_COPY, ifindex, queue, 0)
        if _libc.bind(fd, ctypes.byref(sa), ctypes.sizeof(sa)) < 0:
            e = ctypes.get_errno()
            mode = "zero-copy" if zerocopy else "copy"
            raise XskError(e, f"bind AF_XDP to {ifname} queue {queue} ({mode}): {os.strerror(e)}")
        self.zerocopy = zerocopy

    def _map(self, length: int, offset: int) -> mmap.mmap:
        m = mmap.mmap(self.fd, length, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                      prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
        self._maps.append(m)
        return m

    def fileno(self) -> int:
        return self.fd

    def release(self) -> None:
        """Give the previous batch's frames (and any spare ones) back to the fill ring."""
        mask = np.uint64(self.chunk_mask)
        if self.n_out:
            k = _fill_put(self.fq_prod, self.fq_cons, self.fq_desc, self.ring_size - 1, self.ring_size,
                          self.addr, self.n_out, mask)
            if k < self.n_out:  # fill ring full: keep the rest for later
                rest = self.addr[k: self.n_out]
                self.spare[self.n_spare: self.n_spare + len(rest)] = rest
                self.n_spare += len(rest)
            self.n_out = 0
        if self.n_spare:
            k = _fill_put(self.fq_prod, self.fq_cons, self.fq_desc, self.ring_size - 1, self.ring_size,
                          self.spare, self.n_spare, mask)
            if k:
                self.spare[: self.n_spare - k] = self.spare[k: self.n_spare].copy()
                self.n_spare -= k

    def recv(self, timeout_ms: int = 0) -> int:
        """Frames received now (up to ``batch``), waiting up to ``timeout_ms`` for the first."""
        self.release()
        n = _rx_take(self.rx_prod, self.rx_cons, self.rx_desc, self.ring_size - 1, self.batch,
                     self.addr, self.length)
        if n == 0 and timeout_ms:
            self.poller.poll(timeout_ms)
            n = _rx_take(self.rx_prod, self.rx_cons, self.rx_desc, self.ring_size - 1, self.batch,
                         self.addr, self.length)
        self.n_out = n
        if n:
            self.packets += n
            self.bytes += int(self.length[:n].sum())
        return n

    @property
    def off(self) -> np.ndarray:
        """Frame offsets in ``buf`` (int64 view of the descriptor addresses)."""
        return self.addr.view(np.int64)

    def statistics(self) -> dict[str, int]:
        """Kernel-side socket statistics (drops when the RX or fill ring was full, ...)."""
        b = ctypes.create_string_buffer(48)
        ln = ctypes.c_uint32(48)
        if self.fd < 0 or _libc.getsockopt(self.fd, SOL_XDP, XDP_STATISTICS, b, ctypes.byref(ln)) < 0:
            return {}
        names = ("rx_dropped", "rx_invalid_descs", "tx_invalid_descs", "rx_ring_full",
                 "rx_fill_ring_empty_descs", "tx_ring_empty_descs")
        vals = struct.unpack_from("<" + "Q" * (ln.value // 8), b.raw)
        return dict(zip(names, vals))

    def close(self) -> None:
        if getattr(self, "poller", None) is not None and self.fd >= 0:
            try:
                self.poller.unregister(self.fd)
            except (KeyError, ValueError):
                pass
        for name in ("rx_prod", "rx_cons", "rx_desc", "fq_prod", "fq_cons", "fq_desc"):
            if hasattr(self, name):
                delattr(self, name)
        for m in self._maps:
            m.close()
        self._maps = []
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if getattr(self, "umem", None) is not None:
            self.cuda_mem = None
            if self.locked:
                _libc.munlock(ctypes.c_void_p(self.umem_addr), len(self.umem))
                self.locked = False
            self.buf = None  # type: ignore[assignment]
            try:
                self.umem.close()
            except BufferError:  # a MessageBatch still views it: the mapping goes with the last view
                pass
            self.umem = None  # type: ignore[assignment]

    def __enter__(self) -> "XskSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


