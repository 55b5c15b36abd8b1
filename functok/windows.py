"""Token windows, the unit every chapter evaluates: documents tokenized without special tokens, each
prefixed by BOS (EOS where the tokenizer has no BOS) as the models see them, concatenated, and cut
into rows of `context_size` tokens; the tail is dropped.

- `split_documents_of(corpus, preset, max_documents, split)`: the 'train' or 'heldout' documents of
  'embedded' (the preset's split) or of any corpus spec (split the same deterministic way);
- `cut(tok, texts, context_size, max_windows=0) -> (windows int32 [n, context_size], stats)`;
- `save(folder, windows, stats)`: `folder/windows` (datasets, column input_ids) + `folder/windows.json`.

Callers cache the saved folder under a key of whatever shapes it (functok.cache.cached_dir).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from .config import ParamError


def split_documents_of(corpus: str, preset: str, max_documents: int, split: str):
    """'embedded': the preset's own split; otherwise the corpus split with the preset's held-out fraction."""
    if corpus == "embedded":
        from .embedded import documents

        return documents(preset, split)
    from .config import pretrain_config
    from .corpus import load_corpus, split_documents

    train, held = split_documents(load_corpus(corpus, max_documents), pretrain_config(preset).heldout_fraction)
    return held if split == "heldout" else train


def cut(tok, texts: Iterable[str], context_size: int, max_windows: int = 0, what: str = "documents"):
    """(windows [n, context_size] int32, {"n_windows", "n_tokens", "n_documents", "dropped_tail_tokens"}).
    With max_windows, tokenizing stops once enough tokens are in hand."""
    from .function_tokens import encode

    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    texts = list(texts)
    parts: list[np.ndarray] = []
    total, need = 0, max_windows * context_size
    for i in range(0, len(texts), 1024):
        for ids in encode(tok, texts[i:i + 1024]):
            parts.append(np.asarray([bos, *ids], dtype=np.int32))
            total += parts[-1].size
        if need and total >= need:
            break
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    n = flat.size // context_size
    if max_windows:
        n = min(n, max_windows)
    if n == 0:
        raise ParamError(f"context_size: {context_size} tokens is more than the {flat.size} tokens of the {what}; "
                         f"expected a smaller context_size or more documents")
    stats = {"n_windows": int(n), "n_tokens": int(flat.size), "n_documents": len(parts),
             "dropped_tail_tokens": int(flat.size - n * context_size)}
    return flat[: n * context_size].reshape(n, context_size), stats


def save(folder: Path, windows: np.ndarray, stats: dict) -> Path:
    """Write `folder/windows` (datasets save_to_disk, column input_ids) and `folder/windows.json`."""
    import datasets

    from .cache import write_json_atomic
    from .pretrain import quiet_hf

    feats = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32"))})
    with quiet_hf():
        datasets.Dataset.from_dict({"input_ids": list(windows)}, features=feats).save_to_disk(str(Path(folder) / "windows"))
    write_json_atomic(Path(folder) / "windows.json", stats)
    return Path(folder) / "windows"
