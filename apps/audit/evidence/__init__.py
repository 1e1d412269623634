"""Evidence capture: the bodies of forwarded exchanges, redacted, kept beside the trail.

Opt-in per upstream or per rule (``capture_evidence``).  The gateway gives the exchange a
``capture.Capture``: its two ``CapturingCount`` keep at most ``evidence_max_bytes`` of each
body beside the running hash the trail already records (``apps.audit.recording``).  When the
exchange ends, ``capture.Capture.store`` redacts both directions (``redaction``), stores what
may be stored as content-addressed blobs with one link per event and direction
(``storage``), and returns what the event seals in its ``evidence`` column (schema version 3):
per direction the SHA-256 of the stored bytes, their size, whether they were truncated, what
was redacted, the redacted headers and the content type, or why the body was withheld.

Reads are the auditors' (``apps.audit.api``), each audited before the body goes out;
``audit_verify`` checks each sealed digest against its blob (``verification``); retention
deletes the blobs no kept event names (``storage.delete_unreferenced``).  Bodies never go
into purge archives: evidence must not outlive the trail's retention.
"""
