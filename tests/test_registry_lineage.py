"""Lineage as MetaHuman OS reads it (packages/core/src/model-registry.ts): what a version was trained
from, which versions are usable, the mode it was trained for, a LoRA on a full-model parent, and
the versioning flags."""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from _helpers_registry import METAHUMAN_OS_REGISTRY, T0, make_run, write_json

from metahuman_lib import ollama, registry
from metahuman_lib.errors import RegistryError
from metahuman_lib.pipeline import _registry_parent
from metahuman_lib.profile import Profile
from metahuman_lib.runfolder import update_manifest
from metahuman_lib.training.config import TrainConfig

PASSED = {"passed": True, "reasons": ["Recent loss improved."]}
FAILED = {"passed": False, "reasons": ["Old-probe loss changed 2.2 -> 2.4 (+9.09%)."]}


def now(minutes: int = 0):
    return T0 + timedelta(days=1, minutes=minutes)


@pytest.fixture
def profile(tmp_path: Path) -> Profile:
    return Profile(tmp_path / "root", "tester")


def history(profile: Profile) -> list[dict]:
    return orjson.loads(profile.registry_path.read_bytes())["training_history"]


def test_base_model_used_is_the_parent_weights_when_a_version_continues_one(profile: Profile) -> None:
    v1 = registry.register_and_promote(profile, make_run(profile, 1, evaluation=PASSED), now=now())
    registry.register_and_promote(profile, make_run(profile, 2, parent_version=1, evaluation=PASSED), now=now(1))
    first, second = history(profile)
    assert v1["promoted"] and first["base_model_used"] == "tiny/base-model"
    assert second["base_model_used"] == first["output_model_path"]
    assert orjson.loads(profile.registry_path.read_bytes())["current_base_model"] == second["output_model_path"]


def test_only_promoted_versions_are_offered_to_metahuman_os_as_usable(profile: Profile) -> None:
    registry.register_and_promote(profile, make_run(profile, 1, evaluation=PASSED), now=now())
    rejected = registry.register_and_promote(profile, make_run(profile, 2, parent_version=1, evaluation=FAILED),
                                             now=now(1))
    registry.register(profile, make_run(profile, 3, parent_version=1), now=now(2))  # no gate yet
    assert rejected["status"] == "rejected"
    assert [(e["version"], e["training_success"], e["workbench_status"]) for e in history(profile)] == [
        (1, True, "promoted"), (2, False, "rejected"), (3, False, "candidate")]
    # getLatestModel() takes the last entry with training_success: still v1
    assert [e for e in history(profile) if e["training_success"]][-1]["version"] == 1


def test_mode_filter_is_recorded_and_the_modelfile_serves_that_modes_system_prompt(profile: Profile) -> None:
    run = make_run(profile, 1, evaluation=PASSED)
    update_manifest(run, lambda m: m.__setitem__("selection", {"parameters": {"mode": "dual"}}))
    outcome = registry.register_and_promote(profile, run, now=now())
    assert registry.get_version(profile, 1)["mode_filter"] == "dual" and history(profile)[0]["mode_filter"] == "dual"
    assert outcome["promoted"]
    ollama.export_run(profile, run, ollama_base="qwen3:0.6b")
    dual = ollama.training_system_prompt("tester", "dual")
    assert dual != ollama.training_system_prompt("tester", "emulation")
    assert f'SYSTEM """{dual}"""' in (run / "Modelfile").read_text()


def test_a_lora_on_a_full_model_parent_sits_on_that_parent(profile: Profile) -> None:
    registry.register_and_promote(profile, make_run(profile, 1, method="full", evaluation=PASSED), now=now())
    v1 = registry.get_version(profile, 1)
    run2 = make_run(profile, 2, parent_version=1, method="lora", evaluation=PASSED)
    registry.register_and_promote(profile, run2, now=now(1))
    v2 = registry.get_version(profile, 2)
    assert v2["base_model"] == v1["output_path"] != "tiny/base-model"
    spec = ollama.modelfile_for_version(v2, root=profile.root, system="S")
    assert spec.from_ == str((profile.root / v1["output_path"]).resolve())
    assert spec.adapter == str((profile.root / v2["output_path"]).resolve())
    # the next run continues v2's adapter on v1's weights, by their absolute folder
    version, path, kind, _sha, base = _registry_parent(profile, TrainConfig(base_model="tiny/base-model"), False)
    assert (version, kind) == (2, "adapter")
    assert Path(base) == profile.root / v1["output_path"] and Path(path) == profile.root / v2["output_path"]
    # pruning never takes the weights a current adapter sits on
    registry.register_and_promote(profile, make_run(profile, 3, parent_version=2, evaluation=PASSED), now=now(2))
    assert registry.get_version(profile, 3)["base_model"] == v1["output_path"]
    kept = registry.prune(profile, keep=1, now=now(3), dry_run=True).kept
    assert kept[1] == "base_of_current"


def test_a_lora_on_an_imported_metahuman_os_full_model_sits_on_it(profile: Profile) -> None:
    entry = METAHUMAN_OS_REGISTRY["training_history"][0]
    output = profile.root / entry["output_model_path"]
    output.mkdir(parents=True)
    (output / "model.safetensors").write_bytes(b"x")
    write_json(profile.registry_path, METAHUMAN_OS_REGISTRY)
    registry.import_metahuman_os(Profile(profile.root, "greggles"), now=now())
    imported = Profile(profile.root, "greggles")
    parent = registry.get_version(imported, 1)
    assert registry.lineage_base(parent, "lora") == entry["output_model_path"]


def set_versioning(profile: Profile, **flags) -> None:
    data = orjson.loads(profile.registry_path.read_bytes())
    data["versioning"] = {**data["versioning"], **flags}
    profile.registry_path.write_bytes(orjson.dumps(data))


def test_auto_update_base_false_leaves_a_passing_version_a_candidate(profile: Profile) -> None:
    registry.register_and_promote(profile, make_run(profile, 1, evaluation=PASSED), now=now())
    set_versioning(profile, auto_update_base=False)
    registry.import_metahuman_os(profile, now=now(1))  # take the hand edit in, as a user would
    outcome = registry.register_and_promote(profile, make_run(profile, 2, parent_version=1, evaluation=PASSED),
                                            now=now(2))
    assert outcome["status"] == "candidate" and not outcome["promoted"]
    assert "auto_update_base is false" in outcome["notes"][0] and "registry promote v2" in outcome["notes"][0]
    assert registry.profile_state(profile)["aliases"]["current"] == 1


def test_keep_all_versions_false_prunes_older_weights_after_a_promotion(profile: Profile) -> None:
    for index in (1, 2, 3):
        parent = index - 1 or None
        registry.register_and_promote(profile, make_run(profile, index, parent_version=parent, evaluation=PASSED),
                                      now=now(index))
    set_versioning(profile, keep_all_versions=False)
    registry.import_metahuman_os(profile, now=now(4))
    outcome = registry.register_and_promote(profile, make_run(profile, 4, parent_version=3, evaluation=PASSED),
                                            now=now(5))
    assert outcome["promoted"] and "keep_all_versions is false" in outcome["notes"][0]
    pruned = [r["version"] for r in registry.profile_state(profile)["versions"] if r.get("weights_pruned_at")]
    assert pruned == [1, 2]  # v3 is previous and the parent of current


@pytest.mark.parametrize(("flags", "message"), [
    ({"enabled": False}, "versioning.enabled is false"),
    ({"auto_update_base": "yes"}, "versioning.auto_update_base .* must be true or false"),
])
def test_versioning_flags_that_cannot_be_honoured_are_refused(profile: Profile, flags, message) -> None:
    registry.register_and_promote(profile, make_run(profile, 1, evaluation=PASSED), now=now())
    set_versioning(profile, **flags)
    registry.import_metahuman_os(profile, now=now(1))
    with pytest.raises(RegistryError, match=message):
        registry.register_and_promote(profile, make_run(profile, 2, parent_version=1, evaluation=PASSED),
                                      now=now(2))


def test_prune_never_deletes_weights_outside_the_profiles_fine_tuned_models(tmp_path: Path) -> None:
    """An imported MetaHuman OS version whose weights lie elsewhere keeps them, however old."""
    greggles = Profile(tmp_path / "root", "greggles")
    outside = "profiles/greggles/out/models/2025-12-03/model"
    entry = {**METAHUMAN_OS_REGISTRY["training_history"][0], "output_model_path": outside}
    weights = greggles.root / outside
    weights.mkdir(parents=True)
    (weights / "model.safetensors").write_bytes(b"weights")
    write_json(greggles.registry_path, {**METAHUMAN_OS_REGISTRY, "current_base_model": outside,
                                        "training_history": [entry]})
    registry.import_metahuman_os(greggles, now=now())
    for index in (2, 3, 4):
        registry.register_and_promote(greggles, make_run(greggles, index, parent_version=index - 1, method="full",
                                                         evaluation=PASSED), now=now(index))
    result = registry.prune(greggles, keep=1, now=now(9))
    assert result.removed == (2,)
    assert result.kept[1] == "outside_profile_folder"
    assert (weights / "model.safetensors").read_bytes() == b"weights"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to run the command as another user (CI and this machine run as root)")
def test_a_read_only_registry_is_one_line_not_a_traceback() -> None:
    """The registry's folder belongs to another user: the command, run as 'nobody', cannot write it."""
    import subprocess
    import sys
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="ro-registry-"))
    try:
        folder.chmod(0o755)
        profile = Profile(folder / "root", "tester")
        registry.register_and_promote(profile, make_run(profile, 1, evaluation=PASSED), now=now())
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                               "metahuman_lib", "registry", "reset", "--username", "tester", "--root",
                               str(profile.root)], check=False, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "HOME": str(folder)})
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"error: Cannot write {profile.registry_path}: Permission denied; ")
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)
