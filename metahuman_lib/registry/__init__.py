"""The model registry ``etc/model-registry.json``: versions, aliases, lineage, backups, run lock.

MetaHuman OS reads this file (spec section 4): ``original_base_model``, ``current_base_model``,
``model_type``, ``training_history`` and ``versioning`` stay at the top level, in its format.
Everything the workbench adds lives beside them under ``workbench``::

    {"original_base_model": ..., "current_base_model": ..., "model_type": ...,
     "training_history": [...], "versioning": {...},
     "workbench": {"schema": 1, "mirror_profile": "greggles", "mirror_digest": "<sha256>",
                   "profiles": {"greggles": {"original_base_model": ...,
                                             "aliases": {"current": 3, "previous": 2},
                                             "versions": [{...}, ...]},
                                "alice": {...}}}}

Two profiles under one root never mix lineages: each profile has its own version numbers,
aliases and original base under ``workbench.profiles.<username>``, and a run can only be
registered for the profile whose ``out/fine-tuned-models/`` folder holds it. The MetaHuman OS
fields at the top level describe exactly ONE profile, ``mirror_profile`` (the first profile that
was imported or registered; change it with :func:`set_mirror_profile`); they are regenerated from
that profile's lineage on every write. When something else (MetaHuman OS itself) changes them, the
digest no longer matches and writes are refused until ``registry import`` takes the changes in.

Every change runs in :func:`mirror._transaction`: a file lock, a timestamped backup of the previous file
under ``etc/model-registry.backups/``, and an atomic write (temporary file, fsync, rename).

The package is split by concern: :mod:`.store` (the file, its lock and backups),
:mod:`.mirror` (the fields MetaHuman OS reads, and importing its registry) and :mod:`.versions`
(versions and lineage). Everything public is available from ``metahuman_lib.registry``.
"""

from metahuman_lib.errors import ProfileError, RegistryError
from metahuman_lib.registry.mirror import (
    ImportResult,
    import_metahuman_os,
    lineage_base,
    set_mirror_profile,
    versioning,
)
from metahuman_lib.registry.store import (
    BACKUPS_KEPT,
    DEFAULT_KEEP,
    DEFAULT_VERSIONING,
    LOCK_TIMEOUT_S,
    MIRROR_KEYS,
    SCHEMA,
    STATUSES,
    backup,
    backups_dir,
    current_version,
    get_version,
    list_backups,
    load_registry,
    parse_now,
    profile_state,
    restore,
    show,
    utc_now,
)
from metahuman_lib.registry.versions import (
    ACTIONS,
    HISTORY_COLUMNS,
    PruneResult,
    RunCheck,
    apply_action,
    history,
    lineage,
    lock_holder,
    parse_version,
    promote,
    prune,
    record_failed,
    record_in_manifest,
    register,
    register_and_promote,
    reset,
    rollback,
    run_lock,
    set_evaluation,
    set_gguf_path,
    verify_run,
)

__all__ = [
    "ACTIONS",
    "BACKUPS_KEPT",
    "DEFAULT_KEEP",
    "DEFAULT_VERSIONING",
    "HISTORY_COLUMNS",
    "LOCK_TIMEOUT_S",
    "MIRROR_KEYS",
    "SCHEMA",
    "STATUSES",
    "ImportResult",
    "ProfileError",
    "PruneResult",
    "RegistryError",
    "RunCheck",
    "apply_action",
    "backup",
    "backups_dir",
    "current_version",
    "get_version",
    "history",
    "import_metahuman_os",
    "lineage",
    "lineage_base",
    "list_backups",
    "load_registry",
    "lock_holder",
    "parse_now",
    "parse_version",
    "profile_state",
    "promote",
    "prune",
    "record_failed",
    "record_in_manifest",
    "register",
    "register_and_promote",
    "reset",
    "restore",
    "rollback",
    "run_lock",
    "set_evaluation",
    "set_gguf_path",
    "set_mirror_profile",
    "show",
    "utc_now",
    "verify_run",
    "versioning",
]
