"""Configs, presets, validation, and the notebook `parameters` cells that mirror the configs."""

from __future__ import annotations

import ast
import dataclasses
import json

import pytest

from functok import config
from functok.config import ParamError


def parameters_cell(chapter: str) -> dict:
    """name -> literal value of the notebook's `parameters` cell."""
    from functok.book import chapter_source

    nb = json.loads(chapter_source(chapter).read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{chapter}: expected exactly one cell tagged 'parameters'"
    tree = ast.parse("".join(cells[0]["source"]))
    out = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign), f"{chapter}: parameters cell may only hold assignments"
        out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


@pytest.mark.parametrize("chapter", config.chapters())
def test_parameters_cell_mirrors_config(chapter):
    cell = parameters_cell(chapter)
    cls = config.CONFIGS[chapter]
    assert list(cell) == [f.name for f in dataclasses.fields(cls)], "names or order drifted"
    assert cell == config.defaults(cls), "default values drifted"


@pytest.mark.parametrize("chapter", config.chapters())
def test_every_field_has_one_line_help(chapter):
    for f in dataclasses.fields(config.CONFIGS[chapter]):
        help_ = f.metadata.get("help", "")
        assert help_ and "\n" not in help_, f"{chapter}.{f.name} needs a one-line help"


@pytest.mark.parametrize("preset", sorted(config.presets()))
def test_presets_fill_valid_configs(preset):
    p = config.load_preset(preset)
    for key in ("description", "cost", "needs"):
        assert key in p, f"preset {preset} lacks '{key}'"
    for chapter in list(config.chapters()) + ["pretrain"]:
        section = p.get(chapter) or {}
        known = {f.name for f in dataclasses.fields(config.ALL_CONFIGS[chapter])}
        assert set(section) <= known, f"{preset}.{chapter}: unknown keys {set(section) - known}"
        hub = [v for v in section.values() for v in (v if isinstance(v, list) else [v])
               if isinstance(v, str) and "/" in v]
        if not hub:  # hub names (also inside lists) need the internet
            cfg = config.resolve(chapter, preset)
            for k, v in section.items():
                assert getattr(cfg, k) == v


def test_toc_lists_every_chapter():
    import yaml

    toc = yaml.safe_load((config.ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert [f for f in files if f.startswith("book/chapters/")] == [f"book/chapters/{c}" for c in config.chapters()]
    assert "book/scorecard" in files


@pytest.mark.parametrize("values, fragment", [
    ({"coverage_treshold": 0.3}, "did you mean 'coverage_threshold'"),
    ({"coverage_threshold": 1.5}, "between 0.01 and 0.99"),
    ({"coverage_threshold": "high"}, "expected float"),
    ({"top_n": 2.5}, "expected int"),
    ({"top_n": True}, "expected int"),
    ({"tokenizers": "gpt2"}, "expected list"),
    ({"sweep_thresholds": [0.2, 2]}, "between 0 and 1"),
    ({"corpus": "./no/such/folder"}, "does not exist"),
    ({"corpus": "cerebras/SlimPajama-627B:validation"}, "offline"),
    ({"tokenizers": ["meta-llama/Llama-3.1-8B"]}, "would be downloaded"),
    ({"preset": "smok"}, "did you mean 'smoke'"),
])
def test_bad_input_is_one_line_naming_the_parameter(values, fragment, monkeypatch):
    monkeypatch.delenv("FUNCTOK_ONLINE", raising=False)
    with pytest.raises(ParamError) as e:
        config.validate(config.FunctionTokensConfig, values)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(next(iter(values)) + ":")
    assert fragment in msg


def test_ints_are_accepted_for_floats_and_preset_overrides_apply():
    cfg = config.resolve("function_tokens", "smoke", {"coverage_threshold": 1 / 2, "n_bins": 7})
    assert cfg.coverage_threshold == 0.5 and cfg.n_bins == 7
    assert cfg.max_documents == config.load_preset("smoke")["function_tokens"]["max_documents"]
    lr = config.validate(config.PretrainConfig, {"lr": 1}).lr  # papermill/YAML give ints for whole floats
    assert lr == 1.0 and isinstance(lr, float)


def test_local_corpus_folder_validates(text_folder):
    cfg = config.validate(config.FunctionTokensConfig, {"corpus": str(text_folder)})
    assert cfg.corpus == str(text_folder)


def test_from_notebook_runs_the_same_checks():
    ns = config.defaults(config.FunctionTokensConfig) | {"n_bins": 1}
    with pytest.raises(ParamError, match="^n_bins:"):
        config.from_notebook("function_tokens", ns)
