"""``getIamPolicy`` / ``setIamPolicy`` / ``testIamPermissions`` on datasets and DICOM
stores.

Policies are kept and returned as Google's IAM does (bindings, a version, an ``etag``
that changes with every write and guards read-modify-write cycles), so scripts that
manage access run unchanged against this server. They are **not enforced**: the local
server has no authentication, every caller may do everything, and
``testIamPermissions`` says so by granting every permission asked about.
"""

from __future__ import annotations

import base64
import json
import re
import secrets

from ..api_schema import ConfigError, validate
from . import errors
from .state import ServerState

#: The etag of a resource that never had a policy set, as Google's IAM answers it.
EMPTY_ETAG = "ACAB"
_FIELD = "iamPolicy"
_MEMBER = re.compile(
    r"allUsers|allAuthenticatedUsers|"
    r"(user|serviceAccount|group|domain|deleted:user|deleted:serviceAccount|deleted:group)"
    r":\S+|principal(Set)?://\S+")
_ROLE = re.compile(r"roles/[\w.]+|(projects|organizations)/[^/]+/roles/[\w.]+")
_PERMISSION = re.compile(r"[a-z][a-zA-Z0-9]*(\.[a-zA-Z0-9]+){2}")
#: SetIamPolicyRequest: "The size of the policy is limited to a few 10s of KB"; 64 KiB
#: of compact JSON is that limit here. The policy is kept, so its size must be bounded.
MAX_POLICY_BYTES = 64 * 1024
#: Policy.bindings: "up to 1,500 principals; up to 250 of these principals can be
#: Google groups. Each occurrence of a principal counts towards these limits."
MAX_PRINCIPALS = 1500
MAX_GROUPS = 250
#: Permissions asked about in one testIamPermissions call (Google documents no number;
#: each is answered, so the answer grows with the list).
MAX_PERMISSIONS = 1000
_MAX_PERMISSION_CHARS = 256


def _exists(state: ServerState, resource: str) -> bool:
    table = "stores" if "/dicomStores/" in resource else "datasets"
    return state.catalog.one(f"SELECT 1 FROM {table} WHERE name=?", (resource,)) is not None


def _require(state: ServerState, resource: str) -> None:
    if not _exists(state, resource):
        kind = "DICOM store" if "/dicomStores/" in resource else "dataset"
        raise errors.not_found(f"{kind} {resource.rsplit('/', 1)[1]} not found")


def _conditional(policy: dict) -> bool:
    return any("condition" in b for b in policy.get("bindings") or ())


def get_policy(state: ServerState, resource: str, params: dict) -> dict:
    """The stored policy, or an empty one; a policy with conditions only to a caller
    that asks for version 3, as IAM requires."""
    requested = params.get("options.requestedPolicyVersion")
    if requested not in (None, "", "0", "1", "3"):
        raise errors.invalid("options.requestedPolicyVersion must be 0, 1 or 3")
    _require(state, resource)
    policy = state.catalog.settings(resource).get(_FIELD)
    if policy is None:
        return {"etag": EMPTY_ETAG}
    if _conditional(policy) and requested != "3":
        raise errors.invalid("the policy has conditional role bindings: request "
                             "options.requestedPolicyVersion=3 to read it")
    return policy


def _check_size(policy: dict) -> None:
    """The documented bounds on a policy as a whole: its size and its principals."""
    if len(json.dumps(policy, separators=(",", ":")).encode()) > MAX_POLICY_BYTES:
        raise errors.invalid(f"policy is larger than {MAX_POLICY_BYTES} bytes")
    members = [m for b in policy.get("bindings") or () for m in b.get("members") or ()]
    if len(members) > MAX_PRINCIPALS:
        raise errors.invalid(f"policy.bindings may name at most {MAX_PRINCIPALS} principals")
    if sum(1 for m in members if m.startswith("group:")) > MAX_GROUPS:
        raise errors.invalid(f"policy.bindings may name at most {MAX_GROUPS} groups")


def _check_policy(policy: dict) -> None:
    _check_size(policy)
    for i, binding in enumerate(policy.get("bindings") or ()):
        where = f"policy.bindings[{i}]"
        if not _ROLE.fullmatch(binding.get("role") or ""):
            raise errors.invalid(f"{where}.role must be roles/{{role}} or a custom role name")
        members = binding.get("members") or []
        if not members:
            raise errors.invalid(f"{where}.members must name at least one principal")
        for j, member in enumerate(members):
            if not _MEMBER.fullmatch(member):
                raise errors.invalid(f"{where}.members[{j}] is not a principal "
                                     "(user:, serviceAccount:, group:, domain:, allUsers, ...)")
    version = int(policy.get("version") or 0)
    if version not in (0, 1, 3):
        raise errors.invalid("policy.version must be 0, 1 or 3")
    if _conditional(policy) and version != 3:
        raise errors.invalid("policy.version must be 3 for bindings with a condition")


def set_policy(state: ServerState, resource: str, body: dict) -> dict:
    """Replace the policy (the fields in ``updateMask``, default ``bindings, etag``).
    An ``etag`` that is not the current one means someone else wrote first: 409
    ABORTED, as IAM answers, so the caller re-reads instead of overwriting."""
    try:
        validate(body or {}, "SetIamPolicyRequest", "request")
    except ConfigError as exc:
        raise errors.invalid(str(exc)) from None
    new = (body or {}).get("policy")
    if new is None:
        raise errors.invalid("policy is required")
    _check_policy(new)
    mask = [m.strip() for m in ((body or {}).get("updateMask") or "").split(",")
            if m.strip()] or ["bindings", "etag"]  # the documented default
    unknown = [m for m in mask if m not in ("bindings", "etag", "auditConfigs", "version")]
    if unknown:
        raise errors.invalid("updateMask field not supported for a policy: "
                             f"{errors.quote(unknown[0])}")
    with state.catalog.write() as db:
        _require(state, resource)
        current = state.catalog.settings(resource).get(_FIELD) or {"etag": EMPTY_ETAG}
        if new.get("etag") and new["etag"] != current.get("etag"):
            raise errors.ApiError(409, "the policy was changed since its etag was read: "
                                  "get it again, apply the change, set it again", "ABORTED")
        stored = {k: v for k, v in current.items() if k not in ("etag", "version")}
        for field in ("bindings", "auditConfigs"):
            if field in mask:
                if new.get(field):
                    stored[field] = new[field]
                else:
                    stored.pop(field, None)
        stored["version"] = 3 if _conditional(stored) else 1
        stored["etag"] = base64.b64encode(secrets.token_bytes(8)).decode()
        state.catalog.put_setting(db, resource, _FIELD, stored)
    return stored


def held_permissions(state: ServerState, resource: str, body: dict) -> dict:
    """Every permission asked about is granted (nothing is enforced locally); none on a
    resource that does not exist, which IAM answers with an empty set, not 404."""
    try:
        validate(body or {}, "TestIamPermissionsRequest", "request")
    except ConfigError as exc:
        raise errors.invalid(str(exc)) from None
    asked = (body or {}).get("permissions") or []
    if len(asked) > MAX_PERMISSIONS:
        raise errors.invalid(f"at most {MAX_PERMISSIONS} permissions may be tested at once")
    for i, permission in enumerate(asked):
        if len(permission) > _MAX_PERMISSION_CHARS or not _PERMISSION.fullmatch(permission):
            raise errors.invalid(f"permissions[{i}] must be service.resource.verb, without "
                                 "wildcards")
    if not _exists(state, resource):
        return {}
    return {"permissions": list(dict.fromkeys(asked))} if asked else {}
