"""Each chapter's live form (functok/chapters/<chapter>/live.py): its views read only cheap fields and
every cheap field is redrawn by some view; the forms redraw from real measurements (chapter 1 on a tiny
corpus, chapter 5's claims on planted measurements)."""

from __future__ import annotations

import importlib
import re
from html import escape

import matplotlib
import numpy as np
import pytest
from tiny import tiny_preset

from functok.book.live import form as live_form
from functok.chapters.common import show_token
from functok.chapters.function_tokens.config import FunctionTokensConfig
from functok.chapters.registry import BOOK_ORDER, resolve
from functok.core.config import cheap_fields
from functok.core.results import ChapterResult

matplotlib.use("agg")


@pytest.mark.parametrize("chapter", BOOK_ORDER)
def test_views_redraw_exactly_the_cheap_fields(chapter):
    live = importlib.import_module(f"functok.chapters.{chapter}.live")
    cheap = set(cheap_fields(resolve(chapter).__class__))
    read = {f for v in live.VIEWS for f in v.fields}
    assert read <= cheap, f"views read expensive fields: {read - cheap}"
    assert cheap <= read, f"cheap fields no view redraws (a change would show nothing): {cheap - read}"
    assert callable(live.parts) and set(live.parts.__code__.co_varnames[:2]) == {"cfg", "analysis"}


def _planted(precision: float) -> dict:
    """Chapter 5's measurements for two concepts whose features have this precision."""
    concept = {
        "precision": precision,
        "n_occurrences": 500,
        "p_fire_on_concept": 0.9,  # 450 firings on the concept: precision 0.7 has a 95% lower bound of 0.66
        "unsteered": {"contexts": 10, "predicted": 3},
        "reactivation": {"fn_ratio": 3.0, "fn_after_rate": 0.3, "fn_base_rate": 0.1, "ct_after_rate": 0.2},
        "steering_success": {"0": 0.0, "4": 0.9},
        "steering_logprob": {"0": -5.0, "4": -1.0},
        "steering_counts": {"last": {"0": [0, 45], "4": [40, 45]}},
    }
    return {"concepts": {" A": dict(concept), " B": dict(concept)}, "alphas": [0, 4]}


def verdicts(html: str) -> set[str]:
    return set(re.findall(r"<td[^>]*>(holds|fails|inconclusive)</td>", html))


def test_reactivation_rejudges_its_claims_when_the_precision_bar_moves():
    from functok.chapters.reactivation.claims import make_claims

    cfg = resolve("reactivation", "embedded", {"min_precision": 0.5})
    res = _planted(0.7)
    form = live_form(cfg, ChapterResult(res, make_claims(res, cfg), {}, {}), runner=pytest.fail)
    form.set("min_precision", 0.8)  # above both features' precision: no concept can be judged
    (html,) = [o["data"]["text/html"] for o in form.outputs["What holds"].outputs if "text/html" in o["data"]]
    assert verdicts(html) == {"inconclusive"}
    form.set("min_precision", 0.6)
    (html,) = [o["data"]["text/html"] for o in form.outputs["What holds"].outputs if "text/html" in o["data"]]
    assert "holds" in verdicts(html)
    form.set("min_precision", 1.5)  # refused: the outputs stay
    assert form.status.value.startswith("min_precision: got 1.5") and "holds" in verdicts(html)


@pytest.fixture(scope="module")
def tiny_run():
    """Chapter 1 on a tiny corpus with its own BPE tokenizer."""
    from functok.chapters.function_tokens import analysis as ft

    with tiny_preset():
        cfg = FunctionTokensConfig(preset="tiny", tokenizers=["embedded"], burst_tokens=[" the", " of"])
        yield cfg, ft.analyze(cfg)


def test_function_tokens_redraws_fig2b_and_fig3_from_the_run(tiny_run):

    cfg, analysis = tiny_run
    p = analysis.detail["per_tokenizer"]["embedded"]
    flat, _ = p["_flat"]
    counts = np.bincount(flat)  # the tokens of the run, counted here again
    top3 = [p["_tok"].decode([int(i)]) for i in np.argsort(-counts, kind="stable")[:3]]
    form = live_form(cfg, analysis, runner=pytest.fail)
    form.set("top_n", 3)
    (html,) = [
        o["data"]["text/html"]
        for o in form.outputs["Fig 2b: the most frequent tokens"].outputs[1:]
        if "text/html" in o["data"]
    ]
    ranks = re.findall(r'class="row_heading level0 row\d+"\s*>(\d+)</th>', html)
    tokens = re.findall(r'class="data row\d+ col0"\s*>([^<]*)</td>', html)
    assert ranks == ["1", "2", "3"]
    assert tokens == [escape(show_token(t)) for t in top3]
    fig3 = "Fig 3: function tokens are everywhere, content tokens are bursty"
    assert form.outputs[fig3].outputs == ()
    form.set("n_bins", 4)
    kinds = [next(iter(o["data"])) for o in form.outputs[fig3].outputs]
    assert kinds.count("image/png") == 1 and "text/html" in kinds
    form.set("coverage_threshold", 0.5)  # expensive: the command, no redraw
    assert "-p coverage_threshold 0.5" in form.command.value and not form.run_button.disabled
