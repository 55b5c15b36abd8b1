"""Loading checkpoints for the chapters: one code path through TransformerLens for the embedded
models, Pythia checkpoints and larger hub models.

Chapters address activations by TransformerLens hook names (`blocks.{L}.hook_resid_post`), so they
work the same on every model this returns.
"""

from __future__ import annotations

from pathlib import Path


def load_model(checkpoint: str | Path, device: str = "cpu"):
    """A TransformerLens `TransformerBridge` for a local HF checkpoint folder (holding its tokenizer,
    as functok's checkpoints do) or a hub model name (online only).

    The bridge exposes `blocks.{L}.hook_resid_post`, `run_with_cache(names_filter=...)` and
    `model(tokens, return_type="loss", loss_per_token=True)`.
    """
    from transformer_lens.model_bridge import TransformerBridge

    spec = str(checkpoint)
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"checkpoint: '{spec}' has no config.json; expected a Hugging Face model folder")
        spec = str(path.resolve())
    bridge = TransformerBridge.boot_transformers(spec, device=device)
    bridge.eval()
    return bridge
