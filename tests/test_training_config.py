import pytest

from metahuman_lib.errors import ConfigError
from metahuman_lib.training.config import (
    DEFAULT_LORA_TARGETS,
    ParentRef,
    TrainConfig,
    read_train_config,
    write_train_config,
)


def test_defaults_follow_the_spec():
    config = TrainConfig()
    assert (config.lora_r, config.lora_alpha) == (16, 32)
    assert config.lora_target_modules == DEFAULT_LORA_TARGETS
    assert config.resolved_learning_rate == 3e-4
    assert config.resolved_optimizer == "adamw"
    full = TrainConfig(method="full")
    assert (full.resolved_learning_rate, full.resolved_optimizer) == (5e-6, "adafactor")
    assert (full.weight_decay, full.max_grad_norm) == (0.01, 1.0)


def test_round_trip_through_the_run_folder(tmp_path):
    config = TrainConfig.from_dict({
        "base_model": "Qwen/Qwen3-14B", "method": "lora", "lora_target_modules": ["q_proj", "v_proj"],
        "parent": {"version": 3, "path": "/models/v3/adapter", "kind": "adapter", "sha256": "ab" * 32},
        "probe_prompts": ["How are you?"], "seed": 11,
    })
    write_train_config(tmp_path, config)
    assert read_train_config(tmp_path) == config
    assert config.parent == ParentRef(3, "/models/v3/adapter", "adapter", "ab" * 32)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"learning_rat": 1e-4}, r"Unknown key 'learning_rat' in the training block\. Did you mean: learning_rate"),
        ({"lora_rank": 8}, r"Unknown key 'lora_rank' in the training block\. Did you mean: lora_r"),
        ({"parent": {"verison": 2, "path": "x", "kind": "adapter"}},
         r"Unknown key 'verison' in the training\.parent block\. Did you mean: version"),
        ({"method": "qlora"}, r"training\.method must be one of lora, full; got 'qlora'"),
        ({"optimizer": "sgd"}, r"training\.optimizer must be one of auto, adamw, adafactor; got 'sgd'"),
        ({"precision": "int8"}, r"training\.precision must be one of auto, bf16, fp16, fp32; got 'int8'"),
        ({"warmup_ratio": 1.5}, r"training\.warmup_ratio must be in \[0, 1\), got 1\.5"),
        ({"batch_size": 0}, r"training\.batch_size must be at least 1, got 0"),
        ({"parent": {"kind": "adapter"}}, r"parent\.path is empty for a parent of kind 'adapter'"),
        ({"parent": {"kind": "lora", "path": "x"}}, r"training\.parent\.kind must be one of adapter, model, base"),
    ],
)
def test_bad_blocks_name_the_key(block, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(block)


def test_missing_train_config_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match=r"No train_config\.json in .*write_train_config"):
        read_train_config(tmp_path)


def test_training_modules_import_without_torch():
    import os
    import subprocess
    import sys

    modules = ["config", "data", "status", "local", "cost", "launch", "train", "tiny", "modeling", "scoring"]
    code = ("import sys\n" + "".join(f"import metahuman_lib.training.{m}\n" for m in modules)
            + "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'accelerate') if m in sys.modules)\n"
            + "print(','.join(heavy))")
    done = subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ), capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip() == ""
