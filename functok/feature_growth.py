"""Learned features grow over pre-training (the paper's Fig 8a, Fig 8b, Fig 12).

For a series of checkpoints of one model (the embedded shallow model by default, as the paper's
2-layer model; Pythia revisions when online) the chapter trains SAEs with SAELens
(functok.sae_train) on one layer's residual stream and

- searches, per checkpoint, the sparsity coefficient that brings the SAE's cross-entropy
  reconstruction score (H* - H0) / (H_orig - H0) within `ce_tolerance` of `target_ce_score`
  (Fig 12 plots the score against the coefficient for every SAE the search trained);
- counts the learned features: distinct features that fire (activation > 0) on `n_activations`
  activations sampled from held-out windows (the same positions at every checkpoint), for
  `n_seeds` SAEs trained at the chosen coefficient with different seeds (Fig 8a with the spread);
- builds the token-feature bipartite graph of each SAE on the same sample
  (functok.graph.TokenFeatureGraph) and draws token degree against frequency rank (Fig 8b), with
  two measures of steepness: the least-squares slope of log(degree) on log(rank) over the most
  frequent `slope_ranks` tokens, and the share of the SAE's connected features reached by the
  `top_tokens` most frequent tokens.

The search (`search_coefficient`) works on log(coefficient): it steps by `search_factor` until the
target is bracketed (using the local slope of the previous checkpoint when it has one), then
interpolates linearly inside the bracket (never closer than 30% of the bracket to either end, so the
bracket shrinks also where the score falls off a cliff); it stops at the first SAE within tolerance or
after `search_steps` SAEs and keeps the SAE whose score is closest to the target. Each checkpoint's
search starts from the coefficient chosen for the previous one.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .config import ParamError

INCREASING = {"topk": True, "batchtopk": True}
MIN_GAP = 0.05  # nats between H0 and H_orig below which the reconstruction score is noise
FREQUENT_SHARE = 1e-4  # "frequent" features fire on at least 1 in 10,000 sampled activations
EVAL_VERSION = 1  # bump when a change here or in sae_train's metrics changes cached evaluations  # score rises with k; it falls with a penalty coefficient


# ---------------------------------------------------------------------------------------------
# The coefficient search (pure; tests use a synthetic score function)


@dataclass
class Trial:
    coefficient: float
    score: float
    payload: Any = None


def search_coefficient(score_of: Callable[[float], tuple[float, Any]], target: float, tolerance: float,
                       start: float, max_steps: int, factor: float = 4.0, increasing: bool = False,
                       prior_slope: float | None = None, integer: bool = False) -> tuple[Trial, list[Trial]]:
    """Find a coefficient whose score is within `tolerance` of `target`, the score being monotone in
    log(coefficient) (decreasing unless `increasing`). `score_of(c) -> (score, payload)`.

    Returns (the trial closest to the target, every trial in order). `prior_slope`: d score /
    d log(c) from a similar problem (the previous checkpoint), used for the first step."""
    trials: list[Trial] = []
    sign = 1.0 if increasing else -1.0
    u = math.log(start)
    max_jump = math.log(factor)
    tried_u: set[float] = set()
    for _ in range(max_steps):
        c = math.exp(u)
        if integer:
            c = float(max(1, round(c)))
            u = math.log(c)
        if round(u, 9) in tried_u:  # a repeated proposal (integer rounding): bisect the bracket instead
            mid = _bisect_u(trials, target)
            if mid is None:
                break
            c = float(max(1, round(math.exp(mid)))) if integer else math.exp(mid)
            u = math.log(c)
            if round(u, 9) in tried_u:
                break
        tried_u.add(round(u, 9))
        s, payload = score_of(c)
        trials.append(Trial(c, float(s), payload))
        if not math.isfinite(s):
            break
        if abs(s - target) <= tolerance:
            break
        u = _next_u(trials, target, sign, max_jump, prior_slope)
    best = min(trials, key=lambda t: abs(t.score - target) if math.isfinite(t.score) else math.inf)
    return best, trials


def _next_u(trials: list[Trial], target: float, sign: float, max_jump: float, prior_slope: float | None) -> float:
    pts = sorted((math.log(t.coefficient), t.score) for t in trials if math.isfinite(t.score))
    pairs = [(a, b) for a, b in zip(pts, pts[1:]) if (a[1] - target) * (b[1] - target) < 0]
    if pairs:  # bracketed: interpolate inside the bracket around the best trial, keeping away from its ends
        best_u = math.log(min(trials, key=lambda t: abs(t.score - target)).coefficient)
        a, b = min(pairs, key=lambda p: min(abs(p[0][0] - best_u), abs(p[1][0] - best_u)))
        frac = (target - a[1]) / (b[1] - a[1])
        return a[0] + min(0.7, max(0.3, frac)) * (b[0] - a[0])  # >= 30% shrink per step, also on cliffs
    last = math.log(trials[-1].coefficient)
    u, s = next(p for p in pts if p[0] == last)
    direction = sign * (1.0 if s < target else -1.0)  # move toward the target
    slope = None
    recent = [(math.log(t.coefficient), t.score) for t in trials[-2:]]
    if len(recent) == 2 and recent[0][0] != recent[1][0]:
        slope = (recent[1][1] - recent[0][1]) / (recent[1][0] - recent[0][0])
    elif prior_slope is not None:
        slope = prior_slope
    same_side = sum(1 for p in pts if (p[1] > target) == (s > target))
    # the log step doubles from the third trial on the same side (a cliff near an early checkpoint's floor
    # makes a big jump overshoot into dead dictionaries)
    limit = max_jump * 2 ** max(0, same_side - 2)
    if slope is not None and slope * sign > 0:
        step = abs((target - s) / slope) * 1.2  # aim slightly past the target to bracket it
        step = min(max(step, math.log(1.25)), limit)
    else:
        step = limit
    return u + direction * step


def _bisect_u(trials: list[Trial], target: float) -> float | None:
    """Midpoint of the bracket around the target (a fallback when a proposal repeats a tried value)."""
    pts = sorted((math.log(t.coefficient), t.score) for t in trials if math.isfinite(t.score))
    pairs = [(a, b) for a, b in zip(pts, pts[1:]) if (a[1] - target) * (b[1] - target) < 0]
    return (pairs[0][0][0] + pairs[0][1][0]) / 2 if pairs else None


# ---------------------------------------------------------------------------------------------
# Checkpoints


@dataclass
class Source:
    """The model whose checkpoints the chapter studies."""

    kind: str  # "embedded" | "run" | "hub"
    name: str
    checkpoints: list[dict] = field(default_factory=list)  # {"step", "tokens_seen", "checkpoint", "revision"?}
    run_dir: Path | None = None


def resolve_source(cfg) -> Source:
    from .cache import relpath
    from .pretrain import checkpoints, model_name

    if cfg.model == "embedded":  # only the shallow model is needed: train (or wait for) just that one
        from .config import pretrain_config
        from .pretrain import train_run

        pcfg = pretrain_config(cfg.preset)
        name = model_name(pcfg.depths[0])
        run = train_run(pcfg, pcfg.depths[0])
        return Source("embedded", name, _rel(checkpoints(run)), run)
    p = Path(cfg.model).expanduser()
    if p.exists():
        if not (p / "checkpoints.json").exists():
            raise ParamError(f"model: '{cfg.model}' is no functok run folder (checkpoints.json); expected 'embedded', "
                             f"a run folder or a hub model with step revisions")
        return Source("run", p.name, _rel(checkpoints(p)), p.resolve())
    from .loss_split import hub_revisions

    if not cfg.checkpoint_steps:
        raise ParamError(f"checkpoint_steps: hub model '{cfg.model}' needs explicit steps (Pythia revisions step{{N}}); got []")
    return Source("hub", cfg.model.split("/")[-1], hub_revisions(cfg.model, [], cfg.checkpoint_steps))


def _rel(rows: list[dict]) -> list[dict]:
    from .cache import relpath

    return [{**r, "checkpoint": relpath(r["checkpoint"])} for r in rows]


def select_checkpoints(rows: list[dict], fractions: list[float], steps: list[int]) -> list[dict]:
    """The checkpoints to study, in training order: those at `steps` if given, else the ones nearest
    to each fraction of the last step (step 0, the random initialisation, excluded: its loss equals
    the zero-ablated one, so no reconstruction score exists). Duplicates collapse."""
    if steps:
        by_step = {r["step"]: r for r in rows}
        missing = [s for s in steps if s not in by_step]
        if missing:
            raise ParamError(f"checkpoint_steps: no checkpoint at step(s) {missing}; available: {sorted(by_step)}")
        return [by_step[s] for s in sorted(set(steps))]
    pool = [r for r in rows if r["step"]]
    if not pool:
        raise ParamError("model: the run has no checkpoint after step 0")
    last = max(r["step"] for r in pool)
    chosen: dict[int, dict] = {}
    for f in fractions:
        r = min(pool, key=lambda r: (abs(math.log(r["step"] / (f * last))), r["step"]))
        chosen[r["step"]] = r
    return [chosen[s] for s in sorted(chosen)]


def local_folder(source: Source, ck: dict) -> tuple[Path, Path | None]:
    """(folder to load the checkpoint from, downloaded folder to delete afterwards or None)."""
    from .config import ROOT
    from .models import hub_checkpoint

    if source.kind != "hub":
        p = Path(ck["checkpoint"])
        return (p if p.is_absolute() else ROOT / p), None
    dest = hub_checkpoint(ck["checkpoint"].split("@")[0], ck["revision"])
    return dest, dest


# ---------------------------------------------------------------------------------------------
# Token windows


def windows(cfg, source: Source, split: str, tokenizer_folder: Path) -> Path:
    """Token windows (save_to_disk folder, column input_ids, BOS before every document) of the
    preset's 'train' or 'heldout' documents: the embedded models' own windows, or the same documents
    (or cfg.corpus) tokenized by the model's tokenizer."""
    import hashlib

    from .cache import cached_dir, relpath
    from .config import pretrain_config
    from .embedded import corpus_params
    from .pretrain import token_windows

    pcfg = pretrain_config(cfg.preset)
    ctx = cfg.context_size or pcfg.context_size
    if source.kind == "embedded" and ctx == pcfg.context_size and cfg.corpus == "embedded":
        return token_windows(cfg.preset, split)
    tok_json = tokenizer_folder / "tokenizer.json"
    tok_key = (cfg.model if source.kind == "hub" else relpath(tokenizer_folder)) + \
        (":" + hashlib.sha1(tok_json.read_bytes()).hexdigest()[:12] if tok_json.exists() else "")
    docs_key = corpus_params(pcfg) if cfg.corpus == "embedded" else \
        {"corpus": cfg.corpus, "max_documents": cfg.max_documents, "heldout_fraction": pcfg.heldout_fraction}
    params = {"tokenizer": tok_key, **docs_key, "split": split, "context_size": ctx, "bos": True}

    def build(tmp: Path) -> None:
        from transformers import AutoTokenizer

        from . import windows

        tok = AutoTokenizer.from_pretrained(str(tokenizer_folder))
        docs = windows.split_documents_of(cfg.corpus, cfg.preset, cfg.max_documents, split)
        windows.save(tmp, *windows.cut(tok, docs["text"], ctx, what=f"'{split}' documents"))

    return cached_dir("windows", params, build) / "windows"


def sample_path(windows_path: Path, cfg, sample: Callable[[], Any]) -> Path:
    """The sampled (window, position, token) triples as a cached npz, so the count can be redone. The
    positions depend only on the windows, N and the seed (BOS excluded), not on the checkpoint;
    `sample()` computes them (with a checkpoint's activations) only when the file is missing."""
    from .cache import cached_dir, relpath

    params = {"windows": relpath(windows_path), "n_activations": int(cfg.n_activations), "seed": int(cfg.seed), "exclude": "bos"}

    def build(tmp: Path) -> None:
        s = sample()
        np.savez_compressed(tmp / "sample.npz", window_index=s.window_index, position=s.position, token_id=s.tokens)

    return cached_dir("activation_samples", params, build) / "sample.npz"


def cached_measure(sae_dir: Path, sample_file: Path, sample: Callable[[], Any], vocab: int, cfg) -> dict:
    """`measure` of one SAE on the activation sample, cached (json + the degree curve as npz)."""
    from .cache import cached_dir, relpath, write_json_atomic

    params = {"version": EVAL_VERSION, "sae": relpath(sae_dir), "sample": relpath(sample_file),
              "slope_ranks": cfg.slope_ranks, "top_tokens": cfg.top_tokens, "frequent_share": FREQUENT_SHARE}

    def build(tmp: Path) -> None:
        out = measure(sae_dir, sample(), vocab, cfg)
        np.savez_compressed(tmp / "degree.npz", degree_by_rank=out.pop("_degree_by_rank"), ranking=out.pop("_ranking"))
        write_json_atomic(tmp / "measure.json", out)

    d = cached_dir("sae_measures", params, build)
    out = json.loads((d / "measure.json").read_text())
    with np.load(d / "degree.npz") as z:
        out["_degree_by_rank"], out["_ranking"] = z["degree_by_rank"], z["ranking"]
    return out


# ---------------------------------------------------------------------------------------------
# Per-checkpoint measurements


def spec_of(cfg, coefficient: float, seed: int):
    from .sae_train import SAESpec

    return SAESpec(architecture=cfg.architecture, expansion_factor=cfg.expansion_factor,
                   sparsity_coefficient=float(coefficient), training_tokens=cfg.training_tokens,
                   batch_size=cfg.batch_size, lr=cfg.lr, seed=int(seed), backend=cfg.backend)


def degree_stats(degree: np.ndarray, ranking: np.ndarray, counts: np.ndarray, slope_ranks: int,
                 top_tokens: int, graph=None) -> dict:
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
    from .graph import TokenFeatureGraph
    from .sae_train import encode_sample

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
    out = {"learned_features": int(g.connected_features()), "n_activations": int(g.n_tokens),
           "frequent_features": int(((fn + ct) >= min_fires).sum()), "frequent_min_fires": min_fires,
           **degree_stats(degree, ranking, counts, cfg.slope_ranks, cfg.top_tokens, g)}
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


def _cached_json(kind: str, params: dict, compute: Callable[[], dict]) -> dict:
    from .cache import cached_dir, write_json_atomic

    def build(tmp: Path) -> None:
        write_json_atomic(tmp / "result.json", compute())

    return json.loads((cached_dir(kind, params, build) / "result.json").read_text())


def study_checkpoint(cfg, source: Source, ck: dict, train_win: Path, held_win: Path, start: float,
                     prior_slope: float | None, progress: bool = True) -> dict:
    """Search, seeds, metrics and degree curves of one checkpoint. Evaluations and measurements are
    cached per SAE (a warm re-run loads no model unless something is missing)."""
    from .cache import cache_path, relpath
    from .models import load_model
    from .sae_train import (activation_sample, evaluate_sae, reference_losses, sae_params,
                            train_sae, training_stats)

    folder, downloaded = local_folder(source, ck)
    ident = ck["checkpoint"]  # hub: 'name@stepN'; local: the folder (relative)
    t0 = time.perf_counter()
    box: dict[str, Any] = {}

    def get_model():
        if "m" not in box:
            box["m"] = load_model(folder, device=cfg.device)
        return box["m"]

    try:
        n_layers, vocab = _shape(folder, get_model)
        layer = cfg.layer if cfg.layer >= 0 else n_layers + cfg.layer
        if not 0 <= layer < n_layers:
            raise ParamError(f"layer: got {cfg.layer}; the model has {n_layers} layers (expected -{n_layers}..{n_layers - 1})")
        hook = f"blocks.{layer}.hook_resid_post"
        ev = cfg.eval_windows or None
        win_keys = {"windows": relpath(held_win), "max_windows": ev, "version": EVAL_VERSION}
        ref = _cached_json("reference_losses", {"checkpoint": ident, "hook_name": hook, **win_keys},
                           lambda: reference_losses(ident, hook, held_win, ev, model=get_model()))
        gap = ref["ce_loss_zero_ablation"] - ref["ce_loss_original"]
        if gap < MIN_GAP:
            raise ParamError(
                f"checkpoint_fractions: the checkpoint at step {ck['step']} predicts no better than the zero-ablated model "
                f"(H_orig {ref['ce_loss_original']:.3f} vs H0 {ref['ce_loss_zero_ablation']:.3f} nats), so its reconstruction "
                f"score is undefined; expected later checkpoints (raise the smallest fraction or step)")

        def sae_for(c: float, seed: int) -> Path:
            spec = spec_of(cfg, c, seed)
            done = cache_path("saes", sae_params(ident, hook, spec, train_win))
            if (done / "params.json").exists():
                return done
            return train_sae(ident, hook, spec, train_win, model=get_model(), progress=progress)

        def metrics(sae_dir: Path) -> dict:
            return _cached_json("sae_evals", {"sae": relpath(sae_dir), **win_keys},
                                lambda: evaluate_sae(sae_dir, ident, held_win, max_windows=ev, model=get_model()))

        def score_of(c: float):
            sae_dir = sae_for(c, cfg.seed)
            m = metrics(sae_dir)
            return m["ce_reconstruction_score"], {"sae": sae_dir, **m}

        best, trials = search_coefficient(score_of, cfg.target_ce_score, cfg.ce_tolerance, start,
                                          cfg.search_steps, cfg.search_factor,
                                          increasing=INCREASING.get(cfg.architecture, False),
                                          prior_slope=prior_slope, integer=cfg.architecture == "topk")

        def sample():
            return activation_sample(ident, hook, held_win, cfg.n_activations, cfg.seed, model=get_model())

        sample_file = sample_path(held_win, cfg, sample)
        seeds = []
        for k in range(cfg.n_seeds):
            seed = cfg.seed + k
            if k == 0:
                sae_dir, m = best.payload["sae"], best.payload
            else:
                sae_dir = sae_for(best.coefficient, seed)
                m = metrics(sae_dir)
            seeds.append({"seed": seed, "sae": sae_dir, "metrics": m, **cached_measure(sae_dir, sample_file, sample, vocab, cfg),
                          "training": training_stats(sae_dir)})
    finally:
        if downloaded is not None and not cfg.keep_checkpoints:
            shutil.rmtree(downloaded, ignore_errors=True)
    slope = _local_slope(trials, best)
    lf = np.array([s["learned_features"] for s in seeds], dtype=float)
    sl = np.array([s["degree_slope"] for s in seeds], dtype=float)
    cov = np.array([s["top_coverage"] for s in seeds], dtype=float)
    main, bm = seeds[0], best.payload
    row = {
        "step": ck["step"], "tokens_seen": ck["tokens_seen"], "checkpoint": ident, "sae": relpath(main["sae"]),
        "layer": layer, "hook_name": hook, "d_sae": bm["d_sae"], "sparsity_coefficient": best.coefficient,
        "ce_reconstruction_score": bm["ce_reconstruction_score"], "explained_variance": bm["explained_variance"],
        "l0": bm["l0"], "learned_features": main["learned_features"], "n_activations": main["n_activations"],
        "matched": abs(bm["ce_reconstruction_score"] - cfg.target_ce_score) <= cfg.ce_tolerance,
        "ce_loss_original": bm["ce_loss_original"], "ce_loss_with_sae": bm["ce_loss_with_sae"],
        "ce_loss_zero_ablation": bm["ce_loss_zero_ablation"],
        "learned_features_seeds": lf.tolist(), "learned_features_mean": float(lf.mean()),
        "learned_features_std": float(lf.std(ddof=1)) if lf.size > 1 else float("nan"),
        "frequent_features_seeds": [s["frequent_features"] for s in seeds], "frequent_min_fires": main["frequent_min_fires"],
        "degree_slope": main["degree_slope"], "degree_slope_seeds": sl.tolist(),
        "top_coverage": main["top_coverage"], "top_coverage_seeds": cov.tolist(),
        "seeds": [{"seed": s["seed"], "sae": relpath(s["sae"]), "learned_features": s["learned_features"],
                   "frequent_features": s["frequent_features"],
                   "ce_reconstruction_score": s["metrics"]["ce_reconstruction_score"], "l0": s["metrics"]["l0"],
                   "explained_variance": s["metrics"]["explained_variance"], "degree_slope": s["degree_slope"],
                   "top_coverage": s["top_coverage"]} for s in seeds],
        "search": [{"sparsity_coefficient": t.coefficient, "ce_reconstruction_score": t.score,
                    "l0": t.payload["l0"], "explained_variance": t.payload["explained_variance"],
                    "sae": relpath(t.payload["sae"])} for t in trials],
        "sae_training": [training_stats(t.payload["sae"]) for t in trials] + [s["training"] for s in seeds[1:]],
        "seconds": round(time.perf_counter() - t0, 2),
    }
    curves = {"degree_by_rank": main["_degree_by_rank"], "ranking": main["_ranking"]}
    return {"row": row, "slope": slope, "curves": curves, "sample_file": sample_file}


def _local_slope(trials: list[Trial], best: Trial) -> float | None:
    """d score / d log(c) near the chosen coefficient, from the two trials closest to it."""
    pts = sorted((abs(math.log(t.coefficient / best.coefficient)), t) for t in trials if t is not best)
    if not pts:
        return None
    t = pts[0][1]
    du = math.log(t.coefficient) - math.log(best.coefficient)
    return (t.score - best.score) / du if du else None


# ---------------------------------------------------------------------------------------------
# The chapter


def check(cfg) -> None:
    """Checks beyond functok.config's (cheap, before any heavy work)."""
    if cfg.model != "embedded" and not Path(cfg.model).expanduser().exists() and not cfg.checkpoint_steps:
        raise ParamError(f"checkpoint_steps: hub model '{cfg.model}' needs explicit steps (Pythia revisions step{{N}}); got []")
    if not cfg.checkpoint_steps and len(cfg.checkpoint_fractions) < 2:
        raise ParamError(f"checkpoint_fractions: got {cfg.checkpoint_fractions!r}; expected at least two checkpoints")
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ParamError("device: got 'cuda' but no CUDA GPU is visible; expected 'cpu' here")


def analyze(cfg, progress: bool = True) -> dict:
    """Everything the chapter reports: {"results", "claims", "data", "artifacts", "frames": {...},
    "curves": {step: {...}}, "timings"}."""
    import pandas as pd
    import torch

    from .cache import relpath
    from .pretrain import n_threads
    from .sae_train import clear_memory

    from . import sae_train

    check(cfg)
    torch.set_num_threads(n_threads())
    sae_train.DEVICE = cfg.device
    t_start = time.perf_counter()
    source = resolve_source(cfg)
    chosen = select_checkpoints(source.checkpoints, cfg.checkpoint_fractions, cfg.checkpoint_steps)
    first_folder, first_dl = local_folder(source, chosen[0])
    train_win = windows(cfg, source, "train", first_folder)
    held_win = windows(cfg, source, "heldout", first_folder)
    rows, curves, sample_file = [], {}, None
    start, slope = cfg.initial_coefficient, None
    for i, ck in enumerate(chosen):
        if progress:
            print(f"checkpoint {i + 1}/{len(chosen)}: step {ck['step']} ({ck['checkpoint']})", file=sys.stderr, flush=True)
        out = study_checkpoint(cfg, source, ck, train_win, held_win, start, slope, progress)
        rows.append(out["row"])
        curves[ck["step"]] = out["curves"]
        sample_file = sample_file or out["sample_file"]
        start = out["row"]["sparsity_coefficient"]  # warm start: the next checkpoint needs a similar one
        slope = out["slope"] if out["slope"] is not None else slope
        clear_memory()
    seconds = time.perf_counter() - t_start
    if first_dl is not None and not cfg.keep_checkpoints:
        shutil.rmtree(first_dl, ignore_errors=True)

    trainings = [t for r in rows for t in r["sae_training"] if t]
    n_act = sum(t["activations"] for t in trainings)
    train_s = sum(t["seconds"] for t in trainings)
    results = {
        "model": cfg.model if source.kind != "embedded" else source.name, "source": source.kind,
        "checkpoints": rows, "target_ce_score": cfg.target_ce_score, "ce_tolerance": cfg.ce_tolerance,
        "growth": growth(rows), "growth_frequent": growth(rows, "frequent_features_seeds"), "steepness": steepness(rows),
        "sae_training": {"saes": len(trainings), "activations": n_act, "seconds": round(train_s, 2),
                         "activations_per_s": round(n_act / train_s, 1) if train_s else None,
                         "threads": torch.get_num_threads(), "backend": cfg.backend},
        "seconds": round(seconds, 2),
    }
    data = {"tokens": relpath(held_win), "training_windows": relpath(train_win),
            "activation_sample": relpath(sample_file),
            "activation_sample_rule": f"{cfg.n_activations} (window, position) pairs drawn uniformly without replacement "
                                      f"(numpy default_rng({cfg.seed})) from the non-BOS positions of the held-out windows",
            "eval_windows": cfg.eval_windows or "all"}
    artifacts: dict[str, str] = {}
    for r in rows:
        artifacts[f"checkpoint[step {r['step']}]"] = r["checkpoint"]
        artifacts[f"sae[step {r['step']}]"] = r["sae"]
        for s in r["seeds"][1:]:
            artifacts[f"sae[step {r['step']}, seed {s['seed']}]"] = s["sae"]
        for k, t in enumerate(r["search"]):
            artifacts[f"sae[step {r['step']}, search {k}]"] = t["sae"]
    frames = {
        "checkpoints": pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, (list, dict))} for r in rows]),
        "search": pd.DataFrame([{"step": r["step"], **t} for r in rows for t in r["search"]]),
        "seeds": pd.DataFrame([{"step": r["step"], **s} for r in rows for s in r["seeds"]]),
    }
    return {"results": results, "claims": make_claims(rows, cfg), "data": data, "artifacts": artifacts,
            "frames": frames, "curves": curves}


def _diff_rule(first: np.ndarray, last: np.ndarray) -> tuple[float, float]:
    """(difference of means last - first, its standard error from the seed spread; nan with one seed)."""
    d = float(last.mean() - first.mean())
    if first.size < 2 or last.size < 2:
        return d, float("nan")
    return d, float(math.sqrt(first.var(ddof=1) / first.size + last.var(ddof=1) / last.size))


def growth(rows: list[dict], key: str = "learned_features_seeds") -> dict:
    a = np.array(rows[0][key], float)
    b = np.array(rows[-1][key], float)
    d, se = _diff_rule(a, b)
    return {"first_step": rows[0]["step"], "last_step": rows[-1]["step"], "first_mean": float(a.mean()),
            "last_mean": float(b.mean()), "factor": float(b.mean() / a.mean()) if a.mean() else float("nan"),
            "difference": d, "standard_error": se}


def steepness(rows: list[dict]) -> dict:
    a = np.array(rows[0]["degree_slope_seeds"], float)
    b = np.array(rows[-1]["degree_slope_seeds"], float)
    d, se = _diff_rule(a, b)
    ca = np.array(rows[0]["top_coverage_seeds"], float)
    cb = np.array(rows[-1]["top_coverage_seeds"], float)
    return {"first_slope": float(a.mean()), "last_slope": float(b.mean()), "difference": d, "standard_error": se,
            "first_top_coverage": float(ca.mean()), "last_top_coverage": float(cb.mean())}


def _verdict(d: float, se: float, sign: float) -> str:
    """holds: the change has the claimed sign and exceeds 2 standard errors over seeds; fails: it has
    the wrong sign (or is zero); inconclusive: the claimed sign within 2 standard errors (or one seed)."""
    if not math.isfinite(d) or d * sign <= 0:
        return "fails" if math.isfinite(d) else "inconclusive"
    return "holds" if math.isfinite(se) and d * sign > 2 * se else "inconclusive"


def make_claims(rows: list[dict], cfg) -> list[dict]:
    from .paper import numbers
    from .results import claim

    paper = numbers()["feature_growth"]
    g, st = growth(rows), steepness(rows)
    n_seeds = len(rows[0]["learned_features_seeds"])
    ends_matched = rows[0]["matched"] and rows[-1]["matched"]
    unmatched = "" if ends_matched else "; inconclusive: the earliest or final SAE misses the target score, so the comparison is not at equal reconstruction"
    claims = [claim(
        "learned_features_grow", "Learned features grow from the earliest to the final checkpoint",
        f"{paper['learned_features']['early']:,} -> {paper['learned_features']['late']:,} (about {paper['growth_factor']}-fold)",
        f"{g['first_mean']:,.0f} -> {g['last_mean']:,.0f} ({g['factor']:.2f}-fold; steps {g['first_step']} -> {g['last_step']})",
        _verdict(g["difference"], g["standard_error"], +1) if ends_matched else "inconclusive",
        f"mean over {n_seeds} SAE seeds of the distinct features firing on {cfg.n_activations:,} held-out activations; "
        f"holds if the increase exceeds 2 standard errors of the seed spread, fails if there is no increase. The verdict "
        f"is on growth, not on the paper's magnitude: our dictionaries have {rows[0]['d_sae']:,} features "
        f"(the paper's 65,536){unmatched}")]
    gf = growth(rows, "frequent_features_seeds")
    claims.append(claim(
        "frequent_features_grow", "Beyond the paper: the growth holds for features that fire on at least 1 in 10,000 activations",
        "not measured", f"{gf['first_mean']:,.0f} -> {gf['last_mean']:,.0f} ({gf['factor']:.2f}-fold)",
        _verdict(gf["difference"], gf["standard_error"], +1) if ends_matched else "inconclusive",
        f"features firing on >= {rows[0]['frequent_min_fires']} of the {rows[0]['n_activations']:,} sampled activations, mean "
        f"over seeds; a short SAE training leaves features that fire once or twice, which the paper's count includes; "
        f"same rule as above{unmatched}"))
    scores = [r["ce_reconstruction_score"] for r in rows]
    n_ok = sum(r["matched"] for r in rows)
    claims.append(claim(
        "ce_scores_matched", "The cross-entropy reconstruction scores of the compared SAEs are matched",
        "about equal (Fig 12)", f"{min(scores):.3f} .. {max(scores):.3f} (target {cfg.target_ce_score} +- {cfg.ce_tolerance})",
        "holds" if n_ok == len(rows) else "fails",
        f"holds if every checkpoint's chosen SAE lands within the tolerance ({n_ok} of {len(rows)} do); the coefficient "
        f"search trains at most {cfg.search_steps} SAEs per checkpoint"))
    c0, c1 = rows[0]["sparsity_coefficient"], rows[-1]["sparsity_coefficient"]
    inc = INCREASING.get(cfg.architecture, False)
    ok = all(r["matched"] for r in (rows[0], rows[-1]))
    claims.append(claim(
        "later_checkpoints_harder", "Later checkpoints need a weaker sparsity penalty to reach the same reconstruction score",
        "lambda " + " / ".join(str(x) for x in paper["sparsity_coefficients"]) + " at steps 3k / 50k / 130k",
        f"{c0:.3g} -> {c1:.3g}",
        ("holds" if (c1 > c0 if inc else c1 < c0) else "fails") if ok else "inconclusive",
        "the coefficient chosen for the final checkpoint against the earliest one; inconclusive if either misses the "
        "target score" + (" (for top-k SAEs: a larger k)" if inc else "")))
    claims.append(claim(
        "degree_curve_steepens", "The token degree-vs-frequency-rank curve steepens over training",
        "qualitative (Fig 8b)",
        f"slope {st['first_slope']:.2f} -> {st['last_slope']:.2f}; top-{cfg.top_tokens} tokens reach "
        f"{st['first_top_coverage']:.0%} -> {st['last_top_coverage']:.0%} of connected features",
        _verdict(st["difference"], st["standard_error"], -1) if ends_matched else "inconclusive",
        f"steepness = least-squares slope of log(degree) on log(rank) over the {cfg.slope_ranks} most frequent tokens of the "
        f"sample (more negative = steeper), mean over seeds; holds if it decreases by more than 2 standard errors, fails if "
        f"it does not decrease{unmatched}"))
    return claims
