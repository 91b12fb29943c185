"""``--smoke-test``: a dataset below the sample-count gate still trains, labelled as a test that never
becomes current (the seed: a small dataset may train as a smoke test that is not used seriously)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from _helpers_registry import T0, make_run

from metahuman_lib import registry
from metahuman_lib.errors import GateRefused, RegistryError
from metahuman_lib.parameters import CycleFlags, resolve_parameters
from metahuman_lib.profile import Profile
from metahuman_lib.quality import GateResult, QualityReview, finish_review, quality_metrics
from metahuman_lib.reports import write_run_report
from metahuman_lib.runfolder import update_manifest
from metahuman_lib.samples import empty_samples

NOW = datetime(2025, 12, 1, tzinfo=UTC)


def test_the_flag_reaches_the_runs_pipeline_block():
    plain = resolve_parameters(CycleFlags(), now=NOW)
    smoke = resolve_parameters(CycleFlags(smoke_test=True), now=NOW)
    assert not plain.pipeline.smoke_test and smoke.pipeline.smoke_test
    assert "--smoke-test" in smoke.flags and smoke.fingerprint() != plain.fingerprint()


def _review(*gates: GateResult) -> QualityReview:
    return QualityReview(memories=None, load_report=None, curation=None,
                         metrics=quality_metrics(empty_samples(), {}), gates=list(gates), kind="foundation",
                         new_samples=None)


def test_only_the_sample_count_gate_is_waived(tmp_path):
    small = GateResult("sample_count", "fail", "only 420 samples: a foundation run needs more than 3,000")
    review = _review(small, GateResult("filler", "pass", "ok"))
    with pytest.raises(GateRefused, match="sample_count: only 420"):
        finish_review(review, tmp_path)
    assert finish_review(review, tmp_path, smoke_test=True).startswith("Smoke test: only 420 samples")
    filler = GateResult("filler", "fail", "filler 22% >= 15%")
    with pytest.raises(GateRefused, match="filler"):
        finish_review(_review(small, filler), tmp_path, smoke_test=True)


def _smoke_run(profile: Profile, index: int, **kwargs):
    run = make_run(profile, index, evaluation={"passed": True, "reasons": []}, **kwargs)
    update_manifest(run, lambda m: m.setdefault("cycle", {}).update(
        status="succeeded", parameters={"name": "foundation", "blocks": {"pipeline": {"smoke_test": True}}}))
    return run


def test_a_smoke_test_version_is_registered_and_never_made_current(tmp_path):
    profile = Profile(tmp_path / "root", "tester")
    run = _smoke_run(profile, 1)
    outcome = registry.register_and_promote(profile, run, now=T0 + timedelta(days=1))
    assert outcome["status"] == "smoke_test" and not outcome["promoted"]
    assert "is a smoke test" in outcome["notes"][0]
    assert registry.profile_state(profile)["aliases"]["current"] is None
    mirror = orjson.loads(profile.registry_path.read_bytes())
    assert mirror["training_history"][0]["training_success"] is False
    assert mirror["training_history"][0]["workbench_status"] == "smoke_test"
    with pytest.raises(RegistryError, match="is a smoke test"):
        registry.promote(profile, 1, now=T0 + timedelta(days=2), force=True)
    assert "smoke test" in write_run_report(run).read_text()
