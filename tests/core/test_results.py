"""Results files: schema, atomic write, provenance, reproduce command."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from functok.chapters import registry
from functok.core import results


def test_write_produces_the_documented_schema(tmp_path):
    cfg = registry.resolve("function_tokens", "smoke", {"out_dir": str(tmp_path), "n_bins": 7, "seed": 3})
    run = results.Run(cfg)
    c = results.claim("x", "a statement", 0.2258, 0.25, "holds", "why")
    path = run.write(results.ChapterResult({"n": 1}, [c], {"tokens": "somewhere"}, {"model": tmp_path / "ckpt"}))
    doc = json.loads(path.read_text())
    assert path == tmp_path / "function_tokens.json"
    assert set(doc) == {"chapter", "params", "results", "claims", "preconditions", "provenance"}
    assert doc["chapter"] == "function_tokens"
    assert doc["params"]["n_bins"] == 7 and doc["params"]["seed"] == 3
    prov = doc["provenance"]
    for key in ("git_commit", "versions", "seed", "started", "seconds", "data", "artifacts", "command"):
        assert key in prov
    assert prov["seed"] == 3 and prov["versions"]["torch"].startswith("2.")
    assert "-p n_bins 7" in prov["command"] and "--preset smoke" in prov["command"]
    assert doc["claims"][0]["verdict"] == "holds"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], "temporary files left behind"


def test_claim_refuses_unknown_verdict():
    with pytest.raises(ValueError, match="verdict"):
        results.claim("x", "s", 1, 2, "mostly")


def test_atomic_write_keeps_the_old_file_when_serialization_fails(tmp_path):
    from functok.core.cache import write_json_atomic

    path = tmp_path / "r.json"
    write_json_atomic(path, {"ok": 1})

    class Boom:
        def __str__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_json_atomic(path, {"bad": Boom()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert sorted(os.listdir(tmp_path)) == ["r.json"]


def test_numbers_are_json_safe():
    import numpy as np

    c = results.claim("x", "s", np.float32(0.5), float("nan"), "inconclusive")
    assert c["paper"] == 0.5 and isinstance(c["paper"], float) and c["ours"] is None


def test_reproduce_command_lists_only_changed_parameters():
    cfg = registry.resolve("function_tokens", "embedded", {"tokenizers": ["gpt2"], "top_n": 20})
    cmd = results.reproduce_command(cfg)
    assert cmd.startswith("functok run function_tokens --preset embedded")
    assert "-p top_n 20" in cmd and "-p tokenizers '[\"gpt2\"]'" in cmd
    assert "n_bins" not in cmd
    from functok.book.cli import parse_value

    assert parse_value('["gpt2"]') == ["gpt2"]


@pytest.mark.parametrize(
    "ours",
    [float("nan"), float("inf"), None, "R2 = nan, slope 0.10", "L4: 48.5%, L9: nan%", "CV inf vs 1.20", [0.5, np.nan]],
)
def test_undefined_measurement_makes_a_claim_inconclusive(ours):
    c = results.claim("x", "a statement", 0.5, ours, "holds", "holds if above 0.4")
    assert c["verdict"] == "inconclusive"
    assert c["note"].startswith("holds if above 0.4; inconclusive: the measured value is undefined")


@pytest.mark.parametrize("ours", [0.25, "information flows to 12 infinitives", "0.70 (15 of 20 tokens)", [1, 2]])
def test_defined_measurement_keeps_its_verdict(ours):
    c = results.claim("x", "a statement", 0.5, ours, "fails", "why")
    assert c["verdict"] == "fails" and c["note"] == "why"


def test_reproduce_command_round_trips_a_path_with_a_quote(tmp_path):
    import shlex

    from functok.book.cli import _overrides, build_parser

    folder = tmp_path / 'it\'s a "corpus" $HOME'
    folder.mkdir()
    (folder / "a.txt").write_text("The cat sat on the mat.")
    cfg = registry.resolve("function_tokens", "smoke", {"corpus": str(folder), "burst_tokens": [" it's", " of"]})
    argv = shlex.split(results.reproduce_command(cfg))
    assert argv[:2] == ["functok", "run"]
    args = build_parser().parse_args(argv[1:])
    assert registry.resolve(args.chapter, args.preset, _overrides(args.param)) == cfg


def test_claims_over_seeds_agree_or_are_fragile():
    from functok.core.results import claim, over_seeds

    def scored(a: str, b: str, ours: float) -> list[dict]:
        return [claim("a", "A", 1, ours, a, "rule: r"), claim("b", "B", 1, ours, b, "rule: r")]

    out = over_seeds(
        {0: scored("holds", "fails", 0.7), 1: scored("holds", "holds", 0.8), 2: scored("holds", "fails", 0.6)}
    )
    a, b = out
    assert a["verdict"] == "holds" and a["per_seed"] == {"0": "holds", "1": "holds", "2": "holds"}
    assert a["ours"] == 0.7 and "the seeds agree" in a["note"] and "seed 1: holds (0.8)" in a["note"]
    assert b["verdict"] == "fragile" and b["per_seed"] == {"0": "fails", "1": "holds", "2": "fails"}
    assert "fragile, the seeds disagree" in b["note"]
    # one seed: its verdict, with per_seed, and the note untouched
    [one] = over_seeds({5: scored("inconclusive", "holds", 0.1)[:1]})
    assert one["verdict"] == "inconclusive" and one["per_seed"] == {"5": "inconclusive"} and one["note"] == "rule: r"
    # a claim a seed did not make is inconclusive there
    [c, _] = over_seeds({0: scored("holds", "holds", 1.0), 1: scored("holds", "holds", 1.0)[1:]})
    assert c["per_seed"] == {"0": "holds", "1": "inconclusive"} and c["verdict"] == "fragile"
