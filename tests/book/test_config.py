"""Configs, presets and validation."""

from __future__ import annotations

import dataclasses

import pytest

from functok.book import config, registry
from functok.book.config import ParamError


@pytest.mark.parametrize("preset", sorted(config.presets()))
def test_presets_fill_valid_configs(preset):
    p = config.load_preset(preset)
    for key in ("description", "cost", "needs"):
        assert key in p, f"preset {preset} lacks '{key}'"
    for chapter in list(registry.chapters()) + ["pretrain"]:
        section = p.get(chapter) or {}
        known = {f.name for f in dataclasses.fields(registry.ALL_CONFIGS[chapter])}
        assert set(section) <= known, f"{preset}.{chapter}: unknown keys {set(section) - known}"
        hub = [
            v for v in section.values() for v in (v if isinstance(v, list) else [v]) if isinstance(v, str) and "/" in v
        ]
        if not hub:  # hub names (also inside lists) need the internet
            cfg = registry.resolve(chapter, preset)
            for k, v in section.items():
                assert getattr(cfg, k) == v


def test_ints_are_accepted_for_floats_and_preset_overrides_apply():
    cfg = registry.resolve("function_tokens", "smoke", {"coverage_threshold": 1 / 2, "n_bins": 7})
    assert cfg.coverage_threshold == 0.5 and cfg.n_bins == 7
    assert cfg.max_documents == config.load_preset("smoke")["function_tokens"]["max_documents"]
    lr = config.validate(config.PretrainConfig, {"lr": 1}).lr  # papermill/YAML give ints for whole floats
    assert lr == 1.0 and isinstance(lr, float)


def test_local_corpus_folder_validates(text_folder):
    cfg = config.validate(registry.FunctionTokensConfig, {"corpus": str(text_folder)})
    assert cfg.corpus == str(text_folder)


def test_from_notebook_runs_the_same_checks():
    ns = config.defaults(registry.FunctionTokensConfig) | {"n_bins": 1}
    with pytest.raises(ParamError, match="^n_bins:"):
        registry.from_notebook("function_tokens", ns)
