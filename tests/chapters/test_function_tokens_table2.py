"""The paper's Table 2 as data, the Llama-3 tokenizer from its wheel, and the comparison of two lists."""

from __future__ import annotations

import json

import numpy as np
import pytest

from functok.chapters.function_tokens import table2 as T
from functok.world.function_tokens import TokenCounts


def test_table2_is_the_papers_122_rows():
    rows = T.load_table2()
    assert [r["rank"] for r in rows] == list(range(1, 123))
    raw = [ln.split("\t") for ln in T.TABLE2.read_text().splitlines() if ln and not ln.startswith(("#", "rank"))]
    assert sum(r["token"] == "" for r in rows) == sum(f[1] in ("", '""') for f in raw)
    assert sum(not r["sure"] for r in rows) == sum(f[2] == "no" for f in raw)
    assert rows[0]["token"] == "," and rows[1]["token"] == " the" and rows[9]["token"] == "\n"
    cum = [r["cumulative"] for r in rows]
    assert cum == sorted(cum) and 0.39 < cum[-1] < 0.41  # the 40% rule
    assert T.TABLE2.read_text().startswith("# Source:")


@pytest.fixture(scope="module")
def llama3():
    from functok.world.tokenizers import load_tokenizer

    return load_tokenizer("llama3")


def test_llama3_tokenizer_encodes_as_llama3(llama3):
    """Known Llama-3 ids (the model card's tokenizer): a sentence, ' the' as one token, digits in runs of
    at most three, and the 256 special tokens above the 128,000 BPE ids."""
    assert llama3.encode("The quick brown fox", add_special_tokens=False) == [791, 4062, 14198, 39935]
    assert llama3.encode(" the", add_special_tokens=False) == [279]
    assert llama3.tokenize("1234567") == ["123", "456", "7"]
    assert llama3.bos_token == "<|begin_of_text|>" and llama3.convert_tokens_to_ids("<|begin_of_text|>") == 128000


class FakeTok:
    """Whole strings as tokens: a string is one token if it is in the vocabulary."""

    def __init__(self, vocab: list[str]):
        self.ids = {t: i for i, t in enumerate(vocab)}

    def encode(self, text, add_special_tokens=False):
        return [self.ids[text]] if text in self.ids else [0, 0]


def test_comparison_against_brute_force():
    vocab = ["<unk>", "a", "b", "c", "d", "e", "f", "g", "h"]
    tok = FakeTok(vocab)
    paper_rows = [
        {"rank": 1, "token": "a", "sure": True, "fraction": 0.10},
        {"rank": 2, "token": "b", "sure": True, "fraction": 0.08},
        {"rank": 3, "token": "zz", "sure": True, "fraction": 0.07},  # not one token here
        {"rank": 4, "token": "c", "sure": False, "fraction": 0.06},
        {"rank": 5, "token": "", "sure": False, "fraction": 0.05},  # unknown
        {"rank": 6, "token": "a", "sure": False, "fraction": 0.04},  # repeats rank 1
        {"rank": 7, "token": "d", "sure": True, "fraction": 0.03},
        {"rank": 8, "token": "e", "sure": True, "fraction": 0.02},
    ]
    paper = T.paper_token_ids(paper_rows, tok)
    counts = np.array([0, 50, 10, 40, 0, 30, 20, 5, 0])  # ours ranks: a, c, e, f, b, g
    tc = TokenCounts(counts, counts, 10, int(counts.sum()))
    ranks = T.our_ranks(tc)
    ours = [{"id": i, "token": vocab[i], "rank": ranks[i], "fraction": counts[i] / counts.sum()} for i in (1, 3, 5, 6)]
    got = T.compare(paper, ours, ranks)
    # brute force on strings
    p = {"a", "b", "c", "d", "e"}  # single-token, first occurrence
    sure = {"a", "b", "d", "e"}
    o = {"a", "c", "e", "f"}
    assert got["n_shared"] == len(p & o) == 3
    assert got["jaccard"] == pytest.approx(len(p & o) / len(p | o))
    assert got["sure_share_in_ours"] == pytest.approx(len(sure & o) / len(sure))
    assert [r["token"] for r in got["only_ours"]] == ["f"]
    status = {r["paper_rank"]: r["status"] for r in got["rows"]}
    assert status == {
        1: "shared",
        2: "paper only",
        3: "not one token",
        4: "shared",
        5: "unknown token",
        6: "repeats rank 1",
        7: "paper only",
        8: "shared",
    }
    assert {r["token"]: r["our_rank"] for r in got["rows"] if r["id"]} == {"a": 1, "b": 5, "c": 2, "d": None, "e": 3}
    # paper order a > c > e; ours a (50) > c (40) > e (30): the same order
    assert got["spearman_shared_fractions"] == pytest.approx(1.0)
    assert T.top_overlap(paper, ranks, 2) == {"n": 2, "paper_top": 2, "in_our_top": 1}  # a yes, b (rank 5) no
    assert T.symbol_like("{") and T.symbol_like(" 1") and not T.symbol_like(" the") and not T.symbol_like(" ")
    json.dumps(got)  # the results file can hold it


def test_rank_biased_overlap_known_values():
    """Identical lists 1, disjoint 0, and eq. 32 of Webber et al. by hand: [1, 2] vs [2, 1] at p = 0.5 has
    agreement 0 at depth 1 and 1 at depth 2, so RBO_ext = 1 * 0.25 + (0.5 / 0.5) * (0 * 0.5 + 1 * 0.25) = 0.5."""
    assert T.rank_biased_overlap([1, 2, 3], [1, 2, 3], 0.9) == pytest.approx(1.0)
    assert T.rank_biased_overlap([1, 2, 3], [4, 5, 6], 0.9) == 0.0
    assert T.rank_biased_overlap([1, 2], [2, 1], 0.5) == pytest.approx(0.5)
    # swapping the top pair costs more than swapping the bottom pair: the measure is top-weighted
    top = T.rank_biased_overlap([1, 2, 3, 4], [2, 1, 3, 4], 0.9)
    bottom = T.rank_biased_overlap([1, 2, 3, 4], [1, 2, 4, 3], 0.9)
    assert top < bottom < 1.0
    with pytest.raises(ValueError, match="equal length"):
        T.rank_biased_overlap([1], [1, 2])


def test_equal_size_compares_as_many_of_our_top_tokens():
    vocab = ["<unk>", "a", "b", "c", "d", "e", "f"]
    tok = FakeTok(vocab)
    rows = [{"rank": i + 1, "token": t, "sure": True, "fraction": 0.1} for i, t in enumerate(["a", "b", "zz", "d"])]
    paper = T.paper_token_ids(rows, tok)  # usable: a, b, d (zz is not one token)
    our_rank = {1: 1, 3: 2, 4: 3, 5: 4, 2: 5}  # a, c, d, e, b
    got = T.equal_size(paper, our_rank)
    assert got["n"] == 3 and got["n_shared"] == 2  # {a, b, d} vs our top 3 {a, c, d}
    assert got["jaccard"] == pytest.approx(2 / 4)
    assert got["rbo"] == pytest.approx(T.rank_biased_overlap([1, 2, 4], [1, 3, 4], got["rbo_p"]))


def test_table2_row_12_is_the_double_newline_and_is_compared(llama3):
    """Row 12 is coded "\\n\\n" (its note: the PDF's second newline token), one Llama-3 token that repeats no
    earlier row, so it is compared rather than dropped."""
    rows = T.paper_token_ids(T.load_table2(), llama3)
    r12 = next(r for r in rows if r["rank"] == 12)
    assert r12["token"] == "\n\n" and r12["id"] is not None and r12["duplicate_of"] is None
