"""Loading checkpoints for the chapters: one code path through TransformerLens for the embedded
models, Pythia checkpoints and larger hub models.

Chapters address activations by TransformerLens hook names (`blocks.{L}.hook_resid_post`), so they
work the same on every model this returns.
"""

from __future__ import annotations

from pathlib import Path


def load_model(checkpoint: str | Path, device: str = "cpu", dtype: str = "float32"):
    """A TransformerLens `TransformerBridge` for a local HF checkpoint folder (holding its tokenizer,
    as functok's checkpoints do) or a hub model, optionally at a revision: 'EleutherAI/pythia-160m@step3000'
    (online only). `dtype`: 'float32', or 'bfloat16' / 'float16' (bfloat16 halves Gemma-2-9B to 18 GB).

    The bridge exposes `blocks.{L}.hook_resid_post`, `run_with_cache(names_filter=...)` and
    `model(tokens, return_type="loss", loss_per_token=True)`.
    """
    import torch
    from transformers.utils import logging as hf_logging

    from .config import ParamError, offline

    spec, revision = str(checkpoint), None
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"checkpoint: '{spec}' has no config.json; expected a Hugging Face model folder")
        spec = str(path.resolve())
    else:
        if offline():
            raise ParamError(f"checkpoint: '{spec}' is no local folder, so it names a hub model that would be "
                             f"downloaded, and this machine is offline (set FUNCTOK_ONLINE=1 where the hub is reachable)")
        spec, _, revision = spec.partition("@")
    from transformer_lens.model_bridge import TransformerBridge

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" per checkpoint would clutter a chapter's log
    try:
        bridge = TransformerBridge.boot_transformers(spec, device=device, dtype=getattr(torch, dtype),
                                                     **({"revision": revision} if revision else {}))
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    bridge.eval()
    return bridge


TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "tokenizer.model"]


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

    from .cache import CACHE_DIR

    kind = "hub" if what == "model" else "hub_tokenizers"
    dest = CACHE_DIR / kind / (name.replace("/", "--") + "@" + revision)
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
