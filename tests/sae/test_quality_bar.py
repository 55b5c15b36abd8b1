"""The SAE quality bar: each threshold, checked on its own and at its edge."""

from __future__ import annotations

import math

import pytest

from functok.sae.quality import QUALITY_BAR, quality_failures

GOOD = {"l0": 15.0, "d_sae": 2048, "explained_variance": 0.8, "ce_score": 0.9, "alive": 0.95}


def test_a_good_sae_meets_the_bar():
    assert quality_failures(**GOOD) == []


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"l0": 150.0, "d_sae": 65536}, "L0 150.0"),
        ({"l0": 30.0}, "density L0/d_sae 1.46%"),
        ({"explained_variance": 0.69}, "explained variance 0.690"),
        ({"ce_score": 0.5}, "CE score 0.500"),
        ({"alive": 0.14}, "alive features 14.0%"),
        ({"ce_score": math.nan}, "CE score nan"),
        ({"alive": None}, "alive features not measured"),
    ],
)
def test_each_threshold_fails_alone(change, reason):
    got = quality_failures(**(GOOD | change))
    assert len(got) == 1 and got[0].startswith(reason)


def test_the_edges_pass():
    edge = {
        "l0": QUALITY_BAR["max_density"] * 2048,
        "d_sae": 2048,
        "explained_variance": QUALITY_BAR["min_explained_variance"],
        "ce_score": QUALITY_BAR["min_ce_score"],
        "alive": QUALITY_BAR["min_alive"],
    }
    assert quality_failures(**edge) == []


def test_evaluations_of_cached_saes_are_kept_and_others_are_not(tmp_cache, tmp_path, monkeypatch):
    from functok.sae import quality

    calls = []
    monkeypatch.setattr(
        quality, "evaluate_sae", lambda sae, ck, win, n=None, m=None, b=8: calls.append(sae) or {"l0": len(calls)}
    )
    sae, win, outside = tmp_cache / "saes" / "abc", tmp_cache / "windows" / "w.npy", tmp_path / "my_sae"
    for p in (sae, outside, win.parent):
        p.mkdir(parents=True)
    assert quality.evaluate_sae_cached(sae, "ck", win, 32) == {"l0": 1}
    assert quality.evaluate_sae_cached(sae, "ck", win, 32) == {"l0": 1}  # read back: not evaluated again
    assert quality.evaluate_sae_cached(sae, "ck", win, 64) == {"l0": 2}  # other windows: another entry
    assert quality.evaluate_sae_cached(outside, "ck", win, 32) == {"l0": 3}  # a user's SAE may change in place
    assert quality.evaluate_sae_cached(outside, "ck", win, 32) == {"l0": 4}
    assert len(list((tmp_cache / "sae_evals").glob("*/result.json"))) == 2
