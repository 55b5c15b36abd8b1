"""The build profile: each stage's seconds, its FLOPs and its ratio to a matmul measured in this run.

    .venv/bin/python benchmarks/build_profile.py            # the last `make book`'s book/profile.json
    .venv/bin/python benchmarks/build_profile.py --cache    # every stage the cache holds (FUNCTOK_CACHE)
    .venv/bin/python benchmarks/build_profile.py --since 2026-12-06T22:00   # stages built since then

The last `make book` wrote book/profile.json with the matmul rates it measured; with --cache or --since the
stages are read from the cache entries' own records and the matmul is measured now (functok.book.profile
says what each stage's FLOPs are). Threads: FUNCTOK_THREADS, else every core.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", action="store_true", help="every stage in the cache, the matmul measured now")
    ap.add_argument("--since", default="", help="stages built since this ISO time (local), the matmul measured now")
    ap.add_argument("--json", default="", help="also write the profile to this file")
    args = ap.parse_args()

    import torch

    from functok.book import profile
    from functok.core.config import ROOT
    from functok.world.runtime import n_threads

    torch.set_num_threads(n_threads())
    if args.cache or args.since:
        since = datetime.fromisoformat(args.since).timestamp() if args.since else 0.0
        out = Path(args.json) if args.json else Path("/dev/null")
        doc = profile.write_profile(out, since, []) if args.json else _doc(profile, since)
    else:
        path = ROOT / "book" / profile.PROFILE
        if not path.exists():
            sys.exit(f"no {path.relative_to(ROOT)}: run `make book` first, or pass --cache")
        doc = json.loads(path.read_text())
    print(profile.table(doc))


def _doc(profile, since: float) -> dict:
    import torch

    rates = {"float32": round(profile.matmul_rate("float32"), 2), "bfloat16": round(profile.matmul_rate("bfloat16"), 2)}
    rows = profile.with_rates(profile.stage_rows(since), rates)
    slow = sorted({r["stage"] for r in rows if r.get("why_slow")})
    return {"matmul_gflops": rates, "threads": torch.get_num_threads(), "since": since, "stages": rows,
            "chapter_runs": [], "slow_stages": slow}  # fmt: skip


if __name__ == "__main__":
    main()
