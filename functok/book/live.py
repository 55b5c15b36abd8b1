"""Live forms: tweak a chapter's parameters in Jupyter without re-running the whole notebook.

`Form(cfg, state, views, update, analyze)` builds an ipywidgets 8 form from the chapter's config dataclass:
a dropdown for fields with choices, a checkbox for booleans, number boxes for numbers (`IntText` and
`FloatText`: the `Bounded*` widgets clamp out-of-range input silently, validation refuses it instead) and a
text box for lists and strings, each field's help as its tooltip. Every change goes through
`functok.core.config.validate`, the CLI's validation, and a refusal shows the same one-line message in the
status line; a bad value changes nothing.

Fields marked `cost="cheap"` in the config only change what is computed from the run's measurements: the
form re-derives them (`update(cfg, state)`) and redraws the views that read a changed field. Any other
change needs new measurements: the form shows the `functok run` command for the new values and a button
that runs the chapter (functok.book.run.run_chapter), measures again (`analyze(cfg)`, from the warm cache)
and redraws every view. A chapter's views, `update` and `analyze` come from `parts(cfg, analysis)` in
`functok/chapters/<chapter>/live.py`; `form(cfg, analysis)` builds the form from them.

Outputs are written straight into each Output widget's `outputs` (not `with out:`), so a redraw also
works, and is testable, outside a kernel.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import importlib
import io
import json
import time
from typing import Any, Callable, get_type_hints

import ipywidgets as widgets
import yaml

from functok.book.cli import parse_value
from functok.book.run import _out_dir, run_chapter
from functok.chapters.common import View
from functok.core.config import BOOK_CHAPTERS_DIR, ChapterConfig, ParamError, cheap_fields, validate
from functok.core.results import reproduce_command

HIDDEN = ("out_dir",)  # where the run writes is no parameter of what it measures: the form keeps the run's


def command(cfg: ChapterConfig) -> str:
    """The `functok run` command for a config (`--out` when it writes elsewhere than the book's folder)."""
    cmd = reproduce_command(cfg)
    if _out_dir(cfg).resolve() != BOOK_CHAPTERS_DIR.resolve():
        cmd += f" --out {cfg.out_dir}"
    return cmd


def mime_bundle(obj: Any) -> dict:
    """A display_data output for an Output widget: a figure as PNG (then closed), a table as HTML,
    a string as Markdown."""
    if hasattr(obj, "savefig"):
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        obj.savefig(buf, format="png")  # the chapters' figures fit themselves (tight_layout): no second layout pass
        plt.close(obj)
        data = {"image/png": base64.b64encode(buf.getvalue()).decode(), "text/plain": "<Figure>"}
    elif hasattr(obj, "_repr_html_"):
        data = {"text/html": obj._repr_html_(), "text/plain": type(obj).__name__}
    elif isinstance(obj, str):
        data = {"text/markdown": obj, "text/plain": obj}
    else:
        data = {"text/plain": repr(obj)}
    return {"output_type": "display_data", "data": data, "metadata": {}}


def draw_view(view: View, cfg: ChapterConfig, state: Any) -> tuple[dict, ...]:
    """The outputs of one view: its title, then what `draw` returns, then any figure it opened without
    returning it (every figure is closed: none may leak into the next cell's output)."""
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    items = list(view.draw(cfg, state) or [])
    returned = {id(x) for x in items}
    items += [plt.figure(n) for n in plt.get_fignums() if n not in before and id(plt.figure(n)) not in returned]
    return (mime_bundle(f"**{view.title}**"), *(mime_bundle(x) for x in items))


class Form:
    """A chapter's live form on one run: `cfg` is what the run measured with, `state` its measurements
    (the chapter's `analyze(cfg)` result)."""

    def __init__(
        self,
        cfg: ChapterConfig,
        state: Any,
        views: list[View] = (),
        update: Callable[[Any, Any], Any] | None = None,
        analyze: Callable[[Any], Any] | None = None,
        runner: Callable[[ChapterConfig], Any] = run_chapter,
    ):
        self.cls = type(cfg)
        self.cfg = self.measured = self.drawn = cfg  # shown values, measured values, drawn values
        self.state, self.views, self.update, self.analyze, self.runner = state, list(views), update, analyze, runner
        self.cheap = set(cheap_fields(self.cls))
        hints = get_type_hints(self.cls)
        self.fields = {f.name: f for f in dataclasses.fields(self.cls) if f.name not in HIDDEN}
        self.widgets = {name: self._widget(f, hints[name], getattr(cfg, name)) for name, f in self.fields.items()}
        self.status = widgets.Label(value=self._hint())
        self.command = widgets.HTML()
        self.run_button = widgets.Button(description="Run the chapter", icon="play", disabled=True)
        self.run_button.on_click(lambda _: self.run())
        self.outputs = {v.title: widgets.Output() for v in self.views}
        self.redraws = 0  # views redrawn since the form opened (tests and the benchmark read it)
        cheap = [w for n, w in self.widgets.items() if n in self.cheap]
        costly = [w for n, w in self.widgets.items() if n not in self.cheap]
        self.box = widgets.VBox(
            [
                widgets.HTML(f"<b>Tweak {html.escape(self.cls.chapter)}</b>: the run's parameters"),
                widgets.HTML("<i>Redrawn from this run's measurements:</i>") if cheap else widgets.HTML(),
                *cheap,
                widgets.HTML("<i>Need new measurements (a run):</i>"),
                *costly,
                self.status,
                widgets.HBox([self.run_button, self.command]),
                *self.outputs.values(),
            ]
        )

    # -- widgets -----------------------------------------------------------------------------

    def _widget(self, f: dataclasses.Field, typ: type, value: Any) -> widgets.Widget:
        meta = f.metadata
        common = {"description": f.name, "tooltip": meta.get("help", ""), "style": {"description_width": "initial"}}
        if meta.get("choices"):
            w = widgets.Dropdown(options=list(meta["choices"]), value=value, **common)
        elif typ is bool:
            w = widgets.Checkbox(value=value, indent=False, **common)
        elif typ is int:
            w = widgets.IntText(value=value, **common)
        elif typ is float:
            w = widgets.FloatText(value=value, **common)
        elif typ in (list, dict):
            w = widgets.Text(value=_show(value), continuous_update=False, **common)
        else:
            w = widgets.Text(value=value, continuous_update=False, **common)
        w.observe(lambda change, name=f.name: self._changed(name, change["new"]), names="value")
        return w

    def _value(self, name: str, raw: Any) -> Any:
        """A list box is read like the CLI's `-p NAME VALUE`; every other widget gives a typed value."""
        if isinstance(raw, str) and isinstance(getattr(self.cfg, name), dict):  # a mapping box: YAML (JSON is YAML)
            value = yaml.safe_load(raw) if raw.strip() else raw
            return value if isinstance(value, dict) else raw
        return parse_value(raw) if isinstance(raw, str) and isinstance(getattr(self.cfg, name), list) else raw

    def set(self, name: str, value: Any) -> None:
        """Set a field as a user would: the widget's value changes and its callback runs."""
        w = self.widgets[name]
        w.value = _show(value) if isinstance(w, widgets.Text) and isinstance(value, (list, dict)) else value

    # -- changes -----------------------------------------------------------------------------

    def _hint(self) -> str:
        cheap = ", ".join(sorted(self.cheap & set(self.fields))) or "none"
        return f"Change a value. Redrawn at once: {cheap}; any other field shows the command that re-runs the chapter."

    def pending(self) -> list[str]:
        """Fields whose value differs from the run's: the expensive ones need a new run."""
        return [n for n in self.fields if getattr(self.cfg, n) != getattr(self.measured, n)]

    def _changed(self, name: str, raw: Any) -> None:
        try:
            value = self._value(name, raw)
            new = validate(self.cls, {**dataclasses.asdict(self.cfg), name: value})  # the CLI's validation
        except ParamError as e:
            self.status.value = str(e)  # the same one line as `functok run ... -p NAME VALUE`
            return
        self.cfg = new
        expensive = [n for n in self.pending() if n not in self.cheap]
        if expensive:
            self.command.value = f"<code>{html.escape(command(new))}</code>"
            self.run_button.disabled = False
            self.status.value = f"{', '.join(expensive)}: new measurements needed; run the command or press the button"
            return
        self.command.value, self.run_button.disabled = "", True
        self.redraw()

    def redraw(self, all_views: bool = False) -> list[str]:
        """Re-derive from the measurements and redraw the views that read a changed cheap field."""
        changed = {n for n in self.fields if getattr(self.cfg, n) != getattr(self.drawn, n)}
        todo = [v for v in self.views if all_views or changed & set(v.fields)]
        t0 = time.perf_counter()
        if todo and self.update is not None:
            self.state = self.update(self.cfg, self.state)
        t_update = time.perf_counter() - t0
        for v in todo:
            self.outputs[v.title].outputs = draw_view(v, self.cfg, self.state)
        self.drawn = self.cfg
        self.redraws += len(todo)
        titles = "; ".join(v.title for v in todo) or "nothing"
        derived = f" ({t_update:.2f} s re-deriving)" if self.update is not None and todo else ""
        self.status.value = f"redrew {titles} in {time.perf_counter() - t0:.2f} s{derived}"
        return [v.title for v in todo]

    def run(self) -> None:
        """Run the chapter on the form's values, measure again and redraw every view."""
        self.status.value = f"running: {command(self.cfg)}"
        self.run_button.disabled = True
        try:
            self.runner(self.cfg)
            if self.analyze is not None:
                self.state = self.analyze(self.cfg)
        except Exception as e:  # noqa: BLE001  the chapter's own error, in one line, in the status
            self.status.value = f"the run failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
            self.run_button.disabled = False
            return
        self.measured = self.cfg
        self.command.value = ""
        self.redraw(all_views=True)

    def _repr_mimebundle_(self, **kwargs):
        return self.box._repr_mimebundle_(**kwargs)


def _show(value: Any) -> str:
    """A value as its text box shows it (lists as JSON, which `-p` reads back)."""
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def form(cfg: ChapterConfig, analysis: Any, **kwargs) -> Form:
    """The live form on a chapter's run (`analysis = analyze(cfg)`): its views, `update` and `analyze` from
    `parts(cfg, analysis)` of functok/chapters/<chapter>/live.py (looked up by name: the book sits above
    the chapters and names none of them)."""
    live = importlib.import_module(f"functok.chapters.{cfg.chapter}.live")
    return Form(cfg, analysis, **live.parts(cfg, analysis), **kwargs)
