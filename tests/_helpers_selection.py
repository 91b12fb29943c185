"""Synthetic samples tables for the selection tests (the contract of metahuman_lib/samples.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from metahuman_lib.samples import SAMPLE_COLUMNS

NOW = datetime(2025, 12, 1, tzinfo=UTC)
MODES = ("dual", "emulation", "agent")


def make_samples(n_memories: int, *, days: int = 365, seed: int = 0, max_per_memory: int = 1,
                 now: datetime = NOW, future: int = 0) -> pd.DataFrame:
    """A samples table of ``n_memories`` memories spread over ``days`` days before ``now``.

    Memories yield 1..``max_per_memory`` samples; ``future`` extra memories lie after ``now``.
    """
    rng = np.random.default_rng(seed)
    total = n_memories + future
    offsets = rng.integers(1, days * 86_400, size=total).astype("timedelta64[s]")
    offsets[n_memories:] = -offsets[n_memories:] // 100 - np.timedelta64(1, "s")
    stamps = np.datetime64(now.replace(tzinfo=None), "s") - offsets
    modes = rng.choice(MODES, size=total, p=[0.3, 0.5, 0.2])
    per_memory = rng.integers(1, max_per_memory + 1, size=total)
    words = rng.integers(1, 160, size=total)
    rows = []
    for index in range(total):
        memory_id = f"evt-{index:07d}"
        for part in range(int(per_memory[index])):
            text = " ".join(["word"] * int(words[index]))
            rows.append({
                "sample_id": memory_id if part == 0 else f"{memory_id}#{part}",
                "memory_id": memory_id, "timestamp": stamps[index], "type": "conversation",
                "mode": str(modes[index]), "mode_source": "type",
                "messages": [{"role": "user", "content": f"question {index}"},
                             {"role": "assistant", "content": text}],
                "assistant_text": text, "word_count": int(words[index]),
            })
    frame = pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame
