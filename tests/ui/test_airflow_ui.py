"""The Airflow 3.3 web UI of ``make up``, driven in headless Chromium as a person would.

``make up`` runs ``airflow standalone`` (SQLite) beside the local Cloud Healthcare API
server and a Cloud Storage emulator, with a seeded source store. This module starts the
same thing: the session's server and emulator (tests/conftest.py), ``dicom_deid.up.seed``
and ``airflow standalone`` with ``dicom_deid.devstack.airflow_env``, on free ports and a
throw-away ``AIRFLOW_HOME`` (one for the whole module). Then, in Debian's Chromium
through Playwright, it signs in through the login form with the password standalone
generated and:

- checks that the DAG list shows both DAGs;
- reads the trigger form of ``dicom_deidentify``: the required mark (the label's
  ``*``, Chakra's ``requiredIndicator``) on exactly the params that need a value, every
  param's description under its field, each profile offered with its plain description,
  the export formats by name, and no raw Jinja anywhere;
- fills and submits the form: the run carries the chosen values (read back through the
  REST API), is picked up by the scheduler (``validate`` succeeds), and its Run report
  link answers at once with the "in progress" page the setup task wrote;
- follows a run whose source store does not exist: ``validate`` fails on its first try,
  within seconds, nothing is created, and the report the teardown wrote says so in a
  red banner (screenshot checked);
- shows the graph of a run at its default zoom (screenshot checked);
- approves a run's human review in Required Actions (then the run exports and its
  report names the decision and the reviewer), and rejects another's;
- hands two manifests, posted as two Asset events while the handoff DAG is paused, to
  ``dicom_training_handoff`` in one run that handles both.

The runs these tests follow are triggered through the REST API, all at once, by the
first test that needs one (``runs``), so they make progress while the others look at
the UI. Every wait is bounded. Screenshots go to each test's ``tmp_path`` (their paths
are printed: ``pytest -s`` or ``-rA`` shows them).

Chromium comes from Debian (``make setup`` installs it); Playwright never downloads a
browser here. A missing Chromium fails the module, it is not skipped.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import requests
import yaml
from dicom_deid_airflow.manifest import MANIFEST_COLUMNS
from googleapiclient.discovery import Resource
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from dicom_deid.devstack import airflow_env, free_port
from dicom_deid.gcs import client as gcs_client
from dicom_deid.up import BUCKET, seed
from tests.helpers import stores_api

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-quic", "--no-first-run",
                 "--disable-component-update", "--disable-sync"]
DAG_ID, HANDOFF_DAG_ID = "dicom_deidentify", "dicom_training_handoff"
DAG_IDS = (DAG_ID, HANDOFF_DAG_ID)
# The profiles the issue names; the dropdown must offer at least these, and exactly the
# configs shipped in include/configs/deid/.
NAMED_PROFILES = {"basic", "research", "ultrasound", "keep-all-pixels-only"}
STARTUP_TIMEOUT = 180.0
UI_TIMEOUT_MS = 30_000
HTTP_TIMEOUT = 30  # SQLite behind a busy 2-core machine answers slowly at times
DEMO_DATASET = "projects/demo/locations/local/datasets/demo"  # what seed() creates
#: Params that need a value (the form marks them ``*``), and those that may stay empty.
REQUIRED_PARAMS = ("source_store", "profile", "sample_size", "export_mime_type",
                   "max_failures")
OPTIONAL_PARAMS = ("destination_store_id", "study_uids", "export_prefix", "overwrite",
                   "dry_run", "require_review")
FINISHED = ("success", "failed")
TI_DONE = ("success", "failed", "upstream_failed", "skipped", "removed")


@dataclass
class AirflowUI:
    url: str
    home: Path
    log: Path
    proc: subprocess.Popen
    store: str  # the seeded source store
    _token: str = ""

    @property
    def password(self) -> str:
        generated = self.home / "simple_auth_manager_passwords.json.generated"
        return json.loads(generated.read_text())["admin"]

    def log_tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def token(self) -> str:
        """A JWT for the REST API, from the same user and password as the UI's login."""
        if not self._token:
            r = requests.post(f"{self.url}/auth/token", timeout=HTTP_TIMEOUT,
                              json={"username": "admin", "password": self.password})
            r.raise_for_status()
            self._token = r.json()["access_token"]
        return self._token

    def api(self, path: str, method: str = "GET", body: dict | None = None) -> dict:
        r = requests.request(method, f"{self.url}/api/v2/{path}", json=body,
                             timeout=HTTP_TIMEOUT,
                             headers={"Authorization": f"Bearer {self.token()}"})
        if not r.ok:  # the API's own words, not only the status
            raise requests.HTTPError(f"{method} {path}: {r.status_code} {r.text[:2000]}",
                                     response=r)
        return r.json()

    def trigger(self, conf: dict, prefix: str) -> str:
        """A manual run of dicom_deidentify through the REST API; its run id."""
        run_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.api(f"dags/{DAG_ID}/dagRuns", "POST",
                 {"dag_run_id": run_id, "logical_date": None, "conf": conf})
        return run_id

    def run(self, run_id: str, dag_id: str = DAG_ID) -> dict:
        return self.api(f"dags/{dag_id}/dagRuns/{run_id}")

    def ti(self, run_id: str, task_id: str) -> dict:
        return self.api(f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}")

    def states(self, run_id: str) -> dict[str, str]:
        found = self.api(f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=100")
        return {t["task_id"]: t["state"] for t in found["task_instances"]}

    def report_href(self, run_id: str) -> str:
        return f"/dicom-deid/reports/{DAG_ID}/{run_id}/report.html"


def _wait(what: str, check, ui: AirflowUI, timeout: float) -> object:  # noqa: ANN001
    """Poll ``check`` until it returns something truthy; fail with the Airflow log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ui.proc.poll() is not None:
            pytest.fail(f"airflow standalone exited ({ui.proc.returncode}) while waiting "
                        f"for {what}:\n{ui.log_tail()}")
        with contextlib.suppress(requests.RequestException, ValueError, KeyError, OSError):
            result = check()
            if result:
                return result
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}:\n{ui.log_tail()}")


def _finished(ui: AirflowUI, run_id: str, timeout: float, dag_id: str = DAG_ID) -> dict:
    """The run once it has ended (bounded)."""
    return _wait(f"run {run_id} of {dag_id} to end", lambda: (
        run if (run := ui.run(run_id, dag_id))["state"] in FINISHED else None), ui, timeout)


def _failures(ui: AirflowUI, run_id: str) -> str:
    """What went wrong in a run, for an assertion message: states and the log lines."""
    return f"{ui.states(run_id)}\n" + "\n".join(
        line[:3000] for line in ui.log_tail(300_000).splitlines()
        if run_id in line and re.search(r"error|exception|failed", line, re.I))[-8000:]


def _seconds(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _pixels(path: Path, rgb: tuple[int, int, int], tolerance: int = 12) -> int:
    """How many pixels of a screenshot are ``rgb`` (within ``tolerance`` per channel)."""
    with Image.open(path) as image:
        data = np.asarray(image.convert("RGB"), dtype=np.int16)
    return int((np.abs(data - np.array(rgb, dtype=np.int16)) <= tolerance).all(-1).sum())


def _shot(page: Page, path: Path, **kwargs: object) -> Path:
    page.screenshot(path=path, **kwargs)
    print(f"screenshot: {path}")
    return path


def _open_run_report(page: Page, ui: AirflowUI, run_id: str, task_id: str) -> None:
    """On-call's way: the task's page, its Details tab, the "Run report" extra link."""
    page.goto(f"{ui.url}/dags/{DAG_ID}/runs/{run_id}/tasks/{task_id}")
    page.get_by_role("link", name="Details", exact=True).click()  # lists "Extra Links"
    link = page.get_by_role("link", name="Run report")
    expect(link).to_have_attribute("href", ui.report_href(run_id))
    link.click()
    expect(page).to_have_url(f"{ui.url}{ui.report_href(run_id)}")
    expect(page.locator("section#status")).to_be_visible()


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to standalone's process group (it and every component it started), then
    SIGKILL to whatever of it, or of anything it started, is still alive."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(family, timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(alive, timeout=10)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


@pytest.fixture(scope="module")
def airflow_ui(tmp_path_factory, server, gcs_emulator) -> Iterator[AirflowUI]:
    root = tmp_path_factory.mktemp("airflow-ui")
    store = seed(server.url)  # what `make up` seeds: projects/demo/.../dicomStores/source
    port = free_port()
    env = airflow_env(root / "home", server.url, gcs_emulator.host)
    env.update({
        # tests/conftest.py puts the test session in unit-test mode; a real deployment isn't.
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        # Tasks reach the API server's execution API; its default assumes port 8080.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        # Fewer idle LocalExecutor workers than the default 32: faster to start on 2 cores.
        "AIRFLOW__CORE__PARALLELISM": "4",
    })
    for key in ("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "AIRFLOW__CORE__AUTH_MANAGER"):
        env.pop(key, None)  # standalone's own admin user, with a generated password
    log = root / "standalone.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([AIRFLOW, "standalone"], env=env, cwd=root, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    ui = AirflowUI(f"http://127.0.0.1:{port}", root / "home", log, proc, store)
    try:
        def healthy() -> bool:
            health = requests.get(f"{ui.url}/api/v2/monitor/health",
                                  timeout=HTTP_TIMEOUT).json()
            return all(health[c]["status"] == "healthy" for c in
                       ("metadatabase", "scheduler", "dag_processor", "triggerer"))

        _wait("/api/v2/monitor/health", healthy, ui, STARTUP_TIMEOUT)

        def parsed() -> bool:
            dags = {d["dag_id"] for d in ui.api("dags?limit=100")["dags"]}
            if set(DAG_IDS) <= dags:
                return True
            errors = ui.api("importErrors")["import_errors"]
            if errors:  # a DAG that does not import will not appear: say why
                pytest.fail("DAG import errors:\n" + "\n".join(
                    f"{e['filename']}: {e['stack_trace'][-2000:]}" for e in errors))
            return False

        _wait(f"the DAG processor to serialize {DAG_IDS}", parsed, ui, STARTUP_TIMEOUT)
        yield ui
    finally:
        _stop_group(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: the UI tests need Debian's chromium "
                    "(`make setup` installs it; or `apt-get install chromium`). "
                    "Playwright must not download a browser of its own here.")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(request, browser: Browser, airflow_ui: AirflowUI, tmp_path: Path) -> Iterator[Page]:
    """A new browser context, signed in through Airflow's login form."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto(f"{airflow_ui.url}/")
        expect(page).to_have_url(re.compile(r"/auth/login"))
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(airflow_ui.password)
        page.get_by_role("button", name="Sign in").click()
        expect(page).not_to_have_url(re.compile(r"/auth/login"))
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            with contextlib.suppress(Exception):
                page.screenshot(path=tmp_path / "failure.png", full_page=True)
                print(f"screenshot of the failure: {tmp_path / 'failure.png'}")
        context.close()


def test_the_dag_list_shows_both_dags(page: Page, airflow_ui: AirflowUI) -> None:
    page.get_by_role("link", name="Dags", exact=True).first.click()
    expect(page).to_have_url(re.compile(r"/dags$"))
    for dag_id in DAG_IDS:
        link = page.get_by_role("link", name=dag_id, exact=True)
        expect(link).to_be_visible()
        expect(link).to_have_attribute("href", re.compile(f"/dags/{dag_id}$"))


def test_the_trigger_form_creates_a_run_with_the_chosen_params(
        page: Page, airflow_ui: AirflowUI, tmp_path: Path) -> None:
    shipped = sorted(p.stem for p in (REPO / "include" / "configs" / "deid").glob("*.json"))
    run_id = f"ui-{uuid.uuid4().hex[:10]}"
    destination = f"ui-deid-{uuid.uuid4().hex[:6]}"

    page.goto(f"{airflow_ui.url}/dags")
    page.get_by_role("link", name="dicom_deidentify", exact=True).click()
    expect(page).to_have_url(re.compile(r"/dags/dicom_deidentify$"))
    # The DAG list has icon-only "Trigger Dag" buttons too; the DAG's page has one
    # labelled "Trigger".
    page.get_by_test_id("trigger-dag-button").filter(has_text="Trigger").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Trigger Dag - dicom_deidentify")
    expect(dialog).to_contain_text("Run Parameters")

    # The profile Param (type string + enum) renders as a searchable select.
    profile = dialog.get_by_label("De-identification profile")
    profile.click()
    options = page.get_by_role("option")
    expect(options.first).to_be_visible()
    offered = options.all_inner_texts()
    assert sorted(offered) == shipped, (offered, shipped)
    assert set(offered) >= NAMED_PROFILES, offered
    page.get_by_role("option", name="research", exact=True).click()
    expect(dialog.locator('input[name="element_profile"]')).to_have_value("research")

    # Text and number Params render as inputs named element_<param>.
    dialog.locator('input[name="element_source_store"]').fill(airflow_ui.store)
    dialog.locator('input[name="element_destination_store_id"]').fill(destination)
    dialog.locator('input[name="element_sample_size"]').fill("3")
    unpause = dialog.get_by_role("checkbox", name=re.compile("Unpause dicom_deidentify"))
    expect(unpause).to_be_checked()  # the run must be scheduled, not only created

    dialog.get_by_role("button", name="Advanced Options").click()
    dialog.get_by_label("Run ID").fill(run_id)
    conf_editor = dialog.get_by_text('"profile": "research"')
    expect(conf_editor).to_be_visible()  # the form's values, as the run's conf JSON
    page.screenshot(path=tmp_path / "trigger-form.png")

    dialog.get_by_test_id("trigger-dag-submit").click()
    expect(dialog).to_be_hidden()
    expect(page).to_have_url(re.compile(f"/dags/dicom_deidentify/runs/{run_id}$"))

    run = airflow_ui.api(f"dags/dicom_deidentify/dagRuns/{run_id}")
    assert run["run_type"] == "manual" and run["triggered_by"] == "ui", run
    assert run["triggering_user_name"] == "admin", run
    conf = run["conf"]
    assert conf["profile"] == "research", conf
    assert conf["source_store"] == airflow_ui.store, conf
    assert conf["destination_store_id"] == destination, conf
    assert conf["sample_size"] == 3, conf
    assert conf["export_mime_type"] == "application/dicom", conf  # untouched default
    assert airflow_ui.api("dags/dicom_deidentify")["is_paused"] is False

    # The scheduler picks the run up and the DAG's own checks accept the chosen params.
    def validated() -> str | None:
        state = airflow_ui.api(
            f"dags/dicom_deidentify/dagRuns/{run_id}/taskInstances/validate")["state"]
        return state if state in ("success", "failed", "upstream_failed", "skipped",
                                  "up_for_retry", "removed") else None

    state = _wait(f"task 'validate' of run {run_id}", validated, airflow_ui, 120)
    assert state == "success", "\n".join(
        line[:3000] for line in airflow_ui.log_tail(200_000).splitlines()
        if run_id in line and re.search(r"error|exception|failed", line, re.I))

    # The run's page in the UI lists it.
    expect(page.get_by_text(run_id).first).to_be_visible()

    # On-call's way to the run report: the task's "Run report" extra link, opened with
    # the browser's own session (the report is written when the run ends: until then
    # the API server says so, which proves the session was accepted).
    page.goto(f"{airflow_ui.url}/dags/dicom_deidentify/runs/{run_id}/tasks/validate")
    page.get_by_role("link", name="Details", exact=True).click()  # lists "Extra Links"
    link = page.get_by_role("link", name="Run report")
    href = f"/dicom-deid/reports/dicom_deidentify/{run_id}/report.html"
    expect(link).to_have_attribute("href", href)
    early = page.request.get(f"{airflow_ui.url}{href}")
    assert early.status == 404 and "when the run ends" in early.text(), early.text()
    anonymous = page.context.browser.new_context().request.get(f"{airflow_ui.url}{href}")
    assert anonymous.status == 401, anonymous.status
