"""The coverage rule, streaming counts, the function-token file, and the chapter's statistics."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from functok.chapters.function_tokens import analysis
from functok.world import function_tokens as ft
from functok.world.closed_class import closed_class_words, word_class
from functok.world.tokenizers import gpt2_tokenizer


@pytest.fixture(scope="module")
def gpt2():
    return gpt2_tokenizer()


def brute_force_rule(counts, threshold):
    """The rule as the issue states it, written the slow obvious way."""
    order = sorted(range(len(counts)), key=lambda i: (-counts[i], i))
    total, cum, out = sum(counts), 0, []
    for i in order:
        if (cum + counts[i]) / total > threshold:
            break
        cum += counts[i]
        out.append(i)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_rule_matches_brute_force_including_ties(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 6, size=60)  # many ties
    for threshold in (0.1, 0.25, 0.4, 0.6):
        assert ft.select_function_tokens(counts, threshold).tolist() == brute_force_rule(counts.tolist(), threshold)


def test_rule_keeps_prefix_that_reaches_threshold_exactly():
    counts = np.array([4, 3, 2, 1])  # cumulative 0.4, 0.7, 0.9, 1.0
    assert ft.select_function_tokens(counts, 0.4).tolist() == [0]
    assert ft.select_function_tokens(counts, 0.39).tolist() == []


def test_counts_match_a_plain_counter_and_skip_special_tokens(gpt2):
    texts = ["The cat, the dog<|endoftext|> and the bird.", "Of the people, by the people.", "the"]
    tc = ft.count_tokens(gpt2, texts, batch_size=2, progress=False)
    expected, docs = Counter(), Counter()
    eos = gpt2.eos_token_id
    for t in texts:
        ids = [i for i in gpt2.encode(t, add_special_tokens=False) if i != eos]
        expected.update(ids)
        docs.update(set(ids))
    assert tc.counts[eos] == 0
    assert {i: int(c) for i, c in enumerate(tc.counts) if c} == dict(expected)
    assert {i: int(c) for i, c in enumerate(tc.doc_counts) if c} == dict(docs)
    assert tc.n_documents == 3 and tc.n_tokens == sum(expected.values())


def test_function_token_file_on_a_users_folder(text_folder, tmp_cache):
    import datasets

    path = ft.function_token_file("gpt2", str(text_folder), coverage_threshold=0.4)
    doc = json.loads(path.read_text())
    assert doc["n_documents"] == 4 and doc["tokenizer"] == "gpt2"
    rows = doc["function_tokens"]
    assert rows[0]["token"] == " the"
    assert rows[-1]["cumulative"] <= 0.4 and [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    # Anyone can recount from the saved token ids.
    tokens = datasets.load_from_disk(str(path.parent / "tokens"))
    recount = Counter(t for ids in tokens["input_ids"] for t in ids)
    assert all(recount[r["id"]] == r["count"] for r in rows)
    assert sum(recount.values()) == doc["n_tokens"]
    # Cached: the same call returns the same folder without rebuilding.
    mtime = path.stat().st_mtime_ns
    assert ft.function_token_file("gpt2", str(text_folder), coverage_threshold=0.4).stat().st_mtime_ns == mtime
    assert ft.function_token_file("gpt2", str(text_folder), coverage_threshold=0.3) != path


def test_zipf_fit_recovers_a_known_exponent():
    ranks = np.arange(1, 5001)
    counts = np.round(1e7 * ranks**-1.3).astype(np.int64)
    assert analysis.zipf_fit(counts, lo_rank=10, hi_rank=1000)["exponent"] == pytest.approx(1.3, abs=0.01)


def test_threshold_sweep_is_monotone():
    counts = np.random.default_rng(0).permutation((1e6 / np.arange(1, 2001)).astype(np.int64))
    n = [r["n_function_tokens"] for r in analysis.threshold_sweep(counts, [0.2, 0.4, 0.6])]
    assert n == sorted(n) and n[0] < n[-1]


def test_occurrences_by_bin(gpt2):
    docs = [[5, 7, 5], [1], [5, 2], [3, 3, 5, 5]]
    flat = np.array([t for d in docs for t in d])
    offsets = np.cumsum([0] + [len(d) for d in docs])
    b = analysis.occurrences_by_bin(flat, offsets, 5, 2, seed=None)
    assert b["bins"] == [2, 3] and b["tokens_per_bin"] == [4, 6]
    assert b["rate_per_1k"] == pytest.approx([500, 500]) and b["cv"] == pytest.approx(0)
    assert analysis.token_id(gpt2, " of") == gpt2.encode(" of")[0]
    with pytest.raises(ValueError, match="burst_tokens"):
        analysis.token_id(gpt2, " antidisestablishmentarianism")


def test_binning_shuffles_documents_first():
    """A token that lives in one half of a corpus stored source by source is bursty in corpus order;
    shuffled with a seed, the bins mix the sources and its rate evens out."""
    docs = [[5, 1, 1, 1]] * 200 + [[1, 1, 1, 1]] * 200  # token 5 only in the first source
    flat = np.array([t for d in docs for t in d])
    offsets = np.cumsum([0] + [len(d) for d in docs])
    ordered = analysis.occurrences_by_bin(flat, offsets, 5, 10, seed=None)
    shuffled = analysis.occurrences_by_bin(flat, offsets, 5, 10, seed=0)
    assert ordered["nonzero_bins"] == 5 and ordered["cv"] == pytest.approx(1.0)
    assert shuffled["nonzero_bins"] == 10 and shuffled["cv"] < 0.3
    assert sum(shuffled["bins"]) == sum(ordered["bins"]) == 200
    assert analysis.occurrences_by_bin(flat, offsets, 5, 10, seed=0) == shuffled  # seeded


@pytest.mark.parametrize(
    "token, cls",
    [
        (" the", "determiners"),
        (",", "punctuation/symbol"),
        ("\n", "punctuation/symbol"),
        (" Tokyo", "content"),
        (" Of", "prepositions"),
        ("1", "punctuation/symbol"),
        (" on", "prepositions"),
        (" no", "determiners"),
        ("it", "fragment"),  # the 'it' of 'split' is not the word ' it'
        ("on", "fragment"),
        ("The", "fragment"),  # a word glued to what precedes it, e.g. after a newline or a quote
    ],
)
def test_word_class(token, cls):
    assert word_class(token, closed_class_words()) == cls


def test_closed_class_list_holds_only_strings():
    """YAML reads bare on/off/no/yes as booleans; every entry must stay a word."""
    import yaml

    from functok.core.config import ROOT

    raw = yaml.safe_load((ROOT / "data" / "closed_class_words.yaml").read_text())
    assert all(isinstance(w, str) for words in raw.values() for w in words)


def test_function_token_file_follows_the_folders_content(text_folder, tmp_cache, tmp_path):
    """A re-run after a file was added to the corpus folder counts the new document; a local tokenizer
    folder enters the key by its files' content."""
    first = json.loads(ft.function_token_file("gpt2", str(text_folder)).read_text())
    assert first["n_documents"] == 4
    (text_folder / "e.txt").write_text("The fifth document of the folder, added after the first run.")
    path = ft.function_token_file("gpt2", str(text_folder))
    assert json.loads(path.read_text())["n_documents"] == 5
    assert ft.function_token_file("gpt2", str(text_folder) + "/") == path

    tok_dir = tmp_path / "tok"
    gpt2_tokenizer().save_pretrained(str(tok_dir))
    key = ft.function_token_params(str(tok_dir), str(text_folder))
    assert key["tokenizer"].startswith(str(tok_dir)) and ":tokenizer.json:" in key["tokenizer"]
    cfg = tok_dir / "tokenizer_config.json"
    cfg.write_text(cfg.read_text().replace("}", " }"))
    assert ft.function_token_params(str(tok_dir), str(text_folder))["tokenizer"] != key["tokenizer"]


def test_null_cv_matches_random_placement():
    """The burstiness baseline: occurrences dropped on random positions give about the analytic CV;
    a token that comes many times in few documents is far above it."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(500, 3000, size=40)
    count = 400
    cvs = []
    for _ in range(400):
        pos = rng.choice(tokens.sum(), size=count, replace=False)
        per_bin = np.histogram(pos, bins=np.concatenate([[0], np.cumsum(tokens)]))[0]
        rate = per_bin / tokens
        cvs.append(rate.std() / rate.mean())
    assert analysis.null_cv(tokens, count) == pytest.approx(np.mean(cvs), rel=0.1)
    docs = [[5] * 20 + [1] * 20] * 10 + [[1] * 40] * 240
    flat = np.array([t for d in docs for t in d])
    b = analysis.occurrences_by_bin(flat, np.cumsum([0] + [len(d) for d in docs]), 5, 10, seed=0)
    assert b["cv"] > 2 * b["cv_null"]
    assert np.isnan(analysis.null_cv(tokens, 0))


def test_expected_documents_matches_random_placement():
    """Church and Gale's baseline: occurrences on random positions reach about the analytic number of
    documents; a token packed into few documents reaches far fewer."""
    rng = np.random.default_rng(1)
    lengths = rng.integers(20, 400, size=300)
    count = 250
    hits = []
    for _ in range(300):
        pos = rng.choice(lengths.sum(), size=count, replace=False)
        hits.append((np.histogram(pos, bins=np.concatenate([[0], np.cumsum(lengths)]))[0] > 0).sum())
    assert analysis.expected_documents(lengths, count) == pytest.approx(np.mean(hits), rel=0.03)
    q = analysis.document_hit_probabilities(lengths, count)
    # the z-score's scale: independent documents overstate the spread of a fixed count, so z is conservative
    assert np.std(hits) <= np.sqrt((q * (1 - q)).sum()) <= 2 * np.std(hits)
    docs = [[5] * 20 + [1] * 20] * 10 + [[1] * 40] * 240
    flat = np.array([t for d in docs for t in d])
    b = analysis.occurrences_by_bin(flat, np.cumsum([0] + [len(d) for d in docs]), 5, 10, seed=0)
    assert b["documents"] == 10 and b["document_ratio"] < 0.1 and b["document_z"] < -3
    even = [[5] + [1] * 39] * 250
    flat = np.array([t for d in even for t in d])
    b = analysis.occurrences_by_bin(flat, np.cumsum([0] + [len(d) for d in even]), 5, 10, seed=0)
    assert b["document_ratio"] > 1 and b["document_z"] > 0  # one per document: more documents than chance


def test_burst_table_and_table2_paragraph_read_the_results():
    from functok.chapters.function_tokens import plots

    docs = [[5] * 20 + [1] * 20] * 10 + [[1] * 40] * 240
    flat = np.array([t for d in docs for t in d])
    b = analysis.occurrences_by_bin(flat, np.cumsum([0] + [len(d) for d in docs]), 5, 10, seed=0)
    df = plots.burst_table({"bursts": {" x": b, " y": {"error": "not one token"}}})
    assert list(df.index) == [" x"] and df.loc[" x", "documents"] == 10 and df.loc[" x", "occurrences"] == 200
    t = {"symbol_like_paper_only": ["{", "1"], "only_ours": [{"token": " their"}]}
    text = plots.table2_differences(t)
    assert "2 digit, symbol and markup tokens" in text and "1 tokens the paper's lacks" in text and "their" in text
