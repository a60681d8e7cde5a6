"""Model inference: a multilayer perceptron evaluated from the ONNX file's weights, with the input
selection and normalisation fused in. Undecorated bodies compiled by ``kernels/cpu.py`` (njit)
and ``kernels/gpu.py`` (numba.cuda, one thread per feature row).

Inputs (``k = dims[0]`` of them) are columns of the feature matrix ``f`` (float64 [n, N_FEATURES],
``kernels/features.py``), one row per book update:

- ``v = f[r, in_col[i]]``; when ``in_rel[i]`` is set, the column is a price taken relative to
  the mid: ``v - f[r, F_MID]`` if both are non-zero, else 0 (a side empty, or no trade yet).
  Prices are Price(4) units, sizes shares, times ns (as in the feature matrix);
- normalised: ``x[i] = v * in_scale[i] + in_shift[i]`` (``in_scale = 1/std``,
  ``in_shift = -mean/std``, read from the graph's leading Sub/Mul/Div nodes).

Layers ``l < n_layers``: ``y = act[l](W_l x + b_l)``, ``dims[l] -> dims[l + 1]``, ``W_l``
row-major ``[out, in]`` (ONNX Gemm ``transB=1``, PyTorch's layout) at ``w[w_off[l]:]``, ``b_l``
at ``b[b_off[l]:]``; ``act``: ``ACT_IDENTITY``, ``ACT_RELU``, ``ACT_TANH``. Each output is a dot
product over contiguous weights: the CPU backend compiles it with fast-math so the reduction
vectorises (reassociated sums: results differ from a sequential sum in the last bits). The
last layer has one output, the prediction (any output scale and shift of the graph is folded
into that layer): for the shipped model, the expected mid move over its horizon, Price(4) units.

Arithmetic is float64 (the file's float32 weights widened on load). Scratch ``h`` is float64
[2, >= max width] (layers ping-pong between its rows); widths are at most ``MAX_WIDTH``.
``predict_row`` is the one body both backends run per row; ``predict_batch`` (CPU) takes rows
four at a time through ``predict_block4`` (1.5x the throughput of one at a time here).
Nothing allocates, nothing raises.
"""

from __future__ import annotations

import math

from numba.extending import register_jitable

from kernels.features import F_MID

ACT_IDENTITY, ACT_RELU, ACT_TANH = 0, 1, 2
MAX_WIDTH = 128  # widest layer (input included) the kernels accept: the GPU scratch is a local array


@register_jitable
def input_value(f, r, col, rel):
    """Raw model input: feature ``f[r, col]``, or that price minus the mid when ``rel`` (0 if
    either is missing)."""
    v = f[r, col]
    if rel != 0:
        mid = f[r, F_MID]
        if v != 0.0 and mid != 0.0:
            v = v - mid
        else:
            v = 0.0
    return v


@register_jitable
def predict_row(f, r, in_col, in_rel, in_scale, in_shift, n_layers, dims, w, w_off, b, b_off, act, h):
    """The model's output for feature row ``r`` (float64)."""
    h0 = h[0]
    h1 = h[1]
    for i in range(dims[0]):
        h0[i] = input_value(f, r, in_col[i], in_rel[i]) * in_scale[i] + in_shift[i]
    src = 0
    for layer in range(n_layers):
        n_in = dims[layer]
        n_out = dims[layer + 1]
        if src == 0:
            x = h0[:n_in]
            y = h1
        else:
            x = h1[:n_in]
            y = h0
        ws = w[w_off[layer]:]
        bs = b[b_off[layer]:]
        a = act[layer]
        for j in range(n_out):
            wr = ws[j * n_in:(j + 1) * n_in]  # slices: contiguous views the loop vectorises over
            acc = 0.0
            for i in range(n_in):
                acc += wr[i] * x[i]
            acc += bs[j]
            if a == ACT_RELU:
                acc = max(acc, 0.0)
            elif a == ACT_TANH:
                acc = math.tanh(acc)
            y[j] = acc
        src = 1 - src
    return h[src, 0]


@register_jitable
def predict_block4(f, r0, in_col, in_rel, in_scale, in_shift, n_layers, dims, w, w_off, b, b_off, act, hb, out):
    """``out[r0 + q] = model(f[r0 + q])`` for ``q < 4``: four rows through each layer together, so
    every weight loaded serves four dot products (the CPU's batched path; on a GPU each thread
    runs ``predict_row``). Scratch ``hb``: float64 [2, 4, >= max width]."""
    for q in range(4):
        hq = hb[0, q]
        for i in range(dims[0]):
            hq[i] = input_value(f, r0 + q, in_col[i], in_rel[i]) * in_scale[i] + in_shift[i]
    src = 0
    for layer in range(n_layers):
        n_in = dims[layer]
        n_out = dims[layer + 1]
        dst = 1 - src
        x0 = hb[src, 0, :n_in]
        x1 = hb[src, 1, :n_in]
        x2 = hb[src, 2, :n_in]
        x3 = hb[src, 3, :n_in]
        ws = w[w_off[layer]:]
        bs = b[b_off[layer]:]
        a = act[layer]
        for j in range(n_out):
            wr = ws[j * n_in:(j + 1) * n_in]
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            a3 = 0.0
            for i in range(n_in):
                wi = wr[i]
                a0 += wi * x0[i]
                a1 += wi * x1[i]
                a2 += wi * x2[i]
                a3 += wi * x3[i]
            bj = bs[j]
            a0 += bj
            a1 += bj
            a2 += bj
            a3 += bj
            if a == ACT_RELU:
                a0 = max(a0, 0.0)
                a1 = max(a1, 0.0)
                a2 = max(a2, 0.0)
                a3 = max(a3, 0.0)
            elif a == ACT_TANH:
                a0 = math.tanh(a0)
                a1 = math.tanh(a1)
                a2 = math.tanh(a2)
                a3 = math.tanh(a3)
            hb[dst, 0, j] = a0
            hb[dst, 1, j] = a1
            hb[dst, 2, j] = a2
            hb[dst, 3, j] = a3
        src = dst
    for q in range(4):
        out[r0 + q] = hb[src, q, 0]


def predict_batch(f, n, model, scratch, out):
    """``out[r] = model(f[r])`` for rows ``r < n`` (blocks of four, then one at a time); returns
    ``n``. Bundles (``kernels/state.py``): ``model`` ModelArrays, ``scratch`` ModelScratch
    (``h`` float64 [2, W], ``hb`` float64 [2, 4, W], ``W >= `` the widest layer)."""
    in_col, in_rel, in_scale, in_shift, n_layers, dims, w, w_off, b, b_off, act = model
    h, hb = scratch
    m = n - n % 4
    for r0 in range(0, m, 4):
        predict_block4(f, r0, in_col, in_rel, in_scale, in_shift, n_layers, dims, w, w_off, b, b_off, act, hb, out)
    for r in range(m, n):
        out[r] = predict_row(f, r, in_col, in_rel, in_scale, in_shift, n_layers, dims, w, w_off, b, b_off, act, h)
    return n


def prepare_inputs(f, n, in_col, in_rel, x):
    """Raw (unnormalised) model inputs of rows ``r < n`` into ``x[r, i]`` (any float dtype): the
    input of an ONNX graph that normalises itself (the onnxruntime and TensorRT backends)."""
    k = in_col.shape[0]
    for r in range(n):
        for i in range(k):
            x[r, i] = input_value(f, r, in_col[i], in_rel[i])
    return n
