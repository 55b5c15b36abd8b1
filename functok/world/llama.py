"""The embedded models: a Llama-architecture decoder built from a PretrainConfig, its fused
unembedding + cross-entropy (`lm_loss`), `torch.compile` of the decoder, and the fp32 matmul
reference that throughput is measured against."""

from __future__ import annotations

import os
import time

from functok.core.config import ParamError
from functok.world.config import PretrainConfig

LOSS_CHUNK = 128  # tokens per chunk of the fused unembedding + cross-entropy


def check_shape(cfg: PretrainConfig) -> None:
    if cfg.d_model % cfg.n_heads or (cfg.d_model // cfg.n_heads) % 2:
        raise ParamError(
            f"n_heads: got {cfg.n_heads} with d_model {cfg.d_model}; expected a divisor of d_model "
            f"leaving an even head width (rotary positions)"
        )


def build_model(cfg: PretrainConfig, depth: int, tok):
    """A freshly initialised Llama (RMSNorm, rotary, SwiGLU, untied embeddings, no biases), seeded."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    check_shape(cfg)
    conf = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_mlp,
        num_hidden_layers=depth,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        max_position_embeddings=cfg.context_size,
        hidden_act="silu",
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        attention_dropout=0.0,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        use_cache=False,
    )
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(conf)
    # GPT-2-style scaled init of the projections that write into the residual stream (std 0.02 /
    # sqrt(2 x depth)); HF Llama uses 0.02 everywhere. Measured on the embedded data (1M tokens,
    # batch 8 x 256): the 8-layer model's held-out loss 5.23 -> 5.16 with it (2-layer 4.92 -> 4.89).
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.mul_((2 * depth) ** -0.5)
            layer.mlp.down_proj.weight.mul_((2 * depth) ** -0.5)
    model.train()
    return model


def _linear_ce_class():
    import torch
    import torch.nn.functional as F

    class _LinearCrossEntropy(torch.autograd.Function):
        """mean(CE(h @ W.T, y)) and the per-token CE, computed chunk by chunk.

        The gradients are computed in the forward pass, chunk by chunk (the logits of one chunk
        stay in cache), and scaled by the incoming gradient in backward. Exact, not approximate:
        tests/test_pretrain.py compares it with the plain logits path.
        """

        @staticmethod
        def forward(ctx, h, W, y, chunk):
            N = h.shape[0]
            loss = torch.empty(N, dtype=h.dtype)
            gh = torch.empty_like(h)
            gW = torch.zeros_like(W)
            for i in range(0, N, chunk):
                hc, yc = h[i : i + chunk], y[i : i + chunk]
                logp = torch.log_softmax(hc @ W.T, dim=-1)
                loss[i : i + chunk] = F.nll_loss(logp, yc, reduction="none")  # = cross_entropy(logits, yc)
                p = logp.exp_()
                p[torch.arange(p.shape[0]), yc] -= 1.0
                p.mul_(1.0 / N)
                torch.mm(p, W, out=gh[i : i + chunk])
                gW.addmm_(p.T, hc)
            ctx.save_for_backward(gh, gW)
            ctx.mark_non_differentiable(loss)
            return loss.mean(), loss

        @staticmethod
        def backward(ctx, g, _unused):
            gh, gW = ctx.saved_tensors
            return gh * g, gW * g, None, None

    return _LinearCrossEntropy


_LCE = None


def lm_loss(model, input_ids, chunk: int = LOSS_CHUNK, body=None):
    """(mean loss, per-token loss [batch, pos-1]) of next-token prediction, one forward pass.
    `body`: a compiled `model.model` to run instead of the eager one."""
    global _LCE
    if _LCE is None:
        _LCE = _linear_ce_class()
    h = (model.model if body is None else body)(input_ids=input_ids, use_cache=False).last_hidden_state
    B, T, d = h.shape
    hs = h[:, :-1].reshape(-1, d)
    y = input_ids[:, 1:].reshape(-1)
    mean, per = _LCE.apply(hs, model.lm_head.weight, y, chunk)
    return mean, per.view(B, T - 1)


def matmul_gflops(n: int = 2048, seconds: float = 1.0) -> float:
    """fp32 GFLOP/s of a square n x n matmul on this machine, now."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return 2 * n**3 * reps / dt / 1e9


def use_compile(train_flops: float) -> bool:
    """Whether to torch.compile the decoder for training. FUNCTOK_COMPILE=1 / 0 forces it; the default
    ('auto') compiles runs of at least 1e13 training FLOPs (6 x params x tokens, a minute or more
    here), where fusing RMSNorm, rotary and SwiGLU element-wise work (~1.2x on the 8-layer model)
    repays the ~30 s compile; tiny runs (tests, the smoke preset) stay eager. Falls back to eager if
    compiling fails (e.g. no C++ compiler)."""
    env = os.environ.get("FUNCTOK_COMPILE", "auto")
    if env not in ("0", "1", "auto"):
        raise ParamError(f"FUNCTOK_COMPILE: got {env!r}; expected 0, 1 or auto")
    return env == "1" or (env == "auto" and train_flops >= 1e13)


def compile_body(model):
    """A compiled view of model.model (same parameters; the saved model stays the plain HF one)."""
    import torch

    cfg = torch._dynamo.config  # every model instance is a recompile of LlamaModel.forward
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name):
            setattr(cfg, name, max(getattr(cfg, name), 256))
    return torch.compile(model.model, dynamic=False)
