"""``--smoke-test``: a dataset below the sample-count gate still trains, labelled as a test that never
becomes current (the seed: a small dataset may train as a smoke test that is not used seriously)."""

from __future__ import annotations

import orjson
import pytest
import yaml

from metahuman_lib import registry
from metahuman_lib.demo import write_demo_profile
from metahuman_lib.errors import RegistryError
from metahuman_lib.parameters import CycleFlags, resolve_parameters
from metahuman_lib.pipeline import demo_times, ensure_demo_model, run_cycle, write_demo_parameters
from metahuman_lib.runfolder import read_manifest

pytestmark = pytest.mark.slow


def test_a_small_dataset_trains_as_a_smoke_test_that_never_becomes_current(tmp_path):
    profile = write_demo_profile(tmp_path / "root", "demo", memories=300, months=3)
    sets = write_demo_parameters(profile, ensure_demo_model(profile), {"max_steps": 2, "epochs": 1.0})
    document = yaml.safe_load(sets["foundation"].read_text())
    document["quality"] = {"min_total_foundation": 3000}  # the seed's gate: 300 memories are too few
    sets["foundation"].write_text(yaml.safe_dump(document))
    when, _later = demo_times(profile)

    # without --smoke-test the quality gate refuses this profile (tests/test_pipeline.py covers that path)
    flags = CycleFlags(params=str(sets["foundation"]), now=when, smoke_test=True)
    result = run_cycle(profile, resolve_parameters(flags), backend="local", now=when, progress=False)
    assert result.status == "succeeded" and (result.run_dir / "output").is_dir()
    (version,) = registry.profile_state(profile)["versions"]
    assert version["status"] == "smoke_test" and registry.profile_state(profile)["aliases"]["current"] is None
    mirror = orjson.loads(profile.registry_path.read_bytes())
    assert mirror["training_history"][0]["training_success"] is False
    assert mirror["current_base_model"] == mirror["original_base_model"]
    assert read_manifest(result.run_dir)["registry"]["promoted"] is False
    assert "smoke test" in (result.run_dir / "report.html").read_text()
    with pytest.raises(RegistryError, match="is a smoke test"):
        registry.promote(profile, version["version"], now=when, force=True)
