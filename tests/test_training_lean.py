"""The lean training paths give the plain path's loss and gradients: the chunked (recomputed)
cross-entropy with each family's head (Gemma's soft-capping included), gradient checkpointing, and
full fine-tunes that keep fp32 master weights under bf16 autocast."""

from __future__ import annotations

import pytest
import torch
from _helpers_families import FAMILY_NAMES, family_model
from _helpers_training import make_run, tiny_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from metahuman_lib._io import read_json
from metahuman_lib.training import train
from metahuman_lib.training.lean import chunked_loss_sum, loss_sum
from metahuman_lib.training.modeling import enable_checkpointing
from metahuman_lib.training.scoring import loss_sums

pytestmark = pytest.mark.slow


def batch(vocab: int, packed: bool):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (2, 40), generator=generator)
    labels = ids.clone()
    labels[:, :12] = -100
    inputs = {"input_ids": ids}
    if packed:
        inputs["position_ids"] = torch.cat([torch.arange(25), torch.arange(15)]).repeat(2, 1)
        labels[:, 25] = -100
    else:
        inputs["attention_mask"] = torch.ones_like(ids)
    return inputs, labels


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("packed", [False, True])
def test_the_chunked_loss_equals_the_plain_loss_and_gradients(tmp_path_factory, family, packed):
    model = AutoModelForCausalLM.from_pretrained(family_model(tmp_path_factory, family), dtype=torch.float32)
    inputs, labels = batch(model.config.get_text_config().vocab_size, packed)
    plain, path = loss_sum(model, inputs, labels, lean=False)
    assert path == "plain"
    plain.backward()
    expected = grads(model)
    model.zero_grad()
    lean, path = loss_sum(model, inputs, labels)
    assert path == "chunked"
    lean.backward()
    assert lean.item() == pytest.approx(plain.item(), rel=1e-5)
    for name, grad in grads(model).items():
        assert torch.allclose(grad, expected[name], rtol=1e-4, atol=1e-6), name


def test_gemma2_soft_capping_is_applied_in_the_chunks(tmp_path_factory):
    model = AutoModelForCausalLM.from_pretrained(family_model(tmp_path_factory, "gemma2"), dtype=torch.float32)
    assert model.config.final_logit_softcapping
    with torch.no_grad():
        model.lm_head.weight.mul_(200.0)  # logits large enough for the soft-cap to matter
    inputs, labels = batch(model.config.vocab_size, packed=False)
    hidden = model.get_decoder()(**inputs).last_hidden_state
    capped = chunked_loss_sum(hidden, model.lm_head.weight, labels, softcap=model.config.final_logit_softcapping,
                              chunk_tokens=7)
    uncapped = chunked_loss_sum(hidden, model.lm_head.weight, labels, softcap=None)
    reference = loss_sums(model(**inputs).logits, labels)[0].sum()
    assert capped.item() == pytest.approx(reference.item(), rel=1e-5) and uncapped.item() != pytest.approx(
        reference.item(), rel=1e-5)


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tmp_path_factory):
    folder = family_model(tmp_path_factory, "llama3")
    results = []
    for checkpointing in (False, True):
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        if checkpointing:
            enable_checkpointing(model)
        model.train()
        inputs, labels = batch(model.config.vocab_size, packed=True)
        loss, _path = loss_sum(model, inputs, labels)
        loss.backward()
        results.append((loss.item(), grads(model)))
    (plain_loss, plain_grads), (ckpt_loss, ckpt_grads) = results
    assert ckpt_loss == pytest.approx(plain_loss, rel=1e-6)
    assert all(torch.allclose(ckpt_grads[n], plain_grads[n], rtol=1e-5, atol=1e-7) for n in plain_grads)


def moved_share(run_dir, base) -> float:
    before = load_file(base / "model.safetensors")
    after = load_file(run_dir / "output" / "model" / "model.safetensors")
    changed = total = 0
    for name, value in before.items():
        changed += int((after[name].float() != value.float()).sum())
        total += value.numel()
    return changed / total


def test_a_full_fine_tune_in_bf16_moves_the_weights_as_fp32_does(tmp_path, tmp_path_factory):
    base = tiny_model(tmp_path_factory)
    shares = {}
    for precision in ("fp32", "bf16"):
        run_dir = tmp_path / precision
        run_dir.mkdir()
        make_run(run_dir, base, method="full", precision=precision, learning_rate=5e-6, max_steps=3,
                 optimizer="adafactor", eval_train_samples=0)
        train.run(run_dir)
        shares[precision] = moved_share(run_dir, base)
        assert read_json(run_dir / "effective_config.json")["loaded"]["dtype"] == "float32"
    assert shares["fp32"] > 0.9
    assert shares["bf16"] == pytest.approx(shares["fp32"], abs=0.05)


def test_pure_bf16_weights_would_lose_those_small_steps(tmp_path_factory):
    """Why the master weights are fp32: the same tiny step applied to bf16 weights mostly rounds away."""
    weights = AutoModelForCausalLM.from_pretrained(tiny_model(tmp_path_factory)).model.layers[0].mlp.up_proj.weight
    step = torch.full_like(weights, 5e-6)
    assert ((weights + step) != weights).float().mean() > 0.99
    assert ((weights.bfloat16() + step.bfloat16()) != weights.bfloat16()).float().mean() < 0.2


def test_the_trainer_records_its_lean_settings(tmp_path, tmp_path_factory):
    make_run(tmp_path, tiny_model(tmp_path_factory), max_steps=1, gradient_checkpointing=True)
    train.run(tmp_path)
    lean = read_json(tmp_path / "effective_config.json")["lean"]
    assert lean["loss"] == "chunked" and lean["gradient_checkpointing"] is True and "tf32" in lean


def test_bf16_autocast_gives_the_fp32_loss_within_tolerance(tmp_path_factory):
    model = AutoModelForCausalLM.from_pretrained(family_model(tmp_path_factory, "qwen3"), dtype=torch.float32)
    inputs, labels = batch(model.config.vocab_size, packed=True)
    exact, _path = loss_sum(model, inputs, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed, _path = loss_sum(model, inputs, labels)
    assert mixed.dtype == torch.float32  # the cross-entropy itself runs in fp32
    assert mixed.item() == pytest.approx(exact.item(), rel=0.02)


def test_packed_rows_give_each_sample_its_unpacked_loss(tmp_path_factory):
    """Padding-free packing (position ids restart per sample) through the attention kernel in use."""
    model = AutoModelForCausalLM.from_pretrained(family_model(tmp_path_factory, "llama3"), dtype=torch.float32)
    generator = torch.Generator().manual_seed(1)
    first, second = torch.randint(5, 400, (1, 14), generator=generator), torch.randint(5, 400, (1, 9),
                                                                                        generator=generator)
    separate = sum(loss_sum(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, ids)[0].item()
                   for ids in (first, second))
    packed_ids = torch.cat([first, second], dim=1)
    labels = packed_ids.clone()
    labels[0, first.shape[1]] = -100  # the second sample's first token is not trained to follow the first
    positions = torch.cat([torch.arange(first.shape[1]), torch.arange(second.shape[1])]).unsqueeze(0)
    packed, _path = loss_sum(model, {"input_ids": packed_ids, "position_ids": positions}, labels)
    assert packed.item() == pytest.approx(separate, rel=1e-4)
