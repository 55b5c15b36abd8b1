"""Gemma Scope 2 (the online preset gemma-3-270m-scope): ids validated offline against SAELens's bundled
registry, refused offline in one line, and SAE files in Gemma Scope 2's hub format (params.safetensors with
w_enc, w_dec, b_enc, b_dec, threshold) read through SAELens's own gemma_3 loader, tested on tiny files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from functok.chapters.registry import resolve
from functok.core.config import ParamError
from functok.sae.loading import load_sae, validate_sae_spec

RELEASE = "gemma-scope-2-270m-pt-res"


def test_ids_are_checked_against_the_registry_offline():
    src = validate_sae_spec(f"{RELEASE}/layer_9_width_16k_l0_medium", allow_download=True)
    assert (src.hook_name, src.d_in, src.d_sae, src.l0) == ("blocks.9.hook_resid_post", 640, 16384, 60)
    with pytest.raises(ParamError, match="did you mean 'layer_9_width_16k_l0_medium'"):
        validate_sae_spec(f"{RELEASE}/layer_9_width_16k_l0_mediun", allow_download=True)


def test_the_preset_is_refused_offline_in_one_line(monkeypatch):
    monkeypatch.delenv("FUNCTOK_ONLINE", raising=False)
    for chapter in ("feature_coverage", "reactivation"):
        with pytest.raises(ParamError) as e:
            resolve(chapter, "gemma-3-270m-scope")
        assert str(e.value).startswith("model: 'google/gemma-3-270m'") and "\n" not in str(e.value)


def test_the_presets_saes_match_the_model_online(monkeypatch):
    monkeypatch.setenv("FUNCTOK_ONLINE", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # functok counts it as offline; the hub stays faked
    from functok.chapters.feature_coverage.analysis import plan

    p = plan(resolve("feature_coverage", "gemma-3-270m-scope"))  # no download: registry and known widths
    assert [s.hook_name for s in p.saes] == [f"blocks.{L}.hook_resid_post" for L in p.layers]
    assert {s.d_in for s in p.saes} == {p.model.d_model} and p.context_size == 1024


def test_files_in_gemma_scope_2_format_load_and_encode_as_jumprelu(tmp_path, monkeypatch):
    import sae_lens.loading.pretrained_sae_loaders as loaders

    d_in, d_sae = 8, 16
    g = torch.Generator().manual_seed(0)
    w = {
        "w_enc": torch.randn(d_in, d_sae, generator=g),
        "w_dec": torch.randn(d_sae, d_in, generator=g),
        "b_enc": torch.randn(d_sae, generator=g) * 0.1,
        "b_dec": torch.randn(d_in, generator=g) * 0.1,
        "threshold": torch.rand(d_sae, generator=g),
    }
    folder = tmp_path / "google--gemma-scope-2-270m-pt" / "resid_post" / "layer_9_width_16k_l0_medium"
    folder.mkdir(parents=True)
    save_file(w, str(folder / "params.safetensors"))
    hub = tmp_path / "google--gemma-scope-2-270m-pt"

    def download(repo_id, filename, subfolder=None, **_):
        assert repo_id == "google/gemma-scope-2-270m-pt"
        path = hub / (f"{subfolder}/{filename}" if subfolder else filename)
        if not path.exists():
            raise loaders.EntryNotFoundError(f"{path} (no such file in the fake hub)")
        return str(path)

    def shapes(repo_id, filename, **_):
        from safetensors import safe_open

        with safe_open(download(repo_id, filename), "pt") as f:
            return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}

    monkeypatch.setattr(loaders, "hf_hub_download", download)
    monkeypatch.setattr(loaders, "get_safetensors_tensor_shapes", shapes)
    monkeypatch.setenv("FUNCTOK_ONLINE", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # functok counts it as offline; the hub stays faked
    sae = load_sae(f"{RELEASE}/layer_9_width_16k_l0_medium")
    assert sae.cfg.metadata.hook_name == "blocks.9.hook_resid_post" and (sae.cfg.d_in, sae.cfg.d_sae) == (d_in, d_sae)
    x = torch.randn(5, d_in, generator=g)
    pre = x @ w["w_enc"] + w["b_enc"]  # Gemma Scope: no b_dec subtracted from the input
    want = pre * (pre > w["threshold"])
    torch.testing.assert_close(sae.encode(x), want)
    assert Path(download("google/gemma-scope-2-270m-pt", "params.safetensors", folder.relative_to(hub))).exists()
