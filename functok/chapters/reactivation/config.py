"""Chapter config and registration: every parameter the chapter takes (`functok params reactivation`), its
default, range and one-line help; presets (data/presets/*.yaml) fill it, functok.chapters.registry lists it.
Imports nothing heavy: validation must answer in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from functok.core.config import Chapter, ChapterConfig, param

# chapter 5's chat prompts: the paper's Mount Fuji, university, tourist attraction and dish, and more
TEST_PROMPTS = (
    "Where is Mount Fuji?|What is a famous university?|Recommend a tourist attraction.|What is a traditional dish?|"
    "Name a famous writer.|What is a popular sport?|Tell me about a famous river.|Which city should I visit?|"
    "What is a famous building?|Name a national holiday.|What is a well-known song?|Tell me about a historical event."
).split("|")


# chapter 5's steering prompts: each ends in a function token that the country could follow
CONDITIONS = ("last", "every", "function_earlier", "content_last", "content_earlier")  # where steering edits
STEER_PROMPTS = (
    "He was born in|The army marched to|The treaty was signed with|The president of|She moved to|They sailed to|"
    "The largest city in|He was sent as ambassador to|The war with|The people of|Trade with|The king of|"
    "The border of|The capital of|He travelled from|The government of|An alliance with|The embassy in|"
    "The river flows into the|The history of|The leader of|He was elected in|The delegation from|A letter to|"
    "The economy of|The flag of|They fought with the|The soldiers came from|The ambassador of|Relations with|"
    "The prime minister of|The sanctions on|The invasion of|The population of|The language of|The culture of|"
    "The map of|The coast of|The news from|The industry of|He returned to|The mountains of|The troops of|"
    "The exports of|She was married in"
).split("|")  # 45 prompts: at least 40 per concept in every cell of the position control


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
    scan_layers: list = param(
        [],
        "further layers whose concept features are found and measured like `layer`'s (the depth scan; chapter 2's "
        "SAE there, read from its store when it holds the layer); claims and steering stay at `layer`",
        kind="ints",
    )
    sae: str = param(
        "train",
        "'train' (an SAE trained with SAELens like chapter 2's, cached), a local SAE folder, or 'release/sae_id'",
        kind="sae_template",
    )
    concepts: list = param(
        [" Russia", " China", " America", " Congress"],
        "content words (one or more tokens) whose features are traced and steered (Russia and China: the paper's "
        "kind; America and Congress: frequent enough for min_occurrences in 200k tokens of the embedded corpus)",
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
    min_occurrences: int = param(
        50,
        "precondition: a concept counts only if it occurs at least this often in the scanned windows (both halves)",
        lo=1,
        cost="cheap",
    )
    episode_window: int = param(
        64,
        "episode precision: a firing is on the concept when the concept occurs at that position or within this many "
        "positions before it in the same document",
        lo=0,
        hi=100_000,
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
        [0, 1, 2, 4, 8],
        "steering strengths in units of the feature's typical activation: alpha x its mean activation where it fires "
        "on the concept x its decoder row (0: unsteered)",
        kind="ints",
        min_items=1,
    )
    steer_conditions: list = param(
        list(CONDITIONS),
        "where the vector is added: the last (function) token, every position, and the 2 x 2 control (function or "
        "content token x last or one before the last position)",
        kind="strings",
        min_items=1,
    )
    control_suffix: str = param(
        " the",
        "function_earlier: appended to each prompt so that its last function token is one before the last position",
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


CHAPTER = Chapter(
    "reactivation",
    "Function tokens re-activate features, and steering them works",
    ReactivationConfig,
    "05_reactivation.ipynb",
)
