"""The ``runpod:`` parameter block: defaults, validation, helpful errors, and what it launches."""

from __future__ import annotations

import json

import pytest

from metahuman_lib.errors import ConfigError
from metahuman_lib.training.runpod import trainer_command
from metahuman_lib.training.runpod_config import DEFAULT_GPU_TYPES, RunPodConfig


def test_defaults_rent_community_then_secure():
    config = RunPodConfig.from_dict(None)
    assert config.gpu_types == DEFAULT_GPU_TYPES
    assert config.cloud_types == ("COMMUNITY", "SECURE")
    assert config.budget_usd == 10.0 and config.budget_hours == 4.0


def test_lists_become_tuples_and_the_config_is_frozen():
    config = RunPodConfig.from_dict({"gpu_types": ["NVIDIA A100 80GB PCIe"], "cloud_types": "SECURE"})
    assert config.gpu_types == ("NVIDIA A100 80GB PCIe",) and config.cloud_types == ("SECURE",)
    with pytest.raises(AttributeError):
        config.budget_usd = 99  # type: ignore[misc]
    assert config.with_overrides(budget_usd=3).budget_usd == 3


@pytest.mark.parametrize("block, message", [
    ({"budget_dollars": 5}, r"Unknown key 'runpod.budget_dollars'. Did you mean: budget_hours, budget_usd\?$"),
    ({"gpu_type": "x"}, r"Unknown key 'runpod.gpu_type'. Did you mean: gpu_types"),
    ({"api_key": "x"}, r"Unknown key 'runpod.api_key'. Known keys: gpu_types, cloud_types, "),
    ({"cloud_types": ["COMMUNITY", "SPOT"]}, r"'runpod.cloud_types' has 'SPOT'; use COMMUNITY or SECURE"),
    ({"cloud_types": []}, r"'runpod.cloud_types' is empty"),
    ({"gpu_types": [1]}, r"'runpod.gpu_types' must be a list of names, got \[1\]"),
    ({"budget_usd": 0}, r"'runpod.budget_usd' must be a positive number, got 0"),
    ({"budget_hours": -1}, r"'runpod.budget_hours' must be a positive number, got -1"),
    ({"max_hourly_usd": 0}, r"'runpod.max_hourly_usd' must be positive, got 0"),
    ({"name_prefix": "my pods"}, r"'runpod.name_prefix' is 'my pods'; use letters, digits and '-' only"),
])
def test_bad_blocks_name_the_key(block, message):
    with pytest.raises(ConfigError, match=message):
        RunPodConfig.from_dict(block)


@pytest.mark.parametrize("gpus, distributed, expected", [
    (1, "ddp", ["python3", "-m", "metahuman_lib.training.train", "/pod/run"]),
    (2, "ddp", ["python3", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "metahuman_lib.training.train", "/pod/run"]),
    (4, "fsdp", ["python3", "-m", "accelerate.commands.launch", "--use_fsdp", "--num_processes", "4",
                 "--num_machines", "1", "-m", "metahuman_lib.training.train", "/pod/run"]),
])
def test_trainer_command_runs_one_process_per_gpu(tmp_path, gpus, distributed, expected):
    (tmp_path / "train_config.json").write_text(json.dumps({"distributed": distributed}))
    assert trainer_command(RunPodConfig(gpu_count=gpus), tmp_path, "/pod/run") == expected
