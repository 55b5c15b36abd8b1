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

Memory plan for the paper's setup (Gemma-2-9B in bf16 + three Gemma Scope 1M JumpReLU SAEs, batches
of 16 x 1024 tokens, the graph accumulated on the GPU), `memory_plan(**PAPER_SETUP)`: model 18.5 GB,
three bf16 encoders 22.6 GB, forward activations 4.5 GB, encoding block 2.0 GB, captured residuals and
non-zeros 0.5 GB, three graphs at their worst-case bound (every firing a distinct edge, L0 128)
25.4 GB, CUDA context and slack 2.1 GB: 75.6 GB (70.4 GiB), within one 80 GB GPU; 50.2 GB with the
graphs on the host. Keeping fp32 encoders or the decoders does not fit (98-144 GB) and is refused. In fp32 a
1M SAE is 15 GB per matrix (W_enc and W_dec: 3584 x 2^20 x 4 bytes), so three full SAEs (90 GB) do not
fit one 80 GB GPU. Encoding needs neither W_dec nor fp32 weights: `SparseEncoder` keeps W_enc in
bf16 (7.5 GB per SAE), b_enc and the JumpReLU threshold in fp32 (4 MB each), b_dec only if the SAE
subtracts it from its input, and never materializes the dense [tokens, 2^20] code: it encodes blocks
of `token_chunk x feature_chunk` and keeps only the non-zeros. Loading a 1M SAE through SAELens
materializes W_enc and W_dec in fp32 on the loading device; `load_encoder` therefore loads on the
host (about 45 GB of host RAM at the peak: both matrices plus one transient copy), moves W_enc to
the GPU in bf16 and frees the rest, one SAE at a time.

Precision: with bf16 weights (and bf16 inputs to the matmul on a GPU), a pre-activation differs from
SAELens's fp32 value by at most about 2^-7 * sum_i |x_i W_if| (+ 2^-8 |h| when the matmul output is
rounded to bf16, i.e. where `torch.mm(..., out_dtype=float32)` is unavailable); a feature can flip
on or off only where its fp32 pre-activation is that close to the threshold. `agreement` checks this.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .config import ParamError, offline

SAE_CFG_FILE = "cfg.json"
SAE_WEIGHTS_FILE = "sae_weights.safetensors"
GiB = 2**30

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

    from .cache import cached_dir

    path = _registry_file()
    data = path.read_bytes()
    params = {"file": "sae_lens/pretrained_saes.yaml", "sha1": hashlib.sha1(data).hexdigest()}

    def build(tmp: Path) -> None:
        import yaml

        raw = yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        out = {}
        for release, v in raw.items():
            saes = v.get("saes") or []
            out[release] = {"repo_id": v.get("repo_id"), "model": v.get("model"),
                            "conversion_func": v.get("conversion_func"),
                            "saes": {str(s["id"]): str(s["path"]) for s in saes},
                            "l0": {str(s["id"]): s["l0"] for s in saes if "l0" in s}}
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
    m = re.search(r"width_(\d+)([km])\b", sae_id)
    if not m:
        return None
    return int(m.group(1)) * (1024 if m.group(2) == "k" else 2**20)


# d_model of the models Gemma Scope covers (for download sizes; the registry does not store it)
_GEMMA_D_MODEL = {"gemma-2-2b": 2304, "gemma-2-9b": 3584, "gemma-2-27b": 4608}


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
        raise ParamError(f"{name}: '{spec}' is a file; expected an SAE folder in SAELens's format "
                         f"({SAE_CFG_FILE} + {SAE_WEIGHTS_FILE})")
    missing = [f for f in (SAE_CFG_FILE, SAE_WEIGHTS_FILE) if not (path / f).exists()]
    if missing:
        raise ParamError(f"{name}: '{spec}' has no {' or '.join(missing)}; expected an SAE folder in SAELens's "
                         f"format (written by SAE.save_model)")
    cfg = json.loads((path / SAE_CFG_FILE).read_text())
    md = cfg.get("metadata") or {}
    return SAESource(spec=spec, kind="local", path=str(path.resolve()), model=md.get("model_name") or cfg.get("model_name"),
                     d_in=cfg.get("d_in"), d_sae=cfg.get("d_sae"),
                     hook_name=md.get("hook_name") or cfg.get("hook_name"))


def validate_sae_spec(spec: Any, name: str = "sae", allow_download: bool | None = None) -> SAESource:
    """Check an SAE spec offline, before anything is downloaded or loaded.

    spec: a local SAELens folder; 'release/sae_id' (the release is the part before the first '/');
    or a (release, sae_id) pair. Releases and ids are checked against SAELens's bundled registry.
    allow_download: whether a hub SAE may be downloaded (default: only when online, see
    `functok.config.offline`); when not, a hub SAE raises ParamError saying what would be fetched.
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
        raise ParamError(f"{name}: got {spec!r} ({type(spec).__name__}); expected a local SAE folder or 'release/sae_id'")

    reg = registry()
    if release not in reg:
        if text.startswith((".", "/", "~")) or Path(text).suffix or Path(release).expanduser().exists():
            raise ParamError(f"{name}: '{text}' does not exist; expected an SAE folder (cfg.json + "
                             f"sae_weights.safetensors) or 'release/sae_id' from SAELens's registry")
        raise ParamError(f"{name}: '{release}' is neither a local folder nor a release of SAELens's registry"
                         f"{_close(release, reg)}; expected 'release/sae_id', e.g. "
                         f"'gemma-scope-9b-pt-res-canonical/layer_20/width_1m/canonical'")
    entry = reg[release]
    ids = entry["saes"]
    if not sae_id:
        raise ParamError(f"{name}: '{text}' names release '{release}' but no SAE id; expected "
                         f"'{release}/<sae_id>', e.g. '{release}/{next(iter(ids))}'")
    if sae_id not in ids:
        raise ParamError(f"{name}: '{sae_id}' is not an SAE id of release '{release}'{_close(sae_id, ids)}; "
                         f"expected one of its {len(ids)} ids, e.g. '{next(iter(ids))}'")
    d_sae = width_of(sae_id) or width_of(ids[sae_id])
    d_in = _GEMMA_D_MODEL.get(entry.get("model") or "") if entry.get("conversion_func") == "gemma_2" else None
    layer = re.search(r"layer_(\d+)", ids[sae_id])
    hook = (f"blocks.{layer.group(1)}.hook_resid_post"
            if layer and entry.get("conversion_func") == "gemma_2" and "-res" in (entry.get("repo_id") or "") else None)
    src = SAESource(spec=text, kind="hub", release=release, sae_id=sae_id, repo_id=entry["repo_id"],
                    folder=ids[sae_id], model=entry.get("model"), d_in=d_in, d_sae=d_sae, hook_name=hook,
                    l0=entry["l0"].get(sae_id))
    if allow_download is None:
        allow_download = not offline()
    if not allow_download:
        size = ""
        if d_in and d_sae:  # Gemma Scope ships W_enc, W_dec, b_enc, b_dec, threshold in fp32 (params.npz)
            size = f", about {(2 * d_in * d_sae + 2 * d_sae + d_in) * 4 / 1e9:.1f} GB"
        raise ParamError(f"{name}: '{text}' would be downloaded from the Hugging Face hub (repository "
                         f"{entry['repo_id']}, folder {ids[sae_id]}{size}) and this machine is offline; "
                         f"download it where the hub is reachable and pass the local SAE folder, or set FUNCTOK_ONLINE=1")
    return src


def _dtype_str(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def load_sae(spec: Any, device: str = "cpu", dtype: Any = "float32", name: str = "sae"):
    """A SAELens SAE from a local folder (`SAE.load_from_disk`) or the hub (`SAE.from_pretrained`),
    validated first (see `validate_sae_spec`). The SAE is in eval mode with gradients off."""
    src = validate_sae_spec(spec, name)
    from sae_lens import SAE

    if src.kind == "local":
        sae = SAE.load_from_disk(src.path, device=device, dtype=_dtype_str(dtype))
    else:
        sae = SAE.from_pretrained(src.release, src.sae_id, device=device, dtype=_dtype_str(dtype))
    sae.eval()
    for p in sae.parameters():
        p.requires_grad_(False)
    sae.source = src  # where it came from, for provenance
    return sae


# ---------------------------------------------------------------------------------------------
# Sparse encoding


class SparseCodes(NamedTuple):
    """The non-zero SAE activations of n_tokens input rows, sorted by (row, feature)."""

    rows: Any  # LongTensor[nnz]: index of the input row (token position, flattened)
    features: Any  # LongTensor[nnz]
    values: Any  # FloatTensor[nnz] (fp32)
    n_tokens: int

    def to_dense(self, d_sae: int):
        """FloatTensor[n_tokens, d_sae] (small inputs only)."""
        import torch

        out = torch.zeros(self.n_tokens, d_sae, dtype=torch.float32, device=self.values.device)
        out[self.rows, self.features] = self.values
        return out


_UNIT_ROUNDOFF = {"bfloat16": 2.0**-8, "float16": 2.0**-11, "float32": 2.0**-24, "float64": 2.0**-53}


class SparseEncoder:
    """A JumpReLU / ReLU SAE encoder that keeps only what encoding needs, and returns non-zeros.

    Pre-activation h = normalize(x) - b_dec * apply_b_dec_to_input) @ W_enc + b_enc, and feature f
    fires where h_f > max(threshold_f, 0) (JumpReLU: relu(h) * (h > threshold), as SAELens; ReLU
    SAEs: threshold 0). W_enc is stored in `weight_dtype` (bf16 by default); b_enc, threshold and
    b_dec stay fp32. `compute_dtype` is the dtype of the matmul: by default the weight dtype on a
    GPU (tensor cores; fp32 output where torch supports it) and fp32 on the CPU (W_enc chunks are
    up-cast, so only the weights' rounding remains).

    Build it with `SparseEncoder.from_sae(sae, ...)`. Other SAELens architectures (top-k, gated, ...)
    are served by an exact fallback with the same `encode` API that calls `sae.encode` on chunks of
    tokens (the whole SAE stays in memory).
    """

    def __init__(self, W_enc, b_enc, threshold=None, b_dec=None, *, normalize: str = "none",
                 device: str = "cpu", weight_dtype=None, compute_dtype=None, token_chunk: int = 4096,
                 feature_chunk: int = 65536, hook_name: str | None = None, source: SAESource | None = None):
        import torch

        weight_dtype = weight_dtype or torch.bfloat16
        self.device = torch.device(device)
        self.d_in, self.d_sae = W_enc.shape
        # cast first when the dtype shrinks, so a 1M SAE's fp32 W_enc never lands on the GPU
        shrink = torch.empty(0, dtype=weight_dtype).element_size() < W_enc.element_size()
        self.W_enc = (W_enc.to(weight_dtype).to(self.device) if shrink
                      else W_enc.to(device=self.device, dtype=weight_dtype))  # [d_in, d_sae]
        self.b_enc = b_enc.to(device=self.device, dtype=torch.float32)  # [d_sae]
        thr = torch.zeros(self.d_sae) if threshold is None else threshold
        # relu(h) * (h > t) is non-zero exactly where h > max(t, 0)
        self.threshold = thr.to(device=self.device, dtype=torch.float32).clamp(min=0.0)  # [d_sae]
        self.b_dec = None if b_dec is None else b_dec.to(device=self.device, dtype=torch.float32)  # [d_in]
        if normalize not in ("none", "layer_norm", "constant_norm_rescale"):
            raise ValueError(f"normalize: got {normalize!r}; expected none, layer_norm or constant_norm_rescale")
        self.normalize = normalize
        self.compute_dtype = compute_dtype or (weight_dtype if self.device.type == "cuda" else torch.float32)
        self.token_chunk, self.feature_chunk = int(token_chunk), int(feature_chunk)
        self.hook_name, self.source = hook_name, source
        self._mm_out_f32 = self.device.type == "cuda"  # try torch.mm(..., out_dtype=float32)

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_sae(cls, sae, device: str | None = None, weight_dtype=None, **kwargs) -> "SparseEncoder | _ExactEncoder":
        """Keep only the encoder of a SAELens SAE, on `device` (default: the SAE's device)."""
        from sae_lens.saes.jumprelu_sae import JumpReLUSAE
        from sae_lens.saes.standard_sae import StandardSAE

        device = device or str(sae.device)
        md = sae.cfg.metadata
        common = {"hook_name": md.hook_name if md is not None else None, "source": getattr(sae, "source", None)}
        cfg = sae.cfg
        norm = cfg.normalize_activations
        # SAELens applies only these two at encode time; the others are folded in or training-only
        norm = norm if norm in ("layer_norm", "constant_norm_rescale") else "none"
        fast = type(sae) in (JumpReLUSAE, StandardSAE) and cfg.reshape_activations == "none" \
            and not getattr(sae, "hook_z_reshaping_mode", False)
        if not fast:
            return _ExactEncoder(sae, device=device, token_chunk=kwargs.get("token_chunk", 4096), **common)
        return cls(sae.W_enc.data, sae.b_enc.data,
                   sae.threshold.data if isinstance(sae, JumpReLUSAE) else None,
                   sae.b_dec.data if cfg.apply_b_dec_to_input else None,
                   normalize=norm, device=device, weight_dtype=weight_dtype, **common, **kwargs)

    # -- encoding ---------------------------------------------------------------------------
    def prepare(self, x):
        """Rows of x ([..., d_in], any float dtype) as the fp32 input of the encoder matmul."""
        x = x.reshape(-1, self.d_in).to(device=self.device, dtype=self.torch.float32)
        if self.normalize == "layer_norm":
            mu = x.mean(dim=-1, keepdim=True)
            x = x - mu
            x = x / (x.std(dim=-1, keepdim=True) + 1e-5)
        elif self.normalize == "constant_norm_rescale":
            x = x * (self.d_in**0.5) / x.norm(dim=-1, keepdim=True)
        if self.b_dec is not None:
            x = x - self.b_dec
        return x

    @property
    def torch(self):
        import torch

        return torch

    def _matmul(self, x, W):
        torch = self.torch
        if W.dtype != self.compute_dtype:
            W = W.to(self.compute_dtype)
        x = x.to(self.compute_dtype)
        if self._mm_out_f32 and self.compute_dtype in (torch.bfloat16, torch.float16):
            try:
                return torch.mm(x, W, out_dtype=torch.float32)
            except (TypeError, RuntimeError, NotImplementedError):
                self._mm_out_f32 = False
        return (x @ W).float()

    def pre_activations(self, x):
        """Dense fp32 pre-activations [n, d_sae] as this encoder computes them (small inputs only)."""
        xp = self.prepare(x)
        return self._matmul(xp, self.W_enc) + self.b_enc

    def encode(self, x) -> SparseCodes:
        """Non-zero feature activations of x ([..., d_in]; rows are the flattened leading dims)."""
        torch = self.torch
        rows, feats, vals = [], [], []
        n = x.reshape(-1, self.d_in).shape[0]
        with torch.no_grad():
            for t0 in range(0, n, self.token_chunk):
                xc = self.prepare(x.reshape(-1, self.d_in)[t0:t0 + self.token_chunk])
                r_c, f_c, v_c = [], [], []
                for f0 in range(0, self.d_sae, self.feature_chunk):
                    f1 = min(f0 + self.feature_chunk, self.d_sae)
                    h = self._matmul(xc, self.W_enc[:, f0:f1])
                    h += self.b_enc[f0:f1]
                    r, c = (h > self.threshold[f0:f1]).nonzero(as_tuple=True)
                    r_c.append(r)
                    f_c.append(c + f0)
                    v_c.append(h[r, c])
                    del h
                r, c, v = torch.cat(r_c), torch.cat(f_c), torch.cat(v_c)
                order = torch.argsort(r * self.d_sae + c)
                rows.append(r[order] + t0)
                feats.append(c[order])
                vals.append(v[order])
        if not rows:
            z = torch.zeros(0, dtype=torch.long, device=self.device)
            return SparseCodes(z, z.clone(), torch.zeros(0, device=self.device), 0)
        return SparseCodes(torch.cat(rows), torch.cat(feats), torch.cat(vals), n)

    def memory_bytes(self) -> int:
        """Bytes this encoder holds on its device."""
        ts = [self.W_enc, self.b_enc, self.threshold] + ([self.b_dec] if self.b_dec is not None else [])
        return sum(t.numel() * t.element_size() for t in ts)

    def rounding_bound(self, x, f0: int = 0, f1: int | None = None):
        """fp64 bound [n, f1 - f0] on |this encoder's pre-activation - SAELens's fp32 one| for
        features f0..f1 (small inputs only): weights (and inputs, if the matmul runs in reduced
        precision) rounded to their dtype, the matmul output rounded if it is not fp32, fp32
        accumulation on both sides."""
        torch = self.torch
        f1 = self.d_sae if f1 is None else f1
        xp = self.prepare(x).double()
        W = self.W_enc[:, f0:f1].double()
        absdot = xp.abs() @ W.abs()
        u_w = _UNIT_ROUNDOFF[_dtype_str(self.W_enc.dtype)]  # W_enc rounded once from SAELens's fp32
        u_x = _UNIT_ROUNDOFF[_dtype_str(self.compute_dtype)]  # the input rounded to the compute dtype
        u_out = 0.0 if (self._mm_out_f32 or self.compute_dtype == torch.float32) else u_x
        b = self.b_enc[f0:f1].double()
        h = (xp @ W + b).abs()
        acc = 2 * self.d_in * 2.0**-24  # fp32 accumulation here and in SAELens
        return (u_w + u_x + u_w * u_x + acc) * absdot + u_out * h + 2.0**-23 * (h + b.abs())


class _ExactEncoder:
    """Fallback for SAE architectures SparseEncoder does not reimplement: `sae.encode` on chunks of
    tokens, keeping the non-zeros (the whole SAE stays in memory, in its own dtype)."""

    def __init__(self, sae, device: str, token_chunk: int = 4096, hook_name=None, source=None):
        self.sae = sae.to(device)
        self.device = sae.device
        self.d_in, self.d_sae = sae.cfg.d_in, sae.cfg.d_sae
        self.token_chunk, self.hook_name, self.source = token_chunk, hook_name, source

    def encode(self, x) -> SparseCodes:
        import torch

        rows, feats, vals = [], [], []
        if x.shape[-1] != self.d_in:
            x = x.flatten(-2)  # hook_z SAEs take [..., n_heads, d_head]
        x = x.reshape(-1, self.d_in)
        with torch.no_grad():
            for t0 in range(0, x.shape[0], self.token_chunk):
                acts = self.sae.encode(x[t0:t0 + self.token_chunk].to(self.device))
                r, c = (acts > 0).nonzero(as_tuple=True)
                rows.append(r + t0)
                feats.append(c)
                vals.append(acts[r, c].float())
        if not rows:
            z = torch.zeros(0, dtype=torch.long, device=self.device)
            return SparseCodes(z, z.clone(), torch.zeros(0, device=self.device), 0)
        return SparseCodes(torch.cat(rows), torch.cat(feats), torch.cat(vals), x.shape[0])

    def memory_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.sae.parameters())


def load_encoder(spec: Any, device: str = "cpu", weight_dtype=None, load_device: str = "cpu", **kwargs):
    """Validate, load the SAE through SAELens on `load_device` (the host by default: a 1M SAE is
    30 GB in fp32), keep only its encoder on `device`, and free the rest."""
    import gc

    sae = load_sae(spec, device=load_device)
    enc = SparseEncoder.from_sae(sae, device=device, weight_dtype=weight_dtype, **kwargs)
    if not isinstance(enc, _ExactEncoder):
        del sae
        gc.collect()
    return enc


def agreement(encoder: SparseEncoder, sae, x, feature_chunk: int = 16384) -> dict:
    """Compare `encoder.encode(x)` with SAELens's `sae.encode(x)` on a few tokens x [..., d_in]
    (dense [n, d_sae] codes are built; the fp64 checks run in chunks of features).

    Returns {n_ref, n_ours, n_disagree, n_outside_bound, max_value_error, max_value_error_bound}:
    n_outside_bound counts disagreements (a feature on in one and off in the other) whose fp32
    pre-activation is farther from the threshold than the rounding bound, and values of features on
    in both that differ by more than the bound; it must be 0.
    """
    import torch

    out = {"n_ref": 0, "n_ours": 0, "n_disagree": 0, "n_outside_bound": 0, "max_value_error": 0.0,
           "max_value_error_bound": 0.0}
    with torch.no_grad():
        ref = sae.encode(x.reshape(-1, encoder.d_in).to(sae.device)).float().to(encoder.device)
        ours = encoder.encode(x).to_dense(encoder.d_sae)
        xp = encoder.prepare(x).double()
        for f0 in range(0, encoder.d_sae, feature_chunk):
            f1 = min(f0 + feature_chunk, encoder.d_sae)
            bound = encoder.rounding_bound(x, f0, f1)
            # SAELens's pre-activation in fp64 from its own weights: how close to the threshold
            W = sae.W_enc.detach()[:, f0:f1].to(encoder.device, torch.float64)
            h = xp @ W + sae.b_enc.detach()[f0:f1].to(encoder.device, torch.float64)
            thr = encoder.threshold[f0:f1].double()
            r, o = ref[:, f0:f1], ours[:, f0:f1]
            on_ref, on_ours = r > 0, o > 0
            dis = on_ref != on_ours
            both = on_ref & on_ours
            err = (o - r).abs().double()
            out["n_ref"] += int(on_ref.sum())
            out["n_ours"] += int(on_ours.sum())
            out["n_disagree"] += int(dis.sum())
            out["n_outside_bound"] += int((dis & ((h - thr).abs() > bound)).sum() + (both & (err > bound)).sum())
            if both.any():
                out["max_value_error"] = max(out["max_value_error"], float(err[both].max()))
                out["max_value_error_bound"] = max(out["max_value_error_bound"], float(bound[both].max()))
    return out


# ---------------------------------------------------------------------------------------------
# Memory plan (GPU bytes), checked before anything is loaded

# The paper's run: Gemma-2-9B (9,241,705,984 parameters, bf16) with Gemma Scope 1M SAEs at layers 9,
# 20 and 31, 10,000 SlimPajama documents (~5M tokens), windows of 1024 tokens, 16 windows a batch.
PAPER_SETUP = dict(d_model=3584, d_sae=2**20, n_saes=3, model_params=9_241_705_984, batch_tokens=16 * 1024,
                   context_size=1024, n_heads=16, d_mlp=14336, vocab_size=256_000, n_tokens=5_000_000, l0=128)


def memory_plan(*, d_model: int, d_sae: int, n_saes: int, model_params: int, batch_tokens: int,
                context_size: int = 1024, n_heads: int = 16, d_mlp: int | None = None,
                model_bytes: int = 2, weight_bytes: int = 2, keep_decoder: bool = False,
                token_chunk: int = 4096, feature_chunk: int = 65536, l0: float = 128,
                graph_on_device: bool = True, n_tokens: int = 5_000_000, vocab_size: int = 256_000,
                graph_buffer_keys: int = 2**24, overhead_bytes: int = 2 * GiB) -> dict[str, int]:
    """Bytes on the accelerator for one streaming pass (forward + SAE encoding + graph), by item.

    model_bytes / weight_bytes: bytes per model parameter / per SAE encoder weight (2: bf16).
    keep_decoder: also hold W_dec (not needed for the graph). l0: mean active features per token.
    graph_on_device: the graphs live on the device; their size is bounded by every firing being a
    distinct edge (n_tokens * l0, at most vocab_size * d_sae) at 12 bytes an edge (int64 key + int32
    count), plus a flush buffer and the largest merge (bounded here by a quarter of the edges).
    """
    d_mlp = d_mlp or 4 * d_model
    plan = {
        "model weights": model_params * model_bytes,
        # MLP gate/up/act in the model dtype, a few fp32 residual-sized temporaries, attention scores
        # and probabilities in fp32 (eager attention, as Gemma-2's soft-capping needs)
        "forward activations (one batch)": batch_tokens * (3 * d_mlp * model_bytes + 4 * d_model * 4)
        + 2 * batch_tokens * n_heads * context_size * 4,
        "captured residuals": n_saes * batch_tokens * d_model * model_bytes,
        "SAE encoders (W_enc, b_enc, threshold, b_dec)": n_saes * (d_model * d_sae * weight_bytes + 2 * d_sae * 4 + d_model * 4),
        # one block of fp32 pre-activations, its mask, a bf16 matmul output, the fp32 input chunk
        "encoding block": token_chunk * feature_chunk * (4 + 1 + weight_bytes) + token_chunk * d_model * 8,
        # (row, feature, value) + the sort permutation, for every SAE of a batch
        "non-zeros of a batch": n_saes * int(batch_tokens * l0) * (8 + 8 + 4 + 8),
    }
    if keep_decoder:
        plan["SAE decoders (W_dec)"] = n_saes * d_sae * d_model * weight_bytes
    if graph_on_device:
        edges = min(int(n_tokens * l0), vocab_size * d_sae)
        plan["token-feature graphs (bound)"] = n_saes * edges * 12 + edges * 12 // 4 + graph_buffer_keys * 25
    plan["CUDA context and allocator slack"] = overhead_bytes
    return plan


def estimate_memory(**kwargs) -> int:
    """Total bytes of `memory_plan(**kwargs)`."""
    return sum(memory_plan(**kwargs).values())


def format_plan(plan: dict[str, int]) -> str:
    lines = [f"  {k:48s} {v / 1e9:7.2f} GB" for k, v in plan.items()]
    lines.append(f"  {'total':48s} {sum(plan.values()) / 1e9:7.2f} GB")
    return "\n".join(lines)


def check_memory(budget_bytes: int, name: str = "memory plan", **kwargs) -> dict[str, int]:
    """The plan, or ParamError (one line) when it exceeds budget_bytes, before anything is loaded."""
    plan = memory_plan(**kwargs)
    total = sum(plan.values())
    if total > budget_bytes:
        big = sorted(plan.items(), key=lambda kv: -kv[1])[:3]
        parts = ", ".join(f"{k} {v / 1e9:.1f} GB" for k, v in big)
        raise ParamError(f"{name}: this configuration needs about {total / 1e9:.1f} GB on the device and "
                         f"{budget_bytes / 1e9:.1f} GB are available (largest: {parts}); expected a plan that fits: "
                         f"fewer SAEs at once, smaller batch_tokens, bf16 encoder weights, no decoder, or the graph on the host")
    return plan


def host_memory_to_load(d_in: int, d_sae: int) -> int:
    """Peak host bytes to load one SAE through SAELens on the CPU (W_enc + W_dec in fp32, plus the
    transient copy its loaders make of one matrix)."""
    return 3 * d_in * d_sae * 4
