"""Configs, presets and validation."""

from __future__ import annotations

import dataclasses

import pytest

from functok.chapters import registry
from functok.chapters.function_tokens.config import FunctionTokensConfig
from functok.chapters.reactivation.config import ReactivationConfig
from functok.core import config
from functok.core.config import ParamError
from functok.world.config import PretrainConfig


@pytest.mark.parametrize("preset", sorted(config.presets()))
def test_presets_fill_valid_configs(preset):
    p = config.load_preset(preset)
    for key in ("description", "cost", "needs"):
        assert key in p, f"preset {preset} lacks '{key}'"
    for chapter in list(registry.chapters()) + ["pretrain"]:
        section = p.get(chapter) or {}
        known = {f.name for f in dataclasses.fields(registry.config_class(chapter))}
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
    lr = config.validate(PretrainConfig, {"lr": 1}).lr  # papermill/YAML give ints for whole floats
    assert lr == 1.0 and isinstance(lr, float)


def test_local_corpus_folder_validates(text_folder):
    cfg = config.validate(FunctionTokensConfig, {"corpus": str(text_folder)})
    assert cfg.corpus == str(text_folder)


def test_from_notebook_resolves_preset_and_overrides_like_the_cli():
    ns = {"preset": "smoke", "overrides": {"n_bins": 7}}
    assert registry.from_notebook("function_tokens", ns) == registry.resolve("function_tokens", "smoke", {"n_bins": 7})
    with pytest.raises(ParamError, match="^n_bins:"):
        registry.from_notebook("function_tokens", {"preset": "smoke", "overrides": {"n_bins": 1}})


@pytest.mark.parametrize(
    "ns, message",
    [
        ({"preset": "smok", "overrides": {}}, r"^preset: unknown preset 'smok' \(did you mean 'smoke'\?\)"),
        ({"preset": "smoke", "overrides": [("n_bins", 7)]}, "^overrides: got .*; expected a dict"),
        ({"preset": "smoke", "overrides": {"preset": "embedded"}}, "^overrides: 'preset' is no override"),
        ({"preset": 3, "overrides": {}}, "^preset: got 3; expected a preset name"),
    ],
)
def test_from_notebook_refuses_bad_preset_or_overrides_in_one_line(ns, message):
    with pytest.raises(ParamError, match=message):
        registry.from_notebook("function_tokens", ns)


def float_fields() -> list[tuple[str, str]]:
    return [
        (chapter, f.name)
        for chapter, cls in registry.all_configs().items()
        for f in dataclasses.fields(cls)
        if f.type in (float, "float")
    ]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_every_float_parameter_refuses_non_finite_numbers(value):
    assert float_fields(), "no float parameters found"
    for chapter, name in float_fields():
        with pytest.raises(ParamError, match=f"^{name}: .*finite"):
            config.validate(registry.config_class(chapter), {name: value})


def test_nan_inside_a_list_is_refused():
    with pytest.raises(ParamError, match="^sweep_thresholds: .*finite"):
        config.validate(FunctionTokensConfig, {"sweep_thresholds": [0.2, float("nan")]})


def test_empty_lists_are_refused_only_where_values_are_needed():
    needs = set()
    for chapter, cls in registry.all_configs().items():
        for f in dataclasses.fields(cls):
            if f.type not in (list, "list"):
                continue
            if f.metadata.get("min_items"):
                needs.add(f"{chapter}.{f.name}")
                with pytest.raises(ParamError, match=f"^{f.name}: got \\[\\]; expected at least"):
                    config.validate(cls, {f.name: []})
            elif f.metadata.get("kind") != "depths":
                assert getattr(config.validate(cls, {f.name: []}), f.name) == []  # [] means something here
    assert {
        "function_tokens.tokenizers",
        "function_tokens.burst_tokens",
        "function_tokens.sweep_thresholds",
        "loss_split.models",
        "loss_split.next_tokens",
        "feature_growth.checkpoint_fractions",
        "reactivation.concepts",
        "reactivation.trace_prompts",
        "reactivation.steer_prompts",
        "reactivation.alphas",
    } <= needs
    assert not needs & {
        "feature_coverage.layers",
        "feature_coverage.average_l0",
        "reactivation.features",
        "loss_split.checkpoint_index",
        "loss_split.checkpoint_steps",
        "feature_growth.checkpoint_steps",
    }


def test_burst_tokens_need_a_function_and_a_content_token():
    with pytest.raises(ParamError, match="^burst_tokens: .*at least 2 values"):
        config.validate(FunctionTokensConfig, {"burst_tokens": [" of"]})


@pytest.mark.parametrize("name", ["out_dir", "corpus"])
def test_empty_paths_are_refused(name):
    """'' is no folder: Path('') is the current folder, so an empty out_dir or corpus used to pass."""
    with pytest.raises(ParamError, match=f"^{name}: got ''"):
        config.validate(FunctionTokensConfig, {name: ""})


def test_empty_strings_in_lists_are_refused():
    with pytest.raises(ParamError, match="^concepts: .*non-empty strings"):
        config.validate(ReactivationConfig, {"concepts": [" Russia", ""]})


def corpus_case(tmp_path, case: str) -> str:
    d = tmp_path / "corpus"
    d.mkdir()
    if case == "csv only":
        (d / "docs.csv").write_text("text\nThe cat sat.\n")
    elif case == "folders only":
        (d / "a").mkdir()
        (d / "b.txt").mkdir()  # a folder named like a text file
    elif case == "glob of folders":
        (d / "a").mkdir()
        (d / "b").mkdir()
        return str(d / "*")
    elif case == "a csv file":
        (d / "docs.csv").write_text("text\nThe cat sat.\n")
        return str(d / "docs.csv")
    return str(d)


@pytest.mark.parametrize("case", ["csv only", "folders only", "empty", "glob of folders", "a csv file"])
def test_local_corpus_without_readable_files_is_refused(tmp_path, case):
    spec = corpus_case(tmp_path, case)
    with pytest.raises(ParamError, match="^corpus: .*holds no .txt, .jsonl or .parquet files") as e:
        config.validate(FunctionTokensConfig, {"corpus": spec})
    assert "\n" not in str(e.value)


def test_jsonl_without_text_field_is_refused(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "a", "body": "The cat sat."}\n{"id": "b", "body": "The dog sat."}\n')
    with pytest.raises(ParamError, match=r"^corpus: '.*docs\.jsonl' line 1 has no string field 'text'"):
        config.validate(PretrainConfig, {"corpus": str(path)})


def test_non_utf8_text_file_is_refused_naming_the_file(text_folder):
    (text_folder / "latin1.txt").write_bytes("Caf\xe9 au lait, na\xefve.".encode("latin-1"))
    with pytest.raises(ParamError, match=r"^corpus: '.*latin1\.txt' is not UTF-8 text \(byte 3\)"):
        config.validate(FunctionTokensConfig, {"corpus": str(text_folder)})


def test_from_notebook_refuses_unknown_names():
    """A misspelled override must not run on defaults: the same one-line refusal as a misspelled -p."""
    ns = {"preset": "smoke", "overrides": {"coverage_treshold": 0.3}}
    with pytest.raises(ParamError, match="^coverage_treshold: unknown parameter.*did you mean 'coverage_threshold'"):
        registry.from_notebook("function_tokens", ns)


def test_from_notebook_ignores_notebook_internals():
    ns = {"preset": "smoke", "overrides": {"n_bins": 7}}
    ns |= {"_": 1, "__name__": "__main__", "_oh": {}, "Out": {}, "exit": print, "np": dataclasses, "n_bins": 3}
    assert registry.from_notebook("function_tokens", ns).n_bins == 7  # outside IPython only the two names count


def test_from_notebook_in_ipython_checks_the_latest_parameters_cells():
    """In a kernel, the names the parameters cells assign count: an injected field name (papermill -p n_bins 7,
    or an old-style parameters cell) is refused, the variables later cells defined are not parameters when
    the notebook is run again in the same kernel."""
    params_cell = '# Parameters: a preset and the overrides\npreset = "embedded"\noverrides = {}\n'
    validation = 'cfg = from_notebook("function_tokens", globals())'
    injected = "# Parameters\npreset = 'smoke'\nn_bins = 7\n"
    bad = {"preset": "smoke", "overrides": {}, "n_bins": 7, "In": ["", params_cell, injected, validation]}
    with pytest.raises(ParamError, match="^n_bins: not a notebook parameter; expected only preset and overrides"):
        registry.from_notebook("function_tokens", bad)
    history = ["", params_cell, validation, "per = {}\nspec = 'gpt2'", params_cell, validation]
    rerun = {"preset": "smoke", "overrides": {}, "per": {}, "spec": "gpt2", "In": history}
    assert registry.from_notebook("function_tokens", rerun) == registry.resolve("function_tokens", "smoke")


def test_retune_gives_a_shared_field_group_new_defaults_and_keeps_its_help():
    """Chapter 4 inherits the SAE recipe chapter 2 uses and only changes its defaults."""
    from functok.chapters.feature_coverage.config import FeatureCoverageConfig
    from functok.chapters.feature_growth.config import FeatureGrowthConfig
    from functok.sae.config import SAERecipe

    fc, fg = config.field_help(FeatureCoverageConfig), config.field_help(FeatureGrowthConfig)
    for name in (f.name for f in dataclasses.fields(SAERecipe)):
        assert fc[name] == fg[name] == config.field_help(SAERecipe)[name], name
    assert config.defaults(FeatureGrowthConfig)["architecture"] == "jumprelu"
    assert config.defaults(FeatureCoverageConfig)["architecture"] == config.defaults(SAERecipe)["architecture"]
    with pytest.raises(TypeError, match="inherits no field 'sae_learning_rate'"):

        @dataclasses.dataclass
        @config.retune(sae_learning_rate=1.0)
        class Bad(SAERecipe, config.ChapterConfig):
            pass
