"""Training: labels, determinism (same seed -> same ONNX bytes), the CLI, and the shipped model
being what `make train` makes."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch", reason="training needs the train extra: pip install -e '.[train]'")

from kernels import features as FT  # noqa: E402
from pipeline.model import DEFAULT_MODEL, ModelStage, load_model  # noqa: E402
from pipeline.train import TrainConf, labels, train  # noqa: E402


@pytest.fixture(scope="module")
def tiny_feed(tmp_path_factory):
    from replay.generator import generate

    path = tmp_path_factory.mktemp("train") / "feed.itch"
    generate(path, fmt="itch", n_messages=15_000, n_symbols=3, seed=4)
    return path


def tiny(feed, **kw) -> TrainConf:
    return TrainConf(capture=str(feed), hidden=(8,), epochs=1, batch=256, horizon=3, max_orders=50_000,
                     max_levels=20_000, max_symbols=64, **kw)


def test_labels_are_the_mid_move_of_the_same_symbol_h_rows_ahead():
    # two symbols interleaved; symbol 2 has an empty side at its second row
    locs = [1, 2, 1, 2, 1, 2, 1]
    mids = [100.0, 50.0, 101.0, 0.0, 103.0, 52.0, 99.0]
    v = np.zeros((len(locs), FT.N_FEATURES))
    v[:, FT.F_MID] = mids
    k = np.zeros((len(locs), FT.N_KEYS), np.int64)
    k[:, FT.K_LOCATE] = locs
    y, ok = labels(v, k, 1)
    assert list(ok) == [True, False, True, False, True, False, False]
    assert y[0] == 1.0 and y[2] == 2.0 and y[4] == -4.0
    y2, ok2 = labels(v, k, 2)
    assert list(np.nonzero(ok2)[0]) == [0, 1, 2] and y2[0] == 3.0 and y2[1] == 2.0 and y2[2] == -2.0


def test_training_is_reproducible_from_its_seed(tiny_feed, tmp_path):
    a = train(tiny(tiny_feed, seed=3), out=tmp_path / "a", log=lambda s: None)
    b = train(tiny(tiny_feed, seed=3), out=tmp_path / "b", log=lambda s: None)
    c = train(tiny(tiny_feed, seed=4), out=None, log=lambda s: None)
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert a["onnx_sha256"] == b["onnx_sha256"] != c["onnx_sha256"]
    assert a["training"]["data_sha256"] == c["training"]["data_sha256"]  # same data, other seed
    ja = json.loads((tmp_path / "a.json").read_text())
    jb = json.loads((tmp_path / "b.json").read_text())
    assert ja == jb


def test_a_trained_artifact_loads_and_every_backend_agrees(tiny_feed, tmp_path):
    from kernels import cpu
    from pipeline.book import FeatureBatch
    from pipeline.train import build_features

    meta = train(tiny(tiny_feed, seed=1), out=tmp_path / "m", log=lambda s: None)
    model = load_model(tmp_path / "m.onnx")
    assert model.meta["arch"]["dims"] == [10, 8, 1] and model.horizon == 3
    assert set(meta["metrics"]["out_of_sample"]) >= {"mse", "mse_zero", "r2_vs_zero", "corr", "direction_hit_rate"}
    values, keys = build_features(tiny_feed, tiny(tiny_feed))
    fb = FeatureBatch(values[:500], keys[:500], 500)
    a = ModelStage(model, "numba", cpu, 500)(fb).values[:500].copy()
    b = ModelStage(model, "onnxruntime", cpu, 500)(fb).values[:500].copy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * model.target_scale)


def test_hftbot_train_cli_writes_the_artifact(tiny_feed, tmp_path, capsys):
    from pipeline.cli import main

    out = tmp_path / "cli"
    rc = main(["train", "--capture", str(tiny_feed), "--hidden", "4", "--epochs", "1", "--horizon", "2",
               "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "out-of-sample" in text and "zero predictor" in text and "direction hit rate" in text
    assert load_model(out.with_suffix(".onnx")).meta["arch"]["dims"] == [10, 4, 1]
    assert main(["train", "--capture", str(tmp_path / "absent.pcap"), "--out", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.slow
def test_the_shipped_model_is_what_make_train_makes():
    """Retrain with the defaults (generated feed, seed 1, ~5 s): same data hash, and the same
    weights up to floating-point differences between CPUs (byte-identical on one machine)."""
    shipped = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    meta = train(TrainConf(), out=None, log=lambda s: None)
    assert meta["training"]["data_sha256"] == shipped["training"]["data_sha256"]
    assert meta["arch"] == shipped["arch"] and meta["inputs"] == shipped["inputs"]
    np.testing.assert_allclose(meta["normalisation"]["mean"], shipped["normalisation"]["mean"], rtol=1e-9)
    if meta["onnx_sha256"] != shipped["onnx_sha256"]:  # another CPU: compare the weights
        import onnx
        from onnx import numpy_helper

        def weights(data):
            return {t.name: numpy_helper.to_array(t) for t in onnx.load_from_string(data).graph.initializer}

        new, old = weights(meta["_onnx_bytes"]), weights(DEFAULT_MODEL.read_bytes())
        for name in old:
            np.testing.assert_allclose(new[name], old[name], rtol=1e-3, atol=1e-3, err_msg=name)
