"""SAEs through SAELens: offline validation of an SAE spec, loading, a sparse encoder that fits
Gemma Scope 1M SAEs at paper scale, and the GPU memory plan that decides whether a run fits.

Public API
- `validate_sae_spec(spec, name="sae", allow_download=None) -> SAESource`: a local SAELens folder, or
  'release/sae_id' / (release, sae_id) checked against SAELens's bundled registry
  (`sae_lens/pretrained_saes.yaml`) without importing SAELens or touching the network; a hub SAE is
  refused while offline, with what would be downloaded. Bad input raises `ParamError` (one line:
  parameter, value, what was expected, closest valid id).
- `load_sae(spec, device="cpu", dtype="float32") -> sae_lens.SAE` (`SAE.load_from_disk` or
  `SAE.from_pretrained`, after validation).
- `SparseEncoder.from_sae(sae, device, weight_dtype=torch.bfloat16)`; `.encode(x[..., d_in]) ->
  SparseCodes(rows, features, values, n_tokens)`: only the non-zeros, computed in chunks of tokens and
  features, ready for `TokenFeatureGraph.update_sparse(token_ids, codes.rows, codes.features)`.
  `load_encoder(spec, device)` = validate + load on the host + keep only the encoder on `device`.
- `agreement(encoder, sae, x) -> dict`: compares the encoder with SAELens's own `sae.encode` and
  checks that every disagreement lies within the rounding bound of the reduced-precision weights.
- `memory_plan(...) -> dict[str, int]`, `estimate_memory(...) -> int` (bytes on the GPU) and
  `check_memory(budget_bytes, ...)` (ParamError before anything is loaded), `PAPER_SETUP`.

Encoding at paper scale: `functok.sae.encoding`; the GPU memory plan: `functok.sae.memory`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from functok.core.cache import cached_dir
from functok.core.config import ParamError, offline
from functok.world.models import facts_of

SAE_CFG_FILE = "cfg.json"
SAE_WEIGHTS_FILE = "sae_weights.safetensors"

# ---------------------------------------------------------------------------------------------
# The bundled registry, read without importing SAELens (which takes seconds: torch, TL, ...)


def _registry_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("sae_lens")
    if spec is None or spec.origin is None:
        raise ParamError("sae: SAELens is not installed; expected the sae-lens package (pip install sae-lens)")
    return Path(spec.origin).parent / "pretrained_saes.yaml"


@functools.cache
def registry() -> dict[str, dict]:
    """SAELens's bundled registry: release -> {repo_id, model, conversion_func, saes: {sae_id: path
    in the repo}, l0: {sae_id: l0}}. Parsed once (~1.3 s) and kept as compact JSON in the cache
    (keyed by the file's hash), so later processes read it in milliseconds."""
    import hashlib

    path = _registry_file()
    data = path.read_bytes()
    params = {"file": "sae_lens/pretrained_saes.yaml", "sha1": hashlib.sha1(data).hexdigest()}

    def build(tmp: Path) -> None:
        import yaml

        raw = yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        out = {}
        for release, v in raw.items():
            saes = v.get("saes") or []
            out[release] = {
                "repo_id": v.get("repo_id"),
                "model": v.get("model"),
                "conversion_func": v.get("conversion_func"),
                "saes": {str(s["id"]): str(s["path"]) for s in saes},
                "l0": {str(s["id"]): s["l0"] for s in saes if "l0" in s},
            }
        (tmp / "registry.json").write_text(json.dumps(out))

    try:
        folder = cached_dir("sae_registry", params, build)
        return json.loads((folder / "registry.json").read_text())
    except OSError:  # a read-only cache: parse every time
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            build(Path(d))
            return json.loads((Path(d) / "registry.json").read_text())


def width_of(sae_id: str) -> int | None:
    """d_sae from a Gemma-Scope-style id ('layer_20/width_1m/...' -> 2^20; 'width_16k' -> 16384)."""
    m = re.search(r"width_(\d+)([km])(?![a-z0-9])", sae_id)  # Gemma Scope 2: ..._width_16k_l0_medium
    if not m:
        return None
    return int(m.group(1)) * (1024 if m.group(2) == "k" else 2**20)


GEMMA_CONVERSIONS = ("gemma_2", "gemma_3")  # Gemma Scope (1) and Gemma Scope 2: ids name layer and width


@dataclass(frozen=True)
class SAESource:
    """Where an SAE comes from, as validated (no weights loaded)."""

    spec: str  # what the user passed, normalized to a string
    kind: str  # "local" or "hub"
    path: str | None = None  # local folder
    release: str | None = None
    sae_id: str | None = None
    repo_id: str | None = None  # hub repository
    folder: str | None = None  # folder inside the hub repository
    model: str | None = None  # model the SAE was trained on (registry / cfg.json)
    d_in: int | None = None
    d_sae: int | None = None
    hook_name: str | None = None
    l0: float | None = None  # registry's average L0, when given

    def describe(self) -> str:
        return self.path if self.kind == "local" else f"{self.release}/{self.sae_id}"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _close(word: str, options, n: int = 1) -> str:
    m = difflib.get_close_matches(word, list(options), n=n, cutoff=0.5)
    return f" (did you mean '{m[0]}'?)" if m else ""


def _local_source(spec: str, path: Path, name: str) -> SAESource:
    if not path.is_dir():
        raise ParamError(
            f"{name}: '{spec}' is a file; expected an SAE folder in SAELens's format "
            f"({SAE_CFG_FILE} + {SAE_WEIGHTS_FILE})"
        )
    missing = [f for f in (SAE_CFG_FILE, SAE_WEIGHTS_FILE) if not (path / f).exists()]
    if missing:
        raise ParamError(
            f"{name}: '{spec}' has no {' or '.join(missing)}; expected an SAE folder in SAELens's "
            f"format (written by SAE.save_model)"
        )
    cfg = json.loads((path / SAE_CFG_FILE).read_text())
    md = cfg.get("metadata") or {}
    return SAESource(
        spec=spec,
        kind="local",
        path=str(path.resolve()),
        model=md.get("model_name") or cfg.get("model_name"),
        d_in=cfg.get("d_in"),
        d_sae=cfg.get("d_sae"),
        hook_name=md.get("hook_name") or cfg.get("hook_name"),
    )


def validate_sae_spec(spec: Any, name: str = "sae", allow_download: bool | None = None) -> SAESource:
    """Check an SAE spec offline, before anything is downloaded or loaded.

    spec: a local SAELens folder; 'release/sae_id' (the release is the part before the first '/');
    or a (release, sae_id) pair. Releases and ids are checked against SAELens's bundled registry.
    allow_download: whether a hub SAE may be downloaded (default: only when online, see
    `functok.core.config.offline`); when not, a hub SAE raises ParamError saying what would be fetched.
    """
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2 or not all(isinstance(s, str) for s in spec):
            raise ParamError(f"{name}: got {spec!r}; expected (release, sae_id) as two strings")
        release, sae_id = spec
        text = f"{release}/{sae_id}"
    elif isinstance(spec, (str, Path)):
        text = str(spec)
        p = Path(text).expanduser()
        if p.exists():
            return _local_source(text, p, name)
        release, _, sae_id = text.partition("/")
    else:
        raise ParamError(
            f"{name}: got {spec!r} ({type(spec).__name__}); expected a local SAE folder or 'release/sae_id'"
        )

    reg = registry()
    if release not in reg:
        if text.startswith((".", "/", "~")) or Path(text).suffix or Path(release).expanduser().exists():
            raise ParamError(
                f"{name}: '{text}' does not exist; expected an SAE folder (cfg.json + "
                f"sae_weights.safetensors) or 'release/sae_id' from SAELens's registry"
            )
        raise ParamError(
            f"{name}: '{release}' is neither a local folder nor a release of SAELens's registry"
            f"{_close(release, reg)}; expected 'release/sae_id', e.g. "
            f"'gemma-scope-9b-pt-res-canonical/layer_20/width_1m/canonical'"
        )
    entry = reg[release]
    ids = entry["saes"]
    if not sae_id:
        raise ParamError(
            f"{name}: '{text}' names release '{release}' but no SAE id; expected "
            f"'{release}/<sae_id>', e.g. '{release}/{next(iter(ids))}'"
        )
    if sae_id not in ids:
        raise ParamError(
            f"{name}: '{sae_id}' is not an SAE id of release '{release}'{_close(sae_id, ids)}; "
            f"expected one of its {len(ids)} ids, e.g. '{next(iter(ids))}'"
        )
    d_sae = width_of(sae_id) or width_of(ids[sae_id])
    gemma = entry.get("conversion_func") in GEMMA_CONVERSIONS
    d_in = facts_of(entry.get("model") or "").get("d_model") if gemma else None  # for download sizes
    layer = re.search(r"layer_(\d+)", ids[sae_id])
    residual = "-res" in (entry.get("repo_id") or "") or ids[sae_id].startswith("resid_post/")
    hook = f"blocks.{layer.group(1)}.hook_resid_post" if layer and gemma and residual else None
    src = SAESource(
        spec=text,
        kind="hub",
        release=release,
        sae_id=sae_id,
        repo_id=entry["repo_id"],
        folder=ids[sae_id],
        model=entry.get("model"),
        d_in=d_in,
        d_sae=d_sae,
        hook_name=hook,
        l0=entry["l0"].get(sae_id),
    )
    if allow_download is None:
        allow_download = not offline()
    if not allow_download:
        size = ""
        if d_in and d_sae:  # Gemma Scope ships W_enc, W_dec, b_enc, b_dec, threshold in fp32 (params.npz)
            size = f", about {(2 * d_in * d_sae + 2 * d_sae + d_in) * 4 / 1e9:.1f} GB"
        raise ParamError(
            f"{name}: '{text}' would be downloaded from the Hugging Face hub (repository "
            f"{entry['repo_id']}, folder {ids[sae_id]}{size}) and this machine is offline; "
            f"download it where the hub is reachable and pass the local SAE folder, or set FUNCTOK_ONLINE=1"
        )
    return src


def dtype_str(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def load_sae(spec: Any, device: str = "cpu", dtype: Any = "float32", name: str = "sae"):
    """A SAELens SAE from a local folder (`SAE.load_from_disk`) or the hub (`SAE.from_pretrained`),
    validated first (see `validate_sae_spec`). The SAE is in eval mode with gradients off."""
    src = validate_sae_spec(spec, name)
    from sae_lens import SAE

    if src.kind == "local":
        sae = SAE.load_from_disk(src.path, device=device, dtype=dtype_str(dtype))
    else:
        sae = SAE.from_pretrained(src.release, src.sae_id, device=device, dtype=dtype_str(dtype))
    sae.eval()
    for p in sae.parameters():
        p.requires_grad_(False)
    sae.source = src  # where it came from, for provenance
    return sae


# ---------------------------------------------------------------------------------------------
# Memory plan (GPU bytes), checked before anything is loaded

# The paper's run: Gemma-2-9B (9,241,705,984 parameters, bf16) with Gemma Scope 1M SAEs at layers 9,
# 20 and 31, 10,000 SlimPajama documents (~5M tokens), windows of 1024 tokens, 16 windows a batch.
