"""pyproject.toml and environment.yml describe the same environment; CI runs the README's test command."""

from __future__ import annotations

import re
import tomllib

import yaml

from functok.book.config import ROOT


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    deps = {_norm(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {_norm(p) for p in pip if not p.startswith(("-", "--"))}
    assert listed == deps, f"only in pyproject: {deps - listed}; only in environment.yml: {listed - deps}"


def test_torch_is_pinned_to_the_cpu_build():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.13.0" in deps
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, re.S)
    commands = [line.strip() for b in blocks for line in b.splitlines() if line.strip() and not line.startswith("#")]
    assert commands[:2] == ["make book", "make test"], "the README opens with the two set-up commands"
    assert "make test" in (ROOT / ".ci" / "run").read_text()
