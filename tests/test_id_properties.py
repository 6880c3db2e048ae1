"""Property tests over the wire: whatever id a client sends, the upstream sees one UUID or nothing.

Hypothesis throws hostile ids at both front doors of a real gateway on loopback: path traversal
(``../``, ``..``, encoded and double-encoded dots and slashes), ``?``, ``#``, ``;``, control
characters, very long strings, unicode (emoji, right-to-left marks, combining marks, look-alike
digits) and valid UUIDs in every spelling the orchestrator accepts. For every example:

* each request the upstream (the demo, wrapped in ``Recorder``) receives is a GET of exactly
  ``/api/v1/executions/`` + one canonical lower-case hyphenated UUID, with no query string;
* an id that is not a UUID reaches the upstream not at all: GraphQL answers ``BAD_USER_INPUT``
  and the REST route answers 400 with an empty body, as the orchestrator does;
* GraphQL always answers HTTP 200 JSON with ``data`` and coded errors; REST never answers 5xx.

Whether an id is a UUID is decided here by ``orchestrator_uuid``, written from the orchestrator's
parser (Rust's ``uuid`` crate) independently of ``gateway.executions.parse_execution_id``, so
each checks the other. The servers start once per module; every example clears the recorder.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import assume, event, example, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.demo.data import seed
from gateway.demo.upstream import create_demo_app
from gateway.errors import ErrorCode
from gateway.settings import Settings
from tests.servers import Recorder, SeenRequest, serve

PREFIX = b"/api/v1/executions/"
CANONICAL = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CODES = frozenset(code.value for code in ErrorCode)
KNOWN_IDS = sorted(seed().executions)
# uvicorn refuses a request target beyond 64 KiB before the app sees it; REST segments stay
# below that (see the test of the refusal at the end). GraphQL ids carry up to 10k characters,
# which keeps every request body (at most 6 bytes of JSON a character) under the gateway's
# default max_request_bytes (100 000).
MAX_REST_TARGET = 60_000


# --- What the orchestrator would accept, decided independently of the gateway -------------

_HEX = frozenset("0123456789abcdefABCDEF")


def orchestrator_uuid(text: str) -> str | None:
    """The canonical form of ``text`` if the orchestrator's UUID parser accepts it, else None.

    Rust's ``uuid`` crate takes exactly: 32 hex digits; 36 characters hyphenated 8-4-4-4-12;
    that inside braces (38); or that after a lower-case ``urn:uuid:`` (45). Hex digits are
    ASCII, in either case.
    """
    if len(text) == 45 and text.startswith("urn:uuid:"):
        text = text[len("urn:uuid:") :]
    elif len(text) == 38 and text[0] == "{" and text[-1] == "}":
        text = text[1:-1]
    if len(text) == 36 and all(text[i] == "-" for i in (8, 13, 18, 23)):
        digits = text.replace("-", "")
    elif len(text) == 32:
        digits = text
    else:
        return None
    if len(digits) != 32 or not set(digits) <= _HEX:
        return None
    return str(uuid.UUID(hex=digits))


# --- Strategies ---------------------------------------------------------------------------

# Pieces an attacker splices into ids: traversal, encoded separators, URL delimiters, control
# and invisible characters, and look-alikes of hex digits that ``int()`` or ``\d`` would take.
PIECES = [
    "../",
    "..",
    ".",
    "./",
    "/",
    "//",
    "\\",
    "..\\",
    "%2e%2e",
    "%2E%2E",
    "%2e",
    ".%2e",
    "%2f",
    "%2F",
    "..%2f",
    "..%2F",
    "%2e%2e%2f",
    "%252f",
    "%252F",
    "%252e%252e",
    "%25",
    "%",
    "%%",
    "%00",
    "%0a",
    "?",
    "?x=1",
    "#",
    "#frag",
    ";",
    ";a=b",
    "&",
    "=",
    "+",
    "@",
    ":",
    "health",
    "_demo/stats",
    "api/v1/executions/",
    "\x00",
    "\x1f",
    "\x7f",
    "\r\n",
    "\t",
    " ",
    "\u00a0",
    "\u200b",
    "\u200f",
    "\u202e",
    "\ufeff",
    "\u0301",
    "\U0001f600",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\u05e9\u05dc\u05d5\u05dd",
    "\uff10",
    "\uff41",
    "\u0660",
    "\u212a",
    "-",
    "{",
    "}",
    "urn:uuid:",
    "URN:UUID:",
]


def _mixed_case(text: str, mask: int) -> str:
    return "".join(ch.upper() if mask >> i & 1 else ch for i, ch in enumerate(text))


@st.composite
def uuid_spellings(draw: st.DrawFn) -> str:
    """A UUID (a demo execution's, or any) in one of the spellings the orchestrator accepts."""
    value = draw(st.sampled_from(KNOWN_IDS) | st.uuids().map(str))
    hex_digits = uuid.UUID(value).hex
    case = draw(st.sampled_from(["lower", "upper", "mixed"]))
    mask = draw(st.integers(0, 2**32 - 1))
    if case == "upper":
        hex_digits = hex_digits.upper()
    elif case == "mixed":
        hex_digits = _mixed_case(hex_digits, mask)
    hyphenated = "-".join(
        (hex_digits[:8], hex_digits[8:12], hex_digits[12:16], hex_digits[16:20], hex_digits[20:])
    )
    form = draw(st.sampled_from(["hyphenated", "braced", "urn", "simple"]))
    return {
        "hyphenated": hyphenated,
        "braced": "{" + hyphenated + "}",
        "urn": "urn:uuid:" + hyphenated,
        "simple": hex_digits,
    }[form]


@st.composite
def tampered_uuids(draw: st.DrawFn) -> str:
    """A valid spelling with a hostile piece spliced in, or a character replaced by one."""
    valid = draw(uuid_spellings())
    piece = draw(st.sampled_from(PIECES))
    where = draw(st.integers(0, len(valid)))
    if draw(st.booleans()) and where < len(valid):
        return valid[:where] + piece + valid[where + 1 :]
    return valid[:where] + piece + valid[where:]


def long_texts(max_chars: int) -> st.SearchStrategy[str]:
    """Very long ids: a piece repeated, maybe around a valid UUID (cheap to generate)."""
    repeated = st.builds(
        lambda piece, count: piece * count,
        st.sampled_from([*PIECES, "a", "0"]),
        st.integers(1, max_chars),
    ).map(lambda text: text[:max_chars])
    return repeated | st.builds(
        lambda pad, valid: (pad + valid + pad)[:max_chars], repeated, uuid_spellings()
    )


def hostile_ids(max_chars: int, *, valid: bool = True) -> st.SearchStrategy[str]:
    """Any text an id could be: about half valid UUIDs (none if ``valid`` is False), the rest
    nearly valid, hostile, arbitrary, control characters or long."""
    hostile = st.one_of(
        tampered_uuids(),
        st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=12).map("".join),
        st.text(max_size=60),  # arbitrary unicode; hypothesis never draws lone surrogates
        st.text(st.characters(max_codepoint=0x1F) | st.just("\x7f"), max_size=20),
        st.from_regex(r"[0-9a-fA-F{}\-urn:]{30,46}", fullmatch=True),
        long_texts(max_chars),
    )
    if not valid:
        return hostile
    # Not ``uuid_spellings() | hostile``: one_of flattens, and one branch in eight is too few.
    return st.booleans().flatmap(lambda is_valid: uuid_spellings() if is_valid else hostile)


# --- The wire -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Wire:
    gateway: httpx.Client
    upstream: Recorder


@pytest.fixture(scope="module")
def wire() -> Iterator[Wire]:
    """The demo upstream behind a ``Recorder`` and a gateway in front of it, cache off."""
    recorder = Recorder(create_demo_app())
    with serve(recorder, lifespan="off") as upstream_url:
        app = create_app(Settings(upstream_url=upstream_url, cache_enabled=False))
        with serve(app) as gateway_url, httpx.Client(base_url=gateway_url, timeout=30) as client:
            yield Wire(client, recorder)


def assert_upstream_saw_exactly(requests: list[SeenRequest], expected: set[str]) -> None:
    """Every upstream request is a GET of one canonical UUID segment; together, ``expected``."""
    segments: list[bytes] = []
    for seen in requests:
        assert seen.method == "GET"
        assert seen.query_string == b"", seen
        assert seen.raw_path.startswith(PREFIX), seen.raw_path
        segment = seen.raw_path.removeprefix(PREFIX)
        for forbidden in (b"/", b"?", b"#", b"%2f", b"%2e", b"\\"):
            assert forbidden not in segment.lower(), seen.raw_path
        assert CANONICAL.fullmatch(segment), seen.raw_path
        segments.append(segment)
    assert sorted(segments) == sorted(id_.encode() for id_ in expected)


def post_graphql(wire: Wire, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """POST a query; the answer must be 200 JSON with ``data`` and only coded errors."""
    response = wire.gateway.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert "data" in body, body
    for error in body.get("errors", []):
        assert error["extensions"]["code"] in CODES, error
    return body


def errors_by_path(body: dict[str, Any]) -> dict[tuple[str | int, ...], str]:
    return {tuple(error["path"]): error["extensions"]["code"] for error in body.get("errors", [])}


def get_raw(wire: Wire, target: bytes) -> httpx.Response:
    """GET ``target`` exactly as given: the request line is not normalised nor re-encoded."""
    # httpx would resolve "." and ".." segments of a URL; the target extension bypasses it.
    return wire.gateway.get("/", extensions={"target": target})


def describe(canonical: str | None, *, found: bool) -> str:
    """The kind of example, for ``--hypothesis-show-statistics``."""
    if canonical is None:
        return "not a UUID"
    return "a UUID that was found" if found else "a UUID that was not found"


# --- GraphQL ------------------------------------------------------------------------------

SINGLE = {
    "execution": "query ($id: ID!) { execution(id: $id) { id } }",
    "node": "query ($id: ID!) { node(id: $id) { id } }",
}


@pytest.mark.parametrize("field", sorted(SINGLE))
@settings(max_examples=200, deadline=None)
@given(raw=hostile_ids(max_chars=10_000))
@example(raw="../health")
@example(raw="%2e%2e%2f_demo%2fstats")
@example(raw="{" + KNOWN_IDS[0].upper() + "}")
@example(raw="\x00" + KNOWN_IDS[0])
@example(raw="\U0001f600" * 10_000)
@example(raw="../" * 3_000 + KNOWN_IDS[0])
def test_a_single_id_reaches_the_upstream_only_as_its_canonical_uuid_or_not_at_all(
    wire: Wire, field: str, raw: str
) -> None:
    wire.upstream.clear()

    body = post_graphql(wire, SINGLE[field], {"id": raw})

    canonical = orchestrator_uuid(raw)
    event(describe(canonical, found=body["data"][field] is not None))
    assert_upstream_saw_exactly(wire.upstream.requests, {canonical} if canonical else set())
    if canonical is None:
        assert body["data"] == {field: None}
        assert errors_by_path(body) == {(field,): "BAD_USER_INPUT"}
    elif body["data"][field] is not None:
        assert body["data"][field] == {"id": canonical}
        assert "errors" not in body
    else:
        assert errors_by_path(body) == {(field,): "NOT_FOUND"}


@settings(max_examples=150, deadline=None)
@given(raws=st.lists(hostile_ids(max_chars=1_500), max_size=6))
@example(raws=["../" + KNOWN_IDS[0], KNOWN_IDS[0], KNOWN_IDS[0].upper(), "?", ""])
def test_a_list_of_ids_fetches_each_distinct_uuid_once_and_nothing_else(
    wire: Wire, raws: list[str]
) -> None:
    wire.upstream.clear()

    body = post_graphql(
        wire, "query ($ids: [ID!]!) { executions(ids: $ids) { id } }", {"ids": raws}
    )

    canonicals = [orchestrator_uuid(raw) for raw in raws]
    assert_upstream_saw_exactly(wire.upstream.requests, {c for c in canonicals if c})
    entries = body["data"]["executions"]
    errors = errors_by_path(body)
    assert len(entries) == len(raws)
    for index, (entry, canonical) in enumerate(zip(entries, canonicals, strict=True)):
        event(describe(canonical, found=entry is not None))
        if canonical is None:
            assert entry is None
            assert errors[("executions", index)] == "BAD_USER_INPUT"
        elif entry is not None:
            assert entry == {"id": canonical}
            assert ("executions", index) not in errors
        else:
            assert errors[("executions", index)] == "NOT_FOUND"
    assert len(errors) == entries.count(None)


# --- REST ---------------------------------------------------------------------------------


def rest_segments(*, valid: bool = True) -> st.SearchStrategy[str]:
    """Non-empty texts whose percent-encoded segment keeps the request under uvicorn's limit
    (a character encodes to at most 12 bytes)."""
    return hostile_ids(max_chars=MAX_REST_TARGET // 12, valid=valid).filter(bool)


@settings(max_examples=300, deadline=None)
@given(text=rest_segments())
@example(text="../health")
@example(text="..")
@example(text="%2e%2e")
@example(text=KNOWN_IDS[0] + "/")
@example(text="urn:uuid:" + KNOWN_IDS[0].upper())
def test_a_rest_path_segment_reaches_the_upstream_only_as_its_canonical_uuid_or_not_at_all(
    wire: Wire, text: str
) -> None:
    wire.upstream.clear()
    segment = quote(text, safe="").encode("ascii")

    response = get_raw(wire, PREFIX + segment)

    assert response.status_code < 500, (response.status_code, response.content)
    canonical = orchestrator_uuid(text)
    event(describe(canonical, found=response.status_code == 200))
    assert_upstream_saw_exactly(wire.upstream.requests, {canonical} if canonical else set())
    if canonical is not None:
        if response.status_code == 200:
            assert response.json()["id"] == canonical
        else:
            assert (response.status_code, response.content) == (404, b"")


@settings(max_examples=300, deadline=None)
@given(text=rest_segments(valid=False).filter(lambda text: orchestrator_uuid(text) is None))
@example(text="..")
@example(text="%2e%2e")
@example(text="../health")
@example(text="a/b")
def test_a_rest_segment_that_is_not_a_uuid_is_answered_400_with_an_empty_body(
    wire: Wire, text: str
) -> None:
    # An empty segment is no id at all: the orchestrator has no route for it (404).
    assume(text != "")
    wire.upstream.clear()

    response = get_raw(wire, PREFIX + quote(text, safe="").encode("ascii"))

    # The orchestrator (axum) routes on the encoded path, so "a%2Fb" is its id "a/b": 400.
    assert (response.status_code, response.content) == (400, b"")
    assert wire.upstream.requests == []


def test_a_request_line_beyond_the_servers_limit_is_refused_without_a_5xx(wire: Wire) -> None:
    wire.upstream.clear()
    segment = quote("\U0001f600" * 10_000, safe="").encode("ascii")  # 120 000 bytes

    # Its own connection: the server closes the one it refuses a request on.
    with httpx.Client(base_url=wire.gateway.base_url, timeout=30) as client:
        response = client.get("/", extensions={"target": PREFIX + segment})

    assert response.status_code == 400
    assert wire.upstream.requests == []
