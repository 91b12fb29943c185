import copy
import random

import pytest
import torch
from _helpers_training import tiny_model

from metahuman_lib.training import data as tdata
from metahuman_lib.training.data import IGNORE_INDEX, Example


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model(tmp_path_factory))


CONVERSATIONS = [
    [{"role": "user", "content": "How are you feeling today?"},
     {"role": "assistant", "content": "Honestly I feel calm."}],
    [{"role": "system", "content": "You are Ana."}, {"role": "user", "content": "Tell me about the garden."},
     {"role": "assistant", "content": "Mostly the garden."}, {"role": "user", "content": "And?"},
     {"role": "assistant", "content": "I think it went well."}],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_only_assistant_turns_carry_loss(tokenizer, messages):
    ids, labels, truncated = tdata.tokenize_sample(tokenizer, messages, 512)
    assert ids == tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    trained = tokenizer.decode([i for i, label in zip(ids, labels) if label != IGNORE_INDEX])
    expected = "".join(m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant")
    assert trained == expected
    assert not truncated


def test_masked_share_is_exact(tokenizer):
    records = [{"messages": m, "metadata": {"sample_id": str(i), "timestamp": "2026-10-01T00:00:00Z"}}
               for i, m in enumerate(CONVERSATIONS)]
    _examples, stats = tdata.tokenize_records(tokenizer, records, 512)
    total = sum(len(tokenizer.apply_chat_template(m, tokenize=True, return_dict=True)["input_ids"])
                for m in CONVERSATIONS)
    trained = sum(len(tokenizer(m["content"], add_special_tokens=False)["input_ids"]) + 1
                  for conv in CONVERSATIONS for m in conv if m["role"] == "assistant")
    assert (stats.tokens, stats.trained_tokens) == (total, trained)
    assert stats.masked_share == round(1 - trained / total, 6)
    assert 0.5 < stats.masked_share < 0.9


def test_truncation_is_counted_and_empty_samples_dropped(tokenizer):
    long_answer = {"role": "assistant", "content": "word " * 200}
    records = [
        {"messages": [{"role": "user", "content": "Hi"}, long_answer], "metadata": {"sample_id": "a"}},
        {"messages": [{"role": "user", "content": "question " * 100}, long_answer], "metadata": {"sample_id": "b"}},
    ]
    examples, stats = tdata.tokenize_records(tokenizer, records, 64)
    assert [e.sample_id for e in examples] == ["a"]
    assert len(examples[0].input_ids) == 64 and examples[0].truncated
    assert stats.truncated_samples == 2
    assert stats.dropped == {"no_assistant_tokens_after_truncation": 1}


def test_chatml_fallback_renders_like_qwen(tokenizer):
    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    assert tdata.ensure_chat_template(bare) == "chatml_fallback"
    assert tdata.ensure_chat_template(tokenizer) == "model"
    text = bare.apply_chat_template(CONVERSATIONS[0], tokenize=False, add_generation_prompt=False)
    assert text == ("<|im_start|>user\nHow are you feeling today?<|im_end|>\n"
                    "<|im_start|>assistant\nHonestly I feel calm.<|im_end|>\n")


def _example(length, start):
    ids = list(range(start, start + length))
    return Example(ids, [IGNORE_INDEX] * (length // 2) + ids[length // 2 :])


def test_packing_keeps_every_token_and_restarts_positions():
    examples = [_example(n, 10 * i) for i, n in enumerate([50, 30, 70, 20, 60, 10])]
    rows = tdata.pack_examples(examples, 100)
    assert all(len(row) <= 100 for row in rows)
    assert sorted(t for row in rows for t in row.input_ids) == sorted(t for e in examples for t in e.input_ids)
    assert len(rows) == 3  # first fit: [50,30,20], [70,10], [60]
    first = rows[0]
    assert first.position_ids == list(range(50)) + list(range(30)) + list(range(20))
    assert [first.labels[i] for i in (0, 50, 80)] == [IGNORE_INDEX] * 3


def test_packing_and_length_grouping_cut_padding():
    rng = random.Random(3)
    examples = [_example(rng.randint(3, 60), 0) for _ in range(80)]
    naive = [tdata.single_rows(examples[i : i + 4]) for i in range(0, 80, 4)]
    packed = tdata.plan_epoch(examples, batch_size=4, max_seq_len=64, packing=True, seed=0, epoch=0)
    grouped = tdata.plan_epoch(examples, batch_size=4, max_seq_len=64, packing=False, seed=0, epoch=0)

    def share(batches):
        pads, slots = map(sum, zip(*(tdata.padding_counts(b) for b in batches)))
        return pads / slots

    assert sum(len(r) for b in packed for r in b) == sum(len(e.input_ids) for e in examples)
    assert share(packed) < 0.1 < share(naive)
    assert share(grouped) < share(naive) / 3
    assert tdata.padding_counts([tdata.Row([1] * 3, [1] * 3, [0, 1, 2]), tdata.Row([1], [1], [0])]) == (2, 6)


def test_plan_is_seeded():
    examples = [_example(n, n) for n in range(5, 45)]
    plan = lambda seed, epoch: [[r.input_ids for r in b] for b in tdata.plan_epoch(
        examples, batch_size=3, max_seq_len=80, packing=True, seed=seed, epoch=epoch)]
    assert plan(1, 0) == plan(1, 0)
    assert plan(1, 0) != plan(2, 0) and plan(1, 0) != plan(1, 1)


def test_shards_are_even_and_cover_every_batch():
    batches = [[tdata.Row([i], [i], [0])] for i in range(5)]
    shards = [tdata.shard_batches(batches, rank, 2) for rank in range(2)]
    assert [len(s) for s in shards] == [3, 3]
    assert {b[0].input_ids[0] for s in shards for b in s} == set(range(5))


def test_packed_examples_do_not_see_each_other(tmp_path_factory, tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model(tmp_path_factory)).eval()
    first, second = ([tdata.tokenize_sample(tokenizer, m, 256)[0] for m in CONVERSATIONS])
    row = tdata.pack_examples([Example(first, first), Example(second, second)], 512)
    assert len(row) == 1
    batch = tdata.collate(row, tokenizer.pad_token_id, packed=True)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        alone = model(input_ids=torch.tensor([second])).logits[0]
    assert torch.allclose(packed[len(first):], alone, atol=1e-5)
