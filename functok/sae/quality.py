"""Quality of a trained SAE on held-out windows (L0, explained variance, cross-entropy reconstruction
score) and counts of the features it learned.

Cross-entropy reconstruction score (the paper's notation): (H* - H0) / (H_orig - H0), where H_orig is
the model's mean next-token loss on held-out windows, H* the loss with the SAE's reconstruction spliced
in at the hook (at every non-BOS position; BOS keeps its activation), and H0 the loss with the hook's
activation zero-ablated at every position. Same formula as SAELens's `ce_loss_score`.

Mean-ablation score (loss recovered relative to mean ablation): (H_mean - H*) / (H_mean - H_orig),
where H_mean is the loss with the hook's activation replaced, at the same non-BOS positions as the
SAE's reconstruction, by its mean over those positions (`mean_ablation_loss`). A constant
reconstruction equal to that mean scores exactly 0 (and has explained variance 0), whatever the model;
the zero-ablation score gives the same constant anything from about 1 to below 0 when, as in bias-free
models whose last residual stream feeds a norm, H0 is ln(vocabulary) at every checkpoint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from functok.core.cache import cache_dir, cached_json, relpath
from functok.sae.activations import (
    ActivationSample,
    activation_sample,
    device,
    excluded_ids,
    model_device,
    model_for,
    windows_id,
)
from functok.sae.loading import load_sae
from functok.sae.models import hook_layer, logit_rows
from functok.world.windows import load_windows

_LOSSES: dict[tuple, tuple] = {}
_PASSES = [0]  # full passes over evaluation windows run in this process (the build profile counts them)
_ORIG: dict[tuple, object] = {}  # per-token losses of the unhooked model, for the last windows evaluated
QUALITY_VERSION = 2  # bump when a change here changes what evaluate_sae returns: it keys the cached evaluations


def _eval_windows(windows, max_windows: int | None):
    x = load_windows(windows)
    return x[:max_windows] if max_windows else x


def reference_losses(
    checkpoint, hook_name: str, windows, max_windows: int | None = None, model=None, batch_size: int = 8
) -> dict:
    """H_orig (the model's mean next-token loss) and H0 (the loss with the hook's activation
    zero-ablated at every position) on the windows; kept in memory per (checkpoint, hook, windows)."""
    import torch

    key = (str(checkpoint), hook_name, windows_id(windows), max_windows)
    if key not in _LOSSES:
        m = model_for(checkpoint, model)
        x = _eval_windows(windows, max_windows)

        def zero(act, hook):
            return torch.zeros_like(act)

        okey = (str(checkpoint), windows_id(windows), max_windows)  # H_orig is the same at every hook
        orig, zero_abl = ([] if okey not in _ORIG else [_ORIG[okey]]), []
        batch_size = logit_rows(m, batch_size, x.shape[1])
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                xb = x[i : i + batch_size].to(model_device(m))
                if okey not in _ORIG:
                    orig.append(m(xb, return_type="loss", loss_per_token=True).double().reshape(-1))
                zero_abl.append(
                    m.run_with_hooks(xb, return_type="loss", loss_per_token=True, fwd_hooks=[(hook_name, zero)])
                    .double()
                    .reshape(-1)
                )
        _PASSES[0] += 1 + (okey not in _ORIG)
        _ORIG.clear()
        _ORIG[okey] = torch.cat(orig)
        if len(_LOSSES) >= 4:
            _LOSSES.pop(next(iter(_LOSSES)))
        _LOSSES[key] = (float(torch.cat(orig).mean()), float(torch.cat(zero_abl).mean()), int(torch.cat(orig).numel()))
    h_orig, h0, n = _LOSSES[key]
    return {"ce_loss_original": h_orig, "ce_loss_zero_ablation": h0, "n_predictions": n}


def ce_score(h_star: float, h_orig: float, h0: float) -> float:
    """(H* - H0) / (H_orig - H0): 1 = no loss from the SAE, 0 = as bad as zero-ablating the hook."""
    return (h_star - h0) / (h_orig - h0) if h_orig != h0 else float("nan")


def evaluate_sae(sae_dir, checkpoint, windows, max_windows: int | None = None, model=None, batch_size: int = 8) -> dict:
    """L0, explained variance and the cross-entropy reconstruction score of an SAE on held-out
    windows, with TransformerLens hooks: one forward with the SAE spliced in at the hook (non-BOS
    positions), whose hook also measures L0 and explained variance on the same activations.

    explained_variance = 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over non-BOS positions
    (SAELens's definition); l0 = mean number of features with activation > 0 per position."""
    import torch

    t0, passes0 = time.perf_counter(), _PASSES[0]
    sae = load_sae(sae_dir, device=device())
    hook_name = sae.cfg.metadata.hook_name
    m = model_for(checkpoint, model)
    ref = reference_losses(checkpoint, hook_name, windows, max_windows, model=m, batch_size=batch_size)
    x = _eval_windows(windows, max_windows)
    excl = torch.tensor(excluded_ids(m), dtype=torch.long, device=model_device(m))
    acc = {"sse": 0.0, "sum": None, "sumsq": 0.0, "n": 0, "l0": 0.0}
    current = {}

    def splice(act, hook):
        mask = ~torch.isin(current["x"], excl).to(act.device)
        a = act.to(sae.device)
        feats = sae.encode(a[mask])
        recon = sae.decode(feats).to(act.dtype)
        xa = a[mask].double()
        acc["sse"] += float(((recon.double() - xa) ** 2).sum())
        acc["sum"] = xa.sum(0) if acc["sum"] is None else acc["sum"] + xa.sum(0)
        acc["sumsq"] += float((xa**2).sum())
        acc["n"] += int(mask.sum())
        acc["l0"] += float((feats > 0).sum())
        out = act.clone()
        out[mask] = recon.to(act.device)
        return out

    losses = []
    batch_size = logit_rows(m, batch_size, x.shape[1])
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            current["x"] = x[i : i + batch_size].to(model_device(m))
            losses.append(
                m.run_with_hooks(current["x"], return_type="loss", loss_per_token=True, fwd_hooks=[(hook_name, splice)])
                .double()
                .reshape(-1)
            )
    _PASSES[0] += 1
    h_star = float(torch.cat(losses).mean())
    n = max(acc["n"], 1)
    total_var = acc["sumsq"] - float((acc["sum"] ** 2).sum()) / n if acc["sum"] is not None else float("nan")
    mean_abl = mean_ablation_loss(checkpoint, hook_name, windows, max_windows, model=m, batch_size=batch_size)
    h_mean = mean_abl["ce_loss_mean_ablation"]
    return {
        "hook_name": hook_name,
        "d_sae": int(sae.cfg.d_sae),
        "l0": acc["l0"] / n,
        # the field's other two ways of saying it: nats lost by splicing the SAE in, and loss recovered
        # relative to mean ablation (a constant activation is a much stronger baseline than zeros)
        "loss_increase_nats": h_star - ref["ce_loss_original"],
        "mean_ablation_score": mean_ablation_score(h_star, ref["ce_loss_original"], h_mean),
        "ce_loss_mean_ablation": h_mean,
        "explained_variance": 1 - acc["sse"] / total_var if total_var > 0 else float("nan"),
        "ce_reconstruction_score": ce_score(h_star, ref["ce_loss_original"], ref["ce_loss_zero_ablation"]),
        "ce_loss_with_sae": h_star,
        **ref,
        "n_activations": acc["n"],
        "seconds": round(time.perf_counter() - t0, 3),
        "passes": _PASSES[0] - passes0,  # full passes over the windows this call ran (references are kept)
        "n_tokens": int(x.numel()),
    }


def encode_sample(sae_dir, sample: ActivationSample, batch_size: int = 4096):
    """Yield (token_ids [b], feature activations [b, d_sae]) over the sample, in batches."""
    import torch

    sae = load_sae(sae_dir, device=device())
    with torch.no_grad():
        for i in range(0, len(sample.acts), batch_size):
            yield sample.tokens[i : i + batch_size], sae.encode(sample.acts[i : i + batch_size].to(sae.device)).cpu()


def firing_counts(sae_dir, sample: ActivationSample) -> np.ndarray:
    """[d_sae] number of sampled activations on which each feature fires (activation > 0)."""
    counts = None
    for _, f in encode_sample(sae_dir, sample):
        c = (f > 0).sum(0).numpy().astype(np.int64)
        counts = c if counts is None else counts + c
    return counts


def learned_features(sae_dir, checkpoint, windows, n_activations: int, seed: int = 0, model=None) -> int:
    """Distinct SAE features that fire (activation > 0) on N activations sampled (seeded, without
    replacement, BOS positions excluded) from the windows at the SAE's hook: the paper's Fig 8a count."""
    sae_hook = json.loads((Path(sae_dir) / "cfg.json").read_text())["metadata"]["hook_name"]
    sample = activation_sample(checkpoint, sae_hook, windows, n_activations, seed, model=model)
    return int((firing_counts(sae_dir, sample) > 0).sum())


# ---------------------------------------------------------------------------------------------
# The bar an SAE meets before the book counts or interprets its features


# Why these numbers: Gemma Scope's SAEs fire about 100 of 2^20 features per token; an SAE whose
# features fire on several percent of all tokens is covered by almost any set of positions (issue 13),
# and one that explains too little of the activation, or breaks the model's predictions, describes
# something other than the model. The same bar for every model (issue 14).
QUALITY_BAR = {
    "max_l0": 100.0,
    "max_density": 0.01,  # L0 / d_sae
    "min_explained_variance": 0.7,
    "min_ce_score": 0.8,
    "min_alive": 0.8,  # share of features that fire at least once on the held-out sample
}


def quality_failures(
    l0: float | None,
    d_sae: int,
    explained_variance: float | None = None,
    ce_score: float | None = None,
    alive: float | None = None,
    bar: dict = QUALITY_BAR,
    skip_unmeasured: bool = False,
) -> list[str]:
    """What keeps an SAE below the bar, one short reason each (empty: it meets the bar). A measure
    that was not taken (None) is reported as missing, not passed (`skip_unmeasured`: left out, for
    published SAEs the chapter does not re-evaluate); nan counts as failing."""

    def bad(x, ok) -> bool:
        return x is None or not np.isfinite(x) or not ok(x)

    out = []
    checks = [
        ("L0", l0, lambda x: x <= bar["max_l0"], f"<= {bar['max_l0']:g}", "{:.1f}"),
        (
            "density L0/d_sae",
            None if l0 is None else l0 / d_sae,
            lambda x: x <= bar["max_density"],
            f"<= {bar['max_density']:.0%}",
            "{:.2%}",
        ),
        (
            "explained variance",
            explained_variance,
            lambda x: x >= bar["min_explained_variance"],
            f">= {bar['min_explained_variance']:g}",
            "{:.3f}",
        ),
        ("CE score", ce_score, lambda x: x >= bar["min_ce_score"], f">= {bar['min_ce_score']:g}", "{:.3f}"),
        ("alive features", alive, lambda x: x >= bar["min_alive"], f">= {bar['min_alive']:.0%}", "{:.1%}"),
    ]
    for name, x, ok, want, fmt in checks:
        if x is None and skip_unmeasured:
            continue
        if bad(x, ok):
            out.append(f"{name} {'not measured' if x is None else fmt.format(x)} (want {want})")
    return out


_MEAN_LOSSES: dict[tuple, dict] = {}


def mean_ablation_loss(
    checkpoint, hook_name: str, windows, max_windows: int | None = None, model=None, batch_size: int = 8
) -> dict:
    """H_mean: the mean next-token loss with the hook's activation replaced at every non-BOS position
    by its mean over the non-BOS positions of the same windows (BOS keeps its activation, as in
    `evaluate_sae`'s splice). Returns {"ce_loss_mean_ablation", "mean_activation_norm", "n_positions"}."""
    import torch

    key = (str(checkpoint), hook_name, windows_id(windows), max_windows)
    if key not in _MEAN_LOSSES:
        m = model_for(checkpoint, model)
        x = _eval_windows(windows, max_windows)
        excl = torch.tensor(excluded_ids(m), dtype=torch.long, device=model_device(m))
        acc = {"sum": None, "n": 0}
        current = {}

        def add(act, hook):
            mask = ~torch.isin(current["x"], excl).to(act.device)
            s = act[mask].double().sum(0)
            acc["sum"] = s if acc["sum"] is None else acc["sum"] + s
            acc["n"] += int(mask.sum())
            return act

        def replace(act, hook):
            mask = ~torch.isin(current["x"], excl).to(act.device)
            out = act.clone()
            out[mask] = mean.to(act.device, act.dtype)
            return out

        # the mean needs the blocks up to the hook only: stop there (the unembedding is most of a small model's
        # forward, Gemma-3's 262k words above all); the same arithmetic, so the same mean
        L = hook_layer(hook_name, strict=False)
        stop = {"stop_at_layer": L + 1} if L is not None and L + 1 < m.cfg.n_layers else {}
        losses = []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                current["x"] = x[i : i + batch_size].to(model_device(m))
                m.run_with_hooks(current["x"], return_type=None, fwd_hooks=[(hook_name, add)], **stop)
            mean = acc["sum"] / max(acc["n"], 1)
            batch_size = logit_rows(m, batch_size, x.shape[1])
            for i in range(0, len(x), batch_size):
                current["x"] = x[i : i + batch_size].to(model_device(m))
                losses.append(
                    m.run_with_hooks(
                        current["x"], return_type="loss", loss_per_token=True, fwd_hooks=[(hook_name, replace)]
                    )
                    .double()
                    .reshape(-1)
                )
        _PASSES[0] += 1 + (not stop)  # the loss with the mean (and the mean, when it ran the whole model)
        if len(_MEAN_LOSSES) >= 4:
            _MEAN_LOSSES.pop(next(iter(_MEAN_LOSSES)))
        _MEAN_LOSSES[key] = {
            "ce_loss_mean_ablation": float(torch.cat(losses).mean()),
            "mean_activation_norm": float(mean.norm()),
            "n_positions": acc["n"],
        }
    return dict(_MEAN_LOSSES[key])


def mean_ablation_score(h_star: float, h_orig: float, h_mean: float) -> float:
    """(H_mean - H*) / (H_mean - H_orig): 1 = no loss from the SAE, 0 = no better than replacing the
    activation by its mean (the same formula as `ce_score` with H_mean as the baseline)."""
    return ce_score(h_star, h_orig, h_mean)


def evaluate_sae_cached(sae_dir, checkpoint, windows, max_windows: int | None = None, model=None, batch_size: int = 8):
    """evaluate_sae, kept in the cache (`sae_evals/`) when the SAE and the windows are cache entries (which
    never change under their path; the SAE's key holds its checkpoint), so a warm chapter loads no model for
    it: chapter 2's warm run on SmolLM2 spent 98 of its 105 s here. Anything else is evaluated each time."""
    root = cache_dir().resolve()
    if not all(Path(p).resolve().is_relative_to(root) for p in (sae_dir, windows)):
        return evaluate_sae(sae_dir, checkpoint, windows, max_windows, model, batch_size)
    params = {
        "sae": relpath(sae_dir),
        "checkpoint": relpath(checkpoint) if Path(checkpoint).exists() else str(checkpoint),
        "windows": relpath(windows),
        "max_windows": max_windows,
        "version": QUALITY_VERSION,
    }
    return cached_json(
        "sae_evals", params, lambda: evaluate_sae(sae_dir, checkpoint, windows, max_windows, model, batch_size)
    )
