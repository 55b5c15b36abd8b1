"""Sparse autoencoders trained with SAELens on a checkpoint's activations, and their quality metrics.

Public API (shared by the feature-growth and feature-coverage chapters)
- `SAESpec`: every training choice (architecture, width, sparsity coefficient, tokens, lr, seed, ...).
- `train_sae(checkpoint, hook_name, spec, windows) -> Path`: an SAE folder in SAELens's on-disk
  format (`cfg.json` + `sae_weights.safetensors`, what `sae_lens.SAE.load_from_disk` reads), trained
  on first use and cached under a key of every parameter (`data/cache/saes/<key>/`).
- `evaluate_sae(sae_dir, checkpoint, windows) -> {"l0", "explained_variance",
  "ce_reconstruction_score", "ce_loss_original", "ce_loss_with_sae", "ce_loss_zero_ablation", ...}`.
- `learned_features(sae_dir, checkpoint, windows, n_activations, seed) -> int`: distinct features that
  fire (activation > 0) on N activations sampled from the windows.
- `activation_sample(checkpoint, hook_name, windows, n_activations, seed) -> ActivationSample`
  (activations + the token at each position, for token-feature graphs).

Two training back ends, both SAELens's own SAE classes, losses and `SAETrainer`:
- "activations" (default): the checkpoint's activations at the hook are computed once per
  (checkpoint, hook, windows, tokens) and kept in memory, and `SAETrainer` trains on shuffled batches
  of them. A coefficient search trains many SAEs on the same activations, so the model runs once.
- "runner": `LanguageModelSAETrainingRunner` with the TransformerLens bridge as `override_model` and
  the token windows as `override_dataset` (activations generated on the fly; for data too large to
  hold in memory, e.g. Pythia on a GPU).

Positions holding BOS are left out of training, of every metric and of the activation samples
(their activations are outliers of a different kind; SAELens calls this `exclude_special_tokens`).

Cross-entropy reconstruction score (the paper's notation): (H* - H0) / (H_orig - H0), where H_orig is
the model's mean next-token loss on held-out windows, H* the loss with the SAE's reconstruction spliced
in at the hook (at every non-BOS position; BOS keeps its activation), and H0 the loss with the hook's
activation zero-ablated at every position. 1 means the SAE loses nothing, 0 means it is no better than
deleting the activation. Same formula as SAELens's `ce_loss_score`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from functok.core.cache import cached_dir, write_json_atomic
from functok.core.config import ParamError
from functok.sae.activation_store import store_info, store_training_activations
from functok.sae.activations import (
    activations_at,
    checkpoint_id,
    context_of,
    device,
    excluded_ids,
    model_for,
    training_activations,
    windows_id,
)
from functok.sae.models import hook_layer
from functok.world.windows import load_windows

SAE_TRAIN_VERSION = 2  # bump when a change here changes what training produces
ARCHITECTURES = ("jumprelu", "standard", "gated", "topk", "batchtopk")
BACKENDS = ("activations", "runner")


@dataclass(frozen=True)
class SAESpec:
    """How one SAE is trained. `sparsity_coefficient` is the architecture's sparsity knob:
    `l0_coefficient` (jumprelu), `l1_coefficient` (standard, gated), `k` (topk, batchtopk)."""

    architecture: str = "jumprelu"
    expansion_factor: int = 16  # d_sae = expansion_factor * d_model
    sparsity_coefficient: float = 1.0
    training_tokens: int = 200_000  # activations seen in training (positions, BOS excluded)
    batch_size: int = 512  # activations per optimizer step (train_batch_size_tokens)
    lr: float = 1e-3
    lr_warm_up_fraction: float = 0.05
    lr_decay_fraction: float = 0.2  # linear decay to 0 over the last steps
    sparsity_warm_up_fraction: float = 0.1  # the sparsity coefficient ramps up from 0
    jumprelu_bandwidth: float = 0.02
    jumprelu_init_threshold: float = 0.01
    jumprelu_sparsity_loss_mode: str = "tanh"
    normalize_activations: str = "expected_average_only_in"
    seed: int = 0
    backend: str = "activations"
    autocast: bool = False  # SAELens's mixed precision (bfloat16 matmuls): 1.35x faster on 2 avx512_bf16 cores

    def check(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ParamError(f"architecture: got {self.architecture!r}; expected one of {', '.join(ARCHITECTURES)}")
        if self.backend not in BACKENDS:
            raise ParamError(f"backend: got {self.backend!r}; expected one of {', '.join(BACKENDS)}")
        if self.sparsity_coefficient <= 0:
            raise ParamError(f"sparsity_coefficient: got {self.sparsity_coefficient!r}; expected a positive number")
        if self.training_tokens < self.batch_size:
            raise ParamError(
                f"training_tokens: got {self.training_tokens}; expected at least batch_size ({self.batch_size})"
            )

    def n_steps(self) -> int:
        return self.training_tokens // self.batch_size


# ---------------------------------------------------------------------------------------------
# Training


def training_sae_config(spec: SAESpec, d_in: int):
    """The SAELens training config of an SAE (architecture, width, sparsity, warm-up)."""
    import sae_lens as sl

    spec.check()
    warm = int(spec.sparsity_warm_up_fraction * spec.n_steps())
    common = {
        "d_in": d_in,
        "d_sae": spec.expansion_factor * d_in,
        "dtype": "float32",
        "device": device(),
        "normalize_activations": spec.normalize_activations,
    }
    c = spec.sparsity_coefficient
    if spec.architecture == "jumprelu":
        return sl.JumpReLUTrainingSAEConfig(
            **common,
            l0_coefficient=c,
            l0_warm_up_steps=warm,
            jumprelu_bandwidth=spec.jumprelu_bandwidth,
            jumprelu_init_threshold=spec.jumprelu_init_threshold,
            jumprelu_sparsity_loss_mode=spec.jumprelu_sparsity_loss_mode,
        )
    if spec.architecture == "standard":
        return sl.StandardTrainingSAEConfig(**common, l1_coefficient=c, l1_warm_up_steps=warm)
    if spec.architecture == "gated":
        return sl.GatedTrainingSAEConfig(**common, l1_coefficient=c, l1_warm_up_steps=warm)
    if spec.architecture == "topk":
        return sl.TopKTrainingSAEConfig(**common, k=max(1, int(round(c))))
    return sl.BatchTopKTrainingSAEConfig(**common, k=float(c))


def _schedule(spec: SAESpec) -> dict:
    n = spec.n_steps()
    return {
        "lr": spec.lr,
        "lr_end": spec.lr,
        "lr_scheduler_name": "constant",
        "lr_warm_up_steps": int(spec.lr_warm_up_fraction * n),
        "lr_decay_steps": int(spec.lr_decay_fraction * n),
        "dead_feature_window": max(1, min(1000, n // 4)),
        "feature_sampling_window": max(1, min(2000, n)),
        "n_batches_for_norm_estimate": max(1, min(20, n)),
    }


@contextlib.contextmanager
def quiet_sae_lens():
    """SAELens's own tqdm.auto bars (one per SAE, widgets in Jupyter) off; functok logs one line per SAE."""
    import functools

    import sae_lens.training.activation_scaler as m1
    import sae_lens.training.activations_store as m2
    import sae_lens.training.sae_trainer as m3
    import tqdm as _tqdm

    mods = [m for m in (m1, m2, m3) if hasattr(m, "tqdm")]
    saved = [m.tqdm for m in mods]
    for m in mods:
        m.tqdm = functools.partial(_tqdm.tqdm, disable=True)
    try:
        yield
    finally:
        for m, t in zip(mods, saved):
            m.tqdm = t


def _batches(acts, batch_size: int, seed: int):
    """Shuffled batches of activations, a fresh permutation per pass (seeded), forever."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n = len(acts)
    if n == 0:
        raise ParamError("training_tokens: no activations to train on (the windows hold only BOS positions?)")
    while True:
        perm = torch.randperm(n, generator=g)
        if n < batch_size:
            perm = perm.repeat(-(-batch_size // n))
        for i in range(0, len(perm) - batch_size + 1, batch_size):
            yield acts[perm[i : i + batch_size]].to(device())


def _fit_activations(spec: SAESpec, acts):
    import torch
    from sae_lens import LoggingConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.sae import TrainingSAE
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(spec.seed)
    cfg = training_sae_config(spec, acts.shape[1])
    sae = TrainingSAE.from_dict(cfg.to_dict())
    tcfg = SAETrainerConfig(
        total_training_samples=spec.n_steps() * spec.batch_size,
        train_batch_size_samples=spec.batch_size,
        device=device(),
        autocast=spec.autocast,
        logger=LoggingConfig(log_to_wandb=False),
        **_schedule(spec),
    )
    trainer = SAETrainer(tcfg, sae, _batches(acts, spec.batch_size, spec.seed))
    scale = init_b_dec(sae, acts, spec.normalize_activations)
    if scale is not None:  # the scaler's factor from all training activations (fit() keeps a preset one)
        trainer.activation_scaler.scaling_factor = scale
    with quiet_sae_lens():
        trainer.fit()
    return sae


def init_b_dec(sae, acts, normalize: str) -> float | None:
    """Start the decoder bias at the mean activation (in the SAE's normalized units), as SAE
    practice does (SAELens 6 starts it at zero, which a few hundred Adam steps cannot undo when the
    residual stream has a large mean). Returns the normalization factor sqrt(d_in) / mean norm used,
    or None when activations are not normalized."""
    import torch

    with torch.no_grad():
        a = acts.float()
        scale = float(a.shape[1] ** 0.5 / a.norm(dim=-1).mean()) if normalize == "expected_average_only_in" else None
        sae.b_dec.data.copy_((a.mean(0) * (scale or 1.0)).to(sae.b_dec.dtype))
    return scale


def _fit_runner(spec: SAESpec, checkpoint, model, hook_name: str, windows, out: Path):
    import datasets
    import torch
    from sae_lens import (
        LanguageModelSAERunnerConfig,
        LanguageModelSAETrainingRunner,
        LoggingConfig,
    )
    from sae_lens.saes.sae import TrainingSAE

    x = load_windows(windows)
    T = int(x.shape[1])
    store = 8  # windows per model forward
    # SAELens's mixing buffer holds n_batches_in_buffer * context_size activations: >= 2 training batches
    n_buffer = max(2, -(-2 * spec.batch_size // T))
    excl = excluded_ids(model)
    cfg = LanguageModelSAERunnerConfig(
        sae=training_sae_config(spec, model.cfg.d_model),
        model_name=checkpoint_id(checkpoint),
        hook_name=hook_name,
        dataset_path="",
        is_dataset_tokenized=True,
        streaming=False,
        context_size=T,
        training_tokens=spec.n_steps() * spec.batch_size,
        train_batch_size_tokens=spec.batch_size,
        store_batch_size_prompts=store,
        n_batches_in_buffer=n_buffer,
        prepend_bos=False,
        exclude_special_tokens=excl or False,
        seed=spec.seed,
        device=device(),
        model_from_pretrained_kwargs={},
        logger=LoggingConfig(log_to_wandb=False),
        checkpoint_path=None,
        output_path=str(out),
        verbose=False,
        **_schedule(spec),
    )
    ds = (
        datasets.load_from_disk(str(windows))
        if isinstance(windows, (str, Path))
        else datasets.Dataset.from_dict({"input_ids": x.tolist()})
    )
    torch.manual_seed(spec.seed)
    sae = TrainingSAE.from_dict(cfg.sae.to_dict())
    # b_dec from the mean of the first windows' activations (the runner estimates its own scale
    # factor from its first batches; both are means of the same distribution)
    first = activations_at(model, hook_name, x[: max(1, min(len(x), -(-4 * spec.batch_size // T)))])
    keep = (
        ~torch.isin(x[: first.shape[0]], torch.tensor(excl, dtype=torch.long))
        if excl
        else torch.ones(first.shape[:2], dtype=torch.bool)
    )
    init_b_dec(sae, first[keep], spec.normalize_activations)
    runner = LanguageModelSAETrainingRunner(cfg, override_model=model, override_dataset=ds, override_sae=sae)
    with quiet_sae_lens():
        return runner.run()


def sae_params(checkpoint, hook_name: str, spec: SAESpec, windows, store=None) -> dict:
    """Every parameter that shapes an SAE (its cache key). Options at their old default (autocast off, the
    model run per SAE) stay out of it, so SAEs cached before they existed keep their keys."""
    spec_params = dataclasses.asdict(spec)
    if not spec.autocast:
        spec_params.pop("autocast")
    extra = {"activations": f"store:{store_info(store)['dtype']}"} if store is not None else {}
    return {
        "version": SAE_TRAIN_VERSION,
        "checkpoint": checkpoint_id(checkpoint),
        "hook_name": hook_name,
        "windows": windows_id(windows),
        "exclude": "bos",
        **spec_params,
        **extra,
    }


def train_sae(
    checkpoint, hook_name: str, spec: SAESpec, windows, model=None, progress: bool = True, store=None
) -> Path:
    """An SAE trained with SAELens on `checkpoint`'s activations at `hook_name` over the token windows
    (a `save_to_disk` folder with input_ids, BOS as the model saw it), cached; returns its folder
    (SAELens's format: `SAE.load_from_disk(folder)`; `training.json` holds timing and settings). With
    `store` (functok.sae.activation_store over the same windows) the activations are read from it: the
    model runs once for every layer and seed, and the key says the activations came from the store."""
    import sys

    spec.check()
    hook_layer(hook_name)
    if store is not None and spec.backend != "activations":
        raise ParamError(f"backend: got {spec.backend!r} with an activation store; expected 'activations'")
    params = sae_params(checkpoint, hook_name, spec, windows, store)

    def build(tmp: Path) -> None:
        import torch

        m = model_for(checkpoint, model) if store is None else None
        t0 = time.perf_counter()
        if store is not None:
            acts = store_training_activations(store, windows, hook_name, spec.training_tokens)
            t1 = time.perf_counter()
            sae = _fit_activations(spec, acts)
        elif spec.backend == "activations":
            acts = training_activations(checkpoint, hook_name, windows, spec.training_tokens, model=m)
            t1 = time.perf_counter()
            sae = _fit_activations(spec, acts)
        else:
            t1 = t0
            sae = _fit_runner(spec, checkpoint, m, hook_name, windows, tmp)
        seconds = time.perf_counter() - t1
        md = sae.cfg.metadata
        md.hook_name, md.model_name, md.model_class_name = hook_name, params["checkpoint"], "TransformerBridge"
        md.context_size, md.prepend_bos, md.dataset_path = context_of(windows), False, params["windows"]
        md.exclude_special_tokens = excluded_ids(m) if m is not None else store_info(store)["excluded_token_ids"]
        md.model_from_pretrained_kwargs = {}
        sae.save_inference_model(str(tmp))
        samples = spec.n_steps() * spec.batch_size
        stats = {
            "spec": dataclasses.asdict(spec),
            "d_in": int(sae.cfg.d_in),
            "d_sae": int(sae.cfg.d_sae),
            "steps": spec.n_steps(),
            "activations": samples,
            "seconds": round(seconds, 3),
            "activation_seconds": round(t1 - t0, 3),
            "activations_per_s": round(samples / max(seconds, 1e-9), 1),
            "train_l0": getattr(md, "l0", None),
            "device": device(),
            "activation_source": "store" if store is not None else "model",
            "threads": torch.get_num_threads(),
            "sae_lens": _version("sae-lens"),
        }
        write_json_atomic(tmp / "training.json", stats)
        if progress:
            print(
                f"  SAE {spec.architecture} d_sae={stats['d_sae']} coef={spec.sparsity_coefficient:.4g} "
                f"seed={spec.seed}: "
                f"{samples:,} activations in {seconds:.1f} s ({stats['activations_per_s']:,.0f}/s)",
                file=sys.stderr,
                flush=True,
            )

    return cached_dir("saes", params, build)


def _version(pkg: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def training_stats(sae_dir) -> dict:
    p = Path(sae_dir) / "training.json"
    return json.loads(p.read_text()) if p.exists() else {}
