"""A synthetic MetaHuman OS profile for demos, tests and notebooks.

:func:`write_demo_profile` writes memories in the exact on-disk format of MetaHuman OS (spec
section 1): ``<id>-<slug>.json`` files in local-date folders ``YYYY/MM/DD`` and category
folders, both chat shapes, every common memory type, a realistic length mix, filler phrases,
rejected answers, duplicates, a little PII, a handful of malformed files and a few encrypted
ones. Everything comes from one seeded ``random.Random``, so a seed always gives the same bytes,
and every timestamp lies before ``end`` (``DEMO_END`` by default) so a later monthly run can be
simulated by moving ``now`` forward.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import orjson

from metahuman_lib import _demo_text as text
from metahuman_lib.errors import ProfileError
from metahuman_lib.profile import Profile, resolve_root

DEMO_USERNAME = "demo"
DEMO_END = datetime(2025, 11, 30, 0, 0, 0, tzinfo=UTC)
"""Every demo memory is older than this instant; a monthly run one month later uses
``now = DEMO_END + 30 days`` after adding new memories with ``end`` moved forward."""

LOCAL_OFFSET = timedelta(hours=-7)
"""The demo person's local time (Mountain Standard Time): folders use the local date, so
evening memories land in a folder one day before their UTC ``timestamp`` date."""

MARKER_NAME = ".workbench-demo.json"
"""Written in the profile folder so that only a generated profile is ever overwritten."""

GENERATOR_VERSION = 2
"""Recorded in the marker; raised whenever the same arguments start to give other bytes (2: the
month chapters), so that a cached profile (the benchmarks') is rebuilt."""

_GROWTH = 5.0  # the last week gets (1 + _GROWTH) times as many memories as the first
_HOUR_WEIGHTS = (1, 0.3, 0, 0, 0, 0, 2, 4, 5, 4, 3, 3, 5, 4, 3, 3, 3, 4, 6, 7, 8, 7, 5, 3)
_SLUG_RUN = re.compile(r"[^a-z0-9-]+")
_PERSON_NAMES = ("Maya", "Jonah", "Priya", "Luis", "Ren", "Tomás", "Keiko", "Pepper",
                 *dict.fromkeys(name for chapter in text.MONTH_CHAPTERS.values()
                                for name in chapter["people"] if name not in ("Jonah", "Keiko")))
CHAPTER_SHARE = 0.6  # of chats, observations and reflections about the month's own chapter
_TYPE_WEIGHTS: dict[str, float] = {
    "conversation": 44, "inner_dialogue": 8, "reflection": 7, "dream": 4, "daydream": 1,
    "observation": 12.5, "journal": 4, "tool_invocation": 6.5, "action": 2.5, "task": 2.5,
    "summary": 1.2, "file_read": 1, "file_write": 1, "search": 1.3, "operator_feedback": 1,
    "code_approval": 0.8, "fragment": 0.7,
}


def memory_id_for(timestamp: datetime) -> str:
    """``evt-`` + the UTC time as YYYYMMDDHHMMSS plus the first digit of the milliseconds."""
    utc = timestamp.astimezone(UTC)
    return f"evt-{utc:%Y%m%d%H%M%S}{utc.microsecond // 100_000}"


def slugify(content: str) -> str:
    """The file-name slug of MetaHuman OS: lowercase, runs outside ``[a-z0-9-]`` become ``-``,
    trimmed of ``-``, then cut to 50 characters (so it may end in ``-``); ``event`` when empty."""
    slug = _SLUG_RUN.sub("-", content.lower()).strip("-")[:50]
    return slug or "event"


def memory_file_name(memory_id: str, content: str) -> str:
    """``<id>-<slug>.json`` as MetaHuman OS names a memory file."""
    return f"{memory_id}-{slugify(content)}.json"


def local_date_folder(timestamp: datetime) -> str:
    """The ``YYYY/MM/DD`` folder of a memory: its date in the demo person's local time."""
    local = timestamp.astimezone(UTC) + LOCAL_OFFSET
    return f"{local:%Y/%m/%d}"


def iso_utc(timestamp: datetime) -> str:
    """``2025-11-22T18:49:19.123Z``, as JavaScript's ``toISOString()`` writes it."""
    utc = timestamp.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class DemoFile:
    """One file of the demo profile: its path under the episodic folder and its bytes."""

    path: str
    data: bytes
    mtime: float


class _Slots(dict):
    """``str.format_map`` mapping that fills ``{slot}`` with a seeded random word."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self.rng = rng

    def __missing__(self, key: str) -> str:
        if key == "token":
            return _fake_token(self.rng)
        return self.rng.choice(text.SLOTS[key])


def _fake_token(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        return "sk-" + "".join(rng.choice("0123456789abcdef") for _ in range(40))
    if kind == 1:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        return "ghp_" + "".join(rng.choice(alphabet) for _ in range(36))
    return "AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))


class _Writer:
    """Composes the persona's text from the word banks with one seeded generator.

    ``month`` (set per memory) selects the month's own chapter: most texts of a month are about
    it, the rest about the steady topics."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.slots = _Slots(rng)
        self.month = 1

    def fill(self, template: str) -> str:
        return template.format_map(self.slots)

    @property
    def chapter(self) -> str:
        """The title of this month's chapter (a topic name like the steady ones)."""
        return text.MONTH_CHAPTERS[self.month]["title"][0]

    def steady_topic(self) -> str:
        return self.rng.choice(tuple(text.TOPICS))

    def topic(self) -> str:
        """This month's chapter with probability ``CHAPTER_SHARE``, else a steady topic."""
        return self.chapter if self.rng.random() < CHAPTER_SHARE else self.steady_topic()

    def topics(self, count: int) -> list[str]:
        """The month's chapter and ``count - 1`` steady topics (journals, summaries)."""
        return [self.chapter, *self.rng.sample(tuple(text.TOPICS), count - 1)]

    def bank(self, topic: str) -> dict[str, tuple[str, ...]]:
        """The questions and sentences of a steady topic or of this month's chapter."""
        return text.TOPICS[topic] if topic in text.TOPICS else text.MONTH_CHAPTERS[self.month]

    def sentences(self, topic: str, count: int) -> list[str]:
        """``count`` sentences, mostly about ``topic``, without repeating a template."""
        pool = list(self.bank(topic)["sentences"])
        out: list[str] = []
        for _ in range(count):
            if not pool or self.rng.random() < 0.2:
                source = text.TOPICS[self.steady_topic()]["sentences"]
                out.append(self.fill(self.rng.choice(source)))
            else:
                out.append(self.fill(pool.pop(self.rng.randrange(len(pool)))))
        return out

    def reply_length(self) -> int:
        """Sentences in a reply: many short, a third medium, some long (the seed's mix)."""
        roll = self.rng.random()
        if roll < 0.45:
            return self.rng.randint(1, 2)
        if roll < 0.83:
            return self.rng.randint(3, 6)
        return self.rng.randint(8, 12)

    def reply(self, topic: str) -> str:
        body = " ".join(self.sentences(topic, self.reply_length()))
        if self.rng.random() < 0.09:
            prefix = self.rng.choice(text.FILLER_PREFIXES)
            body = prefix + (body[0].lower() + body[1:] if prefix.endswith(", ") else body)
        return body

    def maybe_pii(self, body: str, chance: float) -> str:
        if self.rng.random() < chance:
            return body + " " + self.fill(self.rng.choice(text.PII_SNIPPETS))
        return body


def _base(stamp: datetime, content: str, memory_type: str | None, username: str) -> dict[str, Any]:
    payload: dict[str, Any] = {"id": memory_id_for(stamp), "timestamp": iso_utc(stamp),
                               "content": content}
    if memory_type is not None:
        payload["type"] = memory_type
    payload.update({"entities": [name for name in _PERSON_NAMES if name in content],
                    "tags": [], "importance": 0.5, "links": [], "userId": username,
                    "metadata": {}})
    return payload


class _Composer:
    """Builds one memory payload per type; keeps earlier chats to duplicate some of them."""

    def __init__(self, rng: random.Random, username: str, shape_switch: datetime) -> None:
        self.rng = rng
        self.writer = _Writer(rng)
        self.username = username
        self.shape_switch = shape_switch
        self.chats: list[tuple[str, str | None]] = []
        self.session = 0

    def build(self, memory_type: str, stamp: datetime) -> tuple[dict[str, Any], str | None]:
        """The payload and category folder (or None) of one memory."""
        self.writer.month = (stamp + LOCAL_OFFSET).month
        builder: Callable[[datetime], tuple[dict[str, Any], str | None]] | None = getattr(
            self, f"_{memory_type}", None)
        if builder is None:
            return self._simple(stamp, memory_type)
        return builder(stamp)

    def _conversation(self, stamp: datetime) -> tuple[dict[str, Any], str | None]:
        rng = self.rng
        question, reply = self._exchange()
        mode = rng.choices(("emulation", "dual", "agent"), weights=(6, 3, 1))[0]
        older = stamp < self.shape_switch and rng.random() < 0.9 or rng.random() < 0.1
        if older:
            inner = mode == "dual" and rng.random() < 0.5  # older inner-mode chats
            payload = _base(stamp, f'Me: "{question}"', "inner_dialogue" if inner else "conversation",
                            self.username)
            payload["response"] = reply
            payload["tags"] = ["chat", mode]
            if rng.random() < 0.4:
                payload["metadata"] = {"cognitiveMode": mode,
                                       "conversationId": f"conv-{self._session_id()}"}
        else:
            content = f"User: {question}\n\nAssistant: {reply}"
            payload = _base(stamp, content, "conversation", self.username)
            payload["metadata"] = {"cognitiveMode": mode, "sessionId": f"s-{self._session_id()}",
                                   "userId": self.username}
        self._decorate_chat(payload)
        return payload, self._chat_category(payload)

    def _exchange(self) -> tuple[str, str]:
        rng, writer = self.rng, self.writer
        if self.chats and rng.random() < 0.025:
            question, reply = rng.choice(self.chats)  # an exact duplicate of an earlier chat
            return question, reply or ""
        if self.chats and rng.random() < 0.025:
            question, reply = rng.choice(self.chats)  # a near duplicate: one small edit
            return question, (reply or "").rstrip(".!?") + rng.choice(("!", " indeed.", "..."))
        if rng.random() < 0.12:
            question, reply = rng.choice(text.SHORT_EXCHANGES)
        else:
            topic = writer.topic()
            question = writer.fill(rng.choice(writer.bank(topic)["questions"]))
            reply = writer.maybe_pii(writer.reply(topic), 0.025)
        self.chats.append((question, reply))
        return question, reply

    def _decorate_chat(self, payload: dict[str, Any]) -> None:
        rng = self.rng
        if rng.random() < 0.03:
            payload["metadata"]["reinforcementSignal"] = -1
        elif rng.random() < 0.02:
            payload["metadata"]["reinforcementSignal"] = 1
        if rng.random() < 0.025:
            payload["tags"] = [*payload["tags"], "feedback"]
        if rng.random() < 0.2:
            payload["importance"] = round(rng.uniform(0.3, 0.95), 2)

    def _chat_category(self, payload: dict[str, Any]) -> str | None:
        if self.rng.random() < 0.02:
            payload["tags"] = [*payload["tags"], "curated"]
            payload["metadata"].update({"curated": True, "curatedAt": payload["timestamp"]})
            return "curated"
        return None

    def _session_id(self) -> int:
        if self.rng.random() < 0.3:
            self.session += 1
        return self.session

    def _inner_dialogue(self, stamp: datetime) -> tuple[dict[str, Any], str | None]:
        count = self.rng.randint(1, 3)
        sentences = [self.writer.fill(s) for s in self.rng.sample(text.INNER_SENTENCES, count)]
        payload = _base(stamp, " ".join(sentences), "inner_dialogue", self.username)
        payload["tags"] = ["inner", "idle-thought"]
        if self.rng.random() < 0.5:
            payload["metadata"] = {"cognitiveMode": "dual"}
        return payload, None

    def _reflection(self, stamp: datetime) -> tuple[dict[str, Any], str | None]:
        writer = self.writer
        body = [self.rng.choice(text.REFLECTION_OPENERS)]
        body += writer.sentences(writer.topic(), self.rng.randint(5, 9))
        body.append(self.rng.choice(text.REFLECTION_CLOSERS))
        payload = _base(stamp, " ".join(body), "reflection", self.username)
        payload["tags"] = ["reflection"]
        payload["importance"] = 0.7
        return payload, "reflections"

    def _dream(self, stamp: datetime) -> tuple[dict[str, Any], str | None]:
        count = self.rng.randint(3, 6)
        body = [self.writer.fill(s) for s in self.rng.sample(text.DREAM_SENTENCES, count)]
        payload = _base(stamp, " ".join(body), "dream", self.username)
        payload["tags"] = ["dream"]
        if self.rng.random() < 0.15:
            payload["metadata"] = {"source": "audio", "durationS": self.rng.randint(20, 180)}
            return payload, "audio-dreams"
        return payload, "dreams"

    def _daydream(self, stamp: datetime) -> tuple[dict[str, Any], str | None]:
        body = self.writer.fill(self.rng.choice(text.DREAM_SENTENCES)).replace("I dreamed", "I imagined")
        payload = _base(stamp, body, "daydream", self.username)
        payload["tags"] = ["idle-thought"]
        return payload, None

    def _observation(self, stamp: datetime) -> tuple[dict[str, Any], str | None]:
        writer = self.writer
        body = writer.maybe_pii(" ".join(writer.sentences(writer.topic(), self.rng.randint(2, 5))),
                                0.03)
        payload = _base(stamp, body, "observation", self.username)
        payload["tags"] = ["observation"]
        if self.rng.random() < 0.1:
            payload["metadata"] = {"source": "audio", "durationS": self.rng.randint(10, 240)}
            return payload, "audio"
        if self.rng.random() < 0.05:
            payload["metadata"] = {"cognitiveMode": "environment"}
        return payload, None

    def _journal(self, stamp: datetime) -> tuple[dict[str, Any], str | None]:
        writer = self.writer
        local = stamp + LOCAL_OFFSET
        body = [f"Journal, {local:%A %B} {local.day}. I feel {writer.fill('{feeling}')}."]
        for topic in writer.topics(3):
            body += writer.sentences(topic, self.rng.randint(3, 5))
        payload = _base(stamp, " ".join(body), "journal", self.username)
        payload["tags"] = ["journal"]
        payload["importance"] = 0.8
        return payload, None

    def _summary(self, stamp: datetime) -> tuple[dict[str, Any], str | None]:
        writer = self.writer
        topics = writer.topics(3)
        body = [f"Summary of recent conversations about {', '.join(topics)}."]
        for topic in topics:
            body += writer.sentences(topic, 2)
        payload = _base(stamp, " ".join(body), "summary", self.username)
        payload["tags"] = ["summary"]
        return payload, None

    def _tool_invocation(self, stamp: datetime) -> tuple[dict[str, Any], str | None]:
        name, inputs, outputs = self.rng.choice(text.TOOLS)
        payload = _base(stamp, f"Invoked skill: {name}", "tool_invocation", self.username)
        success = self.rng.random() >= 0.08
        metadata: dict[str, Any] = {"cognitiveMode": "agent", "toolName": name,
                                    "toolInputs": dict(inputs),
                                    "toolOutputs": dict(outputs) if success else {},
                                    "success": success,
                                    "executionTimeMs": self.rng.randint(40, 4000)}
        if not success:
            metadata["error"] = self.rng.choice(("timeout after 30s", "connection refused",
                                                 "permission denied"))
        payload["metadata"] = metadata
        payload["tags"] = ["tool", name]
        return payload, "tool-invocations"

    def _action(self, stamp: datetime) -> tuple[dict[str, Any], str | None]:
        payload = _base(stamp, self.writer.fill(self.rng.choice(text.ACTIONS)), "action",
                        self.username)
        payload["metadata"] = {"cognitiveMode": "agent", "usedOperator": True,
                               "trustLevel": self.rng.choice(("observe", "suggest", "supervised_auto"))}
        return payload, "actions"

    def _task(self, stamp: datetime) -> tuple[dict[str, Any], str | None]:
        body = "Task: " + self.writer.fill(self.rng.choice(text.TASKS))
        payload = _base(stamp, body, "task", self.username)
        payload["tags"] = ["task", self.rng.choice(("open", "done"))]
        return payload, None

    def _operator_feedback(self, stamp: datetime) -> tuple[dict[str, Any], str | None]:
        body = self.rng.choice(("Feedback: that answer was too long, keep it short.",
                                "Feedback: good, that sounded like me.",
                                "Feedback: do not mention work on weekends.",
                                "Feedback: too formal, I never say 'certainly'."))
        payload = _base(stamp, body, "operator_feedback", self.username)
        payload["tags"] = ["feedback"]
        return payload, None

    def _simple(self, stamp: datetime, memory_type: str) -> tuple[dict[str, Any], str | None]:
        rng, writer = self.rng, self.writer
        bodies = {
            "file_read": lambda: f"Read file notes/{slugify(writer.topic())}.md",
            "file_write": lambda: f"Wrote file notes/{slugify(writer.topic())}-{rng.randint(1, 40)}.md",
            "search": lambda: "Searched for " + writer.fill(rng.choice(
                ("how to fix {veg} blight", "{dish} recipe", "{book} review",
                 "{spanish} exercises", "{trail} conditions"))),
            "code_approval": lambda: "Approved code change: " + writer.fill("refactor of {work}"),
            "fragment": lambda: writer.fill(rng.choice(("{veg}, {veg}, compost", "{friend} at {time}?",
                                                       "remember {book}"))),
        }
        payload = _base(stamp, bodies[memory_type](), memory_type, self.username)
        return payload, None


def _inverse_growth(u: float) -> float:
    """Inverse CDF of a linearly growing density on [0, 1): later weeks get more memories."""
    a = _GROWTH
    return (-1.0 + (1.0 + 2.0 * a * u * (1.0 + a / 2.0)) ** 0.5) / a


def _timestamps(rng: random.Random, count: int, start: datetime, end: datetime) -> list[datetime]:
    """``count`` distinct instants in [start, end), growing over time, at waking local hours."""
    days = (end - start).days
    first_local_day: date = (start + LOCAL_OFFSET).date()
    hours = range(24)
    seen: set[str] = set()
    stamps: list[datetime] = []
    while len(stamps) < count:
        day = first_local_day + timedelta(days=min(int(_inverse_growth(rng.random()) * days), days))
        hour = rng.choices(hours, weights=_HOUR_WEIGHTS)[0]
        local = datetime.combine(day, time(hour), tzinfo=UTC) + timedelta(
            seconds=rng.randrange(3600), milliseconds=rng.randrange(1000))
        stamp = local - LOCAL_OFFSET
        if start <= stamp < end and memory_id_for(stamp) not in seen:
            seen.add(memory_id_for(stamp))
            stamps.append(stamp)
    return sorted(stamps)


def _memory_files(rng: random.Random, username: str, memories: int, start: datetime,
                  end: datetime) -> list[DemoFile]:
    stamps = _timestamps(rng, memories, start, end)
    composer = _Composer(rng, username, shape_switch=start + (end - start) * 0.4)
    types = rng.choices(tuple(_TYPE_WEIGHTS), weights=tuple(_TYPE_WEIGHTS.values()), k=memories)
    files = []
    for index, (stamp, memory_type) in enumerate(zip(stamps, types)):
        payload, category = composer.build(memory_type, stamp)
        if index % 97 == 13 and memory_type == "observation":
            del payload["type"]  # MetaHuman OS sometimes omits it; readers default to observation
        folder = f"{category}/" if category else ""
        name = memory_file_name(payload["id"], payload["content"])
        files.append(DemoFile(f"{folder}{local_date_folder(stamp)}/{name}",
                              orjson.dumps(payload, option=orjson.OPT_INDENT_2), stamp.timestamp()))
    return files


def _bad_files(rng: random.Random, username: str, start: datetime, end: datetime) -> list[DemoFile]:
    """A handful of malformed files (one per common defect) and three encrypted ones."""
    span = (end - start).total_seconds()

    def stamp_at(fraction: float) -> datetime:
        return start + timedelta(seconds=int(span * fraction), milliseconds=rng.randrange(1000))

    def good(stamp: datetime, content: str) -> dict[str, Any]:
        return _base(stamp, content, "conversation", username)

    cases: list[tuple[datetime, str, bytes]] = []
    s = stamp_at(0.11)
    cases.append((s, "half-written", orjson.dumps(good(s, "Half written memory"))[:45]))
    s = stamp_at(0.23)
    cases.append((s, "", b""))
    s = stamp_at(0.31)
    cases.append((s, "array", b"[]"))
    s = stamp_at(0.47)
    bad_content = good(s, "") | {"content": ["how many", "tomatoes?"]}  # content must be text
    cases.append((s, "how many tomatoes?", orjson.dumps(bad_content)))
    s = stamp_at(0.58)
    no_time = {k: v for k, v in good(s, "A memory without a timestamp").items() if k != "timestamp"}
    cases.append((s, no_time["content"], orjson.dumps(no_time)))
    s = stamp_at(0.66)
    cases.append((s, "", orjson.dumps(good(s, "   "))))
    s = stamp_at(0.79)
    cases.append((s, "latin-1", 'Me: "¿qué tal?" – año'.encode("latin-1", "replace")))
    files = [DemoFile(f"{local_date_folder(st)}/{memory_file_name(memory_id_for(st), slug)}",
                      data, st.timestamp()) for st, slug, data in cases]
    for fraction in (0.35, 0.72, 0.91):
        st = stamp_at(fraction)
        secret = bytes(rng.randrange(256) for _ in range(16 + 16 * rng.randint(4, 20)))
        files.append(DemoFile(f"{local_date_folder(st)}/{memory_id_for(st)}-encrypted.json.enc",
                              secret, st.timestamp()))
    return files


def generate_demo_files(username: str = DEMO_USERNAME, *, memories: int = 1500, months: int = 6,
                        seed: int = 0, end: datetime = DEMO_END) -> list[DemoFile]:
    """Every file of a demo profile's episodic folder, in memory (pure: no disk access).

    Args:
        username: written into ``userId`` of each memory.
        memories: how many readable memories (the loader returns exactly this many rows).
        months: the span before ``end`` that the memories cover (30.44 days a month).
        seed: the generator's seed; the same arguments always give the same bytes.
        end: every timestamp is strictly before this aware instant.
    """
    if memories < 1 or months < 1:
        raise ValueError(f"memories and months must be at least 1, got {memories} and {months}")
    if end.tzinfo is None:
        raise ValueError("end must be timezone-aware (UTC)")
    end = end.astimezone(UTC)
    start = end - timedelta(days=round(months * 30.44))
    rng = random.Random(seed)
    return _memory_files(rng, username, memories, start, end) + _bad_files(rng, username, start, end)


def write_demo_profile(root: str | os.PathLike[str] | None, username: str = DEMO_USERNAME, *,
                       memories: int = 1500, months: int = 6, seed: int = 0,
                       end: datetime = DEMO_END, overwrite: bool = False) -> Profile:
    """Write a synthetic profile under ``root`` and return it.

    The episodic folder is written next to its final place and renamed into it, so a reader
    never sees half a profile. An existing profile is replaced only with ``overwrite=True`` and
    only when it was generated by this function (it carries :data:`MARKER_NAME`).

    Raises:
        ProfileError: the profile exists (and ``overwrite`` is false, or it is not a demo).
    """
    profile = Profile(resolve_root(root), username)
    _clear_existing(profile, overwrite)
    files = generate_demo_files(username, memories=memories, months=months, seed=seed, end=end)
    memory_dir = profile.episodic_dir.parent
    memory_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".episodic-", dir=memory_dir))
    try:
        for demo_file in files:
            target = staging / demo_file.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(demo_file.data)
            os.utime(target, (demo_file.mtime, demo_file.mtime))
        os.replace(staging, profile.episodic_dir)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if profile.episodic_dir.is_dir():  # another process wrote it first
            raise ProfileError(f"A profile appeared at {profile.episodic_dir} while the demo "
                               "was being written; it was left as it is.") from exc
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    marker = {"generator": "metahuman_lib.demo", "version": GENERATOR_VERSION, "username": username,
              "memories": memories, "months": months, "seed": seed, "end": iso_utc(end)}
    (profile.profile_dir / MARKER_NAME).write_bytes(orjson.dumps(marker, option=orjson.OPT_INDENT_2))
    return profile


def _clear_existing(profile: Profile, overwrite: bool) -> None:
    if not profile.episodic_dir.exists():
        return
    if not (profile.profile_dir / MARKER_NAME).is_file():
        raise ProfileError(f"Refusing to write a demo profile over {profile.episodic_dir}: it exists "
                           "and was not generated by the workbench. Choose another --username or --root.")
    if not overwrite:
        raise ProfileError(f"A demo profile already exists at {profile.episodic_dir}; pass "
                           "--overwrite to replace it.")
    shutil.rmtree(profile.episodic_dir)


def resolve_profile(username: str = DEMO_USERNAME,
                    root: str | os.PathLike[str] | None = None) -> Profile:
    """The profile notebooks and commands work on; the demo profile is written on first use.

    ``root`` empty or None means ``$METAHUMAN_ROOT`` or the current folder. For any username
    other than ``demo`` the profile must already exist.

    Raises:
        ProfileError: the username is invalid or its profile folder does not exist.
    """
    profile = Profile.open(username, root)
    if username == DEMO_USERNAME and not profile.episodic_dir.exists():
        try:
            write_demo_profile(profile.root, username)
        except ProfileError:
            if not profile.episodic_dir.is_dir():  # not a race with another writer: report it
                raise
    return profile.require_exists()
