"""Quality gates: Great Expectations 1.x suites run over tables built at run time.

Why not the GX provider's ``GXValidateDataFrameOperator``: it builds its dataframe at DAG
parse time, and these tables (the verification sample, the store counts, the exported
objects, the manifest) exist only once the run has made them. So the gate runs the GX
API inside the task: an ephemeral context (nothing on disk, nothing shared between
runs), a pandas datasource with a whole-dataframe batch definition, a suite built from a
JSON file under ``include/configs/quality/``, and ``ValidationDefinition.run``.

Suite files (the format is documented in ``include/configs/quality/README.md``)::

    {"name": "export",
     "description": "why this gate exists",
     "params": {"expected_count": null},
     "expectations": [
        {"type": "expect_table_row_count_to_equal",
         "kwargs": {"value": "{{ expected_count }}"},
         "notes": "why this expectation"}]}

``type`` is a GX expectation type (snake case), mapped onto its
``gx.expectations.<CamelCase>`` class; ``kwargs`` are that class's arguments. A kwarg
string that is exactly ``"{{ name }}"`` is replaced by the parameter's value with its
type (an int stays an int); a placeholder inside a longer string is substituted as
text. Values come from ``params=`` of :func:`run_gate`, then from the suite's
``params`` defaults; a placeholder with neither (or a null default) is an error.

A failed gate is deterministic: retrying it gives the same answer, so
:func:`raise_if_failed` raises ``AirflowFailException`` (no retries), naming each
failed expectation with a summary of what was observed: counts and scalars, never the
offending values themselves (the tables hold no PHI by construction, but a summary
that cannot quote a value cannot leak one either). GX is imported lazily: it takes
seconds to import, and plugins are imported by every Airflow component.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "FailedExpectation",
    "GateResult",
    "counts_table",
    "load_suite",
    "raise_if_failed",
    "run_gate",
]

log = logging.getLogger(__name__)

# GX logs hundreds of INFO lines while importing (docs decorators, datasource
# registration) and more per validation; under Airflow's logging they would bury the
# task's own log. Its warnings and errors still show.
for _name in ("great_expectations", "great_expectations._docs_decorators"):
    logging.getLogger(_name).setLevel(logging.WARNING)

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_MAX_TEXT = 120


class SuiteError(ValueError):
    """A suite file that cannot be turned into expectations (a configuration error)."""


@dataclass(frozen=True)
class FailedExpectation:
    """One failed expectation: its type, its column(s) and what was observed.

    ``observed`` holds counts (``unexpected_count``, ``element_count``,
    ``missing_count``), a scalar ``observed_value`` (a row count, a mean) or, if the
    expectation could not be evaluated, ``exception`` with GX's message.
    """

    expectation: str
    column: str | None
    observed: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """``type(column=...): key=value, ...`` for logs and exception messages."""
        where = f"(column={self.column})" if self.column else ""
        what = ", ".join(f"{k}={v}" for k, v in self.observed.items())
        return f"{self.expectation}{where}: {what}" if what else f"{self.expectation}{where}"


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate: small and PHI-free, so it fits in XCom and reports.

    ``result_path`` is the JSON written by the gate (GX's full validation result plus
    this summary), for the run report and on-call.
    """

    name: str
    suite: str
    success: bool
    evaluated: int
    failed: list[FailedExpectation]
    result_path: Path

    @property
    def failed_expectations(self) -> list[str]:
        """The types of the failed expectations, in suite order."""
        return [f.expectation for f in self.failed]

    def summary(self) -> str:
        """One line: which gate, how many failed, and each failure described."""
        if self.success:
            return f"quality gate {self.name!r} passed ({self.evaluated} expectations)"
        failures = "; ".join(f.describe() for f in self.failed)
        return (f"quality gate {self.name!r} failed {len(self.failed)} of {self.evaluated} "
                f"expectations: {failures} (result: {self.result_path})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for XCom and the run report)."""
        return {
            "name": self.name, "suite": self.suite, "success": self.success,
            # The file's name only, beside the report: no server path in XCom or the report.
            "evaluated": self.evaluated, "result_file": self.result_path.name,
            "failed": [{"expectation": f.expectation, "column": f.column,
                        "observed": f.observed} for f in self.failed],
        }


def load_suite(suite_path: Path, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The suite file with its placeholders filled: ``{"name", "expectations": [...]}``.

    Raises SuiteError naming the file and the problem (bad JSON, missing keys, a
    placeholder without a value).
    """
    path = Path(suite_path)
    try:
        suite = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SuiteError(f"suite {path.name}: cannot read ({exc})") from None
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise SuiteError(f"suite {path.name}: expected an object with an 'expectations' list")
    values = {**(suite.get("params") or {}), **dict(params or {})}
    missing: set[str] = set()

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            whole = _PLACEHOLDER.fullmatch(value.strip())
            if whole:
                key = whole.group(1)
                if values.get(key) is None:
                    missing.add(key)
                    return value
                return values[key]

            def text(m: re.Match) -> str:
                if values.get(m.group(1)) is None:
                    missing.add(m.group(1))
                    return m.group(0)
                return str(values[m.group(1)])

            return _PLACEHOLDER.sub(text, value)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    expectations = []
    for i, item in enumerate(suite["expectations"]):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise SuiteError(f"suite {path.name}: expectations[{i}] needs a 'type'")
        expectations.append({"type": item["type"], "kwargs": fill(item.get("kwargs") or {}),
                             "notes": item.get("notes")})
    if missing:
        raise SuiteError(f"suite {path.name}: no value for parameter(s) "
                         f"{', '.join(sorted(missing))}")
    return {"name": str(suite.get("name") or path.stem), "expectations": expectations}


def _expectation_class(gx: Any, type_name: str, suite_name: str) -> Any:
    camel = "".join(part.capitalize() for part in type_name.split("_"))
    cls = getattr(gx.expectations, camel, None)
    if cls is None or getattr(cls, "expectation_type", type_name) != type_name:
        from great_expectations.expectations.registry import get_expectation_impl

        try:
            cls = get_expectation_impl(type_name)
        except Exception:
            raise SuiteError(f"suite {suite_name}: unknown expectation type "
                             f"{type_name!r}") from None
    return cls


def _context(gx: Any) -> Any:
    """An ephemeral context with analytics and progress bars off (tqdm bars go to
    stderr, one per metric batch, and clutter task logs)."""
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            return value.item()  # numpy scalars
        except (AttributeError, ValueError):
            pass
    return value


def _summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Counts and scalars of one expectation's result; never its unexpected values."""
    out: dict[str, Any] = {}
    # exception_info is flat ({"raised_exception": ...}) when the expectation itself
    # raised, and keyed by metric configuration when a metric did (a missing column).
    info = result.get("exception_info") or {}
    infos = [info] if "raised_exception" in info else [
        v for v in info.values() if isinstance(v, dict)]
    messages = [str(i.get("exception_message") or "exception")
                for i in infos if i.get("raised_exception")]
    if messages:
        out["exception"] = "; ".join(dict.fromkeys(messages))[:_MAX_TEXT]
        return out
    body = result.get("result") or {}
    observed = _jsonable(body.get("observed_value"))
    if isinstance(observed, (bool, int, float)) or (observed is None and "observed_value" in body):
        out["observed_value"] = observed
    elif isinstance(observed, str):
        out["observed_value"] = observed[:_MAX_TEXT]
    elif isinstance(observed, (list, tuple)):
        out["observed_items"] = len(observed)
    for key in ("unexpected_count", "element_count", "missing_count"):
        if key in body and body[key] is not None:
            out[key] = _jsonable(body[key])
    return out


def _column(kwargs: Mapping[str, Any]) -> str | None:
    if "column" in kwargs:
        return str(kwargs["column"])
    if "column_A" in kwargs and "column_B" in kwargs:
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    if "column_list" in kwargs:
        return ",".join(map(str, kwargs["column_list"]))
    return None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "gate"


def run_gate(suite_path: Path, table: pd.DataFrame, *, name: str,
             params: Mapping[str, Any] | None = None,
             out_dir: Path | None = None) -> GateResult:
    """Validate ``table`` against the suite at ``suite_path``; write the result JSON.

    ``name`` names the gate in logs, messages and the result file
    (``out_dir / f"{name}.json"``; ``out_dir`` defaults to a new temporary directory,
    pass the run's report directory). ``params`` fill the suite's ``{{ ... }}``
    placeholders. Returns the outcome; it does not raise on failure (see
    :func:`raise_if_failed`), so a caller can record the result first.
    """
    suite_spec = load_suite(suite_path, params)

    import great_expectations as gx

    ctx = _context(gx)
    batch = (ctx.data_sources.add_pandas(f"{_safe(name)}-source")
             .add_dataframe_asset(f"{_safe(name)}-table")
             .add_batch_definition_whole_dataframe(f"{_safe(name)}-batch"))
    suite = ctx.suites.add(gx.ExpectationSuite(name=suite_spec["name"]))
    for item in suite_spec["expectations"]:
        cls = _expectation_class(gx, item["type"], suite_spec["name"])
        kwargs = dict(item["kwargs"])
        if item.get("notes"):
            kwargs["notes"] = item["notes"]
        try:
            suite.add_expectation(cls(**kwargs))
        except Exception as exc:  # pydantic validation of the kwargs
            raise SuiteError(f"suite {suite_spec['name']}: {item['type']}: invalid kwargs "
                             f"({type(exc).__name__})") from None
    definition = ctx.validation_definitions.add(
        gx.ValidationDefinition(name=f"{_safe(name)}-validation", data=batch, suite=suite))
    outcome = definition.run(batch_parameters={"dataframe": table})

    raw = outcome.to_json_dict()
    results = raw.get("results") or []
    order: dict[tuple[str, str | None], int] = {}
    for i, item in enumerate(suite_spec["expectations"]):
        order.setdefault((item["type"], _column(item["kwargs"])), i)
    failed = [
        FailedExpectation(
            expectation=r["expectation_config"]["type"],
            column=_column(r["expectation_config"].get("kwargs") or {}),
            observed=_summarise(r))
        for r in results if not r.get("success")
    ]
    failed.sort(key=lambda f: order.get((f.expectation, f.column), len(order)))

    directory = Path(out_dir) if out_dir is not None else Path(
        tempfile.mkdtemp(prefix="dicom-deid-gate-"))
    directory.mkdir(parents=True, exist_ok=True)
    result_path = directory / f"{_safe(name)}.json"
    gate = GateResult(name=name, suite=suite_spec["name"], success=bool(outcome.success),
                      evaluated=len(results), failed=failed, result_path=result_path)
    result_path.write_text(json.dumps({"gate": gate.to_dict(), "great_expectations": raw},
                                      indent=2, default=str), encoding="utf-8")
    (log.info if gate.success else log.error)("%s", gate.summary())
    return gate


def raise_if_failed(result: GateResult) -> None:
    """Fail the task, without retries, if the gate failed.

    A gate failure is deterministic (the same table fails the same way), so retrying
    wastes a slot and delays the page: ``AirflowFailException`` skips the retries. The
    message lists every failed expectation with its observed counts.
    """
    if result.success:
        return
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(result.summary())


def counts_table(source_instances: int, destination_instances: int,
                 failures: int) -> pd.DataFrame:
    """The one-row table the ``counts`` suite validates: nothing is lost when every
    source instance is either in the destination or counted as a failure by the
    operation (``metadata.counter.failure``)."""
    accounted = destination_instances + failures
    return pd.DataFrame({
        "source_instances": [int(source_instances)],
        "destination_instances": [int(destination_instances)],
        "failures": [int(failures)],
        "accounted": [int(accounted)],
        "reconciled": [accounted == source_instances],
    })
