"""The live form (functok.book.live), driven from pytest: widgets from a chapter's config, the CLI's
validation on every change, cheap changes redraw, expensive ones show the command and run on request."""

from __future__ import annotations

from pathlib import Path

import ipywidgets as widgets
import matplotlib
import pytest

from functok.book import cli, live
from functok.chapters.loss_split.config import LossSplitConfig
from functok.chapters.registry import resolve
from functok.core.config import ParamError, param

matplotlib.use("agg")


def cli_error(capsys, *args) -> str:
    """The one line `functok run` prints for bad input (without its 'functok: error: ' prefix)."""
    assert cli.main(["run", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("functok: error: ") and "\n" not in err
    return err.removeprefix("functok: error: ")


class Recorder:
    """A view's draw function that counts its calls and draws a figure of what it was given."""

    def __init__(self):
        self.calls = []

    def __call__(self, cfg, state):
        import matplotlib.pyplot as plt

        self.calls.append((cfg.top_n, state))
        fig, ax = plt.subplots()
        ax.bar(range(cfg.top_n), range(cfg.top_n))
        return [fig, f"{cfg.top_n} rows"]


@pytest.fixture
def form():
    cfg = resolve("function_tokens", "embedded")
    top, bins = Recorder(), Recorder()
    runs = []
    f = live.Form(
        cfg,
        "measurements-1",
        [live.View("top", ("top_n",), top), live.View("bins", ("n_bins",), bins)],
        analyze=lambda c: "measurements-2",
        runner=runs.append,
    )
    f.top, f.bins, f.runs = top, bins, runs
    return f


def test_widgets_follow_the_config():
    cfg = resolve("loss_split", "embedded")
    f = live.Form(cfg, None)
    kinds = {name: type(w) for name, w in f.widgets.items()}
    assert kinds["device"] is widgets.Dropdown and f.widgets["device"].options == ("cpu", "cuda", "mps")
    assert kinds["keep_checkpoints"] is widgets.Checkbox
    assert kinds["n_bootstrap"] is widgets.IntText  # not BoundedIntText: out-of-range input must be refused
    assert kinds["ci_level"] is widgets.FloatText
    assert kinds["next_tokens"] is widgets.Text and kinds["prompt"] is widgets.Text
    assert "out_dir" not in kinds  # the form's runs write where the run it opened on did
    assert f.widgets["ci_level"].tooltip == "confidence level of the bootstrap intervals"
    assert not any("Bounded" in k.__name__ for k in kinds.values())
    assert f.widgets["next_tokens"].value == '[" the", " of", ","]'


@pytest.mark.parametrize(
    "name, value, args",
    [
        ("top_n", 0, ["-p", "top_n", "0"]),
        ("coverage_threshold", 1.5, ["-p", "coverage_threshold", "1.5"]),
        ("tokenizers", "[]", ["-p", "tokenizers", "[]"]),
        ("sweep_thresholds", "[0.2, 2]", ["-p", "sweep_thresholds", "[0.2, 2]"]),
        ("seed", -1, ["-p", "seed", "-1"]),
    ],
)
def test_a_bad_value_shows_the_clis_line_and_changes_nothing(form, capsys, name, value, args):
    before = form.cfg
    form.set(name, value)
    assert form.status.value == cli_error(capsys, "function_tokens", *args)
    assert form.cfg is before and form.pending() == []
    assert form.top.calls == [] and form.bins.calls == []
    assert all(out.outputs == () for out in form.outputs.values())
    assert form.command.value == "" and form.run_button.disabled


def test_a_cheap_change_redraws_only_the_views_that_read_it(form):
    import matplotlib.pyplot as plt

    plt.close("all")  # figures other tests left open
    form.set("top_n", 7)
    assert form.cfg.top_n == 7 and form.top.calls == [(7, "measurements-1")] and form.bins.calls == []
    out = form.outputs["top"].outputs
    assert [o["output_type"] for o in out] == ["display_data"] * 3
    assert out[0]["data"]["text/markdown"] == "**top**"
    assert out[1]["data"]["image/png"]  # the figure, as a PNG written straight into the widget
    assert out[2]["data"]["text/markdown"] == "7 rows"
    assert form.outputs["bins"].outputs == ()
    assert form.command.value == "" and form.run_button.disabled
    assert form.status.value.startswith("redrew top in ")
    assert plt.get_fignums() == []  # drawn figures are closed: none leaks into the next cell


def test_an_expensive_change_shows_the_command_and_draws_nothing(form):
    form.set("coverage_threshold", 0.3)
    form.set("tokenizers", '["gpt2"]')  # a list box reads like -p
    assert form.top.calls == [] and all(out.outputs == () for out in form.outputs.values())
    assert not form.run_button.disabled
    cmd = "functok run function_tokens --preset embedded -p tokenizers '[\"gpt2\"]' -p coverage_threshold 0.3"
    assert form.command.value == f"<code>{cmd.replace(chr(34), '&quot;').replace(chr(39), '&#x27;')}</code>"
    assert "coverage_threshold" in form.status.value and "tokenizers" in form.status.value
    form.set("top_n", 9)  # cheap, but the measurements it would redraw from are out of date: the run takes it
    assert form.top.calls == [] and form.command.value.endswith(" -p top_n 9</code>")


def test_the_command_runs_like_the_cli(form, capsys, monkeypatch):
    """The shown command, parsed by the CLI, resolves to the form's config."""
    import shlex

    form.set("coverage_threshold", 0.25)
    form.set("burst_tokens", '[" the", " Lincoln"]')
    shown = shlex.split(live.command(form.cfg))
    got = {}
    monkeypatch.setattr("functok.book.run.run_chapter", lambda cfg: got.setdefault("cfg", cfg) and Path("x.ipynb"))
    assert cli.main(shown[1:]) == 0
    assert got["cfg"] == form.cfg


def test_the_button_runs_the_chapter_then_redraws_everything(form):
    form.set("coverage_threshold", 0.3)
    form.set("top_n", 4)
    form.run_button.click()
    assert [c.coverage_threshold for c in form.runs] == [0.3]
    assert form.top.calls == [(4, "measurements-2")] and form.bins.calls == [(4, "measurements-2")]
    assert form.pending() == [] and form.command.value == "" and form.run_button.disabled
    form.set("coverage_threshold", 0.4)  # back to the first run's value: a run again, the measurements moved on
    assert not form.run_button.disabled


def test_a_failed_run_keeps_the_outputs_and_says_why(form):
    def boom(cfg):
        raise RuntimeError("chapter function_tokens failed\ntraceback ...")

    form.runner = boom
    form.set("coverage_threshold", 0.3)
    form.run_button.click()
    assert form.status.value == "the run failed: chapter function_tokens failed"
    assert form.top.calls == [] and not form.run_button.disabled and form.measured.coverage_threshold == 0.4


def test_cost_is_checked_and_defaults_to_expensive():
    with pytest.raises(ValueError, match="cost"):
        param(1, "x", cost="free")
    assert LossSplitConfig.__dataclass_fields__["models"].metadata["cost"] == "expensive"
    assert LossSplitConfig.__dataclass_fields__["min_checkpoints"].metadata["cost"] == "cheap"


def test_validation_is_the_registrys(form):
    """A value the config accepts in the form is accepted by resolve; the form never bypasses it."""
    form.set("sweep_thresholds", "[0.1, 0.9]")
    assert form.cfg == resolve("function_tokens", "embedded", {"sweep_thresholds": [0.1, 0.9]})
    with pytest.raises(ParamError):
        resolve("function_tokens", "embedded", {"n_bins": 1})
    form.set("n_bins", 1)
    assert form.cfg.n_bins == 50
