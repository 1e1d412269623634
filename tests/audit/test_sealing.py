"""Tamper evidence: the chain, the checkpoints, and every way of tampering, each detected."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from apps.audit import sealing
from apps.audit.models import AuditEvent, AuditEventHash, AuditSeal
from tests.audit.seals import BOTH_KEYS, KEY, KEY_ID, KEYS, LONG_AGO, NEW_KEY, NEW_KEY_ID, rotate

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seal_settings")]


@pytest.fixture
def events(make_event):
    """Ten events written an hour ago, sealed in two checkpoints of five."""
    made = [make_event(request_id=f"r{i}", path=f"/p{i}", recorded_at=LONG_AGO) for i in range(10)]
    assert sealing.seal(limit=5).count == 5
    assert sealing.seal(limit=5).count == 5
    return made


def sql(statement: str, *params) -> None:
    """What an attacker with database access does, bypassing the append-only model."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def verify(**kwargs) -> sealing.Report:
    return sealing.verify(**kwargs)


def full_verify(settings) -> sealing.Report:
    return sealing.verify(keys=KEYS, checkpoint_file=settings.AUDIT_CHECKPOINT_FILE)


def test_an_untouched_trail_verifies(events, seal_settings):
    report = full_verify(seal_settings)
    assert report.ok, report.problems
    assert (report.events_checked, report.segments_checked, report.signatures_checked) == (10, 2, True)
    with open(seal_settings.AUDIT_CHECKPOINT_FILE) as handle:
        lines = [json.loads(line) for line in handle]
    assert [(c["first_seq"], c["last_seq"]) for c in lines] == [
        (events[0].id, events[4].id),
        (events[5].id, events[9].id),
    ]
    assert lines[1]["prev_hash"] == lines[0]["head_hash"]


def test_the_chain_is_the_documented_formula(events):
    first, second = (next(sealing._events(e.pk, e.pk)) for e in events[:2])
    import hashlib

    h1 = hashlib.sha256(bytes(32) + sealing.canonical_bytes(first)).hexdigest()
    h2 = hashlib.sha256(bytes.fromhex(h1) + sealing.canonical_bytes(second)).hexdigest()
    assert AuditEventHash.objects.get(seq=events[1].id).hash == h2


@pytest.mark.parametrize(
    "value",
    [0.0, -0.0, 47.688, 1e-05, 0.0001, 9.99e-05, 1e16, 1.5e300, 5e-324, float("nan"), float("inf"), -float("inf")],
)
def test_fast_canonical_bytes_equal_the_json_definition_for_floats(value):
    row = [value if i in sealing._FLOATS else None for i in range(len(sealing.SEALED_FIELDS))]
    reference = json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=sealing._plain).encode()
    assert sealing.canonical_bytes(row) == reference


def test_fast_canonical_bytes_equal_the_json_definition_for_text_and_times():
    texts = ["", "plain", 'quote" back\\slash', "\x00\x01\x1f\x7f\n\r\t\b\f", "\u2028\u2029\ufeff", "한국어 😀"]
    times = [datetime(2026, 1, 2, 3, 4, 5), datetime(2026, 1, 2, 3, 4, 5, 600)]
    for values in (texts, times, [2**63 - 1, -(2**63), None, True, False], [b"raw"]):
        others = iter(values * len(sealing.SEALED_FIELDS))
        row = [1.5 if i in sealing._FLOATS else next(others) for i in range(len(sealing.SEALED_FIELDS))]
        reference = json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=sealing._plain).encode()
        assert sealing.canonical_bytes(row) == reference


def test_sealed_datetimes_are_read_exactly_as_python_writes_them(make_event):
    """MariaDB formats the datetimes of sealed rows; it must match ``datetime.isoformat()``,
    with and without a fraction of a second, or old seals would stop verifying."""
    whole = make_event(occurred_at=LONG_AGO.replace(microsecond=0), recorded_at=LONG_AGO.replace(microsecond=7))
    row = next(sealing._events(whole.pk, whole.pk))
    stored = AuditEvent.objects.get(pk=whole.pk)
    columns = [f.attname for f in sealing.SEALED_FIELDS]
    for name in ("occurred_at", "recorded_at", "completed_at"):
        expected = getattr(stored, name).astimezone(UTC).replace(tzinfo=None).isoformat()
        assert row[columns.index(name)] == expected


def test_recent_events_wait_for_the_grace_window(make_event):
    old = make_event(recorded_at=LONG_AGO)
    make_event()  # just written: a lower id might still be committing
    checkpoint = sealing.seal()
    assert (checkpoint.first_seq, checkpoint.last_seq) == (old.id, old.id)
    assert sealing.seal() is None  # never sealed twice
    assert verify().unsealed_tail == 1


def test_a_late_committing_lower_id_is_never_skipped(make_event):
    first = make_event(recorded_at=LONG_AGO)
    late = make_event()  # lower id, still within the grace window ...
    after = make_event(recorded_at=LONG_AGO)  # ... so this older-looking one must wait too
    assert sealing.seal().last_seq == first.id
    AuditEvent.objects.filter(pk=late.pk)  # time passes:
    assert sealing.seal(now=timezone.now() + timedelta(minutes=5)).last_seq == after.id
    assert verify().ok


def test_ids_that_never_committed_are_recorded_as_gaps(make_event):
    first = make_event(recorded_at=LONG_AGO)
    after_gap = make_event(id=first.id + 3, recorded_at=LONG_AGO)
    checkpoint = sealing.seal()
    assert checkpoint.gaps == [first.id + 1, first.id + 2]
    assert checkpoint.last_seq == after_gap.id
    assert verify().ok


def test_an_edited_event_is_found(events, seal_settings):
    sql("UPDATE audit_auditevent SET status = 200, path = '/innocent' WHERE id = %s", events[3].id)
    report = full_verify(seal_settings)
    assert (report.ok, report.first_bad_seq) == (False, events[3].id)
    assert report.problems[0].kind == "altered"


def test_a_deleted_event_is_found(events, seal_settings):
    sql("DELETE FROM audit_auditevent WHERE id = %s", events[6].id)
    report = full_verify(seal_settings)
    assert report.first_bad_seq == events[6].id
    assert "deleted" in {p.kind for p in report.problems}


def test_an_event_replaced_by_a_forged_one_is_found(events, seal_settings, make_event):
    sql("DELETE FROM audit_auditevent WHERE id = %s", events[2].id)
    make_event(id=events[2].id, request_id="forged", recorded_at=LONG_AGO)
    report = full_verify(seal_settings)
    assert (report.first_bad_seq, report.problems[0].kind) == (events[2].id, "altered")


def test_an_event_in_a_recorded_gap_is_found(make_event, seal_settings):
    first = make_event(recorded_at=LONG_AGO)
    make_event(id=first.id + 2, recorded_at=LONG_AGO)
    sealing.seal()
    make_event(id=first.id + 1, recorded_at=LONG_AGO)  # inserted into the gap afterwards
    report = full_verify(seal_settings)
    assert [(p.kind, p.seq) for p in report.problems] == [("inserted", first.id + 1)]


def test_swapped_events_are_found(events, seal_settings):
    a, b = events[1], events[2]
    sql("UPDATE audit_auditevent SET path = CASE id WHEN %s THEN %s ELSE %s END WHERE id IN (%s, %s)",
        a.id, b.path, a.path, a.id, b.id)  # fmt: skip
    report = full_verify(seal_settings)
    assert report.first_bad_seq == a.id
    assert {p.seq for p in report.problems if p.kind == "altered"} >= {a.id, b.id}


def test_a_truncated_tail_is_found_only_through_the_external_checkpoints(events, seal_settings):
    last = AuditSeal.objects.order_by("-last_seq").first()
    sql("DELETE FROM audit_auditevent WHERE id >= %s", last.first_seq)
    sql("DELETE FROM audit_auditeventhash WHERE seq >= %s", last.first_seq)
    sql("DELETE FROM audit_auditseal WHERE id = %s", last.pk)
    assert verify().ok  # consistent inside the database ...
    report = full_verify(seal_settings)  # ... but not with the checkpoints outside it
    assert not report.ok
    assert report.problems[0].kind == "checkpoint_missing"
    assert report.first_bad_seq == last.first_seq


def test_a_checkpoint_sealed_while_verify_runs_is_not_taken_for_a_missing_one(events, make_event, seal_settings):
    """The sealer runs every minute: a checkpoint committed (and appended to the file) after
    verify read the database's list is in the database, not missing from it."""
    from apps.audit.sealing import Report, _verify_checkpoint_file

    listed_before = list(AuditSeal.objects.order_by("first_seq"))
    make_event(request_id="late", recorded_at=LONG_AGO)
    assert sealing.seal() is not None  # meanwhile
    report = Report()
    _verify_checkpoint_file(Path(seal_settings.AUDIT_CHECKPOINT_FILE), listed_before, report)
    assert report.ok, report.problems
    AuditSeal.objects.filter(last_seq=AuditSeal.objects.order_by("-last_seq").first().last_seq).delete()
    _verify_checkpoint_file(Path(seal_settings.AUDIT_CHECKPOINT_FILE), listed_before, report)
    assert [p.kind for p in report.problems] == ["checkpoint_missing"]  # gone for real: still found


def test_a_rewrite_with_recomputed_hashes_is_found_by_signature_and_file(events, seal_settings):
    sql("UPDATE audit_auditevent SET actor_username = 'someone-else' WHERE id = %s", events[7].id)
    # The attacker recomputes every hash and checkpoint head, but cannot sign without the key.
    previous = sealing.GENESIS
    for checkpoint in AuditSeal.objects.order_by("first_seq"):
        sql("UPDATE audit_auditseal SET prev_hash = %s WHERE id = %s", previous, checkpoint.pk)
        for row in sealing._events(checkpoint.first_seq, checkpoint.last_seq):
            previous = sealing.chain(previous, row)
            sql("UPDATE audit_auditeventhash SET hash = %s WHERE seq = %s", previous, row[sealing.ID])
        sql("UPDATE audit_auditseal SET head_hash = %s WHERE id = %s", previous, checkpoint.pk)
    assert verify().ok  # without the key and the file, the forgery is consistent
    report = full_verify(seal_settings)
    kinds = {p.kind for p in report.problems}
    assert {"bad_signature", "checkpoint_mismatch"} <= kinds
    assert report.first_bad_seq == events[5].id  # the first segment that changed


# --- key rotation ----------------------------------------------------------------------


@pytest.fixture
def rotated(make_event, seal_settings) -> list[AuditSeal]:
    """Ten events: five sealed under key 1, then, after a rotation to key 2, five under key 2."""
    for i in range(10):
        make_event(request_id=f"r{i}", recorded_at=LONG_AGO)
    sealing.seal(limit=5)
    rotate(seal_settings)
    sealing.seal(limit=5)
    return list(AuditSeal.objects.order_by("first_seq"))


def test_a_trail_sealed_before_and_after_a_key_rotation_verifies_with_both_keys(rotated, seal_settings, capsys):
    from django.core.management import call_command

    old, new = rotated
    assert (old.key_id, new.key_id) == (KEY_ID, NEW_KEY_ID)
    assert old.signature == sealing.checkpoint_signature(sealing.checkpoint_payload(old), KEY)
    assert new.signature == sealing.checkpoint_signature(sealing.checkpoint_payload(new), NEW_KEY)
    with open(seal_settings.AUDIT_CHECKPOINT_FILE) as handle:
        assert [json.loads(line)["key_id"] for line in handle] == [KEY_ID, NEW_KEY_ID]
    report = sealing.verify(keys=BOTH_KEYS, checkpoint_file=seal_settings.AUDIT_CHECKPOINT_FILE)
    assert report.ok, report.problems
    assert (report.segments_checked, report.signatures_checked) == (2, True)
    call_command("audit_verify", "--no-progress")  # with the ring of the settings
    out = capsys.readouterr().out
    assert "signatures checked" in out and "audit trail intact" in out


def test_a_checkpoint_whose_key_left_the_ring_is_named_with_its_key_id(rotated, seal_settings, capsys):
    from django.core.management import CommandError, call_command

    old, _ = rotated
    seal_settings.AUDIT_SEAL_KEYS = {NEW_KEY_ID: NEW_KEY}
    report = sealing.verify(keys=seal_settings.AUDIT_SEAL_KEYS)
    assert [(p.kind, p.seq) for p in report.problems] == [("unknown_key", old.first_seq)]
    with pytest.raises(CommandError, match=f"first bad seq: {old.first_seq}"):
        call_command("audit_verify", "--no-progress")
    out = capsys.readouterr().out
    assert f"unknown_key at seq {old.first_seq}: segment {old.pk} is signed with key id '{KEY_ID}'" in out
    assert KEY not in out and NEW_KEY not in out


def test_a_checkpoint_re_signed_with_another_key_of_the_ring_is_a_bad_signature(rotated):
    """Someone who can write to the database and knows key 2 re-signs the first checkpoint with
    it: a key of the ring, but not the one the checkpoint names."""
    old, _ = rotated
    sql("UPDATE audit_auditseal SET signature = %s WHERE id = %s",
        sealing.checkpoint_signature(sealing.checkpoint_payload(old), NEW_KEY), old.pk)  # fmt: skip
    report = sealing.verify(keys=BOTH_KEYS)
    assert [(p.kind, p.seq) for p in report.problems] == [("bad_signature", old.first_seq)]


def test_an_unsigned_checkpoint_is_a_bad_signature_once_there_are_keys(make_event, seal_settings):
    """Sealed with no key: no key id and no signature, as before keys had ids.  Without keys it
    verifies; with a ring, no key vouches for it."""
    seal_settings.AUDIT_SEAL_KEYS, seal_settings.AUDIT_SEAL_KEY_ID = {}, ""
    make_event(recorded_at=LONG_AGO)
    unsigned = sealing.seal()
    assert (unsigned.key_id, unsigned.signature) == ("", "")
    assert sealing.verify().ok
    report = sealing.verify(keys=BOTH_KEYS)
    assert [(p.kind, p.seq) for p in report.problems] == [("bad_signature", unsigned.first_seq)]


# --- schema version 2: the causal chain ------------------------------------------------

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
# The columns of migration 0001 (schema version 1), in table order, but ``actor_id``: what a
# version 1 event was sealed as, before version 2 added trace_id, parent_event_id and close_code.
V1_COLUMNS = (
    "id", "schema_version", "event_type", "occurred_at", "recorded_at", "duration_ms", "request_id",
    "actor_username", "actor_groups", "auth_method", "token_key_id", "source_ip", "peer_ip", "forwarded_chain",
    "host", "user_agent", "upstream_id", "upstream_name", "method", "path", "query", "decision", "reason", "rule_id",
    "status", "upstream_status", "error", "request_bytes", "request_sha256", "response_bytes", "response_sha256",
    "ttfb_ms", "overhead_ms", "client_aborted", "completed_at", "worker", "injected_credential", "object_type",
    "object_id", "object_repr", "changes",
)  # fmt: skip


@pytest.fixture
def calls(make_event) -> dict[str, AuditEvent]:
    """A user's request and a call made while serving it (schema version 2), sealed."""
    user = make_event(request_id="user", trace_id=TRACE, recorded_at=LONG_AGO, schema_version=2)
    made = {
        "user": user,
        "call": make_event(request_id="call", trace_id=TRACE, parent_event_id=user.pk, close_code=1000,
                           schema_version=2, recorded_at=LONG_AGO),
        "after": make_event(request_id="after", recorded_at=LONG_AGO, schema_version=2),
    }  # fmt: skip
    assert AuditEvent.objects.get(pk=made["call"].pk).schema_version == 2
    assert sealing.seal().count == 3
    return made


@pytest.mark.parametrize(
    ("column", "value"),
    [("parent_event_id", 0), ("parent_event_id", None), ("trace_id", "0" * 32), ("close_code", 1011)],
)
def test_a_changed_causal_link_of_a_sealed_event_fails_verification_at_its_seq(calls, column, value):
    from django.core.management import CommandError, call_command

    call_command("audit_verify", "--no-progress")
    sql(f"UPDATE audit_auditevent SET {column} = %s WHERE id = %s", value, calls["call"].pk)
    with pytest.raises(CommandError, match=f"first bad seq: {calls['call'].pk}"):
        call_command("audit_verify", "--no-progress")


def test_a_version_1_event_is_sealed_exactly_as_before_version_2(make_event):
    """Rows written before the new columns existed hold their empty values now: their hash,
    computed here from version 1's own column list, must not change."""
    old = make_event(schema_version=1, recorded_at=LONG_AGO, actor_groups=["ops"], changes={"name": ["a", "é"]},
                     source_ip="10.0.0.1", duration_ms=12.5)  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(V1_COLUMNS)} FROM audit_auditevent WHERE id = %s", [old.pk])
        (row,) = cursor.fetchall()
    v1_bytes = json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=lambda v: v.isoformat()).encode()
    sealing.seal()
    assert AuditEventHash.objects.get(seq=old.pk).hash == hashlib.sha256(bytes(32) + v1_bytes).hexdigest()
    assert verify().ok


def test_a_causal_link_written_into_a_sealed_version_1_event_is_found(make_event):
    old = make_event(schema_version=1, recorded_at=LONG_AGO)
    sealing.seal()
    sql("UPDATE audit_auditevent SET parent_event_id = %s WHERE id = %s", old.pk - 1, old.pk)
    report = verify()
    assert (report.ok, report.first_bad_seq, report.problems[0].kind) == (False, old.pk, "altered")


def test_the_verify_command_exits_non_zero_and_names_the_first_bad_seq(events, capsys):
    from django.core.management import CommandError, call_command

    call_command("audit_verify", "--no-progress")
    assert "audit trail intact" in capsys.readouterr().out
    sql("UPDATE audit_auditevent SET status = 599 WHERE id = %s", events[4].id)
    with pytest.raises(CommandError, match=f"first bad seq: {events[4].id}"):
        call_command("audit_verify", "--no-progress")


def test_the_seal_command_reports_what_it_sealed(make_event, capsys):
    from django.core.management import call_command

    make_event(recorded_at=LONG_AGO)
    call_command("audit_seal")
    assert capsys.readouterr().out.startswith("sealed ")
    call_command("audit_seal")
    assert capsys.readouterr().out.strip() == "nothing to seal"


def test_auditors_can_verify_through_the_api(events, client_for, make_user):
    auditor = client_for(make_user(groups=("auditor",)))
    body = auditor.get("/api/audit/verify").json()
    assert (body["ok"], body["events_checked"]) == (True, 10)
    sql("UPDATE audit_auditevent SET status = 599 WHERE id = %s", events[8].id)
    body = auditor.get("/api/audit/verify").json()
    assert (body["ok"], body["first_bad_seq"]) == (False, events[8].id)
    assert client_for(make_user()).get("/api/audit/verify").status_code == 403


def test_purging_old_segments_exports_them_and_verification_still_passes(make_event, seal_settings, tmp_path):
    from django.core.management import call_command

    old = timezone.now() - timedelta(days=400)
    for i in range(6):
        make_event(request_id=f"old{i}", occurred_at=old, recorded_at=LONG_AGO)
    sealing.seal(limit=3)
    sealing.seal(limit=3)
    recent = make_event(request_id="recent", recorded_at=LONG_AGO)
    sealing.seal()
    call_command("audit_purge", "--before", (timezone.now() - timedelta(days=365)).date().isoformat(),
                 "--export-dir", str(tmp_path / "purged"), "--no-progress")  # fmt: skip
    assert list(AuditEvent.objects.values_list("request_id", flat=True)) == ["recent"]
    exported = (tmp_path / "purged").glob("*.ndjson")
    lines = [json.loads(line) for path in exported for line in path.read_text().splitlines()]
    assert [line["request_id"] for line in lines] == [f"old{i}" for i in range(6)]
    report = full_verify(seal_settings)
    assert report.ok, report.problems
    assert (report.segments_checked, report.events_checked) == (3, 1)
    assert AuditEvent.objects.get().pk == recent.pk


def test_a_purge_archive_re_hashes_to_the_checkpoints_that_stay(make_event, tmp_path):
    """The archive is all that is left of purged events: re-chained line by line with the
    sealer's own ``chain()``, it must end in each purged segment's head hash, to the microsecond.
    (By hand, on purpose: ``archives.verify_archive`` is tested in tests/audit/test_archives.py.)"""
    from apps.audit import archives, exporting, retention

    old = (timezone.now() - timedelta(days=400)).replace(microsecond=123456)  # not a whole millisecond
    for i in range(4):
        make_event(request_id=f"old{i}", occurred_at=old + timedelta(microseconds=i), recorded_at=LONG_AGO,
                   completed_at=LONG_AGO.replace(microsecond=0), duration_ms=12.345678, client_aborted=bool(i % 2),
                   actor_groups=["auditor", "ops"], changes={"name": ["é", "ü"]} if i else None,
                   source_ip="2001:db8::1")  # fmt: skip
    sealing.seal(limit=2)
    sealing.seal(limit=2)
    make_event(request_id="recent", recorded_at=LONG_AGO)
    sealing.seal()
    # The archive is the API's NDJSON export of the same events, byte for byte.
    exported = b"".join(exporting.ndjson_lines(AuditEvent.objects.filter(request_id__startswith="old")))
    purge = retention.purge(timezone.now() - timedelta(days=365), tmp_path)
    archive = Path(purge.export_file).read_bytes()
    lines = [json.loads(line) for line in archive.split(b"\n") if line]
    assert lines[0]["occurred_at"] == old.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # 6 digits
    rows = {row[sealing.ID]: row for row in map(archives.sealed_row, lines)}
    seals = AuditSeal.objects.filter(last_seq__lte=purge.through_seq).order_by("first_seq")
    assert [s.count for s in seals] == [2, 2]
    for checkpoint in seals:  # the checkpoints outlive the events they seal
        running = checkpoint.prev_hash
        for seq in sorted(set(range(checkpoint.first_seq, checkpoint.last_seq + 1)) - set(checkpoint.gaps)):
            running = sealing.chain(running, rows.pop(seq))
        assert running == checkpoint.head_hash
    assert not rows  # nothing archived that was not sealed
    assert archive == exported


@contextmanager
def interrupted_after_one_batch(monkeypatch) -> Iterator[None]:
    """Purges in batches of one event whose deletes fail from the second batch on, until the
    block ends: a purge interrupted after it deleted some of its events."""
    from django.db import models

    from apps.audit import retention

    monkeypatch.setattr(retention, "BATCH", 1)
    real_delete, deletes = models.QuerySet.delete, []

    def failing_after_one_batch(queryset):
        if queryset.model is AuditEvent:
            deletes.append(1)
            if len(deletes) == 2:
                raise OSError("the purge was interrupted")
        return real_delete(queryset)

    monkeypatch.setattr(models.QuerySet, "delete", failing_after_one_batch)
    try:
        yield
    finally:
        monkeypatch.setattr(models.QuerySet, "delete", real_delete)


def test_a_purge_run_again_after_an_interruption_keeps_the_complete_archive(make_event, tmp_path, monkeypatch):
    """Deleting stopped after the first batch: the second run must not rewrite the archive from
    the events that are left, or the ones already deleted would be nowhere."""
    from apps.audit import retention

    old = timezone.now() - timedelta(days=400)
    for i in range(3):
        make_event(request_id=f"old{i}", occurred_at=old, recorded_at=LONG_AGO)
    sealing.seal()
    with interrupted_after_one_batch(monkeypatch), pytest.raises(OSError):
        retention.purge(timezone.now() - timedelta(days=365), tmp_path)
    assert AuditEvent.objects.filter(request_id__startswith="old").count() == 2  # one batch went
    done = retention.purge(timezone.now() - timedelta(days=365), tmp_path)
    archived = [json.loads(line)["request_id"] for line in Path(done.export_file).read_text().splitlines()]
    assert archived == ["old0", "old1", "old2"]
    assert not AuditEvent.objects.filter(request_id__startswith="old").exists()
    assert not list(tmp_path.glob("*.partial"))  # nothing half-written left behind


def test_an_interrupted_purge_is_finished_over_its_own_range_when_the_date_has_moved(make_event, tmp_path, monkeypatch):
    """A nightly purge with a sliding date: the run after an interruption qualifies more
    segments, and must still finish the interrupted range from its archive first."""
    from apps.audit import retention

    for i, days in enumerate((400, 400, 300, 300)):
        make_event(request_id=f"old{i}", occurred_at=timezone.now() - timedelta(days=days), recorded_at=LONG_AGO)
    sealing.seal(limit=2)
    sealing.seal(limit=2)
    with interrupted_after_one_batch(monkeypatch), pytest.raises(OSError):
        retention.purge(timezone.now() - timedelta(days=365), tmp_path)  # the first segment only
    later = timezone.now() - timedelta(days=200)  # both segments qualify now
    finished = retention.purge(later, tmp_path)
    archived = [json.loads(line)["request_id"] for line in Path(finished.export_file).read_text().splitlines()]
    assert archived == ["old0", "old1"]  # the interrupted range, whole
    following = retention.purge(later, tmp_path)
    archived = [json.loads(line)["request_id"] for line in Path(following.export_file).read_text().splitlines()]
    assert archived == ["old2", "old3"]
    assert not AuditEvent.objects.filter(request_id__startswith="old").exists()


def test_only_whole_segments_entirely_before_the_date_are_purged(make_event, tmp_path):
    from apps.audit import retention

    old = timezone.now() - timedelta(days=400)
    make_event(occurred_at=old, recorded_at=LONG_AGO)
    make_event(recorded_at=LONG_AGO)  # same segment, but recent
    sealing.seal()
    assert retention.purge(timezone.now() - timedelta(days=365), tmp_path) is None
    assert AuditEvent.objects.count() == 2


def test_events_other_than_gateway_attempts_are_complete_and_sealable(admin_user, rf):
    from apps.audit import events
    from apps.audit.acting import Acting

    request = rf.get("/api/upstreams/")
    request.user = admin_user
    acting = Acting.from_request(request)
    event = events.record(events.UPSTREAM_DELETED, acting=acting, object_type="gateway.upstream", object_id="1")
    assert event.completed_at is not None
    assert sealing.seal(now=timezone.now() + timedelta(minutes=5)).last_seq == event.pk


def test_a_missing_checkpoint_file_matters_only_once_something_was_sealed(make_event, seal_settings, tmp_path):
    seal_settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "none-yet.jsonl")
    make_event(recorded_at=LONG_AGO)
    assert full_verify(seal_settings).ok  # nothing sealed, no file: fine
    sealing.seal()
    Path(seal_settings.AUDIT_CHECKPOINT_FILE).unlink()
    report = full_verify(seal_settings)
    assert [p.kind for p in report.problems] == ["checkpoint_missing"]


def test_seeded_events_are_realistic_complete_and_verifiable(capsys):
    from django.core.management import call_command

    call_command("audit_seed", "--rows", "120", "--no-progress")
    assert capsys.readouterr().out.strip() == "seeded 120 events"
    assert AuditEvent.objects.filter(completed_at__isnull=False).count() == 120
    assert {"allow", "deny"} == set(AuditEvent.objects.values_list("decision", flat=True))
    sealing.seal(now=timezone.now() + timedelta(hours=1))
    assert sealing.verify().ok
