"""``hftbot train`` / ``make train``: replay a feed, build features and labels, train a small MLP
with PyTorch on the CPU, export ONNX plus its JSON sidecar, print out-of-sample metrics.

- Data: a capture (``--capture``), or the deterministic generated feed (``--messages``,
  ``--symbols``, ``--feed-seed``; written once under ``.cache/train/``). Every symbol is
  subscribed; each book update of a symbol is one feature row (``kernels/features.py``).
- Inputs: ``INPUTS`` below, columns of the feature row, prices taken relative to the mid;
  normalised by the training split's mean and standard deviation (in the graph and the sidecar).
- Label: the move of the mid ``horizon`` feature rows later for the same symbol, in Price(4)
  units, for rows whose book is two-sided now and then. Trained on the label clipped at
  ``clip`` standard deviations (a book that empties makes rare huge jumps); evaluated unclipped.
- Split: in time order, the first ``train_frac`` of the rows trains, the rest (after a gap of
  ``horizon`` rows, so no label looks into it) is the out-of-sample test.
- Determinism: ``torch.manual_seed(seed)``, deterministic algorithms, one thread, batches in a
  seeded order: the same data and seed give byte-identical ONNX files (tests/test_train.py).
- Export: the ONNX graph is written with ``onnx.helper`` from the trained weights (Sub, Mul,
  Gemm, Relu ..., Mul, Add; opset 17, float32); the export is checked against the torch model
  through onnxruntime before it is saved.

PyTorch and onnx are the ``train`` extra (``pip install -e '.[train]'``); inference never needs them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kernels import features as FT
from pipeline.model import SIDECAR_FORMAT, RTOL, ATOL, sha256_bytes
from pipeline.progress import open_progress

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "train"

#: model inputs: (name, feature column, price relative to the mid)
INPUTS: tuple[tuple[str, str, bool], ...] = (
    ("spread", "spread", False),
    ("micro_minus_mid", "microprice", True),
    ("imbalance", "imbalance", False),
    ("ofi", "ofi", False),
    ("trade_flow", "trade_flow", False),
    ("last_minus_mid", "last_px", True),
    ("bid_qty", "bid_qty", False),
    ("ask_qty", "ask_qty", False),
    ("rv", "rv", False),
    ("dt_ns", "dt_ns", False),
)


@dataclass
class TrainConf:
    capture: str | None = None     # replay this capture instead of the generated feed
    messages: int = 200_000        # generated feed
    symbols: int = 8
    feed_seed: int = 1
    horizon: int = 10              # label: mid move this many rows of the same symbol ahead
    hidden: tuple[int, ...] = (32, 32)
    activation: str = "relu"       # relu | tanh
    epochs: int = 4
    batch: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-5
    clip: float = 5.0              # train on labels clipped at this many standard deviations
    train_frac: float = 0.7
    seed: int = 1
    max_orders: int = 2_000_000
    max_levels: int = 1_000_000
    max_symbols: int = 16_384
    tau_flow_ns: float = 1e9       # feature parameters: must match the run's `features` config
    tau_rv_ns: float = 60e9
    top_n: int = 5


# --- data ----------------------------------------------------------------------------------------

def feed_path(c: TrainConf) -> Path:
    """The capture to replay: ``c.capture``, or the generated feed (written on first use)."""
    if c.capture:
        p = Path(c.capture).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"--capture: no such file: {p}")
        return p
    p = CACHE / f"feed-{c.messages}m-{c.symbols}s-seed{c.feed_seed}.itch"
    if not p.is_file():
        from replay.generator import generate

        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".part")
        generate(tmp, fmt="itch", n_messages=c.messages, n_symbols=c.symbols, seed=c.feed_seed)
        tmp.replace(p)
    return p


def build_features(path: Path, c: TrainConf) -> tuple[np.ndarray, np.ndarray]:
    """Replay ``path`` through decode and books (cpu); every symbol's feature rows in feed order."""
    from kernels import cpu
    from pipeline.book import BookStage, BookState
    from pipeline.stages import DecodeStage
    from replay.capture import CaptureReader

    reader = CaptureReader(path)
    reader.check_content()   # "not a capture: ..." (a CaptureError) before anything is trained
    decode = DecodeStage(cpu, capacity=reader.batch_rows, stats=reader.stats)
    books = BookStage(cpu, BookState(c.max_orders, c.max_levels, c.max_symbols), capacity=reader.batch_rows,
                      symbols=["*"], tau_flow_ns=c.tau_flow_ns, tau_rv_ns=c.tau_rv_ns, top_n=c.top_n)
    vals, keys = [], []
    for batch in reader:
        fb = books(decode(batch))
        vals.append(fb.values[:fb.n].copy())
        keys.append(fb.keys[:fb.n].copy())
    if not vals:
        return np.zeros((0, FT.N_FEATURES)), np.zeros((0, FT.N_KEYS), np.int64)
    return np.concatenate(vals), np.concatenate(keys)


def labels(values: np.ndarray, keys: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Mid move ``horizon`` rows later for the same symbol (Price(4)), and the rows where it is
    defined (two-sided book now and then)."""
    mid = values[:, FT.F_MID]
    y = np.zeros(len(values))
    ok = np.zeros(len(values), bool)
    loc = keys[:, FT.K_LOCATE]
    order = np.argsort(loc, kind="stable")  # rows grouped by symbol, feed order kept within each
    sl = loc[order]
    starts = np.r_[0, np.nonzero(np.diff(sl))[0] + 1, len(sl)]
    for a, z in zip(starts[:-1], starts[1:]):
        idx = order[a:z]
        if len(idx) <= horizon:
            continue
        now, later = idx[:-horizon], idx[horizon:]
        good = (mid[now] > 0) & (mid[later] > 0)
        y[now] = np.where(good, mid[later] - mid[now], 0.0)
        ok[now] = good
    return y, ok


def model_inputs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw model inputs (float64 [n, k]) through the inference kernel's own input code."""
    from kernels import cpu

    cols = np.array([FT.FEATURE_NAMES.index(col) for _, col, _ in INPUTS], np.int64)
    rels = np.array([1 if rel else 0 for _, _, rel in INPUTS], np.int64)
    x = np.zeros((len(values), len(INPUTS)), np.float64)
    cpu.prepare_inputs(np.ascontiguousarray(values), len(values), cols, rels, x)
    return x, cols, rels


# --- metrics ------------------------------------------------------------------------------------

def metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Out-of-sample figures of a mid-move prediction against a zero predictor."""
    mse = float(np.mean((pred - y) ** 2))
    mse0 = float(np.mean(y ** 2))
    moved = y != 0
    hit = float(np.mean(np.sign(pred[moved]) == np.sign(y[moved]))) if moved.any() else float("nan")
    top = np.abs(pred) >= np.quantile(np.abs(pred), 0.9) if len(pred) else moved
    top_moved = top & moved
    hit_top = float(np.mean(np.sign(pred[top_moved]) == np.sign(y[top_moved]))) if top_moved.any() else float("nan")
    corr = float(np.corrcoef(pred, y)[0, 1]) if len(y) > 1 and pred.std() > 0 and y.std() > 0 else 0.0
    return {"rows": int(len(y)), "mse": mse, "mse_zero": mse0, "r2_vs_zero": 1.0 - mse / mse0 if mse0 else 0.0,
            "corr": corr, "moved_frac": float(moved.mean()) if len(y) else 0.0,
            "direction_hit_rate": hit, "direction_hit_rate_top_decile": hit_top}


# --- ONNX ---------------------------------------------------------------------------------------

def to_onnx(layers: list[tuple[np.ndarray, np.ndarray]], act: str, mean: np.ndarray, std: np.ndarray,
            y_scale: float, y_shift: float, meta: dict[str, str]) -> bytes:
    """The graph: x (float32 [n, k], raw inputs) -> (x - mean) * (1/std) -> Gemm [-> act] ... ->
    * y_scale + y_shift -> y [n, 1]. ``layers``: torch-layout weights [out, in] and biases."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    f32 = lambda a: np.ascontiguousarray(a, np.float32)  # noqa: E731
    k = len(mean)
    inits = [numpy_helper.from_array(f32(mean), "norm_mean"),
             numpy_helper.from_array(f32(1.0 / std), "norm_inv_std")]
    nodes = [helper.make_node("Sub", ["x", "norm_mean"], ["x_centered"], name="norm_sub"),
             helper.make_node("Mul", ["x_centered", "norm_inv_std"], ["h0"], name="norm_mul")]
    cur = "h0"
    for i, (W, b) in enumerate(layers):
        inits += [numpy_helper.from_array(f32(W), f"dense{i}_weight"), numpy_helper.from_array(f32(b), f"dense{i}_bias")]
        out = f"dense{i}"
        nodes.append(helper.make_node("Gemm", [cur, f"dense{i}_weight", f"dense{i}_bias"], [out], name=out,
                                      transB=1))
        cur = out
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu" if act == "relu" else "Tanh", [cur], [f"act{i}"], name=f"act{i}"))
            cur = f"act{i}"
    inits += [numpy_helper.from_array(f32([y_scale]), "target_scale"),
              numpy_helper.from_array(f32([y_shift]), "target_shift")]
    nodes += [helper.make_node("Mul", [cur, "target_scale"], ["y_scaled"], name="target_mul"),
              helper.make_node("Add", ["y_scaled", "target_shift"], ["y"], name="target_add")]
    graph = helper.make_graph(nodes, "hftbot_mid_move_mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])], inits)
    m = helper.make_model(graph, producer_name="hftbot", producer_version="1",
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8  # readable by onnxruntime >= 1.11 and TensorRT 8.x+
    for key, val in meta.items():
        m.metadata_props.add(key=key, value=val)
    onnx.checker.check_model(m)
    return m.SerializeToString()


# --- training -----------------------------------------------------------------------------------

def train(c: TrainConf, out: str | Path | None = None, log=print) -> dict[str, Any]:
    """Train, export and (when ``out`` is given) write ``out.onnx`` and ``out.json``; return the sidecar."""
    try:
        import torch
    except ImportError as exc:
        raise RuntimeError("hftbot train needs PyTorch (CPU): pip install -e '.[train]'") from exc

    t0 = time.perf_counter()
    path = feed_path(c)
    values, keys = build_features(path, c)
    y_all, ok = labels(values, keys, c.horizon)
    x_all, cols, rels = model_inputs(values)
    n = len(values)
    if ok.sum() < 100:
        raise RuntimeError(f"too little data to train: {int(ok.sum())} labelled rows from {path}")
    cut = int(n * c.train_frac)
    rows = np.arange(n)
    tr = ok & (rows < cut)
    te = ok & (rows >= cut + c.horizon)
    x_tr, y_tr, x_te, y_te = x_all[tr], y_all[tr], x_all[te], y_all[te]
    mean = x_tr.mean(axis=0)
    std = x_tr.std(axis=0)
    std[std < 1e-12] = 1.0
    y_scale = float(y_tr.std()) or 1.0
    y_shift = 0.0  # a mid move has no drift to learn: keep the zero predictor inside the model's reach
    t_data = time.perf_counter() - t0
    log(f"data       {path.name}: {n:,} feature rows, {int(ok.sum()):,} labelled; train {len(y_tr):,} / "
        f"test {len(y_te):,} rows; horizon {c.horizon} rows; label std {y_scale:.2f} Price(4) "
        f"({t_data:.1f} s)")

    torch.manual_seed(c.seed)
    torch.use_deterministic_algorithms(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dims = [len(INPUTS), *c.hidden, 1]
        mods: list[Any] = []
        for i in range(len(dims) - 1):
            mods.append(torch.nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                mods.append(torch.nn.ReLU() if c.activation == "relu" else torch.nn.Tanh())
        net = torch.nn.Sequential(*mods)
        xt = torch.from_numpy(((x_tr - mean) / std).astype(np.float32))
        yn = np.clip((y_tr - y_shift) / y_scale, -c.clip, c.clip)
        yt = torch.from_numpy(yn.astype(np.float32)).reshape(-1, 1)
        opt = torch.optim.Adam(net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        gen = torch.Generator().manual_seed(c.seed)
        prog = open_progress()   # a bar on a terminal, nothing otherwise (pipeline/progress.py)
        try:
            for epoch in prog.track(range(c.epochs), "train epochs", total=c.epochs):
                perm = torch.randperm(len(xt), generator=gen)
                total = 0.0
                for s in range(0, len(xt), c.batch):
                    idx = perm[s:s + c.batch]
                    opt.zero_grad()
                    loss = torch.nn.functional.mse_loss(net(xt[idx]), yt[idx])
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                log(f"epoch {epoch + 1:>3}  train loss {total / len(xt):.5f} (normalised, clipped labels)")
        finally:
            prog.close()
        with torch.no_grad():
            pred_te = net(torch.from_numpy(((x_te - mean) / std).astype(np.float32))).numpy().reshape(-1)
            pred_te = pred_te.astype(np.float64) * y_scale + y_shift
            pred_tr = net(xt).numpy().reshape(-1).astype(np.float64) * y_scale + y_shift
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        layers = [(m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()) for m in linears]
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)
    t_train = time.perf_counter() - t0 - t_data

    data_hash = hashlib.sha256(np.ascontiguousarray(values).tobytes() + np.ascontiguousarray(keys).tobytes())
    onnx_bytes = to_onnx(layers, c.activation, mean, std, y_scale, y_shift,
                         {"hftbot.target": "mid move in Price(4) units", "hftbot.horizon_rows": str(c.horizon),
                          "hftbot.training_data_sha256": data_hash.hexdigest()})
    # the exported graph must compute what torch computed
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnx_bytes, sess_options=so, providers=["CPUExecutionProvider"])
    ort_te = sess.run(None, {"x": x_te.astype(np.float32)})[0].reshape(-1)
    err = float(np.max(np.abs(ort_te - pred_te) / (y_scale + np.abs(pred_te)))) if len(pred_te) else 0.0
    if err > 1e-4:
        raise RuntimeError(f"ONNX export disagrees with the torch model (max relative error {err:.2e})")

    oos = metrics(ort_te.astype(np.float64), y_te)
    ins = metrics(pred_tr, y_tr)
    src: dict[str, Any] = ({"capture": str(path)} if c.capture else
                           {"generated": {"messages": c.messages, "symbols": c.symbols, "seed": c.feed_seed,
                                          "format": "itch"}})
    meta: dict[str, Any] = {
        "format": SIDECAR_FORMAT,
        "onnx_sha256": sha256_bytes(onnx_bytes),
        "arch": {"type": "mlp", "dims": dims, "activation": c.activation, "params": int(sum(
            W.size + b.size for W, b in layers)), "dtype": "float32", "opset": 17},
        "feature_names": list(FT.FEATURE_NAMES),
        "feature_params": {"tau_flow_ns": c.tau_flow_ns, "tau_rv_ns": c.tau_rv_ns, "top_n": c.top_n},
        "inputs": [{"name": nm, "column": col, "minus_mid": rel} for nm, col, rel in INPUTS],
        "normalisation": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        "target": {"name": "mid_move", "units": "Price(4)", "horizon_rows": c.horizon,
                   "definition": f"mid of the same symbol {c.horizon} feature rows later minus mid now; "
                                 "rows with a two-sided book now and then",
                   "scale": y_scale, "shift": y_shift, "train_clip_std": c.clip},
        "training": {"seed": c.seed, "data": src, "data_sha256": data_hash.hexdigest(),
                     "data_hash_of": "float64 feature matrix bytes + int64 key matrix bytes, feed order",
                     "rows": n, "train_rows": int(len(y_tr)), "test_rows": int(len(y_te)),
                     "split": f"time order: first {c.train_frac:.0%} train, then a {c.horizon}-row gap, rest test",
                     "epochs": c.epochs, "batch": c.batch, "lr": c.lr, "weight_decay": c.weight_decay,
                     "optimizer": "Adam", "loss": "MSE on normalised, clipped labels",
                     "torch": torch.__version__},
        "metrics": {"out_of_sample": oos, "in_sample": ins},
        "tolerance": {"rtol": RTOL, "atol_times_scale": ATOL},
    }
    log(format_metrics(oos, "out-of-sample"))
    log(format_metrics(ins, "in-sample    "))
    if out is not None:
        out = Path(out)
        onnx_path = out.with_suffix(".onnx") if out.suffix != ".onnx" else out
        onnx_path.parent.mkdir(parents=True, exist_ok=True)
        onnx_path.write_bytes(onnx_bytes)
        onnx_path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
        log(f"wrote      {onnx_path} ({len(onnx_bytes):,} bytes) and {onnx_path.with_suffix('.json').name}; "
            f"{time.perf_counter() - t0:.1f} s in all")
    meta["_onnx_bytes"] = onnx_bytes
    return meta


def format_metrics(m: dict[str, float], label: str) -> str:
    return (f"{label}  {m['rows']:,} rows: MSE {m['mse']:.1f} vs zero predictor {m['mse_zero']:.1f} "
            f"(R2 {m['r2_vs_zero']:+.4f}), corr {m['corr']:+.4f}, direction hit rate {m['direction_hit_rate']:.3f} "
            f"on the {m['moved_frac']:.1%} of rows whose mid moved ({m['direction_hit_rate_top_decile']:.3f} in the "
            f"top decile of |prediction|)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pipeline.cli import locates, positive

    d = TrainConf()
    p.add_argument("--out", default="models/default", help="artifact path without suffix (default models/default)")
    p.add_argument("--capture", help="replay this capture (pcap, pcapng, BinaryFILE) instead of the generated feed")
    p.add_argument("--messages", type=positive, default=d.messages, help=f"generated feed size (default {d.messages:,})")
    p.add_argument("--symbols", type=locates, default=d.symbols, help=f"generated feed symbols (default {d.symbols})")
    p.add_argument("--feed-seed", type=int, default=d.feed_seed, help="generated feed seed")
    p.add_argument("--seed", type=int, default=d.seed, help="training seed (weights init, batch order)")
    p.add_argument("--horizon", type=positive, default=d.horizon, help="label horizon in feature rows of the symbol")
    p.add_argument("--hidden", default=",".join(map(str, d.hidden)), help="hidden widths, e.g. 32,32")
    p.add_argument("--activation", choices=("relu", "tanh"), default=d.activation)
    p.add_argument("--epochs", type=positive, default=d.epochs)
    p.add_argument("--batch", type=positive, default=d.batch)
    p.add_argument("--lr", type=float, default=d.lr)


def conf_from_args(args: argparse.Namespace) -> TrainConf:
    hidden = tuple(int(h) for h in str(args.hidden).split(",") if h.strip())
    if not hidden or min(hidden) < 1 or max(hidden) > 128:
        raise ValueError("--hidden: widths in 1..128, e.g. 32,32")
    if args.horizon < 1 or args.epochs < 1 or args.batch < 1 or args.messages < 1000:
        raise ValueError("--horizon, --epochs, --batch must be >= 1 and --messages >= 1000")
    return TrainConf(capture=args.capture, messages=args.messages, symbols=args.symbols, feed_seed=args.feed_seed,
                     seed=args.seed, horizon=args.horizon, hidden=hidden, activation=args.activation,
                     epochs=args.epochs, batch=args.batch, lr=args.lr)


def cmd_train(args: argparse.Namespace) -> int:
    try:
        c = conf_from_args(args)
        train(c, out=args.out)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"hftbot train: error: {exc}", file=sys.stderr)
        return 2
    return 0
