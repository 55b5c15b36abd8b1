"""Chapter 1, what a function token is: the statistics of Fig 2, Fig 3 and Table 2 for each tokenizer,
the threshold sweep, the closed-class comparison, and the chapter's claims. The function-token rule
itself is `functok.world.function_tokens`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from functok.chapters.common import paper_numbers
from functok.chapters.function_tokens.table2 import (
    TABLE2,
    compare,
    equal_size,
    load_table2,
    our_ranks,
    paper_token_ids,
    symbol_like,
    top_overlap,
)
from functok.core.cache import relpath, sha256
from functok.core.config import ROOT
from functok.core.results import ChapterResult, claim, precondition
from functok.world.closed_class import closed_class_words, word_class
from functok.world.composition import corpus_composition, largest_share, model_summary
from functok.world.config import pretrain_config
from functok.world.embedded import corpus_dir
from functok.world.function_tokens import (
    TokenCounts,
    flat_tokens,
    function_token_file,
    load_counts,
    select_function_tokens,
    token_table,
)
from functok.world.gguf import file_provenance
from functok.world.tokenizers import builtin_dir, gpt2_dir, load_tokenizer, tokenizer_name


def zipf_fit(counts: np.ndarray, lo_rank: int = 10, hi_rank: int | None = None) -> dict:
    """Least-squares slope of log(frequency) on log(rank) over ranks [lo_rank, hi_rank]: f ~ r^-s."""
    freq = np.sort(counts[counts > 0])[::-1].astype(float)
    hi_rank = min(hi_rank or freq.size, freq.size)
    r = np.arange(lo_rank, hi_rank + 1)
    slope, intercept = np.polyfit(np.log(r), np.log(freq[r - 1]), 1)
    return {"exponent": float(-slope), "intercept": float(intercept), "lo_rank": int(lo_rank), "hi_rank": int(hi_rank)}


def token_id(tok, token: str) -> int:
    ids = tok.encode(token, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"burst_tokens: {token!r} is {len(ids)} tokens for this tokenizer; expected a single token")
    return ids[0]


def occurrences_by_bin(flat: np.ndarray, offsets: np.ndarray, tid: int, n_bins: int, seed: int | None = 0) -> dict:
    """Occurrences of one token in n_bins equal-size bins of documents (Fig 3a/3b), and the rate per
    1,000 tokens in each bin (documents differ in length: the rate compares fairly). The documents are
    shuffled with `seed` first (None: kept in corpus order): a corpus stored source by source would
    otherwise make the bins measure the sources, not the token's spread."""
    hits = np.concatenate([[0], np.cumsum(flat == tid)])
    per_doc = hits[offsets[1:]] - hits[offsets[:-1]]
    lengths = np.diff(offsets)
    order = np.arange(per_doc.size) if seed is None else np.random.default_rng(seed).permutation(per_doc.size)
    bins = np.array_split(order, n_bins)
    counts = np.array([per_doc[b].sum() for b in bins])
    tokens = np.array([lengths[b].sum() for b in bins])
    rate = 1000 * counts / np.maximum(tokens, 1)
    cv = float(rate.std() / rate.mean()) if rate.mean() > 0 else float("nan")
    q = document_hit_probabilities(lengths, int(per_doc.sum()))
    expected, sd = float(q.sum()), float(np.sqrt((q * (1 - q)).sum()))
    return {
        "document_z": float(((per_doc > 0).sum() - expected) / sd) if sd > 0 else float("nan"),
        "cv_null": null_cv(tokens, int(counts.sum())),
        "documents": int((per_doc > 0).sum()),
        "documents_expected": expected,
        "document_ratio": float((per_doc > 0).sum() / expected) if expected > 0 else float("nan"),
        "bins": counts.tolist(),
        "tokens_per_bin": tokens.tolist(),
        "rate_per_1k": rate.tolist(),
        "cv": cv,
        "nonzero_bins": int((counts > 0).sum()),
        "documents_ratio_text": f"{int((per_doc > 0).sum()):,} of {expected:,.0f}",
    }


def document_hit_probabilities(lengths: np.ndarray, count: int) -> np.ndarray:
    """Per document, the probability that it contains a token whose `count` occurrences fell on random
    positions: 1 - (1 - p)^L for a document of L tokens, p = count / all tokens (Church and Gale's baseline
    for burstiness: a bursty token is in fewer documents than this)."""
    lengths = np.asarray(lengths, dtype=float)
    total = lengths.sum()
    if count <= 0 or total <= 0:
        return np.zeros_like(lengths)
    p = count / total
    return 1 - np.exp(lengths * np.log1p(-min(p, 1 - 1e-12)))


def expected_documents(lengths: np.ndarray, count: int) -> float:
    """Documents expected to contain the token under random placement (the sum of the hit probabilities)."""
    return float(document_hit_probabilities(lengths, count).sum())


def null_cv(tokens_per_bin: np.ndarray, count: int) -> float:
    """The coefficient of variation of the per-bin rate expected if the token's `count` occurrences
    fell on positions drawn at random (binomial counts per bin): sqrt(mean_b (1 - p) / (p T_b)), with
    p the token's overall frequency and T_b the bin's tokens. A token above it clusters in documents."""
    t = np.asarray(tokens_per_bin, dtype=float)
    total = t.sum()
    if count <= 0 or total <= 0 or (t <= 0).any():
        return float("nan")
    p = count / total
    return float(np.sqrt(np.mean((1 - p) / (p * t))))


def threshold_sweep(counts: np.ndarray, thresholds: Sequence[float]) -> list[dict]:
    return [
        {"coverage_threshold": float(t), "n_function_tokens": int(select_function_tokens(counts, t).size)}
        for t in thresholds
    ]


def closed_class_comparison(tok, tc: TokenCounts, function_ids: np.ndarray) -> dict:
    """Which frequent tokens are content-like; which closed-class words are not function tokens."""
    classes = closed_class_words()
    fset = set(int(i) for i in function_ids)
    labelled = [(int(i), tok.decode([int(i)])) for i in function_ids]
    kinds = [word_class(t, classes) for _, t in labelled]
    content_like = [t for (_, t), k in zip(labelled, kinds) if k == "content"]
    fragments = [t for (_, t), k in zip(labelled, kinds) if k == "fragment"]
    outside = []
    for cat, words in classes.items():
        if cat == "punctuation":
            continue
        for w in sorted(words):
            for form in (" " + w, " " + w.capitalize()):  # whole words only (a leading space)
                ids = tok.encode(form, add_special_tokens=False)
                if len(ids) == 1 and ids[0] not in fset and tc.counts[ids[0]] > 0:
                    outside.append({"token": form, "class": cat, "count": int(tc.counts[ids[0]])})
    outside.sort(key=lambda r: -r["count"])
    n_closed = len(labelled) - len(content_like) - len(fragments)
    return {
        "n_function_tokens": len(labelled),
        "n_closed_class_or_punct": n_closed,
        "closed_class_share": n_closed / max(len(labelled), 1),
        "content_like": content_like,
        "fragments": fragments,
        "closed_class_outside": outside[:40],
    }


def _paper() -> dict:
    return paper_numbers("function_tokens")


def analyze(cfg) -> ChapterResult:
    """Everything chapter 1 reports, for each tokenizer in cfg.tokenizers (detail["per_tokenizer"])."""
    per = {spec: _tokenizer_stats(cfg, spec) for spec in cfg.tokenizers}
    first = per[cfg.tokenizers[0]]
    world = world_summary(cfg, per)
    paper_table = table2_comparison(per["llama3"]) if "llama3" in per else None
    results = {
        k: first[k] for k in ("n_documents", "n_tokens", "coverage_threshold", "n_function_tokens", "function_tokens")
    }
    results["tokenizers"] = {s: {k: v for k, v in p.items() if not k.startswith("_")} for s, p in per.items()}
    if world:
        results["world"] = world
    if paper_table:
        results["table2"] = paper_table

    claims = [c for spec, p in per.items() for c in _tokenizer_claims(cfg, spec, p)]
    preconditions = []
    if paper_table:
        preconditions.append(table2_precondition(paper_table))
        claims += table2_claims(paper_table, cfg, preconditions[-1])

    data = {
        "corpus": cfg.corpus,
        "documents": relpath(chapter_documents_path(cfg)) if cfg.corpus == "embedded" else cfg.corpus,
        "max_documents": cfg.max_documents,
        "n_documents": first["n_documents"],
        "documents_fingerprint": _fingerprint_of(first["function_token_file"]),
        "tokenizers": {s: p["tokenizer"] for s, p in per.items()},
        "tokens": first["tokens"],
        "tokens_by_tokenizer": {s: p["tokens"] for s, p in per.items()},
        "n_tokens": {s: p["n_tokens"] for s, p in per.items()},
    }
    artifacts = {f"function_tokens[{s}]": p["function_token_file"] for s, p in per.items()}
    artifacts.update({f"tokenizer[{s}]": p["tokenizer"] for s, p in per.items()})
    artifacts.update({f"tokenizer_files[{s}]": tokenizer_files(s, cfg.preset) for s in per})
    if paper_table:
        artifacts["paper_table2"] = {"path": relpath(TABLE2), "sha256": sha256(TABLE2)}
    return ChapterResult(results, claims, data, artifacts, {"per_tokenizer": per}, preconditions)


def _tokenizer_stats(cfg, spec: str) -> dict:
    """One tokenizer's statistics: function tokens, the most frequent tokens, Zipf's law, the frequency-coverage
    correlation, the threshold sweep, burstiness and the closed-class comparison ('_' keys: for the figures)."""
    from scipy import stats

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
            bursts[t] = occurrences_by_bin(flat, offsets, token_id(tok, t), cfg.n_bins, cfg.seed)
        except ValueError as e:
            bursts[t] = {"error": str(e)}
    return {
        "tokenizer": tokenizer_name(spec, cfg.preset),
        "vocab_size": len(tok),
        "n_documents": tc.n_documents,
        "n_tokens": tc.n_tokens,
        "coverage_threshold": cfg.coverage_threshold,
        "n_function_tokens": int(ids.size),
        "function_tokens": token_table(tok, tc, ids),
        "top": token_table(tok, tc, ranking[: cfg.top_n]),
        "zipf": zipf_fit(tc.counts),
        "freq_coverage_spearman": float(rho),
        "threshold_sweep": threshold_sweep(tc.counts, cfg.sweep_thresholds),
        "bursts": bursts,
        "closed_class": closed_class_comparison(tok, tc, ids),
        "function_token_file": relpath(ft_file),
        "tokens": relpath(Path(ft_file).parent / "tokens"),
        "_counts": tc,
        "_tok": tok,
        "_flat": (flat, offsets),  # every document's token ids: the live form re-bins Fig 3 from them
    }


def _tokenizer_claims(cfg, spec: str, p: dict) -> list[dict]:
    """One tokenizer's claims: the set's size, the top 15's share, frequency vs coverage, burstiness (when both
    burst tokens were measured) and the closed-class share."""
    return [*_frequency_claims(cfg, spec, p), *_burstiness_claim(cfg, spec, p), _closed_class_claim(spec, p)]


def _frequency_claims(cfg, spec: str, p: dict) -> list[dict]:
    """n_function_tokens, top15_cumulative and freq_coverage_correlation of one tokenizer."""
    share = p["n_function_tokens"] / p["vocab_size"]
    n_paper, v_paper = _paper()["n_function_tokens"], _paper()["vocab_size"]
    top15 = p["top"][min(15, len(p["top"])) - 1]["cumulative"]
    return [
        claim(
            f"n_function_tokens[{spec}]",
            f"A small set of tokens covers {cfg.coverage_threshold:.0%} of all occurrences ({spec} tokenizer)",
            f"{n_paper} of {v_paper:,} ({n_paper / v_paper:.2%})",
            f"{p['n_function_tokens']} of {p['vocab_size']:,} ({share:.2%})",
            "holds" if p["n_function_tokens"] <= n_paper else "fails",
            f"holds if the set has at most the paper's {n_paper} tokens (absolute numbers compare like with "
            f"like: by Zipf's law the size of the head depends on the corpus, hardly on the vocabulary). The share "
            f"of the vocabulary is shown beside the paper's but not judged: it shrinks as the vocabulary grows "
            f"({p['vocab_size']:,} here, {v_paper:,} in the paper). Sample: {p['n_tokens']:,} tokens of "
            f"{p['n_documents']:,} documents",
        ),
        claim(
            f"top15_cumulative[{spec}]",
            f"The 15 most frequent tokens cover about 22.6% of occurrences ({spec} tokenizer)",
            _paper()["top15"][-1][2],
            round(top15, 4),
            "holds" if abs(top15 - _paper()["top15"][-1][2]) <= 0.05 else "fails",
            "holds if within 5 percentage points of the paper's (Llama-3 on SlimPajama; there is no null here: "
            f"corpus genre and tokenizer move this number). Sample: {p['n_tokens']:,} tokens",
        ),
        claim(
            f"freq_coverage_correlation[{spec}]",
            f"Token frequency and document coverage are strongly correlated ({spec} tokenizer)",
            "strong (no number)",
            round(p["freq_coverage_spearman"], 3),
            "holds" if p["freq_coverage_spearman"] >= 0.7 else "fails",
            f"Spearman rank correlation over the {int((p['_counts'].counts > 0).sum()):,} tokens seen; holds if "
            ">= 0.7 (baseline: 0, no relation; a frequent token is in more documents by construction, so this "
            "tests a strong relation, not its existence)",
        ),
    ]


def _burstiness_claim(cfg, spec: str, p: dict) -> list[dict]:
    """burstiness of one tokenizer: the first burst token spread, the second clustered ([] unless both measured)."""
    fb, cb = (p["bursts"].get(t, {}) for t in cfg.burst_tokens[:2])
    if not ("cv" in fb and "cv" in cb):
        return []
    ok = all(np.isfinite(b["document_ratio"]) for b in (fb, cb)) and np.isfinite(cb["document_z"])
    spread, clustered = ok and fb["document_ratio"] >= 0.8, ok and cb["document_z"] <= -3
    return [
        claim(
            f"burstiness[{spec}]",
            f"A function token ({cfg.burst_tokens[0]!r}) is spread evenly across documents, a content token "
            f"({cfg.burst_tokens[1]!r}) is bursty",
            "qualitative (Fig 3)",
            f"in {fb['documents_ratio_text']} vs {cb['documents_ratio_text']} of the documents random "
            f"placement would give (z {cb['document_z']:+.1f} for the content token)",
            ("holds" if spread and clustered else "fails") if ok else "inconclusive",
            "documents containing each token against the number expected if its occurrences fell on random "
            "positions (Church and Gale's baseline: a document of L tokens misses it with probability "
            "(1 - p)^L; the count's standard deviation from the sum of q(1 - q), conservative). Holds if the "
            "function token is in at least 80% of its expected documents (spread) and the content token in "
            "significantly fewer than expected (clustered: z <= -3). Fig 3's bins of shuffled documents (CV "
            "of the rate "
            f"{fb['cv']:.2f} vs {cb['cv']:.2f}; binomial baseline {fb['cv_null']:.2f} vs {cb['cv_null']:.2f}) "
            f"are shown, not judged: bins of many documents average clustering out. Sample: "
            f"{sum(fb['bins']):,} and {sum(cb['bins']):,} occurrences in {p['n_documents']:,} documents"
            + ("" if ok else "; a token never occurs"),
        )
    ]


def _closed_class_claim(spec: str, p: dict) -> dict:
    """closed_class_share of one tokenizer: most function tokens are closed-class words or punctuation."""
    cc = p["closed_class"]
    return claim(
        f"closed_class_share[{spec}]",
        "Beyond the paper: most frequency-defined function tokens are closed-class words or punctuation "
        f"({spec} tokenizer)",
        "not measured",
        f"{cc['closed_class_share']:.0%}",
        "holds" if cc["closed_class_share"] > 0.5 else "fails",
        "holds if more than half of the function tokens are whole closed-class words (a leading space; "
        "data/closed_class_words.yaml) or punctuation/symbols; word fragments without a leading space count "
        f"against it. Content-like: {', '.join(repr(t) for t in cc['content_like'][:8]) or 'none'}; "
        f"fragments: {', '.join(repr(t) for t in cc['fragments'][:8]) or 'none'}",
    )


def world_summary(cfg, per: dict) -> dict | None:
    """The embedded corpus's composition (documents, tokens, share per source, train and held-out, in
    the embedded tokenizer's tokens) and the pre-trained models' sizes and budget, for the intro page.
    None for another corpus, or when the embedded tokenizer is not among cfg.tokenizers."""
    if cfg.corpus != "embedded" or "embedded" not in per:
        return None
    import datasets

    pre = pretrain_config(cfg.preset)
    tok = per["embedded"]["_tok"]
    tokens = datasets.load_from_disk(str(ROOT / per["embedded"]["tokens"]))
    rows = corpus_composition(pre, tok, train_lengths=[len(x) for x in tokens["input_ids"]])
    source, share = largest_share(rows)
    train_tokens = sum(r["tokens"] for r in rows if r["split"] == "train")
    return {
        "composition": rows,
        "largest_source": {"source": source, "share": share},
        "models": model_summary(pre, tok, train_tokens),
        "tokenizer_vocab_size": len(tok),
    }


def tokenizer_files(spec: str, preset: str) -> dict:
    """The files a tokenizer was read from, with their sha256 (so another program can recount)."""
    if spec == "gpt2":
        return file_provenance(gpt2_dir(), ("encoder.json", "vocab.bpe"))
    folder = builtin_dir(spec, preset) if spec in ("embedded", "llama3", "gemma3") else Path(spec).expanduser()
    return file_provenance(folder) if folder.is_dir() else {}


def table2_comparison(p: dict) -> dict:
    """Our Llama-3 list against the paper's Table 2 (functok.chapters.function_tokens.table2)."""
    paper = paper_token_ids(load_table2(), p["_tok"])
    ranks = our_ranks(p["_counts"])
    cmp = compare(paper, p["function_tokens"], ranks)
    cmp["top15"] = top_overlap(paper, ranks, 15)
    cmp["equal_size"] = equal_size(paper, ranks)
    cmp["symbol_like_paper_only"] = [
        r["token"] for r in cmp["rows"] if r["status"] == "paper only" and symbol_like(r["token"])
    ]
    cmp["source"] = relpath(TABLE2)
    return cmp


TABLE2_USABLE = 0.9  # the comparisons mean something only if most of the paper's rows are tokens we can compare


def table2_precondition(t: dict) -> dict:
    """table2_tokens_usable: most of the paper's rows are known, single Llama-3 tokens, not repeated."""
    return precondition(
        "table2_tokens_usable[llama3]",
        "The paper's Table 2 tokens can be compared by token id (Llama-3 tokenizer)",
        f"{t['n_paper_tokens']} of {t['n_paper_rows']} rows",
        t["n_paper_tokens"] >= TABLE2_USABLE * t["n_paper_rows"],
        f"met if at least {TABLE2_USABLE:.0%} of the rows are known, one Llama-3 token each and repeat no earlier row; "
        "the Table 2 claims are inconclusive otherwise",
    )


def table2_claims(t: dict, cfg, usable: dict) -> list[dict]:
    """Table 2's claims; each inconclusive when too few of the paper's rows can be compared (`usable`)."""
    out = _table2_claims(t, cfg)
    if not usable["met"]:
        for c in out:
            c["verdict"] = "inconclusive"
            c["note"] += f"; inconclusive: precondition not met ({usable['value']} usable)"
    return out


def _table2_claims(t: dict, cfg) -> list[dict]:
    top = t["top15"]
    return [
        claim(
            "paper_top15_in_our_top15[llama3]",
            "The paper's 15 most frequent tokens are our 15 most frequent (Llama-3 tokenizer, our corpus)",
            "Fig 2b (SlimPajama)",
            f"{top['in_our_top']} of {top['paper_top']}",
            "holds" if top["in_our_top"] >= 0.8 * top["paper_top"] else "fails",
            f"the paper's top-15 tokens that the extraction is sure of and that are one Llama-3 token "
            f"({top['paper_top']}); holds if at least 80% of them are in our top 15. Baseline: the paper's list on "
            f"SlimPajama (web, code, books); ours is {cfg.corpus!r}",
        ),
        _equal_size_claim(t, cfg),
        claim(
            "paper_fraction_rank_correlation[llama3]",
            "Beyond the paper: the shared function tokens keep their order of frequency across the two corpora",
            "not measured",
            round(t["spearman_shared_fractions"], 3),
            "inconclusive" if t["n_shared"] < 10 else ("holds" if t["spearman_shared_fractions"] >= 0.5 else "fails"),
            f"Spearman correlation of the paper's and our token fractions over the {t['n_shared']} shared tokens; "
            "holds if >= 0.5 (baseline: 0, unrelated orders); inconclusive with fewer than 10 shared",
        ),
    ]


def _equal_size_claim(t: dict, cfg) -> dict:
    """paper_function_tokens_overlap_equal_size: the paper's list against our as many most frequent tokens."""
    e = t["equal_size"]
    n_sure_ours = round(t["sure_share_in_ours"] * t["n_paper_sure"])
    return claim(
        "paper_function_tokens_overlap_equal_size[llama3]",
        "Most of the paper's 122 function tokens are among our as many most frequent tokens (Llama-3 tokenizer)",
        f"{t['n_paper_rows']} tokens",
        f"{e['n_shared']} of {e['n']} shared; Jaccard {e['jaccard']:.2f}, RBO {e['rbo']:.2f}",
        "holds" if e["n_shared"] > e["n"] / 2 else "fails",
        f"the paper's {e['n']} usable tokens (one Llama-3 token each, known, not repeated) against our {e['n']} most "
        f"frequent tokens on {cfg.corpus!r}: lists of equal size, so the rule can hold whatever our corpus's "
        "coverage threshold gives. Holds if more than half of them are shared (Jaccard > 1/3), fails otherwise; "
        f"rank-biased overlap (extrapolated, p = {e['rbo_p']:g}, about {1 / (1 - e['rbo_p']):.0f} ranks deep) "
        f"reported, not scored. Beside it, our {cfg.coverage_threshold:.0%} list ({t['n_ours']} tokens): "
        f"{t['n_shared']} shared, Jaccard {t['jaccard']:.2f}, {n_sure_ours} of the paper's {t['n_paper_sure']} sure "
        "tokens. Paper-only symbols and digits (code and markup in SlimPajama): "
        f"{', '.join(repr(x) for x in t['symbol_like_paper_only'][:12]) or 'none'}",
    )


def chapter_documents_path(cfg) -> Path:

    return corpus_dir(cfg.preset) / "train"


def _fingerprint_of(ft_file: str) -> str:
    import json

    p = Path(ft_file)
    return json.loads((p if p.is_absolute() else ROOT / p).read_text())["documents_fingerprint"]
