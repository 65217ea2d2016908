"""The probe protocol: how the engine tells an observer where stage edges are.

The engine calls `stage_end(stage, layer)` when a stage finishes; everything since
the previous edge belongs to that stage. `step_begin`/`step_end` bracket one
decode step (forward + sampling). The default probe does nothing, so an
uninstrumented run pays one no-op method call per stage edge.
"""
from __future__ import annotations

# Stage names as they appear in records and reports (DESIGN.md). Fused stages are
# named after what they merge, e.g. "residual+ln_2" or "attn.core".
STAGES = ("embed", "ln_1", "attn.qkv", "attn.scores", "attn.softmax", "attn.context",
          "attn.proj", "residual", "ln_2", "mlp.fc", "mlp.gelu", "mlp.proj", "ln_f",
          "lm_head", "sample")
FUSED_STAGES = ("attn.core", "residual+ln_1", "residual+ln_2", "residual+ln_f")

NO_LAYER = -1  # stages outside the transformer blocks


class NullProbe:
    def step_begin(self, n_new: int, n_total: int) -> None:
        pass

    def stage_end(self, stage: str, layer: int) -> None:
        pass

    def step_end(self) -> None:
        pass


NULL_PROBE = NullProbe()
