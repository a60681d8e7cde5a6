"""The FIX bridge: risk's orders out -> FIX 4.4 on the wire; execution reports -> risk accounting.

Design (the per-order budget is 5 µs; QuickFIX from Python costs 20-50 µs an order, measured in
``bridges/fix/codec.py``):

- **QuickFIX keeps the session.** A ``SocketInitiator`` with a persistent ``FileStore`` does the
  logon (credentials from the environment), heartbeats, test requests, resend requests,
  sequence resets and reconnects; its sequence numbers survive a restart.
- **The hot path bypasses QuickFIX's message objects.** ``send()`` encodes a whole batch of
  orders and writes it to the session's socket with one system call, both in one compiled call
  (``codec.send_orders``: ``codec.encode_orders``' header, MsgSeqNum, BodyLength, CheckSum, then
  write(2); a short write is finished from Python); QuickFIX's next sender sequence number is
  advanced (``Session.setNextSenderMsgSeqNum``, persisted) before QuickFIX next runs.
- **One thread.** The initiator is driven by ``poll()`` from the bridge's caller (never
  ``start()``), so QuickFIX never writes to the socket while the hot path does.
- **Resends.** Order messages do not go through QuickFIX's store, so a counterparty resend
  request for them is answered by QuickFIX with a gap fill; the bridge then re-sends every
  request still unacknowledged as a new message with PossResend(97)=Y and the same ClOrdID,
  which the venue de-duplicates (STYLE.md, "FIX"). Every ClOrdID is acknowledged once.
- **Inbound.** ``fromApp`` copies the raw message bytes into a buffer (one SWIG call); after
  each ``poll`` the compiled parser turns them into execution events for risk and moves the
  order state machine (``codec.LEGAL``: impossible transitions are refused, counted, logged).

Python exceptions never leave a QuickFIX callback: with the quickfix-ssl wheel an exception
that crosses into C++ aborts the process. Every callback catches, counts and logs.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bridges.fix import codec as C
from kernels import intents as IN
from kernels.events import unpack_ascii
from kernels.state import FixArrays

log = logging.getLogger("hftbot.fix")

_I64 = np.dtype(np.int64)


class FixError(RuntimeError):
    """The FIX session cannot be set up or used (bad settings, no logon, quickfix missing)."""


def import_quickfix():
    """The quickfix module (a clear ``FixError`` if it is not installed). Note: importing it
    resets SIGINT's disposition to the default at the C level (``pipeline/control.py``)."""
    return _import_quickfix()


def _import_quickfix():
    first = "quickfix" not in sys.modules
    try:
        import quickfix as fix
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise FixError("the FIX bridge needs QuickFIX: pip install quickfix-ssl==1.15.1.post4 "
                       "(or quickfix built from source)") from exc
    if first:
        _restore_sigint()
    return fix


def _restore_sigint() -> None:
    """Put SIGINT back to what Python has on record: QuickFIX's module initialisation sets it to
    the default action at the C level (``pipeline/control.py``, ``RunControl.reassert``), so until
    something installs a handler again a Ctrl-C killed the process on the spot, with no report
    (and a SIGINT that the parent had set to be ignored killed it too). Main thread only (where
    signal handlers live; ``import_quickfix`` runs there before the run's handlers go in)."""
    import signal

    if threading.current_thread() is threading.main_thread():
        h = signal.getsignal(signal.SIGINT)
        if h is not None:
            signal.signal(signal.SIGINT, h)


def data_dictionary() -> Path:
    """The FIX 4.4 data dictionary shipped with the quickfix wheel."""
    p = Path(sys.prefix) / "share" / "quickfix" / "FIX44.xml"
    if not p.is_file():
        raise FixError(f"FIX44.xml not found at {p}: is quickfix-ssl installed in this environment?")
    return p


def session_settings(*, role: str, host: str, port: int, sender: str, target: str, heartbeat_s: int,
                     state_dir: Path, reconnect_s: int = 1, logon_timeout_s: int = 10, file_log: bool = False,
                     extra: dict[str, Any] | None = None) -> str:
    """QuickFIX settings text for one FIX 4.4 session, generated from config (never a committed
    file). ``role`` is ``initiator`` or ``acceptor``."""
    if role not in ("initiator", "acceptor"):
        raise FixError(f"role must be initiator or acceptor, not {role!r}")
    lines = [
        "[DEFAULT]",
        f"ConnectionType={role}",
        "BeginString=FIX.4.4",
        f"HeartBtInt={int(heartbeat_s)}",
        "StartTime=00:00:00",
        "EndTime=00:00:00",
        f"FileStorePath={state_dir / 'store'}",
        "UseDataDictionary=Y",
        f"DataDictionary={data_dictionary()}",
        "SocketNodelay=Y",
        "PersistMessages=Y",
        f"LogonTimeout={int(logon_timeout_s)}",
        "TimestampPrecision=6",
    ]
    if role == "initiator":
        # QuickFIX's SocketInitiator reads ReconnectInterval from [DEFAULT] only (onConfigure:
        # ``s.get()``); under [SESSION] it is ignored and a dropped session waits 30 s to reconnect
        lines.append(f"ReconnectInterval={int(reconnect_s)}")
    if file_log:
        lines.append(f"FileLogPath={state_dir / 'log'}")
    lines += ["[SESSION]", f"SenderCompID={sender}", f"TargetCompID={target}"]
    if role == "initiator":
        lines += [f"SocketConnectHost={host}", f"SocketConnectPort={int(port)}"]
    else:
        lines += [f"SocketAcceptHost={host}", f"SocketAcceptPort={int(port)}"]
    for k, v in (extra or {}).items():
        lines.append(f"{k}={v}")
    return "\n".join(lines) + "\n"


def next_epoch(state_dir: Path) -> int:
    """A counter persisted in the state dir, +1 per start: makes ClOrdIDs unique across restarts."""
    p = state_dir / "clordid.epoch"
    n = int(p.read_text().strip() or 0) + 1 if p.is_file() else 1
    tmp = p.with_suffix(".tmp")
    tmp.write_text(f"{n}\n")
    tmp.replace(p)
    return n


def _find_socket(host: str, port: int, stale: set[str]) -> tuple[int, str]:
    """(fd, inode) of this process's established TCP connection to ``host:port`` (QuickFIX's
    initiator socket), skipping the inodes in ``stale`` (earlier connections that may linger)."""
    want = (socket.gethostbyname(host), int(port))
    for name in sorted(os.listdir("/proc/self/fd"), key=lambda x: -int(x)):
        fd = int(name)
        try:
            link = os.readlink(f"/proc/self/fd/{name}")
            if not link.startswith("socket:") or link in stale:
                continue
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            established = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 1
            if s.type == socket.SOCK_STREAM and established and s.getpeername()[:2] == want:
                return fd, link
        except OSError:
            pass
        finally:
            s.close()
    return -1, ""


class _App:
    """The QuickFIX application (built lazily so this module imports without quickfix)."""

    @staticmethod
    def make(bridge: "FixBridge"):
        fix = _import_quickfix()

        class App(fix.Application):
            def onCreate(self, sid):
                bridge._guard(bridge._on_create, sid)

            def onLogon(self, sid):
                bridge._guard(bridge._on_logon, sid)

            def onLogout(self, sid):
                bridge._guard(bridge._on_logout, sid)

            def toAdmin(self, msg, sid):
                bridge._guard(bridge._to_admin, msg)

            def fromAdmin(self, msg, sid):
                bridge._guard(bridge._from_admin, msg)

            def toApp(self, msg, sid):
                pass

            def fromApp(self, msg, sid):
                bridge._guard(bridge._from_app, msg)

        return App()


class FixBridge:
    """One FIX 4.4 initiator session to the venue; see the module docstring.

    ``sym`` is the book's symbol table (``BookState.sym``: stock names by locate); ``date`` the
    feed's trading date ``YYYYMMDD`` for TransactTime.
    """

    def __init__(self, *, host: str, port: int, sender: str, target: str, state_dir: Path | str,
                 sym: np.ndarray, date: str, heartbeat_s: int = 30, reconnect_s: int = 1,
                 logon_timeout_s: int = 10, prefix: str = "HB", max_orders: int = 1 << 20,
                 batch_rows: int = 4096, file_log: bool = False, username_env: str = "FIX_USERNAME",
                 password_env: str = "FIX_PASSWORD"):
        if not (len(date) == 8 and date.isdigit()):
            raise FixError(f"bridge.session_date must be YYYYMMDD, got {date!r}")
        if not prefix.isalnum():
            raise FixError(f"bridge.clordid_prefix must be letters and digits, got {prefix!r}")
        self.host, self.port = host, int(port)
        self.sender, self.target = sender, target
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.sym = sym
        self.heartbeat_s, self.reconnect_s, self.logon_timeout_s = heartbeat_s, reconnect_s, logon_timeout_s
        self.file_log = file_log
        self.username_env, self.password_env = username_env, password_env
        self.epoch = next_epoch(self.state_dir)
        self.prefix_str = f"{prefix}{self.epoch}"
        self.prefix = np.frombuffer(self.prefix_str.encode(), np.uint8).copy()
        self.date = np.frombuffer(date.encode(), np.uint8).copy()
        self.sender_b = np.frombuffer(sender.encode(), np.uint8).copy()
        self.target_b = np.frombuffer(target.encode(), np.uint8).copy()
        self.max_orders = int(max_orders)
        self.ot = np.zeros((self.max_orders, C.NO), np.int64)
        self.msg_ids = np.zeros(self.max_orders, np.int64)
        cap = 1
        while cap < 2 * self.max_orders:
            cap <<= 1
        self.msg_of = np.zeros((cap, 2), np.int64)
        self.batch_rows = int(batch_rows)
        self.out = np.zeros(self.batch_rows * C.MAX_MSG, np.uint8)
        self.offs = np.zeros(self.batch_rows + 1, np.int64)
        self.cnt = np.zeros(C.N_COUNTERS, np.int64)
        self.bad = np.zeros((64, 3), np.int64)
        self.n_msgs = 0                    # message numbers used (ClOrdID prefix-1 .. prefix-n_msgs)
        self._logged_illegal = 0
        # inbound raw application messages, parsed after every poll
        self._in = bytearray()
        self._in_starts: list[int] = []
        self._in_ends: list[int] = []
        self._ex = np.zeros((1024, IN.NE), np.int64)
        self._fills = np.zeros((1024, 4), np.int64)
        self._session_events: list[np.ndarray] = []
        self.fills: list[np.ndarray] = []
        self.backlog: list[np.ndarray] = []  # rows that could not go out (session down)
        self.callback_errors = 0
        self.session_rejects = 0
        self.business_rejects = 0
        self._refused: list[tuple[int, str]] = []
        self.logons = 0
        self.logouts = 0
        self.resent = 0
        self.fd = -1
        self._stale: set[str] = set()   # sockets of earlier connections (never written to again)
        self._seq_next = 0
        self.logged_on = False
        self._relogon = False
        self.sid = None
        self.session = None
        self.initiator = None
        #: the encoder's tables as one pointer table for ``codec.send_orders`` (the arrays above are
        #: allocated once and live as long as the bridge); its T_LAST_WRITE slot is ``last_write_ns``
        self._table = C.fix_table(self.arrays())
        #: held by whoever drives QuickFIX or writes to the socket (the run loop, or the keepalive
        #: thread while the run loop is busy elsewhere): never two writers, never a sequence
        #: number handed out twice
        self.lock = threading.RLock()
        self._last_poll = time.monotonic()
        self._keepalive: threading.Thread | None = None
        self._keepalive_stop = threading.Event()
        self.keepalive_polls = 0
        self._warm = False

    # -- lifecycle ----------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the compiled codec (from numba's cache) and fault in the order tables' pages
        (``kernels/memory.py``) before the first order needs them."""
        from kernels.memory import prefault

        rows = np.zeros((0, IN.NI), np.int64)
        C.encode_orders(0, rows, 1, time.time_ns(), 1, self.arrays())
        C.send_orders(0, rows, 1, 1, -1, self._table)
        empty = np.zeros(1, np.int64)
        # the inbound buffer is a read-only view of bytes (``_parse``): the same type here
        C.parse_reports(np.frombuffer(b"\0", np.uint8), empty, empty, 0, self.prefix, self.ot, 0, self._ex,
                        self.cnt, self.bad, self._fills)
        prefault(self.ot, self.msg_ids, self.msg_of, self.out, self.offs)
        self._warm = True

    def start(self, wait: bool = True) -> None:
        fix = _import_quickfix()
        if not self._warm:
            self.warm_up()
        text = session_settings(role="initiator", host=self.host, port=self.port, sender=self.sender,
                                target=self.target, heartbeat_s=self.heartbeat_s, state_dir=self.state_dir,
                                reconnect_s=self.reconnect_s, logon_timeout_s=self.logon_timeout_s,
                                file_log=self.file_log)
        path = self.state_dir / "initiator.cfg"
        path.write_text(text)
        settings = fix.SessionSettings(str(path))
        self._app = _App.make(self)
        self._store = fix.FileStoreFactory(settings)
        self._logf = fix.FileLogFactory(settings) if self.file_log else None
        args = (self._app, self._store, settings) + ((self._logf,) if self._logf is not None else ())
        self.initiator = fix.SocketInitiator(*args)
        if wait:
            self.wait_logon(self.logon_timeout_s)

    def wait_logon(self, timeout_s: float) -> None:
        t_end = time.monotonic() + timeout_s
        while not self.logged_on and time.monotonic() < t_end:
            self.initiator.poll(0.01)   # session events stay queued for the next poll()
        if not self.logged_on:
            raise FixError(f"no FIX logon to {self.host}:{self.port} as {self.sender}->{self.target} within "
                           f"{timeout_s:g} s (is the venue running? bridge.port / venue.port)")

    def stop(self, timeout_s: float = 2.0) -> None:
        """Log out and stop the initiator (always: QuickFIX segfaults at exit otherwise)."""
        self.stop_keepalive()
        if self.initiator is None:
            return
        with self.lock:
            self._stop(timeout_s)

    def _stop(self, timeout_s: float) -> None:
        try:
            self._sync_seq()
            if self.session is not None and self.logged_on:
                self.session.logout("end of run")
                t_end = time.monotonic() + timeout_s
                while self.logged_on and time.monotonic() < t_end:
                    self.initiator.poll(0.01)
        finally:
            self.initiator.stop(True)
            self.initiator = None
            self.fd = -1
            self.logged_on = False

    # -- keepalive: heartbeats while the run loop is busy ---------------------------------------------
    def start_keepalive(self, every_s: float | None = None) -> None:
        """A thread that drives QuickFIX (heartbeats, test requests, logon) whenever the run loop
        has not polled for ``every_s`` (default: a tenth of the heartbeat interval, at most 1 s):
        a long batch, a compile or a paced wait never drops the session. It takes ``lock``, so it
        never writes while the run loop does; inbound reports stay queued for the next ``poll``."""
        if self._keepalive is not None:
            return
        every = float(every_s) if every_s else min(1.0, max(0.05, self.heartbeat_s / 10))
        self._keepalive_stop.clear()

        def loop() -> None:
            while not self._keepalive_stop.wait(every / 2):
                self.keepalive(every)

        self._keepalive = threading.Thread(target=loop, name="hftbot-fix-keepalive", daemon=True)
        self._keepalive.start()

    def stop_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive_stop.set()
            self._keepalive.join(5.0)
            self._keepalive = None

    def keepalive(self, max_idle_s: float) -> bool:
        """Drive QuickFIX once if nobody did for ``max_idle_s`` and the lock is free; True if it did."""
        if self.initiator is None or time.monotonic() - self._last_poll < max_idle_s:
            return False
        if not self.lock.acquire(blocking=False):
            return False
        try:
            if self.initiator is None:
                return False
            self._sync_seq()
            self.initiator.poll(0.0)
            self._last_poll = time.monotonic()
            self.keepalive_polls += 1
            return True
        except Exception as exc:  # noqa: BLE001 - a keepalive thread never dies on an error
            log.warning("FIX keepalive poll failed: %r", exc)
            return False
        finally:
            self.lock.release()

    def __enter__(self) -> "FixBridge":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- callbacks (never raise: see the module docstring) -----------------------------------------
    def _guard(self, fn, *args) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - nothing may cross into QuickFIX's C++
            self.callback_errors += 1
            log.error("FIX callback %s failed: %r", getattr(fn, "__name__", fn), exc)

    def _on_create(self, sid) -> None:
        fix = _import_quickfix()
        self.sid = sid
        self.session = fix.Session.lookupSession(sid)

    def _on_logon(self, sid) -> None:
        self.logged_on = True
        self.logons += 1
        self._relogon = self.logons > 1
        self.fd, inode = _find_socket(self.host, self.port, self._stale)
        self._stale.add(inode)
        if self.fd < 0:
            log.error("logged on but the session's socket was not found; orders cannot be sent")
        self._session_events.append(IN.exec_event(IN.EX_CONNECT, ts=self._feed_now()))
        log.info("FIX logon %s -> %s (fd %d)", self.sender, self.target, self.fd)

    def _on_logout(self, sid) -> None:
        was = self.logged_on
        self.logged_on = False
        self.fd = -1
        self.logouts += 1
        if was:
            self._session_events.append(IN.exec_event(IN.EX_DISCONNECT, ts=self._feed_now()))
        log.info("FIX logout %s -> %s", self.sender, self.target)

    def _to_admin(self, msg) -> None:
        fix = _import_quickfix()
        if msg.getHeader().getField(35) == fix.MsgType_Logon:
            user = os.environ.get(self.username_env, "")
            pw = os.environ.get(self.password_env, "")
            if user:
                msg.setField(553, user)
            if pw:
                msg.setField(554, pw)

    def _from_admin(self, msg) -> None:
        if msg.getHeader().getField(35) == "3":
            self.session_rejects += 1
            ref = int(msg.getField(45)) if msg.isSetField(45) else -1
            self._refused.append((ref, ""))
            log.warning("session-level Reject from the venue: %s", msg.toString().replace("\x01", "|"))

    def _from_app(self, msg) -> None:
        if msg.getHeader().getField(35) == "j":   # BusinessMessageReject: the venue refused a request
            self.business_rejects += 1
            ref = int(msg.getField(45)) if msg.isSetField(45) else -1
            self._refused.append((ref, msg.getField(379) if msg.isSetField(379) else ""))
            log.warning("BusinessMessageReject from the venue: %s", msg.toString().replace("\x01", "|"))
            return
        raw = msg.toString().encode("ascii", "replace")
        a = len(self._in)
        self._in += raw
        self._in_starts.append(a)
        self._in_ends.append(len(self._in))

    # -- clocks -------------------------------------------------------------------------------------
    def _feed_now(self) -> int:
        return int(self.ot[self.n_msgs - 1, C.O_T_FEED]) if self.n_msgs else 0

    # -- hot path -----------------------------------------------------------------------------------
    @property
    def last_write_ns(self) -> int:
        """perf_counter_ns when the last batch's bytes were written (tick-to-trade)."""
        return int(self._table[C.T_LAST_WRITE])

    @last_write_ns.setter
    def last_write_ns(self, ns: int) -> None:
        self._table[C.T_LAST_WRITE] = ns

    def send(self, rows: np.ndarray, n: int | None = None) -> int:
        """Encode and write ``n`` orders-out rows. Returns the messages written. While the session
        is down the rows wait in ``backlog`` and go out after the next logon.

        One compiled call per chunk of ``batch_rows`` (``codec.send_orders``: encode, wall clock,
        write(2)); the Python around it is kept to a few attribute reads (a single order's host
        cost is the figure of ``bench/fix.py``)."""
        if rows.__class__ is not np.ndarray or rows.dtype is not _I64 or rows.ndim != 2 or rows.shape[1] != IN.NI:
            rows = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1, IN.NI)
        m = rows.shape[0]
        n = m if n is None or n > m else int(n)
        if n <= 0:
            return 0
        with self.lock:
            if not self.logged_on or self.fd < 0:
                self.backlog.append(rows[:n].copy())
                return 0
            if n <= self.batch_rows:
                return self._send_chunk(rows, n)
            sent = 0
            for lo in range(0, n, self.batch_rows):
                sent += self._send_chunk(rows[lo:], min(self.batch_rows, n - lo))
            return sent

    def _send_chunk(self, rows: np.ndarray, m: int) -> int:
        """Encode and write the first ``m`` (<= ``batch_rows``) of ``rows``."""
        if self.n_msgs + m > self.max_orders:
            raise FixError(f"bridge.max_orders ({self.max_orders:,}) messages used up; raise it")
        seq0 = self._seq_next or int(self.session.getExpectedSenderNum())   # next_seq()
        r = C.send_orders(m, rows, seq0, self.n_msgs + 1, self.fd, self._table)
        k = r & 0xFFFFFFFF
        if k:
            self._seq_next = seq0 + k
            self.n_msgs += k
        if r >> 32:
            t = self._table
            if (r >> 32) & C.SEND_SHORT:   # EAGAIN, EINTR or a dropped connection: as _write decides
                self._write(memoryview(self.out)[int(t[C.T_WRITTEN]):int(t[C.T_NBYTES])])
                self.last_write_ns = time.perf_counter_ns()
            if (r >> 32) & C.SEND_ILLEGAL:
                self._log_illegal()
        return k

    def _sync_seq(self) -> None:
        """Hand QuickFIX the next sender sequence number after our direct writes (persisted by
        its FileStore: 2-3 µs, so once per poll rather than once per send). QuickFIX only sends
        inside ``poll`` / ``stop`` / the resend path, which all call this first."""
        if self._seq_next and self.session is not None:
            self.session.setNextSenderMsgSeqNum(self._seq_next)
        self._seq_next = 0

    def _write(self, data: memoryview) -> None:
        off = 0
        while off < len(data):
            try:
                off += os.write(self.fd, data[off:])
            except BlockingIOError:
                select.select([], [self.fd], [], 1.0)
            except OSError as exc:
                # the connection dropped mid-write: the session layer notices on the next poll;
                # the unacknowledged requests are re-sent after the next logon (PossResend)
                log.warning("FIX write failed after %d of %d bytes: %s", off, len(data), exc)
                return

    # -- inbound ------------------------------------------------------------------------------------
    def poll(self, timeout_s: float = 0.0) -> np.ndarray:
        """Run QuickFIX for up to ``timeout_s`` (inbound messages, timers, reconnects) and return
        the execution events that arrived (int64 ``[n, NE]``: fills, acks, cancels, connect /
        disconnect) for ``RiskStage.on_exec``."""
        if self.initiator is None:
            return np.zeros((0, IN.NE), np.int64)
        with self.lock:
            return self._poll(timeout_s)

    def _poll(self, timeout_s: float) -> np.ndarray:
        self._sync_seq()
        self.initiator.poll(float(timeout_s))
        self._last_poll = time.monotonic()
        out = []
        if self._session_events:
            out.extend(self._session_events)
            self._session_events.clear()
        ev = self._parse()
        if ev.shape[0]:
            out.append(ev)
        if self._refused:
            out.extend(self._apply_refused())
        if self.logged_on and (self._relogon or self.backlog):
            self._relogon = False
            self._after_logon()
        if not out:
            return np.zeros((0, IN.NE), np.int64)
        return np.vstack([o.reshape(-1, IN.NE) for o in out])

    def _parse(self) -> np.ndarray:
        n = len(self._in_starts)
        if n == 0:
            return np.zeros((0, IN.NE), np.int64)
        buf = np.frombuffer(bytes(self._in), np.uint8)
        starts = np.asarray(self._in_starts, np.int64)
        ends = np.asarray(self._in_ends, np.int64)
        self._in.clear()
        self._in_starts.clear()
        self._in_ends.clear()
        if self._ex.shape[0] < n:
            self._ex = np.zeros((2 * n, IN.NE), np.int64)
            self._fills = np.zeros((2 * n, 4), np.int64)
        ne, nf = C.parse_reports(buf, starts, ends, n, self.prefix, self.ot, self.n_msgs, self._ex, self.cnt,
                                 self.bad, self._fills)
        if nf:
            self.fills.append(self._fills[:nf].copy())
        self._log_illegal()
        return self._ex[:ne].copy()

    def _apply_refused(self) -> list[np.ndarray]:
        """Requests the counterparty refused at the session layer (35=3, by RefSeqNum) or with a
        BusinessMessageReject (35=j, by RefSeqNum or BusinessRejectRefID = ClOrdID): the order
        state goes to rejected and risk gets the same event as for a venue reject."""
        out = []
        refused, self._refused = self._refused, []
        n = self.n_msgs
        for ref, clid in refused:
            r = -1
            if clid.startswith(self.prefix_str + "-") and clid[len(self.prefix_str) + 1:].isdigit():
                r = int(clid[len(self.prefix_str) + 1:]) - 1
            elif ref > 0 and n:
                hit = np.flatnonzero(self.ot[:n, C.O_SEQ] == ref)
                r = int(hit[-1]) if hit.size else -1
            if not 0 <= r < n or self.ot[r, C.O_ACKED]:
                continue   # an admin message of ours, or a request already answered
            self.ot[r, C.O_ACKED] += 1
            self.ot[r, C.O_REJ] = C.REJ_SESSION
            C.order_event(self.ot, r, C.ST_REJECTED, self.cnt, self.bad)
            kind = int(self.ot[r, C.O_KIND])
            ts = int(self.ot[r, C.O_T_FEED])
            if kind == IN.KIND_NEW:
                out.append(IN.exec_event(IN.EX_REJECT, id=int(self.ot[r, C.O_ID]), ts=ts))
            else:
                o = int(self.ot[r, C.O_ORIG_MSG]) - 1
                if o >= 0 and int(self.ot[o, C.O_STATE]) in (C.ST_PENDING_CANCEL, C.ST_PENDING_REPLACE):
                    C.order_event(self.ot, o, C._live_state(self.ot, o), self.cnt, self.bad)
                if kind == IN.KIND_REPLACE:
                    out.append(IN.exec_event(IN.EX_REPLACE_REJECT, id=int(self.ot[r, C.O_ID]), ts=ts))
                elif o >= 0:
                    out.append(IN.exec_event(IN.EX_CANCEL_REJECT, id=int(self.ot[o, C.O_ID]), ts=ts))
        self._log_illegal()
        return out

    def _after_logon(self) -> None:
        """Re-send what is unacknowledged (PossResend) and what waited while the session was down."""
        if self.n_msgs:
            st = self.ot[:self.n_msgs, C.O_STATE]
            acked = self.ot[:self.n_msgs, C.O_ACKED]
            pend = np.flatnonzero(((st == C.ST_PENDING_NEW) | (st == C.ST_PENDING_CANCEL)
                                   | (st == C.ST_PENDING_REPLACE)) & (acked == 0))
            # a pending_cancel / pending_replace order row is the target of a request; only the
            # request rows (their own kind) are re-sent
            pend = [int(r) for r in pend if self._is_request_row(int(r))]
            if pend:
                self._resend(pend)
        if self.backlog:
            rows = np.vstack(self.backlog)
            self.backlog.clear()
            self.send(rows)

    def _is_request_row(self, r: int) -> bool:
        kind = int(self.ot[r, C.O_KIND])
        st = int(self.ot[r, C.O_STATE])
        return ((kind == IN.KIND_NEW and st == C.ST_PENDING_NEW)
                or (kind == IN.KIND_CANCEL and st == C.ST_PENDING_CANCEL)
                or (kind == IN.KIND_REPLACE and st == C.ST_PENDING_REPLACE))

    def _resend(self, rows_idx: list[int]) -> None:
        """Re-send unacknowledged requests with their own ClOrdIDs and PossResend=Y (through
        QuickFIX: a recovery path, not the hot path)."""
        fix = _import_quickfix()
        self._sync_seq()
        for r in rows_idx:
            o = self.ot[r]
            kind = int(o[C.O_KIND])
            msg = fix.Message()
            hdr = msg.getHeader()
            hdr.setField(35, {IN.KIND_NEW: "D", IN.KIND_CANCEL: "F", IN.KIND_REPLACE: "G"}[kind])
            hdr.setField(97, "Y")
            msg.setField(11, f"{self.prefix_str}-{r + 1}")
            if kind != IN.KIND_NEW:
                msg.setField(41, f"{self.prefix_str}-{int(o[C.O_ORIG_MSG])}")
            if kind != IN.KIND_CANCEL:
                msg.setField(21, "1")
                msg.setField(40, "2")
                px = int(o[C.O_PRICE])
                msg.setField(44, f"{px // 10000}.{px % 10000:04d}")
                msg.setField(59, "3" if int(o[C.O_TIF]) == IN.TIF_IOC else "0")
            if int(o[C.O_QTY]) > 0:
                msg.setField(38, str(int(o[C.O_QTY])))
            msg.setField(54, "1" if int(o[C.O_SIDE]) == IN.SIDE_BUY else "2")
            msg.setField(55, self.symbol(int(o[C.O_LOCATE])))
            ns = int(o[C.O_T_FEED])
            d = bytes(self.date).decode()
            s, f = divmod(max(ns, 0), 1_000_000_000)
            msg.setField(60, f"{d}-{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{f:09d}")
            self.session.send(msg)
            self.resent += 1
        log.info("re-sent %d unacknowledged requests with PossResend=Y", len(rows_idx))

    def symbol(self, locate: int) -> str:
        if 0 <= locate < self.sym.shape[0]:
            v = int(np.int64(self.sym[locate, C.S_STOCK]).astype(np.uint64))
            return unpack_ascii(v, 8).rstrip(" \x00") or "?"
        return "?"

    def _log_illegal(self) -> None:
        n = int(self.cnt[C.C_ILLEGAL])
        while self._logged_illegal < n:
            r, a, b = (int(x) for x in self.bad[self._logged_illegal % self.bad.shape[0]])
            log.warning("order state: refused %s -> %s for ClOrdID %s-%d", C.STATE_NAMES[a], C.STATE_NAMES[b],
                        self.prefix_str, r)
            self._logged_illegal += 1

    # -- reporting ------------------------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        c = self.cnt
        st = self.ot[:self.n_msgs, C.O_STATE]
        kinds = self.ot[:self.n_msgs, C.O_KIND]
        new = kinds == IN.KIND_NEW
        return {
            "messages_sent": self.n_msgs,
            "new_sent": int(c[C.C_SENT_NEW]),
            "cancel_sent": int(c[C.C_SENT_CANCEL]),
            "replace_sent": int(c[C.C_SENT_REPLACE]),
            "orders_filled": int(((st == C.ST_FILLED) & new).sum()),
            "orders_partially_filled": int(((st == C.ST_PARTIAL) & new).sum()),
            "orders_cancelled": int(((st == C.ST_CANCELLED) & new).sum()),
            "orders_rejected": int(((st == C.ST_REJECTED) & new).sum()),
            "orders_working": int((((st == C.ST_NEW) | (st == C.ST_PENDING_NEW)) & new).sum()),
            "requests_rejected": int(((st == C.ST_REJECTED) & ~new).sum()),
            "reports": int(c[C.C_REPORTS]),
            "duplicate_reports": int(c[C.C_DUP_REPORT]),
            "bad_reports": int(c[C.C_BAD_REPORT]),
            "unknown_clordid": int(c[C.C_UNKNOWN_CLORDID]),
            "bad_rows": int(c[C.C_BAD_ROW]),
            "illegal_transitions": int(c[C.C_ILLEGAL]),
            "session_rejects": self.session_rejects,
            "business_rejects": self.business_rejects,
            "callback_errors": self.callback_errors,
            "logons": self.logons,
            "logouts": self.logouts,
            "keepalive_polls": self.keepalive_polls,
            "resent_possresend": self.resent,
            "backlog_rows": int(sum(len(b) for b in self.backlog)),
        }

    def fill_table(self) -> np.ndarray:
        """Every fill received: int64 [n, 4] (message number, qty, price, feed ts)."""
        return np.vstack(self.fills) if self.fills else np.zeros((0, 4), np.int64)

    # -- for compiled senders that encode and write themselves (pipeline/tick.py) -------------------
    def arrays(self) -> FixArrays:
        """The encoder's tables as a ``kernels.state.FixArrays`` bundle (``encode_orders``'s
        ``fix``; the sender passes ``seq0``, ``wall_ns`` and ``msg0`` itself)."""
        return FixArrays(self.sym, self.date, self.sender_b, self.target_b, self.prefix, self.msg_ids,
                         self.msg_of, self.ot, self.out, self.offs, self.cnt, self.bad)

    def next_seq(self) -> int:
        """MsgSeqNum of the next message this bridge writes."""
        return self._seq_next or int(self.session.getExpectedSenderNum())

    def commit_sent(self, seq_next: int, n_msgs: int) -> None:
        """Record ``n_msgs`` messages encoded into ``out``/``ot`` and written by someone else
        (sequence numbers up to ``seq_next - 1`` used), as ``send`` does after its own write."""
        if n_msgs:
            self._seq_next = int(seq_next)
            self.n_msgs += int(n_msgs)
            self.last_write_ns = time.perf_counter_ns()

    def write(self, data) -> None:
        """Write bytes already encoded (a message tail a compiled sender could not finish) to the
        session's socket, as ``send`` writes (a dropped connection is left to the session layer)."""
        self._write(memoryview(data))
