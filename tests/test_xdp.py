"""The XDP steering program and its loader: every counter reason, random frames (never a crash,
every frame counted once), steering by MoldUDP64 session, clear errors, detach on crash.

The program runs in the kernel through BPF_PROG_TEST_RUN (no interface needed); the attach and
crash tests make their own network namespace. Skipped, with the reason, without root/BPF/clang.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from bridges.xdp import loader as L
from tests import live_frames as LF

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_WHY = L.unavailable_reason()
needs_bpf = pytest.mark.skipif(_WHY is not None, reason=f"XDP unavailable: {_WHY}")
VERDICT_KEYS = ("redirected", "passed", "dropped")


@pytest.fixture
def prog():
    p = L.XdpProgram(None, [f"{LF.GROUP[0]}:{LF.GROUP[1]}"], attach=False)
    yield p
    p.close()


def test_header_constants_match_the_loader():
    assert L.COUNTERS["rx"] == 0 and L.COUNTERS["dropped"] == 14
    assert max(L.COUNTERS.values()) < L.N_COUNTERS
    assert set(L.STEER) == {"queue", "session", "locate"}


@needs_bpf
def test_each_malformed_frame_lands_in_its_reason(prog):
    cases = LF.malformed()
    for reason, frames in cases.items():
        for fr in frames:
            assert prog.test_run(fr) == L.XDP_PASS, reason
    c = prog.counters()
    total = sum(len(v) for v in cases.values())
    for reason, frames in cases.items():
        assert c[reason] == len(frames), reason
    assert c["rx"] == total
    assert c["passed"] == total and c["matched"] == 0 and c["redirected"] == 0


@needs_bpf
def test_feed_packet_without_socket_is_matched_and_passed(prog):
    assert prog.test_run(LF.feed()) == L.XDP_PASS
    assert prog.test_run(LF.feed(vlan=5)) == L.XDP_PASS  # 802.1Q tagged
    c = prog.counters()
    assert c["matched"] == 2 and c["no_socket"] == 2 and c["passed"] == 2 and c["rx"] == 2


@needs_bpf
def test_other_traffic_dropped_when_configured(prog):
    prog.configure(other="drop")
    assert prog.test_run(LF.feed(dst=("239.7.7.8", 30001))) == L.XDP_DROP
    assert prog.test_run(LF.malformed()["not_ipv4"][0]) == L.XDP_DROP
    c = prog.counters()
    assert c["dropped"] == 2 and c["no_match"] == 1 and c["not_ipv4"] == 1


@needs_bpf
def test_session_steering_counts_short_mold_payloads(prog):
    prog.configure(steer="session", n_pipelines=4)
    assert prog.test_run(LF.feed(LF.mold())) == L.XDP_PASS  # full header, no socket at its key
    assert prog.test_run(LF.feed(b"SHORT")) == L.XDP_PASS
    c = prog.counters()
    assert c["matched"] == 2 and c["mold_short"] == 1 and c["no_socket"] == 2


@needs_bpf
def test_random_frames_never_crash_and_are_counted_once(prog):
    rng = random.Random(7)
    good = LF.feed(LF.mold(count=1, body=b"\x00\x05A\x00\x01\x00\x00"))
    n = 0
    for _ in range(400):
        kind = rng.random()
        if kind < 0.5:  # mutate a valid frame
            fr = bytearray(good)
            for _ in range(rng.randint(1, 6)):
                fr[rng.randrange(len(fr))] = rng.randrange(256)
            fr = bytes(fr[: rng.randint(14, len(fr))])
        else:
            fr = bytes(rng.randrange(256) for _ in range(rng.randint(14, 120)))
        assert prog.test_run(fr) in (L.XDP_PASS, L.XDP_DROP)
        n += 1
    c = prog.counters()
    assert c["rx"] == n
    assert sum(c[k] for k in VERDICT_KEYS) == n
    reasons = ("short_eth", "bad_vlan", "not_ipv4", "bad_ip", "ip_frag", "not_udp", "bad_udp", "no_match", "matched")
    assert sum(c[k] for k in reasons) == n


def test_not_root_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(L.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(L, "_cap_eff", lambda: 0)
    why = L.privilege_problem()
    assert why is not None and "root" in why and "CAP_BPF" in why
    with pytest.raises(L.XdpUnavailable, match="root"):
        L.XdpProgram("lo", [], attach=False)


def test_missing_bpffs_is_a_clear_error(tmp_path):
    why = L.bpffs_problem(tmp_path)
    assert why is not None and "bpf filesystem" in why and "mount -t bpf" in why


def test_missing_clang_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("CLANG", raising=False)
    monkeypatch.setattr(L.shutil, "which", lambda name: None)
    with pytest.raises(L.XdpUnavailable, match="clang not found"):
        L.build_object(tmp_path / "x.o", force=True)


@needs_bpf
def test_program_is_detached_when_the_loader_process_is_killed():
    from bridges.xdp.netns import TestNet, nsenter_cmd

    child_code = (
        "import sys, os, signal\n"
        "from bridges.xdp.loader import XdpProgram\n"
        "p = XdpProgram(sys.argv[1], ['239.7.7.7:30001'])\n"
        "print('attached', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    with TestNet("kil") as net:
        ns = nsenter_cmd(net.rx.ns)
        proc = subprocess.Popen([*ns, sys.executable, "-c", child_code, net.rx.ifname], cwd=REPO,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "attached"
            shown = subprocess.run([*ns, "ip", "-d", "link", "show", "dev", net.rx.ifname],
                                   capture_output=True, text=True).stdout
            assert "xdp" in shown
            proc.kill()  # a crash: no atexit, no finally
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for f in (proc.stdin, proc.stdout):
                if f is not None:
                    f.close()
        shown = subprocess.run([*ns, "ip", "-d", "link", "show", "dev", net.rx.ifname],
                               capture_output=True, text=True).stdout
        assert "xdp" not in shown  # no xdpgeneric flag, no prog/xdp line
