"""A purge archive re-chains to the checkpoints that outlive its events, and every way of
tampering with it (a value, a line deleted, moved, copied or invented, whole segments cut,
the checkpoint gone or forged) is found and named."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from apps.audit import archives, retention, sealing
from apps.audit.models import AuditSeal
from tests.audit.seals import BOTH_KEYS, KEY, KEY_ID, KEYS, LONG_AGO, NEW_KEY, NEW_KEY_ID, rotate

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seal_settings")]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@dataclass
class Purged:
    path: Path
    ids: list[int]  # of the archived events, in line order
    seals: list[AuditSeal]  # their two checkpoints

    def lines(self) -> list[bytes]:
        return self.path.read_bytes().splitlines(keepends=True)

    def rewrite(self, lines: list[bytes]) -> None:
        self.path.write_bytes(b"".join(lines))


@pytest.fixture
def purged(make_event, tmp_path) -> Purged:
    """Six old events in two segments of three (the second with an id that never committed,
    a gap), purged to an archive; a recent event and its checkpoint stay.  Values of every form
    the check rebuilds: times with and without a fraction, booleans, JSON (one beyond what
    orjson reads exactly, see ``archives.parse_line``).  The first two are of schema version 1,
    the others of version 2, the fifth (line 5) a call made while serving the fourth."""
    old = (timezone.now() - timedelta(days=400)).replace(microsecond=123456)
    made = []
    for i in range(6):
        fields: dict[str, object] = {"schema_version": 1} if i < 2 else {"trace_id": TRACE}
        if i == 4:
            fields.update(id=made[-1].id + 2, parent_event_id=made[-1].id, close_code=1000)
        changes = {"name": ["é", "ü"], "limit": 2**70, "ratio": 0.1} if i == 5 else {"name": ["é"]}
        made.append(
            make_event(request_id=f"old{i}", occurred_at=old + timedelta(microseconds=i), recorded_at=LONG_AGO,
                       completed_at=LONG_AGO.replace(microsecond=0), duration_ms=12.345678,
                       client_aborted=bool(i % 2), actor_groups=["auditor", "ops"], changes=changes if i else None,
                       source_ip="2001:db8::1", **fields)
        )  # fmt: skip
    sealing.seal(limit=3)
    sealing.seal(limit=3)
    make_event(request_id="recent", recorded_at=LONG_AGO)
    sealing.seal()
    purge = retention.purge(timezone.now() - timedelta(days=365), tmp_path / "purged")
    seals = list(AuditSeal.objects.filter(last_seq__lte=purge.through_seq).order_by("first_seq"))
    assert [s.gaps for s in seals] == [[], [made[3].id + 1]]
    assert json.loads(Path(purge.export_file).read_bytes().splitlines()[4])["parent_event_id"] == made[3].id
    return Purged(Path(purge.export_file), [e.id for e in made], seals)


def check(purged: Purged, keys: dict[str, str] = KEYS) -> archives.ArchiveReport:
    return archives.verify_archive(purged.path, keys=keys)


def problems(report: archives.ArchiveReport) -> list[tuple[str, int | None, int | None]]:
    return [(p.kind, p.seq, p.line) for p in report.problems]


def sql(statement: str, *params) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def test_a_purge_archive_verifies(purged):
    read = []
    report = archives.verify_archive(purged.path, keys=KEYS, progress=read.append)
    assert report.ok, report.problems
    assert (report.events_checked, report.segments_checked, report.lines_read) == (6, 2, 6)
    assert (report.first_seq, report.last_seq) == (purged.ids[0], purged.ids[-1])
    assert (report.signatures_checked, report.purge_checked) == (True, True)
    assert sum(read) == purged.path.stat().st_size


def test_checkpoints_are_read_a_page_at_a_time(purged, monkeypatch):
    monkeypatch.setattr(archives, "_SEAL_PAGE", 1)
    report = check(purged)
    assert report.ok, report.problems
    assert (report.events_checked, report.segments_checked) == (6, 2)


def test_a_time_is_read_as_the_sealer_wrote_it_from_any_iso_form_of_the_same_instant():
    sealed = "2026-01-02T03:04:05.000007"
    for form in ("2026-01-02T03:04:05.000007Z", "2026-01-02T03:04:05.000007+00:00", "2026-01-02T05:04:05.000007+02:00"):
        assert archives._sealed_datetime(form) == sealed
    assert archives._sealed_datetime("2026-01-02T03:04:05.000000Z") == "2026-01-02T03:04:05"  # no fraction


def _one_microsecond_later(value: str) -> str:
    return value[:20] + f"{int(value[20:26]) + 1:06d}" + value[26:]


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("path", lambda value: "/innocent"),
        ("status", lambda value: 201),
        ("occurred_at", _one_microsecond_later),  # the archive keeps, and the check reads, microseconds
        ("client_aborted", lambda value: not value),
        ("changes", lambda value: {"name": ["e", "ü"]}),  # a JSON column
        ("actor_groups", lambda value: ["auditor"]),
        ("parent_event_id", lambda value: value - 1),  # the causal chain (schema version 2) is sealed too
        ("parent_event_id", lambda value: None),
        ("trace_id", lambda value: "0" * 32),
        ("close_code", lambda value: 1011),
    ],
)
def test_a_changed_value_fails_its_segment(purged, name, change):
    """The per-event hashes are purged with the events: a changed value is found, and named by
    its segment (its first id and line), not by its own id."""
    lines = purged.lines()
    event = json.loads(lines[4])
    assert event["id"] == purged.ids[4]
    event[name] = change(event[name])
    lines[4] = json.dumps(event).encode() + b"\n"
    purged.rewrite(lines)
    report = check(purged)
    second = purged.seals[1]
    assert problems(report) == [("altered", second.first_seq, 4)]  # line 4 starts the second segment
    assert f"ids {second.first_seq}..{second.last_seq}" in report.problems[0].detail
    assert report.events_checked == 6  # every line re-chained, the first segment intact


def test_a_version_1_line_exported_before_version_2_had_its_columns_verifies(purged):
    lines = purged.lines()
    for i in (0, 1):
        event = json.loads(lines[i])
        assert event["schema_version"] == 1
        for name in ("trace_id", "parent_event_id", "close_code"):
            del event[name]
        lines[i] = json.dumps(event).encode() + b"\n"
    purged.rewrite(lines)
    report = check(purged)
    assert report.ok, report.problems


def test_a_version_2_line_without_its_columns_is_not_an_event(purged):
    lines = purged.lines()
    event = json.loads(lines[4])
    del event["parent_event_id"]
    lines[4] = json.dumps(event).encode() + b"\n"
    purged.rewrite(lines)
    assert problems(check(purged))[0] == ("invalid_line", purged.ids[4], 5)


def test_a_causal_link_written_into_a_version_1_line_fails_its_segment(purged):
    lines = purged.lines()
    lines[1] = json.dumps({**json.loads(lines[1]), "parent_event_id": purged.ids[0]}).encode() + b"\n"
    purged.rewrite(lines)
    assert problems(check(purged)) == [("altered", purged.seals[0].first_seq, 1)]


def test_a_deleted_line_is_named(purged):
    lines = purged.lines()
    del lines[1]
    purged.rewrite(lines)
    report = check(purged)
    assert problems(report) == [("deleted", purged.ids[1], 2)]
    assert report.problems[0].detail.endswith(f"id {purged.ids[1]} is not in the archive")
    assert report.first_bad_seq == purged.ids[1]


def test_swapped_lines_are_named(purged):
    lines = purged.lines()
    lines[1], lines[2] = lines[2], lines[1]
    purged.rewrite(lines)
    report = check(purged)
    assert problems(report) == [("out_of_order", purged.ids[1], 2)]
    assert "at line 3" in report.problems[0].detail


def test_a_copied_line_is_named(purged):
    lines = purged.lines()
    lines.insert(2, lines[1])
    purged.rewrite(lines)
    assert problems(check(purged)) == [("unexpected", purged.ids[1], 3)]


def test_an_event_invented_in_a_gap_is_named(purged):
    """The second segment's checkpoint records ``ids[3] + 1`` as never committed."""
    lines = purged.lines()
    invented = {**json.loads(lines[3]), "id": purged.ids[3] + 1, "request_id": "invented"}
    lines.insert(4, json.dumps(invented).encode() + b"\n")
    purged.rewrite(lines)
    assert problems(check(purged)) == [("inserted", purged.ids[3] + 1, 5)]


@pytest.mark.parametrize(
    ("cut", "first_bad"),
    [
        (slice(5, 6), 5),  # the last line: its segment is incomplete
        (slice(3, 6), 3),  # the whole last segment: the archive no longer ends where the purge did
        (slice(0, 3), 0),  # the whole first segment: it no longer starts where the purge did
    ],
)
def test_lines_cut_from_an_end_are_found(purged, cut, first_bad):
    lines = purged.lines()
    del lines[cut]
    purged.rewrite(lines)
    report = check(purged)
    assert [p.kind for p in report.problems] == ["incomplete"]
    assert report.first_bad_seq == purged.ids[first_bad]


def test_an_archive_whose_checkpoint_is_not_in_the_database_fails(purged):
    """Checked against another database, or one whose checkpoint was deleted."""
    first = purged.seals[0]
    sql("DELETE FROM audit_auditseal WHERE id = %s", first.pk)
    report = check(purged)
    assert problems(report) == [("checkpoint_missing", purged.ids[0], 1)]
    assert f"ids {purged.ids[0]}..{purged.ids[2]} (lines 1..3) are in no checkpoint" in report.problems[0].detail
    assert (report.events_checked, report.first_seq) == (3, purged.seals[1].first_seq)  # the second still checked


def test_a_line_that_is_not_json_is_named(purged):
    lines = purged.lines()
    lines[1] = b'{"id": 1, truncated\n'
    purged.rewrite(lines)
    report = check(purged)
    assert problems(report) == [("invalid_line", None, 2), ("deleted", purged.ids[1], 3)]
    assert report.first_bad_seq == purged.ids[1]
    assert report.first_bad_line == 2


def test_a_forged_checkpoint_is_found_by_its_signature(purged):
    """Someone who can write to the database rewrites an event in the archive and its
    checkpoint's head hash: the archive re-chains, but the checkpoint's signature fails."""
    lines = purged.lines()
    event = {**json.loads(lines[4]), "actor_username": "someone-else"}
    lines[4] = json.dumps(event).encode() + b"\n"
    purged.rewrite(lines)
    second = purged.seals[1]
    forged = second.prev_hash
    for line in lines[3:]:
        forged = sealing.chain(forged, archives.sealed_row(json.loads(line)))
    sql("UPDATE audit_auditseal SET head_hash = %s WHERE id = %s", forged, second.pk)
    assert check(purged, keys={}).ok  # without the key, the forgery is consistent
    assert problems(check(purged)) == [("bad_signature", second.first_seq, 4)]


@pytest.fixture
def rotated(make_event, seal_settings, tmp_path) -> tuple[Path, list[AuditSeal]]:
    """Four old events, two sealed under key 1, then, after a rotation to key 2, two under key 2;
    purged to an archive (returned with their two checkpoints)."""
    old = timezone.now() - timedelta(days=400)
    for i in range(4):
        make_event(request_id=f"old{i}", occurred_at=old, recorded_at=LONG_AGO)
    sealing.seal(limit=2)
    rotate(seal_settings)
    sealing.seal(limit=2)
    make_event(request_id="recent", recorded_at=LONG_AGO)
    sealing.seal()
    purge = retention.purge(timezone.now() - timedelta(days=365), tmp_path / "purged")
    seals = list(AuditSeal.objects.filter(last_seq__lte=purge.through_seq).order_by("first_seq"))
    assert [s.key_id for s in seals] == [KEY_ID, NEW_KEY_ID]
    return Path(purge.export_file), seals


def test_an_archive_sealed_across_a_key_rotation_verifies_with_both_keys(rotated, capsys):
    path, _ = rotated
    report = archives.verify_archive(path, keys=BOTH_KEYS)
    assert report.ok, report.problems
    assert (report.segments_checked, report.events_checked, report.signatures_checked) == (2, 4, True)
    call_command("audit_verify", "--archive", str(path), "--no-progress")  # with the ring of the settings
    assert capsys.readouterr().out.strip().endswith("archive intact")


def test_an_archived_checkpoint_whose_key_left_the_ring_is_named_with_its_key_id(rotated, seal_settings, capsys):
    path, (old, _) = rotated
    seal_settings.AUDIT_SEAL_KEYS = {NEW_KEY_ID: NEW_KEY}
    assert problems(archives.verify_archive(path, keys=seal_settings.AUDIT_SEAL_KEYS)) == [
        ("unknown_key", old.first_seq, 1)
    ]
    with pytest.raises(CommandError, match=f"first bad seq {old.first_seq}, line 1"):
        call_command("audit_verify", "--archive", str(path), "--no-progress")
    out = capsys.readouterr().out
    assert f"unknown_key at seq {old.first_seq}, line 1: segment {old.pk} is signed with key id '{KEY_ID}'" in out
    assert KEY not in out and NEW_KEY not in out


def test_an_archived_checkpoint_re_signed_with_another_key_of_the_ring_is_a_bad_signature(rotated):
    path, (old, _) = rotated
    sql("UPDATE audit_auditseal SET signature = %s WHERE id = %s",
        sealing.checkpoint_signature(sealing.checkpoint_payload(old), NEW_KEY), old.pk)  # fmt: skip
    assert problems(archives.verify_archive(path, keys=BOTH_KEYS)) == [("bad_signature", old.first_seq, 1)]


def test_the_command_checks_archives_and_exits_non_zero_on_a_bad_one(purged, tmp_path, capsys):
    call_command("audit_verify", "--archive", str(purged.path), "--no-progress")
    assert capsys.readouterr().out.strip().endswith("archive intact")
    call_command("audit_verify", "--archive", str(purged.path), "--json", "--no-progress")
    body = json.loads(capsys.readouterr().out)
    assert (body["ok"], body["archives"][0]["events_checked"]) == (True, 6)

    tampered = tmp_path / "tampered.ndjson"
    lines = purged.lines()
    del lines[2]
    tampered.write_bytes(b"".join(lines))
    with pytest.raises(CommandError, match=rf"tampered.ndjson \(first bad seq {purged.ids[2]}, line 3\)"):
        call_command("audit_verify", "--archive", str(purged.path), str(tampered), "--json", "--no-progress")
    body = json.loads(capsys.readouterr().out)
    assert [a["ok"] for a in body["archives"]] == [True, False]
    assert body["archives"][1]["problems"][0] == {
        "kind": "incomplete", "seq": purged.ids[2], "line": 3,
        "detail": f"segment {purged.seals[0].pk} (ids {purged.ids[0]}..{purged.ids[2]}) stops after line 2:"
        f" id {purged.ids[2]} should be at line 3",
    }  # fmt: skip
    with pytest.raises(CommandError, match="no such file"):
        call_command("audit_verify", "--archive", str(tmp_path / "nowhere.ndjson"), "--no-progress")
