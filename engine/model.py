"""GPT-2 forward pass, composed of named stages.

One class serves every flag combination; each flag swaps one mechanism:
  pool     -> where op outputs go (Workspace: fresh arrays vs reused buffers)
  kv       -> where K/V come from (this step's projections vs the KVCache)
  fused    -> which block body runs (NumPy ops vs numba kernels with merged passes)
  fastgelu -> which GELU formula
Stage edges are reported to `self.probe` (no-op by default).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import fused, ops
from .config import ModelConfig
from .flags import OptFlags
from .kv_cache import KVCache
from .probe import NO_LAYER, NULL_PROBE
from .weights import Weights
from .workspace import Workspace


@dataclass
class Block:
    ln_1_g: np.ndarray
    ln_1_b: np.ndarray
    w_qkv: np.ndarray  # [C, 3C], Conv1D layout; q/k/v are column slices of it
    b_qkv: np.ndarray
    w_o: np.ndarray
    b_o: np.ndarray
    ln_2_g: np.ndarray
    ln_2_b: np.ndarray
    w_fc: np.ndarray
    b_fc: np.ndarray
    w_mp: np.ndarray
    b_mp: np.ndarray

    @classmethod
    def from_weights(cls, w: Weights, i: int) -> "Block":
        h = f"h.{i}."
        return cls(w[h + "ln_1.weight"], w[h + "ln_1.bias"],
                   w[h + "attn.c_attn.weight"], w[h + "attn.c_attn.bias"],
                   w[h + "attn.c_proj.weight"], w[h + "attn.c_proj.bias"],
                   w[h + "ln_2.weight"], w[h + "ln_2.bias"],
                   w[h + "mlp.c_fc.weight"], w[h + "mlp.c_fc.bias"],
                   w[h + "mlp.c_proj.weight"], w[h + "mlp.c_proj.bias"])


@dataclass
class KVStats:
    """K/V rows the attention needed: computed this step vs reused from the cache."""
    computed: int = 0
    reused: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.computed + self.reused
        return self.reused / total if total else 0.0


class GPT:
    def __init__(self, cfg: ModelConfig, weights: Weights, flags: OptFlags, tokenizer=None):
        self.cfg = cfg
        self.flags = flags
        self.weights = weights
        self.tokenizer = tokenizer
        self.wte, self.wpe = weights["wte.weight"], weights["wpe.weight"]
        self.lm_head_w = self.wte.T  # tied head, a view: no copy of the embedding
        self.ln_f_g, self.ln_f_b = weights["ln_f.weight"], weights["ln_f.bias"]
        self.blocks = [Block.from_weights(weights, i) for i in range(cfg.n_layer)]
        self.eps = float(cfg.layer_norm_epsilon)
        self.scale = np.float32(1.0 / math.sqrt(cfg.head_dim))
        self.gelu = "fast" if flags.fastgelu else cfg.activation
        self.ws = Workspace(pooled=flags.pool)
        self.cache = KVCache(cfg) if flags.kv else None
        self.kv_stats = KVStats()
        self.probe = NULL_PROBE
        self._pooled_mask = (np.triu(np.full((cfg.n_ctx, cfg.n_ctx), -np.inf, np.float32), k=1)
                             if flags.pool else None)
        if flags.fused:
            fused.warm_up()

    # ---- public entry points -------------------------------------------------
    def reset(self) -> None:
        """Forget the cached sequence (the next step re-prefills)."""
        if self.cache is not None:
            self.cache.reset()

    def step_logits(self, window: list[int]) -> np.ndarray:
        """Logits [vocab] for the next token after `window` (the tokens in context).

        With `kv` only the positions not yet cached are computed; without it the whole
        window is recomputed. The returned array may be a reused buffer.
        """
        start = self.cache.length if self.cache is not None else 0
        return self.forward(window[start:], start, last_only=True)[0]

    def forward(self, ids, start: int, last_only: bool) -> np.ndarray:
        """Logits for `ids` placed at absolute positions start.. (only the last row if last_only)."""
        probe, n_new = self.probe, len(ids)
        x = self._embed(ids, start)
        probe.stage_end("embed", NO_LAYER)
        if self.flags.fused:
            h = self._blocks_fused(x, start)
        else:
            for i, block in enumerate(self.blocks):
                x = self._block(x, block, i, start)
            h = ops.layer_norm(x, self.ln_f_g, self.ln_f_b, self.eps, self.ws, "ln")
            probe.stage_end("ln_f", NO_LAYER)
        if last_only:
            h = h[-1:]
        logits = np.matmul(h, self.lm_head_w, out=self.ws.take("logits", (h.shape[0], self.cfg.vocab_size)))
        probe.stage_end("lm_head", NO_LAYER)
        self.kv_stats.computed += n_new
        self.kv_stats.reused += start
        if self.cache is not None:
            self.cache.length = start + n_new
        return logits

    # ---- stages --------------------------------------------------------------
    def _embed(self, ids, start: int) -> np.ndarray:
        n, c, ws = len(ids), self.cfg.n_embd, self.ws
        x = ws.take("x", (n, c))
        if n == 1:  # decode step: add two row views, no index array
            np.add(self.wte[ids[0]], self.wpe[start], out=x[0])
            return x
        # mode="clip": ids are validated already, and "raise" would buffer `out` (a hidden copy).
        tok = np.take(self.wte, ids, axis=0, out=ws.take("emb", (n, c)), mode="clip")
        return np.add(tok, self.wpe[start:start + n], out=x)

    def _qkv(self, h, b: Block, i: int, start: int):
        """Project to per-head q [H,T,hd], kT [H,hd,T_all], v [H,T_all,hd] (unfused: three matmuls)."""
        n, c, H, hd, ws = h.shape[0], self.cfg.n_embd, self.cfg.n_head, self.cfg.head_dim, self.ws
        q = ops.linear(h, b.w_qkv[:, :c], b.b_qkv[:c], ws, "q")
        k = ops.linear(h, b.w_qkv[:, c:2 * c], b.b_qkv[c:2 * c], ws, "k")
        v = ops.linear(h, b.w_qkv[:, 2 * c:], b.b_qkv[2 * c:], ws, "v")
        q_h = q.reshape(n, H, hd).transpose(1, 0, 2)
        kt_new = k.reshape(n, H, hd).transpose(1, 2, 0)
        v_new = v.reshape(n, H, hd).transpose(1, 0, 2)
        if self.cache is None:
            return q_h, kt_new, v_new
        end = start + n
        kt_all, v_all = self.cache.kt[i], self.cache.v[i]
        np.copyto(kt_all[:, :, start:end], kt_new)
        np.copyto(v_all[:, start:end], v_new)
        return q_h, kt_all[:, :, :end], v_all[:, :end]

    def _mask(self, n_new: int, n_total: int, start: int) -> np.ndarray:
        if self._pooled_mask is not None:
            return self._pooled_mask[start:start + n_new, :n_total]
        return ops.causal_mask(n_new, n_total, start)

    def _block(self, x, b: Block, i: int, start: int) -> np.ndarray:
        probe, ws, eps = self.probe, self.ws, self.eps
        h = ops.layer_norm(x, b.ln_1_g, b.ln_1_b, eps, ws, "ln")
        probe.stage_end("ln_1", i)
        q, kt, v = self._qkv(h, b, i, start)
        probe.stage_end("attn.qkv", i)
        ctx = self._attention(q, kt, v, i, start, prescaled=False)
        a = ops.linear(ctx, b.w_o, b.b_o, ws, "attn_out")
        probe.stage_end("attn.proj", i)
        x = np.add(x, a, out=ws.take("x", x.shape))
        probe.stage_end("residual", i)

        h = ops.layer_norm(x, b.ln_2_g, b.ln_2_b, eps, ws, "ln")
        probe.stage_end("ln_2", i)
        f = ops.linear(h, b.w_fc, b.b_fc, ws, "fc")
        probe.stage_end("mlp.fc", i)
        f = ops.GELUS[self.gelu](f, ws, "gelu")
        probe.stage_end("mlp.gelu", i)
        m = ops.linear(f, b.w_mp, b.b_mp, ws, "mlp_out")
        probe.stage_end("mlp.proj", i)
        x = np.add(x, m, out=ws.take("x", x.shape))
        probe.stage_end("residual", i)
        return x

    def _attention(self, q, kt, v, i: int, start: int, prescaled: bool) -> np.ndarray:
        """Causal attention with the score matrix materialised: ctx [n, C] with heads merged."""
        probe, ws = self.probe, self.ws
        (H, n, hd), n_total = q.shape, kt.shape[2]
        s = np.matmul(q, kt, out=ws.take("scores", (H, n, n_total)))
        if not prescaled:
            s = np.multiply(s, self.scale, out=ws.take("scores", s.shape))
        if n > 1:
            s = np.add(s, self._mask(n, n_total, start), out=ws.take("scores", s.shape))
        probe.stage_end("attn.scores", i)
        p = ops.softmax_lastaxis(s, ws, "probs")
        probe.stage_end("attn.softmax", i)
        ctx_h = np.matmul(p, v, out=ws.take("ctx_h", (H, n, hd)))
        ctx = ws.take("ctx", (n, H * hd))
        np.copyto(ctx.reshape(n, H, hd), ctx_h.transpose(1, 0, 2))
        probe.stage_end("attn.context", i)
        return ctx

    def _kv_store(self, i: int, n_total: int):
        if self.cache is not None:
            return self.cache.kt[i], self.cache.v[i]
        H, hd = self.cfg.n_head, self.cfg.head_dim
        return self.ws.take("kt", (H, hd, n_total)), self.ws.take("v", (H, n_total, hd))

    def _blocks_fused(self, x, start: int) -> np.ndarray:
        """All blocks plus ln_f; each block ends by normalising for the next one."""
        probe, ws, eps = self.probe, self.ws, self.eps
        n, c, H, hd = x.shape[0], self.cfg.n_embd, self.cfg.n_head, self.cfg.head_dim
        gelu_mode = fused.GELU_MODES[self.gelu]
        h = ws.take("h", (n, c))
        first = self.blocks[0]
        fused.layer_norm(x, first.ln_1_g, first.ln_1_b, eps, h)
        probe.stage_end("ln_1", 0)
        for i, b in enumerate(self.blocks):
            qkv = np.matmul(h, b.w_qkv, out=ws.take("qkv", (n, 3 * c)))
            kt, v = self._kv_store(i, start + n)
            q = ws.take("q", (H, n, hd))
            fused.split_heads(qkv, b.b_qkv, self.scale, q, kt, v, start)
            probe.stage_end("attn.qkv", i)
            if n == 1:  # decode: one query over the cache, scores never materialised
                ctx = ws.take("ctx", (n, c))
                fused.attend(q, kt, v, start, ws.take("scores1", (start + n,)), ctx)
                probe.stage_end("attn.core", i)
            else:  # prefill / full window: BLAS beats a scalar loop over T queries
                ctx = self._attention(q, kt[:, :, :start + n], v[:, :start + n], i, start, prescaled=True)
            a = np.matmul(ctx, b.w_o, out=ws.take("attn_out", (n, c)))
            probe.stage_end("attn.proj", i)
            fused.residual_layer_norm(x, a, b.b_o, b.ln_2_g, b.ln_2_b, eps, h)
            probe.stage_end("residual+ln_2", i)
            f = np.matmul(h, b.w_fc, out=ws.take("fc", (n, 4 * c)))
            probe.stage_end("mlp.fc", i)
            fused.bias_gelu(f, b.b_fc, gelu_mode)
            probe.stage_end("mlp.gelu", i)
            m = np.matmul(f, b.w_mp, out=ws.take("mlp_out", (n, c)))
            probe.stage_end("mlp.proj", i)
            if i + 1 < len(self.blocks):
                nxt = self.blocks[i + 1]
                fused.residual_layer_norm(x, m, b.b_mp, nxt.ln_1_g, nxt.ln_1_b, eps, h)
                probe.stage_end("residual+ln_1", i + 1)
            else:
                fused.residual_layer_norm(x, m, b.b_mp, self.ln_f_g, self.ln_f_b, eps, h)
                probe.stage_end("residual+ln_f", NO_LAYER)
        return h

    # ---- sizes ---------------------------------------------------------------
    @property
    def model_bytes(self) -> int:
        return sum(a.nbytes for a in self.weights.values())

    @property
    def kv_cache_bytes(self) -> int:
        return self.cache.nbytes if self.cache is not None else 0
