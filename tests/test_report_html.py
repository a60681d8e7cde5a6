"""``report.html`` and its PNGs (replay/report_html.py, replay/timeline.py).

A real short run (the FIX bridge and venue simulator on, so there are orders, fills and
tick-to-trade figures) is reported on; the PNGs must be real images, the same ones the page
embeds, and the page must render in a real headless browser (Debian's chromium through
Playwright) with every plot loaded, no console error and no request leaving the file."""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from kernels import risk as R
from pipeline.config import register
from replay.report_html import PLOTS, add_arguments, cmd_report, latency_figure, position_figure, write_report
from replay.timeline import COLUMNS, Timeline, load_histograms, load_timeline, save_histograms
from tests.conftest import REPO

register()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


#: whether the run wrote report.html itself (pipeline/run.py records the timeline and writes it)
RUN_WRITES_REPORT: dict[str, bool] = {}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real short run: 150k generated messages in 1 MiB chunks (several batches), bridge on."""
    from pipeline.run import run

    base = tmp_path_factory.mktemp("report")
    d = base / "run"
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="smoke", overrides=[
            f"feed.sample.dir={base / 'samples'}", f"risk.kill.file={d / 'KILL'}",
            "feed.sample.messages=150000", "feed.batch_rows=65536", "feed.chunk_bytes=1048576"])
    if "metrics" in cfg:
        cfg.metrics.enabled = False   # no endpoint needed here
    rep = run(cfg, d, log=lambda s: None, signals=False)
    assert rep["run"]["status"] == "completed", rep["error"]
    RUN_WRITES_REPORT["yes"] = (d / "report.html").is_file()
    if not RUN_WRITES_REPORT["yes"]:
        write_report(d)
    return d


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR", data[:16]
    return struct.unpack(">II", data[16:24])


def test_every_plot_is_a_png_beside_report_json_and_the_same_one_the_page_embeds(run_dir):
    from PIL import Image

    page = (run_dir / "report.html").read_text(encoding="utf-8")
    embedded = dict(re.findall(r'id="plot-(\w+)"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page))
    assert sorted(embedded) == sorted(stem for stem, _ in PLOTS)
    for stem, _ in PLOTS:
        data = (run_dir / f"{stem}.png").read_bytes()
        w, h = _png_size(data)
        assert w >= 400 and h >= 150, (stem, w, h)
        with Image.open(io.BytesIO(data)) as im:
            im.load()   # decodes every row: a truncated or corrupt file raises
            px = np.asarray(im.convert("L"))
        assert px.min() < 128, f"{stem}.png is blank"
        assert base64.b64decode(embedded[stem]) == data, f"{stem}.png differs from the page's image"
    # self-contained: nothing is fetched from anywhere
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "<script" not in page


def test_the_page_renders_in_headless_chromium_with_every_plot_and_no_console_error(run_dir):
    page_path = run_dir / "report.html"
    out = _render(page_path)
    assert out["errors"] == [], out["errors"]
    assert out["failed"] == [], out["failed"]
    assert all(u.startswith(("file:", "data:")) for u in out["requests"]), out["requests"]
    imgs = out["images"]
    assert len(imgs) == len(PLOTS), imgs
    for img in imgs:
        assert img["complete"] and img["naturalWidth"] > 0 and img["naturalHeight"] > 0, img
        assert img["width"] > 0 and img["height"] > 0, img   # laid out, not hidden
    assert sorted(i["id"] for i in imgs) == sorted(f"plot-{s}" for s, _ in PLOTS)
    assert "completed" in out["h1"]


def _render(path: Path) -> dict:
    chromium = shutil.which("chromium")
    if chromium is None:
        why = "chromium is not installed (apt-get install chromium; `make test` installs it: mk/report.mk)"
        if os.environ.get("HFTBOT_REQUIRE_BROWSER"):
            pytest.fail(why)
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    failed: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, timeout=120_000)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console",
                    lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: failed.append(r.url[:100]))
            page.on("request", lambda r: requests.append(r.url[:100]))
            page.goto(path.as_uri(), wait_until="load")
            images = page.evaluate("""() => Array.from(document.images).map(i => ({
                id: i.id, complete: i.complete, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,
                width: i.getBoundingClientRect().width, height: i.getBoundingClientRect().height}))""")
            h1 = page.inner_text("h1")
        finally:
            browser.close()
    return {"errors": errors, "failed": failed, "requests": requests, "images": images, "h1": h1}


def test_the_timeline_of_the_run_matches_its_report_when_the_run_records_one(run_dir):
    import json

    rep = json.loads((run_dir / "report.json").read_text())
    tl = load_timeline(run_dir)
    if tl is None:
        assert not RUN_WRITES_REPORT["yes"], "the run wrote report.html but no timeline.npz"
        pytest.skip("this pipeline/run.py does not record timeline.npz yet (replay/timeline.py: Timeline)")
    assert RUN_WRITES_REPORT["yes"], "the run recorded a timeline but wrote no report.html"
    batches = tl["batch"] == 1
    assert int(batches.sum()) == rep["latency"]["batch_total"]["count"]
    assert int(tl["messages"][batches].sum()) == rep["feed"]["messages_in"]
    assert np.all(np.diff(tl["wall_ns"]) >= 0) and np.all(np.diff(tl["feed_ns"]) >= 0)
    # the last row is the state the report was made from
    assert int(tl["fills"][-1]) == rep["risk"]["fills"]
    total = (tl["pnl_realised"][-1] + tl["pnl_unrealised"][-1]) / 1e4
    assert total == pytest.approx(rep["risk"]["pnl_usd"]["total"])
    hist = load_histograms(run_dir)
    assert hist is not None and set(hist) == set(rep["latency"])
    for name, (_, h) in hist.items():
        assert h.get_total_count() == rep["latency"][name]["count"]
        assert h.get_value_at_percentile(50) == rep["latency"][name]["p50_ns"]


def test_a_report_without_timeline_or_histograms_still_has_every_plot(run_dir, tmp_path):
    """An older run (report.json only): latency from its summary points, the rest say what is missing."""
    (tmp_path / "report.json").write_bytes((run_dir / "report.json").read_bytes())
    out = write_report(tmp_path)
    assert out == tmp_path / "report.html"
    for stem, _ in PLOTS:
        assert _png_size((tmp_path / f"{stem}.png").read_bytes())[0] > 0
    assert "timeline.npz" not in out.read_text().split("made from")[-1]


def test_a_venue_that_did_not_drain_shows_on_the_page(run_dir, tmp_path):
    """status incomplete: the page says how far the venue got (report.json's execution.drain)."""
    rep = json.loads((run_dir / "report.json").read_text())
    rep["run"]["status"], rep["run"]["exit_code"] = "incomplete", 4
    rep["execution"]["drain"].update(outcome="stalled", drained=False, wait_s=41.2, venue_events=8631,
                                     feed_events=10000)
    (tmp_path / "report.json").write_text(json.dumps(rep))
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert 'class="status-incomplete">incomplete' in page
    assert "the venue did not drain (stalled, waited 41.2 s): it applied 8,631 of 10,000 market events" in page


def test_a_run_that_failed_at_start_still_gets_a_page_with_every_plot(tmp_path):
    """Every run writes the page: one refused at the feed stage has nothing to plot, and says so."""
    from pipeline.run import run

    d = tmp_path / "run"
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="smoke", overrides=[f"feed.path={tmp_path / 'absent.pcap'}",
                                                      f"risk.kill.file={d / 'KILL'}"])
    if "metrics" in cfg:
        cfg.metrics.enabled = False
    with pytest.raises(FileNotFoundError):
        run(cfg, d, log=lambda s: None, signals=False)
    if not (d / "report.html").is_file():
        write_report(d)   # a pipeline/run.py that does not write the page yet
    page = (d / "report.html").read_text(encoding="utf-8")
    assert "failed" in page and "absent.pcap" in page
    out = _render(d / "report.html")
    assert out["errors"] == [] and len(out["images"]) == len(PLOTS)
    assert all(i["naturalWidth"] > 0 for i in out["images"])


class _Risk(SimpleNamespace):
    pass


def _risk_state(rows: int = 16):
    from pipeline.risk import RiskState

    return _Risk(state=RiskState(rows, 4, 8, 2, 4))


def test_timeline_records_each_batch_and_the_drain_and_round_trips(tmp_path):
    risk = _risk_state()
    g, ps = risk.state.g, risk.state.ps
    tl = Timeline()
    tl.start()
    g[R.G_RPNL], ps[3, R.PS_POS] = 5_000, 100
    tl.record(34_200_000_000_000, 1000, risk)
    g[R.G_UPNL], ps[5, R.PS_POS] = -20_000, -300
    tl.record(0, 500, risk)              # no event in this batch: the feed time stays
    ps[3, R.PS_POS], g[R.G_FILLS] = 0, 7
    tl.finish(34_200_500_000_000, risk)
    tl.save(tmp_path)
    z = load_timeline(tmp_path)
    assert set(COLUMNS) <= set(z)
    assert z["batch"].tolist() == [1, 1, 0] and z["messages"].tolist() == [1000, 500, 0]
    assert z["feed_ns"].tolist() == [34_200_000_000_000, 34_200_000_000_000, 34_200_500_000_000]
    assert z["pnl_realised"].tolist() == [5_000] * 3 and z["pnl_unrealised"].tolist() == [0, -20_000, -20_000]
    assert z["fills"].tolist() == [0, 0, 7]
    assert list(zip(z["pos_row"].tolist(), z["pos_locate"].tolist(), z["pos_qty"].tolist())) == \
        [(0, 3, 100), (1, 3, 100), (1, 5, -300), (2, 5, -300)]
    assert z["t0_ns"] <= z["wall_ns"][0]
    # the position plot draws those series (symbol names from the report, else the locate)
    rep = {"risk": {"positions": {"MSFT": {"locate": 5}}}}
    fig = position_figure(rep, z, None)
    lines = {ln.get_label(): np.asarray(ln.get_ydata()).tolist() for ln in fig.axes[0].lines}
    assert lines["MSFT"] == [0, -300, -300] and lines["locate 3"] == [100, 100, 0]
    assert lines["gross (all symbols)"] == [100, 400, 300]


def test_the_gpu_engine_timeline_records_no_risk_state(tmp_path):
    risk = _risk_state()
    risk.state.g[R.G_RPNL] = 123
    risk.state.ps[1, R.PS_POS] = 10
    tl = Timeline.for_engine(SimpleNamespace(name="gpu"))
    tl.record(1, 10, risk)
    z = tl.arrays()
    assert not z["risk_live"] and z["pnl_realised"].tolist() == [0] and z["pos_qty"].size == 0


def test_latency_percentile_plot_follows_the_histogram(tmp_path):
    from pipeline.latency import Latencies

    lat = Latencies()
    for v in range(1, 10_001):          # 1..10,000 µs, once each
        lat.record("stage", v * 1000)
    save_histograms(tmp_path, [lat, None])
    hist = load_histograms(tmp_path)
    fig = latency_figure({"latency": lat.summary()}, hist, "t", lambda n: True, "none")
    (line,) = fig.axes[0].lines
    x, y = line.get_xdata(), line.get_ydata()
    assert x[0] == 1 and y[0] == pytest.approx(1000, rel=1e-3)              # 0 %: the minimum
    at = (lambda xv: y[np.searchsorted(x, xv)])
    assert at(2.0) == pytest.approx(5_000_000, rel=2e-3)                      # 50 %
    assert at(100.0) == pytest.approx(9_900_000, rel=2e-3)                    # 99 %
    assert y[-1] == pytest.approx(10_000_000, rel=1e-3)                       # max
    assert np.all(np.diff(y) >= 0) and fig.axes[0].get_xscale() == "log" and fig.axes[0].get_yscale() == "log"


def test_hftbot_report_on_a_bad_directory_says_so_in_one_line(tmp_path, capsys):
    p = argparse.ArgumentParser()
    add_arguments(p)
    for target, words in ((tmp_path / "absent", "no such run directory"), (tmp_path, "no report.json")):
        assert cmd_report(p.parse_args([str(target)])) == 2
        err = capsys.readouterr().err
        assert err.startswith("hftbot report: error: ") and err.count("\n") == 1 and words in err, err


def test_a_percentile_needs_its_values_in_the_summary_and_on_the_page(run_dir):
    """The p99 of fewer than 100 values is their maximum, the p99.9 of fewer than 1,000 too: the
    run summary and the page print '-' there (with a footnote), and the numbers where a row has
    enough values. The run above has a few batches, so its per-batch rows are short."""
    from pipeline.latency import Latencies, format_latencies

    lat = Latencies()
    for v in range(1, 9):
        lat.record("per_batch", v * 1000)
    for v in range(1, 151):
        lat.record("per_packet", v * 10)
    for v in range(1, 5001):
        lat.record("per_message", v)
    lines = format_latencies(lat.summary())
    short, mid, full = (next(x.split() for x in lines if x.strip().startswith(n))
                        for n in ("per_batch", "per_packet", "per_message"))
    # name, count, p50 (value + unit), p99, p99.9, max ...
    assert short[1] == "8" and short[2:4] == ["4.0", "µs"] and short[4:6] == ["-", "-"]
    assert mid[1] == "150" and mid[4:6] == ["1.5", "µs"] and mid[6] == "-"
    assert full[1] == "5,000" and "-" not in full[2:10]
    assert lines[-1].strip().startswith("'-': fewer values than the percentile needs")
    only_full = {k: v for k, v in lat.summary().items() if k == "per_message"}
    assert not any("fewer values" in x for x in format_latencies(only_full))

    rep = json.loads((run_dir / "report.json").read_text())
    short_rows = [n for n, s in rep["latency"].items() if s["count"] < 100]
    assert short_rows, rep["latency"]
    page = (run_dir / "report.html").read_text()
    assert "fewer values than the percentile needs" in page
    for n in short_rows:
        row = page[page.index(f'<td class="l">{n}</td>'):]
        row = row[: row.index("</tr>")]
        assert row.count('<td class="n">-</td>') == 2, row
