"""A sparse SAE encoder that fits Gemma Scope 1M SAEs at paper scale, and its agreement check with
SAELens's own `sae.encode`.

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

from typing import Any, NamedTuple

from functok.sae.loading import SAESource, dtype_str, load_sae


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

    def __init__(
        self,
        W_enc,
        b_enc,
        threshold=None,
        b_dec=None,
        *,
        normalize: str = "none",
        device: str = "cpu",
        weight_dtype=None,
        compute_dtype=None,
        token_chunk: int = 4096,
        feature_chunk: int = 65536,
        hook_name: str | None = None,
        source: SAESource | None = None,
    ):
        import torch

        weight_dtype = weight_dtype or torch.bfloat16
        self.device = torch.device(device)
        self.d_in, self.d_sae = W_enc.shape
        # cast first when the dtype shrinks, so a 1M SAE's fp32 W_enc never lands on the GPU
        shrink = torch.empty(0, dtype=weight_dtype).element_size() < W_enc.element_size()
        self.W_enc = (
            W_enc.to(weight_dtype).to(self.device) if shrink else W_enc.to(device=self.device, dtype=weight_dtype)
        )  # [d_in, d_sae]
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
        fast = (
            type(sae) in (JumpReLUSAE, StandardSAE)
            and cfg.reshape_activations == "none"
            and not getattr(sae, "hook_z_reshaping_mode", False)
        )
        if not fast:
            return _ExactEncoder(sae, device=device, token_chunk=kwargs.get("token_chunk", 4096), **common)
        return cls(
            sae.W_enc.data,
            sae.b_enc.data,
            sae.threshold.data if isinstance(sae, JumpReLUSAE) else None,
            sae.b_dec.data if cfg.apply_b_dec_to_input else None,
            normalize=norm,
            device=device,
            weight_dtype=weight_dtype,
            **common,
            **kwargs,
        )

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
                xc = self.prepare(x.reshape(-1, self.d_in)[t0 : t0 + self.token_chunk])
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
        u_w = _UNIT_ROUNDOFF[dtype_str(self.W_enc.dtype)]  # W_enc rounded once from SAELens's fp32
        u_x = _UNIT_ROUNDOFF[dtype_str(self.compute_dtype)]  # the input rounded to the compute dtype
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
                acts = self.sae.encode(x[t0 : t0 + self.token_chunk].to(self.device))
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

    out = {
        "n_ref": 0,
        "n_ours": 0,
        "n_disagree": 0,
        "n_outside_bound": 0,
        "max_value_error": 0.0,
        "max_value_error_bound": 0.0,
    }
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
