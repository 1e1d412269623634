"""Every web host keeps the signed checkpoints (``apps.audit.witnessing``, ``audit_witness``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.audit import sealing, witnessing
from apps.audit.models import AuditSeal
from tests.audit.seals import BOTH_KEYS, KEY, KEYS, LONG_AGO, NEW_KEY, NEW_KEY_ID
from tests.audit.test_sealing import sql

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seal_settings")]


@pytest.fixture
def sealed_elsewhere(make_event, seal_settings):
    """Two checkpoints sealed by another host: this host's checkpoint file has neither."""
    seal_settings.AUDIT_CHECKPOINT_FILE = ""
    for i in range(10):
        make_event(request_id=f"r{i}", recorded_at=LONG_AGO)
    seals = [sealing.seal(limit=5), sealing.seal(limit=5)]
    return seals


@pytest.fixture
def witness_file(tmp_path, seal_settings) -> Path:
    path = tmp_path / "witness" / "checkpoints.jsonl"
    seal_settings.AUDIT_CHECKPOINT_FILE = str(path)
    return path


def witness(path: Path, keys=KEYS) -> witnessing.Witnessed:
    return witnessing.witness(path, keys)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def seal_one_more(make_event, seal_settings) -> AuditSeal:
    """Another host seals again (nothing appended to this host's file)."""
    file, seal_settings.AUDIT_CHECKPOINT_FILE = seal_settings.AUDIT_CHECKPOINT_FILE, ""
    make_event(request_id="later", recorded_at=LONG_AGO)
    checkpoint = sealing.seal()
    seal_settings.AUDIT_CHECKPOINT_FILE = file
    return checkpoint


def resign(seal_id: int, key: str, key_id: str, **changes) -> None:
    """What an attacker who holds a key of the ring does to a checkpoint in the database."""
    seal = AuditSeal.objects.get(pk=seal_id)
    for name, value in changes.items():
        setattr(seal, name, value)
    seal.key_id = key_id
    signature = sealing.checkpoint_signature(sealing.checkpoint_payload(seal), key)
    sql("UPDATE audit_auditseal SET key_id = %s, signature = %s, prev_hash = %s WHERE id = %s",
        key_id, signature, seal.prev_hash, seal_id)  # fmt: skip


def test_the_witness_copies_the_checkpoints_sealed_elsewhere_in_order(sealed_elsewhere, witness_file, seal_settings):
    result = witness(witness_file)
    assert (result.ok, [s.pk for s in result.copied]) == (True, [s.pk for s in sealed_elsewhere])
    assert lines(witness_file) == [sealing.checkpoint_line(s) for s in AuditSeal.objects.order_by("last_seq")]
    report = sealing.verify(keys=KEYS, checkpoint_file=str(witness_file))
    assert report.ok and report.checkpoint_file_checked, report.problems


def test_a_second_run_copies_nothing_and_a_later_one_only_what_is_new(sealed_elsewhere, witness_file, make_event,
                                                                       seal_settings):  # fmt: skip
    witness(witness_file)
    before = witness_file.read_text()
    assert witness(witness_file).copied == []
    assert witness_file.read_text() == before
    newest = seal_one_more(make_event, seal_settings)
    assert [s.pk for s in witness(witness_file).copied] == [newest.pk]
    assert len(lines(witness_file)) == 3


def test_the_sealer_never_writes_a_checkpoint_the_witness_copied_first(sealed_elsewhere, witness_file):
    witness(witness_file)
    sealing._append_checkpoint(sealed_elsewhere[-1], str(witness_file))  # the sealer's append, late
    assert len(lines(witness_file)) == 2


def test_a_file_behind_the_database_still_verifies(sealed_elsewhere, witness_file, make_event, seal_settings):
    witness(witness_file)
    seal_one_more(make_event, seal_settings)  # sealed since the last witness run
    report = sealing.verify(keys=KEYS, checkpoint_file=str(witness_file))
    assert report.ok, report.problems


def test_a_checkpoint_with_a_bad_signature_is_not_copied(sealed_elsewhere, witness_file):
    sql("UPDATE audit_auditseal SET signature = %s WHERE id = %s", "0" * 64, sealed_elsewhere[1].pk)
    result = witness(witness_file)
    assert [s.pk for s in result.copied] == [sealed_elsewhere[0].pk]  # the one before it checked out
    assert not result.ok and "bad_signature" in result.problems[0]
    assert len(lines(witness_file)) == 1


def test_a_checkpoint_that_does_not_follow_the_file_is_not_copied_even_when_validly_signed(
    sealed_elsewhere, witness_file
):
    resign(sealed_elsewhere[1].pk, KEY, "1", prev_hash="f" * 64)
    result = witness(witness_file)
    assert not result.ok and "fork" in result.problems[0]
    assert len(lines(witness_file)) == 1


def test_a_re_signed_checkpoint_of_the_file_stops_the_witness_writing_nothing(
    sealed_elsewhere, witness_file, make_event, seal_settings, capsys
):
    witness(witness_file)
    seal_one_more(make_event, seal_settings)
    resign(sealed_elsewhere[0].pk, NEW_KEY, NEW_KEY_ID)  # valid under the ring, but not what was witnessed
    before = witness_file.read_text()
    result = witness(witness_file, BOTH_KEYS)
    assert (result.copied, witness_file.read_text()) == ([], before)
    assert "differs from the file in: key_id, signature" in result.problems[0]
    with pytest.raises(CommandError, match="differ"):
        call_command("audit_witness")
    assert "differs from the file" in capsys.readouterr().out


def test_a_checkpoint_deleted_from_the_database_is_found(sealed_elsewhere, witness_file):
    witness(witness_file)
    sql("DELETE FROM audit_auditseal WHERE id = %s", sealed_elsewhere[1].pk)
    result = witness(witness_file)
    assert not result.ok and "in the file but not in the database" in result.problems[0]


def test_a_rewrite_of_events_and_checkpoints_by_a_key_holder_is_caught_by_verify_against_the_witness_file(
    sealed_elsewhere, witness_file
):
    witness(witness_file)
    first = sealed_elsewhere[0]
    sql("UPDATE audit_auditevent SET actor_username = 'someone-else' WHERE id = %s", first.first_seq)
    previous = sealing.GENESIS
    for checkpoint in AuditSeal.objects.order_by("first_seq"):  # every hash recomputed, every checkpoint re-signed
        start = previous
        for row in sealing._events(checkpoint.first_seq, checkpoint.last_seq):
            previous = sealing.chain(previous, row)
            sql("UPDATE audit_auditeventhash SET hash = %s WHERE seq = %s", previous, row[sealing.ID])
        sql("UPDATE audit_auditseal SET head_hash = %s WHERE id = %s", previous, checkpoint.pk)
        resign(checkpoint.pk, KEY, "1", prev_hash=start)
    assert sealing.verify(keys=KEYS).ok  # consistent and validly signed inside the database
    report = sealing.verify(keys=KEYS, checkpoint_file=str(witness_file))
    assert {p.kind for p in report.problems} == {"checkpoint_mismatch"}
    assert report.first_bad_seq == first.first_seq
    assert not witness(witness_file).ok


def test_the_command_copies_and_says_so(sealed_elsewhere, witness_file, capsys):
    call_command("audit_witness")
    assert capsys.readouterr().out.splitlines() == [
        f"copied {s.first_seq}..{s.last_seq}" for s in sealed_elsewhere
    ]  # fmt: skip
    call_command("audit_witness")
    assert capsys.readouterr().out.strip() == "nothing to copy"


def test_the_command_refuses_to_copy_what_it_cannot_check(sealed_elsewhere, witness_file, seal_settings):
    seal_settings.AUDIT_SEAL_KEYS = {}
    with pytest.raises(CommandError, match="AUDITGATE_AUDIT_SEAL_KEYS"):
        call_command("audit_witness")
    assert not witness_file.exists()
