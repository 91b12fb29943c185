import pytest
import yaml

from metahuman_lib.errors import ConfigError
from metahuman_lib.training.cost import (
    estimate_tokens,
    load_gpu_prices,
    model_params_billions,
    project_cost,
)

PRICES = {"mfu": 0.5, "overhead_minutes": 6,
          "gpus": {"Test GPU": {"price_per_hour": 2.0, "bf16_tflops": 100, "memory_gb": 80}}}


@pytest.fixture()
def prices(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump(PRICES))
    return load_gpu_prices(path)


def test_full_finetune_projection_by_hand(prices):
    estimate = project_cost(1_000_000, 4000, method="full", model_params_b=1.0, gpu="Test GPU", epochs=1,
                            batch_size=4, grad_accum=8, max_seq_len=2048, eval_tokens=500_000, prices=prices)
    # 6 * 1e9 * 1e6 FLOPs at 100 TFLOPS * 0.5 = 120 s; eval 2 passes * 2 * 1e9 * 5e5 = 40 s; overhead 6 min
    assert estimate.train_hours == round(120 / 3600, 6)
    assert estimate.hours == round((120 + 40 + 360) / 3600, 6)
    assert estimate.dollars == round((120 + 40 + 360) / 3600 * 2.0, 2)
    assert estimate.steps == 17  # 514 packed rows -> 129 batches -> 16.1 steps
    assert estimate.train_tokens == 1_000_000


def test_lora_is_two_thirds_of_full_and_scales_with_epochs(prices):
    common = {"samples": 100, "model_params_b": 14.0, "gpu": "Test GPU", "prices": prices}
    full = project_cost(200_000, method="full", epochs=1, **common)
    lora = project_cost(200_000, method="lora", epochs=3, **common)
    assert lora.train_hours == pytest.approx(full.train_hours * 2, rel=1e-3)
    assert lora.train_tokens == 600_000


def test_repository_prices_file_has_the_spec_gpu():
    prices = load_gpu_prices()
    assert prices.gpu("NVIDIA A100 80GB PCIe").price_per_hour == 1.89
    assert prices.gpu("NVIDIA GeForce RTX 4090").memory_gb == 24


def test_overrides_and_errors(tmp_path, prices):
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump(PRICES))
    changed = load_gpu_prices(path, {"mfu": 0.25, "gpus": {"Test GPU": {"price_per_hour": 3.0}}})
    assert (changed.mfu, changed.gpu("Test GPU").price_per_hour, changed.gpu("Test GPU").bf16_tflops) == (0.25, 3.0, 100)
    with pytest.raises(ConfigError, match=r"Unknown GPU type 'Test GPUs' in the GPU prices file\. Did you mean: Test GPU\?"):
        prices.gpu("Test GPUs")
    with pytest.raises(ConfigError, match=r"Unknown key\(s\) \['mfy'\] in the GPU prices file"):
        load_gpu_prices(path, {"mfy": 0.3})
    with pytest.raises(ConfigError, match=r"method must be one of full, lora; got 'qlora'"):
        project_cost(1, 1, method="qlora", model_params_b=1, gpu="Test GPU", prices=prices)


@pytest.mark.parametrize(("name", "expected"), [("Qwen/Qwen3-14B", 14.77), ("meta-llama/Llama-3.1-8B-Instruct", 8.03),
                                                ("Qwen/Qwen2.5-0.5B", 0.5), ("HuggingFaceTB/SmolLM2-135M", 0.135)])
def test_model_size_from_the_architecture_table_or_the_name(name, expected):
    assert model_params_billions(name) == pytest.approx(expected)


def test_model_size_unknown_name():
    with pytest.raises(ConfigError, match=r"Cannot tell the size of 'my-model' from its name: pass model_params_b"):
        model_params_billions("my-model")


def test_token_estimate_from_characters():
    records = [{"messages": [{"role": "user", "content": "a" * 38}, {"role": "assistant", "content": "b" * 76}]}]
    assert estimate_tokens(records) == (30 + 10, 1)
