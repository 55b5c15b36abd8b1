"""Function tokens by the paper's coverage rule: counts, the rule, and the cached function-token file.

The rule: count every token of every document (each document tokenized on its own, special tokens
not counted), sort by count (ties: lower id first), keep the longest prefix whose cumulative share of
all counted tokens does not exceed the threshold. Every other token is a content token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from functok.core.cache import cached_dir, relpath, write_json_atomic
from functok.core.config import looks_local
from functok.world.corpus import corpus_key, iter_documents, load_corpus
from functok.world.embedded import corpus_dir, documents
from functok.world.tokenizers import encode, load_tokenizer, local_tokenizer, tokenizer_files_key, tokenizer_name


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


def count_tokens(tok, texts: Iterable[str], batch_size: int = 2048, progress: bool = True) -> TokenCounts:
    """Stream documents in batches; memory is bounded by the vocabulary, not the corpus."""
    from tqdm import (
        tqdm,  # plain bars: readable in terminals, Jupyter and papermill logs alike
    )

    vocab = len(tok)
    specials = np.array(sorted(set(tok.all_special_ids)), dtype=np.int64)
    counts = np.zeros(vocab, dtype=np.int64)
    doc_counts = np.zeros(vocab, dtype=np.int64)
    n_docs = 0
    batch: list[str] = []
    bar = tqdm(desc="counting tokens", unit=" docs", disable=not progress, mininterval=2)

    def flush():
        nonlocal n_docs
        n_docs += _accumulate(counts, doc_counts, encode(tok, batch), specials)
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


def _accumulate(counts: np.ndarray, doc_counts: np.ndarray, ids_per_doc, specials: np.ndarray) -> int:
    """Add a batch of documents: one bincount for occurrences, one unique over (doc, token) keys."""
    if not len(ids_per_doc):
        return 0
    arrays = [np.asarray(d, dtype=np.int64) for d in ids_per_doc]
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    flat = np.concatenate(arrays)
    doc = np.repeat(np.arange(len(ids_per_doc), dtype=np.int64), lengths)
    if specials.size:
        keep = ~np.isin(flat, specials)
        flat, doc = flat[keep], doc[keep]
    vocab = counts.size
    counts += np.bincount(flat, minlength=vocab)
    keys = np.sort(doc * vocab + flat)  # sort + diff: numpy 2.4's np.unique is many times slower
    first = np.ones(keys.size, dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    doc_counts += np.bincount(keys[first] % vocab, minlength=vocab)
    return len(ids_per_doc)


def count_ids(ids_per_doc: Sequence[Sequence[int]], vocab: int, special_ids: Iterable[int] = ()) -> TokenCounts:
    """Counts from already-tokenized documents."""
    counts = np.zeros(vocab, dtype=np.int64)
    doc_counts = np.zeros(vocab, dtype=np.int64)
    n = _accumulate(counts, doc_counts, ids_per_doc, np.array(sorted(special_ids), dtype=np.int64))
    return TokenCounts(counts, doc_counts, n, int(counts.sum()))


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
        rows.append(
            {
                "id": i,
                "token": tok.decode([i]),
                "count": int(tc.counts[i]),
                "fraction": float(tc.counts[i] / tc.n_tokens),
                "cumulative": float(cum[rank_of[i]]),
                "doc_coverage": float(tc.doc_counts[i] / tc.n_documents),
                "rank": int(rank_of[i]) + 1,
            }
        )
    return rows


def flat_tokens(tokens_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The saved token ids of every document as one flat array plus document offsets [n_docs + 1]."""
    import datasets
    import pyarrow as pa

    col = datasets.load_from_disk(str(tokens_dir)).data.column("input_ids").combine_chunks()
    if isinstance(col, pa.ChunkedArray):
        col = col.chunk(0) if col.num_chunks else pa.array([], type=pa.list_(pa.int64()))
    return np.asarray(col.flatten()), np.asarray(col.offsets)


def function_mask(vocab_size: int, ids: Iterable[int]):
    """Boolean torch tensor [vocab_size]: True for function tokens."""
    import torch

    mask = torch.zeros(vocab_size, dtype=torch.bool)
    mask[torch.as_tensor(list(ids), dtype=torch.long)] = True
    return mask


# ---------------------------------------------------------------------------------------------
# The function-token file other chapters load


def function_token_params(
    tokenizer: str,
    corpus: str = "embedded",
    preset: str = "embedded",
    coverage_threshold: float = 0.40,
    max_documents: int = 0,
) -> dict:
    """The cache key of `function_token_file` with the same arguments. The embedded tokenizer, 'gpt2'
    and a hub name enter as their name, a local tokenizer folder by the content of its tokenizer files;
    the embedded corpus as 'embedded' and its training documents' folder, local files by their content."""
    folder = local_tokenizer(tokenizer)
    params = {
        "format": 2,
        "tokenizer": tokenizer_files_key(folder) if folder else tokenizer_name(tokenizer, preset),
        "corpus": corpus_key(corpus),
        "coverage_threshold": coverage_threshold,
        "max_documents": max_documents,
    }
    if corpus == "embedded":
        params["documents"] = _rel(corpus_dir(preset) / "train")
    return params


def function_token_file(
    tokenizer: str,
    corpus: str = "embedded",
    preset: str = "embedded",
    coverage_threshold: float = 0.40,
    max_documents: int = 0,
) -> Path:
    """Path of `function_tokens.json` for a tokenizer and corpus (built and cached on first use).

    For tokenizer='embedded' and corpus='embedded' the counts come from the preset's training
    documents (what the models are trained on); otherwise from the whole named corpus.
    """
    params = function_token_params(tokenizer, corpus, preset, coverage_threshold, max_documents)

    def build(tmp: Path) -> None:
        import hashlib

        import datasets
        from datasets.arrow_writer import ArrowWriter
        from tqdm import tqdm

        tok = load_tokenizer(tokenizer, preset)
        vocab, specials = len(tok), np.array(sorted(set(tok.all_special_ids)), dtype=np.int64)
        counts, doc_counts = np.zeros(vocab, dtype=np.int64), np.zeros(vocab, dtype=np.int64)
        fp, n_docs = hashlib.sha1(), 0
        # Streamed in batches: memory is bounded by the vocabulary; the exact token ids counted are
        # written to disk (tokens/, one row per document, no special tokens) so anyone can recount.
        features = datasets.Features(
            {"id": datasets.Value("string"), "input_ids": datasets.Sequence(datasets.Value("int32"))}
        )
        writer = ArrowWriter(path=str(tmp / "tokens.arrow"), features=features)
        bar = tqdm(desc=f"counting tokens ({tokenizer})", unit=" docs", mininterval=5)
        for batch in iter_document_batches(corpus, preset, max_documents):
            ids_per_doc = encode(tok, batch["text"])
            n_docs += _accumulate(counts, doc_counts, ids_per_doc, specials)
            for doc_id, text in zip(batch["id"], batch["text"]):
                fp.update(doc_id.encode())
                fp.update(hashlib.sha1(text.encode()).digest())
            if specials.size:
                drop = set(specials.tolist())
                ids_per_doc = [[t for t in d if t not in drop] for d in ids_per_doc]
            writer.write_batch({"id": batch["id"], "input_ids": ids_per_doc})
            bar.update(len(batch["id"]))
        bar.close()
        writer.finalize()
        datasets.Dataset.from_file(str(tmp / "tokens.arrow")).save_to_disk(str(tmp / "tokens"))
        (tmp / "tokens.arrow").unlink()
        tc = TokenCounts(counts, doc_counts, n_docs, int(counts.sum()))
        np.savez_compressed(
            tmp / "counts.npz",
            counts=tc.counts,
            doc_counts=tc.doc_counts,
            n_documents=tc.n_documents,
            n_tokens=tc.n_tokens,
        )
        ids = select_function_tokens(tc.counts, coverage_threshold)
        write_json_atomic(
            tmp / "function_tokens.json",
            {
                "description": "Function tokens by the coverage rule of arXiv 2510.08203: the most frequent tokens "
                "whose cumulative share of all token occurrences stays within coverage_threshold. "
                "counts.npz holds the counts per token id; tokens/ the token ids counted per document.",
                **params,
                "documents_fingerprint": fp.hexdigest()[:16],
                "n_documents": tc.n_documents,
                "n_tokens": tc.n_tokens,
                "vocab_size": vocab,
                "function_tokens": token_table(tok, tc, ids),
            },
        )

    return cached_dir("function_tokens", params, build) / "function_tokens.json"


def iter_document_batches(corpus: str, preset: str, max_documents: int = 0, batch_size: int = 2048):
    """Batches {"id": [...], "text": [...]} of the chapter's documents; a hub corpus is streamed."""
    if corpus == "embedded" or Path(corpus).expanduser().exists() or looks_local(corpus):
        docs = chapter_documents(corpus, preset, max_documents)
        for i in range(0, len(docs), batch_size):
            yield docs[i : i + batch_size]
        return

    batch: dict[str, list] = {"id": [], "text": []}
    for r in iter_documents(corpus, max_documents):
        batch["id"].append(r["id"])
        batch["text"].append(r["text"])
        if len(batch["id"]) >= batch_size:
            yield batch
            batch = {"id": [], "text": []}
    if batch["id"]:
        yield batch


def chapter_documents(corpus: str, preset: str, max_documents: int = 0):
    """'embedded' means the preset's training documents (what the models learn from)."""
    if corpus == "embedded":
        docs = documents(preset, "train")
        return docs.select(range(min(max_documents, len(docs)))) if max_documents else docs

    return load_corpus(corpus, max_documents)


def load_counts(ft_file: str | Path) -> TokenCounts:
    z = np.load(Path(ft_file).parent / "counts.npz")
    return TokenCounts(z["counts"], z["doc_counts"], int(z["n_documents"]), int(z["n_tokens"]))


def _rel(p: Path) -> str:

    return relpath(p)


def load_function_token_ids(path: str | Path) -> list[int]:
    import json

    return [row["id"] for row in json.loads(Path(path).read_text())["function_tokens"]]
