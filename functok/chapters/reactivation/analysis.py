"""Chapter 5: features are re-activated by function tokens, and steering the last function token
steers the model (paper §4: Fig 6, Fig 7, Fig 11).

The paper shows three Gemma Scope features of Gemma-2-9B-it ("Speak Chinese", "Russia", "UK") at
layer 26: each fires first on its content token and is re-activated by later function tokens; adding
a feature's decoder direction to the activation of the prompt's last function token alone makes the
model answer with that concept. This module measures both on any model with an SAE:

- `scan.select_features`: per concept (a content word, one or more tokens), the SAE feature that stands for
  it: P(fires | concept) x episode precision (the share of its firings within 64 positions after the concept
  in the same document: `episodes`), selected on the first half of the scanned documents and measured on
  the second; or the feature ids the user gives (the paper's);
- `reactivation_rates`: after each occurrence of a concept, over the next `horizon` tokens, how often its
  feature fires on function tokens and on content tokens, against how often it fires on function
  tokens of windows where the concept does not occur (Fig 6, made a number);
- `trace`: per-token activations of the features over a prompt (Fig 6);
- `steer`: greedy continuations of prompts ending in a function token with alpha x (the mean norm of
  the layer's activations) x the feature's unit decoder direction added to that last position only, at
  the layer's `hook_resid_post` (Fig 7, Fig 11); success = the concept appears in the continuation.

Run:  functok run reactivation [-p concepts '[" Russia", " Japan"]' -p alphas '[0, 8]']
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from functok.chapters.common import sae_chapter_config
from functok.chapters.reactivation import scan
from functok.chapters.reactivation.appendix_a import appendix_a
from functok.chapters.reactivation.cards import card_data
from functok.chapters.reactivation.claims import make_claims, make_preconditions
from functok.chapters.reactivation.depth import depth_scan
from functok.chapters.reactivation.episodes import (
    by_distance,
    distance_bins,
    occurrences,
)
from functok.chapters.reactivation.setup import Setup, setup
from functok.chapters.reactivation.steering import steer, steering_counts, trace, unsteered_production
from functok.core.cache import cached_dir, relpath, write_json_atomic
from functok.core.config import ParamError, as_dict, cheap_fields
from functok.core.results import ChapterResult, seed_everything
from functok.sae.activation_store import store_info
from functok.world.models import model_ref
from functok.world.wheel_models import provenance

# ---------------------------------------------------------------------------------------------
# Measurements


def _after(o, valid, horizon: int):
    """(positions within `horizon` after an occurrence in the same window and document, the occurrence itself
    excluded; windows with an occurrence; distance from the latest occurrence) for occurrences `o` [n, T]."""
    T = o.shape[1]
    a = np.zeros_like(o)
    for d in range(1, min(horizon, T - 1) + 1):
        a[:, d:] |= o[:, :-d]
    # a document boundary (BOS) ends the context the concept belongs to
    seg = np.cumsum(~valid, axis=1)
    a &= np.maximum.accumulate(np.where(o, seg, -1), axis=1) == seg
    col = np.arange(T)
    dist = col[None, :] - np.maximum.accumulate(np.where(o, col[None, :], -1), axis=1)  # since the latest one
    return a & ~o, o.any(1), dist


def reactivation_rates(
    s: Setup, features: dict[str, int], horizon: int, batch_size: int, progress: bool = True
) -> dict[str, dict]:
    """Per concept and its feature: firing rate on function / content tokens within `horizon` tokens
    after an occurrence (the occurrence itself excluded), and on function / content tokens of windows
    without the concept (the baseline)."""
    x = s.windows.numpy()
    n, T = x.shape
    valid = np.ones_like(x, dtype=bool) if s.bos is None else x != s.bos
    fn = s.is_function[x] & valid
    ct = ~s.is_function[x] & valid
    keys = ("fn_after", "fn_after_fired", "ct_after", "ct_after_fired", "fn_base", "fn_base_fired", "ct_base",
            "ct_base_fired")  # fmt: skip
    cnt = {c: dict.fromkeys(keys, 0) for c in features}
    after, has, dist = {}, {}, {}
    for c in features:
        o = occurrences(x, s.concept_tokens[c]) & valid
        after[c], has[c], dist[c] = _after(o, valid, horizon)
    bins = distance_bins(horizon)
    by_d = {c: [dict.fromkeys(("fn", "fn_fired", "ct", "ct_fired"), 0) for _ in bins] for c in features}
    for idx, f in scan.encode_windows(s, batch_size, progress):
        for c, feat in features.items():
            fired = (f[:, :, feat] > 0).numpy()
            a, h = after[c][idx], has[c][idx]
            fi, ci = fn[idx], ct[idx]
            k = cnt[c]
            k["fn_after"] += int((a & fi).sum())
            k["fn_after_fired"] += int((a & fi & fired).sum())
            k["ct_after"] += int((a & ci).sum())
            k["ct_after_fired"] += int((a & ci & fired).sum())
            base = ~h[:, None]
            k["fn_base"] += int((base & fi).sum())
            k["fn_base_fired"] += int((base & fi & fired).sum())
            k["ct_base"] += int((base & ci).sum())
            k["ct_base_fired"] += int((base & ci & fired).sum())
            for (lo, hi), b in zip(bins, by_d[c]):
                m = a & (dist[c][idx] >= lo) & (dist[c][idx] <= hi)
                b["fn"] += int((m & fi).sum())
                b["fn_fired"] += int((m & fi & fired).sum())
                b["ct"] += int((m & ci).sum())
                b["ct_fired"] += int((m & ci & fired).sum())
    out = {}
    for c, k in cnt.items():

        def rate(a, b):
            return k[b] / k[a] if k[a] else float("nan")

        r = {
            **k,
            "fn_after_rate": rate("fn_after", "fn_after_fired"),
            "ct_after_rate": rate("ct_after", "ct_after_fired"),
            "fn_base_rate": rate("fn_base", "fn_base_fired"),
            "ct_base_rate": rate("ct_base", "ct_base_fired"),
        }
        r["fn_ratio"] = (
            r["fn_after_rate"] / r["fn_base_rate"] if r["fn_base_rate"] and r["fn_base_rate"] > 0 else float("nan")
        )
        r.update(by_distance(by_d[c], bins, k))
        out[c] = r
    return out


# ---------------------------------------------------------------------------------------------
# The chapter


def analyze(cfg, progress: bool = True) -> ChapterResult:
    """Everything the chapter shows: {"results", "claims", "data", "artifacts"} (plus traces and steering rows)."""
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    s = setup(cfg, progress)
    t_setup = time.perf_counter() - t0

    # the measurements are cached under every parameter, the checkpoint and the SAE: a warm re-run of
    # the book reads them instead of scanning the windows and generating again
    key = {
        "version": ANALYSIS_VERSION,
        "checkpoint": scan.ident(s.checkpoint),
        "sae": scan.ident(s.sae_source),
        "windows": scan.ident(s.windows_path),
        **key_fields(cfg),
        **({"activations": f"store:{store_info(s.store)['dtype']}"} if s.store is not None else {}),
    }
    box: dict = {}

    def build(tmp: Path) -> None:
        box["out"] = _measure(cfg, s, t0, t_setup, progress)
        write_json_atomic(tmp / "analysis.json", box["out"])

    out = box.get("out") or json.loads((cached_dir("reactivation_analysis", key, build) / "analysis.json").read_text())
    if "out" not in box:
        out["results"]["timing"]["cached"] = True
    artifacts = dict(out["artifacts"])
    if model_ref(cfg.model).wheel:  # the GGUF file, its sha256 and its package (as chapters 2 and 3 record)
        artifacts["gguf"] = provenance(cfg.model)
    r = out["results"]
    if cfg.sae == "train":  # the seed of the SAE the claims read: chapter 2's first
        r["sae_seed"] = sae_chapter_config(cfg.preset, cfg.model).seed
    if cfg.scan_layers:  # the further layers' scans, cached per layer (functok.chapters.reactivation.depth)
        r["depth_scan"] = depth_scan(cfg, s, progress)
    return ChapterResult(r, make_claims(r, cfg), out["data"], artifacts, preconditions=make_preconditions(r, cfg))


ADDED_LATER = ("trait_layers",)
CHAT_ONLY = ("traits", "test_prompts", "trait_layers", "trait_keep")  # read only with chat_template


def key_fields(cfg) -> dict:
    """The parameters that shape the measurements, for the cache key: not the claims' thresholds (cheap
    fields: the claims are judged again on every load), not Appendix A's inputs without the chat template,
    and a field added later only when set (so caches made before it stay valid)."""
    skip = {"out_dir", "scan_layers", *cheap_fields(type(cfg)), *(() if cfg.chat_template else CHAT_ONLY)}
    return {k: v for k, v in as_dict(cfg).items() if k not in skip and not (k in ADDED_LATER and not v)}


ANALYSIS_VERSION = 6  # bump when a change to the measurements changes their results (6: feature cards)


def _measure(cfg, s: Setup, t0: float, t_setup: float, progress: bool) -> dict:
    """Every measurement of the chapter (the cached part of `analyze`): {"results", "data", "artifacts"}."""
    laps, clock = {}, [time.perf_counter()]

    def lap(name: str) -> None:  # seconds of each part, for the build's account of where chapter 5's time goes
        laps[name], clock[0] = round(time.perf_counter() - clock[0], 1), time.perf_counter()

    sel = scan.select_features(s, cfg.batch_size, progress, cfg.episode_window)
    lap("scan")
    split, typical = sel.pop("_split"), sel.pop("_typical")
    resid_norm = sel.pop("_resid_norm")
    scan_l0, alive, single = sel.pop("_l0"), sel.pop("_alive"), sel.pop("_single_token")
    quality = scan.sae_quality(cfg, s, scan_l0, alive, single)
    lap("sae_quality")
    features = _features(cfg, s, sel)
    scales = {c: _typical_activation(sel.get(c), f, typical) for c, f in features.items()}
    rates = reactivation_rates(s, features, cfg.horizon, cfg.batch_size, progress)
    lap("reactivation")
    produced = unsteered_production(s, cfg.batch_size)
    lap("unsteered")
    traces = [trace(s, p, features) for p in cfg.trace_prompts]
    rows = steer(
        s, cfg.steer_prompts, features, scales, cfg.alphas, cfg.n_new_tokens, progress, cfg.steer_conditions,
        cfg.control_suffix,
    )  # fmt: skip
    lap("steering")
    last = [r for r in rows if r["condition"] == "last"]
    success = _mean_by_alpha(last, features, cfg.alphas, "success")
    logprob = _mean_by_alpha(last, features, cfg.alphas, "concept_logprob")
    counts = steering_counts(rows, features, cfg.alphas)
    concepts = {c: _concept_entry(cfg, s, c, f, sel[c], produced, rates, success, logprob) for c, f in features.items()}
    for c in concepts:
        concepts[c]["steering_counts"] = counts[c]
        concepts[c]["steering_scale"] = scales[c]
    cards = card_data(s, features, concepts, lambda: scan.encode_windows(s, cfg.batch_size, progress=False))
    lap("cards")
    results = {
        "model": relpath(s.checkpoint) if model_ref(cfg.model).embedded else s.checkpoint,
        "n_layers": int(s.model.cfg.n_layers),
        "layer": s.layer,
        "hook_name": s.hook,
        "sae": s.sae_source if cfg.sae != "train" else relpath(s.sae_source),
        "d_sae": int(s.sae.cfg.d_sae),
        "n_windows": int(len(s.windows)),
        "context_size": int(s.windows.shape[1]),
        "n_function_tokens": int(s.is_function.sum()),
        "sae_quality": quality,
        "concepts": concepts,
        "feature_cards": cards,  # the site renders them (functok.book.cards)
        "split": split,  # features selected on the first half of the documents, measured on the second
        "alphas": list(cfg.alphas),
        "resid_norm": resid_norm,
        "steering_units": "alpha x the feature's mean activation where it fires on the concept (held-out half) x its "
        "decoder row: alpha 1 adds the feature's own typical contribution",
        "steer_conditions": list(cfg.steer_conditions),
        "control_suffix": cfg.control_suffix,
        "horizon": cfg.horizon,
        "traces": traces,
        "steering": rows,
        "timing": {"setup_s": round(t_setup, 1), "parts_s": laps},
    }
    if cfg.chat_template:  # Appendix A through the chat template (instruct models)
        results["appendix_a"] = appendix_a(s, cfg, progress)
        lap("appendix_a")
    results["timing"]["total_s"] = round(time.perf_counter() - t0, 1)
    data = {"tokens": relpath(s.windows_path), "n_tokens": int(s.windows.numel())}
    if s.store is not None:  # the scans read chapter 2's store: its forward's dtype and its checked error
        info = store_info(s.store)
        data["activation_store"] = {"store": relpath(s.store), "dtype": info["dtype"], "check": info["check"]}
    artifacts = {
        "checkpoint": results["model"],
        "sae": results["sae"],
        "function_tokens": relpath(s.function_token_file) if s.function_token_file else "",
    }
    return {"results": results, "data": data, "artifacts": artifacts}


def _typical_activation(sel: dict | None, f: int, typical) -> float:
    """The feature's mean activation where it fires on the concept (the measured half), else where it fires at all."""
    if sel is not None and sel["on"][f] > 0:
        return float(sel["mean_act_on"][f] * sel["n_occurrences_measure"] / sel["on"][f])
    return float(typical[f]) if typical[f] > 0 else 1.0


def _features(cfg, s: Setup, sel: dict[str, dict]) -> dict[str, int]:
    """Per concept, its feature: the user's (cfg.features), else the most selective one found in the scan."""
    if cfg.features:
        return dict(zip(cfg.concepts, [int(f) for f in cfg.features]))
    missing = [c for c, r in sel.items() if r["selected"] is None]
    if missing:
        raise ParamError(
            f"concepts: {missing[0]!r} does not occur in the first half of the documents of the {len(s.windows)} "
            "windows scanned, where its feature is selected; expected a word of the corpus, or more n_windows"
        )
    return {c: int(r["selected"]) for c, r in sel.items()}


def _mean_by_alpha(rows: list[dict], features: dict[str, int], alphas, key: str) -> dict[str, dict]:
    """Per concept and alpha, the mean of the steering rows' `key` over the prompts."""
    return {
        c: {a: float(np.mean([r[key] for r in rows if r["concept"] == c and r["alpha"] == a])) for a in alphas}
        for c in features
    }


def _concept_entry(cfg, s: Setup, c: str, f: int, r: dict, produced, rates, success, logprob) -> dict:
    """One concept's results: its feature's selectivity and precision (scan.feature_entry), re-activation rates
    and steering."""
    return {
        **scan.feature_entry(s, c, f, r),
        "unsteered": produced[c],
        "chosen_by": "user" if cfg.features else "selectivity",
        "reactivation": rates[c],
        "steering_success": {str(a): v for a, v in success[c].items()},
        "steering_logprob": {str(a): v for a, v in logprob[c].items()},
    }
