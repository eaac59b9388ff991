"""A request that reads Cloud Storage while it waits does so within a deadline.

``dicomStores.deidentify`` reads ``gcsConfigUri`` and ``filterConfig.resourcePathsGcsUri``
before it answers. The storage client retries server errors for two minutes by
default, so an object whose reads fail held a request ~100 s. Here the server's
Cloud Storage is a loopback stub that answers every request with 503, as a storage
front end under trouble does; the server must give up within its deadline with a
specific error, and keep answering others meanwhile.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dicom_deid.devstack import ServerProcess, free_port, healthcare_client
from tests.helpers import PARENT, stores_api


class _Unavailable(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        body = b'{"error": {"code": 503, "message": "try again"}}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def unavailable_storage() -> Iterator[http.server.ThreadingHTTPServer]:
    stub = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Unavailable)
    stub.hits = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=stub.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    yield stub
    stub.shutdown()
    stub.server_close()


def test_config_from_failing_storage_answers_within_the_deadline(
        tmp_path: Path, unavailable_storage: http.server.ThreadingHTTPServer) -> None:
    host = f"http://127.0.0.1:{unavailable_storage.server_address[1]}"
    server = ServerProcess(tmp_path / "data", free_port(), tmp_path / "server.log",
                           env={"STORAGE_EMULATOR_HOST": host}).start()
    try:
        client = healthcare_client(server.url)
        client.projects().locations().datasets().create(
            parent=PARENT, datasetId="d", body={}).execute()
        for store_id in ("src", "dst"):
            stores_api(client).create(parent=f"{PARENT}/datasets/d", dicomStoreId=store_id,
                                      body={}).execute()
        store = f"{PARENT}/datasets/d/dicomStores"
        start = time.monotonic()
        r = requests.post(f"{server.url}/v1/{store}/src:deidentify", timeout=60, json={
            "destinationStore": f"{store}/dst", "gcsConfigUri": "gs://configs/deid.json"})
        took = time.monotonic() - start
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert error["status"] == "UNAVAILABLE"
        assert "gcsConfigUri" in error["message"] and "within 10 s" in error["message"]
        assert took < 20, f"the request waited {took:.0f} s"
        assert unavailable_storage.hits >= 2, "the client did not retry at all"
    finally:
        server.stop()
