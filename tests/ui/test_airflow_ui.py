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
- announces two manifests (Asset events) while ``dicom_training_handoff`` is paused and
  a third once it is unpaused: one handoff run handles all three.

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
import psutil
import pytest
import requests
import yaml
from googleapiclient.discovery import Resource
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from dicom_deid.devstack import airflow_env, free_port
from dicom_deid.gcs import client as gcs_client
from dicom_deid.up import BUCKET, prepare_airflow, seed
from tests.dags.helpers import write_minimal_export
from tests.helpers import stores_api

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-quic", "--no-first-run",
                 "--disable-component-update", "--disable-sync"]
DAG_ID, HANDOFF_DAG_ID = "dicom_deidentify", "dicom_training_handoff"
INCREMENTAL_DAG_ID = "dicom_deidentify_incremental"
DAG_IDS = (DAG_ID, HANDOFF_DAG_ID, INCREMENTAL_DAG_ID)
# The profiles the issue names; the dropdown must offer at least these, and exactly the
# configs shipped in include/configs/deid/.
NAMED_PROFILES = {"basic", "research", "ultrasound", "keep-all-pixels-only"}
STARTUP_TIMEOUT = 180.0
UI_TIMEOUT_MS = 30_000
# expect()'s own default (5 s) is short for pages that fetch after they render (task
# logs, HITL forms) on a busy 2-core machine.
expect.set_options(timeout=15_000)
HTTP_TIMEOUT = 30  # SQLite behind a busy 2-core machine answers slowly at times
LOCKED_RETRIES = 3  # see AirflowUI.api
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
        """A REST call as the UI makes it. Airflow's SQLite metadata database lets one
        writer in at a time, and the API server answers a request that waited 5 s for
        the lock with 500 "Database error" (its ``orig_error``, shown here through
        ``[api] expose_stacktrace``, says "database is locked"): a person would click
        again, so this asks again, up to ``LOCKED_RETRIES`` times. Waiting longer for
        the lock is no cure: the API server then stalls whole (tried: a 60 s wait held
        every request and the task runners for a minute). Any other error raises."""
        for attempt in range(LOCKED_RETRIES + 1):
            r = requests.request(method, f"{self.url}/api/v2/{path}", json=body,
                                 timeout=HTTP_TIMEOUT,
                                 headers={"Authorization": f"Bearer {self.token()}"})
            if r.ok:
                return r.json()
            if not (r.status_code == 500 and "database is locked" in r.text
                    and attempt < LOCKED_RETRIES):
                break
            time.sleep(2)
        # The API's own words, not only the status.
        raise requests.HTTPError(f"{method} {path}: {r.status_code} {r.text[:2000]}"
                                 f"{self._logged(r.text)}", response=r)

    def _logged(self, answer: str) -> str:
        """What the API server logged under the error id a 500 names ("look for ID
        …"): the answer alone hides the statement and the database's own error."""
        found = re.search(r"look for ID (\w+)", answer)
        if not found:
            return ""
        log = self.log.read_text(errors="replace") if self.log.exists() else ""
        at = log.find(f"Error with id {found[1]}")
        return f"\napi server log:\n{log[at:at + 3000]}" if at >= 0 else ""

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
        # A 500's body names the database's own error ("database is locked"): AirflowUI.api
        # tells a lock conflict from any other failure by it.
        "AIRFLOW__API__EXPOSE_STACKTRACE": "True",
    })
    for key in ("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "AIRFLOW__CORE__AUTH_MANAGER"):
        env.pop(key, None)  # standalone's own admin user, with a generated password
    prepare_airflow(env)  # as `make up` does: the DB migrated, the healthcare_api pool
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


@pytest.fixture(scope="module")
def runs(airflow_ui: AirflowUI) -> dict[str, str]:
    """The runs the tests below follow, triggered together (REST API) so they make
    progress while the tests before theirs look at the UI:

    - ``failed``: a source store that does not exist, in a dataset that does, and a
      destination store id of its own (which must not get created);
    - ``approve`` and ``reject``: the seeded store, a small sample, ``require_review``.
    """
    airflow_ui.api(f"dags/{DAG_ID}", "PATCH", {"is_paused": False})
    missing = f"{DEMO_DATASET}/dicomStores/missing-{uuid.uuid4().hex[:8]}"
    destination = f"ui-never-{uuid.uuid4().hex[:8]}"
    reviewed = {"source_store": airflow_ui.store, "sample_size": 2, "require_review": True}
    return {
        "failed": airflow_ui.trigger({"source_store": missing,
                                      "destination_store_id": destination}, "ui-fail"),
        "missing_store": missing, "destination_store_id": destination,
        "approve": airflow_ui.trigger(reviewed, "ui-approve"),
        "reject": airflow_ui.trigger(reviewed, "ui-reject"),
    }


def _run_params(page: Page) -> Locator:
    """The trigger dialog's Run Parameters section."""
    # The accordion's region is labelled by an id with spaces in it, so it has no
    # accessible name: found by the id's end instead.
    section = page.get_by_role("dialog").locator(
        '[data-part="item-content"][id$=":content:Run Parameters"]')
    expect(section).to_be_visible()
    return section


def _open_trigger_form(page: Page, ui: AirflowUI) -> Locator:
    page.goto(f"{ui.url}/dags")
    page.get_by_role("link", name=DAG_ID, exact=True).click()
    expect(page).to_have_url(re.compile(f"/dags/{DAG_ID}$"))
    # The DAG list has icon-only "Trigger Dag" buttons too; the DAG's page has one
    # labelled "Trigger".
    page.get_by_test_id("trigger-dag-button").filter(has_text="Trigger").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Trigger Dag - {DAG_ID}")
    expect(dialog).to_contain_text("Run Parameters")
    return dialog


def _profile_lines() -> dict[str, str]:
    """include/configs/deid/profiles.yaml: profile -> its plain description."""
    lines = yaml.safe_load((REPO / "include" / "configs" / "deid" / "profiles.yaml")
                           .read_text())
    return {name: " ".join(str(text).split()) for name, text in lines.items()}


def _dropdown(page: Page, dialog: Locator, label: str) -> list[str]:
    """Open a select Param's dropdown; the options' texts as shown."""
    dialog.get_by_label(label).click()
    options = page.get_by_role("option")
    expect(options.first).to_be_visible()
    return [" ".join(t.split()) for t in options.all_inner_texts()]


def test_the_dag_list_shows_every_dag(page: Page, airflow_ui: AirflowUI) -> None:
    page.get_by_role("link", name="Dags", exact=True).first.click()
    expect(page).to_have_url(re.compile(r"/dags$"))
    for dag_id in DAG_IDS:
        link = page.get_by_role("link", name=dag_id, exact=True)
        expect(link).to_be_visible()
        expect(link).to_have_attribute("href", re.compile(f"/dags/{dag_id}$"))


def test_the_pools_page_shows_the_healthcare_api_pool(page: Page,
                                                     airflow_ui: AirflowUI) -> None:
    """What `make up` creates, as an operator sees it in Admin → Pools."""
    pool = airflow_ui.api("pools/healthcare_api")
    assert pool["slots"] == 4 and pool["include_deferred"] is True
    page.goto(airflow_ui.url)
    page.get_by_role("link", name="Manage Pools").click()
    expect(page.get_by_text("healthcare_api (4 Slots)", exact=True)).to_be_visible()


def test_the_trigger_form_marks_required_params_and_describes_every_field(
        page: Page, airflow_ui: AirflowUI, tmp_path: Path) -> None:
    params = airflow_ui.api(f"dags/{DAG_ID}/details")["params"]
    assert set(params) == set(REQUIRED_PARAMS) | set(OPTIONAL_PARAMS), sorted(params)
    dialog = _open_trigger_form(page, airflow_ui)
    section = _run_params(page)

    # Each Param is a Chakra field: a label (with a "*" requiredIndicator when the
    # schema needs a value), the input named element_<param>, and a helper text.
    seen = {}
    for name, param in params.items():
        field = section.locator('[data-scope="field"][data-part="root"]').filter(
            has=page.locator(f'[name="element_{name}"]'))
        expect(field).to_have_count(1)
        label = field.locator('label[data-part="label"]')
        title = param["schema"]["title"]
        expect(label).to_contain_text(title)
        mark = label.locator(".chakra-field__requiredIndicator")
        if name in REQUIRED_PARAMS:
            expect(mark).to_be_visible()
            expect(mark).to_have_text("*")
        else:
            expect(mark).to_have_count(0)
            assert "*" not in label.inner_text(), (name, label.inner_text())
        helper = field.locator('[data-part="helper-text"]')
        expect(helper).to_be_visible()
        shown = " ".join(helper.inner_text().split())
        assert param["description"] and shown == " ".join(param["description"].split()), (
            name, shown, param["description"])
        seen[title] = (mark.count() > 0, shown)
    # What a person reads, by label: the asterisks sit exactly where a value is needed.
    marked = sorted(title for title, (required, _) in seen.items() if required)
    assert marked == sorted(params[n]["schema"]["title"] for n in REQUIRED_PARAMS), marked
    for title in ("Destination store id (optional)", "Only these studies (optional)",
                  "Export to (optional)", "Replace a non-empty destination store",
                  "Dry run", "Require a human review before export"):
        assert seen[title][0] is False, (title, seen[title])

    # No raw Jinja anywhere: not in the text, not in any field's value.
    assert "{{" not in dialog.inner_text() and "{%" not in dialog.inner_text()
    values = dialog.locator("input, textarea").evaluate_all(
        "els => els.map(e => e.value || '')")
    assert not [v for v in values if "{{" in v or "{%" in v], values

    # Each profile with its plain description (profiles.yaml), every shipped config.
    shipped = sorted(p.stem for p in (REPO / "include" / "configs" / "deid").glob("*.json"))
    lines = _profile_lines()
    assert set(lines) == set(shipped), (sorted(lines), shipped)
    offered = _dropdown(page, dialog, "De-identification profile")
    assert offered == [f"{name}: {lines[name]}" for name in shipped], offered
    assert {o.split(":", 1)[0] for o in offered} >= NAMED_PROFILES, offered
    _shot(page, tmp_path / "trigger-form-profiles.png")
    # Choosing the default again closes the list (Escape would close the dialog too).
    page.get_by_role("option", name=re.compile(r"^basic: ")).click()
    expect(page.get_by_role("option")).to_have_count(0)
    expect(dialog.locator('input[name="element_profile"]')).to_have_value("basic")
    # The export formats by what they are, not by MIME type.
    formats = _dropdown(page, dialog, "Export format")
    assert formats == ["DICOM, as stored", "PNG, one image per frame (for ML)"], formats
    page.get_by_role("option", name="DICOM, as stored", exact=True).click()
    expect(dialog.locator('input[name="element_export_mime_type"]')).to_have_value(
        "application/dicom")


def test_the_trigger_form_creates_a_run_with_the_chosen_params(
        page: Page, airflow_ui: AirflowUI, tmp_path: Path) -> None:
    run_id = f"ui-{uuid.uuid4().hex[:10]}"
    destination = f"ui-deid-{uuid.uuid4().hex[:6]}"
    paused = airflow_ui.api(f"dags/{DAG_ID}")["is_paused"]

    dialog = _open_trigger_form(page, airflow_ui)
    # The profile Param (type string + enum + values_display) renders as a searchable
    # select showing each profile with its description; the value is the profile's name.
    dialog.get_by_label("De-identification profile").click()
    page.get_by_role("option", name=re.compile(r"^research: ")).click()
    expect(dialog.locator('input[name="element_profile"]')).to_have_value("research")

    # Text and number Params render as inputs named element_<param>.
    dialog.locator('input[name="element_source_store"]').fill(airflow_ui.store)
    dialog.locator('input[name="element_destination_store_id"]').fill(destination)
    dialog.locator('input[name="element_sample_size"]').fill("3")
    unpause = dialog.get_by_role("checkbox", name=re.compile(f"Unpause {DAG_ID}"))
    if paused:  # the run must be scheduled, not only created
        expect(unpause).to_be_checked()
    else:  # the form offers to unpause only a paused DAG
        expect(unpause).to_have_count(0)

    dialog.get_by_role("button", name="Advanced Options").click()
    dialog.get_by_label("Run ID").fill(run_id)
    conf_editor = dialog.get_by_text('"profile": "research"')
    expect(conf_editor).to_be_visible()  # the form's values, as the run's conf JSON
    _shot(page, tmp_path / "trigger-form.png")

    dialog.get_by_test_id("trigger-dag-submit").click()
    expect(dialog).to_be_hidden()
    expect(page).to_have_url(re.compile(f"/dags/{DAG_ID}/runs/{run_id}$"))

    run = airflow_ui.run(run_id)
    assert run["run_type"] == "manual" and run["triggered_by"] == "ui", run
    assert run["triggering_user_name"] == "admin", run
    conf = run["conf"]
    assert conf["profile"] == "research", conf
    assert conf["source_store"] == airflow_ui.store, conf
    assert conf["destination_store_id"] == destination, conf
    assert conf["sample_size"] == 3, conf
    assert conf["export_mime_type"] == "application/dicom", conf  # untouched default
    assert airflow_ui.api(f"dags/{DAG_ID}")["is_paused"] is False

    # The scheduler picks the run up and the DAG's own checks accept the chosen params.
    def validated() -> str | None:
        state = airflow_ui.ti(run_id, "validate")["state"]
        return state if state in (*TI_DONE, "up_for_retry") else None

    state = _wait(f"task 'validate' of run {run_id}", validated, airflow_ui, 120)
    assert state == "success", _failures(airflow_ui, run_id)

    # The run's page in the UI lists it.
    expect(page.get_by_text(run_id).first).to_be_visible()

    # On-call's way to the run report: the task's "Run report" extra link, opened with
    # the browser's own session. The setup task open_report wrote the page when the
    # run started: it answers now, saying the run is in progress.
    page.goto(f"{airflow_ui.url}/dags/{DAG_ID}/runs/{run_id}/tasks/validate")
    page.get_by_role("link", name="Details", exact=True).click()  # lists "Extra Links"
    link = page.get_by_role("link", name="Run report")
    href = airflow_ui.report_href(run_id)
    expect(link).to_have_attribute("href", href)
    early = page.request.get(f"{airflow_ui.url}{href}")
    assert early.status == 200, (early.status, early.text()[:2000])
    assert "class='banner running'" in early.text(), early.text()[:3000]
    assert "This run is in progress" in early.text(), early.text()[:3000]
    anonymous = page.context.browser.new_context().request.get(f"{airflow_ui.url}{href}")
    assert anonymous.status == 401, anonymous.status


def test_a_run_with_a_missing_source_store_fails_at_once_and_its_report_says_why(
        page: Page, airflow_ui: AirflowUI, runs: dict[str, str], healthcare: Resource,
        tmp_path: Path) -> None:
    run_id = runs["failed"]
    run = _finished(airflow_ui, run_id, 120)
    assert run["state"] == "failed", _failures(airflow_ui, run_id)

    # validate failed on its first and only try (AirflowFailException: no retry), soon
    # after the run started; nothing downstream of it ran.
    tries = airflow_ui.api(f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/validate/tries")
    assert [(t["try_number"], t["state"]) for t in tries["task_instances"]] == [
        (1, "failed")], tries
    validate = airflow_ui.ti(run_id, "validate")
    assert validate["try_number"] == 1 and validate["state"] == "failed", validate
    took = _seconds(run["start_date"], validate["end_date"])
    assert took <= 30, f"validate failed {took:.0f}s after the run started"
    states = airflow_ui.states(run_id)
    assert states["open_report"] == "success" and states["report"] == "success", states
    assert states["create_destination_store"] == "upstream_failed", states

    # Nothing was created in the dataset (the real discovery client lists it).
    stores = [s["name"] for s in stores_api(healthcare).list(parent=DEMO_DATASET)
              .execute().get("dicomStores", [])]
    assert f"{DEMO_DATASET}/dicomStores/source" in stores, stores  # the listing works
    assert f"{DEMO_DATASET}/dicomStores/{runs['destination_store_id']}" not in stores
    assert runs["missing_store"] not in stores, stores

    # The report, as on-call opens it: a red banner naming the task and the error.
    _open_run_report(page, airflow_ui, run_id, "validate")
    banner = page.locator("section#status")
    expect(banner).to_have_class("banner failed")
    expect(banner.get_by_role("heading")).to_have_text("Run failed at validate")
    [failure] = banner.get_by_role("listitem").all()
    expect(failure).to_contain_text("validate: PreflightError: source_store: DICOM store "
                                    f"{runs['missing_store']} does not exist (404 NOT_FOUND)")
    path = _shot(page, tmp_path / "failed-run-report.png", full_page=True)
    assert path.stat().st_size > 20_000, path.stat().st_size
    with Image.open(path) as image:
        assert image.width >= 1000 and image.height >= 1000, image.size
    # The banner's own colour (report_page: #fce8e6 for "failed"), over a real area.
    assert _pixels(path, (0xFC, 0xE8, 0xE6), tolerance=4) > 20_000

    # Its task log link leads to the failed task, whose log has the error.
    failure.get_by_role("link", name="task log").click()
    expect(page).to_have_url(f"{airflow_ui.url}/dags/{DAG_ID}/runs/{run_id}/tasks/validate")
    expect(page.get_by_text("Task failed with exception").first).to_be_visible(
        timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text(re.compile(r"PreflightError: source_store")).first
           ).to_be_visible()


#: What the graph shows at its default zoom: the report's setup and teardown around the
#: four task groups (collapsed), left to right in the order the pipeline runs.
GRAPH_NODES = ("open_report", "plan", "deidentify", "check", "publish", "report")


def _graph(page: Page, ui: AirflowUI, run_id: str) -> Locator:
    page.goto(f"{ui.url}/dags/{DAG_ID}/runs/{run_id}")
    page.get_by_role("button", name=re.compile(r"^Show Graph")).click()
    nodes = page.locator(".react-flow__node")
    expect(nodes).to_have_count(len(GRAPH_NODES))
    return nodes


def test_the_graph_of_a_run_shows_every_stage_at_its_default_zoom(
        page: Page, airflow_ui: AirflowUI, runs: dict[str, str], tmp_path: Path) -> None:
    run_id = runs["failed"]
    _finished(airflow_ui, run_id, 120)
    _graph(page, airflow_ui, run_id)
    pane = page.locator(".react-flow").bounding_box()
    boxes = {}
    for node_id in GRAPH_NODES:
        node = page.locator(f'.react-flow__node[data-id="{node_id}"]')
        expect(node).to_be_visible()
        expect(node).to_contain_text(node_id)
        box = node.bounding_box()
        assert box and box["width"] > 10 and box["height"] > 5, (node_id, box)
        # Inside the graph pane at the default (fitted) zoom: nothing cut off.
        assert pane["x"] <= box["x"] and box["x"] + box["width"] <= pane["x"] + pane[
            "width"] and pane["y"] <= box["y"] and box["y"] + box["height"] <= pane[
            "y"] + pane["height"], (node_id, box, pane)
        boxes[node_id] = box
    overlapping = [(a, b) for a in boxes for b in boxes if a < b and (
        boxes[a]["x"] < boxes[b]["x"] + boxes[b]["width"]
        and boxes[b]["x"] < boxes[a]["x"] + boxes[a]["width"]
        and boxes[a]["y"] < boxes[b]["y"] + boxes[b]["height"]
        and boxes[b]["y"] < boxes[a]["y"] + boxes[a]["height"])]
    assert not overlapping, overlapping
    assert sorted(boxes, key=lambda t: boxes[t]["x"]) == list(GRAPH_NODES)
    # A group lists how many tasks it holds.
    expect(page.locator('.react-flow__node[data-id="deidentify"]')).to_contain_text("4 Tasks")

    path = _shot(page, tmp_path / "graph.png")
    assert path.stat().st_size > 20_000, path.stat().st_size
    # The states show in the picture: the group of the failed task red, the setup and
    # teardown green.
    for node_id, colour in (("plan", "red"), ("open_report", "green"), ("report", "green")):
        shot = page.locator(f'.react-flow__node[data-id="{node_id}"]').screenshot(
            path=tmp_path / f"graph-{node_id}.png")
        with Image.open(io.BytesIO(shot)) as image:
            px = np.asarray(image.convert("RGB"), dtype=np.int16)
        r, g, b = px[..., 0], px[..., 1], px[..., 2]
        found = ((r > 150) & (g < 110) & (b < 110)) if colour == "red" else (
            (g > 90) & (r < 90) & (b < 120))
        assert found.sum() >= 10, (node_id, colour, int(found.sum()))


def test_the_graph_labels_are_legible_at_the_default_zoom(
        page: Page, airflow_ui: AirflowUI, runs: dict[str, str], tmp_path: Path) -> None:
    run_id = runs["failed"]
    _finished(airflow_ui, run_id, 120)
    _graph(page, airflow_ui, run_id)
    _shot(page, tmp_path / "graph.png")
    label = page.locator('.react-flow__node[data-id="plan"]').get_by_text(
        "plan", exact=True).first
    # The label's height on screen: its font size times the viewport's scale.
    height = label.evaluate("""el => {
        const t = getComputedStyle(document.querySelector('.react-flow__viewport')).transform;
        const scale = t && t !== 'none' ? new DOMMatrix(t).a : 1;
        return parseFloat(getComputedStyle(el).fontSize) * scale; }""")
    print(f"group labels at the default zoom: {height:.1f} px high")
    assert height >= 9, f"group labels are {height:.1f} px high at the default zoom"


def _await_review(ui: AirflowUI, run_id: str) -> dict:
    def waiting() -> dict | None:
        ti = ui.ti(run_id, "review")
        if ti["state"] in TI_DONE or ui.run(run_id)["state"] in FINISHED:
            pytest.fail(f"review of {run_id} ended as {ti['state']} without a decision:\n"
                        f"{_failures(ui, run_id)}")
        return ti if ti["state"] == "awaiting_input" else None

    return _wait(f"task 'review' of run {run_id} to await input", waiting, ui, 240)


def _respond_in_required_actions(page: Page, ui: AirflowUI, run_id: str,
                                 choice: str) -> None:
    """Browse > Required Actions, the run's request, then Approve or Reject."""
    request = ui.api(f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/review/-1/hitlDetails")
    assert request["options"] == ["Approve", "Reject"], request
    assert run_id in request["subject"], request
    assert ui.report_href(run_id) in request["body"], request  # the reviewer's way in
    page.goto(f"{ui.url}/")
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Required Actions").click()
    expect(page).to_have_url(re.compile(r"/required_actions$"))
    page.get_by_role("link", name=request["subject"], exact=True).click()
    expect(page).to_have_url(re.compile(
        f"/dags/{DAG_ID}/runs/{run_id}/tasks/review/required_actions$"))
    expect(page.get_by_text(request["subject"], exact=True)).to_be_visible()
    page.get_by_role("button", name=choice, exact=True).click()
    expect(page.get_by_text(re.compile(r"Response received at .* from admin"))).to_be_visible()
    expect(page.get_by_role("button", name=choice, exact=True)).to_be_disabled()


def _export(bucket: str, prefix: str) -> str:
    return write_minimal_export(gcs_client("demo").bucket(bucket), prefix)


def test_manifests_published_while_the_handoff_is_paused_go_with_the_next_one(
        page: Page, airflow_ui: AirflowUI) -> None:
    """Two manifests announced while dicom_training_handoff is paused, then a third once
    it runs again: one handoff run handles all three.

    Airflow 3.3 queues an Asset event only for DAGs that are not paused (AssetManager.
    register_asset_change), so the two events alone never start a run; the next event
    does, and the run it starts consumes every event since the DAG's previous run."""
    handoff = f"dags/{HANDOFF_DAG_ID}"
    assert airflow_ui.api(handoff)["is_paused"] is False  # not paused on creation
    [asset] = [a for a in airflow_ui.api("assets?limit=100")["assets"]
               if a["name"] == "dicom_deid_manifest"]
    tag = uuid.uuid4().hex[:6]
    manifests = [_export(BUCKET, f"ui-handoff-{tag}-{n}") for n in (1, 2, 3)]

    def announce(uri: str) -> None:
        airflow_ui.api("assets/events", "POST",
                       {"asset_id": asset["id"], "extra": {"manifest": uri, "rows": 1}})

    airflow_ui.api(handoff, "PATCH", {"is_paused": True})
    try:
        before = {r["dag_run_id"] for r in airflow_ui.api(
            f"{handoff}/dagRuns?limit=100")["dag_runs"]}
        announce(manifests[0])
        announce(manifests[1])
    finally:
        airflow_ui.api(handoff, "PATCH", {"is_paused": False})
    announce(manifests[2])

    def handed_off() -> dict | None:
        for run in airflow_ui.api(f"{handoff}/dagRuns?limit=100")["dag_runs"]:
            if run["dag_run_id"] in before or run["state"] not in FINISHED:
                continue
            events = airflow_ui.api(f"{handoff}/dagRuns/{run['dag_run_id']}/"
                                    "upstreamAssetEvents")["asset_events"]
            if {(e.get("extra") or {}).get("manifest") for e in events} >= set(manifests):
                return run
        return None

    run = _wait("a dicom_training_handoff run on the three manifests", handed_off,
                airflow_ui, 150)
    assert run["state"] == "success", run
    assert run["run_type"] == "asset_triggered", run
    blobs = gcs_client("demo").bucket(BUCKET)
    for uri in manifests:
        stats = uri.removeprefix(f"gs://{BUCKET}/").rsplit("/", 1)[0] + "/dataset_stats.json"
        blob = blobs.blob(stats)
        assert blob.exists(), f"no gs://{BUCKET}/{stats}"
        summary = json.loads(blob.download_as_bytes())
        assert (summary["manifest"], summary["rows"], summary["loaded"]) == (uri, 1, 1), summary

    # The run in the UI, as the handoff's owner finds it: the events it consumed.
    events = airflow_ui.api(f"{handoff}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")
    page.goto(f"{airflow_ui.url}/dags/{HANDOFF_DAG_ID}/runs/{run['dag_run_id']}"
              "/asset_events")
    expect(page.get_by_role("heading", name=f"{events['total_entries']} Asset Events",
                            exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="dicom_deid_manifest")).to_have_count(
        events["total_entries"])


def test_a_reviewer_rejects_in_required_actions_and_the_run_fails(
        page: Page, airflow_ui: AirflowUI, runs: dict[str, str], tmp_path: Path) -> None:
    run_id = runs["reject"]
    _await_review(airflow_ui, run_id)
    _respond_in_required_actions(page, airflow_ui, run_id, "Reject")
    try:
        def decided() -> str | None:
            state = airflow_ui.ti(run_id, "review")["state"]
            return state if state in ("failed", "up_for_retry", "success") else None

        state = _wait(f"task 'review' of run {run_id} to take the rejection", decided,
                      airflow_ui, 120)
        assert state == "failed", f"after Reject the review is {state}, not failed"
        run = _finished(airflow_ui, run_id, 120)
        assert run["state"] == "failed", _failures(airflow_ui, run_id)
        states = airflow_ui.states(run_id)
        assert states["export"] == "upstream_failed", states
        _open_run_report(page, airflow_ui, run_id, "review")
        expect(page.locator("section#status")).to_have_class("banner failed")
        expect(page.locator("section#status h2")).to_have_text("Run failed at review")
        review = page.locator("h2", has_text="Human review").locator(
            "xpath=following-sibling::p[1]")
        expect(review).to_contain_text("Decision: Reject by admin")
        _shot(page, tmp_path / "rejected-run-report.png", full_page=True)
    finally:  # a review that asks again is failed by hand, as on-call would (marking
        # the whole run failed would skip the pending tasks and the teardown would then
        # turn the run green)
        if airflow_ui.ti(run_id, "review")["state"] not in TI_DONE:
            airflow_ui.api(f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/review", "PATCH",
                           {"new_state": "failed"})


def test_a_reviewer_approves_in_required_actions_and_the_run_exports(
        page: Page, airflow_ui: AirflowUI, runs: dict[str, str], tmp_path: Path) -> None:
    run_id = runs["approve"]
    _await_review(airflow_ui, run_id)
    # While it waits, the report says so (the review wrote it for the reviewer).
    _open_run_report(page, airflow_ui, run_id, "review")
    expect(page.locator("section#status")).to_have_class("banner running")
    expect(page.locator("section#status h2")).to_have_text("Awaiting review")

    _respond_in_required_actions(page, airflow_ui, run_id, "Approve")
    detail = airflow_ui.api(f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/review/-1/"
                            "hitlDetails")
    assert detail["chosen_options"] == ["Approve"], detail
    assert detail["responded_by_user"]["name"] == "admin", detail

    run = _finished(airflow_ui, run_id, 240)
    assert run["state"] == "success", _failures(airflow_ui, run_id)
    states = airflow_ui.states(run_id)
    assert states["review"] == states["export"] == states["manifest"] == "success", states

    _open_run_report(page, airflow_ui, run_id, "review")
    expect(page.locator("section#status")).to_have_class("banner succeeded")
    review = page.locator("h2", has_text="Human review").locator("xpath=following-sibling::p[1]")
    expect(review).to_contain_text("Decision: Approve by admin")
    path = _shot(page, tmp_path / "approved-run-report.png", full_page=True)
    # The green banner (report_page: #e6f4ea) and the sampled pairs' images.
    assert _pixels(path, (0xE6, 0xF4, 0xEA), tolerance=4) > 20_000
    expect(page.locator("figure img.destination").first).to_be_visible()
