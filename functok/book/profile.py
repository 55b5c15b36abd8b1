"""The build profile: what each stage of a build cost in seconds, the work it did in FLOPs, and how that
compares with a matmul measured in the same run. `functok book` writes `book/profile.json` at its end;
`benchmarks/build_profile.py` prints it (or profiles the whole cache).

A stage is a cache entry the build made (its params.json written since the build started), timed by its
own record: pre-training (`models/*/summary.json`), activation stores (`store.json`), SAE training
(`training.json`: the fit, and the forward that made its activations when it ran the model), chapter 2's
graph pass (`null.json`), chapter 3's loss passes (`eval.json`), SAE quality (`result.json`). Entries a
warm build found in the cache cost it nothing and are not listed. Each chapter run's wall time is listed too.

FLOPs (N: parameters, T: tokens or activations):
- forward up to a hooked layer: 2 N T, N the parameters of blocks 0..L (embedding lookups cost nothing);
  a full forward with the loss adds the unembedding, N + V d;
- pre-training: 6 N T with N every parameter (what the pre-training summary reports);
- SAE training: 6 (2 d d_sae) T; SAE encoding: 2 d d_sae T per SAE;
- SAE quality: one full forward per pass over the evaluation windows (the passes it ran are recorded).

Ratios: achieved FLOP/s over the float32 matmul rate, and over the bfloat16 rate for stages that ran in
bfloat16 (stores, autocast SAE training), both measured when the profile is written (a 2048 x 640 x 5120
matmul, the SAEs' shape). Stages under 0.5 of the rate are named with the reason in `why_slow`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from functok.core.cache import cache_dir, relpath, write_json_atomic
from functok.sae.generation import decoder_layers
from functok.sae.models import hook_layer

SLOW = 0.5  # stages under this share of the matmul rate are named
PROFILE = "profile.json"  # under book/


def matmul_rate(dtype: str = "float32", seconds: float = 0.5) -> float:
    """GFLOP/s of a [2048, 640] x [640, 5120] matmul in `dtype` on this machine, now."""
    import torch

    dt = getattr(torch, dtype)
    a, b = torch.randn(2048, 640, dtype=dt), torch.randn(640, 5120, dtype=dt)
    for _ in range(2):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * 2048 * 640 * 5120 * reps / (time.perf_counter() - t0) / 1e9


_PARAMS: dict[str, dict] = {}


def model_shape(checkpoint: str) -> dict:
    """{"per_layer": [parameters of each decoder block], "unembed": V * d, "d_model"} of a checkpoint
    folder, from its config on the meta device (no weights read)."""
    if checkpoint not in _PARAMS:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        cfg = AutoConfig.from_pretrained(checkpoint)
        with torch.device("meta"):
            m = AutoModelForCausalLM.from_config(cfg)
        text = cfg.get_text_config()
        _PARAMS[checkpoint] = {
            "per_layer": [sum(p.numel() for p in b.parameters()) for b in decoder_layers(m)],
            "unembed": int(text.vocab_size) * int(text.hidden_size),
            "d_model": int(text.hidden_size),
        }
    return _PARAMS[checkpoint]


def _abs(path: str) -> str:
    p = Path(path)
    if p.is_absolute() or p.exists():
        return str(p)
    return str(cache_dir() / Path(path).relative_to("data/cache")) if path.startswith("data/cache/") else path


def forward_params(checkpoint: str, layer: int | None) -> int:
    """Parameters a forward touches: blocks 0..layer, or with layer None every block and the unembedding."""
    s = model_shape(_abs(checkpoint))
    return sum(s["per_layer"]) + s["unembed"] if layer is None else sum(s["per_layer"][: layer + 1])


def _forward_flops(checkpoint: str, layer: int | None, tokens: int) -> float | None:
    """2 N T for a local checkpoint folder; None for a hub model (its config is not read offline)."""
    ck = str(checkpoint).split("|")[0]  # a local folder's key in chapter 3: path|weights:size:mtime
    return 2 * forward_params(ck, layer) * tokens if (Path(_abs(ck)) / "config.json").exists() else None


def _entries(kind: str, since: float, record: str):
    root = cache_dir() / kind
    for d in sorted(root.glob("*/")) if root.exists() else []:
        p, r = d / "params.json", d / record
        if p.exists() and r.exists() and p.stat().st_mtime >= since:
            yield d, json.loads(p.read_text()), json.loads(r.read_text())


def _row(stage: str, what: str, seconds: float, flops: float | None, formula: str, dtype: str = "float32") -> dict:
    return {"stage": stage, "what": what, "seconds": round(float(seconds), 2), "flops": flops, "formula": formula,
            "dtype": dtype}  # fmt: skip


def stage_rows(since: float = 0.0) -> list[dict]:
    """One row per cache entry built since `since` (seconds since the epoch), with its seconds and FLOPs."""
    rows = []
    for d, _, s in _entries("models", since, "summary.json"):
        rows.append(_row("pre-training", s["model"], s["seconds"], 6 * s["n_params"] * s["tokens"], "6 N T"))
    for d, p, s in _entries("activation_stores", since, "store.json"):
        f = _forward_flops(p["checkpoint"], s["deepest_layer"], s["n_windows"] * s["context_size"])
        rows.append(_row("activation store", f"{relpath(d)} layers {s['layers']}", s["seconds"], f,
                         "2 N T (N: blocks 0..deepest)", s["dtype"]))  # fmt: skip
    for d, p, s in _entries("saes", since, "training.json"):
        d_in, d_sae, n = s["d_in"], s["d_sae"], s["activations"]
        dtype = "bfloat16" if s["spec"].get("autocast") else "float32"
        what = f"{relpath(d)} {p['hook_name']} d_sae {d_sae} seed {s['spec']['seed']}"
        rows.append(_row("SAE training", what, s["seconds"], 6 * 2 * d_in * d_sae * n, "6 (2 d d_sae) T", dtype))
        if s.get("activation_seconds", 0) > 0.5 and s.get("activation_source") != "store":  # a store's read: no forward
            f = _forward_flops(p["checkpoint"], hook_layer(p["hook_name"]), n)
            rows.append(_row("SAE activations (model)", what, s["activation_seconds"], f, "2 N T (N: blocks 0..L)"))
    rows += _graph_rows(since)
    for d, p, s in _entries("loss_eval", since, "eval.json"):
        f = _forward_flops(p["checkpoint"], None, s["n_windows"] * s["context_size"])
        rows.append(_row("loss pass (chapter 3)", p["checkpoint"], s["seconds"], f, "2 (N + V d) T"))
    for d, p, s in _entries("sae_evals", since, "result.json"):
        if "seconds" in s:
            f = _forward_flops(_eval_checkpoint(p), None, s.get("n_tokens", 0) * s.get("passes", 1))
            rows.append(_row("SAE quality", f"{p['sae']} {s['hook_name']}", s["seconds"], f, "2 (N + V d) T per pass"))
    return rows


def _eval_checkpoint(p: dict) -> str:
    """An SAE evaluation's checkpoint: in its key (chapters 2 and 5), else in its SAE's key (chapter 4's)."""
    if "checkpoint" in p:
        return p["checkpoint"]
    sae = Path(_abs(p["sae"])) / "params.json"
    return json.loads(sae.read_text()).get("checkpoint", "") if sae.exists() else ""


def _graph_rows(since: float) -> list[dict]:
    """Chapter 2's graph passes: one per set of units that streamed together (same windows and timings)."""
    passes: dict = {}
    for d, p, s in _entries("feature_coverage_null", since, "null.json"):
        key = (p["windows"], p["checkpoint"], round(s["forward_encode_s"], 3))
        sae = json.loads((Path(_abs(p["sae"])) / "cfg.json").read_text())
        passes.setdefault(key, []).append((p, s, sae))
    rows = []
    for (win, ck, _), units in passes.items():
        p, s, _ = units[0]
        n = s["n_positions"]
        enc = sum(2 * u[2]["d_in"] * u[2]["d_sae"] * n for u in units)
        fwd = 0 if str(p.get("activations", "")).startswith("store") else None
        formula = "2 d d_sae T per SAE" + ("" if fwd == 0 else " + 2 N T forward (N: blocks 0..deepest)")
        if fwd is None:
            deepest = max(hook_layer(u[2]["metadata"]["hook_name"]) for u in units)
            fwd = _forward_flops(ck, deepest, s["n_windows"] * _ctx(units[0][2])) or 0
        rows.append(
            _row("graph pass (chapter 2)", f"{win}: {len(units)} SAEs", s["forward_encode_s"], enc + fwd, formula)
        )
    return rows


def _ctx(sae_cfg: dict) -> int:
    return int((sae_cfg.get("metadata") or {}).get("context_size") or 0)


def with_rates(rows: list[dict], rates: dict) -> list[dict]:
    """Each row with its GFLOP/s, its ratio to the matmul of its dtype, and why it is slow when under SLOW."""
    out = []
    for r in rows:
        r = dict(r)
        if r["flops"] and r["seconds"] > 0:
            g = r["flops"] / r["seconds"] / 1e9
            r["gflops"] = round(g, 2)
            r["ratio"] = round(g / rates[r["dtype"]], 3)
            r["why_slow"] = WHY.get(r["stage"], "") if r["ratio"] < SLOW else ""
        out.append(r)
    return out


WHY = {
    "activation store": "a small model's forward is not all matmul: attention over 256 positions, norms, rotary "
    "embeddings and Python per block, at batch 8 x 256 tokens",
    "SAE activations (model)": "the TransformerLens bridge runs every hook point of every block in float32 "
    "(measured 2x slower than transformers itself), then copies the activations",
    "graph pass (chapter 2)": "with a store the pass reads 2-byte values from disk and converts them; the top-k "
    "selection and the graph's scatter are memory-bound, not matmuls",
    "loss pass (chapter 3)": "float32 through the bridge; the unembedding's matmul is fast, but the softmax over "
    "the vocabulary at every position is memory-bound",
    "SAE quality": "four full float32 forwards through the bridge with hooks, on 32 windows",
    "SAE training": "the matmuls take about 40% of the time, near the bfloat16 rate; BatchTopK's top-k over the "
    "batch's 512 x d_sae values about a quarter, elementwise work (masks, the auxiliary loss, Adam) the rest "
    "(torch.profiler on SmolLM2's shape); a batch of 2,048 is no faster",
    "pre-training": "the logits' memory traffic and the optimizer, at batch 8",
}


def write_profile(path: Path, since: float, chapter_seconds: list[dict]) -> dict:
    """book/profile.json: the matmul rates measured now, every stage built since `since`, and each chapter
    run's wall time (`chapter_seconds`: [{"run", "seconds"}])."""
    import torch

    rates = {"float32": round(matmul_rate("float32"), 2), "bfloat16": round(matmul_rate("bfloat16"), 2)}
    rows = with_rates(stage_rows(since), rates)
    doc = {
        "matmul_gflops": rates,
        "threads": torch.get_num_threads(),
        "since": since,
        "stages": rows,
        "chapter_runs": chapter_seconds,
        "slow_stages": sorted({r["stage"] for r in rows if r.get("why_slow")}),
    }
    write_json_atomic(path, doc)
    return doc


def _groups(doc: dict) -> list[tuple]:
    """(stage, dtype, n, seconds, FLOPs, GFLOP/s, ratio) per stage and dtype, summed over its rows."""
    groups: dict = {}
    for r in doc["stages"]:
        groups.setdefault((r["stage"], r["dtype"]), []).append(r)
    out = []
    for (stage, dtype), rs in groups.items():
        s = sum(r["seconds"] for r in rs)
        f = sum(r["flops"] or 0 for r in rs)
        g = f / s / 1e9 if s and f else float("nan")
        out.append((stage, dtype, len(rs), s, f, g, g / doc["matmul_gflops"][dtype]))
    return out


def markdown(path: Path) -> str:
    """The profile of the build that made this site (book/profile.json), for the intro page."""
    if not Path(path).exists():
        return ""
    doc = json.loads(Path(path).read_text())
    rates = doc["matmul_gflops"]
    lines = [
        "",
        "**What this build cost** (`benchmarks/build_profile.py` prints it; stages the build found in the cache cost "
        f"nothing and are not listed). Matmul measured at the end of the build: {rates['float32']:.0f} GFLOP/s in "
        f"float32, {rates['bfloat16']:.0f} in bfloat16, {doc['threads']} threads.",
        "",
        "| stage | entries | seconds | TFLOP | GFLOP/s | x matmul | dtype |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for stage, dtype, n, s, f, g, ratio in _groups(doc):
        lines.append(f"| {stage} | {n} | {s:,.0f} | {f / 1e12:.2f} | {g:.0f} | {ratio:.2f} | {dtype} |")
    lines += ["", *[f"- Under {SLOW} x matmul, {st}: {WHY.get(st, '')}." for st in doc["slow_stages"]], ""]
    return "\n".join(lines)


def table(doc: dict) -> str:
    """The profile as a text table, stages grouped (seconds and FLOPs summed per stage)."""
    rates = doc["matmul_gflops"]
    lines = [
        f"matmul: {rates['float32']:.0f} GFLOP/s float32, {rates['bfloat16']:.0f} bfloat16 ({doc['threads']} threads)"
    ]
    lines.append(f"{'stage':<26} {'n':>3} {'seconds':>9} {'TFLOP':>9} {'GFLOP/s':>8} {'x matmul':>8}  dtype")
    for stage, dtype, n, s, f, g, ratio in _groups(doc):
        lines.append(f"{stage:<26} {n:>3} {s:>9.1f} {f / 1e12:>9.2f} {g:>8.1f} {ratio:>8.2f}  {dtype}")
    lines.append("")
    for c in doc["chapter_runs"]:
        lines.append(f"chapter run {c['run']:<60} {c['seconds']:>8.0f} s")
    for stage in doc["slow_stages"]:
        lines.append(f"under {SLOW} x matmul: {stage}: {WHY.get(stage, '')}")
    return "\n".join(lines)
