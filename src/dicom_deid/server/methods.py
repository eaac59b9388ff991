"""Every method of the ``healthcare v1`` discovery document, to name what is not served.

A client calling a method this server does not implement (an FHIR store, a consent
store, ``setBlobStorageSettings``) must learn exactly that: 501 UNIMPLEMENTED naming
the method, as Google answers for what it does not offer, and never 404 NOT_FOUND,
which means a missing resource and sends people looking for the wrong fault. The
method table is read from the discovery document that ships with
google-api-python-client (the one the pipeline's clients are built from), so it never
drifts from what those clients can call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class Method:
    """One REST method: its discovery ``id``, HTTP verb and path (without ``v1/``)."""

    id: str
    http_method: str
    flat_path: str
    pattern: re.Pattern


def _pattern(flat_path: str) -> re.Pattern:
    """``projects/{projectsId}/...:verb`` as a regex over the raw path; a ``{param}``
    is one path segment, which never holds a ``:`` verb suffix."""
    out = []
    for piece in re.split(r"(\{[^}]+\})", flat_path):
        if piece.startswith("{"):
            out.append(r"[^/:]+")
        else:
            out.append(re.escape(piece))
    return re.compile("".join(out))


def _walk(node: dict) -> Iterator[Method]:
    for method in node.get("methods", {}).values():
        path = method["flatPath"].removeprefix("v1/")
        yield Method(method["id"], method["httpMethod"], path, _pattern(path))
    for child in node.get("resources", {}).values():
        yield from _walk(child)


@lru_cache(maxsize=1)
def discovery() -> dict:
    """The installed client's ``healthcare.v1`` discovery document."""
    documents = resources.files("googleapiclient.discovery_cache").joinpath("documents")
    return json.loads(documents.joinpath("healthcare.v1.json").read_text())


@lru_cache(maxsize=1)
def all_methods() -> tuple[Method, ...]:
    # The most literal path first, as Google's router prefers: ``fhir/_search`` and
    # ``fhir/Binary/{id}`` before the catch-all ``fhir/{fhirId}/{fhirId1}``.
    return tuple(sorted(_walk(discovery()),
                        key=lambda m: -len(re.sub(r"\{[^}]+\}", "", m.flat_path))))


def find(http_method: str, path: str) -> Method | None:
    """The discovery method that a request's verb and raw path would call, if any."""
    for method in all_methods():
        if method.http_method == http_method and method.pattern.fullmatch(path):
            return method
    return None


def path_known(path: str) -> bool:
    """Whether any discovery method has this path (under some other verb)."""
    return any(m.pattern.fullmatch(path) for m in all_methods())
