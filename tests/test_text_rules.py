"""The text rules of curation: normalisation, leading filler (defect 12), PII scrubbing."""

from __future__ import annotations

import pytest

from metahuman_lib.text_rules import (
    FILLER_PHRASES,
    count_words,
    filler_phrases_in,
    luhn_valid,
    may_hold_pii_batch,
    normalise_text,
    scrub_pii,
    strip_leading_filler,
    texts_with_filler,
)


@pytest.mark.parametrize(("raw", "expected"), [
    ("  plain text  ", "plain text"),
    ("two  spaces\tand tab", "two spaces and tab"),
    ("line one  \r\n  line two", "line one\nline two"),
    ("para one\n\n\n\n\npara two", "para one\n\npara two"),
    ("cafe\u0301 au lait", "café au lait"),  # NFC composes e + combining acute
    ("zero\u200bwidth\ufeff", "zerowidth"),
    ("nbsp\u00a0here\u2003too", "nbsp here too"),
    ("ctrl\x07char", "ctrlchar"),
    ("keeps\n\nparagraphs", "keeps\n\nparagraphs"),
])
def test_normalise_text(raw: str, expected: str) -> None:
    assert normalise_text(raw) == expected


@pytest.mark.parametrize(("text", "expected"), [
    # word boundaries: MetaHuman OS turned these into "metimes" and "lution" (defect 12)
    ("Sometimes I garden.", "Sometimes I garden."),
    ("Solution: water more.", "Solution: water more."),
    ("Sofa is comfy", "Sofa is comfy"),
    ("Surely not", "Surely not"),
    ("Okayish day", "Okayish day"),
    ("So-called experts", "So-called experts"),
    ("Here's whatever", "Here's whatever"),
    ("Letting go", "Letting go"),
    # no stray punctuation left behind
    ("Let me think about that. Yes", "Yes"),
    ("Let me start with the easy part. Water daily.", "Water daily."),
    ("Okay, so I think it works.", "I think it works."),
    ("Alright, so we go", "We go"),
    ("Ok, fine.", "Fine."),
    ("Sure, tomorrow works.", "Tomorrow works."),
    ("So, what now?", "What now?"),
    ("So? What now", "What now"),
    ("Okay—so that's it", "That's it"),
    ("okay... fine then", "Fine then"),
    ("Certainly! Here's what I think: tomatoes.", "Tomatoes."),
    ("OK. Let me think about it, yes.", "Yes."),
    ("I’m just here to help, but it works", "But it works"),
    ("I'm just an AI; still, I like kale.", "Still, I like kale."),
    ("As an AI, I can't know.", "I can't know."),
    ("As a language model, sure.", "Sure."),
    ("Here’s what happened: the valve broke.", "The valve broke."),
    # only the start, and a clause needs its punctuation
    ("I said okay, so it goes.", "I said okay, so it goes."),
    ("Let me think about this without punctuation", "Let me think about this without punctuation"),
    # a whole leading phrase only: the person's own words stay (issue 14)
    ("Sure thing, I'll be there.", "Sure thing, I'll be there."),
    ("So I went home early.", "So I went home early."),
    ("As an AI researcher I spend my days reading papers.", "As an AI researcher I spend my days reading papers."),
    ("As an AI researcher I read. I like it.", "As an AI researcher I read. I like it."),
    ("Let me think about it.", "Let me think about it."),
    ("Certainly not today.", "Certainly not today."),
    # the whole text was filler
    ("Sure!", ""),
    ("Okay.", ""),
    ("", ""),
])
def test_strip_leading_filler(text: str, expected: str) -> None:
    assert strip_leading_filler(text) == expected


def test_strip_leading_filler_returns_the_same_object_when_nothing_changes() -> None:
    text = "Sometimes the beds dry out."
    assert strip_leading_filler(text) is text


@pytest.mark.parametrize(("text", "expected", "kind"), [
    ("mail me at a.b+c@example.co.uk now", "mail me at [email] now", "email"),
    ("call +1 555 014 7720 when you land", "call [phone] when you land", "phone"),
    ("Maya's number is (555) 013-2291.", "Maya's number is [phone].", "phone"),
    ("or 555-013-2291", "or [phone]", "phone"),
    ("key sk-abcdefghijklmnopqrstuvwxyz0123 here", "key [api_key] here", "api_key"),
    ("AKIAABCDEFGHIJKLMNOP is old", "[api_key] is old", "api_key"),
    ("AIza" + "x" * 35, "[api_key]", "api_key"),
    ("token ghp_" + "a1" * 18, "token [token]", "token"),
    ("Authorization: Bearer abcdefghijklmnop1234", "Authorization: Bearer [token]", "token"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcdefghijk", "jwt [token]", "token"),
    ("slack xoxb-1234567890-abc", "slack [token]", "token"),
    ("card 4111 1111 1111 1111 ok", "card [card] ok", "card"),
    ("card 4111-1111-1111-1111", "card [card]", "card"),
])
def test_scrub_pii_replaces_and_counts(text: str, expected: str, kind: str) -> None:
    counts: dict[str, int] = {}
    assert scrub_pii(text, counts) == expected
    assert counts == {kind: 1}
    assert may_hold_pii_batch([text]).tolist() == [True]


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112",          # fails the Luhn check
    "on 2025-11-22 at 18:49:19",          # a timestamp
    "order 12345678 shipped",             # a plain number
    "the desk-lamp and risk-free plan",   # words containing sk-
    "I love 3 tomatoes and 12 peppers",
    "email me later @ home",
])
def test_scrub_pii_leaves_ordinary_text(text: str) -> None:
    counts: dict[str, int] = {}
    assert scrub_pii(text, counts) == text
    assert counts == {}


def test_may_hold_pii_batch_flags_only_possible_texts() -> None:
    texts = ["plain words only", "mail a@b.io", "", "digits 1234 5678", "x" * 20, "short-run_ok"]
    assert may_hold_pii_batch(texts).tolist() == [False, True, False, True, True, False]
    assert may_hold_pii_batch([]).tolist() == []


@pytest.mark.parametrize(("digits", "valid"), [
    ("4111111111111111", True), ("4111111111111112", False), ("79927398713", True), ("0", True),
])
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


@pytest.mark.parametrize(("text", "found"), [
    ("I’m just saying", ["i'm just"]),
    ("Okay, so here's what I think", ["here's what", "okay, so"]),
    ("AS AN AI model I am certainly sure", ["as an ai", "certainly"]),
    ("Nothing to see", []),
])
def test_filler_phrases_in(text: str, found: list[str]) -> None:
    assert filler_phrases_in(text) == found


from hypothesis import given, settings
from hypothesis import strategies as st

_PIECES = st.sampled_from(["a", "Z", "7", "0", " ", "-", "_", "@", ".", "+", "(", ")", "\n", "é",
                           "sk-", "ghp_", "AKIA", "Bearer ", "x.io", "4111 1111 1111 1111"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_PIECES, max_size=40).map("".join), min_size=1, max_size=6))
def test_pre_check_never_misses_what_scrubbing_would_replace(texts: list[str]) -> None:
    flags = may_hold_pii_batch(texts)
    for text, flag in zip(texts, flags, strict=True):
        if scrub_pii(text) != text:
            assert flag, text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_normalise_and_strip_are_idempotent_on_their_output(text: str) -> None:
    once = normalise_text(text)
    assert normalise_text(once) == once
    assert once == once.strip()
    stripped = strip_leading_filler(once)
    tail = once[len(once) - len(stripped):] if stripped else ""
    assert stripped[1:] == tail[1:] and stripped[:1].lower() == tail[:1].lower()


def test_pre_check_sees_a_bearer_token_split_by_dots() -> None:
    """Found by the property test above: key runs stop at '.', a bearer token does not."""
    texts = ["Bearer aaaa.sk-ghp_ghp_", "no secrets here"]
    assert may_hold_pii_batch(texts).tolist() == [True, False]
    assert scrub_pii(texts[0]) == "Bearer [token]"


_FILLER_ALPHABET = st.sampled_from(["as an ai", "AS A LANGUAGE MODEL", "certainly", "let me think",
                                    "I’m just", "i'm here to", "here’s what", "Okay, so", "alright, so",
                                    "İ", "\u212a", "\x00", "é", " ", "\n", "so", "ai", "k", "ay"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_FILLER_ALPHABET, max_size=8).map("".join), max_size=12))
def test_filler_search_over_many_texts_equals_one_by_one(texts: list[str]) -> None:
    found = texts_with_filler(texts)
    for phrase in FILLER_PHRASES:
        assert found[phrase] == [i for i, text in enumerate(texts) if phrase in filler_phrases_in(text)]


def test_filler_search_folds_the_characters_that_lowercase_to_ascii() -> None:
    texts = ["OKAY, SO we start", "o\u212aay, so", "as an aİ", "plain text", "Here’s what I think"]
    assert {phrase: hits for phrase, hits in texts_with_filler(texts).items() if hits} == {
        "okay, so": [0, 1], "as an ai": [2], "here's what": [4]}


@pytest.mark.parametrize(("text", "expected"), [
    ("\x1b[31mError\x1b[0m: disk full", "Error: disk full"),
    ("[31mError[0m: disk full", "Error: disk full"),
    ("cleared[2J the screen", "cleared the screen"),
    ("[1;32mok[0m", "ok"),
    ("see [1], [12] and [5min] or [a]", "see [1], [12] and [5min] or [a]"),
])
def test_terminal_codes_and_their_remnants_are_removed(text: str, expected: str) -> None:
    assert normalise_text(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("I went for a long walk.", 6),
    ("今日は公園で友達と長い散歩をしました。", 18),
    ("我今天去了公园散步", 9),
    ("안녕하세요 오늘 날씨가 좋네요", 4),
    ("Café au lait", 3),
    ("A trip to 東京 in May。", 7),
])
def test_word_counts_handle_scripts_without_spaces(text: str, expected: int) -> None:
    assert count_words(text) == expected


@pytest.mark.parametrize(("text", "expected", "kind"), [
    ("SSN 123-45-6789.", "SSN [national_id].", "national_id"),
    ("IBAN GB82 WEST 1234 5698 7654 32 please", "IBAN [iban] please", "iban"),
    ("to DE89370400440532013000 today", "to [iban] today", "iban"),
    ("mobile +44 7700 900123", "mobile [phone]", "phone"),
    ("ring 07911 123456 later", "ring [phone] later", "phone"),
    ("Berlin 030 12345678", "Berlin [phone]", "phone"),
    ("my number 5551234567", "my number [phone]", "phone"),
    ("hf token hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "hf token [token]", "token"),
    ("runpod rpa_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd", "runpod [token]", "token"),
    ("gh ghp_16C7e42F292c6912E7710c838347Ae178B4a", "gh [token]", "token"),
    ("slack xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "slack [token]", "token"),
    ("aws AKIAIOSFODNN7EXAMPLE", "aws [api_key]", "api_key"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\nok",
     "[private_key]\nok", "private_key"),
])
def test_scrub_more_kinds(text: str, expected: str, kind: str) -> None:
    counts: dict[str, int] = {}
    assert scrub_pii(text, counts) == expected
    assert counts == {kind: 1}
    assert may_hold_pii_batch([text, "nothing here"]).tolist() == [True, False]


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112 fails Luhn", "version 2.10.3 and 10.4.1", "on 2025-11-01 at 10:30:00",
    "on 01/02/2025", "unix time 1732982400", "pi is 3.14159265358", "IBAN GB00 WEST 1234 5698 7654 32 (bad check)",
    "SSN 666-12-3456 is never issued", "order 0123456789012", "id 12345678901",
])
def test_harmless_numbers_stay(text: str) -> None:
    counts: dict[str, int] = {}
    assert scrub_pii(text, counts) == text and counts == {}
