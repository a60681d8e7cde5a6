"""The end-of-replay drain: the venue advances in bounded steps and publishes its progress after
each; the bot waits as long as the venue makes progress and gives up only after
``bridge.drain_timeout_s`` seconds without any; a venue that did not drain makes the run
``incomplete`` (exit status 4) with ``execution.drain`` saying how far it got."""

from __future__ import annotations

import pytest

from replay.simclock import SimClock
from replay.venue.matching import BUY, SELL, TIF_DAY, Action, MatchingEngine, event_table

P = 1_000_000
TICK = 100


def _events() -> list[dict]:
    """AAPL trading; several events share a timestamp (ts 30: three of them)."""
    rows = [dict(kind="R", locate=1, stock="AAPL", ts=1),
            dict(kind="H", locate=1, stock="AAPL", ts=2, alpha=[ord("T")] + [0] * 11),
            dict(kind="A", locate=1, stock="AAPL", side="B", ref=10, shares=100, price=P, ts=10),
            dict(kind="A", locate=1, stock="AAPL", side="B", ref=11, shares=200, price=P, ts=11),
            dict(kind="A", locate=1, stock="AAPL", side="S", ref=12, shares=300, price=P + TICK, ts=12),
            dict(kind="E", locate=1, ref=10, shares=100, ts=30),
            dict(kind="E", locate=1, ref=11, shares=50, ts=30),
            dict(kind="A", locate=1, stock="AAPL", side="B", ref=13, shares=500, price=P, ts=30),
            dict(kind="E", locate=1, ref=11, shares=150, ts=40),
            dict(kind="E", locate=1, ref=13, shares=300, ts=50),
            dict(kind="X", locate=1, ref=12, shares=100, ts=55),
            dict(kind="E", locate=1, ref=13, shares=100, ts=60)]
    return rows


def _engine() -> MatchingEngine:
    # two capture batches: a step never runs past the end of one
    ev = _events()
    return MatchingEngine([event_table(ev[:7]), event_table(ev[7:])], max_orders=1024, max_levels=256,
                          max_symbols=16)


def _acts() -> list[Action]:
    return [Action("new", "a-1", "AAPL", BUY, 250, P, TIF_DAY, ts=20),
            Action("new", "a-2", "AAPL", SELL, 100, P + 2 * TICK, TIF_DAY, ts=21),
            Action("replace", "a-3", "AAPL", BUY, 200, P, TIF_DAY, orig="a-1", ts=35),
            Action("cancel", "a-4", "AAPL", SELL, 100, orig="a-2", ts=48)]


@pytest.mark.parametrize("max_events", [1, 2, 3, 1000])
def test_stepped_advance_equals_one_advance_and_each_step_is_bounded(max_events):
    one, stepped = _engine(), _engine()
    for a in _acts():
        one.receive(Action.from_dict(a.to_dict()))
        stepped.receive(Action.from_dict(a.to_dict()))
    one.advance(70)
    clocks, sizes = [], []
    while stepped.clock_ns < 70:
        before = stepped.counters["events"]
        t = stepped.step_target(70, max_events)
        assert stepped.clock_ns < t <= 70          # every step moves the clock
        stepped.advance(t)
        clocks.append(stepped.clock_ns)
        sizes.append(stepped.counters["events"] - before)
    assert [r.to_dict() for r in stepped.take_reports()] == [r.to_dict() for r in one.take_reports()]
    # (relevant_events counts the events the matcher looked at: work, which depends on the ranges)
    work = ("relevant_events",)
    assert {k: v for k, v in stepped.counters.items() if k not in work} == \
        {k: v for k, v in one.counters.items() if k not in work}
    assert stepped.counters["events"] == len(_events())
    assert clocks == sorted(clocks)
    # at most max_events per step, plus the others that share the step's last timestamp (3 at ts 30)
    assert max(sizes) <= max_events + 2
    if max_events == 1:
        assert len(sizes) >= 8                      # the catch-up was published in small steps


def test_step_target_without_due_events_moves_the_clock_to_the_target():
    e = _engine()
    e.advance(70)
    assert e.step_target(100, 1) == 100             # the capture is over
    e2 = _engine()
    assert e2.step_target(0, 5) == 0                # the first event is later than the target


def test_sim_clock_carries_the_venues_event_count(tmp_path):
    with SimClock(tmp_path / "c", create=True) as bot, SimClock(tmp_path / "c") as venue:
        assert bot.venue_events == 0
        venue.venue_events = 12_345
        assert bot.venue_events == 12_345 and bot.snapshot()["venue_events"] == 12_345


# --- the whole run ----------------------------------------------------------------------------------

def _cfg(tmp_path, *more: str):
    from hydra import compose, initialize_config_dir

    from pipeline.app import CONF_DIR
    from pipeline.config import register

    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("smoke", overrides=[f"feed.sample.dir={tmp_path.parent / 'samples'}",
                                           "feed.sample.messages=20000", f"risk.kill.file={tmp_path / 'KILL'}",
                                           *more])


def _slow_venue(monkeypatch, *flags: str) -> None:
    """The run's venue process started with extra flags (``--step-events``, ``--step-delay-ms``)."""
    from replay.venue.process import VenueProcess

    argv = VenueProcess.argv
    monkeypatch.setattr(VenueProcess, "argv", lambda self: argv(self) + list(flags))


def _run(tmp_path, *more: str):
    from pipeline.run import run
    from replay.run_report import validate_report

    lines: list[str] = []
    rep = run(_cfg(tmp_path, *more), out_dir=tmp_path / "run", log=lines.append, signals=False)
    validate_report(rep)
    return rep, "\n".join(str(x) for x in lines)


@pytest.mark.timeout(300)
def test_a_venue_that_keeps_moving_past_the_timeout_still_drains(tmp_path, monkeypatch):
    pytest.importorskip("quickfix")
    # 20,000 events in steps of 500, 100 ms after each: the catch-up takes > 40 x 0.1 = 4 s, far
    # past a 1 s timeout; no pause between two steps comes near it
    _slow_venue(monkeypatch, "--step-events", "500", "--step-delay-ms", "100")
    rep, out = _run(tmp_path, "bridge.drain_timeout_s=1")
    d = rep["execution"]["drain"]
    assert d["outcome"] == "drained" and d["drained"], (d, out[-3000:])
    assert rep["run"]["status"] == "completed" and rep["run"]["exit_code"] == 0
    assert d["wait_s"] > d["timeout_s"]              # it did wait past the timeout (sleeps: a lower bound)
    assert d["venue_events"] == d["feed_events"] == rep["feed"]["decoded"] > 0
    assert d["venue_clock_ns"] >= d["market_clock_ns"] > 0
    assert "NOT DRAINED" not in out


@pytest.mark.timeout(300)
def test_a_stalled_venue_makes_the_run_incomplete_and_says_how_far_it_got(tmp_path, monkeypatch):
    pytest.importorskip("quickfix")
    # after its first step of 500 events the venue waits 10 minutes (a stop signal ends the wait)
    _slow_venue(monkeypatch, "--step-events", "500", "--step-delay-ms", "600000")
    rep, out = _run(tmp_path, "bridge.drain_timeout_s=0.5")
    d = rep["execution"]["drain"]
    assert d["outcome"] == "stalled" and not d["drained"], d
    assert rep["run"]["status"] == "incomplete" and rep["run"]["exit_code"] == 4
    assert 0 < d["venue_events"] < d["feed_events"] == rep["feed"]["decoded"]
    assert d["venue_clock_ns"] < d["market_clock_ns"]
    assert "venue      NOT DRAINED: no progress for bridge.drain_timeout_s=0.5 s" in out
    assert "status     INCOMPLETE: the venue did not drain (no progress for bridge.drain_timeout_s=0.5 s): " \
           f"it applied {d['venue_events']:,} of {d['feed_events']:,} market events" in out
    saved = (tmp_path / "run" / "report.json").read_text()
    assert '"outcome": "stalled"' in saved


@pytest.mark.timeout(300)
def test_a_venue_that_dies_before_draining_makes_the_run_incomplete(tmp_path, monkeypatch):
    pytest.importorskip("quickfix")
    from pipeline.execution import Execution

    _slow_venue(monkeypatch, "--step-events", "500", "--step-delay-ms", "600000")
    finish = Execution.finish

    def kill_then_finish(self, **kw):
        self.venue.kill()
        finish(self, **kw)

    monkeypatch.setattr(Execution, "finish", kill_then_finish)
    rep, out = _run(tmp_path, "bridge.drain_timeout_s=60")
    d = rep["execution"]["drain"]
    assert d["outcome"] == "venue_exited" and rep["run"]["status"] == "incomplete", d
    assert rep["run"]["exit_code"] == 4 and d["venue_events"] < d["feed_events"]
    assert "venue      NOT DRAINED: the simulator exited" in out


def test_a_run_without_fix_has_an_empty_drain_entry(tmp_path):
    rep, _ = _run(tmp_path, "bridge=off")
    assert rep["execution"]["drain"]["outcome"] == "not_waited" and rep["run"]["status"] == "completed"


@pytest.mark.parametrize("bad", ["0", "-1"])
def test_the_drain_timeout_must_be_positive(tmp_path, bad):
    from pipeline.config import ConfigError, validate

    with pytest.raises(ConfigError, match="bridge.drain_timeout_s"):
        validate(_cfg(tmp_path, f"bridge.drain_timeout_s={bad}"))
