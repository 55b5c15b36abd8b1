"""Token counting throughput, tokenization included (issue target: >= 1M tokens/s on 2 cores).

Run:  .venv/bin/python benchmarks/count_tokens.py [--tokenizer gpt2] [--repeat 3]
Prints tokens/s for the whole embedded corpus (about 3.4M GPT-2 tokens): tokenization alone, and
tokenization + counting (occurrences and document counts) as functok.world.function_tokens.count_tokens does.
"""

import argparse
import os
import time

from functok.world.corpus import load_corpus
from functok.world.function_tokens import count_tokens
from functok.world.tokenizers import encode, load_tokenizer

ap = argparse.ArgumentParser()
ap.add_argument("--tokenizer", default="gpt2")
ap.add_argument("--repeat", type=int, default=3)
args = ap.parse_args()

texts = list(load_corpus("embedded")["text"])
tok = load_tokenizer(args.tokenizer)
print(f"cores: {os.cpu_count()}, documents: {len(texts):,}, tokenizer: {args.tokenizer}")
best_enc = best_count = 0.0
for _ in range(args.repeat):
    t0 = time.perf_counter()
    n = sum(len(ids) for ids in encode(tok, texts))
    best_enc = max(best_enc, n / (time.perf_counter() - t0))
    t0 = time.perf_counter()
    tc = count_tokens(tok, texts, progress=False)
    best_count = max(best_count, tc.n_tokens / (time.perf_counter() - t0))
print(f"tokens: {tc.n_tokens:,}")
print(f"tokenization only:      {best_enc / 1e6:.2f} M tokens/s (best of {args.repeat})")
print(f"tokenization + counting: {best_count / 1e6:.2f} M tokens/s (best of {args.repeat})")
