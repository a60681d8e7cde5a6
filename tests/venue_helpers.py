"""Test helpers for the venue simulator: a plain QuickFIX initiator, a raw FIX socket client,
message builders and a polling wait (a failure guard, never a timed assertion)."""

from __future__ import annotations

import datetime as dt
import queue
import socket
import threading
import time
from pathlib import Path
from typing import Callable

import quickfix as fix

from replay.venue.app import default_data_dictionary, format_transact_time
from replay.venue.matching import format_price

SOH = "\x01"
DATE = dt.date(2026, 11, 2)


def wait_for(cond: Callable[[], bool], timeout_s: float = 30.0, what: str = "condition", poll_s: float = 0.01):
    """Poll until ``cond()`` is true; fail with ``what`` after ``timeout_s`` (a hang guard)."""
    deadline = time.monotonic() + timeout_s
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(poll_s)


def parse(raw: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for part in raw.split(SOH):
        if part:
            t, _, v = part.partition("=")
            out.setdefault(int(t), v)
    return out


def new_order(clid: str, symbol: str, side: int, qty: int, price: int, ts_ns: int, tif: str = "0",
              ord_type: str = "2") -> fix.Message:
    m = fix.Message()
    m.getHeader().setField(35, "D")
    m.setField(11, clid)
    m.setField(21, "1")
    m.setField(55, symbol)
    m.setField(54, "1" if side == 0 else "2")
    m.setField(60, format_transact_time(ts_ns, DATE))
    m.setField(38, str(qty))
    m.setField(40, ord_type)
    m.setField(44, format_price(price))
    m.setField(59, tif)
    return m


def cancel(clid: str, orig: str, symbol: str, side: int, qty: int, ts_ns: int) -> fix.Message:
    m = fix.Message()
    m.getHeader().setField(35, "F")
    m.setField(11, clid)
    m.setField(41, orig)
    m.setField(55, symbol)
    m.setField(54, "1" if side == 0 else "2")
    m.setField(60, format_transact_time(ts_ns, DATE))
    m.setField(38, str(qty))
    return m


def replace(clid: str, orig: str, symbol: str, side: int, qty: int, price: int, ts_ns: int,
            tif: str = "0") -> fix.Message:
    m = fix.Message()
    m.getHeader().setField(35, "G")
    m.setField(11, clid)
    m.setField(41, orig)
    m.setField(21, "1")
    m.setField(55, symbol)
    m.setField(54, "1" if side == 0 else "2")
    m.setField(60, format_transact_time(ts_ns, DATE))
    m.setField(38, str(qty))
    m.setField(40, "2")
    m.setField(44, format_price(price))
    m.setField(59, tif)
    return m


class _App(fix.Application):
    def __init__(self):
        super().__init__()
        self.received: "queue.Queue[str]" = queue.Queue()
        self.admin: list[str] = []
        self.logons = 0
        self.logged_on = threading.Event()
        self.errors: list[str] = []

    def onCreate(self, sid):
        return

    def onLogon(self, sid):
        try:
            self.logons += 1
            self.logged_on.set()
        except BaseException as exc:  # noqa: BLE001 - nothing may leave a callback
            self.errors.append(repr(exc))

    def onLogout(self, sid):
        try:
            self.logged_on.clear()
        except BaseException as exc:  # noqa: BLE001
            self.errors.append(repr(exc))

    def toAdmin(self, message, sid):
        return

    def fromAdmin(self, message, sid):
        try:
            self.admin.append(message.toString())
        except BaseException as exc:  # noqa: BLE001
            self.errors.append(repr(exc))

    def toApp(self, message, sid):
        return

    def fromApp(self, message, sid):
        try:
            self.received.put(message.toString())
        except BaseException as exc:  # noqa: BLE001
            self.errors.append(repr(exc))


class Initiator:
    """A plain QuickFIX initiator (HFTBOT -> VENUE) with a FileStore, reconnecting every second."""

    def __init__(self, port: int, state_dir: Path, sender: str = "HFTBOT", target: str = "VENUE"):
        state_dir.mkdir(parents=True, exist_ok=True)
        cfg = state_dir / "initiator.cfg"
        cfg.write_text("\n".join([
            "[DEFAULT]", "ConnectionType=initiator", "SocketConnectHost=127.0.0.1", f"SocketConnectPort={port}",
            f"FileStorePath={state_dir / 'store'}", "StartTime=00:00:00", "EndTime=00:00:00", "HeartBtInt=30",
            "ReconnectInterval=1", "UseDataDictionary=Y", f"DataDictionary={default_data_dictionary()}",
            "ResetOnLogon=N", "", "[SESSION]", "BeginString=FIX.4.4", f"SenderCompID={sender}",
            f"TargetCompID={target}", ""]))
        self.sid = fix.SessionID("FIX.4.4", sender, target)
        self.app = _App()
        self.settings = fix.SessionSettings(str(cfg))
        self.store = fix.FileStoreFactory(self.settings)
        self.init = fix.SocketInitiator(self.app, self.store, self.settings)
        self.messages: list[dict[int, str]] = []
        self.started = False

    def start(self) -> "Initiator":
        self.init.start()
        self.started = True
        return self

    def wait_logon(self, timeout_s: float = 30.0) -> None:
        if not self.app.logged_on.wait(timeout_s):
            raise AssertionError(f"initiator did not log on within {timeout_s:.0f}s")

    def send(self, msg: fix.Message) -> bool:
        return fix.Session.sendToTarget(msg, self.sid)

    def drain(self) -> list[dict[int, str]]:
        while True:
            try:
                self.messages.append(parse(self.app.received.get_nowait()))
            except queue.Empty:
                return self.messages

    def stop(self) -> None:
        if self.started:
            self.started = False
            self.init.stop(True)


class RawClient:
    """A raw FIX 4.4 socket client (for malformed input): sends bytes, reads framed messages."""

    def __init__(self, port: int, sender: str = "HFTBOT", target: str = "VENUE"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sender, self.target = sender, target
        self.seq = 0
        self.buf = b""

    @staticmethod
    def frame(body: str) -> bytes:
        head = "8=FIX.4.4" + SOH
        msg = head + f"9={len(body.encode('latin-1'))}" + SOH + body
        return (msg + f"10={sum(msg.encode('latin-1')) % 256:03d}" + SOH).encode("latin-1")

    def header(self, msg_type: str, seq: int | None = None) -> str:
        if seq is None:
            self.seq += 1
            seq = self.seq
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]
        return f"35={msg_type}{SOH}34={seq}{SOH}49={self.sender}{SOH}52={now}{SOH}56={self.target}{SOH}"

    def send_body(self, msg_type: str, body: str) -> None:
        self.sock.sendall(self.frame(self.header(msg_type) + body))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def logon(self) -> dict[int, str]:
        self.send_body("A", f"98=0{SOH}108=30{SOH}141=Y{SOH}")
        return self.read()

    def read(self, timeout_s: float = 10.0) -> dict[int, str]:
        deadline = time.monotonic() + timeout_s
        while True:
            i = self.buf.find(b"\x0110=")
            if i >= 0 and len(self.buf) >= i + 8:
                end = i + 8
                msg, self.buf = self.buf[:end], self.buf[end:]
                return parse(msg.decode("latin-1"))
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no message from the venue")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the venue closed the connection")
            self.buf += data

    def close(self) -> None:
        self.sock.close()
