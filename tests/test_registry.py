"""The model registry: every operation, MetaHuman OS compatibility, lineages, locks, atomicity."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from _helpers_registry import METAHUMAN_OS_REGISTRY, T0, make_run, metrics, write_json

from metahuman_lib import registry
from metahuman_lib.errors import RegistryError
from metahuman_lib.profile import Profile

PASSED = {"passed": True, "reasons": ["Recent loss improved."], "figures": {"recent_loss_before": 2.3}}
FAILED = {"passed": False, "reasons": ["Old-probe loss changed 2.2 -> 2.4 (+9.09%)."], "figures": {}}
MIRROR_ENTRY_KEYS = ["version", "run_id", "run_label", "timestamp", "base_model_used", "output_model_path",
                     "samples_trained", "mode_filter", "training_success", "workbench_status"]


def now(minutes: int = 0):
    return T0 + timedelta(days=1, minutes=minutes)


@pytest.fixture
def profile(tmp_path: Path) -> Profile:
    return Profile(tmp_path / "root", "tester")


def registered(profile: Profile, count: int, *, evaluation=PASSED, promote: bool = True) -> list[dict]:
    """Register ``count`` chained runs, each promoted in turn (v1 foundation, v2 from v1, ...)."""
    records = []
    for index in range(1, count + 1):
        parent = records[-1]["version"] if records and promote else None
        run = make_run(profile, index, parent_version=parent, evaluation=evaluation)
        records.append(registry.register(profile, run, now=now(index)))
        if promote:
            registry.promote(profile, records[-1]["version"], now=now(index))
    return records


def raw(profile: Profile) -> dict:
    return orjson.loads(profile.registry_path.read_bytes())


# ---------------------------------------------------------------------------------- register


def test_register_records_our_fields_and_metahuman_os_fields(profile: Profile) -> None:
    run = make_run(profile, 1)
    record = registry.register(profile, run, now=now())
    assert record["version"] == 1 and record["status"] == "candidate"
    assert record["parent_version"] is None
    assert record["run_label"] == run.name
    assert record["run_dir"] == run.relative_to(profile.root).as_posix()
    assert record["base_model"] == "tiny/base-model" and record["base_model_sha256"] == "ab" * 32
    assert record["method"] == "lora" and record["output_kind"] == "adapter"
    assert record["samples"] == {"train": 5, "eval_recent": 3, "eval_old": 2}
    assert len(record["dataset_sha256"]) == 64 and len(record["output_sha256"]) == 64
    data = raw(profile)
    assert data["original_base_model"] == "tiny/base-model"
    assert data["current_base_model"] == "tiny/base-model"  # a candidate is not current yet
    assert data["model_type"] == "huggingface"
    assert data["versioning"] == registry.DEFAULT_VERSIONING
    entry = data["training_history"][0]
    assert list(entry) == MIRROR_ENTRY_KEYS  # no gguf_path: none was written (defect 9)
    assert entry["output_model_path"] == record["output_path"] and entry["samples_trained"] == 5
    assert data["workbench"]["mirror_profile"] == "tester"


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda run: (run / "status.json").write_text('{"state": "failed"}'), "run_not_succeeded"),
    (lambda run: (run / "status.json").unlink(), "status_missing"),
    (lambda run: (run / "metrics.json").write_text("{}"), "metrics_missing"),
    (lambda run: shutil.rmtree(run / "output"), "output_missing"),
    (lambda run: (run / "output/adapter/adapter_config.json").unlink(), "output_incomplete"),
    (lambda run: (run / "output/adapter/adapter_model.safetensors").write_bytes(
        (run / "output/adapter/adapter_model.safetensors").read_bytes()[:-4]), "output_truncated"),
    (lambda run: (run / "dataset.jsonl").write_text("changed\n"), "checksum_mismatch"),
    (lambda run: (run / "eval_old.jsonl").unlink(), "checksum_file_missing"),
])
def test_register_refuses_incomplete_or_unverified_runs(profile: Profile, damage, reason: str) -> None:
    run = make_run(profile, 1)
    damage(run)
    with pytest.raises(RegistryError, match=rf"is not complete and verified, not registering it: .*{reason}"):
        registry.register(profile, run, now=now())
    assert not profile.registry_path.exists()


def test_register_refuses_duplicates_foreign_runs_and_unknown_parents(profile: Profile) -> None:
    run = make_run(profile, 1)
    registry.register(profile, run, now=now())
    with pytest.raises(RegistryError, match=r"already registered for 'tester' as v1"):
        registry.register(profile, run, now=now())
    other = Profile(profile.root, "someone")
    with pytest.raises(RegistryError, match=r"does not belong to profile 'someone'"):
        registry.register(other, run, now=now())
    orphan = make_run(profile, 2, parent_version=7)
    with pytest.raises(RegistryError, match=r"has no version 7 \(known: v1\)"):
        registry.register(profile, orphan, now=now())


def test_register_refuses_a_run_that_did_not_build_on_its_parent(profile: Profile) -> None:
    """MetaHuman OS defect 8: "builds on the previous model" silently did not happen."""
    first = registry.register(profile, make_run(profile, 1), now=now())
    skipped = make_run(profile, 2, parent_version=1, loaded_parent=None)
    with pytest.raises(RegistryError, match=r"declares parent v1 but the trainer loaded nothing .*did not build"):
        registry.register(profile, skipped, now=now())
    changed = make_run(profile, 3, parent_version=1,
                       loaded_parent={"version": 1, "kind": "adapter", "tree_sha256": "0" * 64})
    with pytest.raises(RegistryError, match=r"the parent weights it loaded \(sha256 000000000000…\) are not"):
        registry.register(profile, changed, now=now())
    good = make_run(profile, 4, parent_version=1,
                    loaded_parent={"version": 1, "kind": "adapter", "tree_sha256": first["output_sha256"]})
    record = registry.register(profile, good, now=now())
    assert record["parent_version"] == 1 and record["loaded"]["built_on"]["version"] == 1


def test_register_records_a_rejected_gate_from_the_manifest(profile: Profile) -> None:
    record = registry.register(profile, make_run(profile, 1, evaluation=FAILED), now=now())
    assert record["status"] == "rejected"
    assert record["events"][-1]["reasons"] == FAILED["reasons"]


def test_record_failed_and_set_evaluation(profile: Profile) -> None:
    registry.register(profile, make_run(profile, 1), now=now())
    failed = registry.record_failed(profile, "2026-01-01-150000-00000f", "download failed", now=now())
    assert failed["version"] == 2 and failed["status"] == "failed"
    assert raw(profile)["training_history"][1]["training_success"] is False
    with pytest.raises(RegistryError, match=r"v2 of 'tester' is a failed run"):
        registry.promote(profile, 2, now=now(), force=True)
    assert registry.set_evaluation(profile, 1, FAILED, now=now())["status"] == "rejected"


# ---------------------------------------------------------------------------------- promote/rollback/reset


def test_promote_needs_a_passed_gate_unless_forced(profile: Profile) -> None:
    registry.register(profile, make_run(profile, 1), now=now())
    with pytest.raises(RegistryError, match=r"Not promoting v1 of 'tester': it has no gate decision yet"):
        registry.promote(profile, 1, now=now())
    registry.register(profile, make_run(profile, 2, evaluation=FAILED), now=now())
    with pytest.raises(RegistryError, match=r"its gate failed: Old-probe loss changed"):
        registry.promote(profile, 2, now=now())
    record = registry.promote(profile, 1, now=now(), force=True)
    assert record["status"] == "promoted" and record["events"][-1]["forced"] is True
    data = raw(profile)
    assert data["current_base_model"] == record["output_path"] and data["model_type"] == "local"


def test_promote_moves_current_and_previous_and_lineage_follows_parents(profile: Profile) -> None:
    records = registered(profile, 3)
    assert registry.show(profile)["current_version"] == 3
    assert registry.show(profile)["previous_version"] == 2
    chain = registry.lineage(profile)
    assert [link["version"] for link in chain] == [3, 2, 1, None]
    assert chain[-1]["model"] == "tiny/base-model"
    assert raw(profile)["current_base_model"] == records[2]["output_path"]
    frame = registry.history(profile)
    assert list(frame["version"]) == [1, 2, 3]
    assert list(frame["aliases"]) == ["", "previous", "current"]
    assert str(frame["parent_version"].dtype) == "Int64" and frame["parent_version"].tolist()[1:] == [1, 2]
    assert frame["weights_present"].all()


def test_rollback_defaults_to_previous_and_refuses_unpromoted(profile: Profile) -> None:
    registered(profile, 2)
    assert registry.rollback(profile, now=now())["version"] == 1
    assert registry.show(profile)["current_version"] == 1 and registry.show(profile)["previous_version"] == 2
    registry.register(profile, make_run(profile, 3, evaluation=FAILED), now=now())
    with pytest.raises(RegistryError, match=r"v3 of 'tester' was never promoted \(status rejected\)"):
        registry.rollback(profile, 3, now=now())
    with pytest.raises(RegistryError, match=r"has no version 9 \(known: v1, v2, v3\)"):
        registry.rollback(profile, 9, now=now())


def test_reset_returns_to_the_original_base_and_keeps_history(profile: Profile) -> None:
    registered(profile, 2)
    summary = registry.reset(profile, now=now())
    assert summary["current_version"] is None and summary["previous_version"] == 2
    data = raw(profile)
    assert data["current_base_model"] == data["original_base_model"] == "tiny/base-model"
    assert len(data["training_history"]) == 2
    assert registry.lineage(profile) == [{"version": None, "status": "original", "run_label": None,
                                          "model": "tiny/base-model", "parent_version": None}]


# ---------------------------------------------------------------------------------- prune


def test_prune_keeps_last_n_current_and_its_parent(profile: Profile) -> None:
    records = registered(profile, 6)
    merged = profile.root / records[2]["output_path"] / ".." / "merged"
    merged.mkdir()
    (merged / "model.safetensors").write_bytes(b"x" * 10)
    registry.rollback(profile, 2, now=now())  # current v2 (parent v1), previous v6
    preview = registry.prune(profile, keep=2, now=now(), dry_run=True)
    assert preview.removed == (3, 4) and preview.dry_run
    assert all((profile.root / r["output_path"]).exists() for r in records)
    result = registry.prune(profile, keep=2, now=now())
    assert result.removed == (3, 4)
    assert result.kept == {1: "parent_of_current", 2: "current", 5: "last_2", 6: "previous"}
    assert result.freed_bytes > 0
    assert not (profile.root / records[2]["output_path"]).exists() and not merged.exists()
    frame = registry.history(profile)
    assert list(frame["weights_present"]) == [True, True, False, False, True, True]
    assert len(frame) == 6  # records are never lost
    with pytest.raises(RegistryError, match=r"v3 of 'tester' has no weights on disk .*pruned"):
        registry.rollback(profile, 3, now=now())


def test_prune_default_keeps_three(profile: Profile) -> None:
    registered(profile, 5)
    assert registry.prune(profile, now=now()).removed == (1, 2)


def test_prune_rejects_keep_below_one(profile: Profile) -> None:
    with pytest.raises(RegistryError, match=r"keep must be at least 1, got 0"):
        registry.prune(profile, keep=0, now=now())


# ---------------------------------------------------------------------------------- two profiles


def test_two_profiles_never_mix_lineages(tmp_path: Path) -> None:
    alice, bob = Profile(tmp_path, "alice"), Profile(tmp_path, "bob")
    registered(alice, 2)
    before = {key: raw(alice)[key] for key in registry.MIRROR_KEYS}
    registered(bob, 1)
    data = raw(alice)
    assert {key: data[key] for key in registry.MIRROR_KEYS} == before  # MetaHuman OS sees alice only
    assert registry.show(bob)["current_version"] == 1 and registry.show(alice)["current_version"] == 2
    assert "/bob/" in registry.current_version(bob)["output_path"]
    with pytest.raises(RegistryError, match=r"Profile 'bob' has no version 2"):
        registry.promote(bob, 2, now=now())
    registry.set_mirror_profile(bob, now=now())
    data = raw(alice)
    assert data["current_base_model"] == registry.current_version(bob)["output_path"]
    assert len(data["training_history"]) == 1


# ---------------------------------------------------------------------------------- corruption and backups


def test_each_change_writes_a_timestamped_backup(profile: Profile) -> None:
    registered(profile, 2)  # 4 writes; the first had no previous file
    backups = registry.list_backups(profile.registry_path)
    assert len(backups) == 3
    assert backups[0].parent == profile.root / "etc" / "model-registry.backups"
    assert orjson.loads(backups[-1].read_bytes())["workbench"]["profiles"]["tester"]["versions"][-1]["status"] \
        == "candidate"


def test_corrupt_registry_is_refused_naming_the_newest_backup_and_restore_fixes_it(profile: Profile) -> None:
    registered(profile, 1)
    newest = registry.list_backups(profile.registry_path)[-1]
    profile.registry_path.write_text('{"training_history": [')
    with pytest.raises(RegistryError, match=rf"is corrupt \(not valid JSON.*The newest backup is {newest}"):
        registry.show(profile)
    with pytest.raises(RegistryError, match=r"is corrupt"):
        registry.register(profile, make_run(profile, 2), now=now())
    registry.restore(profile.registry_path, now=now(5))
    assert registry.show(profile)["versions"] == 1
    corrupt_copy = registry.list_backups(profile.registry_path)[-1]
    assert corrupt_copy.read_text() == '{"training_history": ['  # the restore can be undone


@pytest.mark.parametrize(("content", "reason"), [
    ("[]", "top level is list, not an object"),
    ('{"training_history": {}}', "training_history is not a list"),
    ('{"workbench": {"profiles": {"a": {"versions": [{"version": 1, "status": "odd"}]}}}}',
     r"workbench.profiles.a v1 has status 'odd'"),
])
def test_structurally_broken_registry_is_refused(profile: Profile, content: str, reason: str) -> None:
    profile.registry_path.parent.mkdir(parents=True)
    profile.registry_path.write_text(content)
    with pytest.raises(RegistryError, match=rf"is corrupt \({reason}\)\. No backup exists"):
        registry.show(profile)


def test_backup_and_restore_a_named_backup(profile: Profile) -> None:
    with pytest.raises(RegistryError, match=r"Nothing to back up"):
        registry.backup(profile.registry_path, now=now())
    registered(profile, 1)
    saved = registry.backup(profile.registry_path, now=now(30))
    assert saved.name == "model-registry.20260102T123000000000Z-000.json"
    registry.reset(profile, now=now(31))
    registry.restore(profile.registry_path, saved, now=now(32))
    assert registry.show(profile)["current_version"] == 1
    with pytest.raises(RegistryError, match=r"Backup .*missing.json does not exist"):
        registry.restore(profile.registry_path, saved.with_name("missing.json"), now=now())


# ---------------------------------------------------------------------------------- MetaHuman OS import


def metahuman_root(tmp_path: Path) -> Profile:
    profile = Profile(tmp_path, "greggles")
    write_json(profile.registry_path, METAHUMAN_OS_REGISTRY)
    model = profile.root / METAHUMAN_OS_REGISTRY["current_base_model"]
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    return profile


def test_import_the_spec_example(tmp_path: Path) -> None:
    profile = metahuman_root(tmp_path)
    with pytest.raises(RegistryError, match=r"has not imported yet; .*metahuman registry import --username USER"):
        registry.register(profile, make_run(profile, 1), now=now())
    result = registry.import_metahuman_os(profile, now=now())
    assert result.added == (1,) and result.current_version == 1
    assert result.notes == ((f"v1: gguf_path {METAHUMAN_OS_REGISTRY['training_history'][0]['gguf_path']} "
                            "was never written; dropped"),)
    data = raw(profile)
    assert data["current_base_model"] == METAHUMAN_OS_REGISTRY["current_base_model"]
    assert data["original_base_model"] == "Qwen/Qwen3-14B" and data["model_type"] == "local"
    expected = dict(METAHUMAN_OS_REGISTRY["training_history"][0])
    expected.pop("gguf_path")
    assert data["training_history"] == [expected]
    assert data["versioning"] == METAHUMAN_OS_REGISTRY["versioning"]
    record = registry.get_version(profile, 1)
    assert record["status"] == "promoted" and record["imported"] is True
    # a monthly run builds on v1 and is registered as v2 with v1 as parent
    run = make_run(profile, 2, parent_version=1, evaluation=PASSED)
    assert registry.register(profile, run, now=now())["version"] == 2
    registry.promote(profile, 2, now=now())
    assert [link["version"] for link in registry.lineage(profile)] == [2, 1, None]


def test_reimport_takes_in_runs_metahuman_os_added_and_drift_is_refused(tmp_path: Path) -> None:
    profile = metahuman_root(tmp_path)
    registry.import_metahuman_os(profile, now=now())
    data = raw(profile)
    output = "profiles/greggles/out/fine-tuned-models/2026-01-05/2026-01-05-100000-aaaaaa/model"
    data["training_history"].append({"version": 2, "run_id": "x", "run_label": "2026-01-05-100000-aaaaaa",
                                     "timestamp": "2026-01-05T10:00:00.000Z",
                                     "base_model_used": METAHUMAN_OS_REGISTRY["current_base_model"],
                                     "output_model_path": output, "samples_trained": 10,
                                     "mode_filter": None, "training_success": True})
    data["current_base_model"] = output
    write_json(profile.registry_path, data)
    with pytest.raises(RegistryError, match=r"were changed outside the workbench .*registry import --username greggles"):
        registry.reset(profile, now=now())
    result = registry.import_metahuman_os(profile, now=now())
    assert result.added == (2,) and result.already_known == (1,) and result.current_version == 2
    assert registry.get_version(profile, 2)["parent_version"] == 1
    registry.reset(profile, now=now())  # no drift any more


def test_import_refuses_another_profiles_mirror(tmp_path: Path) -> None:
    profile = metahuman_root(tmp_path)
    registry.import_metahuman_os(profile, now=now())
    with pytest.raises(RegistryError, match=r"belong to profile 'greggles'; importing them into 'alice'"):
        registry.import_metahuman_os(Profile(tmp_path, "alice"), now=now())


def test_import_a_separate_file_into_a_second_profile(tmp_path: Path) -> None:
    greggles = metahuman_root(tmp_path)
    registry.import_metahuman_os(greggles, now=now())
    mirrored = {key: raw(greggles)[key] for key in registry.MIRROR_KEYS}
    other = tmp_path / "alice-registry.json"
    entry = {**METAHUMAN_OS_REGISTRY["training_history"][0], "run_label": "2025-12-09-000000-cccccc",
             "output_model_path": "profiles/alice/out/m", "gguf_path": None}
    write_json(other, {**METAHUMAN_OS_REGISTRY, "current_base_model": "profiles/alice/out/m",
                       "training_history": [entry]})
    alice = Profile(tmp_path, "alice")
    result = registry.import_metahuman_os(alice, other, now=now())
    assert result.added == (1,) and result.current_version == 1
    assert registry.current_version(alice)["output_path"] == "profiles/alice/out/m"
    assert {key: raw(greggles)[key] for key in registry.MIRROR_KEYS} == mirrored  # greggles' fields untouched


# ---------------------------------------------------------------------------------- CLI


def test_cli_commands(profile: Profile, capsys: pytest.CaptureFixture[str]) -> None:
    from metahuman_lib.cli import main

    base = ["--username", "tester", "--root", str(profile.root)]
    run1, run2 = make_run(profile, 1, evaluation=PASSED), make_run(profile, 2, parent_version=1, evaluation=PASSED)
    assert main(["registry", "register", str(run1), *base]) == 0
    assert main(["registry", "promote", "v1", *base]) == 0
    assert main(["registry", "register", str(run2), *base]) == 0
    assert main(["registry", "promote", "2", *base]) == 0
    assert main(["registry", "lineage", *base]) == 0
    assert main(["registry", "history", *base]) == 0
    assert main(["registry", "rollback", *base]) == 0
    assert main(["registry", "prune", "--keep", "1", "--dry-run", *base]) == 0
    assert main(["registry", "reset", *base]) == 0
    assert main(["registry", "show", *base]) == 0
    assert main(["registry", "backup", "--root", str(profile.root)]) == 0
    out = capsys.readouterr().out
    assert f"registered {run1.name} as v1 (candidate)" in out
    assert "v2 is now current" in out and "rolled back: v1 is now current" in out
    assert "       v2  promoted" in out and "original  original   tiny/base-model" in out
    assert "would remove the weights of nothing" in out and "kept v2: previous" in out
    assert "reset: the next run builds on tiny/base-model" in out
    assert '"current_version": null' in out and "backup written:" in out
    assert main(["registry", "promote", "v9", *base]) == 2
    assert "error: Profile 'tester' has no version 9 (known: v1, v2)." in capsys.readouterr().err


# ---------------------------------------------------------------------------------- locks and atomicity


LOCK_HOLDER = textwrap.dedent("""
    import sys, time
    from metahuman_lib.profile import Profile
    from metahuman_lib.registry import run_lock
    with run_lock(Profile(sys.argv[1], "tester"), "2026-01-01-120000-000001"):
        print("held", flush=True)
        time.sleep(60)
""")


def test_run_lock_refuses_a_second_run_naming_the_first(profile: Profile) -> None:
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(profile.root)], stdout=subprocess.PIPE,
                              text=True, env=os.environ.copy())
    try:
        assert holder.stdout.readline().strip() == "held"
        assert registry.lock_holder(profile)["pid"] == holder.pid
        with pytest.raises(RegistryError, match=rf"Profile 'tester' is busy: run 2026-01-01-120000-000001 "
                                                rf"\(pid {holder.pid}, started 20.*\) holds .*\.run\.lock"), \
                registry.run_lock(profile, "2026-01-02-000000-000002"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert registry.lock_holder(profile) is None  # a killed holder never leaves a stale lock
    with registry.run_lock(profile, "2026-01-02-000000-000002", now=now()) as held:
        assert held["run_label"] == "2026-01-02-000000-000002"
        assert registry.lock_holder(profile)["pid"] == os.getpid()
    assert registry.lock_holder(profile) is None


REGISTER_MANY = textwrap.dedent("""
    import sys
    from datetime import datetime, timezone
    from pathlib import Path
    from metahuman_lib.profile import Profile
    from metahuman_lib import registry
    profile = Profile(sys.argv[1], "tester")
    print("ready", flush=True)
    for run in sys.argv[2:]:
        record = registry.register(profile, Path(run), now=datetime.now(timezone.utc))
        print(record["run_label"], record["version"], flush=True)
""")


def start_writer(profile: Profile, runs: list[Path]) -> subprocess.Popen:
    writer = subprocess.Popen([sys.executable, "-c", REGISTER_MANY, str(profile.root), *map(str, runs)],
                              stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert writer.stdout.readline().strip() == "ready"
    return writer


def test_two_writers_never_lose_a_version(profile: Profile) -> None:
    runs = [make_run(profile, i) for i in range(1, 13)]
    writers = [start_writer(profile, runs[k::2]) for k in range(2)]
    outputs = [w.communicate(timeout=120)[0] for w in writers]
    assert all(w.returncode == 0 for w in writers)
    state = registry.profile_state(profile)
    assert sorted(r["version"] for r in state["versions"]) == list(range(1, 13))
    assert sorted(r["run_label"] for r in state["versions"]) == sorted(r.name for r in runs)
    assert sum(len(o.splitlines()) for o in outputs) == 12


def forked_writer(profile: Profile, runs: list[Path]) -> tuple[int, int]:
    """Fork a process that registers ``runs`` one by one, reporting each written label on a pipe.

    Forking (instead of starting an interpreter) makes the writer start in milliseconds, so the
    kills land in the middle of its writes rather than during its imports.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the writer
        os.close(read_fd)
        try:
            for run in runs:
                record = registry.register(profile, run, now=now())
                os.write(write_fd, f"{record['run_label']}\n".encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    return pid, read_fd


def test_writer_killed_mid_write_never_corrupts_or_loses_a_version(profile: Profile) -> None:
    """SIGKILL a registering writer process at random moments, many times: the file always loads,
    every version the writer reported as written is still there, and numbering has no gaps."""
    runs = [make_run(profile, i, generations=False) for i in range(1, 121)]
    rng = random.Random(7)
    confirmed: set[str] = set()
    kills = 0
    while kills < 40:
        known = {v["run_label"] for v in registry.profile_state(profile)["versions"]}
        pending = [r for r in runs if r.name not in known]
        if not pending:
            break
        pid, read_fd = forked_writer(profile, pending)
        time.sleep(rng.uniform(0.0, 0.1))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        with os.fdopen(read_fd) as pipe:
            confirmed |= {line.strip() for line in pipe if line.strip()}
        kills += 1
        state = registry.profile_state(profile)  # raises if the file were partial
        labels = [v["run_label"] for v in state["versions"]]
        assert confirmed <= set(labels)
        assert sorted(v["version"] for v in state["versions"]) == list(range(1, len(labels) + 1))
    assert kills >= 10 and len(confirmed) >= 5
    registry.backup(profile.registry_path, now=now())  # a later locked write cleans what killed writers left
    assert not list(profile.registry_path.parent.glob(".model-registry.json.*.tmp"))
    assert not list(registry.backups_dir(profile.registry_path).glob(".*.tmp"))


def test_register_and_promote_is_idempotent_and_records_the_outcome(profile: Profile) -> None:
    run = make_run(profile, 1, evaluation=PASSED)
    outcome = registry.register_and_promote(profile, run, now=now())
    assert outcome == {"registered": True, "version": 1, "status": "promoted", "promoted": True,
                       "gate_passed": True, "reasons": PASSED["reasons"], "notes": []}
    assert registry.register_and_promote(profile, run, now=now()) == outcome  # a resumed step
    assert len(registry.profile_state(profile)["versions"]) == 1
    assert orjson.loads((run / "manifest.json").read_bytes())["registry"]["promoted"] is True
    rejected = registry.register_and_promote(profile, make_run(profile, 2, parent_version=1, evaluation=FAILED),
                                             now=now())
    assert (rejected["status"], rejected["promoted"], rejected["reasons"]) == ("rejected", False, FAILED["reasons"])
    assert registry.register_and_promote(profile, "", now=now())["registered"] is False


@pytest.mark.parametrize(("action", "message"), [
    ("rolback", (r"Unknown registry action 'rolback'; use one of promote, rollback, reset, prune or an empty "
                r"string. Did you mean 'rollback'\?")),
    ("promote", r"action 'promote' needs a version"),
])
def test_apply_action_errors(profile: Profile, action: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        registry.apply_action(profile, action, now=now())


def test_apply_action_runs_each_operation(profile: Profile) -> None:
    registered(profile, 4)
    assert registry.apply_action(profile, "", now=now())["current_version"] == 4
    assert registry.apply_action(profile, "rollback", now=now())["version"] == 3
    assert registry.apply_action(profile, "promote", version=4, now=now())["version"] == 4
    assert registry.apply_action(profile, "prune", keep=1, now=now()).removed == (1, 2)
    assert registry.apply_action(profile, "reset", now=now())["current_version"] is None


def test_parse_version() -> None:
    assert registry.parse_version("v3") == 3 and registry.parse_version(4) == 4
    with pytest.raises(RegistryError, match=r"Not a version: 'three'"):
        registry.parse_version("three")


def test_verify_run_accepts_a_full_model_run(profile: Profile) -> None:
    run = make_run(profile, 1, method="full", run_metrics=metrics())
    check = registry.verify_run(run)
    assert check.ok and check.output_dir == run / "output" / "model"
