"""The memory planner: figures for the real bases, the settings it picks, the GPUs it orders and
refuses, the architecture it reads offline, and the guard of the local backend."""

from __future__ import annotations

from dataclasses import replace

import pytest
from _helpers_families import family_model
from _helpers_training import make_run, tiny_model

from metahuman_lib.errors import BackendError, ConfigError
from metahuman_lib.training.config import TrainConfig, read_train_config, write_train_config
from metahuman_lib.training.cost import load_gpu_prices
from metahuman_lib.training.memory_plan import (
    GB,
    TrainShape,
    architecture_of,
    estimate_memory,
    plan_gpu,
    plan_gpus,
    require_fit,
)
from metahuman_lib.training.planning import guard_local, plan_run

PRICES = load_gpu_prices()
QWEN3_14B = architecture_of("Qwen/Qwen3-14B", fetch=False)
GPUS = ["NVIDIA GeForce RTX 4090", "NVIDIA H100 80GB HBM3", "NVIDIA A100 80GB PCIe"]


def test_the_14b_figures_of_issue_13():
    shape = TrainShape(method="lora", micro_batch=4, grad_accum=8, seq_len=2048, checkpointing=False)
    estimate = estimate_memory(QWEN3_14B, shape)
    assert estimate.weights / GB == pytest.approx(29.5, abs=0.5)  # bf16 weights + the fp32 adapter
    per_token_layer = estimate.activations / (4 * 2048) / QWEN3_14B.layers
    assert per_token_layer == pytest.approx(430e3, rel=0.10)  # measured: about 430 KB per token and layer
    assert estimate.activations / GB > 130  # 8,192 tokens x 40 layers: the defaults cannot fit on 80 GB
    assert estimate.total / GB > 80


def test_checkpointing_and_micro_batch_are_chosen_to_fit_with_the_effective_batch_kept():
    shape = TrainShape(method="lora", micro_batch=4, grad_accum=8, seq_len=2048)
    plan = plan_gpu(QWEN3_14B, shape, "A100", 80)
    assert plan.fits and plan.shape.effective_batch == 32
    assert plan.estimate.total <= 80 * GB * 0.9
    assert (plan.shape.micro_batch, plan.shape.checkpointing) != (4, False)
    long = plan_gpu(QWEN3_14B, replace(shape, seq_len=8192), "A100", 80)
    assert long.fits and long.shape.checkpointing and long.shape.effective_batch == 32


def test_gpus_are_ordered_by_the_cheapest_that_fits():
    shape = TrainShape(method="lora")
    run_plan = plan_gpus(QWEN3_14B, shape, GPUS + ["NVIDIA GTX 9000"], PRICES)
    assert [p.gpu for p in run_plan.fitting] == ["NVIDIA A100 80GB PCIe", "NVIDIA H100 80GB HBM3"]
    assert run_plan.for_gpu("NVIDIA GeForce RTX 4090").fits is False
    assert run_plan.unknown == ("NVIDIA GTX 9000",)
    small = architecture_of("Qwen/Qwen3-1.7B", fetch=False)
    assert plan_gpus(small, shape, GPUS, PRICES).fitting[0].gpu == "NVIDIA GeForce RTX 4090"


def test_nothing_that_fits_is_refused_with_the_memory_and_the_smallest_gpu_that_would_do():
    lora = TrainShape(method="lora")
    with pytest.raises(ConfigError, match=r"needs 3\d\.\d GB .*the smallest GPU that would do is NVIDIA L40S"):
        require_fit(plan_gpus(QWEN3_14B, lora, ["NVIDIA GeForce RTX 4090"], PRICES), QWEN3_14B, lora, PRICES)
    full = TrainShape(method="full", optimizer="adamw")
    with pytest.raises(ConfigError, match=r"needs 2\d\d\.\d GB .*no single GPU in the prices file would do"):
        require_fit(plan_gpus(QWEN3_14B, full, ["NVIDIA A100 80GB PCIe"], PRICES), QWEN3_14B, full, PRICES)


def test_full_fine_tunes_count_fp32_master_weights_and_adafactor_is_lean():
    eight = architecture_of("Qwen/Qwen3-8B", fetch=False)
    adamw = estimate_memory(eight, TrainShape(method="full", optimizer="adamw", micro_batch=1, checkpointing=True))
    adafactor = estimate_memory(eight, TrainShape(method="full", optimizer="adafactor", micro_batch=1,
                                                  checkpointing=True))
    assert adamw.weights == pytest.approx(eight.params * 6)  # fp32 master + bf16 autocast copies
    assert adamw.optimizer == pytest.approx(eight.params * 8)
    assert adafactor.optimizer < adamw.optimizer / 100


def test_qlora_keeps_the_weights_in_about_a_third():
    shape = TrainShape(method="lora", micro_batch=1, checkpointing=True)
    assert estimate_memory(QWEN3_14B, replace(shape, qlora=True)).weights < \
        estimate_memory(QWEN3_14B, shape).weights / 2.5


def test_architectures_come_from_local_configs_including_qwen3_5(tmp_path_factory):
    folder = family_model(tmp_path_factory, "qwen3.5")
    arch = architecture_of(str(folder))
    assert (arch.layers, arch.hidden, arch.head_dim) == (2, 64, 16) and arch.params > 0
    assert architecture_of("unsloth/Qwen3.5-9B", fetch=False).vocab == 248320
    with pytest.raises(ConfigError, match="unknown offline"):
        architecture_of("someone/Unknown-7B", fetch=False)


def test_train_cost_plans_a_run_folder_per_gpu(tmp_path, tmp_path_factory):
    make_run(tmp_path, "Qwen/Qwen3-14B", max_seq_len=2048)
    table = plan_run(tmp_path, GPUS).table()
    assert list(table.index) == ["NVIDIA A100 80GB PCIe", "NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090"]
    assert {"weights_gb", "activations_gb", "logits_gb", "total_gb", "micro_batch", "checkpointing"} <= set(table)


def test_the_local_backend_refuses_what_this_machine_cannot_hold(tmp_path, tmp_path_factory):
    make_run(tmp_path, "Qwen/Qwen3-14B")
    with pytest.raises(BackendError, match=r"14\.8B parameters and this machine has no GPU.*--backend runpod.*"
                                           r"smaller --base-model\. Nothing was downloaded"):
        guard_local(tmp_path, gpu=None)
    with pytest.raises(BackendError, match=r"this machine's NVIDIA GeForce RTX 4090 has 24 GB"):
        guard_local(tmp_path, gpu=("NVIDIA GeForce RTX 4090", 24.0))
    plan = guard_local(tmp_path, gpu=("NVIDIA H100 80GB HBM3", 80.0))
    assert plan.fits and plan.shape.effective_batch == 8
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    make_run(tiny, tiny_model(tmp_path_factory))
    assert guard_local(tiny, gpu=None) is None


def test_a_refused_local_run_fails_before_the_trainer_starts(tmp_path):
    from metahuman_lib.training.local import LocalBackend
    from metahuman_lib.training.status import read_status

    make_run(tmp_path, "Qwen/Qwen3-14B")
    with pytest.raises(BackendError, match="--backend runpod"):
        LocalBackend(echo=None).launch(tmp_path)
    assert read_status(tmp_path).state == "failed" and not (tmp_path / "trainer.pid").exists()
    assert read_train_config(tmp_path) == TrainConfig.from_dict(read_train_config(tmp_path).to_dict())
    write_train_config(tmp_path, read_train_config(tmp_path))
