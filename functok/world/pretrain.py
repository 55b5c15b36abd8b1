"""Pre-training the embedded default: two Llama-architecture models (same width, two depths) trained
from scratch on the preset's corpus, with log-spaced checkpoints and a per-step loss log.

Public API
- `models(preset) -> {name: run_dir}`: the preset's models, trained on first use (`llama-{depth}L`).
- `train_models(cfg) -> {name: run_dir}`: the same for an already validated `PretrainConfig`.
- `embedded_checkpoint(preset) -> (checkpoint, run)`: the deeper model's final checkpoint.
- `checkpoint_schedule(n_steps, n_checkpoints) -> [int]`: the log-spaced checkpoint steps (with `n_steps`,
  `batch_indices` and `lr_at`, from `functok.world.schedule`).
- `lm_loss(model, input_ids)`, `train_step(...)`.
Reading a finished run (checkpoints, training log) is `functok.world.runs`; its token windows are
`functok.world.windows.token_windows(cfg, "train")`.

The corpus and tokenizer come from `functok.world.embedded`, which takes the config itself, so
`train_models(cfg)` honours CLI overrides of the data fields while `models(preset)` shares the cache
with every chapter.

Run folder (under data/cache/models/<key>/, the key covering every parameter that shapes the run):

    params.json            written last: the run is complete
    checkpoints.json       [{"step", "tokens_seen", "checkpoint"}], rewritten atomically
    checkpoints/step_000000/  HF `save_pretrained` model + tokenizer, renamed into place when complete
    train_log.jsonl        one line per step
    function_tokens.json   the function-token ids the log's groups use
    resume.pt              optimizer, RNG and step of the newest complete checkpoint (deleted at the end)
    summary.json           wall time, tokens/s, parameters, achieved FLOP/s vs an fp32 matmul

Training is deterministic on CPU: the data order is a pure function of (seed, step), the learning
rate a pure function of step, so a killed run resumes from its last complete checkpoint and ends
bit-identical to an uninterrupted one (tests/test_pretrain.py checks it).

Speed: the unembedding and the cross-entropy are computed together in chunks of tokens
(`_LinearCrossEntropy`). The full [tokens x vocab] logits tensor never exists, which matters on a CPU
whose memory bandwidth (about 4 GB/s per copy here) made the logits, not the matmuls, the bottleneck.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from functok.core.cache import cache_path, relpath, write_json_atomic
from functok.core.config import ParamError, resolve_config
from functok.world.config import PretrainConfig, pretrain_config
from functok.world.embedded import documents, tokenizer_dir, tokenizer_params
from functok.world.function_tokens import (
    count_tokens,
    function_mask,
    function_token_file,
    load_function_token_ids,
    select_function_tokens,
)
from functok.world.llama import (
    build_model,
    check_shape,
    compile_body,
    lm_loss,
    matmul_gflops,
    use_compile,
)
from functok.world.loss_groups import GROUPS, grouped_sums, prediction_groups
from functok.world.runs import checkpoint_name, checkpoints, model_name, read_log
from functok.world.runtime import n_threads, quiet_hf
from functok.world.schedule import batch_indices, checkpoint_schedule, lr_at, n_steps
from functok.world.windows import load_windows, token_windows

TRAINER_VERSION = 3  # bump when a change to this file or to functok.world.schedule changes what training produces
# ---------------------------------------------------------------------------------------------
# The cache key


def run_params(cfg: PretrainConfig, depth: int) -> dict:
    """Every parameter that shapes one model's run (its cache key)."""
    return {
        "trainer_version": TRAINER_VERSION,
        "architecture": "llama",
        **tokenizer_params(cfg),
        "depth": int(depth),
        "d_model": cfg.d_model,
        "n_heads": cfg.n_heads,
        "d_mlp": cfg.d_mlp,
        "context_size": cfg.context_size,
        "batch_size": cfg.batch_size,
        "train_tokens": cfg.train_tokens,
        "lr": cfg.lr,
        "min_lr": cfg.min_lr,
        "warmup_fraction": cfg.warmup_fraction,
        "weight_decay": cfg.weight_decay,
        "n_checkpoints": cfg.n_checkpoints,
        "seed": cfg.seed,
        "coverage_threshold": cfg.coverage_threshold,
    }


# ---------------------------------------------------------------------------------------------
# Atomic files


def _save_torch_atomic(obj, path: Path) -> None:
    import torch

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _save_checkpoint(model, tok, folder: Path) -> None:
    """save_pretrained into a temporary sibling, renamed into place only when complete."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        with quiet_hf():
            model.save_pretrained(str(tmp))
            tok.save_pretrained(str(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a checkpoint is for everyone to load
        if folder.exists():  # a stale one from a run killed before its resume state was written
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _truncate_log(path: Path, step: int) -> None:
    rows = [r for r in read_log(path) if r["step"] <= step]
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Training


def make_optimizer(model, cfg: PretrainConfig):
    """AdamW; weight decay on matrices only (not on the RMSNorm gains). The fused kernel: one pass over
    each parameter instead of one per operation (3% of the 8-layer model's step on this CPU)."""
    import torch

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
        fused=True,
    )


def train_step(model, opt, x, lr: float, is_fn, is_special, body=None) -> dict:
    """One optimizer update on batch x; returns the batch's mean loss and the mean loss of each group
    (None for a group absent from the batch), all from the one forward pass."""
    import torch

    for grp in opt.param_groups:
        grp["lr"] = lr
    loss, per = lm_loss(model, x, body=body)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        sums, counts = grouped_sums(per, prediction_groups(x, is_fn, is_special), n_groups=5)
    row = {"loss": float(loss.detach())}
    for k, name in enumerate(GROUPS):
        row[name] = float(sums[k] / counts[k]) if counts[k] > 0 else None
    return row


class _Stop(Exception):
    """Raised by a `stop_after` hook in tests to simulate a kill."""


def _function_token_ids(cfg: PretrainConfig, tok) -> list[int]:
    """The 40%-rule function tokens of the training documents under the model's tokenizer."""
    try:
        same = tokenizer_params(pretrain_config(cfg.preset)) == tokenizer_params(cfg)
    except ParamError:
        same = False
    if same:  # the shared, cached file the chapters use
        return load_function_token_ids(
            function_token_file("embedded", "embedded", cfg.preset, cfg.coverage_threshold, cfg.max_documents)
        )
    # overrides of the preset's corpus or tokenizer: the same rule on this config's documents
    tc = count_tokens(tok, documents(cfg, "train")["text"], progress=False)
    return [int(i) for i in select_function_tokens(tc.counts, cfg.coverage_threshold)]


def train_run(cfg: PretrainConfig, depth: int, stop_after: int | None = None, progress: bool = True) -> Path:
    """Train (or resume, or just return) one model's run folder. `stop_after`: raise after that many
    optimizer steps of this call (tests use it to simulate a kill)."""
    import fcntl

    params = run_params(cfg, depth)
    run = cache_path("models", params)
    if (run / "params.json").exists():
        return run
    run.mkdir(parents=True, exist_ok=True)
    with open(run / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process training the same run: wait for it
        if not (run / "params.json").exists():
            _train(cfg, depth, run, params, stop_after, progress)
    return run


@dataclass
class _Session:
    """One training session of a run: its data, model and optimizer, and where it resumes from."""

    cfg: PretrainConfig
    run: Path
    tok: Any
    windows: Any
    model: Any
    opt: Any
    is_fn: Any
    is_special: Any
    total: int
    schedule: list[int]
    start: int = 0
    seconds_before: float = 0.0
    done: list[dict] = field(default_factory=list)
    threads: int = 0
    compiled: bool = False
    body: Any = None
    n_params: int = 0
    gflops_start: float = 0.0
    t0: float = 0.0
    perms: dict[int, np.ndarray] = field(default_factory=dict)

    def batch(self, step: int):
        """The windows of optimizer step `step`."""
        import torch

        idx = batch_indices(self.cfg.seed, step, self.cfg.batch_size, self.windows.shape[0], self.perms)
        return self.windows[torch.from_numpy(idx)]

    def checkpoint(self, step: int) -> None:
        """Save the model at `step`, list it in checkpoints.json and write the resume state."""
        import torch

        run, T = self.run, self.windows.shape[1]
        folder = run / "checkpoints" / checkpoint_name(step)
        _save_checkpoint(self.model, self.tok, folder)
        self.done.append(
            {
                "step": step,
                "tokens_seen": step * self.cfg.batch_size * T,
                "checkpoint_dir": f"checkpoints/{checkpoint_name(step)}",
            }
        )
        write_json_atomic(run / "checkpoints.json", [_public(c, run) for c in self.done])
        _save_torch_atomic(
            {
                "step": step,
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "checkpoints": self.done,
                "threads": self.threads,
                "compiled": self.compiled,
                "seconds": self.seconds_before + time.perf_counter() - self.t0,
            },
            run / "resume.pt",
        )


def _train(cfg: PretrainConfig, depth: int, run: Path, params: dict, stop_after: int | None, progress: bool) -> None:
    """Train one model's run from scratch or from its resume state; params.json last, when it is complete."""
    s = _session(cfg, depth, run)
    _resume(s)
    name = model_name(depth)
    s.t0 = time.perf_counter()
    if s.start == 0 and 0 in s.schedule:
        s.checkpoint(0)
    t_first = _train_steps(s, name, stop_after, progress)
    _finish(s, name, t_first)
    write_json_atomic(run / "params.json", params)  # last: the run is complete


def _session(cfg: PretrainConfig, depth: int, run: Path) -> _Session:
    """A fresh session: the tokenizer, the training windows, the function tokens (written to the run), the
    model and its optimizer."""
    from transformers import AutoTokenizer

    check_shape(cfg)
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir(cfg)))
    windows = load_windows(token_windows(cfg, "train"))
    total = n_steps(cfg)
    schedule = checkpoint_schedule(total, cfg.n_checkpoints)
    fn_ids = _function_token_ids(cfg, tok)
    write_json_atomic(run / "function_tokens.json", {"coverage_threshold": cfg.coverage_threshold, "ids": fn_ids})
    is_fn = function_mask(len(tok), fn_ids)
    is_special = function_mask(len(tok), sorted(set(tok.all_special_ids)))
    model = build_model(cfg, depth, tok)
    opt = make_optimizer(model, cfg)
    return _Session(cfg, run, tok, windows, model, opt, is_fn, is_special, total, schedule)


def _resume(s: _Session) -> None:
    """Pick up a killed run's resume state (model, optimizer, RNG, step, threads, compile mode) if it has one,
    dropping half-written checkpoints and the log past the resumed step."""
    import torch

    run, B, T = s.run, s.cfg.batch_size, s.windows.shape[1]
    for leftover in (run / "checkpoints").glob(".*.tmp-*") if (run / "checkpoints").exists() else []:
        shutil.rmtree(leftover, ignore_errors=True)  # half-written checkpoints of a killed run
    log_path = run / "train_log.jsonl"
    state_path = run / "resume.pt"
    state = torch.load(state_path, weights_only=False) if state_path.exists() else None
    # CPU results depend on the thread count: a resumed run keeps the one it started with
    s.threads = state["threads"] if state else n_threads()
    torch.set_num_threads(s.threads)
    s.n_params = sum(p.numel() for p in s.model.parameters())
    s.gflops_start = matmul_gflops(seconds=0.5)  # before torch.compile starts its worker processes
    # compiled and eager results differ in the last bits: a resumed run keeps the mode it started with
    s.compiled = state.get("compiled", False) if state else use_compile(6 * s.n_params * s.total * B * T)
    s.body = compile_body(s.model) if s.compiled else None
    if state:
        s.model.load_state_dict(state["model"])
        s.opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        s.start, s.seconds_before = state["step"], state["seconds"]
        s.done = [c for c in state["checkpoints"] if (run / c["checkpoint_dir"]).is_dir()]
        write_json_atomic(run / "checkpoints.json", [_public(c, run) for c in s.done])  # forget later ones
    _truncate_log(log_path, s.start) if log_path.exists() else log_path.write_text("")


def _train_steps(s: _Session, name: str, stop_after: int | None, progress: bool) -> float:
    """The optimizer steps from s.start to the end, logged and checkpointed on the schedule; returns when the
    session's first step ended (it includes compiling). torch.compile failing at the first step: eager."""
    from tqdm import tqdm

    total, B, T = s.total, s.cfg.batch_size, s.windows.shape[1]
    bar = tqdm(
        total=total * B * T,
        initial=s.start * B * T,
        unit="tok",
        unit_scale=True,
        mininterval=5,
        desc=f"{name} ({s.n_params / 1e6:.2f}M params, {total} steps)",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=False,
        ncols=110,
    )
    t_first = float("nan")
    log = open(s.run / "train_log.jsonl", "a")
    try:
        for step in range(s.start, total):
            lr = lr_at(s.cfg, step, total)
            try:
                losses = train_step(s.model, s.opt, s.batch(step), lr, s.is_fn, s.is_special, body=s.body)
            except Exception as e:  # compiling happens at the first call: fall back to eager
                if s.body is None or step != s.start:
                    raise
                print(
                    f"{name}: torch.compile failed ({type(e).__name__}: {str(e)[:200]}); training eagerly",
                    file=sys.stderr,
                )
                s.opt.zero_grad(set_to_none=True)
                s.body, s.compiled = None, False
                losses = train_step(s.model, s.opt, s.batch(step), lr, s.is_fn, s.is_special)
            if step == s.start:
                t_first = time.perf_counter()  # the first step of a session includes compiling
            row = {"step": step + 1, "tokens_seen": (step + 1) * B * T, "lr": lr, **losses}
            log.write(json.dumps(row) + "\n")
            if step + 1 in s.schedule:
                log.flush()
                s.checkpoint(step + 1)
            bar.update(B * T)
            bar.set_postfix(loss=f"{row['loss']:.3f}", refresh=False)
            if stop_after is not None and step + 1 - s.start >= stop_after:
                raise _Stop(f"stopped after {stop_after} steps")
    finally:
        log.close()
        bar.close()
    return t_first


def _finish(s: _Session, name: str, t_first: float) -> None:
    """Write summary.json (wall time, tokens/s, achieved FLOP/s against an fp32 matmul), report it, and drop the
    resume state."""
    import torch

    total, B, T = s.total, s.cfg.batch_size, s.windows.shape[1]
    log_path = s.run / "train_log.jsonl"
    t_end = time.perf_counter()
    # the fp32 matmul reference, measured in this run: the better of before and after training
    gflops_mm = max(s.gflops_start, matmul_gflops(seconds=0.5))
    seconds = s.seconds_before + t_end - s.t0  # over every session, less work lost to kills
    tokens = total * B * T
    tps = tokens / seconds if seconds > 0 else float("nan")
    # after the first step of this session (no compiling, no warm-up)
    steady = (total - s.start - 1) * B * T / (t_end - t_first) if total - s.start > 1 else float("nan")
    n_params = s.n_params
    summary = {
        "model": name,
        "n_params": n_params,
        "n_params_non_embedding": n_params - s.model.model.embed_tokens.weight.numel(),
        "steps": total,
        "tokens": tokens,
        "resumed_from_step": s.start,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tps, 1),
        "achieved_gflops": round(6 * n_params * tps / 1e9, 2),
        "matmul_gflops": round(gflops_mm, 2),
        "flops_ratio": round(6 * n_params * tps / 1e9 / gflops_mm, 3),
        "tokens_per_s_steady": round(steady, 1),
        "flops_ratio_steady": round(6 * n_params * steady / 1e9 / gflops_mm, 3),
        "threads": torch.get_num_threads(),
        "compiled": s.compiled,
        "final_loss": read_log(log_path)[-1]["loss"] if total else None,
    }
    write_json_atomic(s.run / "summary.json", summary)
    print(
        f"{name}: {total} steps, {total * B * T / 1e6:.2f}M tokens in {seconds:.0f} s, {tps:,.0f} tok/s, "
        f"{summary['achieved_gflops']:.0f} GFLOP/s = {summary['flops_ratio']:.2f} x fp32 matmul "
        f"({summary['flops_ratio_steady']:.2f} after the first step)",
        file=sys.stderr,
    )
    (s.run / "resume.pt").unlink(missing_ok=True)


def _public(c: dict, run: Path) -> dict:
    return {"step": c["step"], "tokens_seen": c["tokens_seen"], "checkpoint": relpath(run / c["checkpoint_dir"])}


def train_models(cfg: PretrainConfig, progress: bool = True) -> dict[str, Path]:
    """Both models of a validated config, trained on first use: {"llama-{depth}L": run_dir}."""
    check_shape(cfg)
    return {model_name(d): train_run(cfg, d, progress=progress) for d in cfg.depths}


def models(preset: str = "embedded") -> dict[str, Path]:
    """The preset's models ({"llama-{depth}L": run_dir}), trained on first use."""
    return train_models(pretrain_config(preset))


def embedded_checkpoint(preset: str) -> tuple[str, Path]:
    """The preset's deeper model, final checkpoint (trained on first use): (checkpoint folder, run folder)."""
    pcfg = pretrain_config(preset)
    run = train_run(pcfg, pcfg.depths[1])
    return checkpoints(run)[-1]["checkpoint"], run


def main(argv: list[str] | None = None) -> int:
    """`python -m functok.world.pretrain --preset NAME` or `--config-json '{...}'` (what `functok
    pretrain` runs after validating its parameters): trains both models, prints their run folders."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m functok.world.pretrain", description=main.__doc__)
    ap.add_argument("--preset", default="embedded")
    ap.add_argument("--config-json", default=None, help="every PretrainConfig field as JSON (overrides --preset)")
    args = ap.parse_args(argv)
    try:
        if args.config_json:
            values = json.loads(args.config_json)
            cfg = resolve_config(PretrainConfig, values.get("preset", args.preset), values)
        else:
            cfg = pretrain_config(args.preset)
        for name, path in train_models(cfg).items():
            print(f"{name}: {path}")
    except ParamError as e:
        print(f"functok: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
