"""Network namespaces and veth pairs for tests and benchmarks (root only).

``TestNet`` makes two namespaces joined by a veth pair, with addresses, static neighbours (no
ARP on the wire, so XDP counters are exact), IPv6 off (no router solicitations) and the
interfaces up; ``close()`` deletes both namespaces (which deletes the veth pair). Names carry
the process id and a counter, so concurrent runs do not collide. ``enter(ns)`` moves the
*calling thread* into a namespace for the duration of a ``with`` block (``setns``); sockets and
XDP attachments made inside stay in that namespace afterwards.

Nothing here sends a packet: it only builds the private network the tests send into.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/var/run/netns")
_libc = ctypes.CDLL(None, use_errno=True)
_counter = itertools.count()
_lock = threading.Lock()


def netns_problem() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip"):
        return "iproute2 (`ip`) not found: apt-get install iproute2"
    return None


def _run(*cmd: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip()}")


@contextlib.contextmanager
def enter(ns: str) -> Iterator[None]:
    """Run the block with this thread in network namespace ``ns`` (then come back)."""
    own = os.open(f"/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(NETNS_DIR / ns, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns({ns}): {os.strerror(e)}")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"setns back from {ns}: {os.strerror(e)}")
    finally:
        os.close(target)
        os.close(own)


def nsenter_cmd(ns: str) -> list[str]:
    """Command prefix running a program in ``ns`` without remounting /sys (unlike ip netns exec)."""
    return ["nsenter", f"--net={NETNS_DIR / ns}", "--"]


@dataclass
class Side:
    ns: str
    ifname: str
    ip: str
    mac: str


class TestNet:
    """Two namespaces, ``tx`` (the exchange side) and ``rx`` (ours), joined by a veth pair."""

    __test__ = False  # not a pytest class

    def __init__(self, tag: str = "hft", subnet: int | None = None):
        why = netns_problem()
        if why:
            raise PermissionError(why)
        with _lock:
            k = next(_counter)
        uid = f"{tag}{os.getpid() % 100000}x{k}"
        third = subnet if subnet is not None else (os.getpid() + k) % 250 + 1
        self.tx = Side(f"{uid}t", f"{uid}t"[:15], f"10.213.{third}.1", "02:a1:00:00:%02x:01" % (k % 256))
        self.rx = Side(f"{uid}r", f"{uid}r"[:15], f"10.213.{third}.2", "02:a1:00:00:%02x:02" % (k % 256))
        self.created: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        for s in (self.tx, self.rx):
            _run("ip", "netns", "add", s.ns)
            self.created.append(s.ns)
        _run("ip", "link", "add", self.tx.ifname, "netns", self.tx.ns, "address", self.tx.mac, "type", "veth",
             "peer", "name", self.rx.ifname, "netns", self.rx.ns, "address", self.rx.mac)
        for s, peer in ((self.tx, self.rx), (self.rx, self.tx)):
            ns = nsenter_cmd(s.ns)
            for key in ("all", "default", s.ifname):
                subprocess.run([*ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"], capture_output=True)
                subprocess.run([*ns, "sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=0"], capture_output=True)
            _run(*ns, "ip", "addr", "add", f"{s.ip}/24", "dev", s.ifname)
            _run(*ns, "ip", "link", "set", s.ifname, "up")
            _run(*ns, "ip", "link", "set", "lo", "up")
            _run(*ns, "ip", "neigh", "replace", peer.ip, "lladdr", peer.mac, "dev", s.ifname, "nud", "permanent")
            # multicast out of this side goes over the veth
            _run(*ns, "ip", "route", "add", "224.0.0.0/4", "dev", s.ifname)

    def close(self) -> None:
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.created = []

    def __enter__(self) -> "TestNet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
