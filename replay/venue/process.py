"""Launch the venue simulator as its own process (``python -m replay.venue``).

Used by the run loop and the tests::

    v = VenueProcess("day.pcap", port, "runs/x/venue", "runs/x/sim.clock", entry_latency_ns=20_000)
    v.start()        # returns once the acceptor listens (or raises with the stderr tail)
    ...
    v.kill()         # SIGKILL, mid-run
    v.restart()      # restores from its journal + FIX store and listens again
    v.stop()         # SIGTERM: clean logout, exit
    v.summary()      # positions, fills, outcomes from the journal
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from replay.venue import journal as J

_FLAGS = {
    "app": "--app", "sender": "--sender", "target": "--target", "entry_latency_ns": "--entry-latency-ns",
    "response_latency_ns": "--response-latency-ns", "session_date": "--session-date", "heartbeat": "--heartbeat",
    "data_dictionary": "--data-dictionary", "store": "--store", "max_orders": "--max-orders",
    "max_levels": "--max-levels", "max_symbols": "--max-symbols", "poll_us": "--poll-us",
    "speed": "--speed", "start": "--start", "crash_at": "--crash-at", "step_events": "--step-events",
    "step_delay_ms": "--step-delay-ms",
}
_BOOL_FLAGS = {"reset_on_logon": "--reset-on-logon", "fix_log": "--fix-log"}
#: the names pipeline/config.py VenueConf uses for the same settings
_ALIASES = {"sender_comp_id": "sender", "target_comp_id": "target", "heartbeat_s": "heartbeat",
            "file_log": "fix_log"}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (bind to port 0 and read it back)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


_PR_SET_PDEATHSIG = 1


def _child_setup(parent: int) -> None:
    """In the venue child before exec: SIGTERM when the parent dies, even by SIGKILL (Linux
    ``PR_SET_PDEATHSIG``; the venue logs out and exits on SIGTERM), and its own process group
    (``start_new_session``) so a terminal's Ctrl-C reaches only the bot, which stops the venue in
    order. If the parent is already gone, exit at once."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent's stop() is the only guard
        pass
    if os.getppid() != parent:
        os._exit(1)


#: seconds ``stop`` waits after SIGTERM before SIGKILL
STOP_TIMEOUT_S = 20.0


class VenueStartError(RuntimeError):
    """The venue process died or did not listen in time (the message holds its stderr tail)."""


class VenueProcess:
    def __init__(self, capture: str | os.PathLike | None, port: int, state_dir: str | os.PathLike,
                 clock_path: str | os.PathLike | None, *, start_timeout_s: float = 120.0, python: str | None = None,
                 **cfg: Any):
        cfg = {_ALIASES.get(k, k): v for k, v in cfg.items()}
        unknown = set(cfg) - set(_FLAGS) - set(_BOOL_FLAGS)
        if unknown:
            raise TypeError(f"unknown venue option(s): {sorted(unknown)}; known: {sorted({**_FLAGS, **_BOOL_FLAGS})}")
        self.capture = str(capture) if capture else None
        if int(port) == 0:  # pick a free loopback port now (kept across restarts)
            port = free_port()
        self.port = int(port)
        self.state_dir = Path(state_dir)
        self.clock_path = str(clock_path) if clock_path else None
        self.cfg = cfg
        self.start_timeout_s = start_timeout_s
        self.python = python or sys.executable
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @classmethod
    def from_config(cls, venue_cfg: Any, capture: str | os.PathLike, clock_path: str | os.PathLike,
                    state_dir: str | os.PathLike, port: int | None = None, **extra: Any) -> "VenueProcess":
        """From the ``venue`` config node (``conf/venue/sim.yaml``): ``port``/``state_dir`` given
        here win over the node's (the run loop resolves ``0`` and ``""``)."""
        d = dict(venue_cfg.items() if hasattr(venue_cfg, "items") else venue_cfg)
        d.pop("enabled", None)
        d.pop("state_dir", None)
        cfg_port = d.pop("port", 0)
        timeout = float(d.pop("start_timeout_s", 120.0))
        return cls(capture, int(port if port is not None else cfg_port), state_dir, clock_path,
                   start_timeout_s=timeout, **{**d, **extra})

    # -- command line -----------------------------------------------------------------------------
    def argv(self) -> list[str]:
        a = [self.python, "-m", "replay.venue", "--port", str(self.port), "--state-dir", str(self.state_dir)]
        if self.capture:
            a += ["--capture", self.capture]
        if self.clock_path:
            a += ["--clock", self.clock_path]
        for k, v in self.cfg.items():
            if k in _BOOL_FLAGS:
                if v:
                    a.append(_BOOL_FLAGS[k])
            elif v is not None:
                a += [_FLAGS[k], str(v)]
        return a

    @property
    def stderr_path(self) -> Path:
        return self.state_dir / "venue.stderr"

    def stderr_tail(self, n: int = 4000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> "VenueProcess":
        """Start the process; return once its acceptor listens. Raises VenueStartError with the
        process's stderr tail if it exits or does not get there in ``start_timeout_s``."""
        return self.spawn().wait_ready()

    def spawn(self) -> "VenueProcess":
        """Start the process and return at once (it compiles and replays its set-up on its own
        core meanwhile); ``wait_ready`` waits until its acceptor listens."""
        if self.alive():
            raise RuntimeError(f"venue already running (pid {self.proc.pid})")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "venue.ready").unlink(missing_ok=True)
        repo = Path(__file__).resolve().parents[2]
        env = dict(os.environ)
        env["PYTHONPATH"] = str(repo) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(self.stderr_path, "ab") as err:
            parent = os.getpid()
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env,
                                         cwd=str(repo), start_new_session=True,
                                         preexec_fn=lambda: _child_setup(parent))
        self.starts += 1
        self._deadline = time.monotonic() + self.start_timeout_s
        return self

    def wait_ready(self) -> "VenueProcess":
        """Wait (``start_timeout_s`` from ``spawn``) until the spawned process listens."""
        ready = self.state_dir / "venue.ready"
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise VenueStartError(f"venue exited with status {rc} during start-up "
                                      f"({' '.join(self.argv())}):\n{self.stderr_tail()}")
            if ready.is_file():
                try:
                    pid = int(ready.read_text().split()[0])
                except (ValueError, IndexError):
                    pid = -1
                if pid == self.proc.pid:
                    return self
            if time.monotonic() > self._deadline:
                self.kill()
                raise VenueStartError(f"venue did not listen on port {self.port} within {self.start_timeout_s:.0f}s:"
                                      f"\n{self.stderr_tail()}")
            time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def kill(self) -> None:
        """SIGKILL (a crash: nothing is flushed beyond what the journal and store already hold),
        then wait for the exit."""
        self.kill_now()
        if self.proc is not None:
            self.proc.wait()

    def kill_now(self) -> None:
        """SIGKILL without waiting for the exit: what a signal handler may call. ``kill`` waits
        in ``Popen.wait``, which takes Popen's waitpid lock; a handler that interrupted the main
        thread inside ``Popen.poll`` (``alive``, called every 10 ms while cancels drain) found
        the lock held by the very frame it interrupted and waited forever: a second Ctrl-C then
        hung the run (tests/test_run_control.py reproduces it). The process is reaped by the
        next ``poll``/``wait``, or by init once this process exits."""
        p = self.proc
        if p is not None and p.returncode is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:   # already gone (a zombie not yet reaped still takes it)
                pass

    def restart(self) -> "VenueProcess":
        self.kill()
        return self.start()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM: the acceptor logs out and the process exits; SIGKILL after ``timeout_s``.
        Returns the exit status (None if never started; ``-9`` when it had to be killed).

        SIGCONT follows the SIGTERM (as systemd sends it): a stopped venue (SIGSTOP, Ctrl-Z, a
        debugger detached) takes a SIGTERM only once continued, so it used to sit out the whole
        ``timeout_s`` and be killed (a run's stop took 21.6 s); continued, it logs out and exits."""
        if self.proc is None:
            return None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            self.proc.send_signal(signal.SIGCONT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> "VenueProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- results --------------------------------------------------------------------------------------
    def fills(self) -> dict[str, list[dict[str, int]]]:
        """Per ClOrdID, the fills the venue sent (from its journal)."""
        return J.fills(self.state_dir)

    def summary(self) -> dict[str, Any]:
        """Per-symbol net positions, fills, order outcomes and acks per ClOrdID (from its journal)."""
        return J.summary(self.state_dir)
