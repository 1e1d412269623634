from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.db import connection, models
from django.db.models.functions import Collate
from django.utils import timezone

from apps.audit.choices import Decision
from apps.audit.group_commit import GroupCommit

_DEFAULT = object()


# The only columns ever written after the insert: a gateway attempt's outcome, once
# (``record_outcome``), and ``actor`` set to NULL by Django when a user is deleted.  The
# database grants the app exactly these (the ``database`` role); everything else is insert-only.
OUTCOME_FIELDS = (
    "completed_at", "duration_ms", "status", "upstream_status", "error", "request_bytes", "request_sha256",
    "response_bytes", "response_sha256", "ttfb_ms", "client_aborted", "close_code", "evidence",
)  # fmt: skip


@functools.cache
def _insert_statement() -> tuple[str, tuple[models.Field, ...]]:
    """``INSERT INTO audit_auditevent (<every column but the id>) VALUES `` and those fields."""
    fields = tuple(f for f in AuditEvent._meta.concrete_fields if not f.primary_key)
    quote = connection.ops.quote_name
    sql = "INSERT INTO {} ({}) VALUES ".format(  # noqa: S608 - our own names
        quote(AuditEvent._meta.db_table), ", ".join(quote(f.column) for f in fields)
    )
    return sql, fields


@functools.cache
def _group_commit() -> GroupCommit:
    return GroupCommit(_insert_statement()[0])


@functools.cache
def _insert_plan() -> tuple[tuple[models.Field, str, str, tuple[type, ...], str | None], ...]:
    """Per column of the INSERT: the field, its two names, the types it passes unchanged, and
    its default as an SQL constant when that never changes (None otherwise)."""
    return tuple((f, f.attname, f.name, _same_in_the_database(f), _constant_default(f)) for f in _insert_statement()[1])


def _constant_default(f: models.Field) -> str | None:
    """An attempt leaves a third of the columns at their defaults (the outcome, the change
    fields): written as constants in the statement, they cost no parameter to prepare and
    escape on each insert."""
    if f.has_default() and callable(f.default):
        return None  # a time, a new list: computed per row
    value = _prepare(f, f.get_default(), _same_in_the_database(f))
    if value is None:
        return "NULL"
    if type(value) is bool:
        return "1" if value else "0"
    if type(value) in (int, float):
        return repr(value)
    if value == "":
        return "''"
    return None


def _same_in_the_database(f: models.Field) -> tuple[type, ...]:
    """The value types that ``f.get_db_prep_save`` returns unchanged on MariaDB.

    Preparing every value through its field was a tenth of the gateway's CPU per request;
    these types skip it.  Exact types (``type(v) in``), so a bool is never taken for an int.
    Anything else (datetimes, JSON, addresses, keys) still goes through the field."""
    if isinstance(f, models.BooleanField):
        return (bool,)
    if isinstance(f, models.CharField):
        return (str,)
    if isinstance(f, models.IntegerField):
        return (int,)
    if isinstance(f, models.FloatField):
        return (float,)
    return ()


def _prepare(f: models.Field, value: object, unchanged: tuple[type, ...]) -> object:
    if (value is None and f.null) or type(value) in unchanged:
        return value
    return f.get_db_prep_save(value, connection)


@functools.cache
def _insertable_names() -> frozenset[str]:
    """What ``insert`` takes: each field by name or by column attribute (``actor`` or ``actor_id``)."""
    return frozenset(name for f in _insert_statement()[1] for name in (f.name, f.attname))


@functools.cache
def _concrete(name: str) -> models.Field:
    field = AuditEvent._meta.get_field(name)
    assert isinstance(field, models.Field)  # every outcome field is a column
    return field


def _outcome_statement(names: tuple[str, ...]) -> tuple[str, tuple[tuple[models.Field, tuple[type, ...]], ...]]:
    fields = tuple(_concrete(name) for name in names)
    quote = connection.ops.quote_name
    sql = "UPDATE {} SET {} WHERE id = %s AND completed_at IS NULL".format(  # noqa: S608 - our own names
        quote(AuditEvent._meta.db_table), ", ".join(f"{quote(f.column)} = %s" for f in fields)
    )
    return sql, tuple((f, _same_in_the_database(f)) for f in fields)


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """Gateway attempts are written with two prepared statements, not the ORM's compiler:
    that cut the gateway's own time per request by about a tenth (docs/benchmarks.md)."""

    def update(self, **kwargs: object) -> int:
        raise TypeError("Audit events are append-only.")

    def insert(self, **values: object) -> int:
        """Insert one event (unset fields take their defaults, as ``create`` would); returns its
        id once committed.  Outside a transaction it joins the rows other threads of this process
        insert at the same moment in one statement and one commit (``apps.audit.group_commit``)."""
        unknown = values.keys() - _insertable_names()
        if unknown:
            raise TypeError(f"Not audit event fields: {sorted(unknown)}")
        parts: list[str] = []
        params: list[Any] = []
        for f, attname, name, unchanged, constant in _insert_plan():
            value = values[attname] if attname in values else values.get(name, _DEFAULT)
            if value is _DEFAULT:
                if constant is not None:
                    parts.append(constant)
                    continue
                value = f.get_default()
            parts.append("%s")
            params.append(_prepare(f, value, unchanged))
        row = "(" + ", ".join(parts) + ")"
        if settings.AUDIT_GROUP_COMMIT and not connection.in_atomic_block:  # alone: it may share a commit
            return _group_commit().insert(row, params)
        with connection.cursor() as cursor:
            cursor.execute(_insert_statement()[0] + row, params)
            return cursor.lastrowid

    def record_outcome(self, pk: int, **outcome: object) -> bool:
        """Write the outcome of an attempt, once: False if it already had one."""
        if not set(outcome) <= set(OUTCOME_FIELDS):
            raise TypeError(f"Only outcome fields may be written after the insert: {OUTCOME_FIELDS}.")
        sql, fields = _outcome_statement(tuple(outcome))
        params: list[Any] = [_prepare(f, outcome[f.name], unchanged) for f, unchanged in fields]
        with connection.cursor() as cursor:  # the one sanctioned UPDATE
            cursor.execute(sql, [*params, pk])
            return cursor.rowcount == 1

    def delete(self) -> tuple[int, dict[str, int]]:
        raise TypeError("Audit events are append-only.")

    def with_request_id(self, request_id: str) -> AuditEventQuerySet:
        """Events of exactly this request id.  The column's collation ignores case, but ids
        (mod_unique_id's) differ by case alone: the index narrows, the binary comparison decides."""
        exact = Collate("request_id", "utf8mb4_bin")
        return self.filter(request_id=request_id).alias(request_id_exact=exact).filter(request_id_exact=request_id)


class AuditEvent(models.Model):
    """One audited event: a gateway attempt (allowed or denied), an authentication
    failure, or a change to tokens, upstreams or rules.  Gateway attempts are written
    once, when their outcome is known.  ``event_type`` names come from ``apps.audit.events``.

    Rows are append-only: the QuerySet and the instance refuse updates and deletes,
    and neither the API nor the admin offers them.  Snapshots (``actor_username``,
    ``upstream_name``) keep an event readable after its subjects are deleted.
    """

    # The primary key is the event's sequence number: the hash chain (apps.audit.sealing)
    # links events in id order.
    # 2 added the causal chain (trace_id, parent_event_id) and close_code; 3 added evidence.
    # Older rows are sealed without the columns their version lacks (apps.audit.sealing.canonical_bytes).
    schema_version = models.PositiveSmallIntegerField(default=3)
    event_type = models.CharField(max_length=64, default="gateway.request")
    occurred_at = models.DateTimeField()
    # When the row was written (gateway events are written when their outcome is known);
    # the sealer only seals rows older than its grace window.
    recorded_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.FloatField(default=0, help_text="From the start of Django's handling to the last byte sent.")
    request_id = models.CharField(max_length=64)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        db_index=False,  # covered by the (actor, occurred_at) index
    )  # fmt: skip
    actor_username = models.CharField(max_length=150, blank=True)
    actor_groups = models.JSONField(default=list, blank=True, help_text="The actor's groups at the time.")
    auth_method = models.CharField(max_length=16, blank=True, help_text="token, session...")
    token_key_id = models.CharField(max_length=32, blank=True, help_text="Never the secret.")
    source_ip = models.GenericIPAddressField(null=True, blank=True, help_text="The client, through trusted proxies.")
    peer_ip = models.GenericIPAddressField(null=True, blank=True, help_text="The address that connected to Apache.")
    forwarded_chain = models.CharField(max_length=500, blank=True, help_text="X-Forwarded-For as received.")
    host = models.CharField(max_length=255, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    # Plain values, not a foreign key: deleting an upstream must not rewrite its history.
    upstream_id = models.BigIntegerField(null=True, blank=True)
    upstream_name = models.CharField(max_length=64, blank=True)
    method = models.CharField(max_length=16, blank=True)
    path = models.CharField(max_length=2000, blank=True)
    query = models.CharField(max_length=2000, blank=True)
    decision = models.CharField(max_length=8, choices=Decision.choices, blank=True)
    reason = models.CharField(max_length=64, blank=True)
    rule_id = models.BigIntegerField(null=True, blank=True)
    status = models.PositiveSmallIntegerField(null=True, blank=True, help_text="The status the client received.")
    upstream_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=64, blank=True)
    request_bytes = models.BigIntegerField(default=0)
    request_sha256 = models.CharField(max_length=64, blank=True, help_text="Of the body, computed while streaming.")
    response_bytes = models.BigIntegerField(default=0)
    response_sha256 = models.CharField(max_length=64, blank=True)
    ttfb_ms = models.FloatField(null=True, blank=True, help_text="Time to the upstream's response headers.")
    overhead_ms = models.FloatField(null=True, blank=True, help_text="Gateway time before forwarding.")
    client_aborted = models.BooleanField(default=False)
    # Set when the outcome is known: at once for denials, at the end of the response for
    # forwarded requests, by ``audit_reconcile`` for attempts whose process died.
    completed_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=100, blank=True, help_text="host/pid of the process that handled it.")
    injected_credential = models.CharField(
        max_length=64,
        blank=True,
        help_text="Which upstream credential was injected (its header name), never its value.",
    )
    # Changes to tokens, upstreams and rules: what changed, secrets masked.
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(null=True, blank=True)
    # Schema version 2, appended last (the sealed column order is the table's).  A request a
    # service made through the gate while serving an earlier request names that request's
    # event, from the trace context the gate signed and gave it (apps.gateway.tracing): a
    # caller cannot forge the link.
    trace_id = models.CharField(max_length=32, blank=True, help_text="W3C Trace Context trace id.")
    parent_event_id = models.BigIntegerField(
        null=True, blank=True, help_text="The gateway attempt whose upstream made this request through the gate."
    )
    close_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text="A WebSocket's close code.")
    # Schema version 3, appended last: what was captured of the exchange's bodies
    # (apps.audit.evidence), per direction the SHA-256 of the stored bytes (an EvidenceBlob),
    # their size, whether truncated, what was redacted, the headers (redacted), or why withheld.
    evidence = models.JSONField(null=True, blank=True, help_text="Captured bodies' digests and headers, or null.")

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ("-id",)
        # Every filter of the API is paired with the id so a filtered, id-ordered
        # cursor page is an index range scan.
        # Every filter of the API leads an index, followed by the time it is paged by, so a
        # filtered page is an index range scan at any table size.  Ascending on purpose:
        # InnoDB appends the id, and (filter, occurred_at, id) read backwards is exactly the
        # newest-first page order; a DESC column would force a sort.
        indexes = [
            models.Index(fields=("occurred_at", "id"), name="audit_time"),
            models.Index(fields=("event_type", "occurred_at"), name="audit_type_time"),
            models.Index(fields=("actor_username", "occurred_at"), name="audit_actor_time"),
            models.Index(fields=("actor", "occurred_at"), name="audit_actor_id_time"),
            models.Index(fields=("token_key_id", "occurred_at"), name="audit_token_time"),
            models.Index(fields=("upstream_name", "occurred_at"), name="audit_upstream_time"),
            models.Index(fields=("decision", "occurred_at"), name="audit_decision_time"),
            models.Index(fields=("reason", "occurred_at"), name="audit_reason_time"),
            models.Index(fields=("status", "occurred_at"), name="audit_status_time"),
            models.Index(fields=("source_ip", "occurred_at"), name="audit_source_time"),
            models.Index(fields=("request_id",), name="audit_request_id"),
            models.Index(fields=("completed_at",), name="audit_completed"),
            models.Index(fields=("parent_event_id",), name="audit_parent"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.decision} {self.method} {self.upstream_name}{self.path}"

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding:
            raise TypeError("Audit events are append-only.")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise TypeError("Audit events are append-only.")


class AuditSeal(models.Model):
    """A checkpoint of the hash chain: events ``first_seq..last_seq`` (minus ``gaps``) end in
    ``head_hash``.  Signed with a key kept outside the database and also appended to a
    checkpoint file outside it (``apps.audit.sealing``).  Append-only, like the events."""

    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField(unique=True)
    count = models.PositiveIntegerField()
    gaps = models.JSONField(default=list, help_text="Ids in the range that no committed event has.")
    prev_hash = models.CharField(max_length=64)
    head_hash = models.CharField(max_length=64)
    sealed_at = models.DateTimeField(default=timezone.now)
    key_id = models.CharField(max_length=32, blank=True)
    signature = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ("first_seq",)

    def __str__(self) -> str:
        return f"seal #{self.pk}: {self.first_seq}..{self.last_seq} -> {self.head_hash[:12]}"


class AuditEventHash(models.Model):
    """The chain hash of one sealed event, so that verification can name the first bad seq."""

    seq = models.BigIntegerField(primary_key=True)
    hash = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"{self.seq}: {self.hash[:12]}"


class AuditPurge(models.Model):
    """Retention: every sealed segment up to ``through_seq`` was exported and deleted.

    The checkpoints of purged segments stay, so the chain of checkpoints still verifies."""

    through_seq = models.BigIntegerField()
    events = models.PositiveBigIntegerField()
    export_file = models.CharField(max_length=500)
    purged_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("through_seq",)

    def __str__(self) -> str:
        return f"purged through {self.through_seq}"


class EvidenceBlob(models.Model):
    """A captured body (redacted, at most the upstream's cap), stored once per content: its key
    is the SHA-256 of ``content``, which the sealed ``AuditEvent.evidence`` names.  Insert-only
    (``INSERT IGNORE``: the same body captured twice is one row); deleted by retention only
    when no ``EvidenceLink`` names it any more (apps.audit.evidence.storage)."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    size = models.PositiveIntegerField()
    content = models.BinaryField()
    stored_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.sha256[:12]} ({self.size} bytes)"


class EvidenceLink(models.Model):
    """Which event's body (``direction``) a blob is: what retention follows to the blobs no kept
    event needs, and what ``audit_verify`` reads to find the events with evidence.  Insert-only."""

    event_id = models.BigIntegerField()
    direction = models.CharField(max_length=8)
    sha256 = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("event_id", "direction"), name="audit_evidence_event")]
        indexes = [models.Index(fields=("sha256",), name="audit_evidence_blob")]

    def __str__(self) -> str:
        return f"event {self.event_id} {self.direction}: {self.sha256[:12]}"
