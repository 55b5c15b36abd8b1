"""Chapter config and registration: every parameter the chapter takes (`functok params feature_growth`), its
default, range and one-line help; presets (data/presets/*.yaml) fill it, functok.chapters.registry lists it.
Imports nothing heavy: validation must answer in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from functok.core.config import Chapter, ChapterConfig, param, retune
from functok.sae.config import SAERecipe
from functok.world.config import CorpusFields


# the paper's SAE (JumpReLU), wide enough that only the last checkpoint's feature count may come within 10%
# of d_sae (paper: 16 x 4,096), searched from coefficient 1 on 150k activations per SAE (paper: 1B)
@dataclass
@retune(architecture="jumprelu", expansion_factor=64, sparsity_coefficient=1.0, training_tokens=150_000)
class FeatureGrowthConfig(SAERecipe, CorpusFields, ChapterConfig):
    """Chapter 4: learned features grow over pre-training (Fig 8a, Fig 8b, Fig 12). Its SAE recipe's
    `sparsity_coefficient` is where the coefficient search starts at the first checkpoint (later ones start
    from the previous choice)."""

    chapter: ClassVar[str] = "feature_growth"

    model: str = param(
        "embedded",
        "'embedded' (the preset's shallow model, like the paper's 2-layer one), a functok run folder, or a hub model "
        "with step revisions such as EleutherAI/pythia-160m-deduped (online)",
        kind="model",
    )
    checkpoint_fractions: list = param(
        [0.07, 0.14, 0.26, 0.5, 1.0],
        "study one distinct checkpoint per fraction of training, the nearest in log step (step 0 excluded; two "
        "fractions never share a checkpoint: a run with fewer checkpoints is refused)",
        kind="unit_fractions",
        min_items=1,
    )
    checkpoint_steps: list = param(
        [], "explicit checkpoint steps instead (hub models: Pythia revisions step{N}, required)", kind="ints"
    )
    layer: int = param(
        -1,
        "layer whose blocks.{L}.hook_resid_post the SAEs read; negative counts from the last (-1: the last, as the "
        "paper)",
        lo=-1000,
        hi=1000,
    )
    match_on: str = param(
        "mean_ablation",
        "quality every checkpoint's SAE is matched to: 'mean_ablation' (loss recovered relative to replacing the "
        "activation by its mean), 'explained_variance', or 'zero_ablation' (the paper's CE score)",
        choices=("mean_ablation", "explained_variance", "zero_ablation"),
    )
    target_score: float = param(0.95, "the quality (match_on) every checkpoint's SAE is matched to", lo=0.01, hi=0.9999)
    tolerance: float = param(
        0.01,
        "a checkpoint is matched when the target is bracketed and its SAE's quality is within this of the target",
        lo=0.0001,
        hi=0.5,
    )
    search_steps: int = param(
        4,
        "SAEs the coefficient search may train per checkpoint to bracket the target (plus one at the interpolated "
        "coefficient)",
        lo=1,
        hi=100,
    )
    search_factor: float = param(
        4.0, "multiplicative step of the coefficient while the target is not yet bracketed", lo=1.1, hi=1000.0
    )
    n_seeds: int = param(
        3, "SAEs (seeds) per checkpoint at the chosen coefficient, for the spread of Fig 8a", lo=1, hi=50
    )
    backend: str = param(
        "activations",
        "SAE training: 'activations' (SAETrainer on activations computed once per checkpoint) or 'runner' (SAELens's "
        "LanguageModelSAETrainingRunner)",
        choices=("activations", "runner"),
    )
    n_activations: int = param(
        50_000, "held-out activations on which learned features are counted (paper: 500,000)", lo=100
    )
    eval_windows: int = param(
        32, "held-out windows for the reconstruction score, L0 and explained variance (0: all)", lo=0
    )
    slope_ranks: int = param(
        300, "degree-curve steepness: log-log slope fitted over this many most frequent tokens", lo=3, hi=10_000_000
    )
    top_tokens: int = param(
        10,
        "degree-curve steepness: share of connected features reached by this many most frequent tokens",
        lo=1,
        hi=10_000,
    )
    context_size: int = param(0, "window length (0: the preset's pretrain context_size)", lo=0, hi=65536)
    device: str = param("cpu", "where models and SAEs run", choices=("cpu", "cuda"))
    keep_checkpoints: bool = param(False, "keep downloaded hub checkpoints after use")


CHAPTER = Chapter(
    "feature_growth", "Learned features grow over pre-training", FeatureGrowthConfig, "04_feature_growth.ipynb"
)
