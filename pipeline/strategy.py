"""The strategy stage: predictions + feature rows (the book as of each update) -> order intents.

``StrategyStage`` owns the strategy's per-symbol state and a preallocated intent table (one row
per feature row at most, so it cannot overflow), and calls ``strategy_batch`` of the pipeline's
kernels module (``kernels/strategy.py``: njit on ``cpu``, numba.cuda on ``cuda``). Thresholds and
sizes come from the ``strategy`` config sub-tree (``pipeline.config.StrategyConf``).

Positions and open orders are the risk/accounting stage's: pass ``RiskStage.state.ps`` as
``positions``; without one (no risk stage in the loop) the stage keeps a zero table, so only the
strategy's own in-flight count limits it. After risk has checked a batch of intents, hand the
decisions back with ``on_decisions`` so in-flight shares are released and rejected quotes freed.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from kernels import intents as IN
from kernels import risk as R
from kernels import strategy as KS
from kernels.state import StrategyArrays

ID_SHIFT = 40  # client order ids: (strategy_id + 1) << 40 onwards (risk's own start at 2**62)


@dataclass
class IntentBatch:
    rows: np.ndarray  # int64 [capacity, NI] (kernels/intents.py); the first n are this batch's
    n: int

    @property
    def intents(self) -> np.ndarray:
        return self.rows[: self.n]


def _conf(conf: Any) -> DictConfig:
    return conf if isinstance(conf, DictConfig) else OmegaConf.structured(conf)


class StrategyStage:
    """Predictions -> order intents. Backends: cpu, cuda."""

    accepts = "PredictionBatch (pipeline/model.py)"
    produces = IntentBatch
    backends = ("cpu", "cuda")

    def __init__(self, backend: ModuleType, conf: Any, rows: int, capacity: int,
                 positions: np.ndarray | None = None):
        """``rows``: symbol rows (the book's ``max_symbols + 1``); ``capacity``: feature rows per batch."""
        c = _conf(conf)
        self.k = backend
        self.conf = c
        self.pf = np.zeros(KS.NPF, np.float64)
        self.pf[KS.PF_QUOTE_TH] = c.quote_threshold
        self.pf[KS.PF_CANCEL_TH] = c.cancel_threshold
        self.pf[KS.PF_TAKE_EDGE] = c.take_edge
        self.pi = np.zeros(KS.NPI, np.int64)
        self.pi[KS.PI_QUOTE_SIZE] = c.quote_size
        self.pi[KS.PI_TAKE_SIZE] = c.take_size
        self.pi[KS.PI_MAX_POS] = c.max_position
        self.pi[KS.PI_MAX_SPREAD] = c.max_spread
        self.pi[KS.PI_MIN_INTERVAL] = c.min_interval_ns
        self.pi[KS.PI_STRATEGY] = c.strategy_id
        for slot, col in ((KS.PI_PS_POS, R.PS_POS), (KS.PI_PS_OPEN_BUY, R.PS_OPEN_BUY),
                          (KS.PI_PS_OPEN_SELL, R.PS_OPEN_SELL), (KS.PI_PS_OUR_BID, R.PS_OUR_BID),
                          (KS.PI_PS_OUR_ASK, R.PS_OUR_ASK)):
            self.pi[slot] = col
        self.ss = np.zeros((int(rows), KS.NSS), np.int64)
        self.sg = np.zeros(KS.NSG, np.int64)
        self.sg[KS.SG_NEXT_ID] = (int(c.strategy_id) + 1) << ID_SHIFT
        if positions is None:
            positions = np.zeros((int(rows), R.NPS), np.int64)
        if positions.shape[0] < rows or positions.shape[1] < R.NPS:
            raise ValueError(f"positions table {positions.shape} is smaller than ({rows}, {R.NPS})")
        self.ps = positions
        self.out = IN.new_intents(max(int(capacity), 1))

    def reserve(self, n: int) -> None:
        """Room for the intents of ``n`` feature rows (at most one each) in ``out``."""
        if n > self.out.shape[0]:
            self.out = IN.new_intents(n)

    def __call__(self, pred) -> IntentBatch:
        """``pred``: a ``PredictionBatch`` (its ``features`` the feature batch it was made from)."""
        n = int(pred.n)
        self.reserve(n)
        fb = pred.features
        m = self.k.strategy_batch(n, pred.values, fb.values, fb.keys, self.ps, self.ss, self.sg, self.pf, self.pi,
                                  self.out)
        return IntentBatch(self.out, int(m))

    def warm(self, pred: np.ndarray, fo: np.ndarray, fk: np.ndarray) -> None:
        """Compile (or load from the cache) both kernels on empty inputs; nothing changes."""
        self.k.strategy_batch(0, pred, fo, fk, self.ps, self.ss, self.sg, self.pf, self.pi, self.out)
        self.k.strategy_ack(0, self.out, np.zeros((0, IN.ND), np.int64), self.ss, self.sg)

    def on_decisions(self, batch: IntentBatch, decisions: np.ndarray) -> int:
        """Risk's decisions (int64 [n, ND]) for ``batch``: release in-flight shares, free rejected
        quotes. Returns the rejections."""
        return int(self.k.strategy_ack(batch.n, batch.rows, np.ascontiguousarray(decisions, np.int64),
                                       self.ss, self.sg))

    def arrays(self) -> StrategyArrays:
        """State and parameters in kernel argument order (``strategy_batch`` after ``ps``)."""
        return StrategyArrays(self.ss, self.sg, self.pf, self.pi)

    def counters(self) -> dict[str, int]:
        g = self.sg
        return {"rows": int(g[KS.SG_ROWS]), "quotes": int(g[KS.SG_QUOTES]), "takes": int(g[KS.SG_TAKES]),
                "cancels": int(g[KS.SG_CANCELS]), "skipped_book": int(g[KS.SG_SKIP_BOOK]),
                "skipped_interval": int(g[KS.SG_SKIP_INTERVAL]), "held_by_position": int(g[KS.SG_SKIP_POSITION]),
                "held_self_cross": int(g[KS.SG_SKIP_SELF]), "rejected_by_risk": int(g[KS.SG_REJECTED])}


def model_and_strategy(cfg: DictConfig, backend: ModuleType, book, capacity: int, positions: np.ndarray | None = None,
                       log=print):
    """The run loop's model and strategy stages from the run config (``None`` where disabled).
    A model that cannot be used is a ``ConfigError`` naming the key (the app prints it)."""
    from pipeline.config import ConfigError
    from pipeline.model import ModelError, ModelStage, load_model

    m = cfg.model
    if not m.enabled:
        return None, None
    opts: dict[str, Any] = {}
    if m.backend == "onnxruntime":
        opts = {"providers": list(m.providers), "threads": int(m.threads)}
    try:
        model = ModelStage(load_model(m.path), m.backend, backend, capacity, **opts)
    except ModelError as exc:
        raise ConfigError(str(exc) if str(exc).startswith("model.") else f"model.path: {exc}") from None
    trained = model.model.meta.get("feature_params", {})
    ft = cfg.features
    differ = [k for k in ("tau_flow_ns", "tau_rv_ns", "top_n") if k in trained and float(trained[k]) != float(ft[k])]
    if differ:
        log(f"note       the model was trained with other feature parameters ({', '.join(differ)}: "
            f"{', '.join(str(trained[k]) for k in differ)}); its predictions may not mean much")
    strat = None
    if cfg.strategy.enabled:
        strat = StrategyStage(backend, cfg.strategy, rows=book.sym.shape[0], capacity=capacity, positions=positions)
    return model, strat
