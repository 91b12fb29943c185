"""The text rules curation applies to every message: normalisation, leading filler, PII scrubbing.

They live apart from :mod:`metahuman_lib.curation` because they are pure string functions with
exact, documented behaviour (docs/curation.md) that tests pin down case by case.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left

import numpy as np

from metahuman_lib._native import kernels as _kernels

# ---------------------------------------------------------------------------------------------
# Unicode and whitespace normalisation
# ---------------------------------------------------------------------------------------------

_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200d\u2060\ufeff]")
_SPACES = "\t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
_HORIZONTAL_SPACE = re.compile(f" *[{_SPACES}][ {_SPACES}]*|  +")
"""Runs that need rewriting only (a single plain space never matches, so sub stays cheap)."""
_LINE_EDGE_SPACE = re.compile(" \n ?|\n ")
_BLANK_LINES = re.compile("\n{3,}")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]|(?<!\[)\[\d{1,3}(?:;\d{1,3})*[mKJHABCDGf](?![a-z]*\])")
"""Terminal escape sequences, and the ``[31m`` / ``[2J`` remnants left where the ESC was lost."""


def normalise_text(text: str) -> str:
    """NFC-normalise ``text`` and tidy its whitespace, keeping paragraph breaks.

    Terminal colour and cursor codes go (``\x1b[31m``, and ``[31m`` / ``[2J`` remnants whose ESC was
    lost); invisible and control characters go; CRLF and CR become LF; runs of spaces and tabs (and
    exotic spaces) become one space; spaces around line breaks go; three or more line breaks
    become one blank line; the ends are trimmed. Meaning and wording never change.
    The common case (printable text on one line) is checked first, in C, for speed: printable
    text (ASCII or not) holds no control, invisible or exotic space character and no line
    break, so only runs of plain spaces can need rewriting.
    """
    if "[" in text or "\x1b" in text:
        text = _ANSI.sub("", text)
    ascii_only = text.isascii()
    if not ascii_only:
        text = unicodedata.normalize("NFC", text)
    if text.isprintable():
        return text.strip() if "  " not in text else _HORIZONTAL_SPACE.sub(" ", text).strip()
    needs_space_work = (not ascii_only or "  " in text or " \n" in text or "\n " in text
                        or "\t" in text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _INVISIBLE.sub("", text)
    if needs_space_work:
        text = _LINE_EDGE_SPACE.sub("\n", _HORIZONTAL_SPACE.sub(" ", text))
    if "\n\n\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


# ---------------------------------------------------------------------------------------------
# Word counts, for scripts with and without spaces
# ---------------------------------------------------------------------------------------------

_UNSPACED = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
                       "\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f\u1780-\u17ff\U00020000-\U0002fa1f]")
"""Characters of scripts written without spaces between words: Chinese, Japanese kana, Thai, Lao,
Burmese, Khmer. Korean Hangul separates words with spaces and is counted by them."""
_UNSPACED_PUNCTUATION = re.compile("[\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]")


def count_words(text: str) -> int:
    """Words in ``text``: whitespace-separated words, where each character of a script written without
    spaces counts as one word (as word processors count Chinese and Japanese), so a Japanese answer
    is not one "word" and dropped as too short."""
    if text.isascii():
        return len(text.split())
    unspaced = len(_UNSPACED.findall(text))
    if not unspaced:
        return len(text.split())
    return unspaced + len(_UNSPACED_PUNCTUATION.sub(" ", _UNSPACED.sub(" ", text)).split())


def count_words_of(texts: list[str]) -> list[int]:
    """:func:`count_words` of each text (in one call to the C module where it was built)."""
    if _kernels is None:
        return [count_words(text) for text in texts]
    counts = np.empty(len(texts), dtype=np.int64)
    _kernels.count_words_into(texts, counts)
    return counts.tolist()


# ---------------------------------------------------------------------------------------------
# Leading filler (spec section 3, with word boundaries: defect 12)
# ---------------------------------------------------------------------------------------------

_PHRASE_END = r"(?=[,.!?;:…—–]|$)"
_WORD_END = r"(?=[\s,.!?;:…—–]|$)"
_TRAIL = r"[\s,.!?;:…—–-]*"
_CLAUSE = r"\b[^.!?,;:…\n]*(?:[.!?,;:…]+|\n)"
_PHRASE_CLAUSE = r"\b[^.!?,;:…\n]*(?:[,;:—–]+|\n)"
_APOSTROPHE = "['’]"

LEADING_FILLER_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern + _TRAIL, re.IGNORECASE))
    for name, pattern in (
        ("okay", r"(?:okay|ok|alright|sure)" + _PHRASE_END),
        ("so", r"so" + _PHRASE_END),
        ("let_me", r"let me (?:start|think|figure)" + _CLAUSE),
        ("im_just", rf"i{_APOSTROPHE}m just (?:here to|an ai)" + _PHRASE_CLAUSE),
        ("as_an_ai", r"as an? (?:ai|language model)" + _PHRASE_CLAUSE),
        ("certainly", r"certainly" + _PHRASE_END),
        ("heres_what", rf"here{_APOSTROPHE}s what" + _CLAUSE),
    )
)
"""The spec's leading-filler patterns, applied in this order, once each, at the start only.

Each strips a whole leading phrase only. A filler word must be followed by punctuation (``Sure,
I'll be there`` loses ``Sure,``; ``Sure thing, I'll be there`` and ``So I went`` stay whole), except
``so`` right after another filler (``Okay, so it works``). ``as an AI ...`` and ``I'm just ...`` must
end in a comma, semicolon, colon, dash or line break: ``As an AI researcher I spend my days reading
papers.`` is the person's own sentence. ``Let me think ...`` and ``Here's what ...`` may end at a
sentence stop, but never take the whole text. The punctuation and spaces after a phrase go too.
"""
_SO_AFTER_FILLER = re.compile(r"so" + _WORD_END + _TRAIL, re.IGNORECASE)
_MAY_NOT_EMPTY = frozenset({"let_me", "heres_what"})

_FILLER_FIRST_LETTERS = frozenset("oOaAsSlLiIcChH")


def strip_leading_filler(text: str) -> str:
    """Remove the spec's leading filler phrases from the start of ``text``.

    Returns the text unchanged when it does not start with filler; otherwise the rest, with its
    first letter capitalised (``"Okay, so it works."`` becomes ``"It works."``). The result may
    be empty when the whole text was filler (``"Sure!"``); curation then drops the sample.
    """
    if not text or text[0] not in _FILLER_FIRST_LETTERS:
        return text
    stripped = text
    for name, pattern in LEADING_FILLER_PATTERNS:
        if name == "so" and stripped is not text:
            pattern = _SO_AFTER_FILLER
        match = pattern.match(stripped)
        if match and not (name in _MAY_NOT_EMPTY and match.end() == len(stripped)):
            stripped = stripped[match.end() :]
    if stripped is text:
        return text
    if stripped[:1].islower() and len(stripped[0].upper()) == 1:
        stripped = stripped[0].upper() + stripped[1:]
    return stripped


# ---------------------------------------------------------------------------------------------
# PII scrubbing
# ---------------------------------------------------------------------------------------------

SCRUB_KINDS: tuple[str, ...] = ("email", "phone", "api_key", "token", "card", "iban", "national_id",
                                "private_key")
"""What scrubbing replaces, each with the marker ``[<kind>]``."""
PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "CA", "AU", "DE", "FR", "IN")
"""Regions whose national phone formats (``07911 123456``, ``(201) 555-0123``) are recognised, by
``phonenumbers``' own numbering plans; international ``+<code>`` numbers are found for every region."""

_SCRUB = re.compile(
    r"""
    # Every alternative below starts at a word boundary on one of these characters, or at a
    # digit, '+', '(' or '-': testing that first lets the engine skip mid-word positions at once
    # (twice as fast) and matches exactly the same text.
    (?: \b(?=[A-Za-z0-9._%+(-]) | (?=[\d+(-]) )
    (?:
      (?P<private_key>-----BEGIN[ A-Z0-9]*PRIVATE[ ]KEY(?:[ ]BLOCK)?-----[\s\S]*?
                      (?:-----END[ A-Z0-9]*PRIVATE[ ]KEY(?:[ ]BLOCK)?-----|\Z))
    | (?P<bearer>\b[Bb]earer[ \t]+)(?P<bearer_token>[A-Za-z0-9._~+/-]{16,}=*)
    | (?P<token>
        \bgh[pousr]_[A-Za-z0-9]{20,}
      | \bgithub_pat_[A-Za-z0-9_]{20,}
      | \bxox[abposr]-[A-Za-z0-9-]{10,}
      | \bhf_[A-Za-z0-9]{30,}
      | \brpa_[A-Za-z0-9]{20,}
      | \beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}
      )
    | (?P<api_key>
        \bsk-[A-Za-z0-9_-]{20,}
      | \b(?:AKIA|ASIA)[0-9A-Z]{16}\b
      | \bAIza[0-9A-Za-z_-]{35}
      )
    | (?P<email>\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b)
    | (?P<iban>\b[A-Z]{2}\d{2}[ ]?(?:[A-Z0-9]{4}[ ]?){2,7}[A-Z0-9]{1,4}\b)
    | (?P<national_id>(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-]))
    | (?P<card>(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-]))
    | (?P<phone>
        (?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![\w-])
      | (?<![\w(-])\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?![\w-])
      | (?<![\w.:/+-])[2-9]\d{9}(?![\w.:/-])
      )
    )
    """,
    re.VERBOSE,
)
_TOKEN_BYTES = np.zeros(256, dtype=np.uint8)
for _lo, _hi in ((48, 57), (65, 90), (97, 122)):
    _TOKEN_BYTES[_lo : _hi + 1] = 1
_TOKEN_BYTES[[ord("_"), ord("-")]] = 1
_TOKEN_TABLE = _TOKEN_BYTES.tobytes()
"""A ``bytes.translate`` table: ``[A-Za-z0-9_-]`` -> 1, every other byte -> 0."""
_MIN_KEY_RUN = 14
_KEY_RUN = b"\x01" * _MIN_KEY_RUN
_MIN_PHONE_DIGITS = 8


def may_hold_pii_batch(texts: list[str]) -> np.ndarray:
    """Which texts could hold something :func:`scrub_pii` replaces (a vectorised pre-check).

    A text can only hold an email if it has an ``@``, a phone or card number if it has at least
    eight digits, a bearer token if it says ``Bearer``, and a key or token if it has a run of 14
    or more of ``[A-Za-z0-9_-]``. All texts are checked together over one byte buffer, so the
    regex runs on the few that might (in C, text by text, where the C module was built).
    """
    if not texts:
        return np.zeros(0, dtype=bool)
    if _kernels is not None:
        flags = np.zeros(len(texts), dtype=bool)
        _kernels.pii_flags_into(texts, _MIN_PHONE_DIGITS, _MIN_KEY_RUN, flags)
        return flags
    joined = "\x00".join(texts).encode("utf-8", "surrogatepass")
    if joined.count(0) != len(texts) - 1:
        return np.ones(len(texts), dtype=bool)
    buf = np.frombuffer(joined, dtype=np.uint8)
    separators = np.flatnonzero(buf == 0)
    digits = np.bincount(np.searchsorted(separators, np.flatnonzero((buf - 48) < 10)),
                         minlength=len(texts))
    flags = digits >= _MIN_PHONE_DIGITS
    ends = separators.tolist()
    _flag_texts_holding(joined, b"@", ends, flags)
    _flag_texts_holding(joined.translate(_TOKEN_TABLE), _KEY_RUN, ends, flags)
    # a bearer token may hold '.', '~', '+' and '/', which split the key runs searched above
    _flag_texts_holding(joined, b"earer", ends, flags)
    _flag_texts_holding(joined, b"PRIVATE KEY", ends, flags)
    return flags


def _flag_texts_holding(data: bytes, needle: bytes, ends: list[int], flags: np.ndarray) -> None:
    """Flag each text of ``data`` (texts end at the offsets ``ends``, the last at the end of
    ``data``) that contains ``needle``.

    Why not numpy: ``bytes.find`` scans in C far faster than building and diffing a mask, and
    it runs once per flagged text only, since each hit resumes the search at the next text.
    """
    position = data.find(needle)
    while position >= 0:
        text = bisect_left(ends, position)
        flags[text] = True
        if text == len(ends):
            return
        position = data.find(needle, ends[text] + 1)


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn checksum that payment card numbers carry."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _valid(kind: str, value: str) -> bool:
    """Checksums and numbering rules that tell a real identifier from a number that looks like one."""
    if kind == "card":
        return luhn_valid(value.replace(" ", "").replace("-", ""))
    if kind == "phone":
        return 8 <= sum(c.isdigit() for c in value) <= 15
    if kind == "iban":
        from stdnum import iban

        return iban.is_valid(value)
    if kind == "national_id":
        from stdnum.us import ssn

        return ssn.is_valid(value)
    return True


_NATIONAL_PHONE = re.compile(r"(?<![\w.,:/+-])\(?0\d{1,4}\)?(?:[ -]?\d{2,5}){1,3}(?![\w.,:/-])")
"""A national number with its trunk prefix ``0`` (``07911 123456``, ``030 12345678``, ``(02) 9876 5432``)."""


def _national_phones(text: str, counts: dict[str, int] | None) -> str:
    """Replace national-format numbers that ``phonenumbers`` finds valid in one of :data:`PHONE_REGIONS`."""
    if _NATIONAL_PHONE.search(text) is None:
        return text  # phonenumbers' numbering plans are loaded only for a candidate
    import phonenumbers

    def replace(match: re.Match[str]) -> str:
        value = match.group(0)
        if not 9 <= sum(c.isdigit() for c in value) <= 12:
            return value
        for region in PHONE_REGIONS:
            try:
                number = phonenumbers.parse(value, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                if counts is not None:
                    counts["phone"] = counts.get("phone", 0) + 1
                return "[phone]"
        return value

    return _NATIONAL_PHONE.sub(replace, text)


def scrub_pii(text: str, counts: dict[str, int] | None = None) -> str:
    """Replace emails, phone numbers, keys, tokens, card numbers, IBANs, US social security numbers
    and private-key blocks with ``[<kind>]``.

    Args:
        text: the message text.
        counts: when given, incremented once per replacement under the kind's name.

    Numbers that only look like identifiers stay: card-like numbers that fail the Luhn check, IBANs
    that fail theirs (``python-stdnum``), SSNs the numbering rules exclude, versions, dates and
    times. A bearer token keeps its ``Bearer`` keyword. Phone numbers are international
    ``+<code> ...`` numbers with 8-15 digits, the ``(555) 013-2291`` / ``555-013-2291`` form, a bare
    ten-digit number not starting with 0 or 1 (``5551234567``; Unix times start with 1), and
    valid national numbers of :data:`PHONE_REGIONS`. Tokens are recognised by their providers'
    prefixes (GitHub ``ghp_``, Slack ``xox?-``, Hugging Face ``hf_``, RunPod ``rpa_``, AWS ``AKIA``,
    OpenAI-style ``sk-``, Google ``AIza``, JWTs).
    """

    def replace(match: re.Match[str]) -> str:
        kind = match.lastgroup
        if kind == "bearer_token":
            if counts is not None:
                counts["token"] = counts.get("token", 0) + 1
            return match.group("bearer") + "[token]"
        value = match.group(0)
        if not _valid(kind, value):
            return value
        if counts is not None:
            counts[kind] = counts.get(kind, 0) + 1
        return f"[{kind}]"

    text = _SCRUB.sub(replace, text)
    if sum(c.isdigit() for c in text) >= _MIN_PHONE_DIGITS:
        text = _national_phones(text, counts)
    return text


# ---------------------------------------------------------------------------------------------
# Filler detection (spec section 3 metric)
# ---------------------------------------------------------------------------------------------

FILLER_PHRASES: tuple[str, ...] = (
    "as an ai",
    "as a language model",
    "certainly",
    "let me think",
    "let me start",
    "i'm just",
    "i'm here to",
    "here's what",
    "okay, so",
    "alright, so",
)
"""The phrases whose presence (lowercased, curly apostrophes read as straight) counts a sample
as filler in the quality metrics, exactly as MetaHuman OS defines it."""


def filler_phrases_in(text: str) -> list[str]:
    """The :data:`FILLER_PHRASES` that occur in ``text`` (substring match, as the spec says)."""
    lowered = text.lower().replace("’", "'")
    return [phrase for phrase in FILLER_PHRASES if phrase in lowered]


_FOLDS_TO_ASCII = {"\u0130": "\u0130".lower(), "\u212a": "k"}
"""The only characters whose lowercase holds ASCII letters (İ -> i + combining dot, Kelvin -> k)."""


_FILLER_BYTES = tuple(phrase.encode("ascii") for phrase in FILLER_PHRASES)


def filler_bits(texts: list[str]) -> np.ndarray:
    """Which :data:`FILLER_PHRASES` each text holds: bit ``k`` of its ``uint64`` for phrase ``k``
    (the C module scans each text once where it was built; else :func:`texts_with_filler`)."""
    bits = np.zeros(len(texts), dtype=np.uint64)
    if _kernels is not None:
        _kernels.filler_bits_into(texts, _FILLER_BYTES, bits)
        return bits
    for bit, owners in enumerate(texts_with_filler(texts).values()):
        bits[owners] |= np.uint64(1 << bit)
    return bits


def texts_with_filler(texts: list[str]) -> dict[str, list[int]]:
    """For each of :data:`FILLER_PHRASES`, the indices of the texts that contain it, ascending.

    The same answer as :func:`filler_phrases_in` on every text, found with one fast byte search
    per phrase over all texts at once (joined by NUL, UTF-8, ASCII-lowercased), which is many
    times faster for a whole dataset. The phrases are ASCII, so folding ASCII letters (and the
    two characters that lowercase to ASCII letters) finds exactly what ``str.lower`` would.
    """
    joined = "\x00".join(texts)
    if joined.count("\x00") != max(0, len(texts) - 1):  # a text holds NUL: check one by one
        found: dict[str, list[int]] = {phrase: [] for phrase in FILLER_PHRASES}
        for index, text in enumerate(texts):
            for phrase in filler_phrases_in(text):
                found[phrase].append(index)
        return found
    for special, folded in _FOLDS_TO_ASCII.items():
        if special in joined:
            joined = joined.replace(special, folded)
    data = joined.encode("utf-8", "surrogatepass").lower().replace("’".encode(), b"'")
    separators = [match.start() for match in re.finditer(b"\x00", data)] + [len(data)]
    result = {}
    for phrase in FILLER_PHRASES:
        needle, owners = phrase.encode(), []
        start = data.find(needle)
        while start >= 0:  # one search per text that holds the phrase: skip to the next text
            owner = bisect_left(separators, start)
            owners.append(owner)
            start = data.find(needle, separators[owner] + 1)
        result[phrase] = owners
    return result
