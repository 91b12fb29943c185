"""Every supported family trains end to end on a small random model of its real architecture, and
the Modelfile the registry writes serves, through Go's text/template, exactly the prompt trained."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from _helpers_families import EXPECTED_FORMAT, FAMILY_NAMES, family_model
from _helpers_training import hand_samples

from metahuman_lib import ollama
from metahuman_lib._io import read_json
from metahuman_lib.errors import ConfigError
from metahuman_lib.samples import iter_records
from metahuman_lib.training import train
from metahuman_lib.training.config import TrainConfig, write_train_config

pytestmark = pytest.mark.slow
SYSTEM = "You are Ann's digital personality extension. Speak naturally in first person as Ann."


def write_run(run_dir: Path, base_model: Path, **settings) -> None:
    """A run folder as selection writes it: every sample carries its system message."""
    samples = hand_samples(36, seed=5)
    for name, rows in (("dataset.jsonl", samples.iloc[:24]), ("eval_recent.jsonl", samples.iloc[24:30]),
                       ("eval_old.jsonl", samples.iloc[30:])):
        lines = []
        for record in iter_records(rows):
            record["messages"] = [{"role": "system", "content": SYSTEM}, *record["messages"]]
            lines.append(orjson.dumps(record) + b"\n")
        (run_dir / name).write_bytes(b"".join(lines))
    config = {"base_model": str(base_model), "lora_r": 4, "lora_alpha": 8, "learning_rate": 5e-3,
              "max_steps": 2, "batch_size": 4, "grad_accum": 1, "max_seq_len": 256, "eval_batch_size": 8,
              "eval_train_samples": 4, "probe_prompts": ["How are you feeling today?"],
              "probe_max_new_tokens": 4} | settings
    write_train_config(run_dir, TrainConfig.from_dict(config))


def modelfile_template(text: str) -> str:
    return re.search(r'^TEMPLATE """(.*?)"""$', text, re.DOTALL | re.MULTILINE).group(1)


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def trained(request, tmp_path_factory):
    family = request.param
    base = family_model(tmp_path_factory, family)
    root = tmp_path_factory.mktemp(f"root-{family}")
    run_dir = root / "run"
    run_dir.mkdir()
    write_run(run_dir, base)
    train.run(run_dir)
    return family, base, root, run_dir


def test_prompt_format_records_the_exact_trained_text(trained):
    family, _base, _root, run_dir = trained
    recorded = read_json(run_dir / "prompt_format.json")
    first = orjson.loads((run_dir / "dataset.jsonl").read_bytes().splitlines()[0])
    assert recorded["messages"] == first["messages"] and recorded["sample_index"] == 0
    assert recorded["chat_format"]["name"] == EXPECTED_FORMAT[family]
    answer = first["messages"][-1]["content"]
    assert recorded["completion"].strip().startswith(answer)
    assert any(recorded["completion"].endswith(marker) for marker in recorded["chat_format"]["stop"])
    assert recorded["prompt"] == recorded["chat_format"]["bos_token"] + recorded["served_prompt"]
    effective = read_json(run_dir / "effective_config.json")
    assert effective["chat_format"]["name"] == EXPECTED_FORMAT[family]


def test_the_modelfile_serves_the_trained_prompt(trained, ollama_render):
    _family, base, root, run_dir = trained
    recorded = read_json(run_dir / "prompt_format.json")
    record = {"version": 1, "output_kind": "adapter", "method": "lora", "base_model": str(base),
              "output_path": str(run_dir / "output" / "adapter"), "run_dir": "run"}
    text = ollama.modelfile_for_version(record, root=root, system=SYSTEM).render()
    assert text.startswith(f"FROM {base.resolve()}\nADAPTER {run_dir.resolve() / 'output' / 'adapter'}\n")
    assert f'SYSTEM """{SYSTEM}"""' in text
    stops = re.findall(r'^PARAMETER stop "(.*)"$', text, re.MULTILINE)
    assert any(recorded["completion"].endswith(stop) for stop in stops)
    request = [m for m in recorded["messages"] if m["role"] != "assistant"]
    served = ollama_render(modelfile_template(text), request)
    assert recorded["chat_format"]["bos_token"] + served == recorded["prompt"]
    # a client that sends no system message gets the Modelfile's SYSTEM in front: the same prompt
    assert ollama_render(modelfile_template(text), [{"role": "system", "content": SYSTEM}, request[-1]]) == served


def test_lora_targets_come_from_the_architecture(trained):
    family, _base, _root, run_dir = trained
    lora = read_json(run_dir / "effective_config.json")["lora"]
    assert {"q_proj", "v_proj", "o_proj", "down_proj"} <= set(lora["target_modules"])
    if family == "qwen3.5":
        assert {"in_proj_qkv", "in_proj_z", "out_proj"} <= set(lora["target_modules"])
        loaded = read_json(run_dir / "effective_config.json")["loaded"]
        assert loaded["packing"].startswith("off")
    assert (run_dir / "generations.jsonl").is_file()


def test_a_wrong_lora_target_lists_the_available_ones(tmp_path, tmp_path_factory):
    base = family_model(tmp_path_factory, "qwen3.5")
    write_run(tmp_path, base, lora_target_modules=["q_proj", "query_key_value"])
    with pytest.raises(ConfigError, match=r"query_key_value.*in_proj_qkv.*q_proj"):
        train.run(tmp_path)


def test_a_full_fine_tune_of_gemma2_imports_its_folder(tmp_path, tmp_path_factory, ollama_render):
    base = family_model(tmp_path_factory, "gemma2")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_run(run_dir, base, method="full", learning_rate=1e-4)
    train.run(run_dir)
    record = {"version": 1, "output_kind": "model", "method": "full", "base_model": str(base),
              "output_path": "run/output/model", "run_dir": "run"}
    text = ollama.modelfile_for_version(record, root=tmp_path, system=SYSTEM).render()
    assert text.startswith(f"FROM {(run_dir / 'output' / 'model').resolve()}\nTEMPLATE")
    recorded = read_json(run_dir / "prompt_format.json")
    request = [m for m in recorded["messages"] if m["role"] != "assistant"]
    assert "<bos>" + ollama_render(modelfile_template(text), request) == recorded["prompt"]


def test_a_lora_on_a_full_model_parent_names_it_and_the_next_run_continues_it(tmp_path, tmp_path_factory):
    base = family_model(tmp_path_factory, "qwen3")
    full, lora, again = (tmp_path / name for name in ("v1", "v2", "v3"))
    for folder in (full, lora, again):
        folder.mkdir()
    write_run(full, base, method="full", learning_rate=1e-4)
    train.run(full)
    parent_model = full / "output" / "model"
    write_run(lora, base, parent={"version": 1, "path": str(parent_model), "kind": "model"})
    train.run(lora)
    adapter_config = read_json(lora / "output" / "adapter" / "adapter_config.json")
    assert adapter_config["base_model_name_or_path"] == str(parent_model)
    assert read_json(lora / "effective_config.json")["loaded"]["base_model"] == str(parent_model)
    # the next monthly run: the lineage's base is v1's folder, and v2's adapter is trained further
    write_run(again, parent_model, parent={"version": 2, "path": str(lora / "output" / "adapter"), "kind": "adapter"})
    train.run(again)
    assert read_json(again / "effective_config.json")["loaded"]["adapter"] == "continued_parent_adapter"
