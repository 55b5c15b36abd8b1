"""Chapter config and registration: every parameter the chapter takes (`functok params loss_split`), its
default, range and one-line help; presets (data/presets/*.yaml) fill it, functok.chapters.registry lists it.
Imports nothing heavy: validation must answer in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from functok.core.config import Chapter, ChapterConfig, param
from functok.world.config import CorpusFields


@dataclass
class LossSplitConfig(CorpusFields, ChapterConfig):
    """Chapter 3: function->content prediction dominates the loss (Fig 9a/9b/9c, the scaling table, Fig 10)."""

    chapter: ClassVar[str] = "loss_split"

    models: list = param(
        ["embedded"],
        "'embedded' (the preset's two pre-trained models), functok run folders, HF checkpoint folders, or hub names "
        "(online) like EleutherAI/pythia-160m-deduped",
        kind="models",
        min_items=1,
    )
    checkpoint_index: list = param(
        [],
        "hub models: indices into the model's checkpoint list (Pythia: 154 checkpoints, revisions step{N})",
        kind="ints",
    )
    checkpoint_steps: list = param(
        [],
        "hub models: training steps to evaluate (Pythia revision step{N}); both lists empty: the final model",
        kind="ints",
    )
    keep_checkpoints: bool = param(
        False, "keep downloaded hub checkpoints after use (deleted by default: a full Pythia sweep fills disks)"
    )
    coverage_threshold: float = param(
        0.40,
        "function tokens: the most frequent tokens covering this share of occurrences (a functok run at its own "
        "threshold: its training log's set)",
        lo=0.01,
        hi=0.99,
    )
    context_size: int = param(
        0,
        "window length of non-embedded models' held-out windows (0: the preset's pretrain context_size)",
        lo=0,
        hi=65536,
    )
    max_windows: int = param(0, "evaluate only the first N held-out windows (0: all)", lo=0)
    batch_size: int = param(8, "windows per forward pass", lo=1, hi=4096)
    device: str = param("cpu", "where the models run", choices=("cpu", "cuda", "mps"))
    next_tokens: list = param(
        [" the", " of", ","], "function tokens whose loss as the next token Fig 9c follows", kind="strings", min_items=1
    )
    prompt: str = param(
        "When young children are learning to read, they often struggle with complicated words",
        "sentence of the greedy-prediction table (Fig 10)",
    )
    ci_level: float = param(0.95, "confidence level of the bootstrap intervals", lo=0.5, hi=0.999)
    n_bootstrap: int = param(1000, "bootstrap resamples of the held-out windows", lo=100, hi=100_000)
    min_checkpoints: int = param(
        3,
        "claims over training (function->content highest, the greedy function-token phase) count only checkpoints "
        "past the learning milestone (held-out loss below the unigram model's); with fewer than this many they are "
        "inconclusive",
        lo=1,
        hi=1000,
        cost="cheap",
    )
    converge_fraction: float = param(
        0.10,
        "a loss has converged once it stays within this share of its total decrease of its final value",
        lo=0.001,
        hi=0.9,
        cost="cheap",
    )
    log_smoothing: int = param(
        10,
        "training-log steps in the centred rolling mean of the curves and the convergence rule",
        lo=1,
        hi=100_000,
        cost="cheap",
    )


CHAPTER = Chapter(
    "loss_split", "Function->content prediction dominates the loss", LossSplitConfig, "03_loss_split.ipynb"
)
