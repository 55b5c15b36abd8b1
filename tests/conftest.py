"""Shared fixtures. Tests never download: a tiny random model or SAE is built from a config instead."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A private artifact cache, so tests never touch data/cache."""

    monkeypatch.setenv("FUNCTOK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def text_folder(tmp_path):
    """A user's own folder of .txt files: one document per file."""
    d = tmp_path / "texts"
    d.mkdir()
    docs = {
        "a.txt": "The cat sat on the mat. The dog sat on the log, and the bird sang.",
        "b.txt": "Tokyo is the capital of Japan. The city of Tokyo is large.",
        "c.txt": "In the beginning, the model learns the most frequent tokens of the corpus.",
        "d.txt": "Of all the words, the and of and to are the most common ones in English.",
    }
    for name, text in docs.items():
        (d / name).write_text(text)
    return d
