"""Configuration (Hydra), the ``hftbot`` command, reports and the JIT cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pipeline.config import ConfigError, config_hash, register, validate
from tests.conftest import REPO
from tests.packets import add_order, mold, pcap_bytes, udp_frame

CONF = REPO / "conf"
register()


def cfg_of(name: str = "replay", overrides: list[str] = ()):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


def hftbot(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture
def small_pcap(tmp_path) -> Path:
    frames = [udp_frame(mold(b"CLI", 1 + 3 * i, [add_order(1 + 3 * i + j) for j in range(3)])) for i in range(5)]
    path = tmp_path / "small.pcap"
    path.write_bytes(pcap_bytes(frames) + b"\x01\x02\x03")  # 3 trailing bytes
    return path


@pytest.mark.parametrize("name", sorted(p.stem for p in CONF.glob("*.yaml")))
def test_every_top_level_config_composes_and_validates(name):
    cfg = cfg_of(name)
    validate(cfg)
    assert cfg.backend.name in ("cpu", "cuda")


#: what an option needs beside it to validate in the replay config
NEEDS = {"nasdaq": ["feed.path=x.pcap"], "live": ["venue.enabled=false", "bridge.port=9876"]}


@pytest.mark.parametrize("group", ["backend", "feed", "bridge", "venue"])
def test_every_group_option_composes(group):
    for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
        cfg = cfg_of("replay", [f"{group}={option}"] + NEEDS.get(option, []))
        validate(cfg)


@pytest.mark.parametrize("override, key", [
    ("bridge.port=70000", "bridge.port"),
    ("bridge.sender_comp_id='A B'", "bridge.sender_comp_id"),
    ("bridge.clordid_prefix=a-b", "bridge.clordid_prefix"),
    ("bridge.session_date=2019-01-30", "bridge.session_date"),
    ("venue.entry_latency_ns=-1", "venue.entry_latency_ns"),
    ("venue.target_comp_id=OTHER", "venue.sender_comp_id"),
    ("feed.speed=0", "feed.speed"),
])
def test_invalid_execution_settings_fail_at_start_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg_of("replay", [override]))


def test_live_feed_with_the_local_venue_is_refused():
    with pytest.raises(ConfigError, match=r"venue\.enabled"):
        validate(cfg_of("replay", ["feed=live"]))


@pytest.mark.parametrize("override, key", [
    ("feed.chunk_bytes=5", "feed.chunk_bytes"),
    ("backend.name=tpu", "backend.name"),
    ("feed.sample.format=csv", "feed.sample.format"),
    ("feed.sample.messages=-1", "feed.sample.messages"),
    ("feed.filters=[233.1.1.999:5]", "feed.filters"),
    ("feed.max_sessions=0", "feed.max_sessions"),
])
def test_invalid_values_fail_at_start_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg_of("replay", [override]))


def test_config_hash_is_stable_and_changes_with_values():
    assert config_hash(cfg_of()) == config_hash(cfg_of())
    assert config_hash(cfg_of()) != config_hash(cfg_of("replay", ["feed.sample.seed=99"]))


def test_run_on_a_capture_prints_summary_and_saves_report(tmp_path, small_pcap):
    res = hftbot("run", f"feed.path={small_pcap}", f"hydra.run.dir={tmp_path / 'run'}")
    assert res.returncode == 0, res.stderr
    assert "15 decoded of 15 blocks" in res.stdout
    assert "15 messages decoded, 3 trailing bytes" in res.stdout
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    assert rep["feed"]["messages_by_type"] == {"A": 15}
    assert rep["input"]["trailing_bytes"] == 3 and rep["input"]["sessions"] == ["CLI       "]
    assert len(rep["run"]["config_hash"]) == 16


def test_wrong_type_on_the_command_line_names_the_key(tmp_path, small_pcap):
    res = hftbot("run", f"feed.path={small_pcap}", "feed.chunk_bytes=lots", f"hydra.run.dir={tmp_path}")
    assert res.returncode != 0
    assert "feed.chunk_bytes" in res.stderr


def test_bad_value_on_the_command_line_is_a_clear_error(tmp_path, small_pcap):
    res = hftbot("run", f"feed.path={small_pcap}", "backend.name=tpu", f"hydra.run.dir={tmp_path}")
    assert res.returncode == 2
    assert "backend.name" in res.stderr and "Traceback" not in res.stderr


def test_missing_mandatory_capture_path_names_the_key(tmp_path):
    res = hftbot("run", "feed=nasdaq", f"hydra.run.dir={tmp_path}")
    assert res.returncode == 2 and "feed.path" in res.stderr


def test_missing_capture_file_is_a_clear_error(tmp_path):
    res = hftbot("run", f"feed.path={tmp_path / 'nope.pcap'}", f"hydra.run.dir={tmp_path}")
    assert res.returncode == 2 and "no such file" in res.stderr


def test_numba_cache_files_exist_for_the_kernels(small_pcap, tmp_path):
    """cache=True: compiled kernels are cached under a directory keyed by the kernels' sources,
    so later runs load them (and a change to any kernels/*.py starts a fresh cache)."""
    from kernels import CACHE_DIR

    res = hftbot("run", f"feed.path={small_pcap}", f"hydra.run.dir={tmp_path}")
    assert res.returncode == 0, res.stderr
    cached = {p.name.split(".")[0] for p in CACHE_DIR.rglob("*.nbi")}
    assert {"framing", "itch", "book"} <= cached


def test_help_lists_the_subcommands():
    res = hftbot("--help")
    assert res.returncode == 0
    for cmd in ("run", "decode", "generate"):
        assert cmd in res.stdout


def test_smoke_run_generates_the_sample_and_prints_books_and_features(tmp_path):
    res = hftbot("run", "--config-name", "smoke", f"feed.sample.dir={tmp_path / 'samples'}",
                 f"hydra.run.dir={tmp_path / 'run'}")
    assert res.returncode == 0, res.stderr
    assert "generating sample feed" in res.stdout
    assert "20,000 decoded of 20,000 blocks" in res.stdout
    assert "missing refs 0" in res.stdout and "crossed updates 0" in res.stdout
    for sym in ("AAPL", "MSFT", "NVDA"):
        assert f"features {sym}" in res.stdout
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    assert rep["book"]["stats"]["adds"] > 0 and rep["book"]["symbols"]["AAPL"]["bids"]
    assert rep["features"]["AAPL"]["rows"] > 0
    # a second run reuses the sample instead of generating it again
    again = hftbot("run", "--config-name", "smoke", f"feed.sample.dir={tmp_path / 'samples'}",
                   f"hydra.run.dir={tmp_path / 'run2'}")
    assert again.returncode == 0 and "generating" not in again.stdout
