"""The site's feature cards from a results file: one page per run, a card per feature with its anchor, the
highlighted contexts (HTML-escaped), the histogram image and the logit lens; runs without cards get no page."""

from __future__ import annotations

import json

from functok.book import cards


def _results(folder, label_cards):
    folder.mkdir(parents=True, exist_ok=True)
    card = {
        "feature": 12,
        "layer": 9,
        "sae": "s",
        "density": 0.002,
        "n_positions": 5000,
        "histogram": {"log10_edges": [-1.0, 0.0, 1.0], "counts": [3, 7]},
        "contexts": [
            {
                "window": 0,
                "position": 3,
                "activation": 4.5,
                "before": "the <capital> of",
                "token": " Russia",
                "after": " is",
            }
        ],  # fmt: skip
        "logit_lens": [{"token": " Moscow", "logit": 3.2}],
        "precision": 0.8,
        "precision_interval": [0.6, 0.9],
        "n_occurrences": 60,
    }
    res = {"model": "m", "layer": 9, "hook_name": "blocks.9.hook_resid_post", "sae": "s", "d_sae": 5120,
           "n_windows": 782, "feature_cards": {" Russia": card} if label_cards else {}}  # fmt: skip
    (folder / "reactivation.json").write_text(json.dumps({"results": res}))


def test_cards_pages_per_run(tmp_path):
    results = tmp_path / "book" / "chapters"
    _results(results, True)
    _results(results / "gemma-3-270m", True)
    _results(results / "smollm2", False)
    entries = cards.write_cards(results, tmp_path / "book")
    assert entries == ["book/cards/embedded", "book/cards/gemma-3-270m"]
    md = (tmp_path / "book" / "cards" / "gemma-3-270m.md").read_text()
    assert "(feature-12)=" in md and "## 'Russia': feature 12" in md
    assert "the &lt;capital&gt; of<mark><b> Russia</b></mark> is" in md  # escaped, the token highlighted
    assert "'Russia': episode precision 0.800 [95% 0.600, 0.900] over 60 occurrences" in md and "Moscow" in md
    assert (tmp_path / "book" / "cards" / "gemma-3-270m-12.png").stat().st_size > 1000


def test_depth_scan_cards_get_their_own_anchor_and_image(tmp_path):
    results = tmp_path / "book" / "chapters"
    _results(results, True)
    doc = json.loads((results / "reactivation.json").read_text())
    card = {**doc["results"]["feature_cards"][" Russia"], "feature": 12, "layer": 4}  # the same id at layer 4
    doc["results"]["depth_scan"] = {"4": {"feature_cards": {" Russia": card}}}
    (results / "reactivation.json").write_text(json.dumps(doc))
    cards.write_cards(results, tmp_path / "book")
    md = (tmp_path / "book" / "cards" / "embedded.md").read_text()
    assert "(feature-12)=" in md and "(layer-4-feature-12)=" in md and "## 'Russia': layer 4, feature 12" in md
    assert (tmp_path / "book" / "cards" / "embedded-L4-12.png").stat().st_size > 1000
    assert "depth scan" in md


def test_concepts_that_select_the_same_feature_share_one_card(tmp_path):
    """Two concepts may select one feature (Gemma-3's layer 11 did: Russia and China): one card, one anchor (the
    site build treats a duplicate anchor as an error), with each concept's own precision."""
    results = tmp_path / "book" / "chapters"
    _results(results, True)
    doc = json.loads((results / "reactivation.json").read_text())
    russia = doc["results"]["feature_cards"][" Russia"]
    doc["results"]["feature_cards"][" China"] = {**russia, "precision": 0.25, "n_occurrences": 40}
    (results / "reactivation.json").write_text(json.dumps(doc))
    cards.write_cards(results, tmp_path / "book")
    md = (tmp_path / "book" / "cards" / "embedded.md").read_text()
    assert md.count("(feature-12)=") == 1 and "## 'Russia', 'China': feature 12" in md
    assert "'Russia': episode precision 0.800" in md and "'China': episode precision 0.250" in md
