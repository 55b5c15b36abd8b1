"""Chapter config and registration: every parameter the chapter takes (`functok params feature_coverage`), its
default, range and one-line help; presets (data/presets/*.yaml) fill it, functok.chapters.registry lists it.
Imports nothing heavy: validation must answer in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from functok.core.config import Chapter, ChapterConfig, param
from functok.sae.config import SAERecipe
from functok.world.config import CorpusFields


@dataclass
class FeatureCoverageConfig(SAERecipe, CorpusFields, ChapterConfig):
    """Chapter 2: a few function tokens activate most SAE features (Fig 5, Table 1)."""

    chapter: ClassVar[str] = "feature_coverage"

    model: str = param(
        "embedded",
        "'embedded' (the preset's deeper model, final checkpoint), a checkpoint folder, or a hub model such as "
        "google/gemma-2-9b (online)",
        kind="model",
    )
    layers: list = param(
        [],
        "layers whose blocks.{L}.hook_resid_post the SAEs read; empty: the relative depths of the paper's 9/20/31 of "
        "42",
        kind="ints",
    )
    sae: str = param(
        "train",
        "'train' (SAEs trained with SAELens on the model and cached), a local SAE folder, or 'release/sae_id'; "
        "'{layer}' and '{average_l0}' are filled in per layer",
        kind="sae_template",
    )
    average_l0: list = param(
        [],
        "per layer, the average_l0_* of a non-canonical Gemma Scope release ('{average_l0}' in sae); empty: none",
        kind="ints",
    )
    max_tokens: int = param(0, "stop after the windows holding this many tokens (0: all)", lo=0)
    context_size: int = param(
        0, "window length (0: the SAEs' context size from their cfg.json; trained SAEs: the preset's)", lo=0, hi=65536
    )
    top_k: int = param(10, "cumulative coverage of the 1 to top_k most frequent tokens (Table 1)", lo=1, hi=10_000)
    null_draws: int = param(
        200,
        "coverage nulls: seeded draws of random positions and of whole token types (the null-curve claim needs 200)",
        lo=20,
        hi=1000,
    )
    batch_size: int = param(8, "windows per forward pass", lo=1, hi=4096)
    device: str = param("cpu", "where the model, the SAE encoders and the graphs run", choices=("cpu", "cuda"))
    model_dtype: str = param(
        "float32", "dtype of the model's weights (bfloat16 for Gemma-2-9B on one GPU)", choices=("float32", "bfloat16")
    )
    encoder_dtype: str = param(
        "auto",
        "dtype of the SAE encoder weights (auto: bfloat16 on cuda, float32 on cpu); the JumpReLU threshold stays "
        "float32",
        choices=("auto", "float32", "bfloat16"),
    )
    gpu_memory_gb: float = param(
        80.0,
        "device memory budget; configurations whose plan exceeds it are refused before loading",
        lo=1.0,
        hi=10_000.0,
    )
    coverage_threshold: float = param(
        0.40,
        "function tokens: the most frequent tokens covering this share of occurrences (embedded: counted on the "
        "preset's training documents)",
        lo=0.01,
        hi=0.99,
    )
    match_window: float = param(
        1.25,
        "frequency control: each function token is matched to the content tokens whose count is within this factor",
        lo=1.01,
        hi=10.0,
        cost="cheap",
    )
    count_knots: int = param(
        3,
        "frequency control: knots of the piecewise-linear curve of log(1+degree) on log count (0: a straight line)",
        lo=0,
        hi=20,
        cost="cheap",
    )
    n_bootstrap: int = param(
        1000,
        "frequency control: seeded per-token bootstrap resamples (intervals and p-values)",
        lo=1000,
        hi=100_000,
        cost="cheap",
    )
    alpha: float = param(
        0.05,
        "frequency control: family-wise error rate across the layers (Holm-Bonferroni); intervals at 1 - alpha",
        lo=0.001,
        hi=0.2,
        cost="cheap",
    )
    rarefaction_sizes: list = param(
        [25, 50, 100],
        "closed-class control: occurrences per token at which degree is rarefied (distinct features among n)",
        kind="positive_ints",
        min_items=1,
    )
    n_permutations: int = param(
        10_000,
        "closed-class control: seeded permutations of the labels within count bins (p-value error ~0.002)",
        lo=1000,
        hi=1_000_000,
    )
    n_seeds: int = param(
        1,
        "trained SAEs per layer (seeds seed, seed+1, ...: initialisation and activation order); every claim is scored "
        "per seed, and seeds that disagree make it fragile",
        lo=1,
        hi=10,
    )
    activation_store: str = param(
        "off",
        "off: the model runs for each SAE's training set and for the graph; bfloat16 / float32: one forward in that "
        "dtype per token set stores every layer, read by every SAE (layers x seeds) and by the graph",
        choices=("off", "bfloat16", "float32"),
    )
    store_layers: list = param(
        [],
        "further layers the activation stores keep for other chapters (chapter 5's depth); no SAE is trained on them "
        "here",
        kind="ints",
    )
    eval_windows: int = param(
        32, "held-out windows for each local SAE's L0, explained variance and CE reconstruction score (0: skip)", lo=0
    )


CHAPTER = Chapter(
    "feature_coverage",
    "A few function tokens activate most features",
    FeatureCoverageConfig,
    "02_feature_coverage.ipynb",
)
