"""The paper's four-way split of the next-token loss over pre-training (Fig 9a/9b/9c, the scaling
table, Fig 10), on the embedded models' checkpoints or on Pythia checkpoints.

Every prediction "token t -> token t+1" falls in one group by the type of the current and of the
next token: function->function, function->content, content->function, content->content
(functok.loss_groups.GROUPS). For every checkpoint of every model the chapter computes, on held-out
token windows and through TransformerLens (functok.models.load_model, one code path for the
embedded Llamas and for Pythia):

- the mean per-token cross-entropy (nats) of each group and of all predictions ("all": every
  prediction of every window, as in training; the four groups leave out predictions whose current
  or next token is special, i.e. BOS at document starts);
- the loss of predicting each of `next_tokens` (" the", " of", ",") where it is the next token;
- each mean's count of predictions and a bootstrap confidence interval: windows are resampled with
  replacement (a cluster bootstrap: positions of a window share a context, so they are not
  independent); the same resampled windows serve every checkpoint and model evaluated on the same
  windows, so differences between groups, checkpoints and models are paired;
- the greedy (argmax) prediction at every position of the Fig 10 prompt, and the share of
  held-out positions whose greedy prediction is a function token.

Evaluations are cached per checkpoint (functok.cache.cached_dir("loss_eval", ...)). Hub checkpoints
(Pythia revisions `step{N}`) are downloaded one at a time into a temporary folder, evaluated through
the same local-folder path, and deleted afterwards unless `keep_checkpoints`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import ParamError
from .loss_groups import GROUPS

KEYS = (*GROUPS, "all")
EVAL_VERSION = 1
CONTENT_NEXT = ("function->content", "content->content")
FUNCTION_NEXT = ("function->function", "content->function")

# Pythia's public checkpoints (revisions step{N}): step 0, 10 log-spaced early steps, then every 1000
# up to 143000; the same list as TransformerLens's PYTHIA_CHECKPOINTS (tests check it), written out
# here so that validating a checkpoint_index needs no heavy import.
PYTHIA_STEPS = [0, *[2 ** i for i in range(10)], *range(1000, 143_001, 1000)]
PYTHIA_TOKENS_PER_STEP = 1024 * 2048  # batch 1024 sequences of 2048 tokens


# ---------------------------------------------------------------------------------------------
# Which models and checkpoints


@dataclass
class ModelSpec:
    """One model of the chapter and the checkpoints to evaluate."""

    name: str
    kind: str  # "embedded" | "run" (a functok run folder) | "checkpoint" (one HF folder) | "hub"
    source: str  # run folder, checkpoint folder or hub name
    checkpoints: list[dict] = field(default_factory=list)  # {"step", "tokens_seen", "checkpoint", "revision"?}
    run_dir: Path | None = None


def is_hub(spec: str) -> bool:
    return spec != "embedded" and not Path(spec).expanduser().exists()


def hub_revisions(name: str, checkpoint_index: list[int], checkpoint_steps: list[int]) -> list[dict]:
    """Checkpoints of a hub model: [{"step", "tokens_seen", "checkpoint", "revision"}]; the final model
    ("main") when neither list is given. Only Pythia's `step{N}` revisions are known."""
    if not checkpoint_index and not checkpoint_steps:
        return [{"step": None, "tokens_seen": None, "checkpoint": f"{name}@main", "revision": "main"}]
    if not name.startswith("EleutherAI/pythia"):
        raise ParamError(f"checkpoint_steps: hub model '{name}' has no known checkpoint revisions; expected a "
                         f"Pythia model (EleutherAI/pythia-*, revisions step{{N}}) or empty checkpoint lists")
    steps = set(int(s) for s in checkpoint_steps)
    for i in checkpoint_index:
        if not 0 <= i < len(PYTHIA_STEPS):
            raise ParamError(f"checkpoint_index: got {i}; expected 0..{len(PYTHIA_STEPS) - 1} (Pythia has "
                             f"{len(PYTHIA_STEPS)} checkpoints)")
        steps.add(PYTHIA_STEPS[i])
    for s in steps:
        if s not in PYTHIA_STEPS:
            raise ParamError(f"checkpoint_steps: Pythia has no checkpoint at step {s}; expected 0, a power of 2 up "
                             f"to 512, or a multiple of 1000 up to 143000")
    return [{"step": s, "tokens_seen": s * PYTHIA_TOKENS_PER_STEP, "checkpoint": f"{name}@step{s}",
             "revision": f"step{s}"} for s in sorted(steps)]


def check(cfg) -> None:
    """Cheap checks beyond functok.config's, before any heavy work (hub checkpoints resolvable, one
    single-token encoding per next token is checked later against each tokenizer)."""
    for m in cfg.models:
        if is_hub(m):
            hub_revisions(m, cfg.checkpoint_index, cfg.checkpoint_steps)
    if not cfg.models:
        raise ParamError("models: got []; expected at least one model ('embedded', a folder or a hub name)")


def resolve_models(cfg) -> list[ModelSpec]:
    """The chapter's models: 'embedded' expands to the preset's pre-trained pair (trained on first use)."""
    from .cache import relpath
    from .pretrain import checkpoints, models

    out: list[ModelSpec] = []
    for m in cfg.models:
        if m == "embedded":
            for name, run in models(cfg.preset).items():
                out.append(ModelSpec(name, "embedded", relpath(run), _rel_ckpts(checkpoints(run)), run))
        elif is_hub(m):
            out.append(ModelSpec(m.split("/")[-1], "hub", m, hub_revisions(m, cfg.checkpoint_index, cfg.checkpoint_steps)))
        else:
            p = Path(m).expanduser().resolve()
            if (p / "checkpoints.json").exists():
                out.append(ModelSpec(p.name, "run", str(p), _rel_ckpts(checkpoints(p)), p))
            elif (p / "config.json").exists():
                out.append(ModelSpec(p.name, "checkpoint", str(p),
                                     [{"step": None, "tokens_seen": None, "checkpoint": relpath(p)}]))
            else:
                raise ParamError(f"models: '{m}' is neither a functok run folder (checkpoints.json) nor a Hugging "
                                 f"Face checkpoint folder (config.json)")
    names = [s.name for s in out]
    for i, s in enumerate(out):  # unique names
        if names.count(s.name) > 1:
            s.name = f"{s.name}#{i}"
    return out


def _rel_ckpts(rows: list[dict]) -> list[dict]:
    from .cache import relpath

    return [{**r, "checkpoint": relpath(r["checkpoint"])} for r in rows]


# ---------------------------------------------------------------------------------------------
# Function tokens and held-out windows per model


def tokenizer_source(spec: ModelSpec) -> str:
    """A local folder holding the model's tokenizer: its first checkpoint folder or, for a hub model, its
    tokenizer files downloaded once (a few MB, kept) from the last revision evaluated."""
    if spec.kind == "hub":
        from .models import hub_checkpoint

        return str(hub_checkpoint(spec.source, spec.checkpoints[-1]["revision"], "tokenizer"))
    from .config import ROOT

    p = Path(spec.checkpoints[0]["checkpoint"])
    return str(p if p.is_absolute() else ROOT / p)


def function_token_source(spec: ModelSpec, cfg) -> tuple[list[int], str]:
    """(function-token ids, file). For a functok run: the file its training log used (run/function_tokens.json);
    otherwise the coverage rule on `cfg.corpus` with the model's tokenizer (functok.function_tokens)."""
    from .cache import relpath
    from .function_tokens import function_token_file, load_function_token_ids

    if spec.run_dir is not None and (spec.run_dir / "function_tokens.json").exists():
        f = spec.run_dir / "function_tokens.json"
        return [int(i) for i in json.loads(f.read_text())["ids"]], relpath(f)
    f = function_token_file(tokenizer_source(spec), cfg.corpus, cfg.preset, cfg.coverage_threshold, cfg.max_documents)
    return load_function_token_ids(f), relpath(f)


def heldout_windows(spec: ModelSpec, cfg) -> Path:
    """Held-out token windows (save_to_disk folder, column input_ids, BOS first in each document).

    The embedded models: exactly `functok.pretrain.token_windows(preset, "heldout")`. Other models: the
    same documents (or `cfg.corpus`'s held-out split) tokenized by the model's own tokenizer."""
    from .pretrain import token_windows

    if spec.kind == "embedded" or (spec.kind == "run" and _same_tokenizer(spec, cfg)):
        return token_windows(cfg.preset, "heldout")
    return tokenized_windows(tokenizer_source(spec), cfg)


def _same_tokenizer(spec: ModelSpec, cfg) -> bool:
    from .embedded import tokenizer_dir

    mine = Path(tokenizer_source(spec)) / "tokenizer.json"
    theirs = tokenizer_dir(cfg.preset) / "tokenizer.json"
    return mine.exists() and theirs.exists() and mine.read_bytes() == theirs.read_bytes() and \
        _context_size(cfg) == _preset_context(cfg)


def _preset_context(cfg) -> int:
    from .config import pretrain_config

    return pretrain_config(cfg.preset).context_size


def _context_size(cfg) -> int:
    return cfg.context_size or _preset_context(cfg)


def tokenized_windows(tokenizer: str, cfg) -> Path:
    """Windows of `context_size` tokens from the held-out documents, tokenized with `tokenizer`."""
    from .cache import cached_dir, relpath
    from .config import pretrain_config
    from .embedded import corpus_params

    pcfg = pretrain_config(cfg.preset)
    ctx = _context_size(cfg)
    tok_key = relpath(tokenizer) if Path(tokenizer).exists() else tokenizer
    for f in sorted(Path(tokenizer).glob("tokenizer*")) if Path(tokenizer).is_dir() else []:  # key by content too
        tok_key += f":{f.name}:" + hashlib.sha1(f.read_bytes()).hexdigest()[:12]
    docs_key = corpus_params(pcfg) if cfg.corpus == "embedded" else \
        {"corpus": cfg.corpus, "max_documents": cfg.max_documents, "heldout_fraction": pcfg.heldout_fraction}
    params = {"tokenizer": tok_key, **docs_key, "split": "heldout", "context_size": ctx, "bos": True}

    def build(tmp: Path) -> None:
        from transformers import AutoTokenizer

        from . import windows

        tok = AutoTokenizer.from_pretrained(tokenizer)
        docs = windows.split_documents_of(cfg.corpus, cfg.preset, cfg.max_documents, "heldout")
        windows.save(tmp, *windows.cut(tok, docs["text"], ctx, what="held-out documents"))

    return cached_dir("windows", params, build) / "windows"


def next_token_ids(tok, tokens: list[str]) -> dict[str, int | None]:
    """Token id of each of `next_tokens` for this tokenizer; None where it is not a single token."""
    out = {}
    for t in tokens:
        ids = tok.encode(t, add_special_tokens=False)
        out[t] = ids[0] if len(ids) == 1 else None
    return out


# ---------------------------------------------------------------------------------------------
# Evaluating one checkpoint (through TransformerLens)


def evaluate_model(model, windows, function_ids: list[int], special_ids: list[int], next_ids: list[int],
                   batch_size: int = 8, device: str = "cpu") -> dict[str, np.ndarray]:
    """Per-window sums and counts of the loss: "sums"/"counts" [n_windows, 5] (GROUPS then all),
    "next_sums"/"next_counts" [n_windows, len(next_ids)], "pred_function" and "correct" [n_windows]
    (greedy predictions that are function tokens / equal the next token), "n_pred" [n_windows].

    `model` is a TransformerLens bridge (or HookedTransformer): logits come from
    `model(tokens, return_type="logits")`."""
    import torch

    from .function_tokens import function_mask
    from .pretrain import prediction_groups

    x_all = windows
    N, T = x_all.shape
    V = int(model.cfg.d_vocab)
    is_fn = function_mask(V, function_ids)
    is_sp = function_mask(V, special_ids)
    nxt = torch.as_tensor(next_ids, dtype=torch.long)
    K = len(next_ids)
    out = {"sums": np.zeros((N, 5)), "counts": np.zeros((N, 5)), "next_sums": np.zeros((N, K)),
           "next_counts": np.zeros((N, K)), "pred_function": np.zeros(N), "correct": np.zeros(N),
           "n_pred": np.full(N, T - 1, dtype=np.float64)}
    with torch.no_grad():
        for i in range(0, N, batch_size):
            x = x_all[i:i + batch_size].to(device)
            b = x.shape[0]
            logits = model(x, return_type="logits").float()  # [b, T, V]
            y = x[:, 1:]
            # cross-entropy without a second [b, T, V] tensor: logsumexp minus the target's logit
            per = (torch.logsumexp(logits, -1)[:, :-1] - logits[:, :-1].gather(-1, y.unsqueeze(-1)).squeeze(-1))
            per = per.double().cpu()  # [b, T-1]
            pred = logits[:, :-1].argmax(-1).cpu()
            del logits
            x, y = x.cpu(), y.cpu()
            g = prediction_groups(x, is_fn, is_sp)  # 0..3 groups, 4 special
            row = torch.arange(b).unsqueeze(1).expand_as(g)
            s = torch.zeros(b, 5, dtype=torch.float64).index_put_((row, g), per, accumulate=True)
            c = torch.zeros(b, 5, dtype=torch.float64).index_put_((row, g), torch.ones_like(per), accumulate=True)
            s[:, 4], c[:, 4] = per.sum(1), T - 1  # column 4 becomes "all" (every prediction)
            out["sums"][i:i + b], out["counts"][i:i + b] = s.numpy(), c.numpy()
            if K:
                hit = (y.unsqueeze(-1) == nxt).double()  # [b, T-1, K]
                out["next_sums"][i:i + b] = (hit * per.unsqueeze(-1)).sum(1).numpy()
                out["next_counts"][i:i + b] = hit.sum(1).numpy()
            out["pred_function"][i:i + b] = is_fn[pred].sum(1).numpy()
            out["correct"][i:i + b] = (pred == y).sum(1).numpy()
    return out


def greedy(model, tok, text: str, function_ids: list[int], device: str = "cpu") -> list[dict]:
    """Greedy next-token prediction at every position of `text` (BOS prepended, as in training):
    [{"position", "token", "prediction", "prediction_is_function", "token_is_function", "next", "correct"}]."""
    import torch

    ids = tok(text, add_special_tokens=False)["input_ids"]
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    x = torch.tensor([[bos, *ids]], device=device)
    with torch.no_grad():
        pred = model(x, return_type="logits")[0, 1:].argmax(-1).tolist()
    fn = set(int(i) for i in function_ids)
    rows = []
    for i, t in enumerate(ids):
        nxt = ids[i + 1] if i + 1 < len(ids) else None
        rows.append({"position": i, "token": tok.decode([t]), "prediction": tok.decode([pred[i]]),
                     "prediction_id": int(pred[i]), "prediction_is_function": pred[i] in fn,
                     "token_is_function": t in fn, "next": tok.decode([nxt]) if nxt is not None else None,
                     "correct": nxt is not None and pred[i] == nxt})
    return rows


def _local_key(folder: Path) -> str:
    """A local checkpoint folder's identity for cache keys: path plus weight files' sizes and times."""
    from .cache import relpath

    parts = [relpath(folder)]
    for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
    return "|".join(parts)


def checkpoint_eval(spec: ModelSpec, ck: dict, windows_path: Path, function_ids: list[int], cfg,
                    timings: list | None = None) -> dict:
    """Evaluation of one checkpoint (cached): {"arrays": {...per-window arrays}, "greedy": [...],
    "next_ids": {...}, "n_layers", "seconds"}. Hub checkpoints are downloaded, evaluated and deleted
    (unless cfg.keep_checkpoints)."""
    import time

    from .cache import cache_path, cached_dir, relpath
    from .config import ROOT

    if spec.kind == "hub":
        ident = ck["checkpoint"]
        local = None
    else:
        p = Path(ck["checkpoint"])
        local = p if p.is_absolute() else ROOT / p
        ident = _local_key(local)
    fn_hash = hashlib.sha1(json.dumps(sorted(function_ids)).encode()).hexdigest()[:12]
    params = {"version": EVAL_VERSION, "checkpoint": ident, "windows": relpath(windows_path),
              "max_windows": cfg.max_windows, "function_ids": fn_hash, "next_tokens": list(cfg.next_tokens),
              "prompt": cfg.prompt}

    def build(tmp: Path) -> None:
        nonlocal local
        t0 = time.perf_counter()
        download = None
        if spec.kind == "hub":
            from .models import hub_checkpoint

            local = download = hub_checkpoint(spec.source, ck["revision"])
        try:
            result = _evaluate_folder(local, windows_path, function_ids, cfg)
        finally:
            if download is not None and not cfg.keep_checkpoints:
                shutil.rmtree(download, ignore_errors=True)
        np.savez_compressed(tmp / "arrays.npz", **result.pop("arrays"))
        result["seconds"] = round(time.perf_counter() - t0, 3)
        result["checkpoint_folder"] = relpath(download) if download is not None and cfg.keep_checkpoints else None
        (tmp / "eval.json").write_text(json.dumps(result, indent=1))

    was_cached = (cache_path("loss_eval", params) / "params.json").exists()
    d = cached_dir("loss_eval", params, build)
    out = json.loads((d / "eval.json").read_text())
    with np.load(d / "arrays.npz") as z:
        out["arrays"] = {k: z[k] for k in z.files}
    out["cache"] = relpath(d)
    if timings is not None:
        timings.append({"model": spec.name, "checkpoint": ck["checkpoint"], "seconds": out["seconds"], "cached": was_cached,
                        "evaluation": out["cache"]})
    return out


def _evaluate_folder(folder: Path, windows_path: Path, function_ids: list[int], cfg) -> dict:
    from transformers.utils import logging as hf_logging

    from .models import load_model
    from .pretrain import load_windows

    import torch

    from .pretrain import n_threads

    hf_logging.disable_progress_bar()  # "Loading weights" bars at every checkpoint drown the page
    torch.set_num_threads(n_threads())  # FUNCTOK_THREADS=1 on a busy machine, as for training
    model = load_model(folder, device=cfg.device)
    tok = model.tokenizer
    nid = next_token_ids(tok, list(cfg.next_tokens))
    x = load_windows(windows_path)
    if cfg.max_windows:
        x = x[: cfg.max_windows]
    specials = sorted(set(tok.all_special_ids))
    ids = [i for i in nid.values() if i is not None]
    arrays = evaluate_model(model, x, function_ids, specials, ids, cfg.batch_size, cfg.device)
    return {"arrays": arrays, "greedy": greedy(model, tok, cfg.prompt, function_ids, cfg.device),
            "next_ids": nid, "n_layers": int(model.cfg.n_layers), "n_windows": int(x.shape[0]),
            "context_size": int(x.shape[1])}


# ---------------------------------------------------------------------------------------------
# Statistics


def bootstrap_index(n: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n] window indices resampled with replacement; the same for every evaluation on the
    same number of windows (paired comparisons)."""
    return np.random.default_rng([seed, n]).integers(0, n, size=(n_boot, n))


def ratio_means(sums: np.ndarray, counts: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
    """sum / count per column; with idx [B, n], one row per bootstrap resample ([B, cols])."""
    if idx is None:
        c = counts.sum(0)
        return np.where(c > 0, sums.sum(0) / np.maximum(c, 1), np.nan)
    s = sums[idx].sum(1)
    c = counts[idx].sum(1)
    return np.where(c > 0, s / np.maximum(c, 1), np.nan)


def interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0."""
    a = (1 - level) / 2
    return np.nanquantile(samples, a, axis=0), np.nanquantile(samples, 1 - a, axis=0)


def convergence_step(steps, values, fraction: float):
    """First step after which the loss stays within `fraction` of its total decrease of its final value:
    min s such that L(t) - L_final <= fraction * (L_first - L_final) for every t >= s. None if the loss
    did not decrease."""
    steps, v = list(steps), np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    steps, v = [s for s, k in zip(steps, ok) if k], v[ok]
    if v.size < 2 or not v[0] > v[-1]:
        return None
    good = (v - v[-1]) <= fraction * (v[0] - v[-1])
    bad = np.nonzero(~good)[0]
    return steps[int(bad[-1]) + 1] if bad.size else steps[0]


def smooth_log(log, window: int):
    """The training log's loss columns as a centred rolling mean over `window` steps."""
    cols = ["loss", *GROUPS]
    out = log[["step", "tokens_seen"]].copy()
    for c in cols:
        out[c] = log[c].astype(float).rolling(window, center=True, min_periods=1).mean()
    return out.rename(columns={"loss": "all"})


# ---------------------------------------------------------------------------------------------
# The chapter


def analyze(cfg, progress: bool = True) -> dict:
    """Everything the chapter reports. Returns {"results", "claims", "data", "artifacts", "models":
    {name: {"spec", "frame", "next_frame", "log", "greedy", ...}}, "scaling", "timings"}."""
    import pandas as pd
    from tqdm import tqdm

    from .cache import relpath

    check(cfg)
    specs = resolve_models(cfg)
    per: dict[str, dict] = {}
    timings: list[dict] = []
    bar = tqdm(total=sum(len(s.checkpoints) for s in specs), desc="evaluating checkpoints", unit=" ckpt",
               mininterval=3, disable=not progress)
    for spec in specs:
        fn_ids, fn_file = function_token_source(spec, cfg)
        win = heldout_windows(spec, cfg)
        evals = []
        for ck in spec.checkpoints:
            evals.append(checkpoint_eval(spec, ck, win, fn_ids, cfg, timings))
            bar.update(1)
        per[spec.name] = _summarize(spec, evals, fn_ids, fn_file, win, cfg)
    bar.close()

    names = list(per)
    results: dict[str, Any] = {
        "models": {n: per[n]["result"] for n in names},
        "function_token_ids": {n: per[n]["function_ids"] for n in names},
        "groups": list(KEYS),
        "next_tokens": list(cfg.next_tokens),
        "ci": {"method": "percentile bootstrap over held-out windows (cluster bootstrap; the same resamples for "
                         "every checkpoint and model on the same windows)", "level": cfg.ci_level,
               "n_bootstrap": cfg.n_bootstrap},
        "greedy": {n: per[n]["greedy"] for n in names},
        "prompt": cfg.prompt,
    }
    scaling = scaling_table(per, cfg) if len(per) >= 2 else None
    if scaling is not None:
        results["scaling"] = scaling["rows"]
        results["scaling_models"] = scaling["models"]
    results["convergence"] = {n: per[n]["convergence"] for n in names}
    results["first_few_rule"] = (f"checkpoints before {cfg.settle_fraction:.0%} of the model's training steps "
                                 f"(and any checkpoint of unknown step) are 'the first few'")
    results["eval_seconds"] = timings
    claims = make_claims(per, scaling, cfg)

    first = per[names[0]]
    data = {"tokens": relpath(first["windows"]), "windows_used": first["n_windows"],
            "tokens_by_model": {n: relpath(per[n]["windows"]) for n in names},
            "windows_used_by_model": {n: per[n]["n_windows"] for n in names},
            "documents": _documents_path(cfg), "max_windows": cfg.max_windows,
            "note": "the first windows_used rows of each tokens folder were evaluated (all when max_windows is 0)"}
    artifacts: dict[str, Any] = {}
    for n in names:
        p = per[n]
        artifacts[f"function_tokens[{n}]"] = p["function_token_file"]
        artifacts[f"checkpoints[{n}]"] = [c["checkpoint"] for c in p["result"]["checkpoints"]]
        if p["spec"].run_dir is not None:
            artifacts[f"train_log[{n}]"] = relpath(p["spec"].run_dir / "train_log.jsonl")
    artifacts["evaluations"] = [t["evaluation"] for t in timings]  # per-window sums and counts (arrays.npz)
    return {"results": results, "claims": claims, "data": data, "artifacts": artifacts, "models": per,
            "scaling": scaling, "timings": pd.DataFrame(timings)}


def _documents_path(cfg) -> str:
    if cfg.corpus != "embedded":
        return cfg.corpus
    from .cache import relpath
    from .embedded import corpus_dir

    return relpath(corpus_dir(cfg.preset) / "heldout")


def _summarize(spec: ModelSpec, evals: list[dict], fn_ids: list[int], fn_file: str, win: Path, cfg) -> dict:
    """Means, counts and intervals per checkpoint; frames for the plots; convergence."""
    import pandas as pd

    n_win = evals[0]["n_windows"]
    idx = bootstrap_index(n_win, cfg.n_bootstrap, cfg.seed)
    rows, next_rows, checkpoints, boots = [], [], [], []
    for ck, ev in zip(spec.checkpoints, evals):
        a = ev["arrays"]
        mean = ratio_means(a["sums"], a["counts"])
        bs = ratio_means(a["sums"], a["counts"], idx)
        lo, hi = interval(bs, cfg.ci_level)
        boots.append(bs)
        nid = [t for t, i in ev["next_ids"].items() if i is not None]
        nmean = ratio_means(a["next_sums"], a["next_counts"]) if nid else np.zeros(0)
        nbs = ratio_means(a["next_sums"], a["next_counts"], idx) if nid else np.zeros((cfg.n_bootstrap, 0))
        nlo, nhi = interval(nbs, cfg.ci_level) if nid else (np.zeros(0), np.zeros(0))
        npred = a["n_pred"].sum()
        entry = {"step": ck["step"], "tokens_seen": ck["tokens_seen"], "checkpoint": ck["checkpoint"],
                 "groups": {k: float(mean[j]) for j, k in enumerate(KEYS)},
                 "counts": {k: int(a["counts"][:, j].sum()) for j, k in enumerate(KEYS)},
                 "ci": {k: [float(lo[j]), float(hi[j])] for j, k in enumerate(KEYS)},
                 "next_tokens": {t: float(nmean[j]) for j, t in enumerate(nid)},
                 "next_counts": {t: int(a["next_counts"][:, j].sum()) for j, t in enumerate(nid)},
                 "next_ci": {t: [float(nlo[j]), float(nhi[j])] for j, t in enumerate(nid)},
                 "greedy_function_share": float(a["pred_function"].sum() / npred),
                 "greedy_accuracy": float(a["correct"].sum() / npred)}
        checkpoints.append(entry)
        for j, k in enumerate(KEYS):
            rows.append({"model": spec.name, "step": ck["step"], "tokens_seen": ck["tokens_seen"], "group": k,
                         "loss": float(mean[j]), "lo": float(lo[j]), "hi": float(hi[j]),
                         "count": int(a["counts"][:, j].sum())})
        for j, t in enumerate(nid):
            next_rows.append({"model": spec.name, "step": ck["step"], "next token": t, "loss": float(nmean[j]),
                              "lo": float(nlo[j]), "hi": float(nhi[j]), "count": int(a["next_counts"][:, j].sum())})
        next_rows.append({"model": spec.name, "step": ck["step"], "next token": "average (all)",
                          "loss": float(mean[4]), "lo": float(lo[4]), "hi": float(hi[4]),
                          "count": int(a["counts"][:, 4].sum())})
    frame = pd.DataFrame(rows)
    next_frame = pd.DataFrame(next_rows)
    log = None
    if spec.run_dir is not None and (spec.run_dir / "train_log.jsonl").exists():
        from .pretrain import train_log

        raw = train_log(spec.run_dir)
        if len(raw):
            log = {"raw": raw, "smooth": smooth_log(raw, cfg.log_smoothing)}
    steps = [c["step"] for c in checkpoints]
    final_step = max((s for s in steps if s is not None), default=None)
    result = {"kind": spec.kind, "source": spec.source, "n_layers": evals[-1]["n_layers"],
              "function_token_file": fn_file, "n_function_tokens": len(fn_ids), "windows": _rel(win),
              "n_windows": n_win, "context_size": evals[0]["context_size"],
              "next_token_ids": evals[-1]["next_ids"], "checkpoints": checkpoints}
    out = {"spec": spec, "result": result, "frame": frame, "next_frame": next_frame, "log": log,
           "greedy": {str(c["step"]): ev["greedy"] for c, ev in zip(checkpoints, evals)},
           "function_ids": [int(i) for i in fn_ids], "function_token_file": fn_file, "windows": win,
           "n_windows": n_win, "boots": boots, "idx": idx, "final_step": final_step, "evals": evals}
    out["convergence"] = convergence(out, cfg)
    return out


def _rel(p) -> str:
    from .cache import relpath

    return relpath(p)


def convergence(p: dict, cfg) -> dict:
    """Convergence steps (rule: functok.loss_split.convergence_step with cfg.converge_fraction) of the
    held-out next-token losses and of the average at checkpoints, and of the four groups and the
    average in the smoothed training log."""
    cks = [c for c in p["result"]["checkpoints"] if c["step"] is not None]
    out: dict[str, Any] = {"rule": f"first step after which the loss stays within {cfg.converge_fraction:.0%} of its "
                                   f"total decrease (first to last value) of its final value",
                           "final_step": p["final_step"], "heldout": {}, "train_log": {}}
    if len(cks) >= 2:
        steps = [c["step"] for c in cks]
        for t in cks[-1]["next_tokens"]:
            out["heldout"][t] = convergence_step(steps, [c["next_tokens"].get(t, np.nan) for c in cks], cfg.converge_fraction)
        for k in KEYS:
            out["heldout"][k] = convergence_step(steps, [c["groups"][k] for c in cks], cfg.converge_fraction)
    if p["log"] is not None:
        sm, raw = p["log"]["smooth"], p["log"]["raw"]
        for k in KEYS:
            col = "loss" if k == "all" else k
            vals = sm[k].to_numpy(dtype=float).copy()
            vals[0] = float(raw[col].iloc[0])  # the first step unsmoothed: the start of the decrease
            out["train_log"][k] = convergence_step(list(sm["step"]), vals, cfg.converge_fraction)
    return out


def scaling_table(per: dict, cfg) -> dict:
    """Final-checkpoint group losses of the shallowest and the deepest model and their difference
    (shallow - deep) with paired bootstrap intervals, beside the paper's table."""
    from .paper import numbers

    names = sorted(per, key=lambda n: (per[n]["result"]["n_layers"], list(per).index(n)))
    small, large = names[0], names[-1]
    ps, pl = per[small], per[large]
    paired = ps["n_windows"] == pl["n_windows"] and str(ps["windows"]) == str(pl["windows"])
    bs_s, bs_l = ps["boots"][-1], pl["boots"][-1]
    if not paired:  # independent resamples for different windows
        a = pl["evals"][-1]["arrays"]
        bs_l = ratio_means(a["sums"], a["counts"], bootstrap_index(pl["n_windows"], cfg.n_bootstrap, cfg.seed + 1))
    diff = bs_s - bs_l
    lo, hi = interval(diff, cfg.ci_level)
    paper = numbers()["loss_split"]["final_losses"]
    rows = []
    for j, k in enumerate(KEYS):
        gs, gl = ps["result"]["checkpoints"][-1]["groups"][k], pl["result"]["checkpoints"][-1]["groups"][k]
        r = {"group": k, "shallow": gs, "deep": gl, "difference": gs - gl, "difference_ci": [float(lo[j]), float(hi[j])]}
        if k in paper:
            r.update({"paper_shallow": paper[k][0], "paper_deep": paper[k][1],
                      "paper_difference": round(paper[k][0] - paper[k][1], 4)})
        rows.append(r)
    cj = [KEYS.index(k) for k in CONTENT_NEXT]
    fj = [KEYS.index(k) for k in FUNCTION_NEXT]
    margin = diff[:, cj].min(1) - diff[:, fj].max(1)
    mlo, mhi = interval(margin, cfg.ci_level)
    point = min(rows[j]["difference"] for j in cj) - max(rows[j]["difference"] for j in fj)
    return {"rows": rows, "models": {"shallow": small, "deep": large, "shallow_layers": ps["result"]["n_layers"],
                                     "deep_layers": pl["result"]["n_layers"], "paired": paired},
            "margin": {"point": float(point), "ci": [float(mlo), float(mhi)]}, "diff_boot": diff}


# ---------------------------------------------------------------------------------------------
# Claims


def _fmt_step(s, final) -> str:
    if s is None:
        return "never"
    return f"{s}" + (f" ({s / final:.1%})" if final else "")


def make_claims(per: dict, scaling: dict | None, cfg) -> list[dict]:
    from .paper import numbers
    from .results import claim

    paper = numbers()["loss_split"]
    fc = KEYS.index("function->content")
    others = [KEYS.index(k) for k in GROUPS if k != "function->content"]
    claims = []
    for name, p in per.items():
        cks = p["result"]["checkpoints"]
        final = p["final_step"]
        # 1. function->content is the highest group at every checkpoint after the first few
        tested, ok_ci, ok_point, fails = [], 0, 0, []
        for c, bs in zip(cks, p["boots"]):
            if c["step"] is None or final is None or c["step"] < cfg.settle_fraction * final:
                continue
            tested.append(c["step"])
            d = bs[:, [fc]] - bs[:, others]  # [B, 3] f->c minus each other group
            lo, _ = interval(d, cfg.ci_level)
            point = np.array([c["groups"]["function->content"] - c["groups"][GROUPS[j]] for j in others])
            ok_point += bool((point > 0).all())
            ok_ci += bool((lo > 0).all())
            if not (point > 0).all():
                fails.append(c["step"])
        log_note = ""
        if p["log"] is not None and final:
            sm = p["log"]["smooth"]
            sm = sm[sm["step"] >= cfg.settle_fraction * final]
            top = sm[list(GROUPS)].idxmax(axis=1)
            log_note = f"; training log (smoothed over {cfg.log_smoothing} steps): highest at {(top == 'function->content').mean():.0%} of {len(sm)} steps"
        n = len(tested)
        verdict = "inconclusive" if n == 0 else ("holds" if ok_ci == n else ("fails" if ok_point < n else "inconclusive"))
        claims.append(claim(
            f"function_content_highest[{name}]",
            f"function->content has the highest loss of the four groups at every checkpoint after the first few ({name})",
            "highest throughout (Fig 9a/9b)",
            f"{ok_point}/{n} checkpoints by the mean, {ok_ci}/{n} with the {cfg.ci_level:.0%} interval of every difference above 0",
            verdict,
            f"checkpoints at steps {tested}; {results_first_few(cfg)}. Holds if at every tested checkpoint the paired "
            f"bootstrap interval of (function->content minus each other group) lies above 0; fails if any mean is not "
            f"the highest" + (f" (steps {fails})" if fails else "") + "; inconclusive otherwise" + log_note))
        # 2. function tokens (as next tokens) converge first
        conv = p["convergence"]
        held = conv["heldout"]
        chosen = [t for t in cfg.next_tokens if held.get(t) is not None]
        avg = held.get("all")
        if chosen and avg is not None:
            earlier = [t for t in chosen if held[t] < avg]
            later = [t for t in chosen if held[t] > avg]
            verdict = "holds" if len(earlier) == len(chosen) else ("fails" if later else "inconclusive")
            ours = ", ".join(f"{t!r} {_fmt_step(held[t], final)}" for t in chosen) + f"; average {_fmt_step(avg, final)}"
        else:
            verdict, ours = "inconclusive", "not measurable (fewer than two checkpoints with steps, or no decrease)"
        pstep = paper["function_tokens_converged_by_step"]
        claims.append(claim(
            f"function_tokens_converge_first[{name}]",
            f"The losses of predicting {', '.join(repr(t) for t in cfg.next_tokens)} converge before the average loss ({name})",
            f"converged within about {pstep:,} of 130,000 steps ({pstep / 130000:.1%}), before the average (Fig 9c)", ours,
            verdict,
            f"held-out checkpoints; {conv['rule']}. Holds if every chosen token converges at an earlier checkpoint than "
            f"the average; fails if any converges later; inconclusive on ties"))
        tl = conv["train_log"]
        if tl and all(tl.get(k) is not None for k in GROUPS):
            fn_last = max(tl[k] for k in FUNCTION_NEXT)
            ct_first = min(tl[k] for k in CONTENT_NEXT)
            verdict = "holds" if fn_last < ct_first else ("fails" if max(tl[k] for k in CONTENT_NEXT) < min(tl[k] for k in FUNCTION_NEXT) else "inconclusive")
            claims.append(claim(
                f"function_next_groups_converge_first[{name}]",
                f"In the training log, the groups predicting a function token converge before the groups predicting a content token ({name})",
                "function tokens are learned first (Fig 9c)",
                ", ".join(f"{k} {_fmt_step(tl[k], final)}" for k in GROUPS),
                verdict,
                f"every logged step, centred rolling mean over {cfg.log_smoothing} steps; {conv['rule']}. Holds if both "
                f"function-next groups converge before both content-next groups; fails if both content-next groups "
                f"converge first; inconclusive otherwise"))
        # 3. beyond the paper: Fig 10's phases, measured on held-out positions
        shares = [c["greedy_function_share"] for c in cks]
        if len(shares) >= 3:
            peak_i = int(np.argmax(shares[:-1]))
            ok = shares[peak_i] >= 0.9 and shares[peak_i] > shares[-1]
            claims.append(claim(
                f"greedy_function_phase[{name}]",
                f"Beyond the paper (Fig 10 measured): on the way from noise to phrases a checkpoint predicts almost only function tokens ({name})",
                "step 3k predicts only function tokens (Fig 10)",
                f"peak {shares[peak_i]:.0%} at step {cks[peak_i]['step']}, final {shares[-1]:.0%}, step 0 {shares[0]:.0%}",
                "holds" if ok else "fails",
                "share of held-out positions whose greedy prediction is a function token; holds if some checkpoint before "
                "the last reaches >= 90% and the last checkpoint's share is lower"))
    # 4. scaling: gains and the order of the final losses
    if scaling is not None:
        rows = {r["group"]: r for r in scaling["rows"]}
        m = scaling["models"]
        margin = scaling["margin"]
        point_ok = margin["point"] > 0
        verdict = "holds" if point_ok and margin["ci"][0] > 0 else ("fails" if not point_ok else "inconclusive")
        claims.append(claim(
            "deeper_gain_on_content_next",
            f"The deeper model's gain is largest on the content-next groups ({m['shallow']} vs {m['deep']})",
            "gains: f->c 0.61, c->c 0.61 vs c->f 0.26, f->f 0.25",
            ", ".join(f"{k} {rows[k]['difference']:.3f}" for k in (*CONTENT_NEXT, *FUNCTION_NEXT)),
            verdict,
            f"gain = shallow - deep final loss; margin = smaller content-next gain minus larger function-next gain = "
            f"{margin['point']:.3f}, {cfg.ci_level:.0%} {'paired ' if m['paired'] else ''}bootstrap interval "
            f"[{margin['ci'][0]:.3f}, {margin['ci'][1]:.3f}]. Holds if the interval lies above 0; fails if the margin is "
            f"not positive; inconclusive otherwise"))
        all_lo = [rows[k]["difference_ci"][0] for k in GROUPS]
        claims.append(claim(
            "deeper_lower_every_group",
            f"The deeper model's final loss is lower in every group ({m['shallow']} vs {m['deep']})",
            "lower in all four (scaling table)",
            ", ".join(f"{k} {rows[k]['difference']:+.3f}" for k in GROUPS),
            "holds" if min(all_lo) > 0 else ("fails" if min(rows[k]["difference"] for k in GROUPS) <= 0 else "inconclusive"),
            f"holds if every difference's {cfg.ci_level:.0%} bootstrap interval lies above 0; fails if any difference is not positive"))
        paper_order = sorted(paper["final_losses"], key=lambda k: paper["final_losses"][k][1])
        ours_order = {n: sorted(GROUPS, key=lambda k: rows[k][n]) for n in ("shallow", "deep")}
        same = all(o == paper_order for o in ours_order.values())
        claims.append(claim(
            "final_group_order",
            "The four final group losses are ordered as in the paper (lowest to highest)",
            " < ".join(paper_order), " < ".join(ours_order["deep"]) + ("" if ours_order["deep"] == ours_order["shallow"]
                                                                          else f" (shallow: {' < '.join(ours_order['shallow'])})"),
            "holds" if same else "fails", "holds if both models' final means are in the paper's order"))
    return claims


def results_first_few(cfg) -> str:
    return f"'the first few' = checkpoints before {cfg.settle_fraction:.0%} of training"
