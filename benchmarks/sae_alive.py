"""Dead SAE features: retrain a cached SAE with changed settings on the same stored activations and print the share of
features that fire at least once (on its training activations and on another store's, e.g. chapter 2's graph windows)
and the explained variance there, beside the cached SAE's.

    .venv/bin/python benchmarks/sae_alive.py --layer 4 --seed 0 --set lr=0.003       # after a `make book`
    .venv/bin/python benchmarks/sae_alive.py --layer 9 --seed 1 --set lr=0.003 --set expansion_factor=4

It reads the cache (FUNCTOK_CACHE): the first cached SAE at blocks.{layer}.hook_resid_post with that seed that was
trained from an activation store (a real model's chapter 2; --checkpoint picks among several), that store for its
training activations, and the model's other store over other windows for the held-out ones. Nothing is written
to the cache. The SAE is saved and reloaded as the book does (BatchTopK becomes a JumpReLU threshold), so "alive"
is what chapter 2's connected share counts. Threads: FUNCTOK_THREADS, else every core.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _find(cache: Path, hook: str, seed: int, checkpoint: str):
    for d in sorted((cache / "saes").iterdir()):
        p = d / "params.json"
        q = json.loads(p.read_text()) if p.exists() else {}
        from_store = "activations" in q and checkpoint in q.get("checkpoint", "")
        if q.get("hook_name") == hook and q.get("seed") == seed and from_store:
            return d, q
    raise SystemExit(f"--layer/--seed: no cached SAE at {hook} with seed {seed} trained from a store (FUNCTOK_CACHE)")


def _stats(sae, x, batch: int = 8192) -> dict:
    import torch

    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    sse = tot = 0.0
    mu = x.mean(0)
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = x[i : i + batch]
            f = sae.encode(xb)
            fired |= (f > 0).any(0)
            sse += float(((sae.decode(f) - xb) ** 2).sum())
            tot += float(((xb - mu) ** 2).sum())
    return {"alive": round(float(fired.float().mean()), 4), "explained_variance": round(1 - sse / tot, 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layer", type=int, required=True, help="the SAE's layer (blocks.L.hook_resid_post)")
    ap.add_argument("--seed", type=int, default=0, help="the cached SAE's seed (its spec is the base)")
    ap.add_argument("--checkpoint", default="", help="part of the checkpoint's path, where several models have SAEs")
    ap.add_argument("--set", action="append", default=[], help="a changed SAESpec field, e.g. lr=0.003 (repeatable)")
    ap.add_argument("--ce", action="store_true", help="also the CE score on the held-out store's first 32 windows")
    args = ap.parse_args()

    import torch
    import yaml

    from functok.core.cache import cache_dir
    from functok.sae.activation_store import read_activations, store_info, store_training_activations
    from functok.sae.loading import load_sae
    from functok.sae.training import SAESpec, _fit_activations
    from functok.world.windows import load_windows

    if os.environ.get("FUNCTOK_THREADS"):
        torch.set_num_threads(int(os.environ["FUNCTOK_THREADS"]))
    cache = cache_dir()
    hook = f"blocks.{args.layer}.hook_resid_post"
    sae_dir, q = _find(cache, hook, args.seed, args.checkpoint)
    fields = [f.name for f in dataclasses.fields(SAESpec)]
    base = SAESpec(**{k: v for k, v in q.items() if k in fields})
    changes = {}
    for s in args.set:
        k, _, v = s.partition("=")
        if k not in fields:
            raise SystemExit(f"--set: got {k!r}; expected an SAESpec field ({', '.join(fields)})")
        value = yaml.safe_load(v)  # YAML's scalars, as presets write them: 0.003, 4, false, batchtopk
        want = (int, float) if isinstance(getattr(base, k), float) else type(getattr(base, k))
        if isinstance(value, bool) != (want is bool) or not isinstance(value, want):
            raise SystemExit(f"--set: {k}={v!r}; expected a {type(getattr(base, k)).__name__}")
        changes[k] = type(getattr(base, k))(value)
    spec = dataclasses.replace(base, **changes)

    def entry(p: str) -> Path:  # params name cache paths "data/cache/..." whatever FUNCTOK_CACHE is
        return cache / p.split("data/cache/", 1)[1]

    stores = [d for d in (cache / "activation_stores").iterdir() if (d / "store.json").exists()]
    mine = [d for d in stores if json.loads((d / "params.json").read_text())["checkpoint"] == q["checkpoint"]]
    train = next((d for d in mine if store_info(d)["windows"] == q["windows"]), None)
    if train is None:
        raise SystemExit(f"--layer/--seed: the store {sae_dir.name} trained on ({q['windows']}) is not in the cache")
    others = [d for d in mine if store_info(d)["windows"] != q["windows"] and hook in store_info(d)["hook_names"]]
    held = others[0] if others else None
    acts = store_training_activations(train, entry(q["windows"]), hook, base.training_tokens)
    sets = {"training": acts}
    if held is not None:
        x = torch.as_tensor(load_windows(entry(store_info(held)["windows"])))
        keep = ~torch.isin(x, torch.tensor(store_info(held)["excluded_token_ids"]))
        sets["held_out"] = read_activations(held, hook)[keep]

    def ce(folder) -> dict:  # chapter 2's evaluation: the first eval_windows (32) of the graph windows
        if not (args.ce and held is not None):
            return {}
        from functok.sae.quality import evaluate_sae

        q_ = evaluate_sae(folder, entry(q["checkpoint"]), entry(store_info(held)["windows"]), max_windows=32)
        return {"ce_score": round(q_["ce_reconstruction_score"], 4), "eval_ev": round(q_["explained_variance"], 4)}

    rows = [{"sae": "cached", **{n: _stats(load_sae(sae_dir, device="cpu"), a) for n, a in sets.items()}}]
    rows[0]["ce"] = ce(sae_dir)
    t = time.perf_counter()
    trained = _fit_activations(spec, acts)
    seconds = time.perf_counter() - t
    trained.cfg.metadata.hook_name = hook
    with tempfile.TemporaryDirectory() as out:
        trained.save_inference_model(out)
        sae = load_sae(out, device="cpu")
        rows.append({"sae": " ".join(args.set) or "retrained", **{n: _stats(sae, a) for n, a in sets.items()}})
        rows[1]["ce"] = ce(out)
    print(
        f"{hook}, seed {args.seed}, d_sae {sae.cfg.d_sae}, {len(acts):,} training activations, "
        f"retrained in {seconds:.0f} s"
    )
    print(f"{'SAE':<24} " + " ".join(f"{n + ' alive':>16} {n + ' EV':>14}" for n in sets))
    for r in rows:
        cells = [f"{r[n]['alive']:>16.1%} {r[n]['explained_variance']:>14.3f}" for n in sets]
        print(f"{r['sae']:<24} " + " ".join(cells) + "".join(f" {k} {v:.3f}" for k, v in r["ce"].items()))


if __name__ == "__main__":
    main()
