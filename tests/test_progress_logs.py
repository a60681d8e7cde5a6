"""What a run prints: progress bars only on a terminal, readable or JSON event lines, and no
Hydra lines in the summary. The progress display is tried on a real pseudo-terminal and on a
pipe; ``hftbot run`` is run as a user would, its stdout a pipe."""

from __future__ import annotations

import io
import json
import os
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.logs import EventLog, JsonFormatter, configure, split_event
from pipeline.progress import NullProgress, RichProgress, itch_clock, open_progress
from tests.conftest import REPO

ESC = "\x1b"
ELAPSED = re.compile(r"\d:\d\d:\d\d")  # rich's elapsed / ETA columns: never in a log line


def _drain(fd: int) -> bytes:
    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out


def _exercise(p, tmp: Path | None = None) -> None:
    if tmp is not None:
        f = tmp / "sample.pcap.part"
        f.write_bytes(b"x" * 2_500_000)
        p.stage("generate", "sample.pcap", watch=[f, tmp / "sample.pcap"])
        if isinstance(p, RichProgress):
            p.p.refresh()
    p.stage("compile", "compiling")
    p.note("compile", "risk ...")
    p.start_replay("sample.pcap", 1000)
    p.replay(500, 12_345, 36_061_000_000_000 // 1000)
    p.replay(900, 22_345, (10 * 3600 + 1) * 1_000_000_000)
    if isinstance(p, RichProgress):
        p.p.refresh()
    p.end_replay()
    p.stage("drain", "last reports")
    p.close()
    p.note("report", "after the display closed")  # no-ops once closed (the summary prints after)
    p.replay(1000, 30_000, 0)
    p.close()


def test_progress_draws_on_a_terminal(tmp_path):
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # 160 columns
    try:
        with open(slave, "w", closefd=False) as tty:
            p = open_progress(True, stream=tty)
            assert isinstance(p, RichProgress)
            _exercise(p, tmp_path)
            tty.flush()
        out = _drain(master).decode(errors="replace")
    finally:
        os.close(master)
        os.close(slave)
    assert ESC in out and "replay" in out and "22,345 msgs" in out and "ITCH 10:00:01.000" in out, out[-500:]
    assert ELAPSED.search(out)
    assert "generate" in out and "2.5 MB written" in out  # the sample being written, read from its file


def test_progress_never_appears_when_output_is_not_a_terminal(monkeypatch, tmp_path):
    buf = io.StringIO()
    p = open_progress(True, stream=buf)
    assert isinstance(p, NullProgress) and not p.enabled
    _exercise(p, tmp_path)
    assert buf.getvalue() == ""
    # a pipe is not a terminal either; nor a terminal whose TERM is dumb
    r, w = os.pipe()
    with open(w, "w") as f:
        assert not open_progress(True, stream=f).enabled
    os.close(r)
    master, slave = os.openpty()
    with open(slave, "w", closefd=False) as tty:
        monkeypatch.setenv("TERM", "dumb")
        assert not open_progress(True, stream=tty).enabled
    os.close(master)
    os.close(slave)


def test_quiet_turns_progress_off_even_on_a_terminal():
    from pipeline.app import hydra_args

    assert hydra_args(["--quiet", "feed.pace=true"]) == ["logging.progress=false", "feed.pace=true"]
    assert hydra_args(["-q", "--json"]) == ["logging.progress=false", "logging.json=true"]
    master, slave = os.openpty()
    with open(slave, "w", closefd=False) as tty:
        assert isinstance(open_progress(False, stream=tty), NullProgress)
    os.close(master)
    os.close(slave)


def test_itch_clock():
    assert itch_clock(0) == "--:--:--"
    assert itch_clock(((9 * 60 + 30) * 60 + 5) * 1_000_000_000 + 123_456_789) == "09:30:05.123"


def test_event_names_come_from_the_first_word():
    assert split_event("compile    done in 4.1 s") == ("compile", "done in 4.1 s")
    assert split_event("  AAPL     bid 10.72") == ("summary", "  AAPL     bid 10.72")
    assert split_event("latency (HdrHistogram)   count") == ("latency", "(HdrHistogram)   count")


def test_json_lines_carry_time_level_event_and_fields(capsys):
    lg = configure(json_lines=True)
    try:
        log = EventLog()
        log("fix        logged on HFTBOT -> VENUE")
        log.event("report", "report     x/report.json (completed)", orders=3, fills=2, pnl_usd=-1.5)
        log.warning("venue      slow\nsecond line")
        import logging

        logging.getLogger("hftbot.execution").warning("could not read %s", "x.pcap")
    finally:
        configure(json_lines=False)
    lines = capsys.readouterr().out.splitlines()
    recs = [json.loads(x) for x in lines]
    assert [r["event"] for r in recs] == ["fix", "report", "venue", "execution"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["ts"]) for r in recs)
    assert [r["level"] for r in recs] == ["info", "info", "warning", "warning"]
    assert recs[0]["msg"] == "logged on HFTBOT -> VENUE"
    assert recs[1]["orders"] == 3 and recs[1]["fills"] == 2 and recs[1]["pnl_usd"] == -1.5
    assert recs[2]["msg"] == "slow\nsecond line"
    assert recs[3]["msg"] == "could not read x.pcap"
    assert lg.name == "hftbot"
    assert JsonFormatter  # the formatter Hydra-independent code can reuse


def _hftbot_run(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "pipeline", "run", "--config-name", "smoke", f"feed.sample.dir={tmp / 'samples'}",
            f"risk.kill.file={tmp / 'KILL'}", f"hydra.run.dir={tmp / 'run'}", "bridge=off", *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TERM": "xterm-256color"}
    return subprocess.run(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("samples")


def test_a_piped_run_prints_readable_lines_without_progress_or_hydra(samples, tmp_path):
    p = _hftbot_run(tmp_path, f"feed.sample.dir={samples}")
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout
    assert ESC not in out and ESC not in p.stderr
    assert not ELAPSED.search(re.sub(r"\d\d:\d\d:\d\d\.\d+", "", out)), "progress columns in piped output"
    assert "[HYDRA]" not in out and "[hydra]" not in out and "][INFO]" not in out
    lines = out.splitlines()
    assert lines[0].startswith("metrics    http://127.0.0.1:")
    assert any(x.startswith("compile    done in") for x in lines)
    assert any(x.startswith("report     ") for x in lines)
    log = (tmp_path / "run" / "run.log").read_text()
    assert "[info][compile] compile    done in" in log and "[info][report] report" in log


def test_logging_json_gives_one_json_object_per_line(samples, tmp_path):
    p = _hftbot_run(tmp_path, f"feed.sample.dir={samples}", "logging.json=true")
    assert p.returncode == 0, p.stderr[-2000:]
    assert ESC not in p.stdout
    recs = [json.loads(x) for x in p.stdout.splitlines()]  # every line parses
    assert recs and all({"ts", "level", "event", "msg"} <= set(r) for r in recs)
    ev = {r["event"]: r for r in recs}
    assert {"metrics", "start", "compile", "report"} <= set(ev), sorted(ev)
    assert ev["start"]["engine"] == "batch" and len(ev["start"]["config_hash"]) == 16
    assert ev["compile"]["seconds"] >= 0 and "risk" in ev["compile"]["by_stage"]
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    r = ev["report"]
    assert r["status"] == "completed" and r["messages"] == rep["feed"]["messages_in"] > 0
    assert r["intents"] == rep["risk"]["intents"] and r["fills"] == rep["execution"]["fills"]
