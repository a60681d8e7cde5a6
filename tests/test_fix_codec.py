"""The bridge's compiled FIX codec: bytes QuickFIX accepts, reports parsed into risk's events, and
the order state machine refusing impossible transitions."""

from __future__ import annotations

import numpy as np
import pytest

from bridges.fix import codec as C
from kernels import intents as IN
from kernels.events import pack_ascii
from kernels.state import FixArrays

fix = pytest.importorskip("quickfix")

PREFIX = np.frombuffer(b"HB7", np.uint8).copy()


def _u8(s: str) -> np.ndarray:
    return np.frombuffer(s.encode(), np.uint8).copy()


class Codec:
    """The bridge's arrays without a session."""

    def __init__(self, cap: int = 64):
        self.sym = np.zeros((8, 16), np.int64)
        self.sym[2, C.S_STOCK] = np.array([pack_ascii("MSFT", 8)], np.uint64).view(np.int64)[0]
        self.ot = np.zeros((cap, C.NO), np.int64)
        self.msg_ids = np.zeros(cap, np.int64)
        self.msg_of = np.zeros((2 * cap, 2), np.int64)
        self.cnt = np.zeros(C.N_COUNTERS, np.int64)
        self.bad = np.zeros((8, 3), np.int64)
        self.n_msgs = 0
        self.seq = 1

    def encode(self, rows: np.ndarray) -> list[bytes]:
        n = rows.shape[0]
        out = np.zeros(n * C.MAX_MSG, np.uint8)
        offs = np.zeros(n + 1, np.int64)
        wall = 1_764_000_000_123_456_789
        fix = FixArrays(self.sym, _u8("20190130"), _u8("HFTBOT"), _u8("VENUE"), PREFIX, self.msg_ids, self.msg_of,
                        self.ot, out, offs, self.cnt, self.bad)
        k = C.encode_orders(n, rows, self.seq, wall, self.n_msgs + 1, fix)
        self.n_msgs += k
        self.seq += k
        return [bytes(out[offs[i]:offs[i + 1]]) for i in range(n) if offs[i + 1] > offs[i]]

    def parse(self, msgs: list[str]) -> np.ndarray:
        raw = [m.replace("|", "\x01").encode() for m in msgs]
        buf = np.frombuffer(b"".join(raw) or b"\0", np.uint8)
        ends = np.cumsum([len(r) for r in raw]).astype(np.int64)
        starts = ends - np.array([len(r) for r in raw], np.int64)
        ex = np.zeros((len(raw) + 1, IN.NE), np.int64)
        fills = np.zeros((len(raw) + 1, 4), np.int64)
        ne, _ = C.parse_reports(buf, starts, ends, len(raw), PREFIX, self.ot, self.n_msgs, ex, self.cnt, self.bad,
                                fills)
        return ex[:ne]


def _dd():
    from bridges.fix.bridge import data_dictionary

    return fix.DataDictionary(str(data_dictionary()))


def test_new_order_bytes_validate_against_the_fix44_dictionary():
    c = Codec()
    rows = np.vstack([IN.intent(locate=2, side=IN.SIDE_SELL, price=3_101_500, qty=250, id=41, tif=IN.TIF_IOC,
                                ts=34_200_123_456_789)])
    (raw,) = c.encode(rows)
    text = raw.decode()
    dd = _dd()
    msg = fix.Message(text, dd, True)          # validates structure, types, body length, checksum
    assert msg.toString() == text               # QuickFIX computes the same BodyLength and CheckSum
    assert "|55=MSFT|54=2|".replace("|", "\x01") in text or "\x0154=2\x0155=MSFT\x01" in text
    assert "\x0144=310.1500\x01" in text and "\x0159=3\x01" in text and "\x0138=250\x01" in text
    assert "\x0160=20190130-09:30:00.123456789\x01" in text
    assert "\x0111=HB7-1\x01" in text and "\x0134=1\x01" in text
    assert c.ot[0, C.O_STATE] == C.ST_PENDING_NEW and c.msg_ids[0] == 41


def test_cancel_and_replace_name_the_order_by_its_clordid():
    c = Codec()
    c.encode(np.vstack([IN.intent(locate=2, price=10_000, qty=100, id=5)]))
    rows = np.vstack([
        IN.intent(IN.KIND_REPLACE, locate=2, price=10_100, qty=80, id=6, orig=5),
        IN.intent(IN.KIND_CANCEL, locate=2, qty=80, id=7, orig=6),
    ])
    rep, can = c.encode(rows)
    dd = _dd()
    for raw in (rep, can):
        fix.Message(raw.decode(), dd, True)
    assert b"\x0135=G\x01" in rep and b"\x0111=HB7-2\x01" in rep and b"\x0141=HB7-1\x01" in rep
    assert b"\x0135=F\x01" in can and b"\x0141=HB7-2\x01" in can
    assert c.ot[0, C.O_STATE] == C.ST_PENDING_REPLACE


def test_cancel_of_an_order_never_sent_is_refused_and_counted():
    c = Codec()
    out = c.encode(np.vstack([IN.intent(IN.KIND_CANCEL, locate=2, qty=1, id=9, orig=12345)]))
    assert out == [] and c.cnt[C.C_BAD_ROW] == 1 and c.n_msgs == 0


def _mask_time(raw: bytes) -> bytes:
    """A message without its SendingTime(52) value, BodyLength and CheckSum (the clock differs)."""
    import re

    return re.sub(rb"\x0110=\d{3}\x01$", b"", re.sub(rb"\x0152=[^\x01]*", b"", re.sub(rb"^8=FIX.4.4\x019=\d+", b"", raw)))


def test_send_orders_writes_what_encode_orders_encodes():
    """The one-call path (pointer table, clock and write(2) in compiled code): the same messages
    and bookkeeping as encode_orders, every byte on the socket, flags for a refused transition."""
    import socket

    rows = np.vstack([IN.intent(locate=2, price=10_000, qty=100, id=5),
                      IN.intent(IN.KIND_REPLACE, locate=2, price=10_100, qty=80, id=6, orig=5),
                      IN.intent(IN.KIND_CANCEL, locate=2, qty=80, id=7, orig=6),
                      IN.intent(IN.KIND_CANCEL, locate=2, qty=1, id=9, orig=12345)])
    want = Codec()
    expected = want.encode(rows)
    c = Codec()
    out = np.zeros(8 * C.MAX_MSG, np.uint8)
    offs = np.zeros(9, np.int64)
    bundle = FixArrays(c.sym, _u8("20190130"), _u8("HFTBOT"), _u8("VENUE"), PREFIX, c.msg_ids, c.msg_of, c.ot, out,
                       offs, c.cnt, c.bad)
    t = C.fix_table(bundle)
    a, b = socket.socketpair()
    try:
        r = C.send_orders(rows.shape[0], rows, 1, 1, a.fileno(), t)
        # the cancel of a pending replace is a refused transition, in both paths
        assert r & 0xFFFFFFFF == 3 and r >> 32 == (C.SEND_ILLEGAL if want.cnt[C.C_ILLEGAL] else 0)
        nbytes = int(t[C.T_NBYTES])
        assert t[C.T_WRITTEN] == nbytes == offs[4] and t[C.T_LAST_WRITE] > 0
        got = b.recv(1 << 16)
    finally:
        a.close()
        b.close()
    assert got == bytes(out[:nbytes])
    msgs = [bytes(out[offs[i]:offs[i + 1]]) for i in range(4) if offs[i + 1] > offs[i]]
    assert [_mask_time(m) for m in msgs] == [_mask_time(m) for m in expected]
    dd = _dd()
    for m in msgs:
        fix.Message(m.decode(), dd, True)      # BodyLength and CheckSum right with the new time
    np.testing.assert_array_equal(c.ot, want.ot)
    np.testing.assert_array_equal(c.cnt, want.cnt)
    # a write that fails (no socket) is left to the caller: flagged, nothing counted as written
    r = C.send_orders(1, np.vstack([IN.intent(locate=2, price=10_000, qty=100, id=50)]), 4, 4, -1, t)
    assert r & 0xFFFFFFFF == 1 and (r >> 32) & C.SEND_SHORT and t[C.T_WRITTEN] == 0 < t[C.T_NBYTES]
    with pytest.raises(ValueError):
        C.fix_table(bundle._replace(out=out[::2]))


def _er(clo: str, exec_type: str, status: str, *, orig: str | None = None, last: int = 0, px: str = "",
        cum: int = 0, dup: bool = False) -> str:
    f = ["8=FIX.4.4", "9=0", "35=8"] + (["43=Y"] if dup else []) + ["37=V1", f"11={clo}"]
    if orig:
        f.append(f"41={orig}")
    f += ["17=E1", f"150={exec_type}", f"39={status}", "55=MSFT", "54=1", f"14={cum}", "151=0", "6=0"]
    if last:
        f += [f"32={last}", f"31={px}"]
    f += ["60=20190130-09:30:01.000000500", "10=000"]
    return "|".join(f) + "|"


def test_reports_become_risk_events_and_move_the_state_machine():
    c = Codec()
    c.encode(np.vstack([IN.intent(locate=2, price=10_000, qty=100, id=5)]))
    ev = c.parse([
        _er("HB7-1", "0", "0"),
        _er("HB7-1", "F", "1", last=40, px="1.0000", cum=40),
        _er("HB7-1", "F", "1", last=40, px="1.0000", cum=40, dup=True),   # a resent copy
        _er("HB7-1", "F", "2", last=60, px="1.00", cum=100),
    ])
    kinds = ev[:, IN.E_KIND].tolist()
    assert kinds == [IN.EX_ACK, IN.EX_FILL, IN.EX_FILL]
    assert ev[1, IN.E_ID] == 5 and ev[1, IN.E_QTY] == 40 and ev[1, IN.E_PRICE] == 10_000
    assert ev[1, IN.E_LOCATE] == 2 and ev[1, IN.E_TS] == 34_201_000_000_500
    assert c.ot[0, C.O_STATE] == C.ST_FILLED and c.cnt[C.C_DUP_REPORT] == 1
    # a late cancel ack for a filled order is an impossible transition: refused and recorded
    c.encode(np.vstack([IN.intent(IN.KIND_CANCEL, locate=2, qty=0, id=6, orig=5)]))
    assert c.cnt[C.C_ILLEGAL] == 1          # filled -> pending_cancel
    assert tuple(c.bad[0]) == (1, C.ST_FILLED, C.ST_PENDING_CANCEL)


def test_cancel_reject_and_cancel_ack():
    c = Codec()
    c.encode(np.vstack([IN.intent(locate=2, price=10_000, qty=100, id=5)]))
    c.parse([_er("HB7-1", "0", "0")])
    c.encode(np.vstack([IN.intent(IN.KIND_CANCEL, locate=2, qty=100, id=6, orig=5)]))
    rej = "8=FIX.4.4|9=0|35=9|37=V1|11=HB7-2|41=HB7-1|39=0|434=1|102=1|10=000|"
    ev = c.parse([rej])
    assert ev[0, IN.E_KIND] == IN.EX_CANCEL_REJECT and ev[0, IN.E_ID] == 5
    assert c.ot[0, C.O_STATE] == C.ST_NEW and c.ot[1, C.O_STATE] == C.ST_REJECTED
    c.encode(np.vstack([IN.intent(IN.KIND_CANCEL, locate=2, qty=100, id=7, orig=5)]))
    ev = c.parse([_er("HB7-3", "4", "4", orig="HB7-1")])
    assert ev[0, IN.E_KIND] == IN.EX_CANCELED and ev[0, IN.E_ID] == 5
    assert c.ot[0, C.O_STATE] == C.ST_CANCELLED and c.ot[2, C.O_STATE] == C.ST_CANCELLED
    assert c.cnt[C.C_ILLEGAL] == 0


def test_replace_ack_moves_the_order_to_its_new_clordid():
    c = Codec()
    c.encode(np.vstack([IN.intent(locate=2, price=10_000, qty=100, id=5)]))
    c.parse([_er("HB7-1", "0", "0"), _er("HB7-1", "F", "1", last=30, px="1", cum=30)])
    c.encode(np.vstack([IN.intent(IN.KIND_REPLACE, locate=2, price=10_100, qty=90, id=6, orig=5)]))
    ev = c.parse([_er("HB7-2", "5", "1", orig="HB7-1", cum=30)])
    assert ev[0, IN.E_KIND] == IN.EX_REPLACED and ev[0, IN.E_ID] == 6 and ev[0, IN.E_ORIG] == 5
    assert c.ot[0, C.O_STATE] == C.ST_REPLACED and c.ot[1, C.O_STATE] == C.ST_PARTIAL
    assert c.ot[1, C.O_CUM] == 30


def test_garbage_and_foreign_reports_are_counted_not_crashing():
    c = Codec()
    c.encode(np.vstack([IN.intent(locate=2, price=10_000, qty=100, id=5)]))
    ev = c.parse([
        "garbage with no tags",
        "8=FIX.4.4|9=0|35=8|11=OTHER-1|150=0|39=0|10=000|",     # not our prefix
        "8=FIX.4.4|9=0|35=8|11=HB7-99|150=0|39=0|10=000|",      # never sent
        "8=FIX.4.4|9=0|35=8|11=HB7-1|150=F|39=1|32=x|31=1|10=000|",  # bad LastQty
        "8=FIX.4.4|9=0|35=8|11=HB7-1|150=F|39=1|32=1|31=1.00001|10=000|",  # finer than Price(4)
        "",
    ])
    assert ev.shape[0] == 0
    assert c.cnt[C.C_BAD_REPORT] == 4 and c.cnt[C.C_UNKNOWN_CLORDID] == 2


@pytest.mark.parametrize("text, want", [("1", 10_000), ("0.5", 5_000), ("123.4567", 1_234_567), ("7.10", 71_000),
                                        ("1.23450", 12_345), ("", -1), ("1.2.3", -1), ("1e3", -1)])
def test_price_parse_is_exact(text, want):
    b = np.frombuffer(text.encode() or b"\0", np.uint8)
    assert C._parse_price(b, 0, len(text)) == want


def test_civil_date_matches_the_calendar():
    import datetime as dt

    for days in (0, 365, 11_016, 17_926, 20_417, 24_000):
        d = dt.date(1970, 1, 1) + dt.timedelta(days=days)
        assert C.civil_date(days) == d.year * 10000 + d.month * 100 + d.day


def test_legal_transitions_have_terminal_states():
    for term in (C.ST_FILLED, C.ST_CANCELLED, C.ST_REJECTED, C.ST_REPLACED):
        assert C.LEGAL[term].sum() == 0
    assert C.LEGAL[C.ST_PENDING_NEW, C.ST_NEW] == 1 and C.LEGAL[C.ST_NEW, C.ST_PENDING_NEW] == 0


def test_clordid_prefix_changes_at_every_start_in_the_same_state_dir(tmp_path):
    from bridges.fix.bridge import FixBridge

    sym = np.zeros((2, 16), np.int64)
    a = FixBridge(host="127.0.0.1", port=1, sender="S", target="T", state_dir=tmp_path, sym=sym, date="20190130")
    b = FixBridge(host="127.0.0.1", port=1, sender="S", target="T", state_dir=tmp_path, sym=sym, date="20190130")
    assert (a.prefix_str, b.prefix_str) == ("HB1", "HB2")


def test_logon_credentials_come_from_the_environment(tmp_path, monkeypatch):
    from bridges.fix.bridge import FixBridge, session_settings

    monkeypatch.setenv("FIX_USERNAME", "trader7")
    monkeypatch.setenv("FIX_PASSWORD", "s3cret")
    sym = np.zeros((2, 16), np.int64)
    br = FixBridge(host="127.0.0.1", port=1, sender="S", target="T", state_dir=tmp_path, sym=sym, date="20190130")
    logon = fix.Message()
    logon.getHeader().setField(35, "A")
    br._guard(br._to_admin, logon)
    assert logon.getField(553) == "trader7" and logon.getField(554) == "s3cret"
    hb = fix.Message()
    hb.getHeader().setField(35, "0")
    br._guard(br._to_admin, hb)
    assert not hb.isSetField(554) and br.callback_errors == 0
    text = session_settings(role="initiator", host="h", port=9, sender="S", target="T", heartbeat_s=5,
                            state_dir=tmp_path)
    assert "s3cret" not in text and "SocketConnectPort=9" in text and "HeartBtInt=5" in text


def test_a_failing_callback_is_counted_not_raised(tmp_path):
    from bridges.fix.bridge import FixBridge

    sym = np.zeros((2, 16), np.int64)
    br = FixBridge(host="127.0.0.1", port=1, sender="S", target="T", state_dir=tmp_path, sym=sym, date="20190130")
    br._guard(br._from_app, object())        # not a message: raises inside, never outside
    assert br.callback_errors == 1


def test_a_session_reject_of_our_order_rejects_it_for_risk(tmp_path):
    """35=3 names the refused message by RefSeqNum, 35=j by ClOrdID: either way the order is
    rejected in the state machine and risk gets EX_REJECT (it never reached the venue's book)."""
    import socket

    from bridges.fix.bridge import FixBridge

    class _Session:
        def getExpectedSenderNum(self):  # noqa: N802 - QuickFIX's name
            return 7

    a, b = socket.socketpair()
    try:
        sym = np.zeros((4, 16), np.int64)
        br = FixBridge(host="127.0.0.1", port=1, sender="S", target="T", state_dir=tmp_path, sym=sym, date="20190130")
        br.session, br.logged_on, br.fd = _Session(), True, a.fileno()
        rows = np.vstack([IN.intent(locate=1, price=10_000, qty=10, id=41), IN.intent(locate=1, price=10_000, qty=10,
                                                                                    id=42)])
        assert br.send(rows) == 2
        assert br.ot[0, C.O_SEQ] == 7 and br.ot[1, C.O_SEQ] == 8
        rej = fix.Message()
        rej.getHeader().setField(35, "3")
        rej.setField(45, "8")
        rej.setField(58, "Value is incorrect (out of range) for this tag")
        br._guard(br._from_admin, rej)
        bmr = fix.Message()
        bmr.getHeader().setField(35, "j")
        bmr.setField(45, "0")
        bmr.setField(379, f"{br.prefix_str}-1")
        bmr.setField(380, "3")
        br._guard(br._from_app, bmr)
        ev = np.vstack(br._apply_refused())
    finally:
        a.close()
        b.close()
    assert ev[:, IN.E_KIND].tolist() == [IN.EX_REJECT, IN.EX_REJECT]
    assert sorted(ev[:, IN.E_ID].tolist()) == [41, 42]
    assert (br.ot[:2, C.O_STATE] == C.ST_REJECTED).all() and (br.ot[:2, C.O_REJ] == C.REJ_SESSION).all()
    assert br.callback_errors == 0 and br.session_rejects == 1 and br.business_rejects == 1
