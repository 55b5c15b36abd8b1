"""The book's chapters: each chapter's registry entry (its typed config lives in
functok.book.chapter_configs), plus the embedded world's `PretrainConfig` (from functok.book.config);
`resolve` fills a config from defaults, a preset and overrides.

Adding a chapter: a config class in chapter_configs and a `Chapter` entry here, a notebook under
chapters/, a package under functok/chapters/, its paper numbers.
This module imports nothing heavy: validation must answer in well under a second.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from functok.book.chapter_configs import (
    FeatureCoverageConfig,
    FeatureGrowthConfig,
    FunctionTokensConfig,
    LossSplitConfig,
    ReactivationConfig,
)
from functok.book.config import ChapterConfig, ParamError, PretrainConfig, load_preset, notebook_values, validate

__all__ = [  # the configs are re-exported: callers import them from the registry
    "FeatureCoverageConfig",
    "FeatureGrowthConfig",
    "FunctionTokensConfig",
    "LossSplitConfig",
    "ReactivationConfig",
]


# ---------------------------------------------------------------------------------------------
# The registry: one entry per chapter, in book order. `_toc.yml` is generated from it (book/site.py).


@dataclass(frozen=True)
class Chapter:
    """One chapter of the book."""

    name: str  # the config's `chapter`, the results file's stem, the package under functok/chapters/
    title: str  # the notebook's first heading; the table of contents shows it
    config: type[ChapterConfig]
    notebook: str  # under chapters/, papermill-parameterized, committed without outputs


CHAPTERS: tuple[Chapter, ...] = (
    Chapter("function_tokens", "What is a function token?", FunctionTokensConfig, "01_function_tokens.ipynb"),
    Chapter(
        "feature_coverage",
        "A few function tokens activate most features",
        FeatureCoverageConfig,
        "02_feature_coverage.ipynb",
    ),
    Chapter("loss_split", "Function->content prediction dominates the loss", LossSplitConfig, "03_loss_split.ipynb"),
    Chapter(
        "feature_growth", "Learned features grow over pre-training", FeatureGrowthConfig, "04_feature_growth.ipynb"
    ),
    Chapter(
        "reactivation",
        "Function tokens re-activate features, and steering them works",
        ReactivationConfig,
        "05_reactivation.ipynb",
    ),
)
CONFIGS: dict[str, type[ChapterConfig]] = {c.name: c.config for c in CHAPTERS}
ALL_CONFIGS: dict[str, type[ChapterConfig]] = {**CONFIGS, "pretrain": PretrainConfig}


def chapters() -> list[str]:
    """The chapters, in book order."""
    return [c.name for c in CHAPTERS]


def chapter(name: str) -> Chapter:
    """The registry entry of a chapter (ParamError naming the known ones otherwise)."""
    for c in CHAPTERS:
        if c.name == name:
            return c
    close = difflib.get_close_matches(name, chapters(), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ParamError(f"chapter: unknown chapter '{name}'{hint}; expected one of {', '.join(chapters())}")


def resolve(chapter: str, preset: str = "embedded", overrides: dict[str, Any] | None = None) -> ChapterConfig:
    """Config for a chapter: defaults, then the preset's section, then the user's overrides."""
    if chapter not in ALL_CONFIGS:
        close = difflib.get_close_matches(chapter, list(ALL_CONFIGS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ParamError(f"chapter: unknown chapter '{chapter}'{hint}; expected one of {', '.join(chapters())}")
    cls = ALL_CONFIGS[chapter]
    section = dict(load_preset(preset).get(chapter) or {})
    values = {**section, "preset": preset, **(overrides or {})}
    return validate(cls, values)


def pretrain_config(preset: str) -> PretrainConfig:
    """The preset's pretraining section: what 'embedded' means for corpus, tokenizer and models."""
    return resolve("pretrain", preset)  # type: ignore[return-value]


def from_notebook(chapter: str, namespace: dict[str, Any]) -> ChapterConfig:
    """Validate the values of a notebook's parameters cell (the same checks as the CLI); a plain value
    that is no parameter (a misspelled papermill -p) is refused (functok.book.config.notebook_values)."""
    cls = ALL_CONFIGS[chapter]
    return validate(cls, notebook_values(cls, namespace))


# ---------------------------------------------------------------------------------------------
# Model runs: a preset's `model_runs` section re-runs chapters on other models (the real pretrained
# LLMs from wheels) beside the embedded run. Each writes into <out_dir>/<label>/<chapter>.{ipynb,json};
# the scorecard shows one column per label ("embedded" is the preset's own run).


@dataclass(frozen=True)
class ModelRun:
    """One chapter re-run on another model: its label (a folder name), chapter and parameter overrides."""

    label: str
    chapter: str
    overrides: dict


LABEL_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-._")


def model_runs(preset: str = "embedded") -> list[ModelRun]:
    """The preset's model runs, in preset order ({label: {chapter: overrides}} in the YAML)."""
    section = load_preset(preset).get("model_runs") or {}
    if not isinstance(section, dict):
        raise ParamError(f"model_runs: got {section!r}; expected a mapping {{label: {{chapter: parameters}}}}")
    runs = []
    for label, by_chapter in section.items():
        if not isinstance(label, str) or not label or set(label) - LABEL_CHARS or label == "embedded":
            raise ParamError(
                f"model_runs: label {label!r} is no folder name; expected lower-case letters, digits, '-', '.', '_' "
                "(and not 'embedded')"
            )
        if not isinstance(by_chapter, dict) or not by_chapter:
            raise ParamError(f"model_runs.{label}: got {by_chapter!r}; expected a mapping {{chapter: parameters}}")
        for name, overrides in by_chapter.items():
            chapter(name)  # unknown chapters: one line naming the known ones
            runs.append(ModelRun(label, name, dict(overrides or {})))
    return runs


def resolve_model_run(run: ModelRun, preset: str, out_dir: str) -> ChapterConfig:
    """The config of a model run: the preset's chapter section, then the run's overrides, writing into
    <out_dir>/<label>/."""
    return resolve(run.chapter, preset, {**run.overrides, "out_dir": f"{out_dir.rstrip('/')}/{run.label}"})
