"""Model inference: every backend agrees with onnxruntime's CPU result (pipeline.model.RTOL/ATOL),
the shipped model loads and its sidecar describes it, unsupported graphs and backends fail clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kernels import features as FT
from kernels.state import ModelArrays, ModelScratch
from pipeline.book import FeatureBatch
from pipeline.model import (ATOL, DEFAULT_MODEL, RTOL, ModelBackendError, ModelError, ModelFormatError, ModelStage,
                            load_model, mlp_from_onnx, sha256_bytes)


@pytest.fixture(scope="module")
def feature_rows(tmp_path_factory):
    """Feature rows of a small generated feed (every symbol), plus rows with empty sides."""
    from pipeline.train import TrainConf, build_features
    from replay.generator import generate

    path = tmp_path_factory.mktemp("feed") / "f.itch"
    generate(path, fmt="itch", n_messages=6000, n_symbols=4, seed=5)
    values, keys = build_features(path, TrainConf(max_orders=50_000, max_levels=20_000, max_symbols=64))
    empty = np.zeros((3, FT.N_FEATURES))
    empty[1, [FT.F_BID_PX, FT.F_BID_QTY]] = (1_000_000, 300)   # one-sided book, nothing traded
    empty[2, [FT.F_ASK_PX, FT.F_ASK_QTY, FT.F_LAST_PX]] = (1_000_100, 200, 1_000_000)
    return np.ascontiguousarray(np.vstack([empty, values])), np.vstack([np.zeros((3, FT.N_KEYS), np.int64), keys])


def assert_agree(got, ref, scale):
    err = np.abs(got - ref)
    bound = ATOL * scale + RTOL * np.abs(ref)
    assert np.all(err <= bound), f"max error {err.max():.3g} (bound {bound[np.argmax(err - bound)]:.3g})"


def predict(model, backend_name, kernels, values, keys):
    stage = ModelStage(model, backend_name, kernels, capacity=len(values))
    return stage(FeatureBatch(values, keys, len(values))).values[:len(values)].copy()


def test_shipped_model_numba_matches_onnxruntime_cpu(backend, feature_rows):
    values, keys = feature_rows
    if backend.__name__.endswith("gpu"):  # the simulator runs ~10K threads/s: a few rows
        values, keys = values[:40], keys[:40]
    model = load_model()
    ref = predict(model, "onnxruntime", backend, values, keys)
    got = predict(model, "numba", backend, values, keys)
    assert np.isfinite(got).all()
    assert ref.std() > 0  # the rows exercise the model
    assert_agree(got, ref, model.target_scale)


def _random_model(tmp_path, values, dims, act, seed, name="m"):
    """A random MLP artifact through the training exporter (same graph form as the shipped model),
    normalised by the statistics of ``values`` as training would (float32 keeps ~7 digits of
    the activations' scale: unnormalised inputs would test onnxruntime's rounding, not ours)."""
    from pipeline.train import INPUTS, model_inputs, to_onnx

    rng = np.random.default_rng(seed)
    layers = [(rng.normal(0, 1 / np.sqrt(dims[i]), (dims[i + 1], dims[i])), rng.normal(0, 0.1, dims[i + 1]))
              for i in range(len(dims) - 1)]
    x = model_inputs(values)[0][:, : dims[0]]
    mean = x.mean(axis=0) + rng.normal(0, 0.1, dims[0]) * x.std(axis=0)
    std = np.maximum(x.std(axis=0), 1e-9) * rng.uniform(0.5, 2.0, dims[0])
    data = to_onnx(layers, act, mean, std, 37.5, -1.25, {})
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(data)
    meta = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    meta["onnx_sha256"] = sha256_bytes(data)
    meta["inputs"] = [{"name": n, "column": c, "minus_mid": r} for n, c, r in INPUTS][: dims[0]]
    meta["target"]["scale"] = 37.5
    path.with_suffix(".json").write_text(json.dumps(meta))
    return load_model(path)


@pytest.mark.parametrize("dims,act", [((10, 32, 32, 1), "relu"), ((10, 64, 1), "tanh"), ((6, 8, 8, 8, 1), "tanh"),
                                      ((10, 1), "relu")])
def test_random_mlps_numba_matches_onnxruntime_cpu(tmp_path, feature_rows, dims, act):
    from kernels import cpu

    values, keys = feature_rows
    model = _random_model(tmp_path, values, dims, act, seed=sum(dims))
    ref = predict(model, "onnxruntime", cpu, values, keys)
    assert_agree(predict(model, "numba", cpu, values, keys), ref, model.target_scale)


def test_matmul_add_and_div_graph_is_read_like_gemm():
    """A graph in the other common form (MatMul + Add, Div normalisation, Tanh) gives the same
    arrays the numba kernel evaluates; onnxruntime agrees."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from kernels import cpu
    from kernels import model as KM

    rng = np.random.default_rng(3)
    k, hdim = 4, 5
    W1 = rng.normal(size=(k, hdim)).astype(np.float32)
    b1 = rng.normal(size=hdim).astype(np.float32)
    W2 = rng.normal(size=(hdim, 1)).astype(np.float32)
    std = rng.uniform(1, 3, k).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((W1, "W1"), (b1, "b1"), (W2, "W2"), (std, "std"),
                                                         (np.array([2.0], np.float32), "two"))]
    nodes = [helper.make_node("Div", ["x", "std"], ["a"]), helper.make_node("MatMul", ["a", "W1"], ["b"]),
             helper.make_node("Add", ["b", "b1"], ["c"]), helper.make_node("Tanh", ["c"], ["d"]),
             helper.make_node("MatMul", ["d", "W2"], ["e"]), helper.make_node("Mul", ["e", "two"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    data = m.SerializeToString()
    mlp = mlp_from_onnx(data, k)
    assert list(mlp.dims) == [k, hdim, 1] and list(mlp.act) == [KM.ACT_TANH, KM.ACT_IDENTITY]
    x = rng.normal(size=(16, k)) * 5
    f = np.zeros((16, FT.N_FEATURES))
    f[:, :k] = x  # inputs = the first k feature columns, absolute
    out = np.zeros(16)
    h = np.zeros((2, KM.MAX_WIDTH))
    hb = np.zeros((2, 4, KM.MAX_WIDTH))
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x.astype(np.float32)})[0]
    for n in (16, 15, 3):  # blocks of four, blocks and single rows, single rows only
        out[:] = np.nan
        cpu.predict_batch(f, n, ModelArrays(np.arange(k, dtype=np.int64), np.zeros(k, np.int64), *mlp.args()),
                          ModelScratch(h, hb), out)
        assert_agree(out[:n], ref.reshape(-1)[:n], 1.0)


def test_unsupported_graph_names_the_node_and_the_alternative():
    from onnx import TensorProto, helper, numpy_helper

    W = numpy_helper.from_array(np.ones((3, 1), np.float32), "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["a"]), helper.make_node("Sigmoid", ["a"], ["y"], name="sig")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])], [W])
    data = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    with pytest.raises(ModelFormatError, match=r"sig \(Sigmoid\).*model.backend=onnxruntime"):
        mlp_from_onnx(data, 3)


def test_shipped_model_loads_and_its_sidecar_matches():
    import onnx
    from onnx import numpy_helper

    model = load_model()
    meta = model.meta
    data = DEFAULT_MODEL.read_bytes()
    assert len(data) < 16_384  # a few KB
    assert meta["onnx_sha256"] == sha256_bytes(data)
    assert meta["feature_names"] == list(FT.FEATURE_NAMES)
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load_from_string(data).graph.initializer}
    np.testing.assert_allclose(inits["norm_mean"], meta["normalisation"]["mean"], rtol=1e-6)
    np.testing.assert_allclose(inits["norm_inv_std"], 1 / np.array(meta["normalisation"]["std"]), rtol=1e-6)
    np.testing.assert_allclose(inits["target_scale"], [meta["target"]["scale"]], rtol=1e-6)
    mlp = model.mlp()
    assert list(mlp.dims) == meta["arch"]["dims"] and mlp.dims[0] == len(meta["inputs"]) == model.n_inputs
    assert meta["target"]["horizon_rows"] == model.horizon > 0
    assert len(meta["training"]["data_sha256"]) == 64
    oos = meta["metrics"]["out_of_sample"]
    assert oos["rows"] > 10_000 and {"mse", "mse_zero", "corr", "direction_hit_rate"} <= set(oos)


def test_sidecar_of_another_file_is_refused(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(DEFAULT_MODEL.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="sidecar"):
        load_model(path)
    path.with_suffix(".json").write_text(DEFAULT_MODEL.with_suffix(".json").read_text())
    with pytest.raises(ModelError, match="onnx_sha256"):
        load_model(path)
    with pytest.raises(ModelError, match="no such model file"):
        load_model(tmp_path / "absent.onnx")


def test_tensorrt_backend_says_what_to_install():
    from kernels import cpu

    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here: the error path does not apply")
    except Exception:
        pass
    with pytest.raises(ModelBackendError, match=r"TensorRT.*pip install tensorrt"):
        ModelStage(load_model(), "tensorrt", cpu, capacity=8)


def test_unknown_backend_is_refused():
    from kernels import cpu

    with pytest.raises(ModelBackendError, match="unknown backend 'tvm'"):
        ModelStage(load_model(), "tvm", cpu, capacity=8)


def test_empty_batch_and_growth():
    from kernels import cpu

    stage = ModelStage(load_model(), "numba", cpu, capacity=2)
    assert stage(FeatureBatch(np.zeros((0, FT.N_FEATURES)), np.zeros((0, FT.N_KEYS), np.int64), 0)).n == 0
    out = stage(FeatureBatch(np.zeros((5, FT.N_FEATURES)), np.zeros((5, FT.N_KEYS), np.int64), 5))
    assert out.n == 5 and np.isfinite(out.values[:5]).all()
