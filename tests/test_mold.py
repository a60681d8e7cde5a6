"""MoldUDP64 framing: sessions, sequence gaps, duplicates, heartbeats, end of session, bad blocks.

Runs the framing kernels on every backend (the CUDA variant as a single simulated thread)."""

from __future__ import annotations

import numpy as np

from kernels import stats as S
from kernels.state import Frames, MoldSessions, Payloads
from tests.packets import add_order, lay_out, mold


def split(k, payloads: list[bytes], max_sessions: int = 4, state=None):
    """Run ``split_mold`` over payloads laid out back to back; returns (seqs, sessions, stats, state)."""
    buf, pay_off, pay_len = lay_out(payloads)
    n = len(payloads)
    pay_rx = np.arange(max(n, 1), dtype=np.int64) * 10
    if state is None:
        state = (np.zeros((max_sessions, 10), np.uint8), np.zeros(max_sessions, np.uint64), np.zeros(1, np.int64))
    rows = max(len(buf) // 3 + 1, 1 << 16)
    off, ln, seq, sess, rx = (np.zeros(rows, np.int64), np.zeros(rows, np.int32), np.zeros(rows, np.uint64),
                              np.zeros(rows, np.uint16), np.zeros(rows, np.int64))
    stats = S.new_stats()
    m, nxt = k.split_mold(Payloads(buf, pay_off, pay_len, pay_rx), 0, n, MoldSessions(*state),
                          Frames(buf, off, ln, seq, sess, rx), stats)
    assert nxt == n
    blocks = [bytes(buf[off[i]:off[i] + ln[i]]) for i in range(m)]
    return seq[:m].tolist(), sess[:m].tolist(), stats, state, blocks


def msgs(first: int, n: int) -> list[bytes]:
    return [add_order(first + i) for i in range(n)]


def test_in_order_packets_deliver_every_message(backend):
    seqs, _, st, _, blocks = split(backend, [mold(b"S1", 100, msgs(100, 3)), mold(b"S1", 103, msgs(103, 2))])
    assert seqs == [100, 101, 102, 103, 104]
    assert blocks[0] == add_order(100) and blocks[-1] == add_order(104)
    assert st[S.MOLD_GAPS] == 0 and st[S.MOLD_DUP_MESSAGES] == 0 and st[S.MOLD_PACKETS] == 2


def test_gap_is_counted_and_later_messages_still_delivered(backend):
    seqs, _, st, _, _ = split(backend, [mold(b"S1", 1, msgs(1, 2)), mold(b"S1", 10, msgs(10, 2))])
    assert seqs == [1, 2, 10, 11]
    assert st[S.MOLD_GAPS] == 1 and st[S.MOLD_GAP_MESSAGES] == 7


def test_duplicates_and_overlapping_retransmissions_are_dropped(backend):
    seqs, _, st, _, _ = split(backend, [mold(b"S1", 1, msgs(1, 3)), mold(b"S1", 1, msgs(1, 3)),
                                        mold(b"S1", 2, msgs(2, 4))])
    assert seqs == [1, 2, 3, 4, 5]
    assert st[S.MOLD_DUP_MESSAGES] == 5


def test_sessions_are_tracked_independently(backend):
    seqs, sess, st, state, _ = split(backend, [mold(b"A", 5, msgs(1, 1)), mold(b"B", 50, msgs(2, 1)),
                                               mold(b"A", 6, msgs(3, 1)), mold(b"B", 50, msgs(2, 1))])
    assert seqs == [5, 50, 6] and sess == [0, 1, 0]
    assert st[S.MOLD_DUP_MESSAGES] == 1 and st[S.MOLD_GAPS] == 0
    assert bytes(state[0][1]) == b"B".ljust(10) and state[2][0] == 2


def test_heartbeat_and_end_of_session_carry_no_messages_but_reveal_gaps(backend):
    seqs, _, st, _, _ = split(backend, [mold(b"S1", 1, msgs(1, 1)), mold(b"S1", 2, [], count=0),
                                        mold(b"S1", 5, [], count=0), mold(b"S1", 5, [], count=0xFFFF)])
    assert seqs == [1]
    assert st[S.MOLD_HEARTBEATS] == 2 and st[S.MOLD_END_OF_SESSION] == 1
    assert st[S.MOLD_GAPS] == 1 and st[S.MOLD_GAP_MESSAGES] == 3


def test_scrubbed_sequence_zero_is_delivered_without_checks(backend):
    seqs, _, st, _, _ = split(backend, [mold(b"", 0, msgs(1, 1)), mold(b"", 0, msgs(2, 1))])
    assert seqs == [0, 0]
    assert st[S.MOLD_UNSEQUENCED] == 2 and st[S.MOLD_DUP_MESSAGES] == 0


def test_malformed_packets_are_counted_and_never_read_past_the_payload(backend):
    full = mold(b"S1", 1, msgs(1, 3))
    short_header = full[:15]
    cut_block = mold(b"S1", 4, msgs(4, 2))[:-5]        # second block runs past the end
    trailing = mold(b"S1", 6, msgs(6, 1)) + b"xyz"     # bytes after the declared count
    empty = mold(b"S1", 7, [b""])                      # zero-length block
    seqs, _, st, _, _ = split(backend, [full, short_header, cut_block, trailing, empty])
    assert seqs == [1, 2, 3, 4, 6]
    assert st[S.MOLD_SHORT] == 1 and st[S.MOLD_TRUNCATED] == 1 and st[S.MOLD_TRAILING] == 1
    assert st[S.MOLD_EMPTY_MESSAGE] == 1
    assert st[S.MOLD_GAPS] == 1 and st[S.MOLD_GAP_MESSAGES] == 1  # seq 5 was in the cut packet


def test_too_many_sessions_is_counted(backend):
    seqs, _, st, _, _ = split(backend, [mold(bytes([65 + i]), 1, msgs(1, 1)) for i in range(3)], max_sessions=2)
    assert seqs == [1, 1] and st[S.MOLD_TOO_MANY_SESSIONS] == 1


def test_sequence_state_persists_across_calls(backend):
    _, _, _, state, _ = split(backend, [mold(b"S1", 1, msgs(1, 3))])
    seqs, _, st, _, _ = split(backend, [mold(b"S1", 3, msgs(3, 2))], state=state)
    assert seqs == [4] and st[S.MOLD_DUP_MESSAGES] == 1


def test_absurd_sequence_numbers_are_corrupt_headers_not_huge_gaps(backend):
    seqs, _, st, _, _ = split(backend, [mold(b"S1", 7, msgs(1, 1)), mold(b"S1", 2**64 - 2, msgs(2, 4)),
                                        mold(b"S1", 2**63 + 5, msgs(6, 1)), mold(b"S1", 8, msgs(7, 1))])
    assert seqs == [7, 8]
    assert st[S.MOLD_BAD_SEQUENCE] == 2 and st[S.MOLD_GAPS] == 0


def test_split_stops_before_a_packet_that_would_overflow_the_batch_and_resumes():
    from kernels import cpu

    payloads = [mold(b"S1", 1 + 40_000 * i, [b"D" + bytes(18)] * 40_000) for i in range(3)]
    buf, offs, lens = lay_out(payloads)
    rx = np.zeros(3, np.int64)
    state = (np.zeros((2, 10), np.uint8), np.zeros(2, np.uint64), np.zeros(1, np.int64))
    rows = 1 << 16
    out = (np.zeros(rows, np.int64), np.zeros(rows, np.int32), np.zeros(rows, np.uint64),
           np.zeros(rows, np.uint16), np.zeros(rows, np.int64))
    stats = S.new_stats()
    got, i = [], 0
    while i < 3:
        m, i = cpu.split_mold(Payloads(buf, offs, lens, rx), i, 3, MoldSessions(*state), Frames(buf, *out), stats)
        got.append(m)
    assert got == [40_000, 40_000, 40_000]
    assert stats[S.MOLD_PACKETS] == 3 and stats[S.MOLD_GAPS] == 0
