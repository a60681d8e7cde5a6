"""A runner for QuickFIX's acceptance-test definitions (``.def`` scripts) against an acceptor.

It plays the test initiator TW44 the way upstream's Ruby runner does (``test/Runner.rb``,
``Reflector.rb``, ``Comparator.rb``; format in ``../shared/data/quickfix/SOURCE.md``):

- ``#...`` comments and blank lines are skipped;
- ``iCONNECT`` / ``iDISCONNECT`` open / close a TCP connection; ``eDISCONNECT`` waits for the
  engine to drop it (data instead of EOF, or nothing within the timeout, fails);
  ``eCONNECT`` is accepted and ignored (server definitions never need it);
- ``I<msg>`` sends ``<msg>`` after replacing ``<TIME>``, ``<TIME+n>``, ``<TIME-n>`` with the UTC
  time (``YYYYMMDD-HH:MM:SS``) and adding BodyLength (9) and CheckSum (10) when absent;
- ``E<msg>`` reads the next message and compares it field by field: same number of fields,
  same tags in the same order, values equal, except tags with a pattern in ``fields.fmt``
  (10, 42, 52, 60, 122) whose received value must match the pattern;
- ``I1,`` / ``E2,`` / ``i2,CONNECT`` select a connection for multi-connection scripts.

``python -m replay.venue.acceptance DIR_OR_FILES... --port P`` runs definitions against a running
acceptor; ``--fresh`` starts a fresh venue acceptor (``--app acceptance``) for each one instead.

Two profiles of the engine under test. ``at`` (default): upstream's at_application, which echoes
application messages back. ``venue``: the exchange itself (``--app venue``, e.g. free-running with
``--clock wall``), which answers them as an exchange does; see :func:`venue_compare`. The session
layer (logon, sequence numbers, resends, gap fills, rejects, heartbeats, logout) is compared
exactly as in the ``at`` profile.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SOH = "\x01"

#: definitions of the FIX 4.4 server suite that do not apply to this venue, with the reason
#: (``tests/test_acceptance.py`` reads this; everything else must pass)
NOT_APPLICABLE: dict[str, str] = {}

#: definitions to run first against one venue (``--profile venue``): 19b sends a PossResend of
#: ClOrdID "id" expecting it processed as unseen; 19a uses "id" too, and the venue, like an
#: exchange, remembers ClOrdIDs for the trading day, whatever the FIX session
VENUE_FIRST: set[str] = {"19b_PossResendMessageThatHasNotBeenSent"}

#: definitions that wait for heartbeat or test-request intervals (seconds of wall time)
SLOW: set[str] = {"4a_NoDataSentDuringHeartBtInt", "6_SendTestRequest"}

DEFAULT_PATTERNS = {10: r"\d{1,3}", 52: r"\d{8}-\d{2}:\d{2}:\d{2}"}


class DefinitionError(AssertionError):
    """A definition failed: the message says at which line, why, and shows both messages."""


def load_patterns(fields_fmt: str | Path | None) -> dict[int, re.Pattern]:
    """``fields.fmt``: one ``tag=regex`` a line (upstream's defaults when the file is absent)."""
    raw: dict[int, str] = dict(DEFAULT_PATTERNS)
    if fields_fmt is not None and Path(fields_fmt).is_file():
        raw = {}
        for line in Path(fields_fmt).read_text().splitlines():
            if not line.strip():
                continue
            tag, _, rx = line.partition("=")
            raw[int(tag)] = rx
    return {t: re.compile(rx) for t, rx in raw.items()}


def timify(text: str, now: dt.datetime | None = None) -> str:
    """Replace ``<TIME>``, ``<TIME+n>`` and ``<TIME-n>`` with UTC times (``YYYYMMDD-HH:MM:SS``)."""
    now = now or dt.datetime.now(dt.timezone.utc)

    def sub(m: re.Match) -> str:
        t = now
        if m.group(1):
            t = now + dt.timedelta(seconds=int(m.group(1)))
        return t.strftime("%Y%m%d-%H:%M:%S")

    return re.sub(r"<TIME([+-]\d+)?>", sub, text)


def fixify(message: str) -> str:
    """Add BodyLength (9) and CheckSum (10) when the script leaves them out (as Reflector.rb)."""
    if not message.startswith("8="):
        return message
    head, sep, rest = message.partition(SOH)
    head += sep
    has_length = re.search(r"\x019=.*?\x01", message) is not None
    m = re.search(r"\x0110=.*\x01$", SOH + rest)
    checksum = None
    if m is not None:
        checksum = (SOH + rest)[m.start() + 1:]
        rest = (SOH + rest)[1:m.start() + 1]
    rest = rest.rstrip("\n")
    length = "" if has_length else f"9={len(rest.encode('latin-1'))}{SOH}"
    if checksum is None:
        total = sum((head + length + rest).encode("latin-1")) % 256
        checksum = f"10={total:03d}{SOH}"
    return head + length + rest + checksum


def _fields(msg: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in msg.split(SOH):
        if f:
            t, _, v = f.partition("=")
            out.setdefault(t, v)
    return out


def venue_compare(expected: str, actual: str, patterns: dict[int, re.Pattern]) -> str | None:
    """``compare`` for the ``venue`` profile. The definitions expect at_application's echo of an
    application message; the venue answers as an exchange, so:

    - an expected echo of a NewOrderSingle (35=D) is met by that order's ExecutionReport (35=8,
      the same MsgSeqNum, CompIDs and ClOrdID, ExecType 0 new or 8 rejected): the order passed
      the session layer and was answered; one answer per order, so a duplicate processing shows
      up as an unexpected message at the next line;
    - an expected echo of a SecurityDefinition (35=d) is met by a BusinessMessageReject (35=j,
      RefMsgType 372=d, RefSeqNum 45 the request's): an unsupported message type, past the
      session layer.

    Every other message (all session-level ones) is compared exactly as :func:`compare` does."""
    e = _fields(expected)
    if e.get("35") not in ("D", "d"):
        return compare(expected, actual, patterns)
    a = _fields(actual)
    for tag in ("8", "34", "49", "56"):
        if a.get(tag) != e.get(tag):
            return f"value in field ({tag}) should be ({e.get(tag)}) but was ({a.get(tag)})"
    if e["35"] == "D":
        if a.get("35") != "8":
            return f"expected the order's ExecutionReport (35=8) but found (35={a.get('35')})"
        if a.get("11") != e.get("11"):
            return f"ExecutionReport for ClOrdID ({a.get('11')}), expected ({e.get('11')})"
        if a.get("150") not in ("0", "8"):
            return f"ExecutionReport ExecType ({a.get('150')}): expected 0 new or 8 rejected"
        return None
    if a.get("35") != "j" or a.get("372") != "d":
        return (f"expected a BusinessMessageReject (35=j, 372=d) but found "
                f"(35={a.get('35')}, 372={a.get('372')})")
    return None


def compare(expected: str, actual: str, patterns: dict[int, re.Pattern]) -> str | None:
    """None when ``actual`` matches ``expected`` (Comparator.rb), else the reason."""
    e = [f for f in expected.split(SOH)]
    a = [f for f in actual.split(SOH)]
    while e and e[-1] == "":
        e.pop()
    while a and a[-1] == "":
        a.pop()
    if len(e) != len(a):
        return f"number of fields does not match: expected {len(e)}, received {len(a)}"
    for ef, af in zip(e, a):
        et, _, ev = ef.partition("=")
        at, _, av = af.partition("=")
        if et != at:
            return f"expected field ({et}) but found field ({at})"
        try:
            rx = patterns.get(int(et))
        except ValueError:
            rx = None
        if rx is None:
            if ev != av:
                return f"value in field ({et}) should be ({ev}) but was ({av})"
        elif not rx.search(av):
            return f"field ({et}) value ({av}) does not match pattern /{rx.pattern}/"
    return None


class Connection:
    """One TCP connection to the engine, with FIX message framing on reads."""

    def __init__(self, host: str, port: int, timeout_s: float):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.closed = False

    def send(self, msg: str) -> None:
        self.sock.sendall(msg.encode("latin-1"))

    def _frame(self) -> bytes | None:
        b = self.buf
        start = b.find(b"8=")
        if start < 0:
            return None
        m = re.match(rb"8=[^\x01]*\x019=(\d+)\x01", b[start:])
        if m is not None:
            end = start + m.end() + int(m.group(1))
            if len(b) < end + 7:
                return None
            t = re.match(rb"10=\d{3}\x01", b[end:])
            if t is not None:
                msg = b[start:end + t.end()]
                self.buf = b[end + t.end():]
                return msg
        m2 = re.search(rb"\x0110=\d{3}\x01", b[start:])
        if m2 is None:
            return None
        msg = b[start:start + m2.end()]
        self.buf = b[start + m2.end():]
        return msg

    def read_message(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            msg = self._frame()
            if msg is not None:
                return msg.decode("latin-1")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no message within {timeout_s:.0f}s")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError(f"no message within {timeout_s:.0f}s") from None
            if not data:
                raise ConnectionError("the engine closed the connection")
            self.buf += data

    def wait_disconnect(self, timeout_s: float) -> None:
        if self.buf.strip():
            raise DefinitionError(f"expected disconnection, got data: {self.buf!r}")
        self.sock.settimeout(timeout_s)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise DefinitionError(f"connection hangs after {timeout_s:.0f} seconds") from None
        except ConnectionResetError:
            return
        if data:
            raise DefinitionError(f"expected disconnection, got data: {data.decode('latin-1')!r}")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass


@dataclass
class Result:
    name: str
    ok: bool
    seconds: float
    message: str = ""


def _show(msg: str) -> str:
    return msg.replace(SOH, "|")


PROFILES = {"at": compare, "venue": venue_compare}


def run_definition(path: str | Path, host: str, port: int, patterns: dict[int, re.Pattern], *,
                   timeout_s: float = 15.0, profile: str = "at") -> None:
    """Run one ``.def`` script against the engine at ``host:port``; raise DefinitionError on the
    first mismatch (line number, reason, expected and received messages). ``profile``: ``at``
    (upstream's echoing at_application) or ``venue`` (the exchange; :func:`venue_compare`)."""
    path = Path(path)
    cmp = PROFILES[profile]
    conns: dict[int, Connection] = {}
    try:
        for line_no, raw in enumerate(path.read_text(encoding="latin-1").splitlines(), 1):
            line = raw.rstrip("\r")
            if not line or line.startswith("#"):
                continue
            cmd = line[0]
            if cmd not in "IEie":
                raise DefinitionError(f"{path.name}:{line_no}: syntax error: {line!r}")
            m = re.match(r"^[IEie](\d),", line)
            if m:
                cid, body = int(m.group(1)), line[3:]
            else:
                cid, body = 1, line[1:]
            where = f"{path.name}:{line_no}"
            try:
                if cmd == "i":
                    if body == "CONNECT":
                        old = conns.pop(cid, None)
                        if old is not None:   # reconnect after the engine dropped it
                            old.close()
                        conns[cid] = Connection(host, port, timeout_s)
                    elif body == "DISCONNECT":
                        c = conns.pop(cid, None)
                        if c is not None:
                            c.close()
                    else:
                        raise DefinitionError(f"{where}: syntax error: {line!r}")
                elif cmd == "e":
                    if body == "DISCONNECT":
                        c = conns.get(cid)
                        if c is None:
                            raise DefinitionError(f"{where}: eDISCONNECT on connection {cid}, which is not open")
                        c.wait_disconnect(timeout_s)
                    elif body != "CONNECT":
                        raise DefinitionError(f"{where}: syntax error: {line!r}")
                elif cmd == "I":
                    c = conns.get(cid)
                    if c is None:
                        raise DefinitionError(f"{where}: unable to send: connection {cid} was dropped")
                    c.send(fixify(timify(body)))
                else:  # E
                    expected = fixify(timify(body))
                    c = conns.get(cid)
                    if c is None:
                        raise DefinitionError(f"{where}: expected a message on connection {cid}, which is not open")
                    try:
                        got = c.read_message(timeout_s)
                    except (TimeoutError, ConnectionError, OSError) as exc:
                        raise DefinitionError(f"{where}: {exc}\n  expected: {_show(expected)}") from None
                    why = cmp(expected, got, patterns)
                    if why is not None:
                        raise DefinitionError(f"{where}: {why}\n  expected: {_show(expected)}\n"
                                              f"  received: {_show(got)}")
            except (ConnectionRefusedError, BrokenPipeError, ConnectionResetError) as exc:
                raise DefinitionError(f"{where}: {exc!r} on {line!r}") from None
    finally:
        for c in conns.values():
            c.close()


def find_definitions(args: list[str]) -> list[Path]:
    out: list[Path] = []
    for a in args:
        p = Path(a)
        out.extend(sorted(p.glob("*.def")) if p.is_dir() else [p])
    return out


def fields_fmt_for(defs: list[Path]) -> Path | None:
    """``fields.fmt`` from the definitions' tree (``at-definitions/fields.fmt``)."""
    for d in defs:
        for parent in d.resolve().parents:
            f = parent / "fields.fmt"
            if f.is_file():
                return f
    return None


def run_fresh(path: Path, patterns, *, timeout_s: float = 15.0, state_root: str | None = None) -> None:
    """Run one definition against a fresh venue acceptor in the acceptance profile."""
    from replay.venue.process import VenueProcess, free_port

    with tempfile.TemporaryDirectory(dir=state_root, prefix=f"at-{path.stem}-") as d:
        v = VenueProcess(None, free_port(), d, None, app="acceptance")
        try:
            v.start()
            run_definition(path, "127.0.0.1", v.port, patterns, timeout_s=timeout_s)
            if not v.alive():
                raise DefinitionError(f"the acceptor died (status {v.proc.returncode}):\n{v.stderr_tail()}")
            if "error in " in v.stderr_tail(100_000):
                raise DefinitionError(f"an application callback failed:\n{v.stderr_tail()}")
        finally:
            # nothing to keep in a memory store: SIGKILL saves the acceptor's ~1 s stop poll
            v.kill()


def wait_sessions_closed(venue, timeout_s: float = 15.0) -> None:
    """Wait until ``venue`` (a ``VenueProcess`` with one session) is logged out: its stderr's last
    ``logon`` / ``logout`` line is a logout (a Logon with ResetSeqNumFlag inside a session logs a
    second ``logon``), so the next definition's Logon meets a closed session rather than the end
    of the previous one; a DefinitionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = venue.stderr_tail(10_000_000)
        if text.rfind(" logon ") <= text.rfind(" logout "):   # (both -1: never logged on)
            return
        if time.monotonic() > deadline:
            raise DefinitionError(f"the venue did not close the session within {timeout_s:.0f}s:\n{text[-2000:]}")
        time.sleep(0.01)


def venue_order(defs: list[Path]) -> list[Path]:
    """The order to run definitions in against one venue (``--profile venue``): the venue keeps
    ClOrdIDs for its trading day across FIX sessions (a PossResend of one it has seen is
    ignored), so the definitions in :data:`VENUE_FIRST` go first."""
    return sorted(defs, key=lambda d: (d.stem not in VENUE_FIRST, d.stem))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m replay.venue.acceptance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("defs", nargs="+", help=".def files or directories of them")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, help="a running acceptor (SenderCompID ISLD, TargetCompID TW44)")
    p.add_argument("--fresh", action="store_true", help="start a fresh venue acceptor for each definition")
    p.add_argument("--wall-venue", metavar="CAPTURE",
                   help="start one free-running venue (--clock wall) on CAPTURE as ISLD/TW44 and run the "
                        "definitions against it in the venue profile")
    p.add_argument("--fields", help="fields.fmt (default: found above the definitions)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for an expected message")
    p.add_argument("--all", action="store_true", help="also run the definitions listed as not applicable")
    p.add_argument("--profile", choices=sorted(PROFILES), default=None,
                   help="at: the engine echoes application messages (upstream at_application, --app "
                        "acceptance); venue: the exchange answers them (--app venue, e.g. --clock wall). "
                        "Default: venue with --wall-venue, else at")
    a = p.parse_args(argv)
    modes = sum(x is not None and x is not False for x in (a.port, a.fresh or None, a.wall_venue))
    if modes != 1:
        p.error("give one of --port (a running acceptor), --fresh or --wall-venue CAPTURE")
    profile = a.profile or ("venue" if a.wall_venue else "at")
    if (a.fresh and profile == "venue") or (a.wall_venue and profile == "at"):
        p.error("--fresh runs the at profile (--app acceptance), --wall-venue the venue profile")
    if a.wall_venue and not Path(a.wall_venue).is_file():
        p.error(f"--wall-venue {a.wall_venue}: no such file")
    defs = find_definitions(a.defs)
    missing = [d for d in defs if not d.is_file()]
    if missing or not defs:
        p.error(f"no definition at {missing[0] if missing else ' '.join(a.defs)}")
    if profile == "venue":
        defs = venue_order(defs)
    patterns = load_patterns(a.fields or fields_fmt_for(defs))
    venue = None
    host, port = a.host, a.port
    if a.wall_venue:
        from replay.venue.process import VenueProcess

        tmp = tempfile.TemporaryDirectory(prefix="at-wall-")
        venue = VenueProcess(a.wall_venue, 0, tmp.name, "wall", sender="ISLD", target="TW44", store="memory",
                             reset_on_logon=True)
        venue.start()
        host, port = "127.0.0.1", venue.port
    results: list[Result] = []
    try:
        for d in defs:
            if d.stem in NOT_APPLICABLE and not a.all:
                print(f"n/a   {d.stem}: {NOT_APPLICABLE[d.stem]}")
                continue
            t0 = time.perf_counter()
            try:
                if a.fresh:
                    run_fresh(d, patterns, timeout_s=a.timeout)
                else:
                    run_definition(d, host, port, patterns, timeout_s=a.timeout, profile=profile)
                    if venue is not None:
                        wait_sessions_closed(venue)
                    else:
                        time.sleep(0.1)
                r = Result(d.stem, True, time.perf_counter() - t0)
            except DefinitionError as exc:
                r = Result(d.stem, False, time.perf_counter() - t0, str(exc))
            results.append(r)
            print(f"{'pass' if r.ok else 'FAIL'}  {r.name} ({r.seconds:.1f}s)"
                  + (f"\n  {r.message}" if r.message else ""))
            sys.stdout.flush()
    finally:
        if venue is not None:
            venue.stop()
            tmp.cleanup()
    failed = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed, "
          f"{sum(1 for d in defs if d.stem in NOT_APPLICABLE and not a.all)} not applicable"
          + (f" (profile {profile}, free-running venue)" if a.wall_venue else f" (profile {profile})"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
