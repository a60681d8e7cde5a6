"""Prometheus metrics of a run (replay or live), served on ``metrics.host:metrics.port``.

Nothing here runs on the hot path: ``RunCollector`` is a custom collector, and every figure is
read *at scrape time* from the state the run already keeps — the reader's feed counters
(``kernels/stats.py``), risk's state and counter arrays (``RiskStage.summary()`` and its
``state`` tables), the FIX bridge's counters and order table, and the engine's latency
histograms (HdrHistogram counts turned into Prometheus buckets). Scrapes come from the HTTP
server's thread; the arrays are read while the run writes them (64-bit reads, no locks), so
a scrape during a batch can be a batch behind, never torn.

The names (``hftbot_*``; counters end in ``_total``, money in ``_usd``, times in ``_seconds``)
are what ``docker/grafana/dashboards/hftbot.json`` plots. ``METRICS`` lists every family.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable, Iterator

import numpy as np

#: every metric family this module exports, with its type (the dashboard and the tests use them)
METRICS: dict[str, str] = {
    "hftbot_run_info": "gauge", "hftbot_run_stage": "gauge", "hftbot_run_uptime_seconds": "gauge",
    "hftbot_input_size_bytes": "gauge", "hftbot_input_read_bytes_total": "counter",
    "hftbot_feed_time_seconds": "gauge",
    "hftbot_feed_packets_total": "counter", "hftbot_feed_mold_packets_total": "counter",
    "hftbot_feed_messages_total": "counter", "hftbot_feed_decoded_total": "counter",
    "hftbot_feed_messages_by_type_total": "counter", "hftbot_feed_gaps_total": "counter",
    "hftbot_feed_gap_messages_total": "counter", "hftbot_feed_drops_total": "counter",
    "hftbot_live_counter": "gauge",
    "hftbot_intents_total": "counter", "hftbot_intents_accepted_total": "counter",
    "hftbot_intents_rejected_total": "counter", "hftbot_risk_rejects_total": "counter",
    "hftbot_risk_exec_events_total": "counter", "hftbot_risk_fills_total": "counter",
    "hftbot_risk_cancels_total": "counter", "hftbot_hedges_total": "counter",
    "hftbot_open_orders": "gauge", "hftbot_pnl_usd": "gauge", "hftbot_exposure_usd": "gauge",
    "hftbot_position_shares": "gauge", "hftbot_positions": "gauge", "hftbot_stale_symbols": "gauge",
    "hftbot_sessions_gap_open": "gauge", "hftbot_kill_switch": "gauge", "hftbot_strategies_disabled": "gauge",
    "hftbot_fix_session_up": "gauge",
    "hftbot_orders_sent_total": "counter", "hftbot_fix_messages_sent_total": "counter",
    "hftbot_fix_reports_total": "counter", "hftbot_fills_total": "counter", "hftbot_filled_shares_total": "counter",
    "hftbot_orders": "gauge", "hftbot_venue_rejects_total": "counter",
    "hftbot_fix_session_events_total": "counter",
    "hftbot_stage_latency_seconds": "histogram",
}

#: the run's stages in order (``hftbot_run_stage{stage=...}`` is 1 for the current one)
STAGES = ("config", "feed", "build", "compile", "connect", "replay", "drain", "done")

#: histogram bucket upper bounds, ns (log scale, 100 ns .. 10 s)
BUCKETS_NS = np.array([m * 10**e for e in range(2, 10) for m in (1, 2.5, 5)] + [1e10], dtype=np.float64)

#: the FIX session's events (``hftbot_fix_session_events_total{event=...}``) <- bridge counter keys
FIX_EVENTS = {"logon": "logons", "logout": "logouts", "session_reject": "session_rejects",
              "business_reject": "business_rejects", "resend_possresend": "resent_possresend",
              "duplicate_report": "duplicate_reports", "bad_report": "bad_reports",
              "unknown_clordid": "unknown_clordid", "illegal_transition": "illegal_transitions",
              "callback_error": "callback_errors", "bad_row": "bad_rows"}


class MetricsError(OSError):
    """The metrics endpoint could not be opened (the message names ``metrics.port``)."""


def _usd(v: int) -> float:
    return int(v) / 10_000


class _Hdr:
    """HdrHistogram -> Prometheus buckets, by the counts array (no per-value Python loop)."""

    _low: dict[tuple[int, int, int], np.ndarray] = {}

    @classmethod
    def buckets(cls, h) -> tuple[list[tuple[str, float]], float, int]:
        key = (int(h.lowest_trackable_value), int(h.highest_trackable_value), int(h.significant_figures))
        low = cls._low.get(key)
        if low is None:
            low = cls._low[key] = np.array([h.get_value_from_index(i) for i in range(h.counts_len)], np.float64)
        counts = np.array(np.ctypeslib.as_array(h.counts), dtype=np.float64)
        nz = np.nonzero(counts)[0]
        total = int(counts.sum())
        cum = np.cumsum(np.bincount(np.searchsorted(BUCKETS_NS, low[nz], side="left"), weights=counts[nz],
                                    minlength=len(BUCKETS_NS) + 1))
        out = [(repr(float(b) / 1e9), float(c)) for b, c in zip(BUCKETS_NS, cum[:-1])]
        out.append(("+Inf", float(total)))
        s = float((low[nz] * counts[nz]).sum()) / 1e9
        return out, s, total


class RunCollector:
    """Reads a run's state at scrape time. ``source`` is the run (``pipeline.run.Run``): its
    ``stage``, ``reader``, ``engine`` (the ``pipeline.engine.Engine`` interface: ``risk``, ``lat``),
    ``ex`` (``pipeline.execution.Execution``: ``bridge``, ``lat``), ``rep['run']`` and
    ``feed_ts`` (the newest ITCH timestamp, ns since midnight), each None until it exists."""

    def __init__(self, source: Any):
        self.src = source
        self.t0 = time.time()
        self.errors = 0
        #: set by the first scrape that began after the run ended (its final values)
        self.final_scrape = threading.Event()

    def describe(self) -> list:
        return []  # families vary with the run; no up-front registration check

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        final = self.src.stage == "done"
        out: list[Any] = []
        for part in (self._run, self._feed, self._risk, self._fix, self._latency):
            try:
                out.extend(part())
            except Exception:  # noqa: BLE001 - a scrape during start-up or shutdown must not fail the run
                self.errors += 1
        g = GaugeMetricFamily("hftbot_metrics_collect_errors", "Parts of a scrape that could not be read "
                              "(a run starting or stopping)")
        g.add_metric([], self.errors)
        out.append(g)
        if final:
            self.final_scrape.set()
        yield from out

    # -- parts --------------------------------------------------------------------------------------
    def _run(self) -> list:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        src = self.src
        meta = src.rep["run"]
        info = GaugeMetricFamily("hftbot_run_info", "The run: config hash, backend, engine, input (always 1)",
                                 labels=["config_hash", "backend", "engine", "input"])
        info.add_metric([str(meta.get("config_hash", "")), str(meta.get("backend", "")),
                         str(meta.get("engine") or ""), str(src.rep["input"].get("path") or "")], 1)
        stage = GaugeMetricFamily("hftbot_run_stage", "1 for the stage the run is in", labels=["stage"])
        now = src.stage if src.stage in STAGES else "done"
        for s in STAGES:
            stage.add_metric([s], 1.0 if s == now else 0.0)
        up = GaugeMetricFamily("hftbot_run_uptime_seconds", "Seconds since the run started")
        up.add_metric([], time.time() - self.t0)
        out = [info, stage, up]
        rd = src.reader
        if rd is not None:
            size = GaugeMetricFamily("hftbot_input_size_bytes", "Size of the input file (0: live)")
            size.add_metric([], float(getattr(src, "input_size", 0) or 0))
            read = CounterMetricFamily("hftbot_input_read_bytes", "Bytes of the input read so far")
            read.add_metric([], float(getattr(rd, "bytes_read", 0)))
            out += [size, read]
        ts = int(getattr(src, "feed_ts", 0) or 0)
        ft = GaugeMetricFamily("hftbot_feed_time_seconds", "Newest ITCH timestamp processed (seconds since "
                               "midnight of the feed's day)")
        ft.add_metric([], ts / 1e9)
        out.append(ft)
        return out

    def _feed(self) -> list:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from kernels import stats as S

        rd = self.src.reader
        if rd is None:
            return []
        st = np.array(rd.stats, dtype=np.int64)  # one copy: the families agree with each other

        def counter(name: str, help_: str, slot: int) -> Any:
            c = CounterMetricFamily(name, help_)
            c.add_metric([], float(st[slot]))
            return c

        out = [counter("hftbot_feed_packets", "Capture records / datagrams received", S.PACKETS),
               counter("hftbot_feed_mold_packets", "MoldUDP64 packets", S.MOLD_PACKETS),
               counter("hftbot_feed_messages", "ITCH messages handed to decode", S.MESSAGES_IN),
               counter("hftbot_feed_decoded", "ITCH messages decoded", S.DECODED),
               counter("hftbot_feed_gaps", "MoldUDP64 sequence gaps", S.MOLD_GAPS),
               counter("hftbot_feed_gap_messages", "Messages missing in gaps", S.MOLD_GAP_MESSAGES)]
        by_type = CounterMetricFamily("hftbot_feed_messages_by_type", "Messages decoded by ITCH type",
                                      labels=["type"])
        for t in np.nonzero(st[S.TYPE_BASE:S.TYPE_BASE + 256])[0]:
            by_type.add_metric([chr(int(t))], float(st[S.TYPE_BASE + t]))
        drops = CounterMetricFamily("hftbot_feed_drops", "Input skipped or dropped, by reason", labels=["reason"])
        for name, slot in S.PROBLEMS.items():
            drops.add_metric([name], float(st[slot]))
        drops.add_metric(["duplicate_messages"], float(st[S.MOLD_DUP_MESSAGES]))
        out += [by_type, drops]
        if hasattr(rd, "counters"):  # a live source: its own counters (rings, XDP verdicts, gap recovery)
            live = GaugeMetricFamily("hftbot_live_counter", "Counters of the live receive path", labels=["name"])
            for k, v in _flat(rd.counters()):
                live.add_metric([k], float(v))
            out.append(live)
        return out

    def _risk(self) -> list:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        e = self.src.engine
        if e is None:
            return []
        risk = e.risk
        sm = risk.summary()

        def one(cls, name: str, help_: str, value: float) -> Any:
            m = cls(name, help_)
            m.add_metric([], float(value))
            return m

        out = [one(CounterMetricFamily, "hftbot_intents", "Order intents checked by risk", sm["intents"]),
               one(CounterMetricFamily, "hftbot_intents_accepted", "Intents accepted by risk", sm["accepted"]),
               one(CounterMetricFamily, "hftbot_intents_rejected", "Intents rejected by risk", sm["rejected"]),
               one(CounterMetricFamily, "hftbot_risk_exec_events", "Execution events applied by risk",
                   sm["exec_events"]),
               one(CounterMetricFamily, "hftbot_risk_fills", "Fills applied to risk's positions", sm["fills"]),
               one(CounterMetricFamily, "hftbot_hedges", "Hedge orders accepted", sm["hedges"]["sent"]),
               one(GaugeMetricFamily, "hftbot_open_orders", "Working orders in risk's book", sm["open_orders"]),
               one(GaugeMetricFamily, "hftbot_fix_session_up", "1 while risk sees the FIX session up",
                   0 if sm["disconnected"] else 1),
               one(GaugeMetricFamily, "hftbot_strategies_disabled", "Strategies disabled by the execution throttle",
                   len(sm["strategies_disabled"])),
               one(GaugeMetricFamily, "hftbot_sessions_gap_open", "Feed sessions with an open gap",
                   len(sm["feed"]["sessions_with_open_gap"])),
               one(GaugeMetricFamily, "hftbot_positions", "Symbols with a non-zero position",
                   sum(1 for p in sm["positions"].values() if p["position"]))]
        rej = CounterMetricFamily("hftbot_risk_rejects", "Intents (and hedges) rejected by risk, by reason",
                                  labels=["reason"])
        for k, v in sm["rejections"].items():
            rej.add_metric([k], float(v))
        canc = CounterMetricFamily("hftbot_risk_cancels", "Cancels made by risk, by reason", labels=["reason"])
        for k, v in sm["risk_cancels"].items():
            canc.add_metric([k], float(v))
        pnl = GaugeMetricFamily("hftbot_pnl_usd", "PnL in dollars", labels=["kind"])
        for k, v in sm["pnl"].items():
            pnl.add_metric([k], _usd(v))
        exp = GaugeMetricFamily("hftbot_exposure_usd", "Exposure in dollars", labels=["kind"])
        for k, v in sm["exposure"].items():
            exp.add_metric([k], _usd(v))
        pos = GaugeMetricFamily("hftbot_position_shares", "Position per traded symbol, shares (+ long)",
                                labels=["symbol"])
        for name, p in sm["positions"].items():
            pos.add_metric([name], float(p["position"]))
        kill = GaugeMetricFamily("hftbot_kill_switch", "1 once the kill switch is engaged (label: why)",
                                 labels=["reason"])
        kill.add_metric([sm["kill_switch"]], 0.0 if sm["kill_switch"] == "off" else 1.0)
        stale = GaugeMetricFamily("hftbot_stale_symbols", "Symbols risk holds as unsound: their feed session has "
                                  "an open gap or is silent longer than risk.stale.silence_ns")
        stale.add_metric([], float(stale_symbols(risk)))
        return out + [rej, canc, pnl, exp, pos, kill, stale]

    def _fix(self) -> list:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from bridges.fix import codec as C
        from kernels import intents as IN
        from pipeline.execution import ORD_REJ_REASONS

        ex = self.src.ex
        br = getattr(ex, "bridge", None)
        if br is None:
            return []
        c = br.counters()
        sent = CounterMetricFamily("hftbot_fix_messages_sent", "FIX order messages sent, by kind", labels=["kind"])
        for k in ("new", "cancel", "replace"):
            sent.add_metric([k], float(c[f"{k}_sent"]))
        orders = CounterMetricFamily("hftbot_orders_sent", "New orders sent to the venue")
        orders.add_metric([], float(c["new_sent"]))
        reports = CounterMetricFamily("hftbot_fix_reports", "Execution reports received")
        reports.add_metric([], float(c["reports"]))
        n_fills = sum(int(f.shape[0]) for f in list(br.fills))
        shares = sum(int(f[:, 1].sum()) for f in list(br.fills))
        fills = CounterMetricFamily("hftbot_fills", "Fills received from the venue")
        fills.add_metric([], float(n_fills))
        fsh = CounterMetricFamily("hftbot_filled_shares", "Shares filled")
        fsh.add_metric([], float(shares))
        state = GaugeMetricFamily("hftbot_orders", "Orders sent, by their state now", labels=["state"])
        for k in ("filled", "partially_filled", "cancelled", "rejected", "working"):
            state.add_metric([k], float(c[f"orders_{k}"]))
        n = int(c["messages_sent"])
        ot = br.ot[:n]
        rows = (ot[:, C.O_STATE] == C.ST_REJECTED) & (ot[:, C.O_KIND] == IN.KIND_NEW)
        vrej = CounterMetricFamily("hftbot_venue_rejects", "New orders rejected by the venue, by reason",
                                   labels=["reason"])
        for r, k in zip(*np.unique(ot[rows, C.O_REJ], return_counts=True)):
            vrej.add_metric([ORD_REJ_REASONS.get(int(r), f"code_{int(r)}")], float(k))
        ev = CounterMetricFamily("hftbot_fix_session_events", "FIX session events", labels=["event"])
        for name, key in FIX_EVENTS.items():
            ev.add_metric([name], float(c[key]))
        return [sent, orders, reports, fills, fsh, state, vrej, ev]

    def _latency(self) -> list:
        from prometheus_client.core import HistogramMetricFamily

        fam = HistogramMetricFamily("hftbot_stage_latency_seconds", "Latency per stage (the run report's HdrHistograms; "
                                    "names ending _batch_avg_* count one value per batch)", labels=["stage"])
        for owner in (self.src.engine, self.src.ex):
            lat = getattr(owner, "lat", None)
            if lat is None:
                continue
            for name, h in list(lat.h.items()):
                buckets, s, total = _Hdr.buckets(h)
                if total:
                    fam.add_metric([name], buckets, s)
        return [fam]


def stale_symbols(risk: Any) -> int:
    """Symbols seen on the feed whose session has an open gap, or (with
    ``risk.stale.silence_ns``) whose session's newest message lags the feed's newest by more
    than the silence limit: what risk's stale check refuses orders for."""
    from kernels import risk as R

    st = risk.state
    sess = st.ps[:, R.PS_SESS]
    seen = sess >= 0
    if not seen.any():
        return 0
    hs = st.hs
    s = np.clip(sess[seen], 0, hs.shape[0] - 1)
    bad = hs[s, R.HS_GAP_OPEN] != 0
    silence = int(risk.lim[R.L_SILENCE_NS])
    if silence > 0:
        newest = int(hs[:, R.HS_LAST_TS].max())
        bad |= newest - hs[s, R.HS_LAST_TS] > silence
    return int(bad.sum())


def _flat(d: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _flat(v, f"{prefix}{k}" if not prefix else f"{prefix}.{k}")
    elif isinstance(d, (bool, int, float, np.integer, np.floating)):
        yield prefix, float(d)


class MetricsServer:
    """The HTTP endpoint (prometheus_client's WSGI server in a daemon thread) for one run."""

    def __init__(self, collector: RunCollector, host: str = "127.0.0.1", port: int = 0):
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.gc_collector import GCCollector
        from prometheus_client.platform_collector import PlatformCollector
        from prometheus_client.process_collector import ProcessCollector

        self.registry = CollectorRegistry()
        self.registry.register(collector)
        for cls in (ProcessCollector, PlatformCollector, GCCollector):  # CPU, memory, GC of this process
            cls(registry=self.registry)
        self.collector = collector
        try:
            self.server, self.thread = start_http_server(int(port), addr=str(host), registry=self.registry)
        except OSError as exc:
            why = "in use" if isinstance(exc, OSError) and exc.errno in (98, 48) else exc.strerror or str(exc)
            raise MetricsError(f"metrics.port: cannot listen on {host}:{port} ({why}); set metrics.port=0 for a "
                               f"free port, or metrics.enabled=false") from None
        self.host = str(host)
        self.port = int(self.server.server_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(mc: Any, source: Any, log: Callable[[str], None]) -> MetricsServer | None:
    """Open the endpoint the ``metrics`` config asks for (None when ``metrics.enabled=false``)."""
    if not mc.enabled:
        return None
    srv = MetricsServer(RunCollector(source), str(mc.host), int(mc.port))
    log(f"metrics    {srv.url}")
    return srv


def linger(mc: Any, srv: MetricsServer | None, log: Callable[[str], None]) -> bool:
    """After the report: keep the endpoint up until one scrape has read the final values, for
    at most ``metrics.linger_s`` seconds (0: close at once). True if that scrape came."""
    s = float(mc.linger_s) if srv is not None else 0.0
    if s <= 0:
        return False
    log(f"metrics    final values on {srv.url} until scraped, at most {s:g} s (metrics.linger_s)")
    return srv.collector.final_scrape.wait(s)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
