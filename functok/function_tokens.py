"""Function tokens by the paper's coverage rule, and the statistics of Fig 2, Fig 3 and Table 2.

The rule: count every token of every document (each document tokenized on its own, special tokens
not counted), sort by count (ties: lower id first), keep the longest prefix whose cumulative share of
all counted tokens does not exceed the threshold. Every other token is a content token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


@dataclass
class TokenCounts:
    """Corpus statistics for one tokenizer. Arrays are indexed by token id."""

    counts: np.ndarray  # [vocab] occurrences over the corpus
    doc_counts: np.ndarray  # [vocab] documents containing the token
    n_documents: int
    n_tokens: int

    def ranking(self) -> np.ndarray:
        """Token ids by count, descending; ties broken by lower id (stable sort)."""
        return np.argsort(-self.counts, kind="stable")


def encode(tok, texts: Sequence[str]) -> list[list[int]]:
    """Token ids per document without special tokens, using the Rust tokenizer's parallel batch."""
    backend = tok.backend_tokenizer
    enc = backend.encode_batch_fast(list(texts), add_special_tokens=False)
    return [e.ids for e in enc]


def count_tokens(tok, texts: Iterable[str], batch_size: int = 2048, progress: bool = True) -> TokenCounts:
    """Stream documents in batches; memory is bounded by the vocabulary, not the corpus."""
    from tqdm.auto import tqdm

    vocab = len(tok)
    specials = np.array(sorted(set(tok.all_special_ids)), dtype=np.int64)
    counts = np.zeros(vocab, dtype=np.int64)
    doc_counts = np.zeros(vocab, dtype=np.int64)
    n_docs = 0
    batch: list[str] = []
    bar = tqdm(desc="counting tokens", unit=" docs", disable=not progress, mininterval=2)

    def flush():
        nonlocal n_docs
        for ids in encode(tok, batch):
            a = np.asarray(ids, dtype=np.int64)
            if specials.size:
                a = a[~np.isin(a, specials)]
            counts[:] += np.bincount(a, minlength=vocab)
            doc_counts[np.unique(a)] += 1
            n_docs += 1
        bar.update(len(batch))
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    bar.close()
    return TokenCounts(counts, doc_counts, n_docs, int(counts.sum()))


def select_function_tokens(counts: np.ndarray, threshold: float) -> np.ndarray:
    """Ids of the function tokens: the longest frequency-ranked prefix whose cumulative share <= threshold."""
    order = np.argsort(-counts, kind="stable")
    cum = np.cumsum(counts[order]) / counts.sum()
    n = int(np.searchsorted(cum, threshold, side="right"))
    return order[:n]


def token_table(tok, tc: TokenCounts, ids: np.ndarray) -> list[dict]:
    """Rows {id, token, count, fraction, cumulative, doc_coverage} in rank order."""
    order = tc.ranking()
    rank_of = np.empty_like(order)
    rank_of[order] = np.arange(order.size)
    cum = np.cumsum(tc.counts[order]) / tc.n_tokens
    rows = []
    for i in ids:
        i = int(i)
        rows.append({
            "id": i, "token": tok.decode([i]), "count": int(tc.counts[i]),
            "fraction": float(tc.counts[i] / tc.n_tokens), "cumulative": float(cum[rank_of[i]]),
            "doc_coverage": float(tc.doc_counts[i] / tc.n_documents), "rank": int(rank_of[i]) + 1,
        })
    return rows


def zipf_fit(counts: np.ndarray, lo_rank: int = 10, hi_rank: int | None = None) -> dict:
    """Least-squares slope of log(frequency) on log(rank) over ranks [lo_rank, hi_rank]: f ~ r^-s."""
    freq = np.sort(counts[counts > 0])[::-1].astype(float)
    hi_rank = min(hi_rank or freq.size, freq.size)
    r = np.arange(lo_rank, hi_rank + 1)
    slope, intercept = np.polyfit(np.log(r), np.log(freq[r - 1]), 1)
    return {"exponent": float(-slope), "intercept": float(intercept), "lo_rank": int(lo_rank), "hi_rank": int(hi_rank)}


def occurrences_by_bin(tok, texts: Sequence[str], token: str, n_bins: int) -> np.ndarray:
    """Occurrences of one token in each of n_bins equal-size bins of consecutive documents (Fig 3a/3b)."""
    ids = tok.encode(token, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"burst_tokens: {token!r} is {len(ids)} tokens for this tokenizer; expected a single token")
    tid = ids[0]
    per_doc = np.array([np.count_nonzero(np.asarray(d) == tid) for d in encode(tok, texts)])
    return np.array([b.sum() for b in np.array_split(per_doc, n_bins)])


def threshold_sweep(counts: np.ndarray, thresholds: Sequence[float]) -> list[dict]:
    return [{"coverage_threshold": float(t), "n_function_tokens": int(select_function_tokens(counts, t).size)}
            for t in thresholds]


def function_mask(vocab_size: int, ids: Iterable[int]):
    """Boolean torch tensor [vocab_size]: True for function tokens."""
    import torch

    mask = torch.zeros(vocab_size, dtype=torch.bool)
    mask[torch.as_tensor(list(ids), dtype=torch.long)] = True
    return mask


# ---------------------------------------------------------------------------------------------
# The function-token file other chapters load


def function_token_file(tokenizer: str, corpus: str = "embedded", preset: str = "embedded",
                        coverage_threshold: float = 0.40, max_documents: int = 0) -> Path:
    """Path of `function_tokens.json` for a tokenizer and corpus (built and cached on first use).

    For tokenizer='embedded' and corpus='embedded' the counts come from the preset's training
    documents (what the models are trained on); otherwise from the whole named corpus.
    """
    from .cache import cached_dir
    from .tokenizers import load_tokenizer, tokenizer_name

    params = {"tokenizer": tokenizer_name(tokenizer, preset), "corpus": corpus,
              "coverage_threshold": coverage_threshold, "max_documents": max_documents}
    if corpus == "embedded":
        from .embedded import corpus_dir

        params["documents"] = _rel(corpus_dir(preset) / "train")

    def build(tmp: Path) -> None:
        from .cache import write_json_atomic
        from .corpus import fingerprint, load_corpus

        tok = load_tokenizer(tokenizer, preset)
        if corpus == "embedded":
            from .embedded import documents

            docs = documents(preset, "train")
        else:
            docs = load_corpus(corpus, max_documents)
        tc = count_tokens(tok, docs["text"], progress=False)
        ids = select_function_tokens(tc.counts, coverage_threshold)
        write_json_atomic(tmp / "function_tokens.json", {
            "description": "Function tokens by the coverage rule of arXiv 2510.08203: the most frequent tokens "
                           "whose cumulative share of all token occurrences stays within coverage_threshold.",
            **params, "documents_fingerprint": fingerprint(docs), "n_documents": tc.n_documents,
            "n_tokens": tc.n_tokens, "vocab_size": len(tok),
            "function_tokens": token_table(tok, tc, ids)})

    return cached_dir("function_tokens", params, build) / "function_tokens.json"


def _rel(p: Path) -> str:
    from .cache import relpath

    return relpath(p)


def load_function_token_ids(path: str | Path) -> list[int]:
    import json

    return [row["id"] for row in json.loads(Path(path).read_text())["function_tokens"]]
