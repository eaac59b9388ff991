"""Where to read the audit log entries of one long-running operation.

The run report links each operation it started to the Cloud Audit Logs entries of that
operation: the start (``operation.first``) and every poll of it share ``operation.id``,
so one filter finds who started it, when, and how often it was read. On Google the
entries are in Cloud Logging (Admin Activity is always on; Data Access entries exist
only when Data Access audit logs are enabled for ``healthcare.googleapis.com``), so the
link opens the Logs Explorer with that filter. The local server keeps the same entries
and serves them at ``/v1/auditLogs/entries``, so the link opens that instead. Only the
operation name and the endpoint go into the URL: no PHI, no credentials.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from dicom_deid_airflow.hooks.healthcare import is_google_endpoint

LOGS_EXPLORER = "https://console.cloud.google.com/logs/query"
SERVICE = "healthcare.googleapis.com"


def operation_filter(operation_name: str) -> str:
    """The Cloud Logging filter of one operation's entries (the same text works on the
    local server's endpoint)."""
    return f'operation.id="{operation_name}"'


def audit_log_url(api_endpoint: str, operation_name: str) -> str:
    """The audit log entries of ``operation_name``: the Logs Explorer on Google (an
    empty endpoint means Google, as the hook defaults to it), the local server's
    ``/v1/auditLogs/entries`` anywhere else. The project comes from the operation's
    name (``projects/P/...``); a name without one gets no ``?project=``."""
    if not api_endpoint or is_google_endpoint(api_endpoint):
        query = f'protoPayload.serviceName="{SERVICE}" AND {operation_filter(operation_name)}'
        url = f"{LOGS_EXPLORER};query={quote(query, safe='')}"
        parts = operation_name.strip("/").split("/")
        if len(parts) > 1 and parts[0] == "projects" and parts[1]:
            url += f"?project={quote(parts[1], safe='')}"
        return url
    base = api_endpoint.rstrip("/")
    return f"{base}/v1/auditLogs/entries?{urlencode({'filter': operation_filter(operation_name)})}"
