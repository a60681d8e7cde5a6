"""Load, configure and attach the XDP steering program (``xdp_progs/hftbot_steer.bpf.c``).

libbpf through ctypes (no bcc, no kernel headers): the object is opened and loaded with
``bpf_object__open_file``/``bpf_object__load``, attached with a BPF *link*
(``bpf_link_create(prog, ifindex, BPF_XDP)``), and its maps are written and read with
``bpf_map_update_elem``/``bpf_map_lookup_elem``. A link belongs to its file descriptor: when the
process exits - cleanly or by a crash or a signal - the kernel closes the descriptor and the
program is detached, so nothing is left on the interface. ``close()`` (also registered with
``atexit``) detaches earlier.

The object is built on demand (``build_object``) with the same command as ``make xdp``; a
missing clang, a non-root user without CAP_BPF/CAP_NET_ADMIN, a missing libbpf or a missing
bpffs (only needed for ``pin_dir``) raise ``XdpUnavailable`` with what to do.

Counter names and map layouts come from ``xdp_progs/hftbot_steer.h``, parsed here, so the
program and the loader cannot disagree.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import errno
import ipaddress
import os
import re
import shutil
import socket
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

ROOT = Path(__file__).resolve().parents[2]
SRC_DIR = ROOT / "xdp_progs"
HEADER = SRC_DIR / "hftbot_steer.h"
SOURCE = SRC_DIR / "hftbot_steer.bpf.c"
OBJECT = ROOT / "build" / "xdp" / "hftbot_steer.o"
PROG_NAME = "hftbot_steer"

XDP_DROP = 1
XDP_PASS = 2
XDP_REDIRECT = 4
BPF_XDP = 37  # enum bpf_attach_type
XDP_FLAGS = {"auto": 0, "skb": 1 << 1, "native": 1 << 2, "hw": 1 << 3}
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_BPF = 39


class XdpUnavailable(RuntimeError):
    """XDP cannot be used here (no root/CAP_BPF, no clang, no libbpf, no bpffs, ...)."""


def header_constants(path: Path = HEADER) -> dict[str, int]:
    """``HFTBOT_*`` constants of the shared header (``#define`` lines and enum members)."""
    out: dict[str, int] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*#define\s+(HFTBOT_\w+)\s+(\d+)", line) or re.match(r"\s*(HFTBOT_\w+)\s*=\s*(\d+)\s*,", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


_H = header_constants()
N_COUNTERS = _H["HFTBOT_N_COUNTERS"]
MAX_FEEDS = _H["HFTBOT_MAX_FEEDS"]
MAX_XSKS = _H["HFTBOT_MAX_XSKS"]
STEER = {"queue": _H["HFTBOT_STEER_QUEUE"], "session": _H["HFTBOT_STEER_SESSION"],
         "locate": _H["HFTBOT_STEER_LOCATE"]}
#: counter name (lower case, without the prefix) -> index
COUNTERS = {k[len("HFTBOT_CNT_"):].lower(): v for k, v in _H.items() if k.startswith("HFTBOT_CNT_")}


# -- preconditions ------------------------------------------------------------------------------
def _cap_eff() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def privilege_problem() -> str | None:
    """Why this process cannot load XDP programs, or None."""
    caps = _cap_eff()
    has_bpf = bool(caps & (1 << CAP_BPF)) or bool(caps & (1 << CAP_SYS_ADMIN))
    has_net = bool(caps & (1 << CAP_NET_ADMIN))
    if os.geteuid() != 0 and not (has_bpf and has_net):
        return ("XDP needs root, or CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN: run as root or "
                "`setcap cap_bpf,cap_net_admin,cap_net_raw+ep` the interpreter")
    if not has_bpf:
        return "XDP needs CAP_BPF (or CAP_SYS_ADMIN): this process (a container?) lacks it"
    if not has_net:
        return "XDP needs CAP_NET_ADMIN to attach to an interface: this process lacks it"
    return None


def bpffs_problem(pin_dir: str | os.PathLike) -> str | None:
    """Why maps cannot be pinned under ``pin_dir`` (bpffs not mounted there), or None."""
    p = Path(pin_dir)
    for parent in [p, *p.parents]:
        if parent.exists():
            try:
                st = os.statvfs(parent)
            except OSError as exc:
                return f"cannot stat {parent}: {exc}"
            # statfs f_type is not in statvfs: compare against the mount table instead
            mounts = Path("/proc/self/mounts").read_text().splitlines()
            best = ""
            fstype = ""
            for line in mounts:
                parts = line.split()
                if len(parts) >= 3 and str(parent).startswith(parts[1]) and len(parts[1]) >= len(best):
                    best, fstype = parts[1], parts[2]
            del st
            if fstype != "bpf":
                return (f"{pin_dir}: not on a bpf filesystem (mount it: mount -t bpf bpf /sys/fs/bpf; "
                        f"inside `ip netns exec` /sys is remounted: use nsenter --net=)")
            return None
    return f"{pin_dir}: no such directory"


def build_object(out: Path = OBJECT, force: bool = False) -> Path:
    """Compile the XDP program when the object is missing or older than its sources (the same
    command as ``make xdp``). Raises ``XdpUnavailable`` without clang."""
    srcs = [SOURCE, HEADER]
    if not force and out.is_file() and out.stat().st_mtime >= max(s.stat().st_mtime for s in srcs):
        return out
    clang = os.environ.get("CLANG") or shutil.which("clang")
    if not clang:
        raise XdpUnavailable("clang not found: the XDP program cannot be built "
                             "(apt-get install clang llvm libbpf-dev, or `make setup` as root)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    cmd = [clang, "-O2", "-g", "-Wall", "-Werror", "-target", "bpf",
           f"-I/usr/include/{os.uname().machine}-linux-gnu", f"-I{SRC_DIR}", "-c", str(SOURCE), "-o", str(tmp)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        tmp.unlink(missing_ok=True)
        hint = " (libbpf-dev missing?)" if "bpf_helpers.h" in res.stderr else ""
        raise XdpUnavailable(f"building the XDP program failed{hint}: {' '.join(cmd)}\n{res.stderr.strip()}")
    tmp.replace(out)
    return out


# -- libbpf -------------------------------------------------------------------------------------
class _LinkOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("flags", ctypes.c_uint32), ("_pad", ctypes.c_uint32)]


class TestRunOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("data_in", ctypes.c_void_p), ("data_out", ctypes.c_void_p),
                ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
                ("ctx_in", ctypes.c_void_p), ("ctx_out", ctypes.c_void_p),
                ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
                ("retval", ctypes.c_uint32), ("repeat", ctypes.c_int), ("duration", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32), ("batch_size", ctypes.c_uint32)]


_lib: ctypes.CDLL | None = None


def libbpf() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise XdpUnavailable(f"libbpf not found ({exc}): apt-get install libbpf1 libbpf-dev") from None
    vp, ci, cu, cs = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_char_p
    for fn, res, args in (
        ("bpf_object__open_file", vp, [cs, vp]),
        ("bpf_object__load", ci, [vp]),
        ("bpf_object__close", None, [vp]),
        ("bpf_object__find_program_by_name", vp, [vp, cs]),
        ("bpf_program__fd", ci, [vp]),
        ("bpf_object__find_map_by_name", vp, [vp, cs]),
        ("bpf_map__fd", ci, [vp]),
        ("bpf_map__pin", ci, [vp, cs]),
        ("bpf_map__unpin", ci, [vp, cs]),
        ("bpf_link_create", ci, [ci, ci, cu, ctypes.POINTER(_LinkOpts)]),
        ("bpf_map_update_elem", ci, [ci, vp, vp, ctypes.c_uint64]),
        ("bpf_map_lookup_elem", ci, [ci, vp, vp]),
        ("bpf_map_delete_elem", ci, [ci, vp]),
        ("bpf_prog_test_run_opts", ci, [ci, ctypes.POINTER(TestRunOpts)]),
        ("libbpf_num_possible_cpus", ci, []),
    ):
        f = getattr(lib, fn)
        f.restype = res
        f.argtypes = args
    _lib = lib
    return lib


def _err(what: str, rc: int | None = None) -> OSError:
    e = ctypes.get_errno() or (-rc if rc and rc < 0 else 0)
    return OSError(e, f"{what}: {os.strerror(e) if e else 'failed'}")


def _ifindex(ifname: str) -> int:
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        raise XdpUnavailable(f"no network interface {ifname!r} (in this network namespace)") from None


@dataclass(frozen=True)
class Feed:
    """A configured feed: destination (multicast group or unicast address) and UDP port."""

    group: str
    port: int

    @classmethod
    def parse(cls, spec: str) -> "Feed":
        host, _, port = str(spec).strip().rpartition(":")
        if not host or not port:
            raise ValueError(f"bad feed {spec!r}: expected 'a.b.c.d:port'")
        ipaddress.IPv4Address(host)
        p = int(port)
        if not 0 <= p <= 65535:
            raise ValueError(f"bad feed {spec!r}: port out of range")
        return cls(host, p)


class XdpProgram:
    """The steering program loaded into the kernel, attached to one interface.

    ``feeds``: the (group, port) pairs to redirect; ``other``: ``"pass"`` or ``"drop"`` for
    everything else; ``steer``: ``"queue"`` (the socket of the packet's RX queue), ``"session"``
    or ``"locate"`` (over ``n_pipelines`` sockets per feed); ``mode``: ``"skb"`` (generic),
    ``"native"`` (driver) or ``"auto"``. ``attach=False`` loads without attaching (unit tests
    run the program with ``test_run``).
    """

    def __init__(self, ifname: str | None, feeds: Iterable[Feed | str] = (), *, other: str = "pass",
                 steer: str = "queue", n_pipelines: int = 1, mode: str = "skb", attach: bool = True,
                 obj_path: Path | None = None, pin_dir: str | None = None):
        if other not in ("pass", "drop"):
            raise ValueError(f"other must be 'pass' or 'drop', got {other!r}")
        if steer not in STEER:
            raise ValueError(f"steer must be one of {sorted(STEER)}, got {steer!r}")
        if mode not in XDP_FLAGS:
            raise ValueError(f"mode must be one of {sorted(XDP_FLAGS)}, got {mode!r}")
        if not 1 <= n_pipelines <= MAX_XSKS:
            raise ValueError(f"n_pipelines must be in 1..{MAX_XSKS}")
        why = privilege_problem()
        if why:
            raise XdpUnavailable(why)
        if pin_dir:
            why = bpffs_problem(pin_dir)
            if why:
                raise XdpUnavailable(why)
        self.lib = libbpf()
        self.ifname = ifname
        self.obj = None
        self.link_fd = -1
        self.pinned: list[tuple[int, bytes]] = []
        path = obj_path or build_object()
        obj = self.lib.bpf_object__open_file(str(path).encode(), None)
        if not obj:
            raise _err(f"bpf_object__open_file({path})")
        self.obj = obj
        rc = self.lib.bpf_object__load(obj)
        if rc != 0:
            e = -rc if rc < 0 else ctypes.get_errno()
            self.close()
            if e in (errno.EPERM, errno.EACCES):
                raise XdpUnavailable(f"loading the XDP program was refused ({os.strerror(e)}): needs root or "
                                     "CAP_BPF; see the verifier log above if it is a verifier rejection")
            raise OSError(e, f"bpf_object__load({path}): {os.strerror(e)} (verifier log above)")
        prog = self.lib.bpf_object__find_program_by_name(obj, PROG_NAME.encode())
        self.prog_fd = self.lib.bpf_program__fd(prog)
        self.maps = {}
        for name in ("feeds", "xsks", "config", "counters"):
            m = self.lib.bpf_object__find_map_by_name(obj, name.encode())
            if not m:
                self.close()
                raise RuntimeError(f"map {name} missing from {path}")
            self.maps[name] = (m, self.lib.bpf_map__fd(m))
        self.ncpu = self.lib.libbpf_num_possible_cpus()
        self.feeds: list[Feed] = []
        self.configure(other=other, steer=steer, n_pipelines=n_pipelines)
        for i, f in enumerate(feeds):
            self.add_feed(f if isinstance(f, Feed) else Feed.parse(f), i * n_pipelines)
        if pin_dir:
            for name, (m, _) in self.maps.items():
                p = os.path.join(pin_dir, f"hftbot_{name}").encode()
                if self.lib.bpf_map__pin(m, p) == 0:
                    self.pinned.append((m, p))
        atexit.register(self.close)
        if attach:
            if ifname is None:
                self.close()
                raise ValueError("ifname is required to attach")
            self.attach(ifname, mode)

    # -- configuration ------------------------------------------------------------------------
    def _update(self, name: str, key: bytes, value: bytes) -> None:
        fd = self.maps[name][1]
        k = ctypes.create_string_buffer(key, len(key))
        v = ctypes.create_string_buffer(value, len(value))
        rc = self.lib.bpf_map_update_elem(fd, k, v, 0)
        if rc != 0:
            raise _err(f"bpf_map_update_elem({name})", rc)

    def configure(self, *, other: str = "pass", steer: str = "queue", n_pipelines: int = 1,
                  any_port: bool = False) -> None:
        act = XDP_PASS if other == "pass" else XDP_DROP
        self._update("config", struct.pack("<I", 0), struct.pack("<IIII", act, STEER[steer], n_pipelines,
                                                                 int(any_port)))

    def add_feed(self, feed: Feed, xsk_base: int = 0) -> None:
        if len(self.feeds) >= MAX_FEEDS:
            raise ValueError(f"at most {MAX_FEEDS} feeds")
        key = ipaddress.IPv4Address(feed.group).packed + struct.pack("!H", feed.port) + b"\0\0"
        self._update("feeds", key, struct.pack("<II", len(self.feeds), xsk_base))
        self.feeds.append(feed)

    def set_socket(self, key: int, sock_fd: int) -> None:
        """Put an AF_XDP socket at XSKMAP ``key`` (its RX queue, or pipeline index)."""
        if not 0 <= key < MAX_XSKS:
            raise ValueError(f"XSKMAP key must be in 0..{MAX_XSKS - 1}")
        self._update("xsks", struct.pack("<I", key), struct.pack("<I", sock_fd))

    def clear_socket(self, key: int) -> None:
        k = ctypes.create_string_buffer(struct.pack("<I", key), 4)
        self.lib.bpf_map_delete_elem(self.maps["xsks"][1], k)

    # -- attach / detach ----------------------------------------------------------------------
    def attach(self, ifname: str, mode: str = "skb") -> None:
        if self.link_fd >= 0:
            raise RuntimeError("already attached")
        idx = _ifindex(ifname)
        opts = _LinkOpts(ctypes.sizeof(_LinkOpts), XDP_FLAGS[mode], 0)
        fd = self.lib.bpf_link_create(self.prog_fd, idx, BPF_XDP, ctypes.byref(opts))
        if fd < 0:
            e = -fd
            hint = ""
            if e == errno.EBUSY or e == errno.EEXIST:
                hint = (f": another XDP program is attached to {ifname} "
                        f"(remove it: ip link set dev {ifname} xdp off; xdpgeneric off)")
            elif e == errno.EOPNOTSUPP:
                hint = f": {mode} XDP is not supported by {ifname}'s driver (try mode=skb)"
            raise OSError(e, f"attaching XDP to {ifname} ({mode}): {os.strerror(e)}{hint}")
        self.link_fd = fd
        self.ifname = ifname

    def detach(self) -> None:
        if self.link_fd >= 0:
            os.close(self.link_fd)  # the link's last reference: the kernel detaches the program
            self.link_fd = -1

    def close(self) -> None:
        self.detach()
        for m, p in self.pinned:
            self.lib.bpf_map__unpin(m, p)
        self.pinned = []
        if self.obj:
            self.lib.bpf_object__close(self.obj)
            self.obj = None
        try:
            atexit.unregister(self.close)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __enter__(self) -> "XdpProgram":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- counters and test runs ---------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        """Per-reason counters summed over CPUs."""
        fd = self.maps["counters"][1]
        val = (ctypes.c_uint64 * self.ncpu)()
        out = {}
        for name, idx in COUNTERS.items():
            if name == "n_counters":
                continue
            k = ctypes.c_uint32(idx)
            if self.lib.bpf_map_lookup_elem(fd, ctypes.byref(k), val) != 0:
                raise _err("bpf_map_lookup_elem(counters)")
            out[name] = int(sum(val))
        return out

    def test_run(self, frame: bytes, repeat: int = 1) -> int:
        """Run the program on one frame in the kernel (BPF_PROG_TEST_RUN); returns the verdict."""
        buf = ctypes.create_string_buffer(bytes(frame), len(frame))
        opts = TestRunOpts()
        opts.sz = ctypes.sizeof(TestRunOpts)
        opts.data_in = ctypes.cast(buf, ctypes.c_void_p)
        opts.data_size_in = len(frame)
        opts.repeat = repeat
        rc = self.lib.bpf_prog_test_run_opts(self.prog_fd, ctypes.byref(opts))
        if rc != 0:
            raise _err("bpf_prog_test_run_opts", rc)
        return int(opts.retval)


def unavailable_reason() -> str | None:
    """Why the XDP path cannot be used on this machine (for skips and the config fallback)."""
    why = privilege_problem()
    if why:
        return why
    try:
        libbpf()
        build_object()
    except XdpUnavailable as exc:
        return str(exc)
    return None


def feeds_from(specs: Sequence[str]) -> list[Feed]:
    return [Feed.parse(s) for s in specs]
