"""The GPU memory plan of a feature-coverage run at paper scale (model + encoders + activations +
graphs), checked before anything is loaded; see functok.sae.encoding for why encoders fit."""

from __future__ import annotations

from functok.core.config import ParamError

GiB = 2**30


PAPER_SETUP = dict(
    d_model=3584,
    d_sae=2**20,
    n_saes=3,
    model_params=9_241_705_984,
    batch_tokens=16 * 1024,
    context_size=1024,
    n_heads=16,
    d_mlp=14336,
    vocab_size=256_000,
    n_tokens=5_000_000,
    l0=128,
    null_draws=20,
)


def memory_plan(
    *,
    d_model: int,
    d_sae: int,
    n_saes: int,
    model_params: int,
    batch_tokens: int,
    context_size: int = 1024,
    n_heads: int = 16,
    d_mlp: int | None = None,
    model_bytes: int = 2,
    weight_bytes: int = 2,
    keep_decoder: bool = False,
    token_chunk: int = 4096,
    feature_chunk: int = 65536,
    l0: float = 128,
    graph_on_device: bool = True,
    n_tokens: int = 5_000_000,
    vocab_size: int = 256_000,
    graph_buffer_keys: int = 2**24,
    null_draws: int = 0,
    overhead_bytes: int = 2 * GiB,
) -> dict[str, int]:
    """Bytes on the accelerator for one streaming pass (forward + SAE encoding + graph), by item.

    model_bytes / weight_bytes: bytes per model parameter / per SAE encoder weight (2: bf16).
    keep_decoder: also hold W_dec (not needed for the graph). l0: mean active features per token.
    graph_on_device: the graphs live on the device; their size is bounded by every firing being a
    distinct edge (n_tokens * l0, at most vocab_size * d_sae) at 12 bytes an edge (int64 key + int32
    count), plus a flush buffer and the largest merge (bounded here by a quarter of the edges).
    null_draws: draws of the coverage null model (functok.chapters.feature_coverage.null): int32 min_rank
    [null_draws, d_sae] per SAE, one batch's int32 ranks, and a batch's non-zeros as int64 indices.
    """
    d_mlp = d_mlp or 4 * d_model
    plan = {
        "model weights": model_params * model_bytes,
        # MLP gate/up/act in the model dtype, a few fp32 residual-sized temporaries, attention scores
        # and probabilities in fp32 (eager attention, as Gemma-2's soft-capping needs)
        "forward activations (one batch)": batch_tokens * (3 * d_mlp * model_bytes + 4 * d_model * 4)
        + 2 * batch_tokens * n_heads * context_size * 4,
        "captured residuals": n_saes * batch_tokens * d_model * model_bytes,
        "SAE encoders (W_enc, b_enc, threshold, b_dec)": n_saes
        * (d_model * d_sae * weight_bytes + 2 * d_sae * 4 + d_model * 4),
        # one block of fp32 pre-activations, its mask, a bf16 matmul output, the fp32 input chunk
        "encoding block": token_chunk * feature_chunk * (4 + 1 + weight_bytes) + token_chunk * d_model * 8,
        # (row, feature, value) + the sort permutation, for every SAE of a batch
        "non-zeros of a batch": n_saes * int(batch_tokens * l0) * (8 + 8 + 4 + 8),
    }
    if keep_decoder:
        plan["SAE decoders (W_dec)"] = n_saes * d_sae * d_model * weight_bytes
    if graph_on_device:
        edges = min(int(n_tokens * l0), vocab_size * d_sae)
        plan["token-feature graphs (bound)"] = n_saes * edges * 12 + edges * 12 // 4 + graph_buffer_keys * 25
    if null_draws:
        plan["coverage null (min ranks, a batch's ranks)"] = (
            n_saes * null_draws * d_sae * 4 + null_draws * batch_tokens * 4 + int(batch_tokens * l0) * (8 + 8 + 4)
        )
    plan["CUDA context and allocator slack"] = overhead_bytes
    return plan


def estimate_memory(**kwargs) -> int:
    """Total bytes of `memory_plan(**kwargs)`."""
    return sum(memory_plan(**kwargs).values())


def format_plan(plan: dict[str, int]) -> str:
    lines = [f"  {k:48s} {v / 1e9:7.2f} GB" for k, v in plan.items()]
    lines.append(f"  {'total':48s} {sum(plan.values()) / 1e9:7.2f} GB")
    return "\n".join(lines)


def check_memory(budget_bytes: int, name: str = "memory plan", **kwargs) -> dict[str, int]:
    """The plan, or ParamError (one line) when it exceeds budget_bytes, before anything is loaded."""
    plan = memory_plan(**kwargs)
    total = sum(plan.values())
    if total > budget_bytes:
        big = sorted(plan.items(), key=lambda kv: -kv[1])[:3]
        parts = ", ".join(f"{k} {v / 1e9:.1f} GB" for k, v in big)
        raise ParamError(
            f"{name}: this configuration needs about {total / 1e9:.1f} GB on the device and "
            f"{budget_bytes / 1e9:.1f} GB are available (largest: {parts}); expected a plan that fits: "
            f"fewer SAEs at once, smaller batch_tokens, bf16 encoder weights, no decoder, or the graph on the host"
        )
    return plan


def host_memory_to_load(d_in: int, d_sae: int) -> int:
    """Peak host bytes to load one SAE through SAELens on the CPU (W_enc + W_dec in fp32, plus the
    transient copy its loaders make of one matrix)."""
    return 3 * d_in * d_sae * 4
