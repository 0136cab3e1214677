"""Registry writes under failure: one writer at a time across processes, kill -9 at random moments, a full disk, the audit
log, quotas, who may upload, and moderator removal. Real processes, real files, a real tmpfs for the full disk."""

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from probes_hub.cli import main
from probes_hub.config import ConfigError
from probes_hub.hub.audit import ACCEPTED, REFUSED, REMOVED, AuditEntry, AuditLog, UploadQuota
from probes_hub.hub.registry import Registry
from probes_hub.leaderboard import read_leaderboard, recover_leaderboard, regenerate
from probes_hub.lock import FolderBusy, folder_lock, lock_path, read_owner
from probes_hub.paths import PROJECT_ROOT
from space_app.upload_access import OFF, SIGN_IN, TOKEN_NEEDED, UploadAccess

SOURCE_PROBE = "tiny-llama--toy--solved--linear"
ENV = {**os.environ, "PROBES_HUB_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}


def _probe_copies(registry: Path, folder: Path, n: int, prefix: str = "copy") -> list[Path]:
    """``n`` valid probe folders with new names (copies of one toy probe; a folder's name is its probe's name)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copytree(registry / SOURCE_PROBE, folder / f"{prefix}-{i:02d}")) for i in range(n)]


def _leftovers(root: Path) -> list[str]:
    """Dot-named entries a change may leave in or beside a folder (the lock and audit files are meant to stay)."""
    names = [p.name for p in root.iterdir() if p.name.startswith(".")] + [p.name for p in root.parent.iterdir() if p.name.startswith(f".{root.name}.")]
    return [n for n in names if not n.endswith((".lock", ".audit.jsonl"))]


def test_a_held_lock_names_its_owner_and_dies_with_it(tmp_path):
    folder = tmp_path / "registry"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from probes_hub.lock import folder_lock
        with folder_lock({str(lock_path(folder))!r}, "a long upgrade"):
            print("held", flush=True)
            time.sleep(600)
        """)], cwd=PROJECT_ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(FolderBusy, match=r"registry is being changed by 'a long upgrade' \(pid \d+ .*s ago\); gave up after 0 s"):
        with folder_lock(lock_path(folder), "push", timeout=0.3):
            pass
    assert read_owner(lock_path(folder)).pid == holder.pid
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    with folder_lock(lock_path(folder), "push", timeout=5):  # a killed holder's lock is gone at once: nothing stale to break
        assert read_owner(lock_path(folder)).pid == os.getpid()
    assert time.monotonic() - started < 1


def test_eight_concurrent_pushes_and_a_regeneration_lose_nothing(registry, toy_probes, tiny, monkeypatch, tmp_path):
    """8 processes push 8 different probes at once while this process regenerates the leaderboard: all 8 land, the leaderboard
    is one manifest snapshot, and no temp folder is left."""
    monkeypatch.setattr("probes_hub.extract.models.load_model", lambda spec: tiny)  # the toy probes' in-memory model (test-only)
    before = set(Registry(registry).manifest().entries)
    copies = _probe_copies(registry, tmp_path / "uploads", 8)
    script = "import sys; from probes_hub.hub.registry import Registry; Registry(sys.argv[1]).push([sys.argv[2]], replace=False)"
    pushers = [subprocess.Popen([sys.executable, "-c", script, str(registry), str(copy)], cwd=PROJECT_ROOT, env=ENV) for copy in copies]
    table, _ = regenerate(str(registry), tmp_path / "lb", max_failed=1)
    assert [p.wait(timeout=120) for p in pushers] == [0] * 8
    after = Registry(registry).manifest(refresh=True)
    assert set(after.entries) == before | {c.name for c in copies}
    assert Registry(registry).check() == {} and not Registry(registry).load_all().problems
    rows = {row["name"] for row in read_leaderboard(tmp_path / "lb")["rows"]}
    assert before <= rows <= set(after.entries) and rows == set(table["name"])
    assert _leftovers(registry) == [] and _leftovers(tmp_path / "lb") == []


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from probes_hub.hub.registry import Registry
    from probes_hub.leaderboard import leaderboard_table, write_leaderboard
    registry, uploads, out = Registry(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    for folder in sorted(uploads.iterdir()):
        registry.push([folder], replace=False)
        print("accepted", folder.name, flush=True)
        write_leaderboard(leaderboard_table(registry, None), {"data_hashes": {}}, out)  # the recorded metrics: the real write path
    """)


def test_kill_9_at_random_moments_of_adds_and_leaderboard_writes_recovers(registry, tmp_path):
    """A real process adds probes and rewrites the leaderboard in a loop; it is SIGKILLed at 20 random moments, and after each
    the start-up recovery runs: no broken entry, every accepted add present, no temp left, the leaderboard whole."""
    rng = random.Random(0)
    out = tmp_path / "lb"
    accepted: set[str] = set()
    recovered = []
    for round_ in range(20):
        uploads = tmp_path / f"round-{round_:02d}"
        _probe_copies(registry, uploads, 6, prefix=f"r{round_:02d}")
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(registry), str(uploads), str(out)], cwd=PROJECT_ROOT, env=ENV,
                                   stdout=subprocess.PIPE, text=True)
        first = process.stdout.readline()  # once it is writing, kill it somewhere in the next adds and leaderboard writes
        accepted |= {first.split()[1]} if first.startswith("accepted") else set()
        time.sleep(rng.uniform(0.0, 0.8))
        process.send_signal(signal.SIGKILL)
        rest, _ = process.communicate()
        accepted |= {line.split()[1] for line in rest.splitlines() if line.startswith("accepted")}
        recovery = Registry(registry).recover()
        recovered += recovery.actions + recover_leaderboard(out)
        store = Registry(registry)
        assert recovery.problems == {} and store.check() == {} and not store.load_all().problems
        assert accepted <= set(store.manifest().entries)
        assert _leftovers(registry) == [] and _leftovers(out) == []
        if (out / "leaderboard.json").exists():
            assert read_leaderboard(out)["rows"]
    print(f"{len(accepted)} adds accepted over 20 kills; recovery actions: {len(recovered)}")
    assert len(accepted) >= 20


ENOSPC_SCRIPT = textwrap.dedent("""
    import os, shutil, subprocess, sys
    from pathlib import Path
    disk, registry, probe = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    shutil.copytree(registry, disk / "registry")
    before = {str(p.relative_to(disk / "registry")): p.read_bytes() for p in sorted((disk / "registry").rglob("*")) if p.is_file()}
    with open(disk / "filler", "wb") as handle:  # fill the file system, then free a little less than the probe needs
        try:
            while True:
                handle.write(b"x" * 65536)
        except OSError:
            pass
    os.truncate(disk / "filler", max(0, os.path.getsize(disk / "filler") - 8192))
    result = subprocess.run([sys.executable, "-m", "probes_hub", "push", str(probe), "--registry", str(disk / "registry")],
                            capture_output=True, text=True)
    after = {str(p.relative_to(disk / "registry")): p.read_bytes() for p in sorted((disk / "registry").rglob("*")) if p.is_file()}
    left = sorted(p.name for p in disk.iterdir() if p.name.startswith(".registry.") and not p.name.endswith(".lock"))
    print(result.returncode, repr(result.stderr), after == before, left, sep="\\n")
    """)


def test_a_full_disk_fails_with_one_line_and_changes_nothing(registry, tmp_path):
    """A push into a registry on a full tmpfs (mounted in a user namespace, no root needed) gives one error line; the registry is
    byte-identical afterwards and nothing is left beside it."""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux's unshare to mount a small tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    probe = _probe_copies(registry, tmp_path / "uploads", 1)[0]
    result = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-c", ENOSPC_SCRIPT, str(disk), str(registry), str(probe)],
                            cwd=PROJECT_ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and "mount" in result.stderr:
        pytest.skip(f"this machine does not allow a tmpfs mount in a user namespace: {result.stderr.strip()[-200:]}")
    code, stderr, unchanged, left = result.stdout.splitlines()[-4:]
    stderr = eval(stderr)  # noqa: S307 (the repr printed by our own script)
    assert code == "1" and stderr.count("\n") == 1 and "No space left on the device holding" in stderr and "nothing was changed" in stderr
    assert unchanged == "True" and left == "[]"


def test_audit_log_appends_whole_lines_and_keeps_earlier_bytes(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    first = AuditEntry("2026-12-01T10:00:00+00:00", "alice", "upload", ACCEPTED, "p1", files={"config.json": "ab"}, bytes=10)
    log.append(first)
    earlier = log.path.read_bytes()
    log.append(AuditEntry("2026-12-01T11:00:00+00:00", "", "upload", REFUSED, reason=SIGN_IN))
    assert log.path.read_bytes().startswith(earlier) and log.entries()[0] == first and log.entries()[1].outcome == REFUSED
    assert [p.name for p in tmp_path.iterdir()] == ["audit.jsonl"]


def test_quota_counts_accepted_uploads_per_utc_day_and_stored_bytes():
    quota = UploadQuota(per_day=3, stored_bytes=1000)
    now = datetime(2026, 12, 6, 15, tzinfo=UTC)
    day = [AuditEntry((now - timedelta(hours=h)).isoformat(), "bob", "upload", ACCEPTED, f"p{h}", bytes=100) for h in (1, 2)]
    quota.check("bob", day, 100, now=now)  # 2 today: a third is fine
    yesterday = AuditEntry((now - timedelta(days=1)).isoformat(), "bob", "upload", ACCEPTED, "old", bytes=100)
    refused = AuditEntry(now.isoformat(), "bob", "upload", REFUSED, bytes=100)
    quota.check("bob", [*day, yesterday, refused], 100, now=now)  # yesterday's and refused attempts do not count
    with pytest.raises(ValueError, match=r"bob has added 3 probes today \(the limit is 3 per UTC day\); try again after 2026-12-07T00:00"):
        quota.check("bob", [*day, AuditEntry(now.isoformat(), "bob", "upload", ACCEPTED, "p3", bytes=100)], 100, now=now)
    quota.check("alice", day * 2, 100, now=now)  # other users' uploads do not count
    big = [AuditEntry((now - timedelta(days=2)).isoformat(), "bob", "upload", ACCEPTED, "big", bytes=850)]
    with pytest.raises(ValueError, match="Storage quota reached: bob's probes take 0.0 MB"):
        quota.check("bob", big, 200, now=now)
    quota.check("bob", [*big, AuditEntry(now.isoformat(), "mod", "remove", REMOVED, "big")], 200, now=now)  # removed: freed


def test_upload_access_sign_in_tokens_and_off(monkeypatch):
    space = UploadAccess(on_space=True)
    assert space.identify("alice", None) == "alice"
    with pytest.raises(ValueError, match="Sign in with Hugging Face"):
        space.identify(None, None)
    with pytest.raises(ValueError, match="not among this Space's uploaders"):
        UploadAccess(on_space=True, uploaders=frozenset({"bob"})).identify("alice", None)
    with pytest.raises(ValueError, match="User name"):
        space.identify("../etc", None)  # never a path: checked like a probe folder's name
    local = UploadAccess(on_space=False, tokens=(("carol", "s3cret-token"),))
    assert local.identify(None, "s3cret-token") == "carol"
    with pytest.raises(ValueError, match="not on this server's list"):
        local.identify(None, "guess")
    with pytest.raises(ValueError, match="upload token"):
        local.identify(None, None)
    with pytest.raises(ValueError, match="Uploads are off") as off:
        UploadAccess(on_space=False).identify("alice", "anything")
    assert str(off.value) == OFF and "PROBES_HUB_UPLOAD_TOKENS" in OFF and "sign-in" in OFF and TOKEN_NEEDED != OFF
    monkeypatch.setenv("PROBES_HUB_UPLOAD_TOKENS", "dave:short")
    with pytest.raises(ConfigError, match="shorter than 8"):
        UploadAccess.configured()
    monkeypatch.setenv("PROBES_HUB_UPLOAD_TOKENS", "dave:long-enough-secret, erin:another-secret")
    monkeypatch.setenv("SYSTEM", "spaces")
    configured = UploadAccess.configured()
    assert configured.on_space and [name for name, _ in configured.tokens] == ["dave", "erin"]


def test_moderator_removal_is_logged_and_the_leaderboard_drops_the_row(registry, tiny, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("probes_hub.extract.models.load_model", lambda spec: tiny)  # the toy probes' in-memory model (test-only)
    regenerate(str(registry), tmp_path / "lb")
    assert main(["registry", "remove", SOURCE_PROBE, "--reason", "spam", "--registry", str(registry), "--by", "mod"]) == 0
    assert SOURCE_PROBE not in Registry(registry).manifest().entries and not (registry / SOURCE_PROBE).exists()
    line = AuditLog.of(Registry(registry)).entries()[-1]
    assert (line.user, line.action, line.outcome, line.name, line.reason) == ("mod", "remove", REMOVED, SOURCE_PROBE, "spam")
    table, _ = regenerate(str(registry), tmp_path / "lb")
    assert SOURCE_PROBE not in set(table["name"]) and len(table) == 5
    capsys.readouterr()
    assert main(["registry", "audit", "--registry", str(registry)]) == 0
    assert "mod" in capsys.readouterr().out
    assert main(["registry", "remove", SOURCE_PROBE, "--reason", "again", "--registry", str(registry)]) == 2  # gone: a clear error
    assert _leftovers(registry) == []


def test_recovery_rolls_back_a_half_swap_and_rebuilds_a_disagreeing_manifest(registry, capsys):
    """The states a kill can leave, made by hand: a temp folder, a temp index file, a backup whose target is gone, and a folder the
    manifest does not list; ``registry recover`` (what the app runs at start) fixes each and says so."""
    (registry / ".new-probe.building-abc123").mkdir()
    (registry / ".manifest.json.x1y2z3.tmp").write_text("{")
    (registry / SOURCE_PROBE).rename(registry / f".{SOURCE_PROBE}.old")
    shutil.copytree(registry / f".{SOURCE_PROBE}.old", registry / "orphan-probe")
    assert main(["registry", "recover", "--registry", str(registry)]) == 0
    out = capsys.readouterr().out
    assert f"restored {SOURCE_PROBE}" in out and "removed .new-probe.building-abc123" in out and "added orphan-probe" in out
    assert Registry(registry).check() == {} and {SOURCE_PROBE, "orphan-probe"} <= set(Registry(registry).manifest().entries)
    assert _leftovers(registry) == []
    assert main(["registry", "recover", "--registry", str(registry)]) == 0 and "0 recovery action(s)" in capsys.readouterr().out
