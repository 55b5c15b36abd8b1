"""Chapter 4's study of one checkpoint: the coefficient search to the target quality (bracketed, then
one SAE at the coefficient interpolated to the target), SAEs of several seeds at the chosen
coefficient, their quality against the mean- and zero-ablation baselines, learned features (with
their saturation: a count within 10% of d_sae) and token-degree curves (cached)."""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from functok.chapters.common import sae_training_spec
from functok.chapters.feature_growth.search import INCREASING, Trial, crossing, search_coefficient
from functok.core.cache import cache_path, cached_dir, cached_json, relpath, write_json_atomic
from functok.core.config import ROOT, ParamError
from functok.sae.activations import activation_sample
from functok.sae.graph import TokenFeatureGraph
from functok.sae.models import hub_checkpoint, load_model
from functok.sae.quality import (
    encode_sample,
    evaluate_sae,
    mean_ablation_loss,
    mean_ablation_score,
    reference_losses,
)
from functok.sae.training import sae_params, train_sae, training_stats
from functok.world.models import ModelRef

MIN_GAP = 0.05  # nats between the baseline's loss and H_orig below which the reconstruction score is noise

# the quality every checkpoint's SAE is matched to (cfg.match_on) -> its key in an SAE's metrics
SCORE_KEYS = {
    "mean_ablation": "mean_ablation_score",
    "explained_variance": "explained_variance",
    "zero_ablation": "ce_reconstruction_score",
}
BASELINES = {"mean_ablation": "ce_loss_mean_ablation", "zero_ablation": "ce_loss_zero_ablation"}
QUALITY_KEYS = ("mean_ablation_score", "ce_reconstruction_score", "explained_variance", "l0", "delta_loss")
SATURATED = 0.9  # a feature count at or above this share of d_sae is within 10% of its ceiling


FREQUENT_SHARE = 1e-4  # "frequent" features fire on at least 1 in 10,000 sampled activations


EVAL_VERSION = 2  # bump when a change here or in functok.sae's metrics changes cached evaluations
MEASURE_VERSION = 3  # the activation-sample measures alone (3: the single-token-type feature share)


@dataclass
class Source:
    """The model whose checkpoints the chapter studies: its reference (functok.world.models), name, checkpoints."""

    ref: ModelRef
    name: str
    checkpoints: list[dict] = field(default_factory=list)  # {"step", "tokens_seen", "checkpoint", "revision"?}
    run_dir: Path | None = None


def local_folder(source: Source, ck: dict) -> tuple[Path, Path | None]:
    """(folder to load the checkpoint from, downloaded folder to delete afterwards or None)."""
    if not source.ref.hub:
        p = Path(ck["checkpoint"])
        return (p if p.is_absolute() else ROOT / p), None
    dest = hub_checkpoint(ck["checkpoint"].split("@")[0], ck["revision"])
    return dest, dest


def sample_path(windows_path: Path, cfg, sample: Callable[[], Any]) -> Path:
    """The sampled (window, position, token) triples as a cached npz, so the count can be redone. The
    positions depend only on the windows, N and the seed (BOS excluded), not on the checkpoint;
    `sample()` computes them (with a checkpoint's activations) only when the file is missing."""
    params = {
        "windows": relpath(windows_path),
        "n_activations": int(cfg.n_activations),
        "seed": int(cfg.seed),
        "exclude": "bos",
    }

    def build(tmp: Path) -> None:
        s = sample()
        np.savez_compressed(tmp / "sample.npz", window_index=s.window_index, position=s.position, token_id=s.tokens)

    return cached_dir("activation_samples", params, build) / "sample.npz"


def cached_measure(sae_dir: Path, sample_file: Path, sample: Callable[[], Any], vocab: int, cfg) -> dict:
    """`measure` of one SAE on the activation sample, cached (json + the degree curve as npz)."""
    params = {
        "version": MEASURE_VERSION,
        "sae": relpath(sae_dir),
        "sample": relpath(sample_file),
        "slope_ranks": cfg.slope_ranks,
        "top_tokens": cfg.top_tokens,
        "frequent_share": FREQUENT_SHARE,
    }

    def build(tmp: Path) -> None:
        out = measure(sae_dir, sample(), vocab, cfg)
        np.savez_compressed(tmp / "degree.npz", degree_by_rank=out.pop("_degree_by_rank"), ranking=out.pop("_ranking"))
        write_json_atomic(tmp / "measure.json", out)

    d = cached_dir("sae_measures", params, build)
    out = json.loads((d / "measure.json").read_text())
    with np.load(d / "degree.npz") as z:
        out["_degree_by_rank"], out["_ranking"] = z["degree_by_rank"], z["ranking"]
    return out


def spec_of(cfg, coefficient: float, seed: int):
    """The SAE of one step of the coefficient search: the config's recipe at this coefficient and seed."""
    return sae_training_spec(cfg, seed, coefficient, backend=cfg.backend)


def degree_stats(
    degree: np.ndarray, ranking: np.ndarray, counts: np.ndarray, slope_ranks: int, top_tokens: int, graph=None
) -> dict:
    """Steepness of the degree-vs-rank curve: the least-squares slope of log(degree) on log(rank)
    over the `slope_ranks` most frequent tokens of the sample (tokens of degree 0 left out of the
    fit), and the share of connected features reached by the `top_tokens` most frequent tokens."""
    seen = ranking[counts[ranking] > 0]
    deg = degree[seen].astype(float)
    r = np.arange(1, seen.size + 1)
    m = min(slope_ranks, seen.size)
    ok = deg[:m] > 0
    slope = float(np.polyfit(np.log(r[:m][ok]), np.log(deg[:m][ok]), 1)[0]) if ok.sum() >= 3 else float("nan")
    cov = float("nan")
    if graph is not None and seen.size >= top_tokens and graph.connected_features():
        cov = float(graph.coverage_topk(seen, top_tokens, of="connected")[-1])
    return {"degree_slope": slope, "top_coverage": cov, "slope_ranks": int(m)}


def graph_of(sae_dir, sample, vocab_size: int):
    g = None
    for tok, acts in encode_sample(sae_dir, sample):
        if g is None:
            g = TokenFeatureGraph(vocab_size, acts.shape[1])
        g.update(tok, acts)
    return g


def measure(sae_dir, sample, vocab_size: int, cfg) -> dict:
    """Learned features and the degree curve of one SAE on the activation sample. Also the features
    firing on at least FREQUENT_SHARE of the sampled activations (a check that growth is not made of
    features that fire once or twice, which a short SAE training leaves behind)."""
    g = graph_of(sae_dir, sample, vocab_size)
    degree = g.degree()
    counts = g.token_counts()
    ranking = g.ranking()
    fn, ct = g.feature_fire_counts(np.zeros(vocab_size, dtype=bool))
    min_fires = max(1, math.ceil(FREQUENT_SHARE * g.n_tokens))
    learned = int(g.connected_features())
    out = {
        "learned_features": learned,
        # features that a single token type fires: token detectors rather than features shared across tokens
        "single_token_feature_share": int(np.count_nonzero(g.feature_degree() == 1)) / learned if learned else None,
        "n_activations": int(g.n_tokens),
        "frequent_features": int(((fn + ct) >= min_fires).sum()),
        "frequent_min_fires": min_fires,
        **degree_stats(degree, ranking, counts, cfg.slope_ranks, cfg.top_tokens, g),
    }
    seen = ranking[counts[ranking] > 0]
    out["_degree_by_rank"] = degree[seen]
    out["_ranking"] = seen
    return out


def _shape(folder: Path, get_model) -> tuple[int, int]:
    """(layers, vocabulary) of a checkpoint from its config.json, without loading it when possible."""
    try:
        c = json.loads((folder / "config.json").read_text())
        return int(c["num_hidden_layers"]), int(c["vocab_size"])
    except (OSError, KeyError, ValueError):
        m = get_model()
        return int(m.cfg.n_layers), int(m.cfg.d_vocab)


class _CheckpointStudy:
    """One checkpoint's model (loaded on first use), reference losses, and the SAEs trained and evaluated on it."""

    def __init__(self, cfg, folder: Path, ident: str, train_win: Path, held_win: Path, progress: bool):
        """Nothing loaded yet; `at_layer` sets the hook, the evaluation windows and the reference losses."""
        self.cfg, self.folder, self.ident, self.progress = cfg, folder, ident, progress
        self.train_win, self.held_win = train_win, held_win
        self.hook, self.ev, self.win_keys, self.ref = "", None, {}, {}
        self._box: dict[str, Any] = {}

    def model(self):
        """The checkpoint's model, loaded on the first call."""
        if "m" not in self._box:
            self._box["m"] = load_model(self.folder, device=self.cfg.device)
        return self._box["m"]

    def at_layer(self, layer: int) -> None:
        """Read the residual stream after `layer`; load (or compute and cache) the reference losses there."""
        self.hook = f"blocks.{layer}.hook_resid_post"
        self.ev = self.cfg.eval_windows or None
        self.win_keys = {"windows": relpath(self.held_win), "max_windows": self.ev, "version": EVAL_VERSION}
        ident, hook, held_win, ev = self.ident, self.hook, self.held_win, self.ev
        self.ref = cached_json(
            "reference_losses",
            {"checkpoint": ident, "hook_name": hook, **self.win_keys},
            lambda: {
                **reference_losses(ident, hook, held_win, ev, model=self.model()),
                **mean_ablation_loss(ident, hook, held_win, ev, model=self.model()),
            },
        )

    def sae_for(self, c: float, seed: int) -> Path:
        """The SAE at coefficient c and seed: cached, or trained now."""
        spec = spec_of(self.cfg, c, seed)
        done = cache_path("saes", sae_params(self.ident, self.hook, spec, self.train_win))
        if (done / "params.json").exists():
            return done
        return train_sae(self.ident, self.hook, spec, self.train_win, model=self.model(), progress=self.progress)

    def metrics(self, sae_dir: Path) -> dict:
        """An SAE's evaluation on the held-out windows (cached), with the scores against the baselines."""
        m = cached_json(
            "sae_evals",
            {"sae": relpath(sae_dir), **self.win_keys},
            lambda: evaluate_sae(sae_dir, self.ident, self.held_win, max_windows=self.ev, model=self.model()),
        )
        return with_scores(m, self.ref)

    def score_of(self, c: float):
        """(the matched quality, the SAE and its metrics) of the config's seed's SAE at coefficient c."""
        sae_dir = self.sae_for(c, self.cfg.seed)
        m = self.metrics(sae_dir)
        return m[SCORE_KEYS[self.cfg.match_on]], {"sae": sae_dir, **m}

    def sample(self):
        """The activation sample of the held-out windows at this checkpoint."""
        cfg = self.cfg
        return activation_sample(self.ident, self.hook, self.held_win, cfg.n_activations, cfg.seed, model=self.model())


def study_checkpoint(
    cfg,
    source: Source,
    ck: dict,
    train_win: Path,
    held_win: Path,
    start: float,
    prior_slope: float | None,
    progress: bool = True,
) -> dict:
    """Search, seeds, metrics and degree curves of one checkpoint. Evaluations and measurements are
    cached per SAE (a warm re-run loads no model unless something is missing)."""
    folder, downloaded = local_folder(source, ck)
    ident = ck["checkpoint"]  # hub: 'name@stepN'; local: the folder (relative)
    t0 = time.perf_counter()
    st = _CheckpointStudy(cfg, folder, ident, train_win, held_win, progress)
    try:
        n_layers, vocab = _shape(folder, st.model)
        layer = cfg.layer if cfg.layer >= 0 else n_layers + cfg.layer
        if not 0 <= layer < n_layers:
            raise ParamError(
                f"layer: got {cfg.layer}; the model has {n_layers} layers (expected -{n_layers}..{n_layers - 1})"
            )
        st.at_layer(layer)
        _check_gap(cfg, ck["step"], st.ref)
        chosen, trials, at_target = _search_to_target(st, start, prior_slope)
        sample_file = sample_path(held_win, cfg, st.sample)
        seeds = _seed_saes(st, chosen, sample_file, vocab)
    finally:
        if downloaded is not None and not cfg.keep_checkpoints:
            shutil.rmtree(downloaded, ignore_errors=True)
    row = checkpoint_row(cfg, ck, ident, layer, st.hook, chosen, trials, seeds, at_target)
    row["seconds"] = round(time.perf_counter() - t0, 2)
    main = seeds[0]
    curves = {"degree_by_rank": main["_degree_by_rank"], "ranking": main["_ranking"]}
    return {"row": row, "slope": _local_slope(trials, chosen), "curves": curves, "sample_file": sample_file}


def _search_to_target(st: _CheckpointStudy, start: float, prior_slope: float | None):
    """The coefficient search, then one SAE at the coefficient interpolated to the target (unless it was
    tried): (the chosen trial, every trial, the coefficient at the target or None)."""
    cfg = st.cfg
    integer = cfg.architecture == "topk"
    best, trials = search_coefficient(
        st.score_of,
        cfg.target_score,
        cfg.tolerance,
        start,
        cfg.search_steps,
        cfg.search_factor,
        increasing=INCREASING.get(cfg.architecture, False),
        prior_slope=prior_slope,
        integer=integer,
        bracket=True,
    )
    at_target = crossing(trials, cfg.target_score, integer)
    chosen = best
    if at_target is not None:  # one more SAE at the interpolated coefficient (unless it was tried)
        tried = [t for t in trials if abs(math.log(t.coefficient / at_target)) < 1e-9]
        if tried:
            interp = tried[0]
        else:
            sc, payload = st.score_of(at_target)
            interp = Trial(at_target, float(sc), payload)
            trials.append(interp)
        interp.payload = {**interp.payload, "interpolated": True}
        near = abs(interp.score - cfg.target_score) <= cfg.tolerance
        chosen = interp if near else min(trials, key=lambda t: abs(t.score - cfg.target_score))
    return chosen, trials, at_target


def _seed_saes(st: _CheckpointStudy, chosen: Trial, sample_file: Path, vocab: int) -> list[dict]:
    """Per seed, the SAE at the chosen coefficient (the chosen one for the first seed) with its metrics,
    measurements on the activation sample and training statistics."""
    cfg = st.cfg
    seeds = []
    for k in range(cfg.n_seeds):
        seed = cfg.seed + k
        if k == 0:
            sae_dir, m = chosen.payload["sae"], chosen.payload
        else:
            sae_dir = st.sae_for(chosen.coefficient, seed)
            m = st.metrics(sae_dir)
        seeds.append(
            {
                "seed": seed,
                "sae": sae_dir,
                "metrics": m,
                **cached_measure(sae_dir, sample_file, st.sample, vocab, cfg),
                "training": training_stats(sae_dir),
            }
        )
    return seeds


def _check_gap(cfg, step: int, ref: dict) -> None:
    """Refuse a checkpoint whose baseline is no worse than the model: its score is undefined (noise)."""
    base = BASELINES.get(cfg.match_on)
    if base is None:
        return
    gap = ref[base] - ref["ce_loss_original"]
    if gap < MIN_GAP:
        raise ParamError(
            f"checkpoint_fractions: the checkpoint at step {step} predicts no better than with its activation "
            f"{cfg.match_on.replace('_ablation', '')}-ablated (H_orig {ref['ce_loss_original']:.3f} vs "
            f"{ref[base]:.3f} nats), so its reconstruction score is undefined; expected later checkpoints (raise the "
            "smallest fraction or step)"
        )


def with_scores(m: dict, ref: dict) -> dict:
    """An SAE's evaluation plus the scores against the checkpoint's baselines: the mean-ablation score
    (H_mean - H*) / (H_mean - H_orig) and the loss the SAE adds, H* - H_orig (nats)."""
    h_mean = ref["ce_loss_mean_ablation"]
    return {
        **m,
        "ce_loss_mean_ablation": h_mean,
        "mean_ablation_score": mean_ablation_score(m["ce_loss_with_sae"], m["ce_loss_original"], h_mean),
        "delta_loss": m["ce_loss_with_sae"] - m["ce_loss_original"],
    }


def checkpoint_row(cfg, ck, ident, layer, hook, chosen: Trial, trials: list[Trial], seeds: list[dict], at_target):
    """The results row of one checkpoint: the chosen SAE's coefficient and qualities, the coefficient at
    the target (interpolated), learned features per seed, saturation, degree curves, every search SAE."""
    lf = np.array([s["learned_features"] for s in seeds], dtype=float)
    fq = np.array([s["frequent_features"] for s in seeds], dtype=float)
    sl = np.array([s["degree_slope"] for s in seeds], dtype=float)
    cov = np.array([s["top_coverage"] for s in seeds], dtype=float)
    main, bm = seeds[0], chosen.payload
    d_sae = int(bm["d_sae"])
    score = bm[SCORE_KEYS[cfg.match_on]]
    return {
        "step": ck["step"],
        "tokens_seen": ck["tokens_seen"],
        "checkpoint": ident,
        "sae": relpath(main["sae"]),
        "layer": layer,
        "hook_name": hook,
        "d_sae": d_sae,
        "match_on": cfg.match_on,
        "score": score,
        "sparsity_coefficient": chosen.coefficient,
        "coefficient_at_target": at_target,
        "bracketed": at_target is not None,
        "interpolated": bool(bm.get("interpolated")),
        "matched": at_target is not None and abs(score - cfg.target_score) <= cfg.tolerance,
        "mean_ablation_score": bm["mean_ablation_score"],
        "ce_reconstruction_score": bm["ce_reconstruction_score"],
        "explained_variance": bm["explained_variance"],
        "l0": bm["l0"],
        "delta_loss": bm["delta_loss"],
        "learned_features": main["learned_features"],
        "single_token_feature_share": main["single_token_feature_share"],
        "n_activations": main["n_activations"],
        "ce_loss_original": bm["ce_loss_original"],
        "ce_loss_with_sae": bm["ce_loss_with_sae"],
        "ce_loss_mean_ablation": bm["ce_loss_mean_ablation"],
        "ce_loss_zero_ablation": bm["ce_loss_zero_ablation"],
        "learned_features_seeds": lf.tolist(),
        "learned_features_mean": float(lf.mean()),
        "learned_features_std": float(lf.std(ddof=1)) if lf.size > 1 else float("nan"),
        "saturation": float(lf.mean() / d_sae),
        "saturated": bool(lf.mean() >= SATURATED * d_sae),
        "frequent_features_seeds": fq.astype(int).tolist(),
        "frequent_min_fires": main["frequent_min_fires"],
        "frequent_saturated": bool(fq.mean() >= SATURATED * d_sae),
        "degree_slope": main["degree_slope"],
        "degree_slope_seeds": sl.tolist(),
        "top_coverage": main["top_coverage"],
        "top_coverage_seeds": cov.tolist(),
        "seeds": [
            {
                "seed": s["seed"],
                "sae": relpath(s["sae"]),
                "learned_features": s["learned_features"],
                "frequent_features": s["frequent_features"],
                **{k: s["metrics"][k] for k in QUALITY_KEYS},
                "degree_slope": s["degree_slope"],
                "top_coverage": s["top_coverage"],
            }
            for s in seeds
        ],
        "search": [
            {
                "sparsity_coefficient": t.coefficient,
                "score": t.score,
                **{k: t.payload[k] for k in QUALITY_KEYS},
                "interpolated": bool(t.payload.get("interpolated")),
                "sae": relpath(t.payload["sae"]),
            }
            for t in trials
        ],
        "sae_training": [training_stats(t.payload["sae"]) for t in trials] + [s["training"] for s in seeds[1:]],
    }


def _local_slope(trials: list[Trial], best: Trial) -> float | None:
    """d score / d log(c) near the chosen coefficient, from the two trials closest to it."""
    others = [t for t in trials if t is not best]
    if not others:
        return None
    t = min(others, key=lambda t: abs(math.log(t.coefficient / best.coefficient)))
    du = math.log(t.coefficient) - math.log(best.coefficient)
    return (t.score - best.score) / du if du else None
