"""The paper's reported numbers (data/paper_numbers.yaml), to show beside ours."""

from __future__ import annotations

from functools import lru_cache

import yaml

from functok.core.config import ROOT


@lru_cache(maxsize=1)
def numbers() -> dict:
    return yaml.safe_load((ROOT / "data" / "paper_numbers.yaml").read_text())
