"""Schemathesis hooks for the contract fuzzing of a deployed auditgate (``SCHEMATHESIS_HOOKS``).

The fuzzer runs as an administrator against a real deployment, where revoking, changing or
deleting an object that existed before the run would break the deployment (the admin's own
token, the operator's upstreams).  Objects named in ``AUDITGATE_FUZZ_PROTECTED``
(``tokens:1,2;upstreams:3;rules:``) are therefore never the target of a write: such a
request goes to an id that does not exist instead (and gets its 404).  Objects the fuzzer
creates itself are fair game, so the stateful links (create, read, change, delete) still
run end to end.  Nothing else about a request or the checks is changed.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NO_SUCH_ID = "2147483000"


def protected() -> dict[str, set[str]]:
    spec = os.environ.get("AUDITGATE_FUZZ_PROTECTED", "")
    kinds = (part.partition(":") for part in spec.split(";") if part)
    return {kind: {ident for ident in ids.split(",") if ident} for kind, _, ids in kinds}


PROTECTED = protected()


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    if case.method.upper() not in WRITES or not case.path_parameters:
        return
    kind = case.path.strip("/").split("/")[1] if case.path.startswith("/api/") else ""
    ident = str(case.path_parameters.get("id", ""))
    if ident in PROTECTED.get(kind, ()):
        case.path_parameters["id"] = NO_SUCH_ID
