"""Typed chapter configs, presets (YAML under data/presets/) and validation.

One dataclass per chapter; the chapter notebook's `parameters` cell mirrors it field for field
(tests/test_config.py checks that). Every field is declared with `param(...)`, which carries its
one-line help and its allowed range, so `functok params`, the CLI and the notebook all validate the
same way. This module imports nothing heavy: validation must answer in well under a second.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, get_type_hints

import yaml

ROOT = Path(__file__).resolve().parent.parent
PRESETS_DIR = ROOT / "data" / "presets"
CHAPTERS_DIR = ROOT / "chapters"
BOOK_CHAPTERS_DIR = ROOT / "book" / "chapters"  # where the book reads executed chapters from


class ParamError(ValueError):
    """Bad input: one line naming the parameter, the value and what was expected."""


def param(default: Any, help: str, *, lo: float | None = None, hi: float | None = None,
          choices: tuple | None = None, kind: str | None = None) -> Any:
    """A config field. `kind` adds a check: 'corpus', 'tokenizer', 'models', 'path', 'sae'."""
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices, "kind": kind}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def offline() -> bool:
    """True unless the user says the hub is reachable (FUNCTOK_ONLINE=1)."""
    return os.environ.get("FUNCTOK_ONLINE", "0") != "1" or os.environ.get("HF_HUB_OFFLINE") == "1"


# ---------------------------------------------------------------------------------------------
# Chapter configs


@dataclass
class ChapterConfig:
    """Fields shared by every chapter."""

    chapter: ClassVar[str] = ""

    preset: str = param("embedded", "preset whose `pretrain` section defines the embedded corpus, tokenizer and models")
    seed: int = param(0, "random seed for every sampled choice in this chapter", lo=0)
    out_dir: str = param("book/chapters", "folder where the results file <chapter>.json is written", kind="dir")


@dataclass
class PretrainConfig(ChapterConfig):
    """The embedded default: corpus, BPE tokenizer and two Llama models pre-trained from scratch."""

    chapter: ClassVar[str] = "pretrain"

    corpus: str = param("embedded", "'embedded', a local .txt/.jsonl/.parquet path or glob, or a hub data set 'name:split'", kind="corpus")
    max_documents: int = param(0, "use only the first N documents of the corpus (0: all)", lo=0)
    heldout_fraction: float = param(0.02, "share of documents held out from training", lo=0.001, hi=0.5)
    vocab_size: int = param(4096, "vocabulary size of the BPE tokenizer trained on the training documents", lo=260, hi=200_000)
    coverage_threshold: float = param(0.40, "function tokens: the most frequent tokens covering this share of occurrences", lo=0.01, hi=0.99)
    d_model: int = param(128, "model width (both depths)", lo=8, hi=8192)
    n_heads: int = param(4, "attention heads", lo=1, hi=128)
    d_mlp: int = param(352, "SwiGLU hidden width", lo=8, hi=65536)
    depths: list = param([2, 8], "number of layers of each model: the shallow and the deep one", kind="depths")
    context_size: int = param(256, "training context in tokens", lo=8, hi=8192)
    batch_size: int = param(8, "sequences per optimizer step", lo=1, hi=4096)
    train_tokens: int = param(6_000_000, "tokens each model trains on (steps = tokens / (batch_size * context_size))", lo=1000)
    lr: float = param(2e-3, "peak learning rate (AdamW)", lo=1e-6, hi=1.0)
    min_lr: float = param(3e-4, "learning rate at the end of the cosine decay", lo=0.0, hi=1.0)
    warmup_fraction: float = param(0.1, "share of steps with linear warm-up", lo=0.0, hi=0.5)
    weight_decay: float = param(0.1, "AdamW weight decay", lo=0.0, hi=1.0)
    n_checkpoints: int = param(14, "checkpoints on a log-spaced schedule from step 0 to the last step", lo=2, hi=200)


@dataclass
class FunctionTokensConfig(ChapterConfig):
    """Chapter 1: what a function token is (Fig 2, Fig 3, Table 2)."""

    chapter: ClassVar[str] = "function_tokens"

    corpus: str = param("embedded", "'embedded', a local .txt/.jsonl/.parquet path or glob, or a hub data set 'name:split'", kind="corpus")
    max_documents: int = param(0, "use only the first N documents (0: all)", lo=0)
    tokenizers: list = param(["embedded", "gpt2"], "tokenizers side by side: 'embedded', 'gpt2', a local folder or a hub name", kind="tokenizers")
    coverage_threshold: float = param(0.40, "function tokens cover this share of all token occurrences", lo=0.01, hi=0.99)
    top_n: int = param(15, "rows of the top-token table (Fig 2b)", lo=1, hi=1000)
    burst_tokens: list = param([" of", " Washington"], "a function and a content token whose occurrences Fig 3 shows", kind="strings")
    n_bins: int = param(50, "equal-size bins of documents in Fig 3a/3b", lo=2, hi=10_000)
    sweep_thresholds: list = param([0.2, 0.3, 0.4, 0.5, 0.6], "coverage thresholds for the sensitivity table", kind="fractions")


@dataclass
class LossSplitConfig(ChapterConfig):
    """Chapter 3: function->content prediction dominates the loss (Fig 9a/9b/9c, the scaling table, Fig 10)."""

    chapter: ClassVar[str] = "loss_split"

    models: list = param(["embedded"], "'embedded' (the preset's two pre-trained models), functok run folders, HF checkpoint folders, or hub names (online) like EleutherAI/pythia-160m-deduped", kind="models")
    checkpoint_index: list = param([], "hub models: indices into the model's checkpoint list (Pythia: 154 checkpoints, revisions step{N})", kind="ints")
    checkpoint_steps: list = param([], "hub models: training steps to evaluate (Pythia revision step{N}); both lists empty: the final model", kind="ints")
    keep_checkpoints: bool = param(False, "keep downloaded hub checkpoints after use (deleted by default: a full Pythia sweep fills disks)")
    corpus: str = param("embedded", "held-out documents and function-token counts for non-embedded models: 'embedded', a local path or glob, or a hub data set 'name:split'", kind="corpus")
    max_documents: int = param(0, "non-embedded corpus: use only its first N documents (0: all)", lo=0)
    coverage_threshold: float = param(0.40, "function tokens of non-embedded models' tokenizers (embedded runs use their training log's set)", lo=0.01, hi=0.99)
    context_size: int = param(0, "window length of non-embedded models' held-out windows (0: the preset's pretrain context_size)", lo=0, hi=65536)
    max_windows: int = param(0, "evaluate only the first N held-out windows (0: all)", lo=0)
    batch_size: int = param(8, "windows per forward pass", lo=1, hi=4096)
    device: str = param("cpu", "where the models run", choices=("cpu", "cuda", "mps"))
    next_tokens: list = param([" the", " of", ","], "function tokens whose loss as the next token Fig 9c follows", kind="strings")
    prompt: str = param("When young children are learning to read, they often struggle with complicated words", "sentence of the greedy-prediction table (Fig 10)")
    ci_level: float = param(0.95, "confidence level of the bootstrap intervals", lo=0.5, hi=0.999)
    n_bootstrap: int = param(1000, "bootstrap resamples of the held-out windows", lo=100, hi=100_000)
    settle_fraction: float = param(0.01, "'the first few' checkpoints: before this share of training; left out of the function->content-highest claim", lo=0.0, hi=0.5)
    converge_fraction: float = param(0.10, "a loss has converged once it stays within this share of its total decrease of its final value", lo=0.001, hi=0.9)
    log_smoothing: int = param(10, "training-log steps in the centred rolling mean of the curves and the convergence rule", lo=1, hi=100_000)


@dataclass
class FeatureCoverageConfig(ChapterConfig):
    """Chapter 2: a few function tokens activate most SAE features (Fig 5, Table 1)."""

    chapter: ClassVar[str] = "feature_coverage"

    model: str = param("embedded", "'embedded' (the preset's deeper model, final checkpoint), a checkpoint folder, or a hub model such as google/gemma-2-9b (online)", kind="model")
    layers: list = param([], "layers whose blocks.{L}.hook_resid_post the SAEs read; empty: the relative depths of the paper's 9/20/31 of 42", kind="ints")
    sae: str = param("train", "'train' (SAEs trained with SAELens on the model and cached), a local SAE folder, or 'release/sae_id'; '{layer}' and '{average_l0}' are filled in per layer", kind="sae_template")
    average_l0: list = param([], "per layer, the average_l0_* of a non-canonical Gemma Scope release ('{average_l0}' in sae); empty: none", kind="ints")
    corpus: str = param("embedded", "documents: 'embedded' (the preset's held-out windows), a local path or glob, or a hub data set 'name:split'", kind="corpus")
    n_documents: int = param(0, "use only the first N documents (0: all)", lo=0)
    max_tokens: int = param(0, "stop after the windows holding this many tokens (0: all)", lo=0)
    context_size: int = param(0, "window length (0: the SAEs' context size from their cfg.json; trained SAEs: the preset's)", lo=0, hi=65536)
    top_k: int = param(10, "cumulative coverage of the k = 1..top_k most frequent tokens (Table 1)", lo=1, hi=10_000)
    batch_size: int = param(8, "windows per forward pass", lo=1, hi=4096)
    device: str = param("cpu", "where the model, the SAE encoders and the graphs run", choices=("cpu", "cuda"))
    model_dtype: str = param("float32", "dtype of the model's weights (bfloat16 for Gemma-2-9B on one GPU)", choices=("float32", "bfloat16"))
    encoder_dtype: str = param("auto", "dtype of the SAE encoder weights (auto: bfloat16 on cuda, float32 on cpu); the JumpReLU threshold stays float32", choices=("auto", "float32", "bfloat16"))
    gpu_memory_gb: float = param(80.0, "device memory budget; configurations whose plan exceeds it are refused before loading", lo=1.0, hi=10_000.0)
    coverage_threshold: float = param(0.40, "function tokens of non-embedded tokenizers (embedded: the preset's training-document set)", lo=0.01, hi=0.99)
    match_ratio: float = param(2.0, "frequency-matched comparison: tokens are binned by occurrence count in bins [r^b, r^(b+1))", lo=1.05, hi=100.0)
    architecture: str = param("jumprelu", "trained SAEs: SAELens architecture (jumprelu: Gemma Scope's)", choices=("jumprelu", "standard", "gated", "topk", "batchtopk"))
    expansion_factor: int = param(16, "trained SAEs: d_sae as a multiple of d_model", lo=1, hi=1024)
    sparsity_coefficient: float = param(1.0, "trained SAEs: the architecture's sparsity coefficient (jumprelu: l0_coefficient)", lo=1e-6, hi=1e6)
    training_tokens: int = param(60_000, "trained SAEs: activations each SAE trains on (the preset's training windows)", lo=1000)
    sae_batch_size: int = param(512, "trained SAEs: activations per optimizer step", lo=16, hi=1_000_000)
    sae_lr: float = param(1e-3, "trained SAEs: learning rate", lo=1e-7, hi=1.0)
    eval_windows: int = param(32, "held-out windows for each local SAE's L0, explained variance and CE reconstruction score (0: skip)", lo=0)


@dataclass
class FeatureGrowthConfig(ChapterConfig):
    """Chapter 4: learned features grow over pre-training (Fig 8a, Fig 8b, Fig 12)."""

    chapter: ClassVar[str] = "feature_growth"

    model: str = param("embedded", "'embedded' (the preset's shallow model, like the paper's 2-layer one), a functok run folder, or a hub model with step revisions such as EleutherAI/pythia-160m-deduped (online)", kind="model")
    checkpoint_fractions: list = param([0.05, 0.1, 0.38, 0.7, 1.0], "study the checkpoints nearest (in log step) to these fractions of training (step 0 excluded)", kind="unit_fractions")
    checkpoint_steps: list = param([], "explicit checkpoint steps instead (hub models: Pythia revisions step{N}, required)", kind="ints")
    layer: int = param(-1, "layer whose blocks.{L}.hook_resid_post the SAEs read; negative counts from the last (-1: the last, as the paper)", lo=-1000, hi=1000)
    architecture: str = param("jumprelu", "SAELens SAE architecture (jumprelu: the paper's, with the tanh sparsity penalty)", choices=("jumprelu", "standard", "gated", "topk", "batchtopk"))
    expansion_factor: int = param(16, "SAE width d_sae as a multiple of d_model (paper: 16)", lo=1, hi=1024)
    target_ce_score: float = param(0.98, "cross-entropy reconstruction score every checkpoint's SAE is matched to", lo=0.01, hi=0.9999)
    ce_tolerance: float = param(0.01, "a checkpoint is matched when its score is within this of the target (seed-to-seed spread: about 0.004)", lo=0.0001, hi=0.5)
    initial_coefficient: float = param(1.0, "sparsity coefficient the search starts from at the first checkpoint (later ones start from the previous choice)", lo=1e-6, hi=1e6)
    search_steps: int = param(6, "SAEs the coefficient search may train per checkpoint", lo=1, hi=100)
    search_factor: float = param(4.0, "multiplicative step of the coefficient while the target is not yet bracketed", lo=1.1, hi=1000.0)
    n_seeds: int = param(3, "SAEs (seeds) per checkpoint at the chosen coefficient, for the spread of Fig 8a", lo=1, hi=50)
    training_tokens: int = param(150_000, "activations each SAE trains on (paper: 1B)", lo=1000)
    batch_size: int = param(512, "activations per SAE optimizer step (paper: 4096)", lo=16, hi=1_000_000)
    lr: float = param(1e-3, "SAE learning rate (Adam; warm-up 5%, linear decay over the last 20%; paper: 1e-5 for 1B activations)", lo=1e-7, hi=1.0)
    backend: str = param("activations", "SAE training: 'activations' (SAETrainer on activations computed once per checkpoint) or 'runner' (SAELens's LanguageModelSAETrainingRunner)", choices=("activations", "runner"))
    n_activations: int = param(50_000, "held-out activations on which learned features are counted (paper: 500,000)", lo=100)
    eval_windows: int = param(32, "held-out windows for the reconstruction score, L0 and explained variance (0: all)", lo=0)
    slope_ranks: int = param(300, "degree-curve steepness: log-log slope fitted over this many most frequent tokens", lo=3, hi=10_000_000)
    top_tokens: int = param(10, "degree-curve steepness: share of connected features reached by this many most frequent tokens", lo=1, hi=10_000)
    corpus: str = param("embedded", "documents for non-embedded models' windows: 'embedded' (the preset's split), a local path or glob, or a hub data set 'name:split'", kind="corpus")
    max_documents: int = param(0, "non-embedded corpus: use only its first N documents (0: all)", lo=0)
    context_size: int = param(0, "window length (0: the preset's pretrain context_size)", lo=0, hi=65536)
    device: str = param("cpu", "where models and SAEs run", choices=("cpu", "cuda"))
    keep_checkpoints: bool = param(False, "keep downloaded hub checkpoints after use")


@dataclass
class ReactivationConfig(ChapterConfig):
    """Chapter 5: content features are re-activated by function tokens, and steering the last function token works (Fig 6, Fig 7, Fig 11)."""

    chapter: ClassVar[str] = "reactivation"

    model: str = param("embedded", "'embedded' (the preset's deeper model, final checkpoint), a checkpoint folder, or a hub model such as google/gemma-2-9b-it (online)", kind="model")
    layer: int = param(-1, "layer whose blocks.{L}.hook_resid_post is read and steered; -1: the paper's relative depth (26 of 42)", lo=-1, hi=1000)
    sae: str = param("train", "'train' (an SAE trained with SAELens like chapter 2's, cached), a local SAE folder, or 'release/sae_id'", kind="sae_template")
    concepts: list = param([" Russia", " China", " France", " Japan"], "content words (one or more tokens) whose features are traced and steered", kind="strings")
    features: list = param([], "SAE feature ids, one per concept (the paper: 9591 'Russia', 15261 'Speak Chinese', 13751 'UK'); empty: per concept, the feature most selective for it", kind="ints")
    n_windows: int = param(2000, "training windows scanned to select features and measure re-activation", lo=1)
    horizon: int = param(64, "re-activation: tokens after a concept's occurrence that are followed", lo=1, hi=100_000)
    trace_prompts: list = param(["The capital of Russia is Moscow, and the largest city of the country is", "In the history of China, the emperors of the country were"], "prompts whose per-token feature activations Fig 6 shows", kind="strings")
    steer_prompts: list = param(["He was born in", "The army marched to", "The treaty was signed with", "The president of", "She moved to", "They sailed to", "The largest city in", "He was sent as ambassador to", "The war with", "The people of", "Trade with", "The king of", "The border of", "The capital of", "He travelled from", "The government of", "An alliance with", "The embassy in", "The river flows into the", "The history of"], "prompts ending in a function token whose last token is steered (Fig 7, Fig 11)", kind="strings")
    alphas: list = param([0, 1, 2, 4], "steering strengths: the feature's unit decoder direction times alpha times the layer's mean activation norm", kind="ints")
    n_new_tokens: int = param(8, "greedy tokens generated after each prompt", lo=1, hi=512)
    context_size: int = param(0, "window length of non-embedded models (0: the preset's pretrain context_size)", lo=0, hi=65536)
    batch_size: int = param(8, "windows per forward pass", lo=1, hi=4096)
    device: str = param("cpu", "where the model and the SAE run", choices=("cpu", "cuda"))
    model_dtype: str = param("float32", "dtype of the model's weights (bfloat16 for Gemma-2-9B on one GPU)", choices=("float32", "bfloat16"))


CONFIGS: dict[str, type[ChapterConfig]] = {
    c.chapter: c for c in (FunctionTokensConfig, FeatureCoverageConfig, LossSplitConfig, FeatureGrowthConfig,
                           ReactivationConfig)
}
ALL_CONFIGS: dict[str, type[ChapterConfig]] = {**CONFIGS, "pretrain": PretrainConfig}
CHAPTER_ORDER = ["function_tokens", "feature_coverage", "loss_split", "feature_growth", "reactivation"]


def register(cls: type[ChapterConfig]) -> type[ChapterConfig]:
    """Add a chapter config (chapter modules call this at import of functok.config)."""
    CONFIGS[cls.chapter] = cls
    ALL_CONFIGS[cls.chapter] = cls
    return cls


def chapters() -> list[str]:
    """The chapters that exist, in book order."""
    return [c for c in CHAPTER_ORDER if c in CONFIGS]


def field_help(cls: type) -> dict[str, dict]:
    return {f.name: dict(f.metadata) for f in fields(cls)}


def defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in fields(cls):
        out[f.name] = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return out


# ---------------------------------------------------------------------------------------------
# Presets


def presets() -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(PRESETS_DIR.glob("*.yaml"))}


def load_preset(name: str) -> dict:
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.exists():
        known = sorted(presets())
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ParamError(f"preset: unknown preset '{name}'{hint}; expected one of {', '.join(known)}")
    return yaml.safe_load(path.read_text()) or {}


# ---------------------------------------------------------------------------------------------
# Validation


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", str(t))


def _coerce(name: str, value: Any, typ: type) -> Any:
    """Accept what papermill/YAML give (ints for floats, tuples for lists); refuse the rest."""
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is list and isinstance(value, tuple):
        return list(value)
    if typ is bool and not isinstance(value, bool) or not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ParamError(f"{name}: got {value!r} ({type(value).__name__}); expected {_type_name(typ)}")
    return value


def _check_kind(name: str, value: Any, kind: str | None) -> None:
    if kind is None:
        return
    if kind == "dir":
        return
    if kind in ("strings", "tokenizers") and not all(isinstance(v, str) for v in value):
        raise ParamError(f"{name}: got {value!r}; expected a list of strings")
    if kind == "fractions" and not all(isinstance(v, (int, float)) and 0 < v < 1 for v in value):
        raise ParamError(f"{name}: got {value!r}; expected a list of numbers between 0 and 1")
    if kind == "depths" and (len(value) != 2 or not all(isinstance(v, int) and v >= 1 for v in value)):
        raise ParamError(f"{name}: got {value!r}; expected two layer counts [shallow, deep], each >= 1")
    if kind == "unit_fractions" and (not value or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1 for v in value)):
        raise ParamError(f"{name}: got {value!r}; expected a non-empty list of numbers in (0, 1]")
    if kind == "ints" and not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ParamError(f"{name}: got {value!r}; expected a list of non-negative integers")
    if kind == "models":
        if not value or not all(isinstance(v, str) for v in value):
            raise ParamError(f"{name}: got {value!r}; expected a non-empty list of strings")
        for v in value:
            if v != "embedded":
                check_source(name, v, what="model")
    if kind == "sae_template":
        if not isinstance(value, str) or not value:
            raise ParamError(f"{name}: got {value!r}; expected 'train', a local SAE folder or 'release/sae_id'")
        bad = [k for k in __import__("re").findall(r"{([^}]*)}", value) if k not in ("layer", "average_l0")]
        if bad:
            raise ParamError(f"{name}: '{value}' has the placeholder {{{bad[0]}}}; expected only {{layer}} and {{average_l0}}")
    if kind == "corpus":
        check_source(name, value, what="data set")
    if kind == "tokenizers":
        for v in value:
            if v not in ("embedded", "gpt2"):
                check_source(name, v, what="tokenizer")
    if kind in ("tokenizer", "model", "path"):
        if value not in ("embedded", "gpt2"):
            check_source(name, value, what=kind)


def looks_local(value: str) -> bool:
    """A path, not a hub name ('org/name'): absolute, relative with ./, a glob, or a data file."""
    return value.startswith((".", "/", "~")) or any(ch in value for ch in "*?") or \
        value.endswith((".txt", ".jsonl", ".json", ".parquet"))


def check_source(name: str, value: str, what: str) -> None:
    """A local path must exist; a hub name is refused while offline, saying what would be fetched."""
    if value == "embedded":
        return
    import glob as _glob

    p = Path(value).expanduser()
    if p.exists() or _glob.glob(str(p)):
        return
    if looks_local(value):
        raise ParamError(f"{name}: '{value}' does not exist; expected an existing file, folder or glob")
    if offline():
        raise ParamError(
            f"{name}: '{value}' is no local path, so it names a hub {what} that would be downloaded from the "
            f"Hugging Face hub, and this machine is offline: download it elsewhere, copy it here and pass its "
            f"local path (or set FUNCTOK_ONLINE=1 where the hub is reachable)")


def validate(cls: type[ChapterConfig], values: dict[str, Any]) -> ChapterConfig:
    """Build a config from user values, refusing bad input with a one-line ParamError."""
    known = {f.name: f for f in fields(cls)}
    hints = get_type_hints(cls)
    for name in values:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ParamError(f"{name}: unknown parameter for chapter '{cls.chapter}'{hint}")
    out = defaults(cls)
    for name, value in values.items():
        f, typ = known[name], hints[name]
        value = _coerce(name, value, typ)
        meta = f.metadata
        if meta.get("choices") and value not in meta["choices"]:
            raise ParamError(f"{name}: got {value!r}; expected one of {', '.join(map(str, meta['choices']))}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            lo, hi = meta.get("lo"), meta.get("hi")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                rng = f"between {lo} and {hi}" if lo is not None and hi is not None else (f">= {lo}" if lo is not None else f"<= {hi}")
                raise ParamError(f"{name}: got {value!r}; expected a number {rng}")
        out[name] = value
    for name, f in known.items():
        _check_kind(name, out[name], f.metadata.get("kind"))
    if "preset" in values:
        load_preset(out["preset"])
    return cls(**out)


def resolve(chapter: str, preset: str = "embedded", overrides: dict[str, Any] | None = None) -> ChapterConfig:
    """Config for a chapter: defaults, then the preset's section, then the user's overrides."""
    if chapter not in ALL_CONFIGS:
        close = difflib.get_close_matches(chapter, list(ALL_CONFIGS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ParamError(f"chapter: unknown chapter '{chapter}'{hint}; expected one of {', '.join(chapters())}")
    cls = ALL_CONFIGS[chapter]
    section = dict(load_preset(preset).get(chapter) or {})
    values = {**section, "preset": preset, **(overrides or {})}
    return validate(cls, values)


def pretrain_config(preset: str) -> PretrainConfig:
    """The preset's pretraining section: what 'embedded' means for corpus, tokenizer and models."""
    return resolve("pretrain", preset)  # type: ignore[return-value]


def from_notebook(chapter: str, namespace: dict[str, Any]) -> ChapterConfig:
    """Validate the values of a notebook's parameters cell (the same checks as the CLI)."""
    cls = ALL_CONFIGS[chapter]
    return validate(cls, {f.name: namespace[f.name] for f in fields(cls) if f.name in namespace})


def as_dict(cfg: ChapterConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
