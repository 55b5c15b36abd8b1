"""The book's chapters, in book order, and how a chapter's config is resolved from a preset.

Each chapter registers itself in functok/chapters/<name>/config.py (`CHAPTER`: its title, config class
and notebook); `BOOK_ORDER` lists them. `resolve` is the one way a config is built, by the CLI, a
notebook (`from_notebook`), a sweep and the live form: defaults, the preset's section, the overrides.
A chapter's config module is imported when the chapter is asked for, not all of them at once: a
notebook then imports its own chapter's code only, which is what its results' freshness hashes.
This module imports nothing heavy: validation must answer in well under a second.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any

from functok.core.config import Chapter, ChapterConfig, ParamError, load_preset, notebook_inputs, resolve_config
from functok.core.freshness import track_reads
from functok.world.config import PretrainConfig

BOOK_ORDER = ("function_tokens", "feature_coverage", "loss_split", "feature_growth", "reactivation")


def chapters() -> list[str]:
    """The chapters, in book order."""
    return list(BOOK_ORDER)


def chapter(name: str) -> Chapter:
    """The registry entry of a chapter (ParamError naming the known ones otherwise)."""
    if name not in BOOK_ORDER:
        close = difflib.get_close_matches(name, BOOK_ORDER, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ParamError(f"chapter: unknown chapter '{name}'{hint}; expected one of {', '.join(BOOK_ORDER)}")
    entry = importlib.import_module(f"functok.chapters.{name}.config").CHAPTER
    if entry.name != name:
        raise RuntimeError(f"functok/chapters/{name}/config.py registers '{entry.name}'")
    return entry


def entries() -> list[Chapter]:
    """Every chapter's registry entry, in book order (imports every chapter's config)."""
    return [chapter(n) for n in BOOK_ORDER]


def config_class(name: str) -> type[ChapterConfig]:
    """The config class of a chapter, or of the preset's `pretrain` section."""
    if name == "pretrain":
        return PretrainConfig
    return chapter(name).config


def all_configs() -> dict[str, type[ChapterConfig]]:
    """{name: config class} of every chapter, then the preset's `pretrain` section."""
    return {**{c.name: c.config for c in entries()}, "pretrain": PretrainConfig}


def resolve(name: str, preset: str = "embedded", overrides: dict[str, Any] | None = None) -> ChapterConfig:
    """Config for a chapter: defaults, then the preset's section, then the user's overrides."""
    return resolve_config(config_class(name), preset, overrides)


def from_notebook(name: str, namespace: dict[str, Any]) -> ChapterConfig:
    """The config of a chapter notebook: its parameters cell's `preset` and `overrides`, resolved exactly as
    `functok run` resolves `--preset` and `-p` (functok.core.config.notebook_inputs refuses anything else)."""
    track_reads()  # from here on, the data files the notebook reads are hashed into its results file
    preset, overrides = notebook_inputs(namespace)
    return resolve(name, preset, overrides)


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
