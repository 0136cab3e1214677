"""Who changed a registry, and how much each uploader may add: the append-only audit log and the per-user quotas read from it.

The log is JSON lines, one per attempt (accepted or refused) and per moderator removal: when, who, what, the outcome,
and the sha256 of every file. It is kept beside a local registry (``.NAME.audit.jsonl``) or, for a Hub registry, in the
cache (``PROBES_HUB_AUDIT_LOG`` sets another place, such as a Space's persistent ``/data``). Each append is written
under the registry's lock as a new file with the old lines unchanged plus the new one, made visible by one rename, so
a crash or a full disk never leaves a torn line.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from probes_hub.atomic import atomic_write_bytes
from probes_hub.cache import cache_dir
from probes_hub.config import setting
from probes_hub.schema.naming import slug

ACCEPTED = "accepted"
REFUSED = "refused"
REMOVED = "removed"
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
"""User names an audit line may carry (Hugging Face user names fit): checked like a probe folder's name, never used in a path."""


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log."""

    time: str
    user: str
    action: str
    """``upload`` or ``remove``."""
    outcome: str
    """``accepted``, ``refused`` or ``removed``."""
    name: str = ""
    """The probe folder added or removed ('' for a refusal before a name was chosen)."""
    reason: str = ""
    """Why it was refused, or the moderator's reason for a removal."""
    files: dict[str, str] = field(default_factory=dict)
    """File name -> sha256 of the uploaded files."""
    bytes: int = 0

    @property
    def when(self) -> datetime:
        return datetime.fromisoformat(self.time)


def check_user_name(user: str) -> str:
    """``user`` when it is a plain name (see :data:`USER_NAME`); a ValueError saying what is accepted otherwise."""
    if not isinstance(user, str) or not USER_NAME.match(user):
        raise ValueError(f"User name {str(user)[:60]!r} is not accepted: use ASCII letters, digits and ._- (at most 96 characters).")
    return user


def file_digests(paths: list[str | Path]) -> tuple[dict[str, str], int]:
    """sha256 of each file by name, and their total size."""
    digests, total = {}, 0
    for path in map(Path, paths):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digests[path.name] = digest.hexdigest()
        total += path.stat().st_size
    return digests, total


class AuditLog:
    """The audit log of one registry; append only while holding the registry's lock (:meth:`RegistryStore.writing`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def of(cls, store) -> AuditLog:
        """The log of a :class:`~probes_hub.hub.storage.RegistryStore` (``PROBES_HUB_AUDIT_LOG`` when set)."""
        configured = setting("PROBES_HUB_AUDIT_LOG")
        if configured:
            return cls(configured)
        if store.is_local:
            root = store.root.absolute()
            return cls(root.with_name(f".{root.name}.audit.jsonl"))
        return cls(cache_dir("audit") / f"{slug(store.spec)}.jsonl")

    def append(self, entry: AuditEntry) -> None:
        """Add one line (the earlier lines byte for byte, then this one, swapped in by one rename)."""
        before = self.path.read_bytes() if self.path.exists() else b""
        if before and not before.endswith(b"\n"):
            before += b"\n"
        atomic_write_bytes(self.path, before + (json.dumps(asdict(entry), sort_keys=True) + "\n").encode("utf-8"))

    def entries(self) -> list[AuditEntry]:
        """Every readable line, oldest first (a line that does not parse is skipped: the log is evidence, not configuration)."""
        if not self.path.exists():
            return []
        entries = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(AuditEntry(**json.loads(line)))
            except (ValueError, TypeError):
                continue
        return entries


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class UploadQuota:
    """What one user may add: accepted uploads per UTC day, and bytes stored (their accepted uploads still in the registry)."""

    per_day: int
    stored_bytes: int

    @classmethod
    def configured(cls) -> UploadQuota:
        return cls(int(setting("PROBES_HUB_UPLOADS_PER_DAY")), int(setting("PROBES_HUB_UPLOAD_MB_PER_USER") * 1e6))

    def check(self, user: str, entries: list[AuditEntry], upload_bytes: int, *, now: datetime | None = None) -> None:
        """Raise a ValueError saying which limit an upload of ``upload_bytes`` by ``user`` would exceed (None when within both)."""
        now = now or datetime.now(UTC)
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        mine = [e for e in entries if e.user == user and e.action == "upload" and e.outcome == ACCEPTED]
        today = [e for e in mine if e.when >= start]
        if len(today) >= self.per_day:
            raise ValueError(f"Upload quota reached: {user} has added {len(today)} probes today (the limit is {self.per_day} per UTC day); "
                             f"try again after {(start + timedelta(days=1)).isoformat(timespec='minutes')}.")
        removed = {e.name for e in entries if e.outcome == REMOVED}
        stored = sum(e.bytes for e in mine if e.name not in removed)
        if stored + upload_bytes > self.stored_bytes:
            raise ValueError(f"Storage quota reached: {user}'s probes take {stored / 1e6:.1f} MB and this upload {upload_bytes / 1e6:.1f} MB; "
                             f"the limit is {self.stored_bytes / 1e6:.0f} MB per user. Ask a moderator to remove old ones.")
