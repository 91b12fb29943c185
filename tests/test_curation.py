"""Memories become samples: shapes, exclusions, cleaning, dedup, stats (defects 4, 5, 12)."""

from __future__ import annotations

import pandas as pd
import pytest
from _helpers_curation import memories_frame, memory

from metahuman_lib.curation import (
    DROP_REASONS,
    EXCLUDED_KINDS,
    CurationOptions,
    build_samples,
    system_prompt,
)
from metahuman_lib.errors import ConfigError
from metahuman_lib.memory import load_memories
from metahuman_lib.samples import SAMPLE_COLUMNS, read_samples_jsonl, write_samples_jsonl

ANSWER = "I water the tomatoes every morning before work, because the afternoon sun is brutal."


def _messages(result, index: int = 0) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in result.samples["messages"].iloc[index]]


def test_system_prompt_base_and_modes() -> None:
    base = "You are Greg's digital personality extension. Speak naturally in first person as Greg."
    assert system_prompt("Greg") == base
    for mode in ("dual", "emulation", "agent"):
        assert system_prompt("Greg", mode).startswith(base + " ")
    with pytest.raises(ConfigError, match="Unknown mode 'environment'"):
        system_prompt("Greg", "environment")


def test_older_pair_shape() -> None:
    frame = memories_frame([memory('Me: "How do you water?"', response=ANSWER,
                                   metadata={"cognitiveMode": "emulation"})])
    result = build_samples(frame, CurationOptions(username="Greg"))
    assert _messages(result) == [("system", system_prompt("Greg", "emulation")),
                                 ("user", "How do you water?"), ("assistant", ANSWER)]
    assert result.stats["shape_pair"] == 1


def test_newer_dialogue_shape_with_several_turns() -> None:
    content = ("User: How are you feeling today?\n\nAssistant: Honestly pretty wired after the demo.\n\n"
               "User: Why?\n\nAssistant: Because it finally worked on the first try today.")
    result = build_samples(memories_frame([memory(content, metadata={"cognitiveMode": "dual"})]),
                           CurationOptions(username="Greg"))
    assert _messages(result)[1:] == [
        ("user", "How are you feeling today?"), ("assistant", "Honestly pretty wired after the demo."),
        ("user", "Why?"), ("assistant", "Because it finally worked on the first try today.")]
    sample = result.samples.iloc[0]
    assert sample["assistant_text"] == ("Honestly pretty wired after the demo.\n\n"
                                        "Because it finally worked on the first try today.")
    assert sample["word_count"] == 15
    assert (sample["mode"], sample["mode_source"]) == ("dual", "metadata")


@pytest.mark.parametrize(("memory_type", "prompt", "mode"), [
    ("inner_dialogue", "What are you thinking about right now?", "dual"),
    ("reflection", "Take a moment to reflect. What comes to mind?", "dual"),
    ("dream", "Tell me about a dream you had.", "dual"),
    ("daydream", "What were you daydreaming about?", "dual"),
    ("journal", "Write a journal entry about your day.", "emulation"),
    ("observation", "What did you notice?", "emulation"),
    ("action", "What did you just do?", "agent"),
    ("task", "What do you need to get done?", "agent"),
    ("card_response", "Tell me something in your own words.", "emulation"),
])
def test_every_written_memory_becomes_a_monologue_sample(memory_type: str, prompt: str, mode: str) -> None:
    result = build_samples(memories_frame([memory(ANSWER, memory_type=memory_type)]),
                           CurationOptions(username="Greg"))
    assert _messages(result) == [("system", system_prompt("Greg", mode)), ("user", prompt),
                                 ("assistant", ANSWER)]
    assert result.stats["shape_monologue"] == 1


def test_tool_invocation_uses_its_parent_instruction() -> None:
    parent = memory("User: When is the last frost?\n\nAssistant: Let me look that up for you now.",
                    memory_id="p1", timestamp="2025-11-01T11:59:00Z")
    tool = memory("Invoked skill: web_search", memory_type="tool_invocation", memory_id="t1",
                  metadata={"toolName": "web_search", "toolInputs": {"query": "frost dates"},
                            "toolOutputs": {"top": "mid May"}, "success": True,
                            "parentEventId": "p1"})
    failed = memory("Invoked skill: weather", memory_type="tool_invocation", memory_id="t2",
                    timestamp="2025-11-01T12:01:00Z",
                    metadata={"toolName": "weather", "toolInputs": {"days": 3}, "success": False,
                              "error": "timeout after 30s"})
    result = build_samples(memories_frame([parent, tool, failed]), CurationOptions(username="Greg"))
    samples = result.samples.set_index("memory_id")
    assert [(m["role"], m["content"]) for m in samples.loc["t1", "messages"]][1:] == [
        ("user", "When is the last frost?"),
        ("assistant", 'Action: web_search {"query":"frost dates"}')]
    assert samples.loc["t2", "messages"][1:] == [
        {"role": "user", "content": "Use weather."},
        {"role": "assistant", "content": 'Action: weather {"days":3}'}]
    # the tool's output and error are never trained: the model must call, not invent results
    texts = " ".join(m["content"] for messages in result.samples["messages"] for m in messages)
    assert "mid May" not in texts and "timeout" not in texts and "Result:" not in texts
    assert samples.loc["t1", "mode"] == "agent"
    assert result.stats["shape_tool"] == 2


@pytest.mark.parametrize(("row", "reason"), [
    (memory(ANSWER, metadata={"reinforcementSignal": -1}), "rejected_by_person"),
    (memory(ANSWER, tags=["chat", "feedback"]), "feedback"),
    (memory(ANSWER, memory_type="operator_feedback"), "feedback"),
    (memory(ANSWER, memory_type="summary"), "summary"),
    (memory("Read file notes/garden.md", memory_type="file_read"), "system_artefact"),
    (memory("Searched for kale recipes", memory_type="search"), "system_artefact"),
])
def test_excluded_kinds_are_dropped_with_reason_and_can_be_included(row: dict, reason: str) -> None:
    frame = memories_frame([row])
    result = build_samples(frame)
    assert result.samples.empty
    assert result.dropped[["memory_id", "path", "type", "reason", "detail"]].iloc[0].tolist() == [
        "m000", frame["path"][0], row["type"], reason, EXCLUDED_KINDS[reason]]
    assert result.stats[f"dropped_{reason}"] == 1
    assert len(build_samples(frame, CurationOptions(include=frozenset({reason}))).samples) == 1


def test_mode_filter_drops_other_modes() -> None:
    frame = memories_frame([memory(ANSWER, memory_type="reflection"),
                            memory(ANSWER + " Twice.", memory_type="journal")])
    result = build_samples(frame, CurationOptions(mode="dual"))
    assert result.samples["type"].tolist() == ["reflection"]
    assert result.dropped[["reason", "detail"]].values.tolist() == [
        ["other_mode", "mode emulation, kept only dual"]]


def test_empty_and_short_answers_are_dropped() -> None:
    frame = memories_frame([memory('Me: "hi"', response="Sure!"), memory('Me: "hi"', response="Ok, sounds good")])
    result = build_samples(frame)
    assert result.dropped[["reason", "detail"]].values.tolist() == [
        ["empty_text", "no answer text left after cleaning"], ["too_short", "2 words, minimum 3"]]
    assert len(build_samples(frame, CurationOptions(min_words=2)).samples) == 1


def test_answers_are_never_cut_to_a_word_limit() -> None:
    long_answer = " ".join(f"word{i}" for i in range(300))
    result = build_samples(memories_frame([memory('Me: "Tell me everything"', response=long_answer)]))
    assert result.samples["assistant_text"][0] == long_answer
    assert result.samples["word_count"][0] == 300


def test_cleaning_scrubs_normalises_and_strips_filler() -> None:
    content = "User: My  mail is me@example.com\n\nAssistant: Okay, so   the key sk-" + "a" * 30 + " leaked."
    result = build_samples(memories_frame([memory(content)]))
    assert _messages(result)[1:] == [("user", "My mail is [email]"),
                                     ("assistant", "The key [api_key] leaked.")]
    assert result.stats["scrubbed_email"] == 1 and result.stats["scrubbed_api_key"] == 1
    assert result.stats["scrubbed_total"] == 2 and result.stats["filler_stripped"] == 1
    unscrubbed = build_samples(memories_frame([memory(content)]), CurationOptions(scrub=False))
    assert "me@example.com" in _messages(unscrubbed)[1][1]


def test_exact_and_near_duplicates_keep_the_earliest() -> None:
    long = ("I planted garlic in the north bed this weekend and covered it with straw so it survives "
            "the frost, and next spring I will add blood meal before the shoots come up.")
    rows = [memory(long, memory_type="journal", timestamp="2025-11-01T10:00:00Z"),
            memory(long.upper().replace(",", ""), memory_type="journal", timestamp="2025-11-02T10:00:00Z"),
            memory(long.replace("weekend", "week-end!"), memory_type="journal",
                   timestamp="2025-11-03T10:00:00Z"),
            memory(long + " Also kale.", memory_type="journal", timestamp="2025-11-04T10:00:00Z"),
            memory("Something entirely different about Spanish class and podcasts.",
                   memory_type="journal", timestamp="2025-11-05T10:00:00Z")]
    result = build_samples(memories_frame(rows))
    assert result.samples["memory_id"].tolist() == ["m000", "m004"]
    dropped = result.dropped.set_index("memory_id")
    assert dropped.loc["m001", "reason"] == "exact_duplicate"
    assert dropped.loc["m001", "detail"] == "same words as m000"
    assert dropped.loc["m002", "reason"] == "near_duplicate"
    assert dropped.loc["m003", "reason"] == "near_duplicate"
    assert dropped.loc["m003", "detail"].startswith("Jaccard 0.")
    assert (result.stats["duplicates_exact"], result.stats["duplicates_near"]) == (1, 2)
    kept_all = build_samples(memories_frame(rows), CurationOptions(dedup=False))
    assert len(kept_all.samples) == 5
    only_exact = build_samples(memories_frame(rows), CurationOptions(near_dup_threshold=1.0))
    assert len(only_exact.samples) == 4


def test_same_answer_to_different_real_questions_is_not_a_duplicate() -> None:
    rows = [memory('Me: "What is two plus two?"', response="Four, obviously, my friend."),
            memory('Me: "How many legs does a dog have?"', response="Four, obviously, my friend.")]
    assert len(build_samples(memories_frame(rows)).samples) == 2


@pytest.mark.parametrize(("options", "message"), [
    ({"mode": "dul"}, "Unknown mode 'dul': use one of dual, emulation, agent. Did you mean 'dual'?"),
    ({"near_dup_threshold": 0.0}, r"near_dup_threshold must be in \(0, 1\], got 0.0."),
    ({"min_words": 0}, "min_words must be at least 1, got 0."),
    ({"num_perm": 2}, "num_perm must be between 4 and 256, got 2."),
    ({"include": frozenset({"sumary"})}, "Unknown excluded kind 'sumary'.*Did you mean 'summary'"),
])
def test_options_are_validated(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CurationOptions(**options)


def test_options_from_mapping() -> None:
    options = CurationOptions.from_mapping({"min_words": 5, "include": ["summary"]})
    assert options.min_words == 5 and options.include == frozenset({"summary"})
    with pytest.raises(ConfigError, match="Unknown curation option 'min_word'.*Did you mean 'min_words'"):
        CurationOptions.from_mapping({"min_word": 5})


def test_username_defaults_to_the_memories_user() -> None:
    result = build_samples(memories_frame([memory(ANSWER, user_id="greggles")]))
    assert _messages(result)[0][1].startswith("You are greggles's digital personality extension.")


def test_empty_memories_table() -> None:
    result = build_samples(memories_frame([]))
    assert list(result.samples.columns) == list(SAMPLE_COLUMNS) and result.samples.empty
    assert result.dropped.empty and result.stats["memories"] == 0


def test_demo_profile_every_memory_is_accounted_for(demo_profile, tmp_path) -> None:
    memories, _ = load_memories(demo_profile)
    result = build_samples(memories, CurationOptions(username="demo"))
    samples, dropped = result.samples, result.dropped
    assert list(samples.columns) == list(SAMPLE_COLUMNS)
    assert set(samples["memory_id"]).isdisjoint(dropped["memory_id"])
    assert len(samples) + len(dropped) == len(memories) == result.stats["memories"]
    assert set(dropped["reason"]) <= set(DROP_REASONS)
    assert result.stats["kept"] == len(samples)
    assert sum(result.stats[f"dropped_{r}"] for r in DROP_REASONS) == len(dropped)
    # defect 5: far more than the pairs become samples
    assert result.stats["shape_monologue"] > 0 and result.stats["shape_tool"] > 0
    assert result.stats["shape_pair"] + result.stats["shape_dialogue"] < len(samples)
    assert samples["timestamp"].is_monotonic_increasing and samples["sample_id"].is_unique
    assert (samples["word_count"] == samples["assistant_text"].str.split().str.len()).all()
    # deterministic and written as JSONL that reads back identically
    again = build_samples(memories, CurationOptions(username="demo"))
    pd.testing.assert_frame_equal(samples, again.samples)
    path = tmp_path / "samples.jsonl"
    assert write_samples_jsonl(samples, path) == len(samples)
    back = read_samples_jsonl(path)
    assert back["messages"].tolist() == samples["messages"].tolist()
    assert back["sample_id"].tolist() == samples["sample_id"].tolist()


def test_tool_instruction_from_metadata_and_lone_user_message() -> None:
    rows = [memory("Invoked skill: calendar_list", memory_type="tool_invocation",
                   metadata={"toolName": "calendar_list", "instruction": "What's on today?",
                             "toolOutputs": {"events": ["standup 9:30"]}}),
            memory("User: Remind me to water the basil tomorrow.", timestamp="2025-11-01T12:05:00Z")]
    result = build_samples(memories_frame(rows))
    assert _messages(result, 0)[1:] == [
        ("user", "What's on today?"),
        ("assistant", "Action: calendar_list")]
    assert _messages(result, 1)[1:] == [("user", "What's on your mind?"),
                                        ("assistant", "Remind me to water the basil tomorrow.")]


def test_filler_is_stripped_from_chat_replies_only() -> None:
    journal = memory("As an AI researcher, I spend my days reading papers.", memory_type="journal")
    chat = memory("User: Coming tonight?\n\nAssistant: Sure, I'll be there.", timestamp="2025-11-02T12:00:00Z")
    result = build_samples(memories_frame([journal, chat]))
    answers = [messages[-1]["content"] for messages in result.samples["messages"]]
    assert answers == ["As an AI researcher, I spend my days reading papers.", "I'll be there."]
    assert result.stats["filler_stripped"] == 1


def test_japanese_and_chinese_answers_are_not_one_word() -> None:
    rows = [memory("今日は公園で友達と長い散歩をしました。とても楽しかったです。", memory_type="journal"),
            memory("我今天和朋友在公园里散步了很久。", memory_type="journal", timestamp="2025-11-02T12:00:00Z")]
    result = build_samples(memories_frame(rows))
    assert result.samples["memory_id"].tolist() == ["m000", "m001"]
    assert result.samples["word_count"].tolist() == [28, 15]


def test_two_different_answers_to_the_same_long_pasted_prompt_are_both_kept() -> None:
    pasted = " ".join(f"clause{i} of the long pasted article about soil and compost" for i in range(40))
    rows = [memory(f'Me: "{pasted}"', response="I think the compost part is right; the soil pH bit is wrong."),
            memory(f'Me: "{pasted}"', response="Honestly it reads like marketing, I would not buy that mulch.",
                   timestamp="2025-11-02T12:00:00Z"),
            memory(f'Me: "{pasted}"', response="Honestly it reads like marketing, I would not buy that mulch.",
                   timestamp="2025-11-03T12:00:00Z")]
    result = build_samples(memories_frame(rows))
    assert result.samples["memory_id"].tolist() == ["m000", "m001"]  # the third repeats the second exactly
    assert result.dropped.set_index("memory_id").loc["m002", "reason"] == "exact_duplicate"
