"""Optional Vertex AI training on a handed-off export: configuration and job spec.

On Google Cloud a team may want every de-identified export to start a training job.
That is configuration, not code, and it is **off by default**: the training handoff
DAG reads the Airflow Variable :data:`VARIABLE` (JSON) when it runs - never when the
DAG file is parsed, which must stay free of database and network calls - and starts
a Vertex AI CustomJob through the Google provider's ``CreateCustomJobOperator`` only
when the Variable says ``"enabled": true`` (or a manual run sets ``train_on_vertex``).

Why a CustomJob and not ``CreateCustomContainerTrainingJobOperator``: that operator
templates only ``region``, ``display_name``, ``command`` and a few model fields, so the
image, project, args, environment and machine could not come from a run-time
Variable or XCom without subclassing it. ``CreateCustomJobOperator`` templates
``project_id``, ``region``, ``gcp_conn_id`` and the whole ``custom_job`` body, so the
job is built here, at run time, and handed to the provider's operator unchanged.

The training container finds the manifest two ways: ``--manifest gs://...`` appended
to its args (the flag is configurable) and the ``DICOM_DEID_MANIFEST`` environment
variable; ``DICOM_DEID_DATASET_STATS`` points at the statistics the local load
wrote. The job body lands in XCom and the task's rendered fields, which are stored
and shown in clear: the validation below refuses environment variables whose names
look like secrets (use the job's service account and Secret Manager instead).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dicom_deid.gcs import GcsUriError, parse_gs_uri

__all__ = ["ENV_MANIFEST", "ENV_STATS", "VARIABLE", "VertexConfig", "VertexConfigError",
           "custom_job", "handoff_job", "parse_config", "read_variable"]

VARIABLE = "dicom_deid_vertex_ai"
"""The Airflow Variable (JSON) that configures the Vertex AI handoff."""

ENV_MANIFEST = "DICOM_DEID_MANIFEST"
ENV_STATS = "DICOM_DEID_DATASET_STATS"

_PROJECT = re.compile(r"^([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+$")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9.-]*(:[0-9]+)?/\S+$")
_MACHINE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")
_ACCELERATOR = re.compile(r"^[A-Z][A-Z0-9_]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|API_?KEY|PRIVATE_?KEY",
                          re.IGNORECASE)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_REQUIRED = ("project_id", "region", "container_uri")
_KEYS = ("enabled", *_REQUIRED, "display_name", "machine_type", "replica_count",
         "accelerator_type", "accelerator_count", "args", "env", "manifest_arg",
         "base_output_dir", "service_account", "gcp_conn_id")


class VertexConfigError(ValueError):
    """The Variable does not describe a job Vertex AI would accept; names the key(s)."""


@dataclass(frozen=True)
class VertexConfig:
    """A validated ``dicom_deid_vertex_ai`` Variable (see :func:`parse_config`).

    ``replica_count`` counts every machine of the job: Vertex AI wants exactly one
    chief in the first worker pool, so more than one becomes one chief plus
    ``replica_count - 1`` workers with the same machine and container.
    """

    project_id: str
    region: str
    container_uri: str
    enabled: bool = False
    display_name: str = "dicom-deid-training"
    machine_type: str = "n1-standard-4"
    replica_count: int = 1
    accelerator_type: str | None = None
    accelerator_count: int = 0
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    manifest_arg: str | None = "--manifest"
    base_output_dir: str | None = None
    service_account: str | None = None
    gcp_conn_id: str = "google_cloud_default"


def _is_gs_uri(value: str) -> bool:
    try:
        parse_gs_uri(value)
    except GcsUriError:
        return False
    return True


def _problems(config: Mapping[str, Any], required: bool) -> list[str]:
    """Every problem in ``config``, each naming its key (the value is not echoed: it
    could be anything a person pasted into the Variable)."""
    out = [f"unknown key {k!r} (expected some of {', '.join(_KEYS)})"
           for k in config if k not in _KEYS]
    if required:
        out += [f"missing key {k!r}" for k in _REQUIRED if config.get(k) in (None, "")]

    def check(key: str, ok: bool, what: str) -> None:
        if key in config and config[key] is not None and not ok:
            out.append(f"{key!r} must be {what}")

    def text(key: str, pattern: re.Pattern[str] | None = None) -> bool:
        value = config.get(key)
        return isinstance(value, str) and bool(value) and (
            pattern is None or bool(pattern.match(value)))

    def integer(key: str, low: int) -> bool:
        value = config.get(key)
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    check("enabled", isinstance(config.get("enabled"), bool), "true or false")
    check("project_id", text("project_id", _PROJECT), "a Google Cloud project ID")
    check("region", text("region", _REGION), "a Vertex AI region such as 'us-central1'")
    check("container_uri", text("container_uri", _IMAGE),
          "a container image such as 'us-docker.pkg.dev/PROJECT/REPO/IMAGE:TAG'")
    name = config.get("display_name")
    check("display_name", isinstance(name, str) and 0 < len(name) <= 128,
          "a string of 1 to 128 characters")
    check("machine_type", text("machine_type", _MACHINE),
          "a Compute Engine machine type such as 'n1-standard-4'")
    check("replica_count", integer("replica_count", 1), "an integer >= 1")
    check("accelerator_type", text("accelerator_type", _ACCELERATOR),
          "an accelerator type such as 'NVIDIA_TESLA_T4'")
    check("accelerator_count", integer("accelerator_count", 0), "an integer >= 0")
    if config.get("accelerator_type") and not config.get("accelerator_count"):
        out.append("'accelerator_count' must be >= 1 when 'accelerator_type' is set")
    if config.get("accelerator_count") and not config.get("accelerator_type"):
        out.append("'accelerator_type' must be set when 'accelerator_count' is")
    args = config.get("args")
    check("args", isinstance(args, list) and all(isinstance(a, str) for a in args),
          "a list of strings")
    env = config.get("env")
    if "env" in config and env is not None:
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            out.append("'env' must be an object of string values")
        else:
            for key in env:
                if not _ENV_NAME.match(key):
                    out.append(f"'env' name {key!r} is not an environment variable name")
                elif key in (ENV_MANIFEST, ENV_STATS):
                    out.append(f"'env' name {key!r} is reserved: the DAG sets it")
                elif _SECRET_NAME.search(key):
                    out.append(f"'env' name {key!r} looks like a secret: the job body is "
                               "stored in clear (XCom, rendered fields); use the job's "
                               "service account and Secret Manager")
    marg = config.get("manifest_arg")
    check("manifest_arg", isinstance(marg, str) and marg.startswith("-") and " " not in marg,
          "a flag such as '--manifest', or null to pass the manifest by environment only")
    check("base_output_dir", text("base_output_dir") and _is_gs_uri(config["base_output_dir"]),
          "a gs://bucket[/prefix] URI")
    check("service_account", text("service_account", _EMAIL), "a service account e-mail")
    check("gcp_conn_id", text("gcp_conn_id"), "an Airflow connection ID")
    return out


def parse_config(value: str | Mapping[str, Any] | None, *,
                 force: bool = False) -> VertexConfig | None:
    """The Variable's value as a :class:`VertexConfig`, or ``None`` when Vertex is off.

    Off means: no Variable, or ``"enabled"`` not true and the run did not ``force``
    it (the ``train_on_vertex`` param). The keys present are type-checked even when
    off, so a typo (``"enable": true``) fails loudly instead of silently disabling
    training; the job's required keys are only required when it is to run.

    :raises VertexConfigError: listing every bad or missing key.
    """
    if value is None or value == "":
        if force:
            raise VertexConfigError(f"train_on_vertex is set but the Airflow Variable "
                                    f"{VARIABLE!r} is not: it holds the job's settings")
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise VertexConfigError(f"Variable {VARIABLE!r} is not valid JSON (line "
                                    f"{exc.lineno}, column {exc.colno})") from None
    if not isinstance(value, Mapping):
        raise VertexConfigError(f"Variable {VARIABLE!r} must be a JSON object")
    run = force or value.get("enabled") is True
    problems = _problems(value, required=run)
    if problems:
        raise VertexConfigError(f"Variable {VARIABLE!r}: " + "; ".join(problems))
    if not run:
        return None
    values = {k: v for k, v in value.items() if v is not None}
    values["args"] = tuple(values.get("args", ()))
    values["env"] = dict(values.get("env", {}))
    if "manifest_arg" in value:  # an explicit null turns the flag off
        values["manifest_arg"] = value["manifest_arg"]
    return VertexConfig(**values)


def read_variable() -> str | None:
    """The Variable's raw value, or ``None``. Call it at run time only (inside a task):
    at parse time it would be a metadata-database call on every DAG parse."""
    from airflow.sdk import Variable

    return Variable.get(VARIABLE, default=None)


def custom_job(config: VertexConfig, manifest_uri: str, stats_uri: str | None) -> dict[str, Any]:
    """The ``CustomJob`` body (Vertex AI v1, as a dict) that trains on the manifest.

    Checked against the real ``google.cloud.aiplatform_v1.types.CustomJob`` message, so
    a field Vertex AI would reject fails here, in the deciding task, not after submission.
    """
    from google.cloud.aiplatform_v1.types import CustomJob

    args = list(config.args)
    if config.manifest_arg:
        args += [config.manifest_arg, manifest_uri]
    env = [{"name": k, "value": v} for k, v in sorted(config.env.items())]
    env.append({"name": ENV_MANIFEST, "value": manifest_uri})
    if stats_uri:
        env.append({"name": ENV_STATS, "value": stats_uri})
    machine: dict[str, Any] = {"machine_type": config.machine_type}
    if config.accelerator_type:
        machine.update(accelerator_type=config.accelerator_type,
                       accelerator_count=config.accelerator_count)
    pool = {"machine_spec": machine, "replica_count": 1,
            "container_spec": {"image_uri": config.container_uri, "args": args, "env": env}}
    pools = [pool]
    if config.replica_count > 1:
        pools.append({**pool, "replica_count": config.replica_count - 1})
    job_spec: dict[str, Any] = {"worker_pool_specs": pools}
    if config.base_output_dir:
        job_spec["base_output_directory"] = {"output_uri_prefix": config.base_output_dir}
    if config.service_account:
        job_spec["service_account"] = config.service_account
    body = {"display_name": config.display_name, "job_spec": job_spec}
    try:
        CustomJob(body)
    except (ValueError, TypeError, KeyError) as exc:
        raise VertexConfigError(f"Variable {VARIABLE!r} makes an invalid CustomJob: "
                                f"{type(exc).__name__}") from None
    return body


def handoff_job(manifest_uri: str, stats_uri: str | None, value: str | Mapping[str, Any] | None,
                *, force: bool = False) -> dict[str, Any] | None:
    """What the Vertex AI task needs, or ``None`` when it should be skipped.

    The keys are the templated fields of ``CreateCustomJobOperator``: ``project_id``,
    ``region``, ``gcp_conn_id`` and ``custom_job``. Only locations and settings, no
    PHI: the manifest lists URIs and clinical attributes, it is not read here.
    """
    config = parse_config(value, force=force)
    if config is None:
        return None
    if not _is_gs_uri(manifest_uri):
        raise VertexConfigError("the manifest must be a gs:// URI for Vertex AI to read it")
    return {"project_id": config.project_id, "region": config.region,
            "gcp_conn_id": config.gcp_conn_id,
            "custom_job": custom_job(config, manifest_uri, stats_uri)}
