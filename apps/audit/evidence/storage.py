"""Where captured bodies live: ``EvidenceBlob`` rows keyed by the SHA-256 of their content,
and one ``EvidenceLink`` per event and direction.

The app's database account may only SELECT and INSERT audit tables, so a blob is never
updated: it is inserted with ``INSERT IGNORE`` (the same body captured twice is one row) in
the transaction that inserts its links, and both are committed before the outcome that names
them is spooled (``apps.audit.recording``).  Retention (the privileged account) deletes the
links of the purged events, then the blobs no link names any more.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping

from django.db import DatabaseError, connection, transaction

from apps.audit.models import EvidenceBlob, EvidenceLink

logger = logging.getLogger(__name__)

BATCH = 500


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def save(event_id: int, bodies: Mapping[str, bytes]) -> bool:
    """Store ``bodies`` (direction -> bytes) of event ``event_id``; False when they could not be."""
    if not bodies:
        return True
    blobs = {digest(body): body for body in bodies.values()}
    try:
        with transaction.atomic():
            EvidenceBlob.objects.bulk_create(
                [EvidenceBlob(sha256=key, size=len(body), content=body) for key, body in blobs.items()],
                ignore_conflicts=True,  # INSERT IGNORE: content-addressed, already there is fine
            )
            EvidenceLink.objects.bulk_create(
                [EvidenceLink(event_id=event_id, direction=d, sha256=digest(body)) for d, body in bodies.items()],
                ignore_conflicts=True,
            )
    except DatabaseError:
        logger.exception("Evidence of event %s could not be stored: the outcome records it as withheld", event_id)
        return False
    return True


def content(sha256: str) -> bytes | None:
    blob = EvidenceBlob.objects.filter(sha256=sha256).values_list("content", flat=True).first()
    return None if blob is None else bytes(blob)


def stored_digests(keys: list[str]) -> dict[str, str]:
    """Key -> SHA-256 of the content now stored under it (computed by MariaDB: no body is read)."""
    found: dict[str, str] = {}
    with connection.cursor() as cursor:
        for at in range(0, len(keys), BATCH):
            batch = keys[at : at + BATCH]
            marks = ", ".join(["%s"] * len(batch))
            sql = f"SELECT sha256, SHA2(content, 256) FROM audit_evidenceblob WHERE sha256 IN ({marks})"  # noqa: S608 - placeholders only
            cursor.execute(sql, batch)
            found.update((key, (value or "").lower()) for key, value in cursor.fetchall())
    return found


def delete_links(first: int, last: int) -> None:
    """Retention: the links of events ``first..last`` (in the caller's transaction)."""
    EvidenceLink.objects.filter(event_id__gte=first, event_id__lte=last).delete()


def delete_unreferenced() -> int:
    """Retention: delete the blobs no link names; returns how many.

    A capture may at this moment be linking a new event to a blob that exists (``INSERT
    IGNORE`` found it): each batch locks its blobs first (that waits for such a transaction,
    whose insert holds a lock on the blob, to commit its link), then reads the links with a
    locking read (the latest committed ones), and deletes only the blobs none names."""
    deleted = 0
    for batch in _unreferenced_batches():
        with transaction.atomic():
            blobs = EvidenceBlob.objects.select_for_update().filter(sha256__in=batch)
            locked = list(blobs.values_list("sha256", flat=True))
            links = EvidenceLink.objects.select_for_update().filter(sha256__in=locked)
            named = set(links.values_list("sha256", flat=True))
            orphans = [key for key in locked if key not in named]
            deleted += EvidenceBlob.objects.filter(sha256__in=orphans).delete()[0]
    return deleted


def _unreferenced_batches() -> Iterator[list[str]]:
    after = ""
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT b.sha256 FROM audit_evidenceblob b WHERE b.sha256 > %s AND NOT EXISTS"
                " (SELECT 1 FROM audit_evidencelink l WHERE l.sha256 = b.sha256) ORDER BY b.sha256 LIMIT %s",
                [after, BATCH],
            )
            keys = [key for (key,) in cursor.fetchall()]
            if not keys:
                return
            yield keys
            after = keys[-1]
