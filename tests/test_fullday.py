"""``make fullday-day`` (bench/fullday.py) on tiny inputs: the day is generated once and reused,
and the process-tree memory sampler sees a child's memory. The 100M-message run itself is long
and not part of the suite."""

from __future__ import annotations

import json
import subprocess
import sys

from bench import fullday


def test_ensure_day_generates_once(tmp_path):
    path = tmp_path / "deep-tiny.itch"
    lines: list[str] = []
    day = fullday.ensure_day(path, 20_000, 3, log=lines.append)
    assert path.is_file() and path.stat().st_size == day["bytes_written"]
    assert day["n_messages"] == 20_000 and day["n_symbols"] == 500
    assert day["extra"]["preset"] == "deep" and day["extra"]["live_orders_peak"] > 0
    assert json.loads(path.with_suffix(".json").read_text()) == day
    assert not list(tmp_path.glob("*.part"))
    mtime = path.stat().st_mtime_ns
    again = fullday.ensure_day(path, 20_000, 3, log=lines.append)
    assert again == day and path.stat().st_mtime_ns == mtime
    assert "already there" in lines[-1]


def test_sampler_sees_the_process_tree():
    # a child holding ~64 MiB, under a shell: the sampler walks the tree from the shell
    code = "import time; b = bytearray(64 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"
    p = subprocess.Popen(["/bin/sh", "-c", f"{sys.executable} -c \"{code}\"; true"])
    s = fullday.Sampler(p.pid, every=0.1)
    s.start()
    p.wait()
    s.stop()
    assert s.samples > 0
    assert s.peak_sum >= 64 << 20
    assert any(rss >= 64 << 20 for _, rss in s.peak_by_pid.values())
