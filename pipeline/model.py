"""The model stage: feature rows -> predictions, from an ONNX file and its JSON sidecar.

The artifact is ``NAME.onnx`` (the graph: float32 ``x [n, k]`` raw model inputs -> normalise ->
MLP -> ``y [n, 1]``) beside ``NAME.json`` (the sidecar: which feature columns feed the inputs,
the normalisation, the target and its horizon, and how the model was trained: seed, data hash,
out-of-sample metrics). ``pipeline/train.py`` writes both.

Backends (``model.backend``):

- ``numba``: ``kernels/model.py``, one fused kernel (input selection, normalisation, all layers)
  from the weights of the ONNX graph, run by the pipeline's kernels module: njit on ``cpu``,
  numba.cuda on ``cuda``. Evaluates MLP graphs (Gemm, MatMul, Add, Sub, Mul, Div, Relu, Tanh);
  any other graph is refused with an error that names the node.
- ``onnxruntime``: any ONNX graph, through onnxruntime with the configured execution providers
  (CPU here; CUDA or TensorRT providers where installed).
- ``tensorrt``: NVIDIA TensorRT on a GPU: builds an engine from the ONNX file and replays it
  with a CUDA graph. Import-guarded: chosen where TensorRT is missing, it raises
  ``ModelBackendError`` naming what to install. TensorRT cannot be installed on the machines
  this project is developed on, so this path has not run (README, "Model and strategy").

All backends take the same raw inputs (``kernels.model.prepare_inputs``) and agree with
onnxruntime's CPU result within ``RTOL``/``ATOL`` (tests/test_model.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import numpy as np

from kernels import features as FT
from kernels import model as KM
from kernels.state import ModelArrays, ModelScratch

#: agreement with onnxruntime's CPU (float32) result, tested for every backend: |a - b| <=
#: ATOL * target_scale + RTOL * |b| (target_scale: the model's output scale, Price(4) units for
#: the shipped model). numba computes in float64, onnxruntime in float32.
RTOL = 1e-5
ATOL = 1e-5

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "models" / "default.onnx"
SIDECAR_FORMAT = "hftbot-model/1"


class ModelError(RuntimeError):
    """The model file or its sidecar cannot be used."""


class ModelFormatError(ModelError):
    """The ONNX graph is outside what the ``numba`` backend evaluates."""


class ModelBackendError(ModelError):
    """The chosen inference backend is unavailable here (says what to install)."""


@dataclass
class MLP:
    """An MLP in the layout of ``kernels/model.py`` (flat float64 weights, [out, in] per layer)."""

    in_scale: np.ndarray  # float64 [k]
    in_shift: np.ndarray  # float64 [k]
    dims: np.ndarray      # int64 [n_layers + 1]
    w: np.ndarray         # float64, concatenated [out, in] row-major
    w_off: np.ndarray     # int64 [n_layers]
    b: np.ndarray         # float64
    b_off: np.ndarray     # int64 [n_layers]
    act: np.ndarray       # int64 [n_layers]

    @property
    def n_layers(self) -> int:
        return int(len(self.act))

    def args(self) -> tuple:
        """Kernel arguments after ``in_col, in_rel``."""
        return (self.in_scale, self.in_shift, self.n_layers, self.dims, self.w, self.w_off, self.b, self.b_off,
                self.act)


@dataclass
class Model:
    """A loaded artifact: the ONNX bytes, the sidecar, and the input mapping."""

    path: Path
    onnx_bytes: bytes
    meta: dict[str, Any]
    in_col: np.ndarray  # int64 [k]: feature-matrix column of each input
    in_rel: np.ndarray  # int64 [k]: 1 = price relative to the mid
    input_names: list[str] = field(default_factory=list)
    _mlp: MLP | None = None

    @property
    def n_inputs(self) -> int:
        return int(len(self.in_col))

    @property
    def target_scale(self) -> float:
        return float(self.meta.get("target", {}).get("scale", 1.0))

    @property
    def horizon(self) -> int:
        return int(self.meta.get("target", {}).get("horizon_rows", 0))

    def mlp(self) -> MLP:
        """The weights for the ``numba`` backend (parsed once; ``ModelFormatError`` if not an MLP)."""
        if self._mlp is None:
            self._mlp = mlp_from_onnx(self.onnx_bytes, self.n_inputs)
        return self._mlp

    def arrays(self) -> ModelArrays:
        """The ``numba`` backend's kernel arguments as a named bundle (``kernels/state.py``)."""
        return ModelArrays(self.in_col, self.in_rel, *self.mlp().args())

    def inputs(self, f: np.ndarray, n: int, dtype=np.float32, kernels: ModuleType | None = None) -> np.ndarray:
        """Raw model inputs [n, k] of feature rows ``f[:n]`` (the graph's input)."""
        if kernels is None:
            from kernels import cpu as kernels
        x = np.zeros((n, self.n_inputs), dtype)
        kernels.prepare_inputs(f, n, self.in_col, self.in_rel, x)
        return x


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def resolve_path(path: str | Path | None) -> Path:
    """A model path from config: absolute, or relative to the working directory or the repo."""
    if not path:
        return DEFAULT_MODEL
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return REPO / p


def load_model(path: str | Path | None = None) -> Model:
    """Read ``NAME.onnx`` and ``NAME.json``; check the sidecar against the file and the feature
    columns this build writes."""
    path = resolve_path(path)
    if not path.is_file():
        raise ModelError(f"model.path: no such model file: {path} (train one with `make train`)")
    data = path.read_bytes()
    side = sidecar_path(path)
    if not side.is_file():
        raise ModelError(f"model.path: {path} has no sidecar {side.name} (feature list, normalisation, "
                         f"horizon); `make train` writes both")
    meta = json.loads(side.read_text())
    if meta.get("format") != SIDECAR_FORMAT:
        raise ModelError(f"{side}: unknown sidecar format {meta.get('format')!r} (expected {SIDECAR_FORMAT})")
    want = meta.get("onnx_sha256")
    if want and want != sha256_bytes(data):
        raise ModelError(f"{side}: onnx_sha256 does not match {path.name} (the sidecar belongs to another file)")
    names = list(meta.get("feature_names", []))
    if names and names != list(FT.FEATURE_NAMES):
        raise ModelError(f"{side}: trained on feature columns {names}, this build writes {list(FT.FEATURE_NAMES)}")
    cols, rels, in_names = [], [], []
    for spec in meta["inputs"]:
        if spec["column"] not in FT.FEATURE_NAMES:
            raise ModelError(f"{side}: input {spec['name']!r} reads unknown feature column {spec['column']!r}")
        cols.append(FT.FEATURE_NAMES.index(spec["column"]))
        rels.append(1 if spec.get("minus_mid") else 0)
        in_names.append(spec["name"])
    if not cols or len(cols) > KM.MAX_WIDTH:
        raise ModelError(f"{side}: needs 1..{KM.MAX_WIDTH} inputs, has {len(cols)}")
    return Model(path=path, onnx_bytes=data, meta=meta, in_col=np.array(cols, np.int64),
                 in_rel=np.array(rels, np.int64), input_names=in_names)


# --- ONNX graph -> MLP arrays ------------------------------------------------------------------

_AFFINE = ("Add", "Sub", "Mul", "Div")


def mlp_from_onnx(onnx_bytes: bytes, n_inputs: int) -> MLP:
    """Read an MLP out of an ONNX graph: optional per-input affine nodes (normalisation), then
    dense layers (Gemm, or MatMul [+ Add]) each with an optional Relu/Tanh, with affine nodes
    after a dense layer folded into it. One input, one output of width 1."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load_from_string(onnx_bytes).graph
    consts = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in g.initializer}
    inits = set(consts)
    inputs = [i.name for i in g.input if i.name not in inits]
    if len(inputs) != 1 or len(g.output) != 1:
        raise ModelFormatError(f"numba backend: expects one input and one output, graph has inputs {inputs} and "
                               f"{len(g.output)} outputs; use model.backend=onnxruntime")
    cur = inputs[0]
    scale = np.ones(n_inputs)
    shift = np.zeros(n_inputs)
    layers: list[list[Any]] = []  # [W [in, out], b [out], act]
    act_done = False  # the last layer already has its activation (no more folding)

    def unsupported(node, why: str = "") -> ModelFormatError:
        return ModelFormatError(f"numba backend: node {node.name or '?'} ({node.op_type}) is not supported{why}; "
                                f"it evaluates MLPs of Gemm/MatMul/Add/Sub/Mul/Div/Relu/Tanh: use "
                                f"model.backend=onnxruntime for other graphs")

    for node in g.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t).astype(np.float64)
            continue
        if cur not in node.input:
            raise unsupported(node, " (a branch off the main chain)")
        op = node.op_type
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op in ("Identity", "Cast"):
            pass
        elif op in _AFFINE:
            other = [i for i in node.input if i != cur]
            if len(other) != 1 or other[0] not in consts:
                raise unsupported(node, " (needs one constant operand)")
            c = consts[other[0]].reshape(-1)
            first = node.input[0] == cur
            # y = a*x + s for this node
            if op == "Add":
                a, s = 1.0, c
            elif op == "Sub":
                a, s = (1.0, -c) if first else (-1.0, c)
            elif op == "Mul":
                a, s = c, 0.0
            else:
                if not first:
                    raise unsupported(node, " (division by the tensor)")
                a, s = 1.0 / c, 0.0
            if not layers:
                scale, shift = scale * a, shift * a + s
                if scale.shape != (n_inputs,):
                    raise unsupported(node, f" (constant of shape {c.shape} for {n_inputs} inputs)")
            elif act_done:
                raise unsupported(node, " (an affine node after an activation)")
            else:
                W, bias, _ = layers[-1]
                layers[-1][0] = W * a  # a: scalar or per output column
                layers[-1][1] = bias * a + s
        elif op == "Gemm":
            if attrs.get("transA", 0):
                raise unsupported(node, " (transA)")
            W = consts.get(node.input[1])
            if W is None:
                raise unsupported(node, " (weights are not a constant)")
            W = (W.T if attrs.get("transB", 0) else W) * float(attrs.get("alpha", 1.0))
            bias = np.zeros(W.shape[1])
            if len(node.input) > 2 and node.input[2]:
                bias = bias + consts[node.input[2]].reshape(-1) * float(attrs.get("beta", 1.0))
            layers.append([W, bias, KM.ACT_IDENTITY])
            act_done = False
        elif op == "MatMul":
            W = consts.get(node.input[1])
            if W is None or node.input[0] != cur or W.ndim != 2:
                raise unsupported(node, " (needs x @ constant 2-D weights)")
            layers.append([W, np.zeros(W.shape[1]), KM.ACT_IDENTITY])
            act_done = False
        elif op in ("Relu", "Tanh"):
            if not layers or act_done:
                raise unsupported(node, " (activation not after a dense layer)")
            layers[-1][2] = KM.ACT_RELU if op == "Relu" else KM.ACT_TANH
            act_done = True
        else:
            raise unsupported(node)
        cur = node.output[0]
    if cur != g.output[0].name:
        raise ModelFormatError("numba backend: the graph's output is not the end of its main chain")
    if not layers:
        raise ModelFormatError("numba backend: the graph has no dense layer")
    dims = [n_inputs]
    for W, bias, _ in layers:
        if W.shape[0] != dims[-1]:
            raise ModelFormatError(f"numba backend: layer input width {W.shape[0]} after width {dims[-1]}")
        dims.append(W.shape[1])
        if bias.size not in (1, W.shape[1]):
            raise ModelFormatError(f"numba backend: bias of {bias.size} for a layer of width {W.shape[1]}")
    if dims[-1] != 1:
        raise ModelFormatError(f"numba backend: the model must have one output, has {dims[-1]}")
    if max(dims) > KM.MAX_WIDTH:
        raise ModelFormatError(f"numba backend: layers up to {KM.MAX_WIDTH} wide, this one has {max(dims)}")
    w_off, b_off, off_w, off_b = [], [], 0, 0
    for W, bias, _ in layers:
        w_off.append(off_w)
        b_off.append(off_b)
        off_w += W.size
        off_b += W.shape[1]
    w = np.concatenate([np.ascontiguousarray(W.T, np.float64).reshape(-1) for W, _, _ in layers])  # [out, in]
    b = np.concatenate([np.broadcast_to(bias, (W.shape[1],)).astype(np.float64) for W, bias, _ in layers])
    return MLP(in_scale=np.ascontiguousarray(scale, np.float64), in_shift=np.ascontiguousarray(shift, np.float64),
               dims=np.array(dims, np.int64), w=w, w_off=np.array(w_off, np.int64), b=b,
               b_off=np.array(b_off, np.int64), act=np.array([a for _, _, a in layers], np.int64))


# --- backends ----------------------------------------------------------------------------------

class NumbaBackend:
    """The fused kernel of ``kernels/model.py`` on a kernels module (``kernels.cpu``: njit;
    ``kernels.gpu``: numba.cuda)."""

    name = "numba"

    def __init__(self, model: Model, kernels: ModuleType):
        self.k = kernels
        self.model = model
        self.mlp = model.mlp()
        width = int(self.mlp.dims.max())
        self.h = np.zeros((2, width), np.float64)
        self.hb = np.zeros((2, 4, width), np.float64)
        self._model = ModelArrays(model.in_col, model.in_rel, *self.mlp.args())
        self._scratch = ModelScratch(self.h, self.hb)

    def __call__(self, f: np.ndarray, n: int, out: np.ndarray) -> None:
        self.k.predict_batch(f, n, self._model, self._scratch, out)

    def kernel_args(self) -> ModelArrays:
        """The compiled model (``predict_batch``'s ``model`` bundle), for fused kernels that run
        the model themselves (``pipeline/tick.py``)."""
        return self._model


class OnnxRuntimeBackend:
    """onnxruntime: any ONNX graph; ``providers`` in order of preference, unavailable ones skipped."""

    name = "onnxruntime"

    def __init__(self, model: Model, kernels: ModuleType, providers: Sequence[str] = ("CPUExecutionProvider",),
                 threads: int = 1):
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - a run-time dependency
            raise ModelBackendError(f"model.backend=onnxruntime needs onnxruntime: pip install -e . ({exc})") from None
        avail = ort.get_available_providers()
        chosen = [p for p in providers if p in avail] or ["CPUExecutionProvider"]
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(model.onnx_bytes, sess_options=so, providers=chosen)
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name
        self.model = model
        self.k = kernels

    def run_inputs(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0].reshape(-1)

    def __call__(self, f: np.ndarray, n: int, out: np.ndarray) -> None:
        if n == 0:
            return
        x = self.model.inputs(f, n, np.float32, kernels=_host_kernels(self.k))
        out[:n] = self.run_inputs(x)


class TensorRTBackend:
    """TensorRT: an engine built from the ONNX file, replayed with a CUDA graph per batch size.

    Untested here: TensorRT cannot be installed on these machines (README). Needs ``tensorrt``
    and ``cuda-python`` (``cuda.bindings``) and a CUDA GPU."""

    name = "tensorrt"
    INSTALL = ("model.backend=tensorrt needs NVIDIA TensorRT and a CUDA GPU: on a GPU machine, "
               "`pip install tensorrt-cu12 cuda-python` (or NVIDIA's TensorRT container). TensorRT is not "
               "installable on this machine; use model.backend=numba or model.backend=onnxruntime")

    def __init__(self, model: Model, kernels: ModuleType, max_batch: int = 1 << 16, fp16: bool = False):
        try:
            import tensorrt as trt  # noqa: F401
            from cuda.bindings import runtime as cudart  # noqa: F401
        except ImportError as exc:
            raise ModelBackendError(f"{self.INSTALL} ({exc})") from None
        except Exception as exc:  # a placeholder wheel that fails at import, no driver ...
            raise ModelBackendError(f"{self.INSTALL} (import failed: {exc})") from None
        self.trt, self.cudart = trt, cudart
        self.model = model
        self.k = kernels
        self.max_batch = int(max_batch)
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)  # TensorRT 8; default in 10
        network = builder.create_network(0 if flag is None else 1 << int(flag))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(model.onnx_bytes):
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelError(f"tensorrt: cannot parse {model.path}: {errs}")
        config = builder.create_builder_config()
        if fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        name = network.get_input(0).name
        k = model.n_inputs
        profile.set_shape(name, (1, k), (min(1024, self.max_batch), k), (self.max_batch, k))
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise ModelError(f"tensorrt: engine build failed for {model.path}")
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        self.context = self.engine.create_execution_context()
        self.in_name = name
        self.out_name = network.get_output(0).name
        self.stream = self._ok(cudart.cudaStreamCreate())
        self.d_in = self._ok(cudart.cudaMalloc(self.max_batch * k * 4))
        self.d_out = self._ok(cudart.cudaMalloc(self.max_batch * 4))
        self.context.set_tensor_address(self.in_name, int(self.d_in))
        self.context.set_tensor_address(self.out_name, int(self.d_out))
        self.graphs: dict[int, Any] = {}

    def _ok(self, res):
        err, *rest = res if isinstance(res, tuple) else (res,)
        if int(err) != 0:
            raise ModelError(f"tensorrt: CUDA runtime error {err}")
        return rest[0] if len(rest) == 1 else rest

    def _graph(self, n: int):
        g = self.graphs.get(n)
        if g is None:
            cudart = self.cudart
            self.context.set_input_shape(self.in_name, (n, self.model.n_inputs))
            self.context.execute_async_v3(int(self.stream))  # warm-up outside capture (TensorRT's advice)
            self._ok(cudart.cudaStreamSynchronize(self.stream))
            self._ok(cudart.cudaStreamBeginCapture(self.stream,
                                                   cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal))
            self.context.execute_async_v3(int(self.stream))
            graph = self._ok(cudart.cudaStreamEndCapture(self.stream))
            g = self._ok(cudart.cudaGraphInstantiate(graph, 0))
            self.graphs[n] = g
        return g

    def __call__(self, f: np.ndarray, n: int, out: np.ndarray) -> None:
        cudart = self.cudart
        for lo in range(0, n, self.max_batch):
            m = min(self.max_batch, n - lo)
            x = np.ascontiguousarray(self.model.inputs(f[lo:lo + m], m, np.float32, kernels=_host_kernels(self.k)))
            y = np.empty(m, np.float32)
            kind_h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            kind_d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self._ok(cudart.cudaMemcpyAsync(self.d_in, x.ctypes.data, x.nbytes, kind_h2d, self.stream))
            self._ok(cudart.cudaGraphLaunch(self._graph(m), self.stream))
            self._ok(cudart.cudaMemcpyAsync(y.ctypes.data, self.d_out, y.nbytes, kind_d2h, self.stream))
            self._ok(cudart.cudaStreamSynchronize(self.stream))
            out[lo:lo + m] = y


def _host_kernels(k: ModuleType) -> ModuleType:
    """Input preparation for the onnxruntime / TensorRT backends runs on the host (njit)."""
    from kernels import cpu

    return cpu


BACKENDS = {"numba": NumbaBackend, "onnxruntime": OnnxRuntimeBackend, "tensorrt": TensorRTBackend}


def make_backend(name: str, model: Model, kernels: ModuleType, **opts):
    if name not in BACKENDS:
        raise ModelBackendError(f"model.backend: unknown backend {name!r} ({', '.join(BACKENDS)})")
    return BACKENDS[name](model, kernels, **opts)


# --- the stage -------------------------------------------------------------------------------

@dataclass
class PredictionBatch:
    values: np.ndarray  # float64 [capacity]: the model output of feature row i (Price(4) mid move)
    features: Any       # the FeatureBatch the predictions belong to
    n: int


class ModelStage:
    """Feature rows -> predictions. Backends: numba (on the cpu or cuda kernels), onnxruntime,
    tensorrt."""

    produces = PredictionBatch
    backends = tuple(BACKENDS)

    def __init__(self, model: Model, backend: str, kernels: ModuleType, capacity: int, **opts):
        self.model = model
        self.impl = make_backend(backend, model, kernels, **opts)
        self.out = np.zeros(max(int(capacity), 1), np.float64)

    @property
    def name(self) -> str:
        return self.impl.name

    def warm(self, fo: np.ndarray) -> None:
        """Compile (or load, or build the session of) the backend on zero rows, before the run
        connects anything."""
        self.impl(fo, 0, self.out)

    def __call__(self, features) -> PredictionBatch:
        n = int(features.n)
        if n > len(self.out):
            self.out = np.zeros(n, np.float64)
        self.impl(features.values, n, self.out)
        return PredictionBatch(self.out, features, n)
