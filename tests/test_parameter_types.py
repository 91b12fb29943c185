"""Parameter files are checked when they are loaded: each key against its type, one line naming the
key, the value and the type expected; YAML aliases are refused before anything is built."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from metahuman_lib.errors import ConfigError
from metahuman_lib.parameters import load_parameter_set
from metahuman_lib.training.config import TrainConfig

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BOMB = ('a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ntraining:\n  probe_prompts: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n")


def load(tmp_path, text):
    path = tmp_path / "set.yaml"
    path.write_text(text)
    return load_parameter_set(str(path), now=NOW)


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"set\.yaml, line 2: YAML aliases \(\*a\) are not allowed"):
        load(tmp_path, BOMB)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(("text", "message"), [
    ("training:\n  base_model: {a: 1}\n", r"training\.base_model = \{'a': 1\} is dict; expected a string\."),
    ("quality:\n  min_total_foundation: x\n", r"quality\.min_total_foundation = 'x' is str; expected a whole number\."),
    ("training:\n  probe_prompts: [[a, b]]\n",
     r"training\.probe_prompts = \[\['a', 'b'\]\] is list; expected a list of strings\."),
    ("training:\n  learning_rate: fast\n", r"training\.learning_rate = 'fast' is str; expected a number or null\."),
    ("training:\n  packing: 3\n", r"training\.packing = 3 is int; expected true or false\."),
    ("selection:\n  days_recent: soon\n", r"selection\.days_recent = 'soon' is str; expected a whole number or null"),
    ("runpod:\n  gpu_types: 4090\n", r"runpod\.gpu_types = 4090 is int; expected a list of strings\."),
])
def test_wrong_types_are_one_line_naming_key_value_and_type(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as failure:
        load(tmp_path, text)
    assert "\n" not in str(failure.value)


def test_numbers_written_as_exponents_are_numbers(tmp_path):
    params = load(tmp_path, "training:\n  learning_rate: 1e-4\n  probe_prompts: How are you?\n")
    assert params.training.learning_rate == 1e-4 and params.training.probe_prompts == ("How are you?",)


def test_train_config_json_is_checked_too():
    with pytest.raises(ConfigError, match=r"training\.epochs = 'three' is str; expected a number\."):
        TrainConfig.from_dict({"epochs": "three"})
