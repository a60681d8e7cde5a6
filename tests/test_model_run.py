"""The model and strategy in the run loop and in the config: `make run` prints intents by symbol
and side; every model/strategy option composes; bad values and unusable backends name the key."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from pipeline.config import ConfigError, register, validate
from tests.conftest import REPO

CONF = REPO / "conf"
register()


def cfg_of(overrides=(), name="replay"):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


def small(tmp_path, *extra):
    return [f"feed.sample.dir={tmp_path}", "feed.sample.messages=8000", "feed.sample.symbols=6",
            "feed.sample.format=itch", "book=small", "report.save=false", *extra]


@pytest.mark.parametrize("group", ["model", "strategy"])
def test_every_model_and_strategy_option_composes(group):
    for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
        validate(cfg_of([f"{group}={option}"]))


@pytest.mark.parametrize("override, key", [
    ("model.backend=tvm", "model.backend"),
    ("model.path=x.pt", "model.path"),
    ("model.threads=0", "model.threads"),
    ("strategy.quote_size=0", "strategy.quote_size"),
    ("strategy.take_edge=-1", "strategy.take_edge"),
    ("strategy.max_spread=0", "strategy.max_spread"),
    ("strategy.min_interval_ns=-5", "strategy.min_interval_ns"),
])
def test_invalid_model_and_strategy_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg_of([override]))


def test_run_prints_intents_by_symbol_and_side(tmp_path):
    from pipeline.run import run

    lines: list[str] = []
    rep = run(cfg_of(small(tmp_path, "features.symbols=[AAPL,MSFT,NVDA]")), log=lines.append)
    text = "\n".join(lines)
    assert rep["model"]["backend"] == "numba" and rep["model"]["horizon_rows"] > 0
    it = rep["intents"]
    assert it["predictions"] == sum(f["rows"] for f in rep["features"].values()) > 0
    assert it["total"] > 0 and set(it["by_symbol"]) <= {"AAPL", "MSFT", "NVDA"}
    assert it["total"] == sum(c["buy"] + c["sell"] for c in it["by_symbol"].values())
    assert "model      " in text and "intents    " in text
    for name, c in it["by_symbol"].items():
        assert f"  {name:<8} buy {c['buy']:>8,}  sell {c['sell']:>8,}" in text
    # the onnxruntime backend makes the same decisions from (nearly) the same predictions
    rep2 = run(cfg_of(small(tmp_path, "features.symbols=[AAPL,MSFT,NVDA]", "model=onnxruntime")), log=lambda s: None)
    assert rep2["model"]["backend"] == "onnxruntime" and rep2["intents"]["by_symbol"] == it["by_symbol"]


def test_model_off_runs_books_only(tmp_path):
    from pipeline.run import run

    rep = run(cfg_of(small(tmp_path, "model=off")), log=lambda s: None)
    assert rep["model"]["backend"] is None and rep["intents"]["total"] == 0


def test_unusable_model_backend_or_file_is_a_config_error(tmp_path):
    from pipeline.run import run

    try:
        import tensorrt  # noqa: F401
    except Exception:
        with pytest.raises(ConfigError, match=r"model\.backend=tensorrt needs NVIDIA TensorRT"):
            run(cfg_of(small(tmp_path, "model=tensorrt")), log=lambda s: None)
    with pytest.raises(ConfigError, match=r"model\.path: .*no such model file"):
        run(cfg_of(small(tmp_path, f"model.path={tmp_path / 'absent.onnx'}")), log=lambda s: None)
