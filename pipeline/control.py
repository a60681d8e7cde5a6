"""Run control: the kill switch and the stop signals, from outside the process.

The kill switch is engaged from another shell (``hftbot kill``), another directory, another
process or a signal; it must take effect within a bounded time whatever the run loop is doing.

- **Kill file.** ``risk.kill.file`` is resolved to an absolute path at start (relative paths are
  taken from the repository root, so ``hftbot kill`` run from any directory finds the same file)
  and printed in the banner. A watcher thread ``stat()``s it every ``risk.kill.poll_ms`` and, the
  moment it appears, engages the switch in the engine's state (a write to risk's ``g`` array, or
  a request in the GPU pipeline's mapped control block): the compiled risk check reads that flag
  before every intent, so orders stop within one poll interval even in the middle of a batch. The
  cancels for working orders go out at the next batch boundary (``Engine.service_kill``).
- **SIGUSR1** (``hftbot kill --pid``) does the same, seen by the same thread: Python's C-level
  handler writes the signal number to a wake-up socket (``signal.set_wakeup_fd``) at once, in
  whatever thread the kernel delivered it to, and the watcher waits on that socket. A Python
  signal handler alone would run only once the main thread is back in the interpreter, i.e. after
  the compiled call of the current batch (measured: a 16 s kernel never saw it).
- **A leftover kill file refuses the start** (``KillFileError``), with the command that clears it:
  a forgotten file must not silently reject every order of the next run.
- **SIGINT / SIGTERM** request a clean stop (``stop_requested``): the run loop stops taking market
  data, cancels working orders, waits (bounded) for their acks, logs out, stops the venue and
  writes the report marked ``interrupted``. A second signal forces the exit: children are killed
  and the process exits at once with 128 + the signal number.

Every run writes ``control.json`` in its run directory (pid, kill file) so that
``hftbot kill --run DIR`` needs nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

#: the repository root: relative kill-file paths are resolved against it
REPO = Path(__file__).resolve().parents[1]

#: exit statuses of ``hftbot run`` (README "Exit status")
RC_OK = 0
RC_ERROR = 1
RC_CONFIG = 2
RC_KILLED = 3
RC_INCOMPLETE = 4     # the replay ran to its end but the local venue did not drain (report ``incomplete``)
RC_INTERRUPTED = 130  # like a shell: 128 + SIGINT (SIGTERM: 143)


class KillFileError(RuntimeError):
    """A kill file from an earlier run is still present: the run refuses to start."""


def resolve_kill_file(path: str | os.PathLike | None) -> Path | None:
    """The absolute kill-file path for ``risk.kill.file`` (relative: from the repository root)."""
    if not path:
        return None
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else (REPO / p).resolve()


def refuse_leftover(kill_file: Path | None) -> None:
    if kill_file is not None and kill_file.exists():
        try:
            age = time.time() - kill_file.stat().st_mtime
            when = f", left {age:,.0f} s ago"
        except OSError:
            when = ""
        raise KillFileError(f"the kill file {kill_file} exists{when}: the kill switch of an earlier run is still "
                            f"engaged. Remove it to trade again (rm {kill_file}), or run with "
                            f"risk.kill.file=<another path>")


@dataclass
class KillEvent:
    """When and why the kill switch engaged, for the log line and the report."""

    reason: str
    source: str                # "file <path>", "signal SIGUSR1", "limit"
    wall_ns: int               # time.time_ns() when the process saw it
    mono_ns: int               # perf_counter_ns() when the process saw it
    file_mtime_ns: int = 0     # the kill file's mtime (the reaction time is wall_ns - this)
    cancels: int = 0           # cancel requests emitted for working orders
    open_orders_at_kill: int = 0

    def as_dict(self) -> dict[str, Any]:
        react = (self.wall_ns - self.file_mtime_ns) / 1e6 if self.file_mtime_ns else None
        return {"engaged": True, "reason": self.reason, "source": self.source,
                "at_utc": _utc(self.wall_ns), "reaction_ms": react, "cancels_sent": self.cancels,
                "open_orders_at_kill": self.open_orders_at_kill}


def _utc(ns: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).isoformat(timespec="microseconds")


@dataclass
class RunControl:
    """Signals and the kill-file watcher for one run (main thread installs, ``close`` restores).

    ``engage(reason_code)`` is the engine's thread-safe kill request (a flag write)."""

    kill_file: Path | None
    engage: Callable[[int], None]
    kill_codes: dict[str, int]
    poll_s: float = 0.005
    signals: bool = True
    usr1: bool = True
    on_force: Callable[[], None] | None = None
    stop_requested: str = ""          # "SIGINT" / "SIGTERM" once a stop was asked for
    kill: KillEvent | None = None
    _old: dict[int, Any] = field(default_factory=dict)
    _thread: threading.Thread | None = None
    _wake_r: Any = None
    _wake_w: Any = None
    _old_wakeup: int = -1
    _done: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> "RunControl":
        if self.signals:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._on_stop)
        if self.usr1:
            self._old[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, self._on_usr1)
        if self._old:
            import socket

            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._old_wakeup = signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        if self.kill_file is not None or self.usr1:
            self._thread = threading.Thread(target=self._watch, name="hftbot-kill-watch", daemon=True)
            self._thread.start()
        return self

    def reassert(self) -> None:
        """Install the handlers again at the C level. Needed after ``import quickfix``: its module
        initialisation resets SIGINT to the default action behind Python's back (measured:
        /proc/self/status SigCgt loses SIGINT while ``signal.getsignal`` still names our
        handler), after which Ctrl-C killed the run with no report and an orphaned venue."""
        for s in list(self._old):
            signal.signal(s, signal.getsignal(s))

    def close(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(1.0)
        if self._wake_w is not None:
            signal.set_wakeup_fd(self._old_wakeup)
            self._wake_r.close()
            self._wake_w.close()
            self._wake_r = self._wake_w = None
        for s, old in self._old.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)
        self._old.clear()

    def __enter__(self) -> "RunControl":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- kill ---------------------------------------------------------------------------------------
    def _engage(self, reason: str, source: str, mtime_ns: int = 0) -> None:
        with self._lock:
            if self.kill is not None:
                return
            self.engage(self.kill_codes[reason])
            self.kill = KillEvent(reason, source, time.time_ns(), time.perf_counter_ns(), mtime_ns)

    def _watch(self) -> None:
        import select

        path = str(self.kill_file) if self.kill_file is not None else None
        usr1 = int(signal.SIGUSR1)
        while not self._done.is_set():
            r = self._wake_r
            if r is not None:
                try:
                    ready, _, _ = select.select([r], [], [], self.poll_s)
                    got = r.recv(512) if ready else b""
                except (OSError, ValueError):   # closed by close()
                    return
                if self.usr1 and usr1 in got:
                    self._engage("signal", "signal SIGUSR1")
            elif self._done.wait(self.poll_s):
                return
            if path is not None and self.kill is None:
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                self._engage("file", f"file {path}", st.st_mtime_ns)

    def _on_usr1(self, signum, frame) -> None:  # noqa: ARG002
        """Nothing to do here: Python's C-level handler has already written the signal number to
        the wake-up socket, and the watcher thread engages the switch. (Engaging here, in the main
        thread between two bytecodes, could deadlock on ``_lock`` held by ``note_limit_kill``.)"""

    def note_limit_kill(self, reason: str) -> None:
        """The engine's own state engaged the switch (loss or drawdown limit)."""
        with self._lock:
            if self.kill is None:
                self.kill = KillEvent(reason, "limit", time.time_ns(), time.perf_counter_ns())

    # -- stop ---------------------------------------------------------------------------------------
    def _on_stop(self, signum, frame) -> None:  # noqa: ARG002
        name = signal.Signals(signum).name
        if self.stop_requested:
            # the second signal: no more waiting
            if self.on_force is not None:
                try:
                    self.on_force()
                finally:
                    os._exit(128 + signum)
            os._exit(128 + signum)
        self.stop_requested = name

    @property
    def stop_signal(self) -> int:
        return int(getattr(signal, self.stop_requested, 0)) if self.stop_requested else 0


def write_control_file(run_dir: Path, kill_file: Path | None) -> Path:
    """``control.json`` in the run directory: what ``hftbot kill --run DIR`` needs."""
    run_dir.mkdir(parents=True, exist_ok=True)
    p = run_dir / "control.json"
    p.write_text(json.dumps({"pid": os.getpid(), "kill_file": str(kill_file) if kill_file else None}) + "\n")
    return p


def read_control_file(run_dir: Path) -> dict[str, Any]:
    p = Path(run_dir) / "control.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found: --run must name a run directory (runs/DATE/TIME) of a run "
                                "started by this version")
    return json.loads(p.read_text())
