"""The paper's Table 2 (its 122 function tokens, Llama-3.1 tokenizer, SlimPajama) beside our list with the
same tokenizer: which of the paper's tokens we also find and at what rank, which we find that it does not,
the overlap and the rank correlation of the shared tokens' fractions.

The table is project data (`data/paper/table2.tsv`, extracted from the paper's PDF): each row's token is
a JSON string, `sure` says whether the extraction is certain of it, and an unknown token is empty. Tokens
are compared as token ids: each of the paper's strings is encoded with our Llama-3 tokenizer and kept
when it is exactly one token.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from functok.core.config import ROOT
from functok.world.function_tokens import TokenCounts

TABLE2 = ROOT / "data" / "paper" / "table2.tsv"


def _pct(x: str) -> float:
    """A printed percentage; '?' (lost) is nan, '~0.09' (implied by its neighbours) its value."""
    x = x.strip().lstrip("~")
    return float(x) / 100 if x and x != "?" else float("nan")


def load_table2(path: Path = TABLE2) -> list[dict]:
    """Rows {rank, token (str, '' when unknown), sure, doc_coverage, fraction, cumulative, note} (fractions
    in [0, 1]; nan where the extraction lost the number)."""
    lines = [ln for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]
    rows = []
    for r in csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE):  # tokens are JSON strings
        rows.append(
            {
                "rank": int(r["rank"]),
                "token": json.loads(r["token"]) if r["token"] else "",
                "sure": r["sure"] == "yes",
                "doc_coverage": _pct(r["doc_coverage_pct"]),
                "fraction": _pct(r["token_fraction_pct"]),
                "cumulative": _pct(r["cumulative_pct"]),
                "note": r.get("note") or "",
            }
        )
    return rows


def paper_token_ids(rows: list[dict], tok) -> list[dict]:
    """Each row with the id its token has in `tok` (None: unknown, or not a single token), and whether it
    repeats an earlier row's id (an extraction error would show as one)."""
    seen: dict[int, int] = {}
    out = []
    for r in rows:
        ids = tok.encode(r["token"], add_special_tokens=False) if r["token"] else []
        tid = ids[0] if len(ids) == 1 else None
        dup = seen.get(tid) if tid is not None else None
        if tid is not None and dup is None:
            seen[tid] = r["rank"]
        out.append({**r, "id": tid, "duplicate_of": dup})
    return out


def compare(paper: list[dict], ours: list[dict], our_rank: dict[int, int]) -> dict:
    """The paper's list against ours, by token id.

    paper: rows of `paper_token_ids`; ours: our function tokens (rows {id, token, rank, fraction, ...});
    our_rank: the 1-based rank of every token id we saw (function tokens or not)."""
    from scipy import stats

    usable = [r for r in paper if r["id"] is not None and r["duplicate_of"] is None]
    p_ids = {r["id"] for r in usable}
    sure_ids = {r["id"] for r in usable if r["sure"]}
    o_ids = {r["id"] for r in ours}
    by_ours = {r["id"]: r for r in ours}
    shared = p_ids & o_ids
    rows = []
    for r in paper:
        tid = r["id"]
        rows.append(
            {
                "paper_rank": r["rank"],
                "token": r["token"],
                "sure": r["sure"],
                "paper_fraction": r["fraction"],
                "id": tid,
                "our_rank": our_rank.get(tid) if tid is not None else None,
                "in_ours": tid in o_ids if tid is not None else False,
                "our_fraction": by_ours[tid]["fraction"] if tid in by_ours else None,
                "status": (
                    "unknown token"
                    if not r["token"]
                    else "not one token"
                    if tid is None
                    else f"repeats rank {r['duplicate_of']}"
                    if r["duplicate_of"]
                    else "shared"
                    if tid in o_ids
                    else "paper only"
                ),
            }
        )
    only_ours = [
        {"id": r["id"], "token": r["token"], "our_rank": r["rank"], "our_fraction": r["fraction"]}
        for r in sorted(ours, key=lambda r: r["rank"])
        if r["id"] not in p_ids
    ]
    pf = {r["id"]: r["fraction"] for r in usable}
    sh = sorted(shared)
    rho = (
        float(stats.spearmanr([pf[i] for i in sh], [by_ours[i]["fraction"] for i in sh]).statistic)
        if len(sh) >= 3
        else float("nan")
    )
    return {
        "n_paper_rows": len(paper),
        "n_paper_tokens": len(p_ids),
        "n_paper_sure": len(sure_ids),
        "n_ours": len(o_ids),
        "n_shared": len(shared),
        "jaccard": len(shared) / len(p_ids | o_ids) if p_ids | o_ids else float("nan"),
        "sure_share_in_ours": len(sure_ids & o_ids) / len(sure_ids) if sure_ids else float("nan"),
        "spearman_shared_fractions": rho,
        "rows": rows,
        "only_ours": only_ours,
    }


def rank_biased_overlap(a: list, b: list, p: float = 0.98) -> float:
    """Extrapolated rank-biased overlap of two rankings of equal length (Webber, Moffat and Zobel 2010,
    eq. 32): 1 for the same list in the same order, 0 for disjoint lists; rank d weighs p^(d-1), so with
    p = 0.98 the comparison looks about 1 / (1 - p) = 50 ranks deep."""
    if len(a) != len(b) or not a:
        raise ValueError(f"rank_biased_overlap: needs two non-empty lists of equal length, got {len(a)} and {len(b)}")
    seen_a: set = set()
    seen_b: set = set()
    overlap, total = 0, 0.0
    for d, (x, y) in enumerate(zip(a, b), start=1):
        overlap += (x in seen_b) + (y in seen_a) + (x == y)
        seen_a.add(x)
        seen_b.add(y)
        total += overlap / d * p**d
    k = len(a)
    return float(overlap / k * p**k + (1 - p) / p * total)


def equal_size(paper: list[dict], our_rank: dict[int, int], p: float = 0.98) -> dict:
    """The paper's usable tokens (one Llama-3 token each, known, not repeated; paper order) against our
    as many most frequent tokens: {n, n_shared, jaccard, rbo, rbo_p}. Equal sizes compare like with
    like: our coverage-threshold list may be much shorter than the paper's."""
    ids = [r["id"] for r in paper if r["id"] is not None and r["duplicate_of"] is None]
    ours = [t for t, _ in sorted(our_rank.items(), key=lambda kv: kv[1])][: len(ids)]
    ids = ids[: len(ours)]  # a sample with fewer distinct tokens than the paper's list
    shared = len(set(ids) & set(ours))
    union = len(set(ids) | set(ours))
    return {
        "n": len(ids),
        "n_shared": shared,
        "jaccard": shared / union if union else float("nan"),
        "rbo": rank_biased_overlap(ids, ours, p) if ids else float("nan"),
        "rbo_p": p,
    }


def top_overlap(paper: list[dict], our_rank: dict[int, int], n: int = 15) -> dict:
    """How many of the paper's top-n (sure, single-token) ids are in our top n."""
    p = [r["id"] for r in paper[:n] if r["id"] is not None and r["sure"] and r["duplicate_of"] is None]
    return {"n": n, "paper_top": len(p), "in_our_top": sum(our_rank.get(i, n + 1) <= n for i in p)}


def symbol_like(token: str) -> bool:
    """Digits, symbols and markup (no letters): in SlimPajama these come mostly from code and web markup."""
    return bool(token.strip()) and not any(ch.isalpha() for ch in token)


def our_ranks(tc: TokenCounts) -> dict[int, int]:
    """1-based rank of every token id seen (TokenCounts.ranking: by count, ties by lower id)."""
    order = tc.ranking()
    order = order[tc.counts[order] > 0]
    return {int(t): i + 1 for i, t in enumerate(order)}
