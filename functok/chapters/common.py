"""What the chapters share: the seaborn theme, readable tokens, the claims table, the paper's numbers
of a chapter, and the SAE training spec chapters 2 and 5 build from their configs."""

from __future__ import annotations

import pandas as pd

from functok.book.paper import numbers
from functok.sae.training import SAESpec


def sns_theme():
    """seaborn with the book's theme (imported lazily: seaborn pulls in matplotlib)."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return sns


def show_token(t: str) -> str:
    """A token made readable in tables: white space and newlines spelled out."""
    return repr(t)[1:-1] if t.strip() else {"\n": "\\n", " ": "white space"}.get(t, repr(t))


def claims_table(claims: list[dict]) -> pd.DataFrame:
    """The chapter's claims as the page shows them: statement, paper, ours, verdict, note."""
    df = pd.DataFrame(claims)[["statement", "paper", "ours", "verdict", "note"]]
    return df.set_index("statement")


def paper_numbers(chapter: str) -> dict:
    """The paper's numbers for one chapter (data/paper_numbers.yaml)."""
    return numbers()[chapter]


def sae_training_spec(cfg) -> SAESpec:
    """The SAE a chapter trains from its config's SAE fields (chapter 2's; chapter 5 reuses them)."""
    return SAESpec(
        architecture=cfg.architecture,
        expansion_factor=cfg.expansion_factor,
        sparsity_coefficient=float(cfg.sparsity_coefficient),
        training_tokens=cfg.training_tokens,
        batch_size=cfg.sae_batch_size,
        lr=cfg.sae_lr,
        seed=cfg.seed,
    )
