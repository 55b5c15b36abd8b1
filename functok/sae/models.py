"""Loading checkpoints for the chapters: one code path through TransformerLens for the embedded
models, Pythia checkpoints and larger hub models.

Chapters address activations by TransformerLens hook names (`blocks.{L}.hook_resid_post`), so they
work the same on every model this returns.
"""

from __future__ import annotations

from pathlib import Path

from functok.core.cache import cache_dir
from functok.core.config import ParamError, offline

# fp32 logits one forward may hold: a loss keeps a second copy (log-softmax), so about twice this in all
LOGITS_BYTES = 1 << 30


def logit_rows(model, batch_size: int, context: int) -> int:
    """Windows per forward that returns logits or a loss: batch_size, fewer where their fp32 logits pass
    LOGITS_BYTES (Gemma-3's 262k vocabulary: 8 windows of 256 tokens are 2.1 GB of logits, and the run's
    peak memory went past 8 GB)."""
    d_vocab = getattr(getattr(model, "cfg", None), "d_vocab", None)
    if not d_vocab:  # a stand-in model (tests) that says nothing of its vocabulary
        return int(batch_size)
    return max(1, min(int(batch_size), LOGITS_BYTES // (max(1, int(context)) * int(d_vocab) * 4)))


def load_model(checkpoint: str | Path, device: str = "cpu", dtype: str = "float32"):
    """A TransformerLens `TransformerBridge` for a local HF checkpoint folder (holding its tokenizer,
    as functok's checkpoints do) or a hub model, optionally at a revision: 'EleutherAI/pythia-160m@step3000'
    (online only). `dtype`: 'float32', or 'bfloat16' / 'float16' (bfloat16 halves Gemma-2-9B to 18 GB).

    The bridge exposes `blocks.{L}.hook_resid_post`, `run_with_cache(names_filter=...)` and
    `model(tokens, return_type="loss", loss_per_token=True)`.
    """
    import torch
    from transformers.utils import logging as hf_logging

    spec, revision = str(checkpoint), None
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"checkpoint: '{spec}' has no config.json; expected a Hugging Face model folder")
        spec = str(path.resolve())
    else:
        if offline():
            raise ParamError(
                f"checkpoint: '{spec}' is no local folder, so it names a hub model that would be "
                f"downloaded, and this machine is offline (set FUNCTOK_ONLINE=1 where the hub is reachable)"
            )
        spec, _, revision = spec.partition("@")
    from transformer_lens.model_bridge import TransformerBridge

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" per checkpoint would clutter a chapter's log
    try:
        bridge = TransformerBridge.boot_transformers(
            spec, device=device, dtype=getattr(torch, dtype), **({"revision": revision} if revision else {})
        )
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    bridge.eval()
    return bridge


TOKENIZER_FILES = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
]


def download_hub_checkpoint(name: str, revision: str, dest: Path, what: str = "model") -> Path:
    """One revision of a hub model into `dest` (online only): what='model' fetches config, weights
    (safetensors when the revision has them, else PyTorch .bin) and tokenizer; 'tokenizer' only the
    tokenizer files."""
    from huggingface_hub import HfApi, snapshot_download

    if what == "tokenizer":
        patterns = TOKENIZER_FILES
    else:
        files = HfApi().list_repo_files(name, revision=revision)
        weights = "*.safetensors" if any(f.endswith(".safetensors") for f in files) else "*.bin"
        patterns = ["*.json", "*.txt", "*.model", weights]
    snapshot_download(repo_id=name, revision=revision, local_dir=str(dest), allow_patterns=patterns)
    return dest


# tests replace this with a function that copies a tiny local model
DOWNLOAD = download_hub_checkpoint


def hub_checkpoint(name: str, revision: str, what: str = "model") -> Path:
    """Local folder of one hub revision (`data/cache/hub/` for models, `hub_tokenizers/` for tokenizer
    files), downloaded on first use into a temporary sibling and renamed into place when complete.
    Chapters delete model folders after use unless asked to keep them (a Pythia sweep fills disks)."""
    import shutil
    import tempfile

    kind = "hub" if what == "model" else "hub_tokenizers"
    dest = cache_dir() / kind / (name.replace("/", "--") + "@" + revision)
    marker = "config.json" if what == "model" else "tokenizer_config.json"
    if (dest / marker).exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        DOWNLOAD(name, revision, tmp / "download", what)
        shutil.rmtree(dest, ignore_errors=True)
        (tmp / "download").replace(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def hook_layer(hook_name: str, strict: bool = True) -> int | None:
    """The block index of a 'blocks.{L}.<hook>' hook name. Other names: a ParamError, or None when
    not `strict` (hooks outside the blocks, such as hook_embed)."""
    parts = hook_name.split(".")
    if len(parts) >= 3 and parts[0] == "blocks" and parts[1].isdigit():
        return int(parts[1])
    if strict:
        raise ParamError(f"hook_name: got {hook_name!r}; expected 'blocks.{{L}}.<hook>', e.g. blocks.1.hook_resid_post")
    return None


def hook_name(layer: int) -> str:
    """The residual stream after block `layer`, where every SAE of the book reads."""
    return f"blocks.{layer}.hook_resid_post"


# Pythia's public checkpoints (revisions step{N}): step 0, 10 log-spaced early steps, then every 1000
# up to 143000; the same list as TransformerLens's PYTHIA_CHECKPOINTS (tests check it), written out
# here so that validating a checkpoint_index needs no heavy import.


PYTHIA_STEPS = [0, *[2**i for i in range(10)], *range(1000, 143_001, 1000)]


PYTHIA_TOKENS_PER_STEP = 1024 * 2048  # batch 1024 sequences of 2048 tokens


def hub_revisions(name: str, checkpoint_index: list[int], checkpoint_steps: list[int]) -> list[dict]:
    """Checkpoints of a hub model: [{"step", "tokens_seen", "checkpoint", "revision"}]; the final model
    ("main") when neither list is given. Only Pythia's `step{N}` revisions are known."""
    if not checkpoint_index and not checkpoint_steps:
        return [{"step": None, "tokens_seen": None, "checkpoint": f"{name}@main", "revision": "main"}]
    if not name.startswith("EleutherAI/pythia"):
        raise ParamError(
            f"checkpoint_steps: hub model '{name}' has no known checkpoint revisions; expected a "
            f"Pythia model (EleutherAI/pythia-*, revisions step{{N}}) or empty checkpoint lists"
        )
    steps = set(int(s) for s in checkpoint_steps)
    for i in checkpoint_index:
        if not 0 <= i < len(PYTHIA_STEPS):
            raise ParamError(
                f"checkpoint_index: got {i}; expected 0..{len(PYTHIA_STEPS) - 1} (Pythia has "
                f"{len(PYTHIA_STEPS)} checkpoints)"
            )
        steps.add(PYTHIA_STEPS[i])
    for s in steps:
        if s not in PYTHIA_STEPS:
            raise ParamError(
                f"checkpoint_steps: Pythia has no checkpoint at step {s}; expected 0, a power of 2 up "
                f"to 512, or a multiple of 1000 up to 143000"
            )
    return [
        {"step": s, "tokens_seen": s * PYTHIA_TOKENS_PER_STEP, "checkpoint": f"{name}@step{s}", "revision": f"step{s}"}
        for s in sorted(steps)
    ]
