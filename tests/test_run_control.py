"""The run's lifecycle and controls, tried from the user's side: another process, another
directory, a signal. Each test starts ``hftbot run`` as a child process (a paced replay of a
generated sample, long enough to be signalled mid-run), acts on it as a person would, and checks
the exit status, the report, the FIX logout and that no child process is left.

Waits are hang guards (``wait_for``), never timed assertions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pipeline.config import ConfigError, register, validate
from replay.run_report import SCHEMA_VERSION, validate_report
from tests.conftest import REPO
from tests.venue_helpers import wait_for

register()


def cfg_of(name: str = "smoke", overrides: list[str] = ()):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


# --- configuration ----------------------------------------------------------------------------------
def test_a_key_added_with_plus_that_the_schema_does_not_know_is_refused():
    with pytest.raises(ConfigError, match=r"risk\.limits\.max_ordr_qty: not a configuration key.*did you mean "
                                          r"risk\.limits\.max_order_qty"):
        validate(cfg_of(overrides=["+risk.limits.max_ordr_qty=5"]))
    with pytest.raises(ConfigError, match=r"^nonsense: not a configuration key"):
        validate(cfg_of(overrides=["+nonsense=1"]))
    with pytest.raises(ConfigError, match=r"gpu\.ring_batch: not a configuration key"):
        validate(cfg_of(overrides=["+gpu.ring_batch=3"]))


def test_gpu_settings_have_a_schema_and_are_validated():
    c = cfg_of(overrides=["gpu.ring_batches=8", "gpu.shards=2"])
    validate(c)
    assert c.gpu.ring_batches == 8
    for bad, key in (("gpu.ring_batches=0", "gpu.ring_batches"), ("gpu.threads=7", "gpu.threads"),
                     ("risk.kill.poll_ms=0", "risk.kill.poll_ms"), ("bridge.cancel_timeout_s=0",
                                                                    "bridge.cancel_timeout_s")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            validate(cfg_of(overrides=[bad]))


# --- running hftbot as a user would ---------------------------------------------------------------
@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("samples")


def _args(samples: Path, tmp: Path, *extra: str, paced: bool = True) -> list[str]:
    a = ["--config-name", "smoke", f"feed.sample.dir={samples}", f"risk.kill.file={tmp / 'KILL'}",
         f"hydra.run.dir={tmp / 'run'}", "feed.chunk_bytes=1048576", "feed.batch_rows=65536"]
    if paced:  # ~150k messages over 0.65 s of capture time, replayed at 1/20 of the pace: ~13 s
        a += ["feed.sample.messages=150000", "feed.pace=true", "feed.speed=0.05"]
    return a + list(extra)


class Proc:
    """``hftbot run`` in a child process, its output collected line by line."""

    def __init__(self, args: list[str], cwd: Path):
        self.p = subprocess.Popen([sys.executable, "-m", "pipeline", "run", *args], cwd=cwd, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self) -> None:
        for line in self.p.stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_line(self, start: str, timeout_s: float = 300) -> str:
        wait_for(lambda: any(x.startswith(start) for x in self.lines) or self.p.poll() is not None, timeout_s,
                 f"a line starting {start!r}")
        hit = [x for x in self.lines if x.startswith(start)]
        assert hit, f"the run ended (rc {self.p.poll()}) before {start!r}:\n{self.text()[-3000:]}"
        return hit[0]

    def wait(self, timeout_s: float = 120) -> int:
        try:
            rc = self.p.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            self.p.stdout.close()
            raise AssertionError(f"hftbot run did not exit within {timeout_s} s:\n{self.text()[-3000:]}")
        self.t.join(5)
        self.p.stdout.close()
        return rc

    def venue_pid(self) -> int:
        line = self.wait_line("venue      simulator on")
        return int(line.split("(pid ")[1].split(",")[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of an exited child is not alive
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False


def _report(tmp: Path) -> dict:
    rep = json.loads((tmp / "run" / "report.json").read_text())
    validate_report(rep)
    assert rep["schema_version"] == SCHEMA_VERSION
    return rep


def _keys(d: dict, depth: int = 2, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if depth > 1 and isinstance(v, dict) and k not in ("latency", "features", "live", "venue") and \
                not k.endswith("by_reason") and k not in ("positions", "messages_by_type", "problems", "symbols",
                                                           "by_symbol", "rejections", "compile_by_stage_s"):
            out |= _keys(v, depth - 1, prefix + k + ".")
    return out


@pytest.mark.slow
def test_a_leftover_kill_file_refuses_the_start_and_says_how_to_clear_it(samples, tmp_path):
    (tmp_path / "KILL").touch()
    p = Proc(_args(samples, tmp_path, paced=False), cwd=tmp_path)
    rc = p.wait()
    assert rc == 2, p.text()
    assert f"rm {tmp_path / 'KILL'}" in p.text()
    assert "venue      simulator" not in p.text()   # nothing was started
    rep = _report(tmp_path)
    assert rep["run"]["status"] == "failed" and rep["error"]["type"] == "KillFileError"
    assert rep["error"]["stage"] == "config"


@pytest.mark.slow
def test_hftbot_kill_from_another_directory_stops_trading_and_the_run_says_so(samples, tmp_path):
    p = Proc(_args(samples, tmp_path), cwd=REPO)
    p.wait_line("fix        logged on")
    banner = p.wait_line("kill       file ")
    assert str(tmp_path / "KILL") in banner   # absolute, printed at start
    # every kernel was compiled before the venue started and the session logged on
    order = [next(i for i, x in enumerate(p.lines) if x.startswith(s))
             for s in ("compile    done", "venue      simulator", "fix        logged on")]
    assert order == sorted(order), p.text()
    time.sleep(1.0)                           # the first batch has traded; the run waits for the next
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    k = subprocess.run([sys.executable, "-m", "pipeline", "kill", "--run", str(tmp_path / "run")], cwd=elsewhere,
                       capture_output=True, text=True, timeout=120)
    assert k.returncode == 0, k.stderr
    assert (tmp_path / "KILL").is_file()
    rc = p.wait()
    assert rc == 3, p.text()[-3000:]
    assert "KILL SWITCH ENGAGED (file" in p.text()
    rep = _report(tmp_path)
    ks = rep["kill_switch"]
    assert rep["run"]["status"] == "killed" and rep["run"]["exit_code"] == 3
    assert ks["engaged"] and ks["reason"] == "file" and ks["kill_file"] == str(tmp_path / "KILL")
    assert ks["reaction_ms"] is not None and ks["reaction_ms"] >= 0 and ks["at_utc"]
    # the working orders were cancelled (and acknowledged: none is left open at the end)
    assert ks["cancels_sent"] >= 1 and ks["cancels_sent"] == rep["execution"]["cancel_sent"]
    assert rep["risk"]["open_orders"] == 0 and rep["execution"]["orders_working"] == 0
    assert rep["execution"]["logouts"] == 1
    # a run with FIX has exactly the keys of the empty execution section (the report's key set)
    from replay.run_report import EMPTY_EXECUTION

    assert set(rep["execution"]) == set(EMPTY_EXECUTION)


@pytest.mark.slow
def test_a_drawdown_limit_kill_is_announced_and_reported_as_a_limit(samples, tmp_path):
    """The engine's own state engages the switch (``risk.limits.max_drawdown=0``: the first dip
    below the PnL peak): the loud banner, the report's ``kill_switch`` from the limit (not from a
    stop), status ``killed``, exit 3. Distinguishes a limit kill from a stop's cancels."""
    from pipeline.run import run

    register()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("smoke", overrides=[f"feed.sample.dir={samples}", "feed.sample.messages=60000",
                                          "strategy.min_interval_ns=0", "risk.limits.max_drawdown=0",
                                          f"risk.kill.file={tmp_path / 'KILL'}"])
    lines: list[str] = []
    rep = run(cfg, out_dir=tmp_path / "run", log=lines.append, signals=False)
    text = "\n".join(lines)
    assert rep["run"]["status"] == "killed" and rep["run"]["exit_code"] == 3, text[-3000:]
    assert "KILL SWITCH ENGAGED (drawdown limit, limit)" in text
    ks = rep["kill_switch"]
    assert ks["engaged"] and ks["reason"] == "drawdown limit" and ks["source"] == "limit" and ks["at_utc"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_cancels_logs_out_stops_the_venue_and_reports_interrupted(samples, tmp_path, sig):
    p = Proc(_args(samples, tmp_path), cwd=tmp_path)
    venue = p.venue_pid()
    p.wait_line("fix        logged on")
    time.sleep(1.0)
    p.p.send_signal(sig)
    rc = p.wait()
    assert rc == 128 + sig, p.text()[-3000:]
    assert not _alive(venue), "the venue outlived the run"
    rep = _report(tmp_path)
    assert rep["run"]["status"] == "interrupted" and rep["run"]["exit_code"] == 128 + sig
    it = rep["interrupt"]
    assert it["signal"] == signal.Signals(sig).name
    assert it["open_orders_after"] == 0 and it["all_closed"], it
    assert rep["execution"]["logouts"] == 1           # a FIX logout, not a dropped connection
    assert rep["feed"]["messages_in"] < 150_000      # it stopped taking market data
    assert "status     INTERRUPTED" in p.text()
    # the stop cancels through the kill switch's cancel-all, but it is not a kill: no banner that
    # says the run goes on and exits 3, and the report names the stop as what engaged it
    assert "KILL SWITCH ENGAGED" not in p.text(), p.text()[-3000:]
    ks = rep["kill_switch"]
    assert not ks["engaged"] or ks["source"] == "stop", ks
    page = tmp_path / "run" / "report.html"
    if ks["engaged"] and page.is_file():
        text = page.read_text()
        assert "stop: working orders cancelled through the kill switch" in text
        assert 'class="status-killed"' not in text


@pytest.mark.slow
def test_a_second_signal_forces_the_exit_and_kills_the_venue(samples, tmp_path):
    p = Proc(_args(samples, tmp_path, "bridge.cancel_timeout_s=60", "venue.response_latency_ns=100000000000"),
             cwd=tmp_path)
    venue = p.venue_pid()
    p.wait_line("fix        logged on")
    time.sleep(1.0)
    p.p.send_signal(signal.SIGINT)
    p.wait_line("stop       SIGINT")
    p.p.send_signal(signal.SIGINT)
    rc = p.wait(60)
    assert rc == 130
    wait_for(lambda: not _alive(venue), 20, "the venue to exit")


@pytest.mark.slow
def test_a_signal_during_the_drain_stops_the_run_and_a_stopped_venue_still_exits_on_sigterm(samples, tmp_path):
    """The replay is over and the bot waits for a venue that makes no progress (stopped with
    SIGSTOP, as by Ctrl-Z or a debugger): Ctrl-C ends the wait, the run cancels and reports
    ``interrupted``, and the stopped venue takes its SIGTERM (SIGCONT follows it) instead of
    being killed after 20 s."""
    p = Proc(_args(samples, tmp_path, "bridge.drain_timeout_s=300", "bridge.cancel_timeout_s=1",
                   "feed.sample.messages=150000", paced=False), cwd=tmp_path)
    venue = p.venue_pid()
    p.wait_line("fix        logged on")
    os.kill(venue, signal.SIGSTOP)
    p.wait_line("venue      draining:")      # 10 s into the drain, the venue stopped
    p.p.send_signal(signal.SIGINT)
    rc = p.wait(120)
    text = p.text()
    assert rc == 130, text[-3000:]
    assert "stop       SIGINT" in text
    rep = _report(tmp_path)
    assert rep["run"]["status"] == "interrupted" and rep["interrupt"]["signal"] == "SIGINT"
    assert rep["execution"]["drain"]["outcome"] == "interrupted"
    assert "killed (SIGKILL)" not in text and "venue      exited with status" not in text, text[-3000:]
    wait_for(lambda: not _alive(venue), 30, "the venue to exit")


_FORCE_CHILD = """
import os, signal, subprocess, sys, threading
from replay.venue.process import VenueProcess
v = VenueProcess(None, 1, sys.argv[1], None)
v.proc = subprocess.Popen(["sleep", "600"])           # stands in for the venue process
print(v.proc.pid, flush=True)
def force(signum, frame):
    getattr(v, sys.argv[2])()
    os._exit(130)
signal.signal(signal.SIGINT, force)
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
while True:                                            # the drain loop's liveness checks, back to back
    v.alive()
"""


def test_the_forced_exit_kills_the_venue_from_inside_a_signal_handler(tmp_path):
    """A second Ctrl-C lands in the main thread while it checks the venue (``Popen.poll``, which
    holds Popen's waitpid lock). The handler's kill must not wait on that lock: ``kill`` (SIGKILL
    then ``Popen.wait``) hangs here every time; ``kill_now`` exits with 130 and the venue is gone."""
    p = subprocess.Popen([sys.executable, "-c", _FORCE_CHILD, str(tmp_path), "kill_now"], cwd=REPO,
                         stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    child = int(p.stdout.readline())
    try:
        rc = p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the signal handler's venue kill hung (waitpid lock held by the interrupted frame)")
    finally:
        p.stdout.close()
    assert rc == 130
    wait_for(lambda: not _alive(child), 20, "the venue to exit")


@pytest.mark.slow
def test_no_child_outlives_a_run_killed_with_sigkill(samples, tmp_path):
    p = Proc(_args(samples, tmp_path), cwd=tmp_path)
    venue = p.venue_pid()
    p.wait_line("fix        logged on")
    p.p.kill()
    p.wait()
    wait_for(lambda: not _alive(venue), 30, "the venue to follow its parent (PR_SET_PDEATHSIG)")


@pytest.mark.slow
def test_a_failed_run_writes_its_report_and_every_report_has_the_same_keys(samples, tmp_path):
    # a completed run, bridge off (nothing on the FIX side happened: zeros, same keys)
    done = Proc(_args(samples, tmp_path / "a", "bridge=off", paced=False), cwd=tmp_path)
    assert done.wait() == 0, done.text()[-3000:]
    ok = _report(tmp_path / "a")
    assert ok["run"]["status"] == "completed" and ok["run"]["exit_code"] == 0
    assert ok["run"]["git_commit"] and ok["run"]["cpu_model"] and ok["run"]["started_utc"] < ok["run"]["ended_utc"]
    assert ok["timing"]["compile_s"] > 0 and ok["timing"]["msgs_per_s"] > 0
    assert isinstance(ok["risk"]["pnl_usd"]["total"], float)
    # a failing one: the capture does not exist
    bad = Proc(_args(samples, tmp_path / "b", f"feed.path={tmp_path / 'absent.pcap'}", paced=False), cwd=tmp_path)
    assert bad.wait() == 2
    failed = _report(tmp_path / "b")
    assert failed["run"]["status"] == "failed" and failed["error"]["stage"] == "feed"
    assert "absent.pcap" in failed["error"]["message"]
    assert _keys(ok) == _keys(failed)


def test_per_batch_figures_are_recorded_once_per_batch_and_say_so(tmp_path):
    """The latency table never repeats a batch average once per message."""
    from pipeline.run import run

    c = cfg_of(overrides=[f"feed.sample.dir={tmp_path}", "bridge=off", "feed.sample.messages=20000",
                          "feed.batch_rows=65536", "feed.chunk_bytes=1048576", f"risk.kill.file={tmp_path / 'K'}"])
    rep = run(c, None, log=lambda s: None, signals=False)
    lat = rep["latency"]
    batches = lat["batch_total"]["count"]
    for name, s in lat.items():
        if "batch" in name:
            assert s["count"] <= batches and "per batch" in s["what"], (name, s)
    assert lat["market_batch_avg_per_msg"]["count"] == batches
    assert rep["timing"]["replay_s"] < rep["timing"]["total_s"]


def test_the_kill_switch_engages_within_a_batch_from_another_thread(tmp_path):
    """The watcher thread's request reaches the compiled check before the next intent, without
    waiting for a batch boundary."""
    from pipeline.control import RunControl
    from pipeline.engine import KILL_CODES

    engaged = []
    kill = tmp_path / "KILL"
    with RunControl(kill, engaged.append, KILL_CODES, poll_s=0.002, signals=False, usr1=False) as ctl:
        kill.touch()
        wait_for(lambda: ctl.kill is not None, 10, "the watcher to see the file")
    assert engaged == [KILL_CODES["file"]]
    assert ctl.kill.as_dict()["reaction_ms"] >= 0


def test_prefault_really_faults_the_pages_in():
    """numpy skips ``a[...] = a[...]`` on the same memory, so a prefault written that way touched
    nothing and the first orders of a run paid the page faults (0.7-8 ms each)."""
    import numpy as np

    from kernels.memory import prefault

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096

    import mmap

    mm = mmap.mmap(-1, 64 << 20)            # a fresh anonymous mapping: no page of it is resident yet
    a = np.frombuffer(mm, np.uint8)
    before = rss()
    assert prefault(a) == a.nbytes
    assert rss() - before >= 0.9 * a.nbytes


@pytest.mark.timeout(300)
def test_sigusr1_engages_the_kill_switch_while_the_main_thread_is_inside_a_kernel():
    """A Python signal handler would wait for the compiled call to return; the watcher thread
    takes SIGUSR1 itself, so the flag is set while the batch is still being processed."""
    import numpy as np
    from numba import njit

    from kernels.flags import load_flag
    from pipeline.control import RunControl
    from pipeline.engine import KILL_CODES

    @njit(nogil=True)
    def busy(flag, out, n):
        """A long batch that reads the flag before each item and writes its results into another
        array, as the risk check does. With a plain ``flag[0]`` LLVM hoisted the load out of the
        loop (versioned on a run-time overlap check) and the loop never saw the flag."""
        for i in range(n):
            if load_flag(flag, 0) != 0:
                return i
            out[i & 1023] += i
        return -1

    flag = np.zeros(1, np.int64)
    out = np.zeros(1024, np.int64)
    busy(flag, out, 10)  # compile
    with RunControl(None, lambda code: flag.__setitem__(0, code), KILL_CODES, poll_s=0.002, signals=False,
                    usr1=True) as ctl:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        seen = busy(flag, out, 40_000_000_000)   # minutes, unless it sees the flag
    assert ctl.kill is not None and ctl.kill.reason == "signal"
    assert seen > 0, "the flag was not set while the kernel ran"


@pytest.mark.slow
@pytest.mark.parametrize("after_s", [0.01, 0.03, 0.06])  # (a child of a background job starts with SIGINT
                                                        # ignored until the run's handlers are in: >= 10 ms)
def test_ctrl_c_right_after_the_run_directory_still_writes_the_report(samples, tmp_path, after_s):
    """A SIGINT just after ``run dir`` is printed (where QuickFIX used to be imported, which
    reset SIGINT to the default action at the C level until the run's handlers went in): the run
    ends ``interrupted`` with exit 130 and a report, never killed on the spot without one (before
    the import moved ahead of Hydra, 4 of 4 tries 20-80 ms after the line ended with no report)."""
    p = Proc(_args(samples, tmp_path, paced=False), cwd=tmp_path)
    p.wait_line("run dir")
    time.sleep(after_s)
    p.p.send_signal(signal.SIGINT)
    rc = p.wait()
    assert rc == 130, p.text()[-3000:]
    rep = _report(tmp_path)
    assert rep["run"]["status"] == "interrupted" and rep["interrupt"]["signal"] == "SIGINT", rep["interrupt"]
    assert "status     INTERRUPTED: SIGINT" in p.text()


_SIGCGT = r"""
import signal, sys
# Python's own handler, as in a terminal (a child of a background job starts with SIGINT ignored)
signal.signal(signal.SIGINT, signal.default_int_handler)
def caught():
    for line in open("/proc/self/status"):
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16) & 2 != 0
before = caught()
if sys.argv[1] == "plain":
    import quickfix
else:
    from bridges.fix.bridge import import_quickfix
    import_quickfix()
print(before, caught())
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the signal mask from /proc (Linux)")
def test_importing_quickfix_keeps_the_sigint_handler():
    """QuickFIX's module initialisation sets SIGINT to the default action at the C level (the
    plain import shows it: Python's handler is no longer caught), so a Ctrl-C between that import
    and the run's own handlers killed the run with no report. ``import_quickfix`` puts it back."""
    out = {}
    for how in ("plain", "ours"):
        p = subprocess.run([sys.executable, "-c", _SIGCGT, how], cwd=REPO, capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr
        out[how] = p.stdout.split()
    assert out["plain"] == ["True", "False"], out   # the premise: the import drops the handler
    assert out["ours"] == ["True", "True"], out
