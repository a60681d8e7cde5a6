"""``hftbot compare``: two real short runs (bridge off, one batch each; the second with an
order-size limit below the strategy's size) side by side; and one-line errors for bad arguments."""

from __future__ import annotations

import argparse
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pipeline.compare import add_arguments, cmd_compare
from pipeline.config import register
from tests.conftest import REPO

register()


def _cfg(samples: Path, run_dir: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="smoke", overrides=[
            f"feed.sample.dir={samples}", f"risk.kill.file={run_dir / 'KILL'}", "bridge=off",
            "feed.sample.messages=20000", "feed.batch_rows=65536", "feed.chunk_bytes=1048576", *overrides])
    if "metrics" in cfg:
        cfg.metrics.enabled = False   # no endpoint needed here
    return cfg


def _real_run(samples: Path, run_dir: Path, *overrides: str) -> dict:
    """``pipeline.run.run`` as ``hftbot run`` does it, with the resolved config where Hydra
    writes it (``.hydra/config.yaml``)."""
    from pipeline.run import run

    cfg = _cfg(samples, run_dir, *overrides)
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    return run(cfg, run_dir, log=lambda s: None, signals=False)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path, dict, dict]:
    base = tmp_path_factory.mktemp("compare")
    a, b = base / "run_a", base / "run_b"
    ra = _real_run(base / "samples", a)
    rb = _real_run(base / "samples", b, "risk.limits.max_order_qty=50")
    return a, b, ra, rb


def _compare(*argv: str) -> int:
    p = argparse.ArgumentParser(prog="hftbot compare")
    add_arguments(p)
    return cmd_compare(p.parse_args(list(argv)))


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.imgs: list[dict] = []
        self._in = False

    def handle_starttag(self, tag, attrs):
        self._in = tag in ("td", "th")
        if tag == "img":
            self.imgs.append(dict(attrs))

    def handle_endtag(self, tag):
        self._in = False

    def handle_data(self, data):
        if self._in:
            self.cells.append(data)


def test_two_runs_side_by_side_show_the_config_difference_and_every_figure(two_runs, tmp_path, capsys):
    a, b, ra, rb = two_runs
    out = tmp_path / "cmp.html"
    assert _compare(str(a), str(b), "--html", str(out)) == 0
    text = capsys.readouterr().out
    assert f"A = {a}" in text and f"B = {b}" in text
    # the config keys that differ, with both values; one that does not differ is not listed
    assert _row(text, "risk.limits.max_order_qty")[:2] == [str(ra_q := _qty(a)), "50"] and ra_q != 50
    assert "feed.sample.messages" not in text
    # PnL, fills, rejects and latency percentiles of each run, from its report
    assert _row(text, "fills")[:2] == [f"{ra['risk']['fills']:,}", f"{rb['risk']['fills']:,}"]
    assert _row(text, "rejected by risk")[:2] == [f"{n['risk']['rejected']:,}" for n in (ra, rb)]
    assert _row(text, "PnL total $")[:2] == [f"{ra['risk']['pnl_usd']['total']:,.2f}",
                                              f"{rb['risk']['pnl_usd']['total']:,.2f}"]
    for name in ra["latency"]:
        assert _row(text, f"{name} count")[0] == f"{ra['latency'][name]['count']:,}"
        # a percentile where the row holds the values it needs, '-' where it does not (the summary's rule)
        few = ra["latency"][name]["count"] < 100
        assert (_row(text, f"{name} p99")[0] == "-") == few, (name, ra["latency"][name])
    # rejects by reason: the smaller order limit refuses intents in run B only
    assert rb["risk"]["rejections"], rb["risk"]
    for reason, n in rb["risk"]["rejections"].items():
        assert _row(text, f"risk: {reason}")[1] == f"{n:,}"
    # the HTML page: the same cells, and the latency chart as an embedded PNG
    page = _Cells()
    page.feed(out.read_text())
    assert "risk.limits.max_order_qty" in page.cells and "50" in page.cells
    assert f"{rb['risk']['fills']:,}" in page.cells
    assert len(page.imgs) == 1 and page.imgs[0]["src"].startswith("data:image/png;base64,iVBORw0KGgo")
    assert "http://" not in out.read_text() and "https://" not in out.read_text()


def _qty(run_dir: Path) -> int:
    return int(OmegaConf.load(run_dir / ".hydra" / "config.yaml").risk.limits.max_order_qty)


def _row(text: str, label: str) -> list[str]:
    """The cells after ``label`` on its line of the terminal table."""
    for ln in text.splitlines():
        if ln.startswith("  " + label + "  "):
            return ln[len(label) + 2:].split()
    raise AssertionError(f"no row {label!r} in:\n{text}")


def _one_line_error(capsys, rc: int, *words: str) -> None:
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("hftbot compare: error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, err


def test_a_run_without_a_saved_config_is_compared_by_its_report_alone(two_runs, tmp_path, capsys):
    a, b, ra, rb = two_runs
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "report.json").write_bytes((b / "report.json").read_bytes())
    assert _compare(str(a), str(bare)) == 0
    text = capsys.readouterr().out
    assert "no resolved config saved: config hashes differ" in text
    assert _row(text, "config hash")[:2] == [ra["run"]["config_hash"], rb["run"]["config_hash"]]


def test_bad_arguments_get_one_line_and_status_2(two_runs, tmp_path, capsys):
    a = two_runs[0]
    _one_line_error(capsys, _compare(str(a), str(tmp_path / "absent")), "absent", "no such run directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(capsys, _compare(str(a), str(empty)), "no report.json")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "report.json").write_text("{not json")
    _one_line_error(capsys, _compare(str(a), str(bad)), "not readable JSON")
    other = tmp_path / "other"
    other.mkdir()
    (other / "report.json").write_text(json.dumps({"hello": 1}))
    _one_line_error(capsys, _compare(str(a), str(other)), "not an hftbot run report")
    _one_line_error(capsys, _compare(str(a)), "at least two")
    rc = _compare(str(a), str(a), "--html", str(tmp_path / "no" / "x.html"))
    _one_line_error(capsys, rc, "does not exist")
