"""Did the run learn, did it forget, does it still sound like the person? And the promotion gate.

Reads the trainer's ``metrics.json`` (schema in docs/architecture.md): ``before`` is the model the
run started from (the parent version), ``after`` the candidate, each with ``eval_recent`` (held-out
recent samples, never trained on), ``eval_old`` (the profile's fixed old probe, with ``by_month``)
and ``train_sample``. From those:

- learning: the drop of the ``eval_recent`` loss;
- forgetting: the change of the ``eval_old`` loss against the parent, overall and per month;
- style, where ``generations.jsonl`` exists: the answer length distribution and filler rate of the
  candidate's answers against the person's real answers (spec section 3 definitions).

:func:`decide` turns them into a :class:`GateDecision` under a :class:`GateConfig` (the ``gate:``
block of a parameter set). A rejected candidate is a normal outcome of a run, not a failure:
:func:`conclude` records the decision and raises :class:`PipelineStepError` only when the
evaluation could not be made, or when ``fail_on_reject`` asks a rejection to stop the pipeline.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from metahuman_lib._io import read_json
from metahuman_lib.errors import ConfigError, GateRefused, PipelineStepError
from metahuman_lib.profile import Profile
from metahuman_lib.quality import LONG_MIN_WORDS, SHORT_MAX_WORDS
from metahuman_lib.text_rules import count_words, filler_phrases_in

EVAL_SETS = ("eval_recent", "eval_old", "train_sample")


# --------------------------------------------------------------------------------------------
# configuration and decision
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the promotion gate: the ``gate:`` block of a parameter set.

    Attributes:
        min_recent_improvement: how much the ``eval_recent`` loss must drop, relative to the parent
            (0.0: any drop; 0.05: at least 5%). The run must have learned its new month.
        max_old_worsening: how much the ``eval_old`` loss may rise, relative to the parent
            (0.02: at most 2% worse). Catastrophic forgetting shows up here first.
        max_month_worsening: the same limit for every month of the old probe; None reports the
            per-month figures without gating on them.
        max_filler_rate_increase: how much higher the candidate's filler rate may be than the
            person's real answers, as a fraction (0.05 = 5 percentage points); None reports only.
            Needs ``generations.jsonl``.
        max_median_length_change: relative change of the median answer length against the real
            answers (0.5: within +-50%); None reports only. Needs ``generations.jsonl``.
    """

    min_recent_improvement: float = 0.0
    max_old_worsening: float = 0.02
    max_month_worsening: float | None = None
    max_filler_rate_increase: float | None = None
    max_median_length_change: float | None = None

    @property
    def month_limit_pct(self) -> float:
        """The per-month limit in percent (the overall one when months are not gated separately)."""
        limit = self.max_month_worsening if self.max_month_worsening is not None else self.max_old_worsening
        return 100.0 * limit

    @classmethod
    def from_mapping(cls, mapping: dict[str, Any] | None) -> GateConfig:
        """Build from a YAML block or notebook parameter; unknown keys raise with close names."""
        mapping = dict(mapping or {})
        names = [f.name for f in fields(cls)]
        for key in mapping:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=2)
                hint = f" Did you mean {' or '.join(close)}?" if close else f" Known keys: {', '.join(names)}."
                raise ConfigError(f"Unknown key gate.{key}.{hint}")
        for key, value in mapping.items():
            optional = key not in ("min_recent_improvement", "max_old_worsening")
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"gate.{key} must be a number >= 0 (a fraction, 0.02 = 2%), got {value!r}.")
        return cls(**{k: (float(v) if v is not None else None) for k, v in mapping.items()})


@dataclass(frozen=True)
class GateCheck:
    """One criterion of the gate: its name, whether it passed, and the sentence that says why."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict: passed or not, the reasons in words, and the figures behind them."""

    passed: bool
    checks: tuple[GateCheck, ...]
    figures: dict[str, Any]

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why it was rejected (the failed checks), or why it passed (every check) when it passed."""
        failed = tuple(c.detail for c in self.checks if not c.passed)
        return failed if failed else tuple(c.detail for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": list(self.reasons),
                "checks": [asdict(c) for c in self.checks], "figures": self.figures}


# --------------------------------------------------------------------------------------------
# reading a run folder
# --------------------------------------------------------------------------------------------


def load_metrics(run_dir: Path | None) -> dict[str, Any]:
    """The run's ``metrics.json``; a missing or unreadable file fails the evaluation step.

    ``None`` (exploring a profile that has no run yet) gives empty metrics: nothing to show.
    """
    if run_dir is None:
        return {}
    path = Path(run_dir) / "metrics.json"
    try:
        metrics = read_json(path)
    except FileNotFoundError as exc:
        raise PipelineStepError(f"No {path}: the trainer did not finish its evaluation; re-run training.") from exc
    except orjson.JSONDecodeError as exc:
        raise PipelineStepError(f"{path} is not valid JSON ({exc}); re-run training.") from exc
    if not isinstance(metrics, dict):
        raise PipelineStepError(f"{path} is not a JSON object; re-run training.")
    return metrics


def _loss(metrics: dict[str, Any], side: str, eval_set: str) -> float:
    try:
        value = metrics[side][eval_set]["loss"]
    except (KeyError, TypeError):
        raise PipelineStepError(
            f"metrics.json lacks {side}.{eval_set}.loss; the trainer must evaluate the parent "
            "and the candidate on it before the gate can decide."
        ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PipelineStepError(f"metrics.json {side}.{eval_set}.loss is {value!r}, not a finite number.")
    return float(value)


def _pct(before: float, after: float) -> float:
    return (after - before) / before * 100.0 if before else math.inf


def train_log(run_dir: Path | None) -> pd.DataFrame:
    """``train_log.jsonl`` as a table (one row per logging step); empty when the file is absent."""
    path = Path(run_dir or "") / "train_log.jsonl"
    if run_dir is None or not path.is_file():
        return pd.DataFrame(columns=["step", "loss"])
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return pd.DataFrame(rows)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _first(row: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = row.get(key)
        if isinstance(value, str):
            return value
    return None


def load_generations(run_dir: Path | None) -> pd.DataFrame:
    """``generations.jsonl`` as ``prompt, reference, before, after`` (None where absent).

    Each line holds a prompt from the held-out set, the person's real answer (``reference``),
    and the answers of the parent (``before``) and the candidate (``after``).
    """
    if run_dir is None:
        return pd.DataFrame(columns=["prompt", "reference", "before", "after"])
    metrics_path = Path(run_dir) / "metrics.json"
    name = "generations.jsonl"
    if metrics_path.is_file():
        name = (read_json(metrics_path) or {}).get("generations") or name
    rows = [{"prompt": _first(r, "prompt"), "reference": _first(r, "reference", "real", "expected"),
             "before": _first(r, "before", "parent"), "after": _first(r, "after", "candidate", "generated")}
            for r in _read_jsonl(Path(run_dir) / name)]
    return pd.DataFrame(rows, columns=["prompt", "reference", "before", "after"])


def real_answers(run_dir: Path) -> list[str]:
    """The person's real answers on the held-out recent set (assistant turns of eval_recent.jsonl)."""
    answers = []
    for record in _read_jsonl(Path(run_dir) / "eval_recent.jsonl"):
        texts = [m.get("content", "") for m in record.get("messages", []) if m.get("role") == "assistant"]
        if texts:
            answers.append("\n\n".join(texts))
    return answers


# --------------------------------------------------------------------------------------------
# learning, forgetting, style
# --------------------------------------------------------------------------------------------


def learning(metrics: dict[str, Any]) -> dict[str, float]:
    """How much the held-out recent loss dropped (negative ``change_pct`` = it learned)."""
    before, after = _loss(metrics, "before", "eval_recent"), _loss(metrics, "after", "eval_recent")
    return {"recent_loss_before": before, "recent_loss_after": after, "recent_change_pct": _pct(before, after)}


def forgetting(metrics: dict[str, Any]) -> dict[str, float]:
    """How much the old-probe loss rose against the parent (positive ``old_change_pct`` = forgot)."""
    before, after = _loss(metrics, "before", "eval_old"), _loss(metrics, "after", "eval_old")
    return {"old_loss_before": before, "old_loss_after": after, "old_change_pct": _pct(before, after)}


def forgetting_by_month(metrics: dict[str, Any]) -> pd.DataFrame:
    """Per month of the old probe: loss before and after, and the change in percent, oldest first."""
    before = ((metrics.get("before") or {}).get("eval_old") or {}).get("by_month") or {}
    after = ((metrics.get("after") or {}).get("eval_old") or {}).get("by_month") or {}
    rows = []
    for month in sorted(set(before) & set(after)):
        b, a = before[month].get("loss"), after[month].get("loss")
        if isinstance(b, (int, float)) and isinstance(a, (int, float)):
            rows.append({"month": month, "loss_before": float(b), "loss_after": float(a),
                         "change_pct": _pct(float(b), float(a)), "samples": after[month].get("samples")})
    return pd.DataFrame(rows, columns=["month", "loss_before", "loss_after", "change_pct", "samples"])


def before_after_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per evaluation set: loss and perplexity before and after, and the loss change."""
    rows = []
    for eval_set in EVAL_SETS:
        b = (metrics.get("before") or {}).get(eval_set) or {}
        a = (metrics.get("after") or {}).get(eval_set) or {}
        if "loss" not in b or "loss" not in a:
            continue
        rows.append({"set": eval_set, "loss_before": b["loss"], "loss_after": a["loss"],
                     "change_pct": round(_pct(b["loss"], a["loss"]), 2),
                     "perplexity_before": b.get("perplexity"), "perplexity_after": a.get("perplexity"),
                     "samples": a.get("samples")})
    return pd.DataFrame(rows, columns=["set", "loss_before", "loss_after", "change_pct",
                                       "perplexity_before", "perplexity_after", "samples"])


def _words(text: str) -> int:
    return count_words(text)


def _is_filler(text: str) -> bool:
    """The seed's filler test (spec section 3), the same one curation's quality metrics use."""
    return bool(filler_phrases_in(text))


def answer_profile(answers: list[str]) -> dict[str, float]:
    """Length distribution and filler rate of answers, as the seed defines them (percentages)."""
    if not answers:
        return {"answers": 0}
    counts = [_words(a) for a in answers]
    n = len(counts)
    short = sum(c <= SHORT_MAX_WORDS for c in counts)
    long_ = sum(c >= LONG_MIN_WORDS for c in counts)
    return {
        "answers": n,
        "median_words": float(pd.Series(counts).median()),
        "mean_words": sum(counts) / n,
        "short_pct": 100.0 * short / n,
        "medium_pct": 100.0 * (n - short - long_) / n,
        "long_pct": 100.0 * long_ / n,
        "filler_pct": 100.0 * sum(_is_filler(a) for a in answers) / n,
    }


def style(candidate_answers: list[str], real: list[str]) -> dict[str, Any] | None:
    """The candidate's answers against the person's: both profiles and the two differences gated on."""
    if not candidate_answers or not real:
        return None
    cand, person = answer_profile(candidate_answers), answer_profile(real)
    change = (cand["median_words"] - person["median_words"]) / person["median_words"] \
        if person["median_words"] else math.inf
    return {"candidate": cand, "person": person,
            "filler_rate_increase_pp": cand["filler_pct"] - person["filler_pct"],
            "median_length_change": change}


def run_style(run_dir: Path) -> dict[str, Any] | None:
    """Style of a run's generations against the real answers (``reference``, else eval_recent)."""
    generations = load_generations(run_dir)
    candidate = [a for a in generations["after"] if isinstance(a, str)]
    references = [r for r in generations["reference"] if isinstance(r, str)]
    return style(candidate, references or real_answers(run_dir))


# --------------------------------------------------------------------------------------------
# the gate
# --------------------------------------------------------------------------------------------


def _learning_check(figures: dict[str, Any], config: GateConfig) -> GateCheck:
    need = -100.0 * config.min_recent_improvement
    change = figures["recent_change_pct"]
    passed = change < need if config.min_recent_improvement == 0 else change <= need
    verb = "improved" if change < 0 else "did not improve"
    return GateCheck("learning", passed,
                     f"Recent loss {verb}: {figures['recent_loss_before']:.4f} -> "
                     f"{figures['recent_loss_after']:.4f} ({change:+.2f}%); the gate needs a drop of "
                     f"{'any size' if need == 0 else f'at least {-need:.2f}%'}.")


def _forgetting_check(figures: dict[str, Any], config: GateConfig) -> GateCheck:
    limit = 100.0 * config.max_old_worsening
    change = figures["old_change_pct"]
    return GateCheck("forgetting", change <= limit + 1e-9,
                     f"Old-probe loss changed {figures['old_loss_before']:.4f} -> "
                     f"{figures['old_loss_after']:.4f} ({change:+.2f}%); the gate allows at most +{limit:.2f}%.")


def _month_checks(by_month: pd.DataFrame, config: GateConfig) -> list[GateCheck]:
    if config.max_month_worsening is None or by_month.empty:
        return []
    limit = 100.0 * config.max_month_worsening
    worst = by_month.sort_values("change_pct").iloc[-1]
    bad = by_month[by_month["change_pct"] > limit + 1e-9]
    detail = (f"Every month of the old probe stays within +{limit:.2f}% (worst {worst['month']}: "
              f"{worst['change_pct']:+.2f}%)." if bad.empty else
              f"Old-probe months worse than +{limit:.2f}%: "
              + ", ".join(f"{r.month} {r.change_pct:+.2f}%" for r in bad.itertuples()) + ".")
    return [GateCheck("forgetting_by_month", bad.empty, detail)]


def _style_checks(style_report: dict[str, Any] | None, config: GateConfig) -> list[GateCheck]:
    if style_report is None:
        return []
    checks = []
    if config.max_filler_rate_increase is not None:
        rise, limit = style_report["filler_rate_increase_pp"], 100.0 * config.max_filler_rate_increase
        checks.append(GateCheck("filler", rise <= limit + 1e-9,
                                f"Filler in answers: {style_report['candidate']['filler_pct']:.1f}% vs the "
                                f"person's {style_report['person']['filler_pct']:.1f}% ({rise:+.1f} points; "
                                f"allowed +{limit:.1f})."))
    if config.max_median_length_change is not None:
        change, limit = style_report["median_length_change"], config.max_median_length_change
        checks.append(GateCheck("answer_length", abs(change) <= limit + 1e-9,
                                f"Median answer length: {style_report['candidate']['median_words']:.0f} words vs "
                                f"the person's {style_report['person']['median_words']:.0f} "
                                f"({100 * change:+.0f}%; allowed +-{100 * limit:.0f}%)."))
    return checks


def decide(metrics: dict[str, Any], config: GateConfig | None = None, *,
           style_report: dict[str, Any] | None = None) -> GateDecision:
    """Decide whether a candidate may become current: it must learn and must not forget too much.

    Raises:
        PipelineStepError: ``metrics`` lacks a loss the gate needs (the run cannot be judged).
    """
    config = config or GateConfig()
    figures: dict[str, Any] = {**learning(metrics), **forgetting(metrics)}
    by_month = forgetting_by_month(metrics)
    figures["old_by_month"] = by_month.to_dict(orient="records")
    if style_report is not None:
        figures["style"] = style_report
    checks = [_learning_check(figures, config), _forgetting_check(figures, config),
              *_month_checks(by_month, config), *_style_checks(style_report, config)]
    figures["config"] = asdict(config)
    return GateDecision(passed=all(c.passed for c in checks), checks=tuple(checks), figures=figures)


def evaluate_run(run_dir: Path | None, config: GateConfig | None = None) -> GateDecision | None:
    """Read a run folder's metrics and generations and decide (None when there is no run)."""
    if run_dir is None:
        return None
    return decide(load_metrics(run_dir), config, style_report=run_style(run_dir))


def decision_table(decision: GateDecision | None) -> pd.DataFrame:
    """The decision as a table: one row per check, for notebooks and reports."""
    checks = decision.checks if decision is not None else ()
    return pd.DataFrame([asdict(c) for c in checks], columns=["name", "passed", "detail"])


#: Below this many parameters a model is a test fixture: its answers show the plumbing, not a persona.
TOY_PARAMETERS = 100_000_000


def side_by_side(run_dir: Path | None, limit: int = 10) -> Any:
    """Prompts with the person's real answer and the parent's and candidate's answers; captioned when
    the model is a toy (the demo's tiny model), whose answers are not meant to read well."""
    table = load_generations(run_dir).head(limit)
    effective = Path(run_dir) / "effective_config.json" if run_dir else None
    total = (read_json(effective) or {}).get("total_parameters") if effective and effective.is_file() else None
    if isinstance(total, int) and total < TOY_PARAMETERS:
        return table.style.set_caption(
            f"The model is a toy ({total:,} parameters, the demo's test model): these answers show that "
            "training and generation work, not how a real model of the person would sound.")
    return table


def conclude(run_dir: Path | str, decision: GateDecision | None, *, now: datetime,
             fail_on_reject: bool = False) -> str:
    """Record the decision in the run's manifest (section ``evaluation``) and say what it means.

    A rejected candidate is a normal outcome: the run completes, the registry records the version
    as ``rejected`` and the report shows these reasons. With ``fail_on_reject`` a rejection raises
    :class:`PipelineStepError` instead, so papermill fails this step. With an empty ``run_dir``
    (exploring) nothing is written; with no decision (no run to evaluate yet) it says so.
    """
    if decision is None:
        return "Nothing to evaluate yet: this profile has no run with a metrics.json."
    summary = verdict(decision, run_dir)
    if run_dir:
        _record(Path(run_dir), decision, now)
    if fail_on_reject and not decision.passed:
        raise GateRefused(summary)
    return summary


def verdict(decision: GateDecision, run_dir: Path | str | None = None) -> str:
    """The decision at a glance, with the figures a person checks first and what happens next."""
    figures = decision.figures
    limit = float((figures.get("config") or {}).get("max_old_worsening", 0.02)) * 100
    parts = []
    if figures.get("recent_change_pct") is not None:
        parts.append(f"recent loss {figures['recent_change_pct']:+.1f}%")
    if figures.get("old_change_pct") is not None:
        parts.append(f"old probe {figures['old_change_pct']:+.1f}% (limit +{limit:g}%)")
    counts = {}
    if run_dir and (Path(run_dir) / "manifest.json").is_file():
        from metahuman_lib.runfolder import read_manifest

        counts = (read_manifest(Path(run_dir)).get("selection") or {}).get("counts") or {}
    if counts.get("recent_selected") is not None and counts.get("old_selected") is not None:
        parts.append(f"{counts['recent_selected']:,} new + {counts['old_selected']:,} replayed samples")
    figures_text = ", ".join(parts)
    if decision.passed:
        return f"Gate passed: {figures_text}. The registry step makes the candidate current."
    return (f"Gate rejected the candidate: {figures_text}. " + " ".join(decision.reasons)
            + " The current version stays in use.")


def _record(run_dir: Path, decision: GateDecision, now: datetime) -> None:
    from metahuman_lib.runfolder import update_manifest

    section = {**decision.to_dict(), "decided_at": now.isoformat().replace("+00:00", "Z")}
    section = orjson.loads(orjson.dumps(section, option=orjson.OPT_SERIALIZE_NUMPY, default=_plain))

    def change(manifest: dict[str, Any]) -> None:
        manifest["evaluation"] = section

    update_manifest(run_dir, change)


def _plain(value: Any) -> str:
    """Anything orjson cannot write (it already writes inf and nan as null) as text."""
    return str(value)


_RUN_LABEL = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{6}-[0-9a-f]{6}$")


def resolve_run_dir(profile: Profile, run_dir: str | Path = "") -> Path | None:
    """The run folder to look at: ``run_dir`` when given, else the newest one with a metrics.json.

    None when exploring a profile that has no run yet (every view is then empty).
    """
    if run_dir:
        return Path(run_dir)
    runs = sorted((p for p in profile.fine_tuned_dir.glob("*/*")
                   if _RUN_LABEL.match(p.name) and (p / "metrics.json").is_file()), key=lambda p: p.name)
    return runs[-1] if runs else None
