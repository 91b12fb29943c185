"""Learning, forgetting, style and the promotion gate, on constructed metrics."""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pandas as pd
import pytest
from _helpers_registry import T0, make_run, metrics

from metahuman_lib import evaluation
from metahuman_lib.errors import ConfigError, PipelineStepError
from metahuman_lib.evaluation import GateConfig, decide
from metahuman_lib.profile import Profile


@pytest.mark.parametrize(("recent", "old", "config", "passed", "failed_checks"), [
    ((2.3, 2.0), (2.2, 2.21), GateConfig(), True, []),
    ((2.3, 2.3), (2.2, 2.2), GateConfig(), False, ["learning"]),            # no drop at all
    ((2.3, 2.4), (2.2, 2.2), GateConfig(), False, ["learning"]),            # got worse
    ((2.3, 2.0), (2.0, 2.04), GateConfig(), True, []),                      # exactly +2.00%
    ((2.3, 2.0), (2.0, 2.05), GateConfig(), False, ["forgetting"]),         # +2.5%
    ((2.3, 2.4), (2.0, 2.5), GateConfig(), False, ["learning", "forgetting"]),
    ((2.0, 1.95), (2.0, 2.0), GateConfig(min_recent_improvement=0.05), False, ["learning"]),  # -2.5% < 5%
    ((2.0, 1.9), (2.0, 2.0), GateConfig(min_recent_improvement=0.05), True, []),             # exactly -5%
    ((2.0, 1.9), (2.0, 2.1), GateConfig(max_old_worsening=0.10), True, []),
])
def test_gate_decisions(recent, old, config, passed, failed_checks) -> None:
    decision = decide(metrics(recent=recent, old=old, months={}), config)
    assert decision.passed is passed
    assert [c.name for c in decision.checks if not c.passed] == failed_checks
    assert decision.figures["recent_loss_before"] == recent[0]
    assert decision.figures["old_change_pct"] == pytest.approx((old[1] - old[0]) / old[0] * 100)


def test_reasons_are_sentences_with_the_figures() -> None:
    decision = decide(metrics(recent=(2.0, 2.2), old=(2.0, 2.1), months={}))
    assert decision.reasons == (
        "Recent loss did not improve: 2.0000 -> 2.2000 (+10.00%); the gate needs a drop of any size.",
        "Old-probe loss changed 2.0000 -> 2.1000 (+5.00%); the gate allows at most +2.00%.",
    )
    good = decide(metrics(recent=(2.0, 1.5), old=(2.0, 2.0), months={}))
    assert good.reasons[0] == ("Recent loss improved: 2.0000 -> 1.5000 (-25.00%); "
                               "the gate needs a drop of any size.")


def test_forgetting_per_month_is_reported_and_gated_when_configured() -> None:
    run_metrics = metrics(months={"2025-07": (2.0, 2.2), "2025-08": (2.0, 1.9)})
    frame = evaluation.forgetting_by_month(run_metrics)
    assert list(frame["month"]) == ["2025-07", "2025-08"]
    assert list(frame["change_pct"].round(2)) == [10.0, -5.0]
    assert decide(run_metrics).passed  # months are only reported by default
    gated = decide(run_metrics, GateConfig(max_month_worsening=0.05))
    assert not gated.passed
    assert gated.reasons == ("Old-probe months worse than +5.00%: 2025-07 +10.00%.",)


def test_missing_losses_fail_the_step() -> None:
    broken = metrics()
    del broken["after"]["eval_old"]
    with pytest.raises(PipelineStepError, match=r"metrics.json lacks after.eval_old.loss"):
        decide(broken)
    broken = metrics()
    broken["after"]["eval_recent"]["loss"] = math.nan
    with pytest.raises(PipelineStepError, match=r"after.eval_recent.loss is nan, not a finite number"):
        decide(broken)


@pytest.mark.parametrize(("mapping", "message"), [
    ({"max_old_worsen": 0.1}, r"Unknown key gate.max_old_worsen. Did you mean max_old_worsening or max_month_worsening\?"),
    ({"zzz": 1}, r"Unknown key gate.zzz. Known keys: min_recent_improvement, max_old_worsening"),
    ({"max_old_worsening": "2%"}, r"gate.max_old_worsening must be a number >= 0 .*got '2%'"),
    ({"max_old_worsening": None}, r"gate.max_old_worsening must be a number >= 0"),
    ({"min_recent_improvement": -0.1}, r"gate.min_recent_improvement must be a number >= 0"),
])
def test_gate_config_errors(mapping, message) -> None:
    with pytest.raises(ConfigError, match=message):
        GateConfig.from_mapping(mapping)


def test_gate_config_from_mapping() -> None:
    assert GateConfig.from_mapping(None) == GateConfig()
    config = GateConfig.from_mapping({"max_old_worsening": 0.05, "max_month_worsening": None,
                                      "max_filler_rate_increase": 0.1})
    assert config == GateConfig(max_old_worsening=0.05, max_filler_rate_increase=0.1)


def test_answer_profile_uses_the_seed_definitions() -> None:
    answers = ["word " * 40, "word " * 41, "word " * 101, "Certainly, I\u2019m just fine"]
    profile = evaluation.answer_profile(answers)
    assert profile["answers"] == 4
    assert (profile["short_pct"], profile["medium_pct"], profile["long_pct"]) == (50.0, 25.0, 25.0)
    assert profile["filler_pct"] == 25.0
    assert evaluation.answer_profile([]) == {"answers": 0}


def test_style_is_gated_only_when_configured() -> None:
    report = evaluation.style(["Certainly! " + "word " * 9] * 4, ["word " * 20] * 4)
    assert report["filler_rate_increase_pp"] == 100.0
    assert report["median_length_change"] == pytest.approx(-0.5)
    assert decide(metrics(), style_report=report).passed
    decision = decide(metrics(), GateConfig(max_filler_rate_increase=0.1, max_median_length_change=0.25),
                      style_report=report)
    assert [c.name for c in decision.checks if not c.passed] == ["filler", "answer_length"]
    assert decision.reasons[1] == "Median answer length: 10 words vs the person's 20 (-50%; allowed +-25%)."
    assert evaluation.style([], ["x"]) is None


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_run(Profile(tmp_path, "tester"), 1)


def test_evaluate_run_reads_generations_and_real_answers(run: Path) -> None:
    decision = evaluation.evaluate_run(run)
    assert decision.passed
    assert decision.figures["style"]["candidate"]["median_words"] == 6
    assert decision.figures["style"]["person"]["median_words"] == 8
    table = evaluation.side_by_side(run)
    assert list(table.columns) == ["prompt", "reference", "before", "after"] and len(table) == 3
    assert evaluation.real_answers(run) == ["I went hiking and it was great fun"] * 3
    assert list(evaluation.train_log(run)["step"]) == [1, 2, 3, 4, 5, 6]
    assert list(evaluation.before_after_table(metrics())["set"]) == ["eval_recent", "eval_old", "train_sample"]


def test_conclude_records_in_the_manifest_and_rejection_is_a_normal_outcome(run: Path) -> None:
    rejected = decide(metrics(recent=(2.0, 2.1)))
    summary = evaluation.conclude(run, rejected, now=T0)
    assert summary.startswith("Gate rejected the candidate: recent loss +5.0%, old probe ")
    assert "Recent loss did not improve" in summary and summary.endswith("The current version stays in use.")
    section = orjson.loads((run / "manifest.json").read_bytes())["evaluation"]
    assert section["passed"] is False and section["decided_at"] == "2026-01-01T12:00:00Z"
    assert section["checks"][0]["name"] == "learning"
    with pytest.raises(PipelineStepError, match=r"Gate rejected the candidate: .*Recent loss did not improve"):
        evaluation.conclude(run, rejected, now=T0, fail_on_reject=True)
    passed = evaluation.conclude("", decide(metrics()), now=T0)
    assert passed.startswith("Gate passed: recent loss -") and "(limit +2%)" in passed
    assert passed.endswith("The registry step makes the candidate current.")


def test_load_metrics_errors(tmp_path: Path) -> None:
    with pytest.raises(PipelineStepError, match=r"No .*metrics.json: the trainer did not finish"):
        evaluation.load_metrics(tmp_path)
    (tmp_path / "metrics.json").write_text("{")
    with pytest.raises(PipelineStepError, match=r"metrics.json is not valid JSON"):
        evaluation.load_metrics(tmp_path)


def test_resolve_run_dir_picks_the_newest_run(tmp_path: Path) -> None:
    profile = Profile(tmp_path, "tester")
    assert evaluation.resolve_run_dir(profile) is None
    make_run(profile, 1)
    newest = make_run(profile, 2)
    assert evaluation.resolve_run_dir(profile) == newest
    assert evaluation.resolve_run_dir(profile, "/x") == Path("/x")


def test_exploring_a_profile_without_runs_shows_empty_views() -> None:
    assert evaluation.load_metrics(None) == {}
    assert evaluation.before_after_table({}).empty and evaluation.forgetting_by_month({}).empty
    assert evaluation.train_log(None).empty and evaluation.side_by_side(None).empty
    assert evaluation.evaluate_run(None) is None and evaluation.decision_table(None).empty
    assert evaluation.conclude("", None, now=T0) == (
        "Nothing to evaluate yet: this profile has no run with a metrics.json.")


def test_a_toy_models_answers_say_so(run: Path) -> None:
    (run / "effective_config.json").write_text('{"total_parameters": 84000}')
    shown = evaluation.side_by_side(run)
    assert "The model is a toy (84,000 parameters" in shown.to_html()
    (run / "effective_config.json").write_text('{"total_parameters": 8000000000}')
    assert isinstance(evaluation.side_by_side(run), pd.DataFrame)
