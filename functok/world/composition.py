"""What the embedded world is made of: documents and tokens per source in the training and held-out
splits, and the size and training budget of each pre-trained model. Chapter 1 records both in its
results; the book's intro page shows them (functok.book.site.world_markdown)."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

from functok.world.config import PretrainConfig
from functok.world.corpus import source_of
from functok.world.embedded import documents
from functok.world.llama import build_model
from functok.world.pretrain import n_steps


def composition_table(splits: dict[str, tuple[Sequence[str], Sequence[int]]]) -> list[dict]:
    """One row per (split, source): documents, tokens and the source's share of the split's tokens.
    `splits` maps a split name to (document ids, tokens per document)."""
    rows = []
    for split, (ids, lengths) in splits.items():
        docs: dict[str, int] = defaultdict(int)
        toks: dict[str, int] = defaultdict(int)
        for i, n in zip(ids, lengths):
            s = source_of(i)
            docs[s] += 1
            toks[s] += int(n)
        total = sum(toks.values())
        for s in sorted(toks):
            rows.append(
                {
                    "split": split,
                    "source": s,
                    "documents": docs[s],
                    "tokens": toks[s],
                    "share": toks[s] / total if total else float("nan"),
                }
            )
    return rows


def token_lengths(tok, texts: Iterable[str], batch_size: int = 1024) -> list[int]:
    texts = list(texts)
    out: list[int] = []
    for i in range(0, len(texts), batch_size):
        out += [len(x) for x in tok(texts[i : i + batch_size], add_special_tokens=False)["input_ids"]]
    return out


def corpus_composition(cfg: PretrainConfig, tok, train_lengths: Sequence[int] | None = None) -> list[dict]:
    """The composition of the preset's train and held-out documents under `tok`; `train_lengths`
    (tokens per training document, in document order) skips re-tokenizing what a caller counted."""
    train, held = documents(cfg, "train"), documents(cfg, "heldout")
    if train_lengths is None or len(train_lengths) != len(train):
        train_lengths = token_lengths(tok, train["text"])
    return composition_table(
        {
            "train": (train["id"], train_lengths),
            "heldout": (held["id"], token_lengths(tok, held["text"])),
        }
    )


def largest_share(rows: list[dict], split: str = "train") -> tuple[str, float]:
    """The source with the largest share of a split's tokens, and that share."""
    r = max((r for r in rows if r["split"] == split), key=lambda r: r["share"])
    return r["source"], float(r["share"])


def model_summary(cfg: PretrainConfig, tok, train_tokens_available: int) -> list[dict]:
    """Each depth's architecture, parameter count and training budget (built, not trained: cheap)."""
    out = []
    for depth in cfg.depths:
        model = build_model(cfg, depth, tok)
        out.append(
            {
                "n_layers": depth,
                "d_model": cfg.d_model,
                "n_heads": cfg.n_heads,
                "d_mlp": cfg.d_mlp,
                "vocab_size": len(tok),
                "parameters": int(sum(p.numel() for p in model.parameters())),
                "context_size": cfg.context_size,
                "batch_size": cfg.batch_size,
                "steps": n_steps(cfg),
                "train_tokens": cfg.train_tokens,
                "passes": cfg.train_tokens / train_tokens_available if train_tokens_available else float("nan"),
                "n_checkpoints": cfg.n_checkpoints,
            }
        )
        del model
    return out
