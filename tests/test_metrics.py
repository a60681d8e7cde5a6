"""The Prometheus endpoint of a run, scraped as Prometheus would while the run goes and after it.

One short replay (the smoke config: a generated sample, the venue simulator, FIX) runs in this
process with ``metrics.port=0`` (a free port, printed) and ``metrics.linger_s`` (the endpoint
stays up after the report until one scrape has read the final values). A thread scrapes the
endpoint over HTTP all along; one more scrape is made from the run's own log line when FIX has
logged on (mid-run, deterministic). The final scrape must equal the run's ``report.json``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import ConfigError, register
from pipeline.metrics import METRICS, BUCKETS_NS
from tests.conftest import REPO

register()


def cfg_of(name: str = "smoke", overrides: list[str] = ()):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}}; ``"#types"``: {family name: type}; ``"#text"``:
    the exposition as served."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, dict] = {"#types": {}, "#text": text}
    for fam in text_string_to_metric_families(text):
        out["#types"][fam.name] = fam.type
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def one(m: dict, name: str, **labels) -> float:
    return m[name][tuple(sorted(labels.items()))]


def by(m: dict, name: str, label: str) -> dict[str, float]:
    return {dict(k)[label]: v for k, v in m.get(name, {}).items()}


class Scraper:
    """Scrapes the URL the run prints, in a loop, until stopped; keeps every scrape."""

    def __init__(self):
        self.url: str | None = None
        self.scrapes: list[dict] = []
        self.errors: list[str] = []
        self.mid_run: dict | None = None
        self.stop = threading.Event()
        self.lines: list[str] = []
        self.t = threading.Thread(target=self._loop, daemon=True)

    def log(self, text: str) -> None:
        self.lines.append(text)
        m = re.match(r"metrics\s+(http://\S+/metrics)$", text)
        if m and self.url is None:
            self.url = m.group(1)
            self.t.start()
        if text.startswith("fix        logged on") and self.url:
            self.mid_run = scrape(self.url)  # from the run's thread, between connect and replay

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                self.scrapes.append(scrape(self.url))
            except OSError as exc:  # the endpoint closes after the final scrape
                self.errors.append(repr(exc))
                if self.scrapes and one(self.scrapes[-1], "hftbot_run_stage", stage="done") == 1:
                    return
            self.stop.wait(0.05)


@pytest.fixture(scope="module")
def watched_run(tmp_path_factory):
    from pipeline.run import run

    tmp = tmp_path_factory.mktemp("metrics")
    cfg = cfg_of(overrides=[f"feed.sample.dir={tmp / 'samples'}", f"risk.kill.file={tmp / 'KILL'}",
                            "feed.sample.messages=150000", "feed.batch_rows=65536", "feed.chunk_bytes=1048576",
                            "strategy.quote_threshold=1.0", "strategy.take_edge=0.0",
                            "strategy.min_interval_ns=100000", "metrics.linger_s=120"])
    sc = Scraper()
    try:
        rep = run(cfg, out_dir=tmp / "run", log=sc.log, signals=False)
    finally:
        sc.stop.set()
        if sc.t.is_alive():
            sc.t.join(10)
    saved = json.loads((tmp / "run" / "report.json").read_text())
    return rep, saved, sc


def test_the_endpoint_listens_on_loopback_and_is_scraped_during_the_run(watched_run):
    rep, _, sc = watched_run
    assert sc.url is not None and sc.url.startswith("http://127.0.0.1:"), sc.lines[:5]
    assert sc.mid_run is not None, "no scrape when FIX logged on"
    assert one(sc.mid_run, "hftbot_run_stage", stage="connect") == 1
    assert one(sc.mid_run, "hftbot_run_stage", stage="done") == 0
    assert one(sc.mid_run, "hftbot_fix_session_events_total", event="logon") == 1
    # the engine exists (compiled), nothing replayed yet past the first chunk's framing
    assert one(sc.mid_run, "hftbot_intents_total") == 0
    during = [s for s in sc.scrapes if one(s, "hftbot_run_stage", stage="done") == 0]
    assert during, "the scraping thread saw only the ended run"
    # counters never go down from one scrape to the next
    names = ("hftbot_feed_messages_total", "hftbot_intents_total", "hftbot_orders_sent_total", "hftbot_fills_total")
    for a, b in zip(sc.scrapes, sc.scrapes[1:]):
        for n in names:
            if n in a and n in b:
                assert one(b, n) >= one(a, n), n


def test_final_scrape_equals_the_report(watched_run):
    rep, saved, sc = watched_run
    assert saved["run"]["status"] == "completed", saved["error"]
    final = [s for s in sc.scrapes if one(s, "hftbot_run_stage", stage="done") == 1]
    assert final, "no scrape after the run ended (metrics.linger_s)"
    m = final[-1]
    assert one(m, "hftbot_metrics_collect_errors") == 0  # no part of any scrape failed, start to end
    f, rk, ex = saved["feed"], saved["risk"], saved["execution"]
    assert rk["accepted"] > 0 and ex["new_sent"] > 0 and ex["fills"] > 0, "the run must trade for this test"
    assert one(m, "hftbot_feed_messages_total") == f["messages_in"] > 0
    assert one(m, "hftbot_feed_decoded_total") == f["decoded"]
    assert one(m, "hftbot_feed_packets_total") == f["packets"]
    assert one(m, "hftbot_feed_gaps_total") == f["gaps"]
    assert by(m, "hftbot_feed_messages_by_type_total", "type") == f["messages_by_type"]
    assert {k: v for k, v in by(m, "hftbot_feed_drops_total", "reason").items() if v} == \
        {**f["problems"], **({"duplicate_messages": f["duplicate_messages"]} if f["duplicate_messages"] else {})}
    assert one(m, "hftbot_input_read_bytes_total") == saved["input"]["bytes"]
    assert one(m, "hftbot_intents_total") == rk["intents"]
    assert one(m, "hftbot_intents_accepted_total") == rk["accepted"]
    assert one(m, "hftbot_intents_rejected_total") == rk["rejected"]
    assert by(m, "hftbot_risk_rejects_total", "reason") == rk["rejections"]
    assert one(m, "hftbot_risk_fills_total") == rk["fills"]
    assert one(m, "hftbot_open_orders") == rk["open_orders"]
    assert by(m, "hftbot_pnl_usd", "kind") == pytest.approx(rk["pnl_usd"], abs=1e-9)
    assert by(m, "hftbot_exposure_usd", "kind") == pytest.approx(rk["exposure_usd"], abs=1e-9)
    assert by(m, "hftbot_position_shares", "symbol") == {k: p["position"] for k, p in rk["positions"].items()}
    assert by(m, "hftbot_kill_switch", "reason") == {rk["kill_switch"]: 0.0}
    assert one(m, "hftbot_orders_sent_total") == ex["new_sent"]
    assert by(m, "hftbot_fix_messages_sent_total", "kind") == {"new": ex["new_sent"], "cancel": ex["cancel_sent"],
                                                               "replace": ex["replace_sent"]}
    assert one(m, "hftbot_fills_total") == ex["fills"]
    assert one(m, "hftbot_filled_shares_total") == ex["filled_shares"]
    assert one(m, "hftbot_fix_reports_total") == ex["reports"]
    assert by(m, "hftbot_orders", "state") == {k: ex[f"orders_{k}"] for k in
                                               ("filled", "partially_filled", "cancelled", "rejected", "working")}
    assert by(m, "hftbot_venue_rejects_total", "reason") == ex["venue_rejects_by_reason"]
    ev = by(m, "hftbot_fix_session_events_total", "event")
    assert ev["logon"] == ex["logons"] == 1 and ev["logout"] == ex["logouts"]
    assert ev["session_reject"] == ex["session_rejects"] and ev["business_reject"] == ex["business_rejects"]


def test_latency_histograms_match_the_report(watched_run):
    _, saved, sc = watched_run
    m = [s for s in sc.scrapes if one(s, "hftbot_run_stage", stage="done") == 1][-1]
    counts = by(m, "hftbot_stage_latency_seconds_count", "stage")
    assert counts == {k: v["count"] for k, v in saved["latency"].items()}
    assert "batch_total" in counts and "batch_to_trade" in counts
    for stage, lat in saved["latency"].items():
        buckets = {float(dict(k)["le"]): v for k, v in m["hftbot_stage_latency_seconds_bucket"].items()
                   if dict(k)["stage"] == stage}
        assert len(buckets) == len(BUCKETS_NS) + 1 and buckets[float("inf")] == lat["count"]
        cum = [buckets[b] for b in sorted(buckets)]
        assert cum == sorted(cum)
        # the median falls in the bucket the report's p50 falls in (HdrHistogram: 3 digits)
        half = lat["count"] / 2
        first_le = min(b for b, c in buckets.items() if c >= half)
        assert lat["p50_ns"] / 1e9 <= first_le * 1.001


def test_every_family_the_dashboard_uses_is_exported(watched_run):
    _, _, sc = watched_run
    types = sc.scrapes[-1]["#types"]  # families without samples yet (no rejects) are still declared
    for fam, kind in METRICS.items():
        if fam in ("hftbot_live_counter",):  # live sources only
            continue
        assert types.get(fam[:-len("_total")] if kind == "counter" else fam) == kind, fam
    dash = json.loads((REPO / "docker/grafana/dashboards/hftbot.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = {n for e in exprs for n in re.findall(r"\bhftbot_[a-z_]+", e)}
    known = set(METRICS) | {f"{k}_{s}" for k, v in METRICS.items() if v == "histogram" for s in ("bucket", "sum", "count")}
    assert used and used <= known, used - known


def test_a_bad_metrics_setting_is_a_one_line_error_naming_the_key(tmp_path):
    from pipeline.run import check_watch_config

    with pytest.raises(ConfigError, match=r"^metrics\.port: must be in 0\.\.65535"):
        check_watch_config(cfg_of(overrides=["metrics.port=70000"]))
    with pytest.raises(ConfigError, match=r"^metrics\.linger_s"):
        check_watch_config(cfg_of(overrides=["metrics.linger_s=-1"]))
    with pytest.raises(ConfigError, match=r"^logging\.level"):
        check_watch_config(cfg_of(overrides=["logging.level=loud"]))


def test_a_port_in_use_is_refused_with_the_key_named():
    import socket

    from pipeline.metrics import MetricsError, MetricsServer, RunCollector

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(MetricsError, match=rf"^metrics\.port: cannot listen on 127\.0\.0\.1:{port} \(in use\)"):
            MetricsServer(RunCollector(object()), "127.0.0.1", port)


def test_prometheus_config_scrapes_the_bot_and_grafana_is_provisioned():
    import yaml

    prom = yaml.safe_load((REPO / "docker/prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert "hftbot" in jobs and jobs["hftbot"]["metrics_path"] == "/metrics"
    ds = yaml.safe_load((REPO / "docker/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert ds["datasources"][0]["type"] == "prometheus" and ds["datasources"][0]["uid"] == "prometheus"
    dp = yaml.safe_load((REPO / "docker/grafana/provisioning/dashboards/hftbot.yml").read_text())
    assert dp["providers"][0]["options"]["path"].endswith("/dashboards")
    dash = json.loads((REPO / "docker/grafana/dashboards/hftbot.json").read_text())
    assert dash["uid"] and all(p["datasource"]["uid"] == "prometheus" for p in dash["panels"] if "targets" in p)
    assert Path(REPO / "docker/grafana/dashboards/hftbot.json").stat().st_size > 0


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus: "
                    "mk/watch.mk adds it to make setup)")
def test_promtool_accepts_the_prometheus_config_and_what_the_endpoint_serves(watched_run, tmp_path):
    _, _, sc = watched_run
    cfg = subprocess.run(["promtool", "check", "config", str(REPO / "docker/prometheus/prometheus.yml")],
                         capture_output=True, text=True, timeout=60)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    for s in (sc.mid_run, sc.scrapes[-1]):
        lint = subprocess.run(["promtool", "check", "metrics"], input=s["#text"], capture_output=True, text=True,
                              timeout=60)
        assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint.stdout + lint.stderr
