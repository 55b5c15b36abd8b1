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
    from tqdm import tqdm  # plain bars: readable in terminals, Jupyter and papermill logs alike

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


def flat_tokens(tokens_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The saved token ids of every document as one flat array plus document offsets [n_docs + 1]."""
    import datasets
    import pyarrow as pa

    col = datasets.load_from_disk(str(tokens_dir)).data.column("input_ids").combine_chunks()
    if isinstance(col, pa.ChunkedArray):
        col = col.chunk(0) if col.num_chunks else pa.array([], type=pa.list_(pa.int64()))
    return np.asarray(col.flatten()), np.asarray(col.offsets)


def token_id(tok, token: str) -> int:
    ids = tok.encode(token, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"burst_tokens: {token!r} is {len(ids)} tokens for this tokenizer; expected a single token")
    return ids[0]


def occurrences_by_bin(flat: np.ndarray, offsets: np.ndarray, tid: int, n_bins: int) -> dict:
    """Occurrences of one token in n_bins equal-size bins of consecutive documents (Fig 3a/3b), and
    the rate per 1,000 tokens in each bin (documents differ in length: the rate compares fairly)."""
    hits = np.concatenate([[0], np.cumsum(flat == tid)])
    per_doc = hits[offsets[1:]] - hits[offsets[:-1]]
    lengths = np.diff(offsets)
    bins = np.array_split(np.arange(per_doc.size), n_bins)
    counts = np.array([per_doc[b].sum() for b in bins])
    tokens = np.array([lengths[b].sum() for b in bins])
    rate = 1000 * counts / np.maximum(tokens, 1)
    cv = float(rate.std() / rate.mean()) if rate.mean() > 0 else float("nan")
    return {"bins": counts.tolist(), "tokens_per_bin": tokens.tolist(), "rate_per_1k": rate.tolist(),
            "cv": cv, "nonzero_bins": int((counts > 0).sum())}


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

    params = {"format": 2, "tokenizer": tokenizer_name(tokenizer, preset), "corpus": corpus,
              "coverage_threshold": coverage_threshold, "max_documents": max_documents}
    if corpus == "embedded":
        from .embedded import corpus_dir

        params["documents"] = _rel(corpus_dir(preset) / "train")

    def build(tmp: Path) -> None:
        import hashlib

        import datasets
        from datasets.arrow_writer import ArrowWriter
        from tqdm import tqdm

        from .cache import write_json_atomic

        tok = load_tokenizer(tokenizer, preset)
        vocab, specials = len(tok), np.array(sorted(set(tok.all_special_ids)), dtype=np.int64)
        counts, doc_counts = np.zeros(vocab, dtype=np.int64), np.zeros(vocab, dtype=np.int64)
        fp, n_docs = hashlib.sha1(), 0
        # Streamed in batches: memory is bounded by the vocabulary; the exact token ids counted are
        # written to disk (tokens/, one row per document, no special tokens) so anyone can recount.
        features = datasets.Features({"id": datasets.Value("string"),
                                      "input_ids": datasets.Sequence(datasets.Value("int32"))})
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
        np.savez_compressed(tmp / "counts.npz", counts=tc.counts, doc_counts=tc.doc_counts,
                            n_documents=tc.n_documents, n_tokens=tc.n_tokens)
        ids = select_function_tokens(tc.counts, coverage_threshold)
        write_json_atomic(tmp / "function_tokens.json", {
            "description": "Function tokens by the coverage rule of arXiv 2510.08203: the most frequent tokens "
                           "whose cumulative share of all token occurrences stays within coverage_threshold. "
                           "counts.npz holds the counts per token id; tokens/ the token ids counted per document.",
            **params, "documents_fingerprint": fp.hexdigest()[:16], "n_documents": tc.n_documents,
            "n_tokens": tc.n_tokens, "vocab_size": vocab,
            "function_tokens": token_table(tok, tc, ids)})

    return cached_dir("function_tokens", params, build) / "function_tokens.json"


def iter_document_batches(corpus: str, preset: str, max_documents: int = 0, batch_size: int = 2048):
    """Batches {"id": [...], "text": [...]} of the chapter's documents; a hub corpus is streamed."""
    from .config import looks_local

    if corpus == "embedded" or Path(corpus).expanduser().exists() or looks_local(corpus):
        docs = chapter_documents(corpus, preset, max_documents)
        for i in range(0, len(docs), batch_size):
            yield docs[i:i + batch_size]
        return
    from .corpus import iter_documents

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
        from .embedded import documents

        docs = documents(preset, "train")
        return docs.select(range(min(max_documents, len(docs)))) if max_documents else docs
    from .corpus import load_corpus

    return load_corpus(corpus, max_documents)


def load_counts(ft_file: str | Path) -> TokenCounts:
    z = np.load(Path(ft_file).parent / "counts.npz")
    return TokenCounts(z["counts"], z["doc_counts"], int(z["n_documents"]), int(z["n_tokens"]))


def _rel(p: Path) -> str:
    from .cache import relpath

    return relpath(p)


def load_function_token_ids(path: str | Path) -> list[int]:
    import json

    return [row["id"] for row in json.loads(Path(path).read_text())["function_tokens"]]


# ---------------------------------------------------------------------------------------------
# Closed-class comparison (beyond the paper: the reviewers asked whether "function" is just "frequent")


def closed_class_words() -> dict[str, set[str]]:
    import yaml

    from .config import ROOT

    raw = yaml.safe_load((ROOT / "data" / "closed_class_words.yaml").read_text())
    return {cat: {str(w).lower() for w in words} for cat, words in raw.items()}


def word_class(token: str, classes: dict[str, set[str]]) -> str:
    """'punctuation' (incl. white space, digits, symbols), a closed class, or 'content'."""
    w = token.strip().lower()
    if not w or not any(ch.isalpha() for ch in w):
        return "punctuation/symbol"
    for cat, words in classes.items():
        if w in words:
            return cat
    return "content"


def closed_class_comparison(tok, tc: TokenCounts, function_ids: np.ndarray) -> dict:
    """Which frequent tokens are content-like; which closed-class words are not function tokens."""
    classes = closed_class_words()
    fset = set(int(i) for i in function_ids)
    labelled = [(int(i), tok.decode([int(i)])) for i in function_ids]
    content_like = [t for i, t in labelled if word_class(t, classes) == "content"]
    outside = []
    for cat, words in classes.items():
        if cat == "punctuation":
            continue
        for w in sorted(words):
            for form in (" " + w, w, " " + w.capitalize()):
                ids = tok.encode(form, add_special_tokens=False)
                if len(ids) == 1 and ids[0] not in fset and tc.counts[ids[0]] > 0:
                    outside.append({"token": form, "class": cat, "count": int(tc.counts[ids[0]])})
    outside.sort(key=lambda r: -r["count"])
    n_closed = len(labelled) - len(content_like)
    return {"n_function_tokens": len(labelled), "n_closed_class_or_punct": n_closed,
            "closed_class_share": n_closed / max(len(labelled), 1), "content_like": content_like,
            "closed_class_outside": outside[:40]}


# ---------------------------------------------------------------------------------------------
# The chapter


def _paper() -> dict:
    from .paper import numbers

    return numbers()["function_tokens"]


def analyze(cfg) -> dict:
    """Everything chapter 1 reports, for each tokenizer in cfg.tokenizers.

    Returns {"per_tokenizer": {spec: {...}}, "results", "claims", "data", "artifacts"}.
    """
    from scipy import stats

    from .cache import relpath
    from .results import claim
    from .tokenizers import load_tokenizer, tokenizer_name

    per: dict[str, dict] = {}
    for spec in cfg.tokenizers:
        tok = load_tokenizer(spec, cfg.preset)
        ft_file = function_token_file(spec, cfg.corpus, cfg.preset, cfg.coverage_threshold, cfg.max_documents)
        tc = load_counts(ft_file)
        ids = select_function_tokens(tc.counts, cfg.coverage_threshold)
        ranking = tc.ranking()
        seen = ranking[: int((tc.counts > 0).sum())]
        rho = stats.spearmanr(tc.counts[seen], tc.doc_counts[seen]).statistic
        bursts = {}
        flat, offsets = flat_tokens(Path(ft_file).parent / "tokens")
        for t in cfg.burst_tokens:
            try:
                bursts[t] = occurrences_by_bin(flat, offsets, token_id(tok, t), cfg.n_bins)
            except ValueError as e:
                bursts[t] = {"error": str(e)}
        per[spec] = {
            "tokenizer": tokenizer_name(spec, cfg.preset), "vocab_size": len(tok),
            "n_documents": tc.n_documents, "n_tokens": tc.n_tokens,
            "coverage_threshold": cfg.coverage_threshold, "n_function_tokens": int(ids.size),
            "function_tokens": token_table(tok, tc, ids),
            "top": token_table(tok, tc, ranking[: cfg.top_n]),
            "zipf": zipf_fit(tc.counts), "freq_coverage_spearman": float(rho),
            "threshold_sweep": threshold_sweep(tc.counts, cfg.sweep_thresholds),
            "bursts": bursts, "closed_class": closed_class_comparison(tok, tc, ids),
            "function_token_file": relpath(ft_file), "tokens": relpath(Path(ft_file).parent / "tokens"),
            "_counts": tc,
        }

    first = per[cfg.tokenizers[0]]
    results = {k: first[k] for k in ("n_documents", "n_tokens", "coverage_threshold", "n_function_tokens", "function_tokens")}
    results["tokenizers"] = {s: {k: v for k, v in p.items() if not k.startswith("_")} for s, p in per.items()}

    claims = []
    for spec, p in per.items():
        share = p["n_function_tokens"] / p["vocab_size"]
        claims.append(claim(
            f"n_function_tokens[{spec}]", f"A small set of tokens covers {cfg.coverage_threshold:.0%} of all occurrences ({spec} tokenizer)",
            f"122 of 128,256 (0.10%)", f"{p['n_function_tokens']} of {p['vocab_size']:,} ({share:.2%})",
            "holds" if share <= 0.01 else "fails", "holds if the set is at most 1% of the vocabulary"))
        top15 = p["top"][min(15, len(p["top"])) - 1]["cumulative"]
        claims.append(claim(
            f"top15_cumulative[{spec}]", f"The 15 most frequent tokens cover about 22.6% of occurrences ({spec} tokenizer)",
            _paper()["top15"][-1][2], round(top15, 4),
            "holds" if abs(top15 - _paper()["top15"][-1][2]) <= 0.05 else "fails",
            "holds if within 5 percentage points; corpus genre and tokenizer move this number"))
        claims.append(claim(
            f"freq_coverage_correlation[{spec}]", f"Token frequency and document coverage are strongly correlated ({spec} tokenizer)",
            "strong (no number)", round(p["freq_coverage_spearman"], 3),
            "holds" if p["freq_coverage_spearman"] >= 0.7 else "fails", "Spearman rank correlation over tokens seen; holds if >= 0.7"))
        fb, cb = (p["bursts"].get(t, {}) for t in cfg.burst_tokens[:2])
        if "cv" in fb and "cv" in cb:
            ok = np.isfinite(fb["cv"]) and np.isfinite(cb["cv"])
            claims.append(claim(
                f"burstiness[{spec}]", f"A function token ({cfg.burst_tokens[0]!r}) is spread evenly across documents, a content token ({cfg.burst_tokens[1]!r}) is bursty",
                "qualitative (Fig 3)", f"CV {fb['cv']:.2f} vs {cb['cv']:.2f}",
                ("holds" if fb["cv"] < cb["cv"] else "fails") if ok else "inconclusive",
                f"coefficient of variation over {cfg.n_bins} bins of documents of the rate per 1,000 tokens" + ("" if ok else "; a token never occurs")))
        cc = p["closed_class"]
        claims.append(claim(
            f"closed_class_share[{spec}]", f"Beyond the paper: most frequency-defined function tokens are closed-class words or punctuation ({spec} tokenizer)",
            "not measured", f"{cc['closed_class_share']:.0%}",
            "holds" if cc["closed_class_share"] > 0.5 else "fails",
            "content-like: " + ", ".join(repr(t) for t in cc["content_like"][:8])))

    data = {"corpus": cfg.corpus, "documents": relpath(chapter_documents_path(cfg)) if cfg.corpus == "embedded" else cfg.corpus,
            "max_documents": cfg.max_documents, "n_documents": first["n_documents"],
            "documents_fingerprint": _fingerprint_of(first["function_token_file"]),
            "tokenizers": {s: p["tokenizer"] for s, p in per.items()},
            "tokens": first["tokens"], "tokens_by_tokenizer": {s: p["tokens"] for s, p in per.items()},
            "n_tokens": {s: p["n_tokens"] for s, p in per.items()}}
    artifacts = {f"function_tokens[{s}]": p["function_token_file"] for s, p in per.items()}
    artifacts.update({f"tokenizer[{s}]": p["tokenizer"] for s, p in per.items()})
    return {"per_tokenizer": per, "results": results, "claims": claims, "data": data, "artifacts": artifacts}


def chapter_documents_path(cfg) -> Path:
    from .embedded import corpus_dir

    return corpus_dir(cfg.preset) / "train"


def _fingerprint_of(ft_file: str) -> str:
    import json

    from .config import ROOT

    p = Path(ft_file)
    return json.loads((p if p.is_absolute() else ROOT / p).read_text())["documents_fingerprint"]
