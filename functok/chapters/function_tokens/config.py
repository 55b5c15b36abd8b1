"""Chapter config and registration: every parameter the chapter takes (`functok params function_tokens`), its
default, range and one-line help; presets (data/presets/*.yaml) fill it, functok.chapters.registry lists it.
Imports nothing heavy: validation must answer in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from functok.core.config import Chapter, ChapterConfig, param
from functok.world.config import CorpusFields


@dataclass
class FunctionTokensConfig(CorpusFields, ChapterConfig):
    """Chapter 1: what a function token is (Fig 2, Fig 3, Table 2)."""

    chapter: ClassVar[str] = "function_tokens"

    tokenizers: list = param(
        ["embedded", "gpt2", "llama3", "gemma3"],
        "tokenizers side by side: 'embedded', 'gpt2', 'llama3' (the paper's), 'gemma3', a local folder or a hub name",
        kind="tokenizers",
        min_items=1,
    )
    coverage_threshold: float = param(
        0.40, "function tokens cover this share of all token occurrences", lo=0.01, hi=0.99
    )
    top_n: int = param(15, "rows of the top-token table (Fig 2b)", lo=1, hi=1000, cost="cheap")
    burst_tokens: list = param(
        [" of", " Washington"],
        "a function and a content token whose occurrences Fig 3 shows",
        kind="strings",
        min_items=2,
    )
    n_bins: int = param(50, "equal-size bins of documents in Fig 3a/3b", lo=2, hi=10_000, cost="cheap")
    sweep_thresholds: list = param(
        [0.2, 0.3, 0.4, 0.5, 0.6],
        "coverage thresholds for the sensitivity table",
        kind="fractions",
        min_items=1,
        cost="cheap",
    )


CHAPTER = Chapter("function_tokens", "What is a function token?", FunctionTokensConfig, "01_function_tokens.ipynb")
