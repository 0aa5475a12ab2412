"""The window's forms come from the engine's schemas and agree with the real CLI parser."""

from __future__ import annotations

import dataclasses

from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox

from engine import cli
from engine.core import config, schema
from engine.core.config import TrainConfig
from engine.eval import spec as eval_spec
from engine.infer.params import SamplingParams
from gui.state.eval_view import Choices
from gui.widgets.config_form import ConfigForm
from gui.widgets.prompt_params_panel import ParamsPanel


def test_the_train_form_has_one_field_per_knob_with_its_help_limits_and_choices(qtbot) -> None:
    form = ConfigForm()
    qtbot.addWidget(form)
    for k in schema.knobs(TrainConfig):
        widget = form.widget(k.name)
        assert widget.toolTip().endswith(k.help) and form.label(k.name) == k.label
        if k.choices:
            assert isinstance(widget, QComboBox)
            assert [widget.itemText(i) for i in range(widget.count())] == list(k.choices)
        elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
            assert (widget.minimum(), widget.maximum()) == (k.minimum, k.maximum), k.name
        elif k.kind is bool:
            assert isinstance(widget, QCheckBox)


def test_the_train_forms_copy_as_command_parses_back_to_its_config(qtbot) -> None:
    """The Train page's command is config.to_arguments of the form's values (TrainPage.train_arguments)."""
    form = ConfigForm()
    qtbot.addWidget(form)
    demo = {p.key: p for p in config.list_presets()}["cpu-quick-demo"]
    form.set_values({**demo.values, "learning_rate": 3e-4, "lr_scheduler": "linear", "packing": True,
                     "completion_only_loss": False, "val_fraction": 0.1, "eval_steps": 10, "save_steps": 20,
                     "sample_prompts": "First?\nSecond?", "name": "from the form"})
    shown = config.from_mapping(form.values())
    args = cli.build_parser().parse_args(["train", "--json", *config.to_arguments(shown)])
    assert config.from_arguments(args, TrainConfig()) == shown
    assert (shown.learning_rate, shown.packing, shown.name) == (3e-4, True, "from the form")


def test_the_evaluate_pages_flags_parse_to_the_spec_it_shows() -> None:
    choices = Choices(dataset="reviews@v2", split="test", model="default", adapters=["run-a", "run-b"],
                      metrics=["bleu", "regex_match"], max_examples=50, max_new_tokens=32, regex="[a-z]+",
                      slice_column="label", robustness=["typos", "casing"], system_prompt="Answer in JSON.",
                      json_schema="any", backend="llama.cpp")
    args = cli.build_parser().parse_args(["evaluate", "run", "--json", *choices.flags()])
    spec = eval_spec.from_mapping(schema.given(eval_spec.EvalSpec, args))
    picked = {f.name: getattr(choices, f.name) for f in dataclasses.fields(Choices)}
    assert {name: getattr(spec, name) for name in picked} == picked


def test_the_prompt_panels_fields_come_from_the_sampling_schema(qtbot) -> None:
    panel = ParamsPanel()
    qtbot.addWidget(panel)
    for k in schema.knobs(SamplingParams):
        widget = panel.fields[k.name]
        assert widget is getattr(panel, k.name) and widget.toolTip() == k.help
        if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
            low, high = k.ui_range
            assert (widget.minimum(), widget.maximum()) == (low, high), k.name
            assert k.minimum <= low and high <= k.maximum  # the page offers only what the engine accepts
    assert list(panel.fields) == [*schema.names(SamplingParams), "greedy"]
