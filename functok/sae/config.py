"""The SAE recipe: how a chapter trains its SAEs with SAELens. A field group declared once and shared by
the chapters that train SAEs (chapter 2 and chapter 4; chapter 5 reuses chapter 2's); functok.chapters.common.
sae_training_spec turns its fields into the `SAESpec` functok.sae.training trains and caches by.
Imports nothing heavy: validation must answer in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

from functok.core.config import param

ARCHITECTURES = ("jumprelu", "standard", "gated", "topk", "batchtopk")  # SAELens's


@dataclass
class SAERecipe:
    """The SAE a chapter trains (a shared field group: chapters inherit it and `retune` its defaults)."""

    architecture: str = param(
        "batchtopk",
        "SAELens SAE architecture (batchtopk: saved as a JumpReLU SAE, Gemma Scope's kind, with a learned threshold; "
        "jumprelu: the paper's, with the tanh sparsity penalty)",
        choices=ARCHITECTURES,
    )
    expansion_factor: int = param(16, "SAE width d_sae as a multiple of d_model", lo=1, hi=1024)
    sparsity_coefficient: float = param(
        16.0,
        "the architecture's sparsity knob (topk/batchtopk: k, the mean L0; jumprelu: l0_coefficient); chapter 4's "
        "coefficient search starts from it",
        lo=1e-6,
        hi=1e6,
    )
    training_tokens: int = param(1_000_000, "activations each SAE trains on (paper: 1B)", lo=1000)
    sae_batch_size: int = param(512, "activations per SAE optimizer step (paper: 4096)", lo=16, hi=1_000_000)
    sae_lr: float = param(
        1e-3,
        "SAE learning rate (Adam; warm-up 5%, linear decay over the last 20%; paper: 1e-5 for 1B activations)",
        lo=1e-7,
        hi=1.0,
    )
    sae_autocast: bool = param(
        False, "SAELens's mixed precision for SAE training (bfloat16 matmuls; 1.35x faster on 2 avx512_bf16 cores)"
    )
