"""``hftbot sweep``: the grid (Hydra multirun syntax x captures), the checks before anything runs,
and a two-config sweep on a local Ray instance started by the test, whose table must hold each
run's config values and the figures of its own report.json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.sweep import SweepError, add_arguments, cmd_sweep, expand, sweep


@pytest.fixture(scope="module")
def tiny_capture(tmp_path_factory) -> Path:
    from replay.generator import generate

    path = tmp_path_factory.mktemp("sweep") / "tiny.pcap"
    generate(path, fmt="pcap", n_messages=3000, n_symbols=4, seed=1)
    return path


def test_grid_is_the_product_of_the_sweep_axes_in_hydra_order(tmp_path):
    a, b = tmp_path / "a.pcap", tmp_path / "b,c.pcap"
    a.write_bytes(b"")
    b.write_bytes(b"")
    jobs = expand(["risk.limits.max_order_qty=1,2", "bridge=off", "model=glob(n*)", "feed.batch_rows=range(1024,3072,1024)"],
                  captures=[str(a), str(b)])
    assert len(jobs) == 2 * 1 * 2 * 2
    overrides, swept = jobs[0]
    assert overrides[:4] == ["risk.limits.max_order_qty=1", "bridge=off", "model=numba", "feed.batch_rows=1024"]
    assert swept == {"risk.limits.max_order_qty": "1", "model": "numba", "feed.batch_rows": "1024",
                     "feed.path": str(a.resolve())}
    # the last axis (captures) varies fastest; a comma in a path stays one value (quoted)
    assert jobs[1][1]["feed.path"] == str(b.resolve()) and jobs[1][0][-1] == f"feed.path='{b.resolve()}'"
    assert [j[1]["risk.limits.max_order_qty"] for j in jobs] == ["1"] * 4 + ["2"] * 4


@pytest.mark.parametrize("overrides, captures, message", [
    (["risk.limits.max_order_qty=1,,"], [], "bad override"),
    (["model=glob(zzz*)"], [], "matches no option"),
    ([], ["/nonexistent/x.pcap"], "no such file"),
])
def test_bad_grid_is_one_line_error(overrides, captures, message):
    with pytest.raises(SweepError, match=message):
        expand(overrides, captures)


def test_cli_refuses_a_bad_job_before_running_any(tmp_path, tiny_capture, capsys):
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--config-name", "smoke", "--captures", str(tiny_capture), "--out", str(tmp_path / "s"),
                         "risk.limits.max_order_qty=100,-5"])
    assert cmd_sweep(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hftbot sweep: error:") and "risk.limits.max_order_qty" in err and "\n" not in err
    assert not (tmp_path / "s").exists(), "nothing may start when one job's config is bad"
    args = p.parse_args(["--config-name", "nope", "x=1"])
    assert cmd_sweep(args) == 2
    assert "conf/nope.yaml" in capsys.readouterr().err
    from replay.venue.process import free_port

    args = p.parse_args(["--launcher", "ray", "--address", f"127.0.0.1:{free_port()}", "--out", str(tmp_path / "r"),
                         "--captures", str(tiny_capture), "bridge=off"])
    assert cmd_sweep(args) == 2  # at once, not after Ray's minutes of retries
    assert "no Ray cluster answers there" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_two_config_sweep_on_local_ray_writes_one_table_matching_each_report(tmp_path, tiny_capture):
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    try:
        # max_order_qty 50 rejects the strategy's 100-share orders; 10000 accepts them
        res = sweep(["bridge=off", "risk.limits.max_order_qty=50,10000"], config_name="smoke",
                    out=tmp_path / "sweep", captures=[str(tiny_capture)], launcher="ray", log=lambda m: None)
    finally:
        ray.shutdown()
    out = tmp_path / "sweep"
    table = pq.read_table(out / "sweep.parquet").to_pylist()
    assert len(table) == 2
    assert [r["cfg.risk.limits.max_order_qty"] for r in table] == [50, 10000]
    with open(out / "sweep.csv") as f:
        import csv

        csv_rows = list(csv.DictReader(f))
    assert [r["cfg.risk.limits.max_order_qty"] for r in csv_rows] == ["50", "10000"]
    for row, crow in zip(table, csv_rows):
        rep = json.loads((Path(row["run_dir"]) / "report.json").read_text())
        assert row["status"] == rep["run"]["status"] == "completed" and row["exit_code"] == 0
        assert row["cfg.feed.path"] == str(tiny_capture.resolve()) == rep["input"]["path"]
        assert row["config_hash"] == rep["run"]["config_hash"]
        assert row["messages"] == rep["feed"]["messages_in"] == 3000
        assert (row["intents"], row["accepted"], row["rejected"], row["fills"], row["open_orders"]) == (
            rep["risk"]["intents"], rep["risk"]["accepted"], rep["risk"]["rejected"], rep["risk"]["fills"],
            rep["risk"]["open_orders"])
        assert row["pnl_total_usd"] == rep["risk"]["pnl_usd"]["total"]
        assert row["gross_exposure_usd"] == rep["risk"]["exposure_usd"]["gross"]
        assert row["msgs_per_s"] == rep["timing"]["msgs_per_s"]
        for stage, lat in rep["latency"].items():
            assert row[f"lat.{stage}.p99_ns"] == lat["p99_ns"]
        assert int(crow["rejected"]) == row["rejected"] and crow["status"] == row["status"]
    small, large = table
    assert small["intents"] == large["intents"] > 0
    assert small["rejected"] == small["intents"] and small["accepted"] == 0
    assert large["accepted"] == large["intents"] and large["rejected"] == 0
    assert small["config_hash"] != large["config_hash"]
    page = (out / "sweep.html").read_text()
    assert page.count("<tr") == 3 and "cfg.risk.limits.max_order_qty" in page
    assert (out / "sweep.json").is_file()
