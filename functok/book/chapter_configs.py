"""One typed config per chapter: every parameter a chapter takes, its default, range and one-line help
(`functok params <chapter>` prints them; the notebook's `parameters` cell mirrors them field for field,
tests/book/test_registry.py checks that). Presets (data/presets/*.yaml) fill them; functok.book.registry
lists the chapters. This module imports nothing heavy: validation must answer in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from functok.book.config import ChapterConfig, param


@dataclass
class FunctionTokensConfig(ChapterConfig):
    """Chapter 1: what a function token is (Fig 2, Fig 3, Table 2)."""

    chapter: ClassVar[str] = "function_tokens"

    corpus: str = param(
        "embedded",
        "'embedded', a local .txt/.jsonl/.parquet path or glob, or a hub data set 'name:split'",
        kind="corpus",
    )
    max_documents: int = param(0, "use only the first N documents (0: all)", lo=0)
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


@dataclass
class LossSplitConfig(ChapterConfig):
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
    corpus: str = param(
        "embedded",
        "held-out documents and function-token counts for non-embedded models: 'embedded', a local path or glob, or a "
        "hub data set 'name:split'",
        kind="corpus",
    )
    max_documents: int = param(0, "non-embedded corpus: use only its first N documents (0: all)", lo=0)
    coverage_threshold: float = param(
        0.40,
        "function tokens of non-embedded models' tokenizers (embedded runs use their training log's set)",
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


@dataclass
class FeatureCoverageConfig(ChapterConfig):
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
    corpus: str = param(
        "embedded",
        "documents: 'embedded' (the preset's held-out windows), a local path or glob, or a hub data set 'name:split'",
        kind="corpus",
    )
    n_documents: int = param(0, "use only the first N documents (0: all)", lo=0)
    max_tokens: int = param(0, "stop after the windows holding this many tokens (0: all)", lo=0)
    context_size: int = param(
        0, "window length (0: the SAEs' context size from their cfg.json; trained SAEs: the preset's)", lo=0, hi=65536
    )
    top_k: int = param(10, "cumulative coverage of the 1 to top_k most frequent tokens (Table 1)", lo=1, hi=10_000)
    null_draws: int = param(
        20, "coverage null model: seeded draws of as many random positions as the top tokens occupy", lo=20, hi=1000
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
        "function tokens of non-embedded tokenizers (embedded: the preset's training-document set)",
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
    architecture: str = param(
        "batchtopk",
        "trained SAEs: SAELens architecture (batchtopk: saved as a JumpReLU SAE, Gemma Scope's kind, with a learned "
        "threshold; jumprelu left most features dead on the embedded budget)",
        choices=("jumprelu", "standard", "gated", "topk", "batchtopk"),
    )
    expansion_factor: int = param(16, "trained SAEs: d_sae as a multiple of d_model", lo=1, hi=1024)
    sparsity_coefficient: float = param(
        16.0,
        "trained SAEs: the architecture's sparsity knob (topk/batchtopk: k, the mean L0; jumprelu: l0_coefficient)",
        lo=1e-6,
        hi=1e6,
    )
    training_tokens: int = param(
        1_000_000, "trained SAEs: activations each SAE trains on (the preset's training windows)", lo=1000
    )
    sae_batch_size: int = param(512, "trained SAEs: activations per optimizer step", lo=16, hi=1_000_000)
    sae_lr: float = param(1e-3, "trained SAEs: learning rate", lo=1e-7, hi=1.0)
    eval_windows: int = param(
        32, "held-out windows for each local SAE's L0, explained variance and CE reconstruction score (0: skip)", lo=0
    )


@dataclass
class FeatureGrowthConfig(ChapterConfig):
    """Chapter 4: learned features grow over pre-training (Fig 8a, Fig 8b, Fig 12)."""

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
    architecture: str = param(
        "jumprelu",
        "SAELens SAE architecture (jumprelu: the paper's, with the tanh sparsity penalty)",
        choices=("jumprelu", "standard", "gated", "topk", "batchtopk"),
    )
    expansion_factor: int = param(
        64,
        "SAE width d_sae as a multiple of d_model (paper: 16, with d_model 4,096); wide enough that only the last "
        "checkpoint's count may come within 10% of d_sae",
        lo=1,
        hi=1024,
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
    initial_coefficient: float = param(
        1.0,
        "sparsity coefficient the search starts from at the first checkpoint (later ones start from the previous "
        "choice)",
        lo=1e-6,
        hi=1e6,
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
    training_tokens: int = param(150_000, "activations each SAE trains on (paper: 1B)", lo=1000)
    batch_size: int = param(512, "activations per SAE optimizer step (paper: 4096)", lo=16, hi=1_000_000)
    lr: float = param(
        1e-3,
        "SAE learning rate (Adam; warm-up 5%, linear decay over the last 20%; paper: 1e-5 for 1B activations)",
        lo=1e-7,
        hi=1.0,
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
    corpus: str = param(
        "embedded",
        "documents for non-embedded models' windows: 'embedded' (the preset's split), a local path or glob, or a hub "
        "data set 'name:split'",
        kind="corpus",
    )
    max_documents: int = param(0, "non-embedded corpus: use only its first N documents (0: all)", lo=0)
    context_size: int = param(0, "window length (0: the preset's pretrain context_size)", lo=0, hi=65536)
    device: str = param("cpu", "where models and SAEs run", choices=("cpu", "cuda"))
    keep_checkpoints: bool = param(False, "keep downloaded hub checkpoints after use")


# chapter 5's chat prompts: the paper's Mount Fuji, university, tourist attraction and dish, and more
TEST_PROMPTS = (
    "Where is Mount Fuji?|What is a famous university?|Recommend a tourist attraction.|What is a traditional dish?|"
    "Name a famous writer.|What is a popular sport?|Tell me about a famous river.|Which city should I visit?|"
    "What is a famous building?|Name a national holiday.|What is a well-known song?|Tell me about a historical event."
).split("|")


# chapter 5's steering prompts: each ends in a function token that the country could follow
STEER_PROMPTS = (
    "He was born in|The army marched to|The treaty was signed with|The president of|She moved to|They sailed to|"
    "The largest city in|He was sent as ambassador to|The war with|The people of|Trade with|The king of|"
    "The border of|The capital of|He travelled from|The government of|An alliance with|The embassy in|"
    "The river flows into the|The history of"
).split("|")


@dataclass
class ReactivationConfig(ChapterConfig):
    """Chapter 5: content features are re-activated by function tokens, and steering the last function
    token works (Fig 6, Fig 7, Fig 11)."""

    chapter: ClassVar[str] = "reactivation"

    model: str = param(
        "embedded",
        "'embedded' (the preset's deeper model, final checkpoint), a checkpoint folder, or a hub model such as "
        "google/gemma-2-9b-it (online)",
        kind="model",
    )
    layer: int = param(
        -1,
        "layer whose blocks.{L}.hook_resid_post is read and steered; -1: the paper's relative depth (26 of 42)",
        lo=-1,
        hi=1000,
    )
    sae: str = param(
        "train",
        "'train' (an SAE trained with SAELens like chapter 2's, cached), a local SAE folder, or 'release/sae_id'",
        kind="sae_template",
    )
    concepts: list = param(
        [" Russia", " China", " France", " Japan"],
        "content words (one or more tokens) whose features are traced and steered",
        kind="strings",
        min_items=1,
    )
    features: list = param(
        [],
        "SAE feature ids, one per concept (the paper: 9591 'Russia', 15261 'Speak Chinese', 13751 'UK'); empty: per "
        "concept, the feature most selective for it",
        kind="ints",
    )
    min_precision: float = param(
        0.5,
        "precondition: a concept counts only if the 95% lower bound of its feature's precision P(concept | fires) "
        "is at least this",
        lo=0.0,
        hi=1.0,
        cost="cheap",
    )
    n_windows: int = param(2000, "training windows scanned to select features and measure re-activation", lo=1)
    horizon: int = param(64, "re-activation: tokens after a concept's occurrence that are followed", lo=1, hi=100_000)
    trace_prompts: list = param(
        [
            "The capital of Russia is Moscow, and the largest city of the country is",
            "In the history of China, the emperors of the country were",
        ],
        "prompts whose per-token feature activations Fig 6 shows",
        kind="strings",
        min_items=1,
    )
    steer_prompts: list = param(
        list(STEER_PROMPTS),
        "prompts ending in a function token whose last token is steered (Fig 7, Fig 11)",
        kind="strings",
        min_items=1,
    )
    alphas: list = param(
        [0, 1, 2, 4],
        "steering strengths: the feature's unit decoder direction times alpha times the layer's mean activation norm",
        kind="ints",
        min_items=1,
    )
    n_new_tokens: int = param(8, "greedy tokens generated after each prompt", lo=1, hi=512)
    chat_template: bool = param(
        False,
        "instruct models: also steer through the chat template by the paper's Appendix A procedure (traits, "
        "test_prompts), editing the template's final token",
    )
    traits: dict = param(
        {
            "Russia": {"prompt": "What is the largest country in the world?", "pattern": r"Russia|Moscow"},
            "Speak Chinese": {"prompt": "请用中文回答：你最喜欢的颜色是什么？", "pattern": r"[\u4e00-\u9fff]"},
            "UK": {
                "prompt": "Which country is London the capital of?",
                "pattern": r"\bUK\b|United Kingdom|Brit(ain|ish)|England|London",
            },
        },
        "chat_template: per trait, a prompt whose answer shows it and a regular expression that detects it in an "
        "answer (the paper's three features: Russia, Speak Chinese, UK)",
    )
    test_prompts: list = param(
        list(TEST_PROMPTS),
        "chat_template: the prompts steered (the paper's Mount Fuji, a university, a tourist attraction, a dish, and "
        "more; the paper used 20, not published)",
        kind="strings",
        min_items=1,
    )
    trait_layers: list = param(
        [],
        "chat_template: layers where the raw trait activation's success rate is also measured (Appendix A's layer "
        "scan; the SAE steps run at `layer`)",
        kind="ints",
    )
    trait_keep: float = param(
        0.8,
        "chat_template: the top-k search keeps the smallest k whose success rate is at least this share of the raw "
        "activation's",
        lo=0.01,
        hi=1.0,
    )
    context_size: int = param(
        0, "window length of non-embedded models (0: the preset's pretrain context_size)", lo=0, hi=65536
    )
    batch_size: int = param(8, "windows per forward pass", lo=1, hi=4096)
    device: str = param("cpu", "where the model and the SAE run", choices=("cpu", "cuda"))
    model_dtype: str = param(
        "float32", "dtype of the model's weights (bfloat16 for Gemma-2-9B on one GPU)", choices=("float32", "bfloat16")
    )
