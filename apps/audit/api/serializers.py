from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rest_framework import serializers

from apps.audit import chains
from apps.audit.choices import Decision
from apps.audit.models import AuditEvent
from apps.core.api.serializers import ReplicaHealthSerializer

_AS_IS: dict[Callable[..., Any], Callable[[Any], Any]] = {
    serializers.CharField.to_representation: str,
    serializers.IntegerField.to_representation: int,
    serializers.FloatField.to_representation: float,
}


class AuditEventSerializer(serializers.HyperlinkedModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="audit-api:auditevent-detail")
    # The tree of requests this one belongs to (``GET .../chain/``).
    chain_url = serializers.HyperlinkedIdentityField(view_name="audit-api:auditevent-chain")
    actor = serializers.IntegerField(source="actor_id", read_only=True, allow_null=True)
    # Empty for events that are not decisions (changes, reads of the trail).
    decision = serializers.ChoiceField(choices=Decision.choices, allow_blank=True, read_only=True)

    class Meta:
        model = AuditEvent
        fields: tuple[str, ...] = (
            "url", "chain_url", "id", "event_type", "occurred_at", "duration_ms", "request_id", "trace_id",
            "parent_event_id", "actor", "actor_username", "token_key_id", "source_ip", "user_agent", "upstream_id",
            "upstream_name", "method", "path", "query", "decision", "reason", "rule_id", "status", "upstream_status",
            "error", "close_code", "injected_credential", "request_bytes", "response_bytes", "object_type",
            "object_id", "object_repr", "changes",
        )  # fmt: skip
        read_only_fields: tuple[str, ...] = fields

    def to_representation(self, instance: AuditEvent) -> dict[str, Any]:
        """What DRF's own ``to_representation`` returns (tests hold the two equal), without its
        generic round of calls per value: that was 60 % of the CPU of a page of 50 events.
        Plain text and numbers are converted directly, the detail URL is the page's template
        with the id filled in, and any other field still converts its own values."""
        row: dict[str, Any] = {}
        for name, attribute, convert in self._plan():
            value = instance if attribute is None else getattr(instance, attribute)
            row[str(name)] = None if value is None else convert(value)
        return row

    def _plan(self) -> list[tuple[str | None, str | None, Callable[..., Any]]]:
        """Per field: its name, the attribute it reads (None: the event itself) and how it
        converts a value.  Built once per serializer, so once per page."""
        if not hasattr(self, "_fast_plan"):
            plan: list[tuple[str | None, str | None, Callable[..., Any]]] = []
            for field in self._readable_fields:
                if isinstance(field, serializers.HyperlinkedIdentityField):
                    plan.append((field.field_name, None, self._detail_url(field)))
                    continue
                (attribute,) = field.source_attrs
                method = type(field).to_representation
                plan.append((field.field_name, attribute, _AS_IS.get(method, field.to_representation)))
            self._fast_plan = plan
        return self._fast_plan

    @staticmethod
    def _detail_url(field: serializers.HyperlinkedIdentityField) -> Callable[[AuditEvent], str]:
        marker = "0auditgate0"  # an id no event has; the router's lookup accepts any segment
        request, url_format = field.context["request"], field.context.get("format")
        template = field.reverse(field.view_name, kwargs={"pk": marker}, request=request, format=url_format)
        before, after = template.split(marker)
        return lambda event: f"{before}{event.pk}{after}"


class AuditEventSummarySerializer(AuditEventSerializer):
    """An event as a node of its chain shows it: who called what, and how it ended."""

    class Meta(AuditEventSerializer.Meta):
        fields = ("url", *chains.SUMMARY_FIELDS)
        read_only_fields = fields


class ChainNodeSerializer(serializers.Serializer):
    event = AuditEventSummarySerializer()
    # "children" is this serializer itself: declared below, once the class exists.


ChainNodeSerializer._declared_fields["children"] = ChainNodeSerializer(
    many=True, help_text="The requests made while serving this one, oldest first."
)


class AuditChainSerializer(serializers.Serializer):
    """The tree of a ``chains.Chain``, root first."""

    requested = serializers.IntegerField(help_text="The id asked for.")
    root = serializers.IntegerField(  # type: ignore[assignment]  # a field named like Field.root
        help_text="The id of the tree's root: the user's request, unless its parent_event_id is set (a parent "
        "purged, not yours to see, or beyond the depth limit)."
    )
    truncated = serializers.BooleanField(
        help_text=f"Events were left out: more than {chains.MAX_DEPTH} links up or down, or more than "
        f"{chains.MAX_NODES} events. The requested event and the path to it are always in the tree."
    )
    looped = serializers.BooleanField(
        help_text="A parent link led back into the tree (a forged or corrupted row: run audit_verify); "
        "it was not followed."
    )
    count = serializers.IntegerField(help_text="Events in the tree.")
    tree = ChainNodeSerializer()

    def to_representation(self, instance: chains.Chain) -> dict[str, Any]:
        summary = AuditEventSummarySerializer(context=self.context)

        def node(at: chains.Node) -> dict[str, Any]:
            return {"event": summary.to_representation(at.event), "children": [node(c) for c in at.children]}

        return {
            "requested": instance.requested, "root": instance.root.event.pk, "truncated": instance.truncated,
            "looped": instance.looped, "count": instance.count, "tree": node(instance.root),
        }  # fmt: skip


# Response shapes of the non-model endpoints, for the OpenAPI schema.
class StatsCountSerializer(serializers.Serializer):
    bucket = serializers.DateTimeField(help_text="Start of the time bucket (UTC).")
    upstream_name = serializers.CharField()
    decision = serializers.CharField(help_text="allow, deny, or empty for an attempt without a decision.")
    status = serializers.IntegerField(allow_null=True, help_text="The status the caller received.")
    count = serializers.IntegerField()


class LatencySerializer(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)


class TopCallerSerializer(serializers.Serializer):
    actor_username = serializers.CharField(help_text="Empty for unauthenticated attempts.")
    requests = serializers.IntegerField()
    denied = serializers.IntegerField()
    errors = serializers.IntegerField(  # type: ignore[assignment]  # a field named like Serializer.errors
        help_text="Answers with a status of 500 or more."
    )


class DenialSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    occurred_at = serializers.DateTimeField()
    actor_username = serializers.CharField()
    upstream_name = serializers.CharField()
    method = serializers.CharField()
    path = serializers.CharField()
    reason = serializers.CharField(help_text="The machine-readable reason code, e.g. no_matching_rule.")
    status = serializers.IntegerField(allow_null=True)
    request_id = serializers.CharField()


class AuditStatsSerializer(serializers.Serializer):
    # "from" is a keyword: declared below under its real name.
    to = serializers.DateTimeField()
    bucket = serializers.ChoiceField(choices=("minute", "hour", "day"))
    counts = StatsCountSerializer(many=True, help_text="Gateway attempts per bucket, upstream, decision and status.")
    latency_ms = LatencySerializer(help_text="Of completed gateway requests in the window.")
    top_callers = TopCallerSerializer(many=True, help_text="The 10 callers with the most gateway attempts.")
    recent_denials = DenialSerializer(many=True, help_text="The 20 newest denials in the window.")
    read_from = serializers.ChoiceField(
        choices=("default", "replica"), help_text="The database these figures were read from."
    )
    replica = ReplicaHealthSerializer(allow_null=True, help_text="The read replica's health; null without one.")


AuditStatsSerializer._declared_fields["from"] = serializers.DateTimeField()


class ProblemSerializer(serializers.Serializer):
    kind = serializers.CharField(
        help_text="altered, deleted, inserted, fork, bad_signature, checkpoint_missing, checkpoint_mismatch, "
        "evidence_missing or evidence_mismatch (a captured body gone, or no longer matching its sealed digest)."
    )
    seq = serializers.IntegerField(allow_null=True)
    detail = serializers.CharField()


# A web request re-hashes at most this many events (plus the rest of the segment it is in):
# ~120 k events/s on two cores (docs/audit-benchmark.md), so a page holds a daemon thread for
# about a second by default and two at most.  The host's audit_verify walks the whole trail.
VERIFY_PAGE_DEFAULT = 100_000
VERIFY_PAGE_MAX = 250_000
SEQ_MAX = 2**63 - 1


class AuditVerifyQuerySerializer(serializers.Serializer):
    from_seq = serializers.IntegerField(
        min_value=1, max_value=SEQ_MAX, required=False, default=1,
        help_text="Re-hash from the sealed segment holding this seq on (default: the start of the trail).",
    )  # fmt: skip
    max_events = serializers.IntegerField(
        min_value=1, max_value=VERIFY_PAGE_MAX, required=False, default=VERIFY_PAGE_DEFAULT,
        help_text="Stop after the segment that reaches this many re-hashed events; follow `next` for the rest.",
    )  # fmt: skip


class VerificationSerializer(serializers.Serializer):
    event_id = serializers.IntegerField(help_text="Its audit.verified event.")
    at = serializers.DateTimeField()
    ok = serializers.BooleanField()
    by = serializers.CharField(help_text="The host account that ran audit_verify.")
    from_seq = serializers.IntegerField(allow_null=True)
    through_seq = serializers.IntegerField(allow_null=True)


class AuditVerifySerializer(serializers.Serializer):
    ok = serializers.BooleanField(help_text="No problem found in what this walk checked (see `complete`).")
    first_bad_seq = serializers.IntegerField(allow_null=True)
    events_checked = serializers.IntegerField()
    segments_checked = serializers.IntegerField(help_text="Every checkpoint, checked against the one before it.")
    unsealed_tail = serializers.IntegerField(help_text="Events not sealed yet (younger than the grace window).")
    signatures_checked = serializers.BooleanField(help_text="Always false here: the web server has no seal key.")
    checkpoint_file_checked = serializers.BooleanField()
    from_seq = serializers.IntegerField(allow_null=True, help_text="The first seq re-hashed (null: none).")
    through_seq = serializers.IntegerField(allow_null=True, help_text="The last seq re-hashed (null: none).")
    complete = serializers.BooleanField(help_text="The walk reached the last sealed segment.")
    next = serializers.URLField(allow_null=True, help_text="Where the walk goes on; null once complete.")
    last_full_verification = VerificationSerializer(
        allow_null=True,
        help_text="The newest audit_verify run on a host (every segment, with the signatures and the external "
        "checkpoint file where it has them); null if none.",
    )
    problems = ProblemSerializer(many=True)


class EvidenceSideSerializer(serializers.Serializer):
    """One direction of a captured exchange, as the event sealed it (``apps.audit.evidence``)."""

    sha256 = serializers.CharField(required=False, help_text="Of the stored bytes (the blob's key); empty: no body.")
    bytes = serializers.IntegerField(required=False, help_text="Stored bytes (after redaction and the size cap).")
    truncated = serializers.BooleanField(required=False, help_text="The body was longer than evidence_max_bytes.")
    withheld = serializers.CharField(
        required=False,
        help_text="Why no body was stored: content_encoded, truncated_before_redaction, unparseable, "
        "unsupported_content_type, store_failed or unrecorded_attempt.",
    )
    redacted = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="header:<name>, field:<name>, secret."
    )
    headers = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField()), required=False,
        help_text="[name, value] pairs, redacted: as sent to the upstream, or as the upstream answered.",
    )  # fmt: skip
    content_type = serializers.CharField(required=False)
    body_url = serializers.URLField(allow_null=True, help_text="The stored body; null when none was stored.")


class EvidenceSerializer(serializers.Serializer):
    event = serializers.IntegerField(help_text="The gateway event's id.")
    request = EvidenceSideSerializer(allow_null=True)
    response = EvidenceSideSerializer(allow_null=True, help_text="Null when the upstream never answered.")
