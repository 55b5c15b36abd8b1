"""Chapter 5's scan of the windows for concept features, at one layer (`Setup`): every window's SAE features
(`encode_windows`: from chapter 2's activation store when it holds the layer, else through the model), the
feature per concept found over episodes on one half of the documents and measured on the other
(`select_features`, `feature_entry`), and the SAE's quality on held-out windows (`sae_quality`). The chapter's
own layer (functok.chapters.reactivation.analysis) and the depth scan's further layers
(functok.chapters.reactivation.depth) share it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from functok.chapters.common import sae_heldout_windows
from functok.chapters.reactivation.episodes import document_halves, episode_positions, occurrences, wilson
from functok.chapters.reactivation.setup import Setup
from functok.core.cache import relpath
from functok.sae.activation_store import read_activations
from functok.sae.activations import activations_at
from functok.sae.quality import evaluate_sae_cached, quality_failures
from functok.world.models import model_ref
from functok.world.windows import position_documents, token_windows, windows_bos_start


def encode_windows(s: Setup, batch_size: int, progress: bool = True, with_acts: bool = False):
    """Yield (window indices, feature activations [b, ctx, d_sae][, activations [b, ctx, d_model]])."""
    import torch
    from tqdm import tqdm

    x = s.windows
    for i in tqdm(
        range(0, len(x), batch_size), desc="windows", unit="batch", disable=not progress, file=sys.stderr, mininterval=5
    ):
        if s.store is None:
            acts = activations_at(s.model, s.hook, x[i : i + batch_size], batch_size=batch_size)
        else:  # chapter 2's store over these windows: no model runs
            acts = read_activations(s.store, s.hook, np.arange(i, min(i + batch_size, len(x))))
        with torch.no_grad():
            f = s.sae.encode(acts.to(s.sae.W_enc.device, s.sae.W_enc.dtype)).float().cpu()
        idx = np.arange(i, min(i + batch_size, len(x)))
        yield (idx, f, acts) if with_acts else (idx, f)


def select_features(s: Setup, batch_size: int, progress: bool = True, episode_window: int = 64) -> dict[str, dict]:
    """Per concept: every feature's firing on the concept's occurrences and within its episodes
    (functok.chapters.reactivation.episodes), counted separately on the two halves of the documents; the
    feature selected on the first half (P(fires | concept) x episode precision) and its numbers on the second.
    Also the scan's mean activation norm (the steering scale), L0, alive share and single-token share."""
    x = s.windows.numpy()
    valid = np.ones_like(x, dtype=bool) if s.bos is None else x != s.bos
    bos_start = s.windows_path is not None and windows_bos_start(s.windows_path)
    docs = position_documents(x, s.bos, bos_start) if s.bos is not None else np.zeros_like(x)
    measure = document_halves(docs)
    occ = {c: occurrences(x, ids) & valid for c, ids in s.concept_tokens.items()}
    ep = {c: episode_positions(o, docs, valid, episode_window) for c, o in occ.items()}
    d_sae = int(s.sae.cfg.d_sae)
    halves = ("select", "measure")
    zero = {h: np.zeros(d_sae) for h in halves}
    on = {c: {h: np.zeros(d_sae) for h in halves} for c in occ}
    on_ep = {c: {h: np.zeros(d_sae) for h in halves} for c in occ}
    act_on = {c: np.zeros(d_sae) for c in occ}
    fired_h = {h: z.copy() for h, z in zero.items()}
    act_sum = np.zeros(d_sae)  # each feature's activation summed where it fires: its typical activation
    # the least and greatest token id that fires each feature: equal for a feature one token type alone fires
    tmin, tmax = np.full(d_sae, np.iinfo(np.int64).max), np.full(d_sae, -1)
    norms = []
    for idx, f, acts in encode_windows(s, batch_size, progress, with_acts=True):
        v = valid[idx]
        norms.append(acts.norm(dim=-1).numpy()[v])
        fired = (f > 0).numpy()
        act_sum += f.numpy()[v].sum(0)
        pos, feat = np.nonzero(fired[v])
        np.minimum.at(tmin, feat, x[idx][v][pos])
        np.maximum.at(tmax, feat, x[idx][v][pos])
        for h, hm in (("select", v & ~measure[idx]), ("measure", v & measure[idx])):
            fired_h[h] += fired[hm].sum(0)
            for c in occ:
                oc, ec = occ[c][idx] & hm, ep[c][idx] & hm
                if oc.any():
                    on[c][h] += fired[oc].sum(0)
                    if h == "measure":
                        act_on[c] += f.numpy()[oc].sum(0)
                if ec.any():
                    on_ep[c][h] += fired[ec].sum(0)
    n_pos = int((valid & measure).sum())
    out = {c: _selection(occ[c], measure, on[c], on_ep[c], fired_h, act_on[c], n_pos) for c in occ}
    fire_all = fired_h["select"] + fired_h["measure"]
    n_all = int(valid.sum())
    out["_resid_norm"] = float(np.concatenate(norms).mean()) if norms else 1.0
    out["_typical"] = act_sum / np.maximum(fire_all, 1)  # mean activation of each feature where it fires
    out["_l0"] = float(fire_all.sum() / max(n_all, 1))  # features firing per position, on the scanned windows
    out["_alive"] = float((fire_all > 0).mean())
    alive = fire_all > 0
    out["_single_token"] = float((alive & (tmin == tmax)).sum() / alive.sum()) if alive.any() else float("nan")
    out["_split"] = {"n_documents": int(docs.max()) + 1 if docs.size else 0, "measure_from_document": int(
        docs[measure].min()) if measure.any() else None, "episode_window": episode_window}  # fmt: skip
    return out


def _selection(o, measure, on: dict, on_ep: dict, fired: dict, act_on, n_pos: int) -> dict:
    """One concept's selection (first half) and measurement (second half) from the counts."""
    n = {"select": int((o & ~measure).sum()), "measure": int((o & measure).sum())}
    p_on = {h: on[h] / max(n[h], 1) for h in n}
    ep_prec = {h: on_ep[h] / np.maximum(fired[h], 1) for h in n}
    # recall x precision over episodes: a feature that fires on every country name has full recall on
    # ' Russia' but low precision; the concept's own feature, re-firing after it, keeps its precision
    score = p_on["select"] * ep_prec["select"]
    best = int(np.argmax(score)) if n["select"] else None
    return {
        "n_occurrences": n["select"] + n["measure"],
        "n_occurrences_select": n["select"],
        "n_occurrences_measure": n["measure"],
        "selected": best,
        "score": score,
        "p_on": p_on["measure"],
        "p_off": (fired["measure"] - on["measure"]) / max(n_pos - n["measure"], 1),  # P(fires | not the concept)
        "mean_act_on": act_on / max(n["measure"], 1),
        "on": on["measure"],
        "on_episode": on_ep["measure"],
        "fired": fired["measure"],
        "fired_select": fired["select"],
    }


def sae_quality(cfg, s: Setup, scan_l0: float, alive: float, single_token: float) -> dict:
    """The SAE's L0, explained variance and CE score on held-out windows (the embedded preset's; a model from
    a wheel with a trained SAE: 32 windows of chapter 2's graph documents, which the SAE never saw; another
    model: the first 32 scanned windows), the share of its features alive on the scanned windows, and
    what keeps it below functok.sae.quality.QUALITY_BAR (the features of an SAE below the bar are not
    interpreted: the chapter's claims become inconclusive), and the share of alive features that a single
    token type fires on the scanned windows."""
    if model_ref(cfg.model).embedded:
        win, n = token_windows(cfg.preset, "heldout"), 32
    elif model_ref(cfg.model).wheel and cfg.sae == "train":
        win, n = sae_heldout_windows(cfg.preset, cfg.model, s.checkpoint, int(s.windows.shape[1]))
    else:
        win, n = s.windows_path, 32
    q = evaluate_sae_cached(s.sae_source, s.checkpoint, win, max_windows=n, model=s.model, batch_size=cfg.batch_size)
    d_sae = int(s.sae.cfg.d_sae)
    out = {
        "l0": q["l0"],
        "d_sae": d_sae,
        "density": q["l0"] / d_sae,
        "explained_variance": q["explained_variance"],
        "ce_reconstruction_score": q["ce_reconstruction_score"],
        "loss_increase_nats": q["loss_increase_nats"],
        "mean_ablation_score": q["mean_ablation_score"],
        "alive": alive,
        "single_token_feature_share": single_token,
        "l0_on_scanned_windows": scan_l0,
        "eval_windows": relpath(win) if Path(win).exists() else str(win),
    }
    out["failures"] = quality_failures(q["l0"], d_sae, q["explained_variance"], q["ce_reconstruction_score"], alive)
    return out


def ident(x) -> str:
    """A cache key's name for a path: local folders relative to the repo, hub names as they are."""
    return relpath(x) if Path(str(x)).exists() else str(x)


def feature_entry(s: Setup, c: str, f: int, r: dict) -> dict:
    """Concept `c`'s feature `f` as its selection `r` (select_features) measured it: occurrences and, on the
    second half of the documents (the feature was selected on the first), episode precision P(the concept at
    this position or within episode_window before | the feature fires) with its Wilson interval."""
    return {
        "tokens": s.concept_tokens[c],
        "feature": f,
        "n_occurrences": r["n_occurrences"],
        "p_fire_on_concept": float(r["p_on"][f]),
        "p_fire_elsewhere": float(r["p_off"][f]),
        "selectivity": float(r["score"][f]),
        "n_occurrences_select": r["n_occurrences_select"],
        "n_occurrences_measure": r["n_occurrences_measure"],
        "precision": float(r["on_episode"][f] / r["fired"][f]) if r["fired"][f] else float("nan"),
        "precision_counts": [int(r["on_episode"][f]), int(r["fired"][f])],
        "precision_interval": list(wilson(int(r["on_episode"][f]), int(r["fired"][f]))),
        "precision_at_token": float(r["on"][f] / r["fired"][f]) if r["fired"][f] else float("nan"),
        "mean_activation_on_concept": float(r["mean_act_on"][f]),
    }
