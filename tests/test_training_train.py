import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
from _helpers_training import make_run, tiny_model
from safetensors.torch import load_file

from metahuman_lib._io import read_json
from metahuman_lib.errors import ConfigError
from metahuman_lib.training import train
from metahuman_lib.training.modeling import weights_sha256
from metahuman_lib.training.scoring import summarize
from metahuman_lib.training.status import read_log, read_status

pytestmark = pytest.mark.slow
BASE = {"epochs": 2, "lora_dropout": 0.1, "probe_prompts": ["How are you feeling today?"],
        "probe_max_new_tokens": 8}


def adapter(run_dir):
    return load_file(run_dir / "output" / "adapter" / "adapter_model.safetensors")


def assert_same_weights(left, right, atol=0.0):
    assert left.keys() == right.keys()
    for name in left:
        assert torch.allclose(left[name], right[name], atol=atol), name


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, model_dir):
    run_dir = tmp_path_factory.mktemp("lora-run")
    make_run(run_dir, model_dir, **BASE)
    metrics = train.run(run_dir)
    return run_dir, metrics


def test_run_writes_the_documented_files(lora_run):
    run_dir, metrics = lora_run
    assert read_json(run_dir / "metrics.json") == metrics
    assert set(metrics) == {"before", "after", "train", "generations"}
    for side in ("before", "after"):
        assert set(metrics[side]) == {"eval_recent", "eval_old", "train_sample"}
        assert set(metrics[side]["eval_recent"]) == {"loss", "perplexity", "tokens", "samples"}
        assert metrics[side]["eval_old"]["samples"] == 12
        months = metrics[side]["eval_old"]["by_month"]
        assert sum(m["samples"] for m in months.values()) == 12
    assert {"steps", "epochs", "tokens_seen", "runtime_s", "tokens_per_s", "final_train_loss", "padding_share",
            "truncated_samples", "masked_share"} <= set(metrics["train"])
    assert metrics["after"]["train_sample"]["loss"] < metrics["before"]["train_sample"]["loss"]
    assert metrics["after"]["eval_recent"]["loss"] < metrics["before"]["eval_recent"]["loss"]
    assert 0.3 < metrics["train"]["masked_share"] < 0.8
    assert metrics["train"]["truncated_samples"] == 0
    status = read_status(run_dir)
    assert (status.state, status.phase, status.step) == ("succeeded", "done", metrics["train"]["steps"])
    assert sorted(p.name for p in (run_dir / "output" / "adapter").iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "chat_template.jinja", "tokenizer.json",
        "tokenizer_config.json"]
    assert not (run_dir / ".scratch").exists()
    assert read_json(run_dir / "manifest.json")["training"]["output_weights_sha256"] == weights_sha256(
        run_dir / "output" / "adapter")
    with pytest.raises(ConfigError, match=r"was already trained successfully; .* prepare a new run folder"):
        train.run(run_dir)
    lines = (run_dir / "generations.jsonl").read_text().splitlines()
    assert len(lines) == 1 and '"prompt":"How are you feeling today?"' in lines[0]


def test_log_and_effective_config_show_the_schedule(lora_run):
    run_dir, metrics = lora_run
    log = read_log(run_dir)
    effective = read_json(run_dir / "effective_config.json")
    total = effective["total_steps"]
    assert [r["step"] for r in log] == list(range(1, total + 1)) == list(range(1, metrics["train"]["steps"] + 1))
    assert effective["warmup_steps"] == math.ceil(total * 0.05)
    assert log[0]["learning_rate"] == 0.0 and max(r["learning_rate"] for r in log) == pytest.approx(5e-3)
    assert all(r["tokens_per_s"] > 0 for r in log)
    assert effective["optimizer"] == "adamw" and effective["precision"] == "fp32"
    assert effective["chat_template"] == "model"
    assert effective["lora"] == {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])}
    assert effective["loaded"]["adapter"] == "new_adapter" and effective["loaded"]["parent"] is None


def test_same_seed_same_result(lora_run, tmp_path, model_dir):
    make_run(tmp_path, model_dir, **BASE)
    train.run(tmp_path)
    assert [r["loss"] for r in read_log(tmp_path)] == [r["loss"] for r in read_log(lora_run[0])]
    assert_same_weights(adapter(tmp_path), adapter(lora_run[0]))


def test_other_seed_other_result(lora_run, tmp_path, model_dir):
    make_run(tmp_path, model_dir, **{**BASE, "seed": 5, "probe_prompts": [], "max_steps": 2, "eval_train_samples": 4})
    train.run(tmp_path)
    assert [r["loss"] for r in read_log(tmp_path)] != [r["loss"] for r in read_log(lora_run[0])][:2]


class Interrupted(Exception):
    pass


def test_resume_after_interruption_matches_an_uninterrupted_run(lora_run, tmp_path, model_dir):
    make_run(tmp_path, model_dir, **BASE)

    def stop_at_three(step):
        if step == 3:
            raise Interrupted("power cut")

    with pytest.raises(Interrupted):
        train.run(tmp_path, on_step=stop_at_three)
    status = read_status(tmp_path)
    assert (status.state, status.step, status.error) == ("failed", 3, "Interrupted: power cut")
    assert [p.name for p in (tmp_path / ".scratch" / "checkpoints").iterdir()] == ["step-0000002"]
    metrics = train.run(tmp_path)
    assert metrics["train"]["resumed_from_step"] == 2
    assert metrics["before"] == lora_run[1]["before"]
    assert [r["step"] for r in read_log(tmp_path)] == [r["step"] for r in read_log(lora_run[0])]
    assert_same_weights(adapter(tmp_path), adapter(lora_run[0]), atol=1e-6)
    assert not (tmp_path / ".scratch").exists()


def test_lora_continues_the_parent_adapter(lora_run, tmp_path, model_dir):
    parent_dir = tmp_path / "parent"  # shipped inside the run folder, named by a relative path
    shutil.copytree(lora_run[0] / "output" / "adapter", parent_dir)
    parent = {"version": 1, "kind": "adapter", "path": "parent", "sha256": weights_sha256(parent_dir)}
    make_run(tmp_path, model_dir, parent=parent, lora_r=16, lora_alpha=32, epochs=1)
    metrics = train.run(tmp_path)
    for name in ("eval_recent", "eval_old", "train_sample"):
        assert metrics["before"][name]["loss"] == pytest.approx(lora_run[1]["after"][name]["loss"], abs=1e-5)
    loaded = read_json(tmp_path / "effective_config.json")["loaded"]
    assert loaded["adapter"] == "continued_parent_adapter"
    assert loaded["parent"]["weights_sha256"] == parent["sha256"]
    assert loaded["parent"]["version"] == 1
    assert read_json(tmp_path / "effective_config.json")["lora"]["r"] == 4  # the parent's rank
    assert adapter(tmp_path).keys() == adapter(lora_run[0]).keys()


@pytest.mark.parametrize(
    ("parent", "message"),
    [
        ({"sha256": "0" * 64}, r"has sha256 [0-9a-f]{64}, but train_config\.json expects 0{64}"),
        ({"path": "/nowhere/adapter"}, r"Parent version 1 not found at /nowhere/adapter"),
    ],
)
def test_a_changed_or_missing_parent_is_refused(lora_run, tmp_path, model_dir, parent, message):
    parent = {"version": 1, "kind": "adapter", "path": str(lora_run[0] / "output" / "adapter"), **parent}
    make_run(tmp_path, model_dir, parent=parent)
    with pytest.raises(ConfigError, match=message):
        train.run(tmp_path)
    assert read_status(tmp_path).state == "failed"


def test_adapter_of_another_base_is_refused(lora_run, tmp_path, model_dir):
    parent = {"version": 1, "kind": "adapter", "path": str(lora_run[0] / "output" / "adapter")}
    make_run(tmp_path, "Qwen/Qwen3-14B", parent=parent)
    with pytest.raises(ConfigError, match=r"was trained on '.*tiny-model.*', but base_model is 'Qwen/Qwen3-14B'"):
        train.run(tmp_path)


def test_full_finetune_with_adafactor_then_continue_from_the_checkpoint(tmp_path, model_dir):
    first, second = tmp_path / "v1", tmp_path / "v2"
    make_run(first, model_dir, method="full", optimizer="adafactor", learning_rate=3e-3)
    metrics = train.run(first)
    assert metrics["after"]["train_sample"]["loss"] < metrics["before"]["train_sample"]["loss"]
    output = first / "output" / "model"
    assert sorted(p.name for p in output.iterdir()) == [
        "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json"]
    assert read_json(first / "effective_config.json")["optimizer"] == "adafactor"
    make_run(second, model_dir, method="full", parent={"version": 1, "kind": "model", "path": str(output)})
    child = train.run(second)
    assert child["before"]["eval_recent"]["loss"] == pytest.approx(metrics["after"]["eval_recent"]["loss"], abs=1e-5)
    assert read_json(second / "effective_config.json")["loaded"]["weights_from"] == str(output)


def test_two_processes_over_gloo_match_one_process(tmp_path, model_dir):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    common = {"lora_dropout": 0.0, "max_steps": 2, "batch_size": 2, "eval_train_samples": 8}
    make_run(single, model_dir, grad_accum=2, **common)
    make_run(ddp, model_dir, grad_accum=1, **common)
    train.run(single)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "metahuman_lib.training.train", str(ddp)]
    done = subprocess.run(command, check=False, env=dict(os.environ), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    devices = read_json(ddp / "effective_config.json")["devices"]
    assert (devices["num_processes"], devices["distributed_type"]) == (2, "MULTI_CPU")
    assert [r["loss"] for r in read_log(ddp)] == pytest.approx([r["loss"] for r in read_log(single)], abs=1e-5)
    assert_same_weights(adapter(ddp), adapter(single), atol=1e-5)
    one, two = read_json(single / "metrics.json"), read_json(ddp / "metrics.json")
    assert two["before"]["eval_old"]["loss"] == pytest.approx(one["before"]["eval_old"]["loss"], abs=1e-5)
    assert two["train"]["tokens_seen"] == one["train"]["tokens_seen"]


def test_summarize_weights_every_token_equally():
    scores = [(4.0, 2, "2025-07"), (2.0, 2, "2025-08"), (3.0, 1, "2025-08")]
    out = summarize(scores, by_month=True)
    assert out["loss"] == 1.8 and out["tokens"] == 5 and out["samples"] == 3
    assert out["perplexity"] == round(math.exp(1.8), 4)
    assert out["by_month"]["2025-07"] == {"loss": 2.0, "perplexity": round(math.exp(2.0), 4), "tokens": 2,
                                          "samples": 1}
    assert out["by_month"]["2025-08"]["loss"] == round(5 / 3, 6)
    assert summarize([]) == {"loss": None, "perplexity": None, "tokens": 0, "samples": 0}


@pytest.mark.parametrize(
    ("batches", "accum", "epochs", "max_steps", "expected"),
    [([10, 10, 10], 4, 3, None, [3, 3, 3]), ([10, 9], 4, 1.5, None, [3, 2]), ([10, 10], 2, 2, 7, [5, 2])],
)
def test_plan_steps(batches, accum, epochs, max_steps, expected):
    assert train.plan_steps(batches, accum, epochs, max_steps) == expected


@pytest.mark.parametrize(("total", "ratio", "expected"), [(30, 0.05, 2), (30, 0.0, 0), (1000, 0.03, 30), (3, 0.5, 2)])
def test_warmup_is_a_ratio_of_real_steps(total, ratio, expected):
    assert train.warmup_steps(total, ratio) == expected


def test_cost_projection_next_to_the_measured_run(lora_run, model_dir):
    from transformers import AutoModelForCausalLM

    from metahuman_lib.training.cost import compare_with_actual, model_params_billions

    frame = compare_with_actual(lora_run[0]).set_index("measure")
    assert compare_with_actual(lora_run[0]).attrs["gpu"] == "cpu"
    assert frame.loc["steps", "actual"] == lora_run[1]["train"]["steps"]
    assert frame.loc["tokens", "actual"] == lora_run[1]["train"]["tokens_seen"]
    assert 0.3 < frame.loc["tokens", "ratio"] < 3 and 0.3 < frame.loc["steps", "ratio"] < 3
    assert frame.loc["dollars", "actual"] == 0.0
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert model_params_billions(str(model_dir)) == sum(p.numel() for p in model.parameters()) / 1e9


def test_a_bad_config_is_recorded_in_the_status(tmp_path):
    (tmp_path / "train_config.json").write_text('{"methd": "lora"}')
    with pytest.raises(ConfigError, match=r"Unknown key 'methd' in the training block\. Did you mean: method\?"):
        train.run(tmp_path)
    status = read_status(tmp_path)
    assert (status.state, status.phase) == ("failed", "loading")
    assert status.error.startswith("Unknown key 'methd'")


def test_bf16_then_fp32_runs_in_one_process(tmp_path, model_dir):
    for name, precision, expected in (("bf16", "bf16", "bf16"), ("fp32", "fp32", "no")):
        make_run(tmp_path / name, model_dir, precision=precision, max_steps=1, eval_train_samples=4)
        train.run(tmp_path / name)
        effective = read_json(tmp_path / name / "effective_config.json")
        assert (effective["precision"], effective["mixed_precision"]) == (precision, expected)
    assert read_json(tmp_path / "bf16" / "effective_config.json")["loaded"]["dtype"] == "bfloat16"
