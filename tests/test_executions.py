"""Unit tests of ``gateway.executions``: which ids are UUIDs, and which bodies are executions."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.executions import (
    ExecutionRecord,
    FetchedExecution,
    NotAnExecution,
    decode_execution,
    parse_execution_id,
)
from tests.records import EXECUTION_ID, execution_fields

CANONICAL = EXECUTION_ID
OTHER = "0b1c2d3e-4f50-4617-a8b9-cadbecf00112"


def body_of(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields).encode()


def rust_uuid_parse(raw: str) -> str | None:
    """A model of ``uuid::Uuid::parse_str`` (uuid 1.x, ``src/parser.rs``), canonical or None.

    The input is measured in UTF-8 bytes; 32 bytes are the simple form, 36 the hyphenated
    one, 38 a hyphenated one between ``{`` and ``}`` and 45 a hyphenated one after the
    lower-case prefix ``urn:uuid:``. Hex digits are ASCII, in either case.
    """
    data = raw.encode("utf-8", "surrogatepass")
    hex_bytes = b"0123456789abcdefABCDEF"

    def hyphenated(part: bytes) -> str | None:
        if len(part) != 36 or any(part[i] != ord("-") for i in (8, 13, 18, 23)):
            return None
        digits = bytes(b for i, b in enumerate(part) if i not in (8, 13, 18, 23))
        return simple(digits)

    def simple(part: bytes) -> str | None:
        if len(part) != 32 or any(b not in hex_bytes for b in part):
            return None
        return str(uuid.UUID(part.decode("ascii")))

    if len(data) == 32:
        return simple(data)
    if len(data) == 36:
        return hyphenated(data)
    if len(data) == 38 and data[:1] == b"{" and data[-1:] == b"}":
        return hyphenated(data[1:-1])
    if len(data) == 45 and data.startswith(b"urn:uuid:"):
        return hyphenated(data[9:])
    return None


# --- parse_execution_id: accepted forms ---------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "6f9619ff-8b86-d011-b42d-00c04fc964ff",
        "6F9619FF-8B86-D011-B42D-00C04FC964FF",
        "6f9619FF-8b86-D011-b42D-00c04FC964ff",
        "6f9619ff8b86d011b42d00c04fc964ff",
        "6F9619FF8B86D011B42D00C04FC964FF",
        "{6f9619ff-8b86-d011-b42d-00c04fc964ff}",
        "{6F9619FF-8B86-D011-B42D-00C04FC964FF}",
        "urn:uuid:6f9619ff-8b86-d011-b42d-00c04fc964ff",
        "urn:uuid:6F9619FF-8B86-D011-B42D-00C04FC964FF",
    ],
)
def test_every_spelling_rust_accepts_is_returned_in_canonical_lower_case_hyphenated_form(
    raw: str,
) -> None:
    assert parse_execution_id(raw) == CANONICAL


@pytest.mark.parametrize(
    "raw",
    ["00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"],
)
def test_the_nil_and_max_uuids_are_ids_like_any_other(raw: str) -> None:
    assert parse_execution_id(raw) == raw


@given(st.uuids(), st.sampled_from(["hyphenated", "simple", "braced", "urn"]), st.data())
def test_any_uuid_in_any_accepted_form_and_any_hex_case_parses_to_its_canonical_form(
    value: uuid.UUID, form: str, data: st.DataObject
) -> None:
    hex_text = "".join(
        data.draw(st.sampled_from([char.lower(), char.upper()])) for char in str(value)
    )
    raw = {
        "hyphenated": hex_text,
        "simple": hex_text.replace("-", ""),
        "braced": "{" + hex_text + "}",
        "urn": "urn:uuid:" + hex_text,
    }[form]

    assert parse_execution_id(raw) == str(value)


# --- parse_execution_id: refused forms ----------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("", id="empty"),
        pytest.param("6f9619ff-8b86-d011-b42d-00c04fc964f", id="hyphenated-one-short"),
        pytest.param("6f9619ff-8b86-d011-b42d-00c04fc964fff", id="hyphenated-one-long"),
        pytest.param("6f9619ff8b86d011b42d00c04fc964f", id="simple-31"),
        pytest.param("6f9619ff8b86d011b42d00c04fc964fff", id="simple-33"),
        pytest.param("6f9619f-f8b86-d011-b42d-00c04fc964ff", id="first-hyphen-moved"),
        pytest.param("6f9619ff-8b86d-011-b42d-00c04fc964ff", id="second-hyphen-moved"),
        pytest.param("6f9619ff-8b86-d011-b42d0-0c04fc964ff", id="last-hyphen-moved"),
        pytest.param("6f9619ff-8b86-d011-b42d-00c04fc9-4ff", id="extra-hyphen-same-length"),
        pytest.param("6f9619ff8b86-d011-b42d-00c04fc964ff0", id="missing-first-hyphen"),
        pytest.param("6f96-19ff-8b86-d011-b42d00c04fc964ff", id="hyphens-in-wrong-groups"),
        pytest.param("------------------------------------", id="only-hyphens"),
        pytest.param("6g9619ff-8b86-d011-b42d-00c04fc964ff", id="non-hex-letter"),
        pytest.param("6f9619ff8b86d011b42d00c04fc964fz", id="simple-non-hex"),
        pytest.param(" 6f9619ff-8b86-d011-b42d-00c04fc964ff", id="leading-space"),
        pytest.param("6f9619ff-8b86-d011-b42d-00c04fc964ff ", id="trailing-space"),
        pytest.param("6f9619ff-8b86-d011-b42d-00c04fc964ff\n", id="trailing-newline"),
        pytest.param("\n6f9619ff-8b86-d011-b42d-00c04fc964ff", id="leading-newline"),
        pytest.param("6f9619ff-8b86-d011-b42d-00c04fc964f\t", id="tab-for-digit"),
        pytest.param("6f9619ff 8b86 d011 b42d 00c04fc964ff", id="spaces-for-hyphens"),
        pytest.param("6f9619ff-8b86-d011-b42d-00c04fc964ff\x00", id="trailing-nul"),
        pytest.param("\uff16f9619ff-8b86-d011-b42d-00c04fc964ff", id="fullwidth-digit"),
        pytest.param("\u0666f9619ff-8b86-d011-b42d-00c04fc964ff", id="arabic-indic-digit"),
        pytest.param("6f9619ff-8b86-d011-b42d-00c04fc964f\u0669", id="arabic-indic-nine"),
        pytest.param("6\uff469619ff-8b86-d011-b42d-00c04fc964ff", id="fullwidth-letter"),
        pytest.param("6f9619ff8b86d011b42d00c04fc964f\U0001d7d7", id="mathematical-digit"),
        pytest.param("../x", id="dot-dot-slash"),
        pytest.param("../health", id="dot-dot-health"),
        pytest.param("%2e%2e", id="encoded-dot-dot"),
        pytest.param("6f9619ff%2D8b86-d011-b42d-00c04fc964ff", id="percent-encoded-hyphen"),
        pytest.param("%7B6f9619ff-8b86-d011-b42d-00c04fc964ff%7D", id="percent-encoded-braces"),
        pytest.param("{6f9619ff8b86d011b42d00c04fc964ff}", id="braced-simple"),
        pytest.param("{6f9619ff-8b86-d011-b42d-00c04fc964ff", id="open-brace-only"),
        pytest.param("6f9619ff-8b86-d011-b42d-00c04fc964ff}", id="close-brace-only"),
        pytest.param("(6f9619ff-8b86-d011-b42d-00c04fc964ff)", id="parentheses"),
        pytest.param("{{6f9619ff-8b86-d011-b42d-00c04fc964ff}}", id="double-braces"),
        pytest.param("urn:uuid:6f9619ff8b86d011b42d00c04fc964ff", id="urn-simple"),
        pytest.param("urn:uuid:{6f9619ff-8b86-d011-b42d-00c04fc964ff}", id="urn-braced"),
        pytest.param("{urn:uuid:6f9619ff-8b86-d011-b42d-00c04fc964ff}", id="braced-urn"),
        pytest.param("uuid:6f9619ff-8b86-d011-b42d-00c04fc964ff", id="uuid-prefix"),
        pytest.param("urn:uuid: 6f9619ff-8b86-d011-b42d-00c04fc964ff", id="urn-space"),
        pytest.param("urn:uuid:6f9619ff-8b86-d011-b42d-00c04fc964ff\n", id="urn-newline"),
        pytest.param("0x6f9619ff8b86d011b42d00c04fc964ff", id="hex-prefix"),
        pytest.param("6f9619ff-8b86-d011-b42d-00c04fc964ff/", id="trailing-slash"),
        pytest.param("6f9619ff-8b86-d011-b42d-00c04fc964ff?x=1", id="query"),
        pytest.param("6f9619ff-8b86-d011-b42d-00c04fc964ff#x", id="fragment"),
        pytest.param("6f9619ff-8b86-d011-b42d-00c04fc964ff,6f9619ff", id="list"),
        pytest.param(CANONICAL + CANONICAL, id="two-ids"),
        pytest.param("67e5504410b1426%9247bb680e5fe0c8", id="percent-in-simple"),
        pytest.param("F9168C5E-CEB2-4faa-B6BF1-02BF39FA1E4", id="group-of-five"),
    ],
)
def test_a_string_that_is_not_a_uuid_rust_would_accept_is_refused(raw: str) -> None:
    assert parse_execution_id(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        "URN:UUID:6f9619ff-8b86-d011-b42d-00c04fc964ff",
        "Urn:Uuid:6f9619ff-8b86-d011-b42d-00c04fc964ff",
        "urn:UUID:6f9619ff-8b86-d011-b42d-00c04fc964ff",
    ],
)
def test_a_urn_prefix_not_in_lower_case_is_refused_as_rust_refuses_it(raw: str) -> None:
    # Rust's parser matches the bytes `urn:uuid:` exactly; only the hex digits may vary in case.
    assert parse_execution_id(raw) is None


def _mutations(valid: str) -> st.SearchStrategy[str]:
    """``valid`` with one character replaced, inserted or deleted."""
    alphabet = st.sampled_from([*"0123456789abcdefABCDEFgGxX-{}:urnidURNID \n/%.", "\u0663"])
    position = st.integers(min_value=0, max_value=len(valid) - 1)
    replaced = st.tuples(position, alphabet).map(lambda p: valid[: p[0]] + p[1] + valid[p[0] + 1 :])
    inserted = st.tuples(position, alphabet).map(lambda p: valid[: p[0]] + p[1] + valid[p[0] :])
    deleted = position.map(lambda i: valid[:i] + valid[i + 1 :])
    return st.one_of(replaced, inserted, deleted)


_SPELLINGS = [
    CANONICAL,
    CANONICAL.upper(),
    CANONICAL.replace("-", ""),
    "{" + CANONICAL + "}",
    "urn:uuid:" + CANONICAL,
]


@given(
    st.one_of(
        st.sampled_from(_SPELLINGS),
        st.sampled_from(_SPELLINGS).flatmap(_mutations),
        st.text(alphabet="0123456789abcdefABCDEF-{}urnid:", max_size=48),
        st.text(),
    )
)
@example("URN:UUID:6f9619ff-8b86-d011-b42d-00c04fc964ff")
def test_parse_execution_id_agrees_with_a_model_of_rusts_uuid_parser_on_any_text(raw: str) -> None:
    assert parse_execution_id(raw) == rust_uuid_parse(raw)


# --- decode_execution: good bodies --------------------------------------------------------


def test_a_valid_body_decodes_to_a_record_and_keeps_the_exact_bytes() -> None:
    body = body_of(execution_fields())

    fetched = decode_execution(CANONICAL, body)

    assert isinstance(fetched, FetchedExecution)
    assert fetched.body == body
    assert isinstance(fetched.record, ExecutionRecord)
    assert fetched.record.id == CANONICAL
    assert fetched.record.workflow_id == "order-workflow"
    assert fetched.record.status == "completed"
    assert fetched.record.payload == {"order": 7}
    assert fetched.record.retry_count == 0
    assert fetched.record.queue_name == "default"
    assert fetched.record.created_at.microsecond == 123456
    assert fetched.record.run_timeout_seconds == 300


def test_the_body_is_kept_byte_for_byte_whatever_its_key_order_spacing_and_number_format() -> None:
    body = (
        b'{ "retry_count" : 0 ,\n  "payload": {"price": 1.50, "exp": 1E+2, "z": [ ]},'
        b' "status":"running","created_at":"2026-11-14T13:00:13.123456+00:00",'
        b' "workflow_id":"w", "id":"' + CANONICAL.encode() + b'", "queue_name": "q"}'
    )

    fetched = decode_execution(CANONICAL, body)

    assert fetched.body == body
    assert fetched.record.status == "running"


@pytest.mark.parametrize(
    ("payload_json", "expected"),
    [
        pytest.param("18446744073709551617", 2**64 + 1, id="just-over-2^64"),
        pytest.param(
            "-123456789012345678901234567890123456789",
            -123456789012345678901234567890123456789,
            id="huge-negative",
        ),
        pytest.param("9007199254740993", 2**53 + 1, id="beyond-2^53"),
        pytest.param('"\\u00e9t\\u00e9 \\ud83d\\ude00"', "été 😀", id="escaped-unicode"),
        pytest.param('"été ☃ 😀 \u202e"', "été ☃ 😀 \u202e", id="raw-unicode"),
        pytest.param("null", None, id="null"),
        pytest.param('"just a string"', "just a string", id="bare-string"),
        pytest.param('""', "", id="empty-string"),
        pytest.param("[1, [2, {}], null]", [1, [2, {}], None], id="array"),
        pytest.param("false", False, id="false"),
    ],
)
def test_any_json_in_payload_and_result_survives_exactly(payload_json: str, expected: Any) -> None:
    fields = execution_fields()
    del fields["payload"], fields["result"]
    body = (
        body_of(fields)[:-1] + f', "payload": {payload_json}, "result": {payload_json}}}'.encode()
    )

    fetched = decode_execution(CANONICAL, body)

    assert fetched.body == body
    assert fetched.record.payload == expected
    assert type(fetched.record.payload) is type(expected)
    assert fetched.record.result == expected
    assert type(fetched.record.result) is type(expected)


def test_fields_the_gateway_does_not_know_are_ignored_rather_than_refused() -> None:
    body = body_of(execution_fields(priority=5, labels={"a": "b"}))

    assert decode_execution(CANONICAL, body).body == body


def test_a_status_the_gateway_does_not_list_is_kept_as_sent() -> None:
    fetched = decode_execution(CANONICAL, body_of(execution_fields(status="paused_for_review")))

    assert fetched.record.status == "paused_for_review"
    assert not fetched.record.is_terminal


@pytest.mark.parametrize(
    "spelling",
    [
        CANONICAL.upper(),
        CANONICAL.replace("-", ""),
        "{" + CANONICAL.upper() + "}",
        "urn:uuid:" + CANONICAL,
    ],
)
def test_a_body_naming_the_same_id_in_another_spelling_gets_the_canonical_id(
    spelling: str,
) -> None:
    body = body_of(execution_fields(id=spelling))

    fetched = decode_execution(CANONICAL, body)

    assert fetched.record.id == CANONICAL
    assert fetched.body == body  # what the orchestrator said is still relayed as it said it


# --- decode_execution: bad bodies ---------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["id", "workflow_id", "status", "payload", "created_at", "retry_count"]
)
def test_a_body_missing_a_required_field_is_not_an_execution(field: str) -> None:
    fields = execution_fields()
    del fields[field]

    with pytest.raises(NotAnExecution) as exc_info:
        decode_execution(CANONICAL, body_of(fields))

    assert field in str(exc_info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", 12345),
        ("id", None),
        ("workflow_id", None),
        ("workflow_id", ["w"]),
        ("status", 5),
        ("status", {"s": "running"}),
        ("created_at", "not-a-timestamp"),
        ("created_at", None),
        ("started_at", "yesterday"),
        ("retry_count", "three"),
        ("retry_count", 1.5),
        ("retry_count", None),
        ("error", {"message": "x"}),
        ("parent_execution_id", 7),
        ("run_timeout_seconds", "forever"),
        ("queue_name", ["q"]),
    ],
)
def test_a_field_of_the_wrong_type_is_not_an_execution(field: str, value: Any) -> None:
    with pytest.raises(NotAnExecution) as exc_info:
        decode_execution(CANONICAL, body_of(execution_fields(**{field: value})))

    assert field in str(exc_info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("retry_count", "3", id="retry_count-as-string"),
        pytest.param("retry_count", True, id="retry_count-as-boolean"),
        pytest.param("created_at", 1_700_000_000, id="created_at-as-number"),
    ],
)
def test_a_json_value_of_the_wrong_type_is_refused_even_when_it_could_be_coerced(
    field: str, value: Any
) -> None:
    with pytest.raises(NotAnExecution):
        decode_execution(CANONICAL, body_of(execution_fields(**{field: value})))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b"[]", "not a JSON object", id="empty-array"),
        pytest.param(b'[{"id": "x"}]', "not a JSON object", id="array-of-object"),
        pytest.param(b'"an execution"', "not a JSON object", id="string"),
        pytest.param(b"42", "not a JSON object", id="number"),
        pytest.param(b"null", "not a JSON object", id="null"),
        pytest.param(b"", "not JSON", id="empty"),
        pytest.param(b"<html>Bad Gateway</html>", "not JSON", id="html"),
        pytest.param(b'{"id": "' + CANONICAL.encode(), "not JSON", id="truncated"),
        pytest.param(b"\xff\xfe{}", "not JSON", id="not-utf8"),
        pytest.param(b"{'id': 1}", "not JSON", id="single-quotes"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_not_an_execution(body: bytes, expected: str) -> None:
    with pytest.raises(NotAnExecution) as exc_info:
        decode_execution(CANONICAL, body)

    assert str(exc_info.value) == expected


def test_a_truncated_execution_body_is_not_an_execution() -> None:
    body = body_of(execution_fields())

    with pytest.raises(NotAnExecution, match="not JSON"):
        decode_execution(CANONICAL, body[: len(body) // 2])


@pytest.mark.parametrize("other", [OTHER, OTHER.upper(), "not-a-uuid", ""])
def test_a_body_describing_a_different_execution_is_not_an_execution(other: str) -> None:
    with pytest.raises(NotAnExecution, match="different execution"):
        decode_execution(CANONICAL, body_of(execution_fields(id=other)))


CANARY = "s3cr3t-VALUE-from-upstream"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(body_of(execution_fields(created_at=CANARY)), id="bad-timestamp"),
        pytest.param(body_of(execution_fields(retry_count=CANARY)), id="bad-integer"),
        pytest.param(body_of(execution_fields(status=[CANARY])), id="bad-string"),
        pytest.param(body_of(execution_fields(error={"detail": CANARY})), id="bad-error"),
        pytest.param(body_of(execution_fields(id=CANARY)), id="other-id"),
        pytest.param(body_of(execution_fields(id=OTHER)), id="other-uuid"),
        pytest.param(CANARY.encode(), id="not-json"),
        pytest.param(f'{{"id": "{CANARY}", "status": '.encode(), id="truncated"),
        pytest.param(json.dumps([CANARY]).encode(), id="array"),
        pytest.param(json.dumps(CANARY).encode(), id="string"),
    ],
)
def test_the_refusal_message_never_repeats_a_value_from_the_body(body: bytes) -> None:
    with pytest.raises(NotAnExecution) as exc_info:
        decode_execution(CANONICAL, body)

    message = str(exc_info.value)
    assert message
    assert CANARY.lower() not in message.lower()
    assert OTHER not in message
    # Nor does the exception chain carry pydantic's error, which holds the input.
    assert exc_info.value.__cause__ is None
    assert exc_info.value.__context__ is None or exc_info.value.__suppress_context__


@pytest.mark.parametrize("status", ["Completed", "COMPLETED", "Failed", "CANCELLED", "cAnCeLlEd"])
def test_a_final_status_in_another_case_is_terminal(status: str) -> None:
    fetched = decode_execution(CANONICAL, body_of(execution_fields(status=status)))

    assert fetched.record.is_terminal
    assert fetched.record.status == status  # kept as the orchestrator sent it


@pytest.mark.parametrize("status", ["Running", "PENDING", "Completed_Soon"])
def test_a_status_that_is_not_final_in_any_case_is_not_terminal(status: str) -> None:
    fetched = decode_execution(CANONICAL, body_of(execution_fields(status=status)))

    assert not fetched.record.is_terminal


@pytest.mark.parametrize("field", ["created_at", "started_at", "completed_at", "cancelled_at"])
@pytest.mark.parametrize(
    "timestamp", ["2026-11-14T13:00:13", "2026-11-14T13:00:13.123456", "2026-11-14 13:00:13"]
)
def test_a_timestamp_without_an_offset_is_not_an_execution(field: str, timestamp: str) -> None:
    with pytest.raises(NotAnExecution) as exc_info:
        decode_execution(CANONICAL, body_of(execution_fields(**{field: timestamp})))

    assert field in str(exc_info.value)


@pytest.mark.parametrize(
    "timestamp",
    ["2026-11-14T13:00:13Z", "2026-11-14T13:00:13+02:00", "2026-11-14T13:00:13.5-05:30"],
)
def test_a_timestamp_with_an_offset_or_z_is_accepted(timestamp: str) -> None:
    fetched = decode_execution(CANONICAL, body_of(execution_fields(created_at=timestamp)))

    assert fetched.record.created_at.utcoffset() is not None
