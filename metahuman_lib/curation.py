"""Memories become clean chat samples: one per memory the person wrote or endorsed.

Every memory with text the person wrote or endorsed yields a sample (MetaHuman OS used only
prompt/response pairs, 79 of 2,181 memories: defect 5). A memory becomes one of four shapes:

* ``pair``: the older chat shape, ``Me: "<message>"`` plus a ``response``;
* ``dialogue``: the newer chat shape, ``User: ...`` / ``Assistant: ...`` turns in ``content``;
* ``tool``: a tool invocation (agent mode): the instruction, the call and its result;
* ``monologue``: anything else the person wrote (inner dialogue, reflections, dreams, journals,
  observations, tasks, ...), answered in the first person after a short prompt for its type.

Then every message is normalised, scrubbed of PII, its leading filler stripped (assistant text
only), and the samples that are empty, too short or duplicates are dropped. Every memory that
does not become a sample is listed in :attr:`CurationResult.dropped` with a snake_case reason
from :data:`DROP_REASONS`. Answers are never cut to a word limit (defect 4).
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from itertools import islice, pairwise
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from metahuman_lib._dedup import Fingerprints, duplicates_of, fingerprint, join_fingerprints
from metahuman_lib._gc import paused_gc
from metahuman_lib._shards import map_shards
from metahuman_lib.errors import ConfigError
from metahuman_lib.memory import (
    MEMORY_COLUMNS,
    MODES,
    LoadReport,
    load_memories_with,
    reread_memories,
)
from metahuman_lib.profile import Profile
from metahuman_lib.samples import SAMPLE_COLUMNS, empty_samples
from metahuman_lib.text_rules import (
    SCRUB_KINDS,
    count_words_of,
    may_hold_pii_batch,
    normalise_text,
    scrub_pii,
    strip_leading_filler,
)

if TYPE_CHECKING:
    import pandas as pd

EXCLUDED_KINDS: dict[str, str] = {
    "rejected_by_person": "the person rejected it (metadata.reinforcementSignal is -1)",
    "feedback": "feedback about the persona (a 'feedback' tag or an operator_feedback memory)",
    "summary": "a machine-written summary of other memories (type 'summary')",
    "system_artefact": "a log line the system wrote (file reads and writes, searches, code approvals)",
}
"""Memories left out by default; :attr:`CurationOptions.include` lets any of them back in."""

DROP_REASONS: dict[str, str] = {
    **EXCLUDED_KINDS,
    "other_mode": "its cognitive mode is not the one asked for (--mode)",
    "empty_text": "nothing is left of the answer after cleaning",
    "too_short": "the answer has fewer words than the minimum",
    "exact_duplicate": "the same words as an earlier sample",
    "near_duplicate": "almost the same words as an earlier sample (MinHash Jaccard >= threshold)",
}
"""Every reason a memory can be dropped for, with what it means (docs/curation.md)."""

SYSTEM_ARTEFACT_TYPES = frozenset({"file_read", "file_write", "search", "code_approval",
                                   "code_rejection"})
SHAPES: tuple[str, ...] = ("pair", "dialogue", "tool", "monologue")
_CHAT_SHAPES = frozenset({"pair", "dialogue"})

TYPE_PROMPTS: dict[str, str] = {
    "conversation": "What's on your mind?",
    "chat": "What's on your mind?",
    "inner_dialogue": "What are you thinking about right now?",
    "reflection": "Take a moment to reflect. What comes to mind?",
    "dream": "Tell me about a dream you had.",
    "daydream": "What were you daydreaming about?",
    "observation": "What did you notice?",
    "journal": "Write a journal entry about your day.",
    "action": "What did you just do?",
    "task": "What do you need to get done?",
    "fragment": "Jot down a quick note.",
}
DEFAULT_PROMPT = "Tell me something in your own words."
_PROMPT_TEXTS = frozenset([*TYPE_PROMPTS.values(), DEFAULT_PROMPT])
"""The user message of a ``monologue`` sample: a short, natural prompt for the memory's type."""

_MODE_FLAVOUR: dict[str, str] = {
    "dual": "Think out loud in your own inner voice: reflect, wonder and dream the way {u} does.",
    "emulation": "Talk with people the way {u} does, in {u}'s own words, tone and opinions.",
    "agent": "When asked to get something done, choose the action or tool {u} would use and "
             "report what happened.",
}
_INSTRUCTION_KEYS = ("instruction", "userMessage", "goal", "request", "prompt", "query", "task")
_ME_SHAPE = re.compile(r'\s*Me:\s*"?(.*?)"?\s*\Z', re.DOTALL)
_TURN = re.compile(r"^(User|Assistant|Me):[ \t]*", re.MULTILINE)
_FILLER_START = re.compile(r"(?:okay|ok|alright|sure|so|let me|i['’]m just|as an? |certainly|"
                           r"here['’]s what)", re.IGNORECASE)
_ROLE_OF = {"User": "user", "Me": "user", "Assistant": "assistant"}


def system_prompt(username: str, mode: str | None = None) -> str:
    """The system message of every sample, and of the Ollama Modelfile built from the model.

    Training text and inference template must match (defect 6), so training and Ollama both
    call this function rather than writing their own text.

    Args:
        username: the person the persona speaks as.
        mode: ``dual``, ``emulation`` or ``agent`` adds that mode's flavour; None gives the
            mode-neutral base sentence.
    """
    base = (f"You are {username}'s digital personality extension. "
            f"Speak naturally in first person as {username}.")
    if mode is None:
        return base
    if mode not in _MODE_FLAVOUR:
        raise ConfigError(f"Unknown mode {mode!r}: use one of {', '.join(MODES)}.")
    return base + " " + _MODE_FLAVOUR[mode].format(u=username)


def _suggest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class CurationOptions:
    """How memories become samples.

    Attributes:
        username: the name in the system prompt; None takes the most common ``user_id`` of the
            memories (or ``"me"`` when there is none).
        mode: keep only memories of this cognitive mode (``dual``/``emulation``/``agent``).
        scrub: replace emails, phones, API keys, tokens and card numbers (on by default, since
            the dataset leaves the machine).
        strip_filler: strip the spec's leading filler from assistant text.
        dedup: drop exact and near duplicates.
        near_dup_threshold: Jaccard similarity (3-word shingles) from which two samples are
            near-duplicates; 1.0 keeps near-duplicates.
        num_perm: MinHash permutations for near-duplicate candidates.
        min_words: answers with fewer words are dropped as ``too_short`` (tool calls excepted).
        include: excluded kinds (keys of :data:`EXCLUDED_KINDS`) to keep anyway.
    """

    username: str | None = None
    mode: str | None = None
    scrub: bool = True
    strip_filler: bool = True
    dedup: bool = True
    near_dup_threshold: float = 0.8
    num_perm: int = 32
    min_words: int = 3
    include: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in MODES:
            raise ConfigError(f"Unknown mode {self.mode!r}: use one of {', '.join(MODES)}."
                              + _suggest(str(self.mode), MODES))
        if not 0.0 < self.near_dup_threshold <= 1.0:
            raise ConfigError(f"near_dup_threshold must be in (0, 1], got {self.near_dup_threshold}.")
        if self.num_perm < 4 or self.num_perm > 256:
            raise ConfigError(f"num_perm must be between 4 and 256, got {self.num_perm}.")
        if self.min_words < 1:
            raise ConfigError(f"min_words must be at least 1, got {self.min_words}.")
        include = frozenset(self.include)
        for kind in include:
            if kind not in EXCLUDED_KINDS:
                raise ConfigError(f"Unknown excluded kind {kind!r} in include: use "
                                  f"{', '.join(EXCLUDED_KINDS)}." + _suggest(kind, tuple(EXCLUDED_KINDS)))
        object.__setattr__(self, "include", include)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> CurationOptions:
        """Build options from a parameters block (``curation:``); unknown keys raise ConfigError."""
        names = [f.name for f in fields(cls)]
        for key in values:
            if key not in names:
                raise ConfigError(f"Unknown curation option {key!r}: use one of {', '.join(names)}."
                                  + _suggest(key, names))
        data = dict(values)
        if "include" in data:
            data["include"] = frozenset(data["include"] or ())
        return cls(**data)


@dataclass(frozen=True)
class CurationResult:
    """What curation produced.

    Attributes:
        samples: the samples table (columns :data:`metahuman_lib.samples.SAMPLE_COLUMNS`).
        dropped: one row per memory that yielded no sample: ``memory_id``, ``path``, ``type``,
            ``reason`` (a key of :data:`DROP_REASONS`) and ``detail``.
        stats: counts: ``memories``, ``kept``, ``dropped_<reason>`` for every reason,
            ``duplicates_exact``, ``duplicates_near``, ``scrubbed_<kind>`` for every scrub kind
            and ``scrubbed_total`` (in kept samples), ``filler_stripped``, ``shape_<shape>``.
    """

    samples: pd.DataFrame
    dropped: pd.DataFrame
    stats: dict[str, int]


@dataclass
class _Batch:
    """Candidate samples of some memories, column by column, with the drops so far.

    Columnar so that a batch computed by a worker process pickles quickly and batches join by
    concatenation. ``rows`` (and the rows in ``drops`` and ``deferred``) are memory indices:
    into the memories table, or into a worker's rows until :func:`_load_and_curate` maps them.
    ``messages`` hold no system message yet (:func:`_finish` adds it, once the username is
    known). ``deferred`` holds tool calls whose instruction is the text of another memory (row
    and curated values), so they are shaped once all memories are loaded.
    """

    rows: list[int] = field(default_factory=list)
    messages: list[list[dict[str, str]]] = field(default_factory=list)
    assistant: list[str] = field(default_factory=list)
    shapes: list[str] = field(default_factory=list)
    words: list[int] = field(default_factory=list)
    scrubbed: list[dict[str, int] | None] = field(default_factory=list)
    filler: list[bool] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    drops: list[tuple[int, str, str]] = field(default_factory=list)
    deferred: list[tuple[int, tuple[Any, ...]]] = field(default_factory=list)
    prints: Fingerprints | None = None

    def take(self, indices: list[int]) -> _Batch:
        """The candidates at ``indices`` (in that order) and their fingerprints; no drops."""
        taken = _Batch(*([column[index] for index in indices] for column in
                         (self.rows, self.messages, self.assistant, self.shapes, self.words,
                          self.scrubbed, self.filler, self.questions)))
        if self.prints is not None:
            taken.prints = self.prints.take(np.array(indices, dtype=np.int64))
        return taken


def _join_batches(parts: list[_Batch]) -> _Batch:
    if len(parts) == 1:
        return parts[0]
    joined = _Batch()
    for part in parts:
        for name in ("rows", "messages", "assistant", "shapes", "words", "scrubbed", "filler",
                     "questions", "drops", "deferred"):
            getattr(joined, name).extend(getattr(part, name))
    if parts and all(part.prints is not None for part in parts):
        joined.prints = join_fingerprints([part.prints for part in parts])
    return joined


def _exclusion(memory_type: str, tags: Any, metadata: dict[str, Any]) -> str | None:
    """The excluded kind of a memory, or None when it is the person's text."""
    if metadata.get("reinforcementSignal") == -1:
        return "rejected_by_person"
    if memory_type == "operator_feedback" or (tags and "feedback" in tags):
        return "feedback"
    if memory_type == "summary":
        return "summary"
    if memory_type in SYSTEM_ARTEFACT_TYPES:
        return "system_artefact"
    return None


def _unwrap_me(content: str) -> str:
    """``Me: "<text>"`` -> ``<text>`` (the older chat shape's way of quoting the person), and a
    lone ``User: <text>`` (a message that got no reply) -> ``<text>``."""
    head = content.lstrip()[:5]
    if head.startswith("Me:"):
        match = _ME_SHAPE.match(content)
        if match:
            return match.group(1)
    elif head == "User:":
        return content.lstrip()[5:]
    return content


def _dialogue_turns(content: str) -> list[tuple[str, str]] | None:
    """``User: ...`` / ``Assistant: ...`` turns, merged per speaker; None when not a dialogue."""
    if "Assistant:" not in content:
        return None
    parts = _TURN.split(content)
    if len(parts) < 3:
        return None
    turns: list[tuple[str, str]] = []
    preamble = parts[0].strip()
    for index in range(1, len(parts) - 1, 2):
        role, text = _ROLE_OF[parts[index]], parts[index + 1].strip()
        if index == 1 and preamble:
            text = f"{preamble}\n\n{text}".strip()
        if turns and turns[-1][0] == role:
            turns[-1] = (role, f"{turns[-1][1]}\n\n{text}")
        else:
            turns.append((role, text))
    if not any(role == "assistant" for role, _ in turns):
        return None
    return turns


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                        default=str).decode()


def _tool_turns(metadata: dict[str, Any],
                instruction: str | None) -> tuple[list[tuple[str, str]], bool]:
    """An agent sample: the instruction, then the call as the assistant turn; and whether the
    instruction is real text (not the ``Use <tool>.`` fallback).

    The tool's output (or error) is never part of the sample: it is not the person's text, and
    training on it would teach the model to invent results instead of calling the tool.
    """
    tool = str(metadata.get("toolName"))
    call = f"Action: {tool}"
    if metadata.get("toolInputs") not in (None, {}, []):
        call += f" {_json(metadata['toolInputs'])}"
    for key in _INSTRUCTION_KEYS:
        if isinstance(metadata.get(key), str) and metadata[key].strip():
            instruction = metadata[key]
            break
    turns = [("user", instruction or f"Use {tool}."), ("assistant", call)]
    return turns, instruction is not None


def _shape(memory_type: str, content: str, response: Any, metadata: dict[str, Any],
           parent_text: str | None) -> tuple[str, list[tuple[str, str]], bool]:
    """The sample shape of a memory, its turns, and whether the user turn is real text."""
    if metadata.get("toolName"):
        turns, real_prompt = _tool_turns(metadata, parent_text)
        return "tool", turns, real_prompt
    if isinstance(response, str) and response.strip():
        return "pair", [("user", _unwrap_me(content)), ("assistant", response)], True
    turns = _dialogue_turns(content)
    if turns is not None:
        real_prompt = turns[0][0] == "user"
        if not real_prompt:
            turns.insert(0, ("user", TYPE_PROMPTS.get(memory_type, DEFAULT_PROMPT)))
        return "dialogue", turns, real_prompt
    prompt = TYPE_PROMPTS.get(memory_type, DEFAULT_PROMPT)
    return "monologue", [("user", prompt), ("assistant", _unwrap_me(content))], False


def _first_user_text(content: str, response: Any) -> str:
    """What the person asked in a chat memory (used as the instruction of a tool call it led to)."""
    if isinstance(response, str):
        return _unwrap_me(content)
    turns = _dialogue_turns(content)
    if turns and turns[0][0] == "user":
        return turns[0][1]
    return _unwrap_me(content)


@dataclass
class _Shaped:
    """The memories that passed the filters, as flat turn lists ready for batch cleaning."""

    rows: list[int] = field(default_factory=list)
    shapes: list[str] = field(default_factory=list)
    real_prompt: list[bool] = field(default_factory=list)
    turn_counts: list[int] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def add(self, row: int, shape: str, turns: list[tuple[str, str]], real_prompt: bool) -> None:
        self.rows.append(row)
        self.shapes.append(shape)
        self.real_prompt.append(real_prompt)
        self.turn_counts.append(len(turns))
        for role, text in turns:
            self.roles.append(role)
            self.texts.append(text)


def _clean_texts(shaped: _Shaped, options: CurationOptions
                 ) -> tuple[list[str], dict[int, dict[str, int]], set[int]]:
    """Normalise, scrub and strip filler from every turn text in one pass per rule.

    Returns the cleaned texts, the scrub counts of the texts where something was replaced (by
    text index) and the indices of the texts whose leading filler was stripped.
    """
    texts = [t if t in _PROMPT_TEXTS else normalise_text(t) for t in shaped.texts]
    scrubbed: dict[int, dict[str, int]] = {}
    if options.scrub:
        for index in np.flatnonzero(may_hold_pii_batch(texts)).tolist():
            counts: dict[str, int] = {}
            texts[index] = scrub_pii(texts[index], counts)
            if counts:
                scrubbed[index] = counts
    stripped: set[int] = set()
    if options.strip_filler:
        match = _FILLER_START.match
        # only chat replies: a journal, a reflection or a monologue is the person's own text
        chat = np.repeat([shape in _CHAT_SHAPES and real for shape, real in
                          zip(shaped.shapes, shaped.real_prompt, strict=True)], shaped.turn_counts)
        for index, (role, text) in enumerate(zip(shaped.roles, texts, strict=True)):
            if role == "assistant" and chat[index] and match(text):
                after = strip_leading_filler(text)
                if after is not text:
                    texts[index] = after
                    stripped.add(index)
    return texts, scrubbed, stripped


def _owner_stats(shaped: _Shaped, scrubbed: dict[int, dict[str, int]],
                 stripped: set[int]) -> tuple[dict[int, dict[str, int]], set[int]]:
    """Scrub counts and filler flags per candidate (from the few texts that have them)."""
    if not scrubbed and not stripped:
        return {}, set()
    owner_of = np.repeat(np.arange(len(shaped.turn_counts)), shaped.turn_counts)
    kinds: dict[int, dict[str, int]] = {}
    for index, counts in scrubbed.items():
        owner = kinds.setdefault(int(owner_of[index]), {})
        for kind, n in counts.items():
            owner[kind] = owner.get(kind, 0) + n
    return kinds, {int(owner_of[index]) for index in stripped}


def _candidates(shaped: _Shaped, options: CurationOptions) -> tuple[_Batch, list[str]]:
    """Group the cleaned turn texts back into one candidate sample per memory; also return each
    candidate's dedup text: its answers, the words the model learns to say (two different answers to
    the same long pasted prompt are not duplicates)."""
    texts, scrubbed, stripped = _clean_texts(shaped, options)
    kinds, filler = _owner_stats(shaped, scrubbed, stripped)
    all_turns = zip(shaped.roles, texts, strict=True)
    batch = _Batch(rows=shaped.rows, shapes=shaped.shapes)
    key_texts = []
    for index, count in enumerate(shaped.turn_counts):
        turns = [turn for turn in islice(all_turns, count) if turn[1]]
        while len(turns) > 1 and turns[-1][0] == "user":
            turns.pop()
        assistant = [text for role, text in turns if role == "assistant"]
        batch.messages.append([{"role": role, "content": text} for role, text in turns])
        batch.questions.append(" ".join(text for role, text in turns if role == "user"))
        batch.assistant.append("\n\n".join(assistant))
        key_texts.append("\n".join(assistant))  # the answers only: a long pasted prompt never makes two differ less
        batch.scrubbed.append(kinds.get(index))
        batch.filler.append(index in filler)
    return batch, key_texts


def _default_username(memories: pd.DataFrame) -> str:
    if "user_id" in memories and memories["user_id"].notna().any():
        return str(memories["user_id"].dropna().astype(str).value_counts().index[0])
    return "me"


def _parent_texts(memories: pd.DataFrame) -> dict[str, str]:
    """Memory id -> what the person asked, for the memories a tool call names as its parent."""
    wanted = {meta.get("parentEventId") for meta in memories["metadata"] if meta.get("toolName")}
    wanted.discard(None)
    return _texts_of(wanted, memories, None) if wanted else {}


def build_samples(memories: pd.DataFrame, options: CurationOptions | None = None) -> CurationResult:
    """Turn a memories table into a samples table, with every drop and its reason.

    Args:
        memories: the memories table of :func:`metahuman_lib.memory.load_memories`.
        options: how to curate; the defaults scrub PII, strip filler and drop duplicates.

    Returns:
        A :class:`CurationResult`. Samples are in timestamp order; of duplicates the earliest
        is kept. The same memories and options always give the same result.
    """
    options = options or CurationOptions()
    with paused_gc():
        ordered = memories.sort_values(["timestamp", "id"], kind="stable", ignore_index=True)
        parents = _parent_texts(ordered) if len(ordered) else {}
        columns = [ordered[name].tolist() for name in _CURATED_COLUMNS]

        def curate_range(start: int, stop: int) -> _Batch:
            return _curate_rows([column[start:stop] for column in columns], start, options, parents)

        return _finish(_join_batches(map_shards(curate_range, len(ordered))), ordered, options)


def load_and_curate(profile: Profile, options: CurationOptions | None = None, *,
                    now: datetime | None = None, keep_memories: bool = True,
                    ) -> tuple[pd.DataFrame, LoadReport, CurationResult]:
    """Load a profile's memories and curate them in one pass: the same result as
    :func:`~metahuman_lib.memory.load_memories` then :func:`build_samples`, faster, because
    each memory is curated by the worker that read it, before the table exists.

    Args:
        profile: the profile to read.
        options: how to curate.
        now: leave out memories after this moment (a run dated ``now`` sees only what existed
            then); None keeps every memory.
        keep_memories: False returns a memories table with only the columns curation needs
            (``id``, ``timestamp``, ``type``, ``mode``, ``mode_source``, ``path``; ``user_id``
            without a username): quicker, for a caller that does not use the table.

    Returns:
        The memories table (as of ``now``), the load report and the :class:`CurationResult`.
    """
    import pandas as pd
    options = options or CurationOptions()
    columns = MEMORY_COLUMNS if keep_memories else _FINISH_COLUMNS + (
        ("user_id",) if options.username is None else ())

    def curate_shard(values: dict[str, tuple[Any, ...]]) -> _Batch:
        return _curate_rows([values[name] for name in _CURATED_COLUMNS], 0, options, None)

    with paused_gc():  # one pause for the whole pass: re-enabling in between costs a full collection
        memories, report, shards = load_memories_with(profile, curate_shard, columns=columns)
        position = None
        if now is not None:
            present = (memories["timestamp"] <= pd.Timestamp(now)).to_numpy()
            if not present.all():
                memories = memories[present].reset_index(drop=True)
                position = np.where(present, np.cumsum(present) - 1, -1)
        batch = _join_batches([_in_table_rows(shard.value, shard.positions, position)
                               for shard in shards])
        batch = _curate_deferred(batch, memories, options, profile)
        return memories, report, _finish(batch, memories, options)


_CURATED_COLUMNS = ("type", "mode", "content", "response", "tags", "metadata")
_FINISH_COLUMNS = ("id", "timestamp", "type", "mode", "mode_source", "path")
"""The memories-table columns that what follows the workers' curation reads."""


def _in_table_rows(batch: _Batch, positions: np.ndarray, present: np.ndarray | None) -> _Batch:
    """A worker's batch with its row numbers turned into memories-table rows; what belongs to
    memories that are not in the table (a repeated id, after ``now``) is left out."""
    if present is not None:
        positions = np.where(positions >= 0, present[positions], -1)
    where = positions.tolist()
    rows = [where[row] for row in batch.rows]
    kept = [index for index, row in enumerate(rows) if row >= 0]
    mapped = batch.take(kept) if len(kept) < len(rows) else batch
    mapped.rows = [rows[index] for index in kept]
    mapped.drops = [(where[row], reason, detail) for row, reason, detail in batch.drops
                    if where[row] >= 0]
    mapped.deferred = [(where[row], values) for row, values in batch.deferred if where[row] >= 0]
    return mapped


def _curate_deferred(batch: _Batch, memories: pd.DataFrame, options: CurationOptions,
                     profile: Profile) -> _Batch:
    """Shape the deferred tool calls now that their parents' texts can be looked up."""
    if not batch.deferred:
        return batch
    deferred = sorted(batch.deferred, key=itemgetter(0))
    rows = [row for row, _ in deferred]
    columns = [list(column) for column in zip(*(values for _, values in deferred), strict=True)]
    wanted = {values[-1].get("parentEventId") for _, values in deferred}
    late = _curate_rows(columns, 0, options, _texts_of(wanted, memories, profile))
    late.rows = [rows[row] for row in late.rows]
    late.drops = [(rows[row], reason, detail) for row, reason, detail in late.drops]
    batch.deferred = []
    return _join_batches([batch, late])


def _texts_of(ids: set[str], memories: pd.DataFrame, profile: Profile | None) -> dict[str, str]:
    """Memory id -> what the person asked in it, for the memories of the table with these ids
    (read again from the profile's files when the table holds no text)."""
    subset = memories[memories["id"].isin(ids)]
    if "content" in subset or profile is None:
        pairs = zip(subset["id"], subset["content"], subset["response"], strict=True)
        return {memory_id: _first_user_text(content, response) for memory_id, content, response in pairs}
    return _texts_of_rows(reread_memories(profile, subset["path"].tolist()), ids)


def _texts_of_rows(rows: Sequence[tuple[Any, ...]], ids: set[str]) -> dict[str, str]:
    """Memory id -> what the person asked in it, for the memory rows read again whose id is wanted."""
    return {row[0]: _first_user_text(row[_CONTENT], row[_RESPONSE]) for row in rows if row[0] in ids}


_CONTENT, _RESPONSE = MEMORY_COLUMNS.index("content"), MEMORY_COLUMNS.index("response")


def _curate_rows(columns: list[Sequence[Any]], first_row: int, options: CurationOptions,
                 parents: dict[str, str] | None) -> _Batch:
    """The candidate samples and drops of consecutive memories (rows from ``first_row`` on),
    fingerprinted for deduplication: everything about a memory that needs no other memory.

    ``parents`` maps memory ids to what the person asked in them; None when unknown yet, and
    then a tool call that takes its instruction from its parent memory is deferred.
    """
    batch = _Batch()
    drops = batch.drops
    shaped = _Shaped()
    for row, (mtype, mode, content, response, tags, meta) in enumerate(zip(*columns, strict=True),
                                                                      start=first_row):
        meta = meta if isinstance(meta, dict) else {}
        excluded = _exclusion(mtype, tags, meta)
        if excluded is not None and excluded not in options.include:
            drops.append((row, excluded, DROP_REASONS[excluded]))
            continue
        if options.mode is not None and mode != options.mode:
            drops.append((row, "other_mode", f"mode {mode}, kept only {options.mode}"))
            continue
        if parents is None and meta.get("toolName") and _needs_parent(meta):
            batch.deferred.append((row, (mtype, mode, content, response, tags, meta)))
            continue
        parent = parents.get(meta.get("parentEventId")) if parents else None
        shape, turns, real_prompt = _shape(mtype, content, response, meta, parent)
        shaped.add(row, shape, turns, real_prompt)
    candidates, key_texts = _candidates(shaped, options)
    keep = _long_enough(candidates, options, drops)
    if len(keep) < len(candidates.rows):
        key_texts = [key_texts[index] for index in keep]
        candidates = candidates.take(keep)
    candidates.drops, candidates.deferred = drops, batch.deferred
    if options.dedup:
        candidates.prints = fingerprint(key_texts, options.num_perm
                                        if options.near_dup_threshold < 1.0 else None)
    return candidates


def _needs_parent(metadata: dict[str, Any]) -> bool:
    """Whether a tool call's instruction is its parent memory's text (it names a parent and
    carries no instruction of its own)."""
    return metadata.get("parentEventId") is not None and not any(
        isinstance(metadata.get(key), str) and metadata[key].strip() for key in _INSTRUCTION_KEYS)


def _finish(batch: _Batch, ordered: pd.DataFrame, options: CurationOptions) -> CurationResult:
    """What needs all memories at once: duplicates (the earliest sample of a group is kept),
    the system message (the default username comes from all memories), the tables, the counts."""
    if any(later < earlier for earlier, later in pairwise(batch.rows)):  # workers' order
        drops = batch.drops
        batch = batch.take(sorted(range(len(batch.rows)), key=batch.rows.__getitem__))
        batch.drops = drops
    kept = _drop_duplicates(batch, ordered, options)
    username = options.username or _default_username(ordered)
    systems = {mode: system_prompt(username, mode) for mode in MODES}
    modes = ordered["mode"].tolist()
    kept.messages = [[{"role": "system", "content": systems.get(modes[row], systems["emulation"])},
                      *messages] for row, messages in zip(kept.rows, kept.messages, strict=True)]
    return CurationResult(_samples_frame(kept, ordered), _dropped_frame(batch.drops, ordered),
                          curation_stats(len(ordered), batch.drops, kept.scrubbed, kept.shapes,
                                         sum(kept.filler)))


def _long_enough(batch: _Batch, options: CurationOptions,
                 drops: list[tuple[int, str, str]]) -> list[int]:
    """Count each candidate's words; drop the empty and too short ones; the indices kept."""
    keep = []
    batch.words.extend(count_words_of(batch.assistant))
    for index, (row, words) in enumerate(zip(batch.rows, batch.words, strict=True)):
        if words == 0:
            drops.append((row, "empty_text", "no answer text left after cleaning"))
        elif words < options.min_words and batch.shapes[index] != "tool":  # a call is short by nature
            drops.append((row, "too_short",
                          f"{words} word{'s' if words != 1 else ''}, minimum {options.min_words}"))
        else:
            keep.append(index)
    return keep


def _drop_duplicates(batch: _Batch, ordered: pd.DataFrame, options: CurationOptions) -> _Batch:
    """The candidates that repeat no earlier one; the others become drops of ``batch``."""
    if not options.dedup or len(batch.rows) < 2 or batch.prints is None:
        return batch
    keep, drops = duplicate_drops(batch.prints, batch.questions, batch.rows, ordered["id"].tolist(),
                                  options)
    batch.drops += drops
    return batch.take(keep)


def duplicate_drops(prints: Fingerprints, questions: Sequence[str], rows: Sequence[int],
                    ids: Sequence[str], options: CurationOptions,
                    ) -> tuple[list[int], list[tuple[int, str, str]]]:
    """Which candidates (in priority order) repeat an earlier one: the indices of those kept,
    and a drop ``(row, reason, detail)`` for each other (``ids`` are the memories' ids by row)."""
    found = duplicates_of(prints, threshold=options.near_dup_threshold)
    exact, near = found.exact_of.copy(), found.near_of.copy()
    words_of: dict[str, frozenset[str]] = {}
    exact_of, near_of = exact.tolist(), near.tolist()
    for index in np.flatnonzero((exact >= 0) | (near >= 0)).tolist():
        first = exact_of[index] if exact_of[index] >= 0 else near_of[index]
        if not _same_question(questions[index], questions[first], options.near_dup_threshold, words_of):
            exact[index] = near[index] = -1  # the same answer to another question is a new sample
    repeats = np.flatnonzero(exact >= 0).tolist()
    drops = [(rows[index], "exact_duplicate", f"same words as {ids[rows[first]]}")
             for index, first in zip(repeats, exact[repeats].tolist(), strict=True)]
    similar = np.flatnonzero((exact < 0) & (near >= 0)).tolist()
    drops += [(rows[index], "near_duplicate", f"Jaccard {similarity:.2f} with {ids[rows[first]]}")
              for index, first, similarity in zip(similar, near[similar].tolist(),
                                                  found.near_similarity[similar].tolist(), strict=True)]
    return np.flatnonzero((exact < 0) & (near < 0)).tolist(), drops


_WORDS = re.compile(r"\w+")


def _same_question(later: str, earlier: str, threshold: float,
                   words_of: dict[str, frozenset[str]]) -> bool:
    """Whether two samples answer the same question: their user turns (joined, as in
    ``_Batch.questions``) share at least ``threshold`` of their words (Jaccard), or neither has
    one of its own. ``words_of`` caches each question's words: the same few prompts recur."""
    if later == earlier:
        return True
    words = []
    for question in (later, earlier):
        found = words_of.get(question)
        if found is None:
            found = words_of[question] = frozenset(_WORDS.findall(question.lower()))
        words.append(found)
    union = words[0] | words[1]
    return not union or len(words[0] & words[1]) / len(union) >= threshold


def _samples_frame(kept: _Batch, ordered: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd
    if not kept.rows:
        return empty_samples()
    rows = np.array(kept.rows, dtype=np.int64)
    base = ordered[["id", "timestamp", "type", "mode", "mode_source"]].iloc[rows]
    ids = base["id"].astype(str).tolist()
    seen: Counter[str] = Counter()
    sample_ids = []
    for memory_id in ids:
        seen[memory_id] += 1
        sample_ids.append(memory_id if seen[memory_id] == 1 else f"{memory_id}#{seen[memory_id]}")
    frame = pd.DataFrame({
        "sample_id": pd.Series(sample_ids, dtype=object),
        "memory_id": pd.Series(ids, dtype=object),
        "timestamp": base["timestamp"].reset_index(drop=True),
        "type": pd.Series(base["type"].astype(str).tolist(), dtype=object),
        "mode": pd.Series(base["mode"].astype(str).tolist(), dtype=object),
        "mode_source": pd.Series(base["mode_source"].astype(str).tolist(), dtype=object),
        "messages": pd.Series(kept.messages, dtype=object),
        "assistant_text": pd.Series(kept.assistant, dtype=object),
        "word_count": np.array(kept.words, dtype=np.int64),
    }, columns=list(SAMPLE_COLUMNS))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def _dropped_frame(drops: list[tuple[int, str, str]], ordered: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd
    drops = sorted(drops)
    rows = [row for row, _, _ in drops]
    needed = ordered[[name for name in ("id", "path", "type") if name in ordered]]
    subset = needed.iloc[rows] if rows else needed.iloc[:0]
    return pd.DataFrame({
        "memory_id": pd.Series(subset["id"].astype(str).tolist(), dtype=object),
        "path": pd.Series(subset["path"].astype(str).tolist() if "path" in subset else
                          [""] * len(rows), dtype=object),
        "type": pd.Series(subset["type"].astype(str).tolist(), dtype=object),
        "reason": pd.Series([reason for _, reason, _ in drops], dtype=object),
        "detail": pd.Series([detail for _, _, detail in drops], dtype=object),
    })


def curation_stats(memories: int, drops: Sequence[tuple[int, str, str]],
                   scrubbed: Sequence[dict[str, int] | None], shapes: Sequence[str],
                   filler_stripped: int) -> dict[str, int]:
    """:attr:`CurationResult.stats` from the drops and, per kept sample, its scrub counts and shape."""
    reasons = Counter(reason for _, reason, _ in drops)
    scrub_counts: Counter[str] = Counter()
    for counts in scrubbed:
        if counts:  # few are; Counter.update costs a call even when empty
            scrub_counts.update(counts)
    shape_counts = Counter(shapes)
    stats = {"memories": memories, "kept": len(shapes)}
    stats.update({f"dropped_{reason}": reasons.get(reason, 0) for reason in DROP_REASONS})
    stats["duplicates_exact"] = reasons.get("exact_duplicate", 0)
    stats["duplicates_near"] = reasons.get("near_duplicate", 0)
    stats.update({f"scrubbed_{kind}": scrub_counts.get(kind, 0) for kind in SCRUB_KINDS})
    stats["scrubbed_total"] = sum(scrub_counts.values())
    stats["filler_stripped"] = filler_stripped
    stats.update({f"shape_{shape}": shape_counts.get(shape, 0) for shape in SHAPES})
    return stats
