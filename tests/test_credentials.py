"""Unit tests of ``gateway.credentials``: what of a request may travel to the upstream."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers
from starlette.requests import cookie_parser

from gateway.credentials import ALLOWED_COOKIES, ALLOWED_HEADERS, Credentials

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJl-_"


def request_headers(**extra: str) -> Headers:
    """A browser-like request carrying every forwardable credential and much that is not."""
    headers = {
        "Host": "gateway.test",
        "User-Agent": "Mozilla/5.0",
        "Accept": "application/json",
        "Authorization": "Bearer sk_test_key",
        "X-Project-ID": "project-1",
        "Project-ID": "project-2",
        "traceparent": TRACEPARENT,
        "tracestate": "vendor=opaque",
        "X-Api-Key": "not-forwarded",
        "Proxy-Authorization": "Basic bm90OmZvcndhcmRlZA==",
        "X-Forwarded-For": "10.0.0.1",
        "Cookie": f"polos_auth={JWT}; session=not-forwarded; csrftoken=not-forwarded",
    }
    headers.update(extra)
    return Headers(headers)


def request_cookies() -> dict[str, str]:
    return cookie_parser(request_headers()["cookie"])


def test_the_contract_lists_exactly_four_headers_and_one_cookie() -> None:
    assert frozenset({"authorization", "x-project-id", "project-id", "traceparent"}) == (
        ALLOWED_HEADERS
    )
    assert frozenset({"polos_auth"}) == ALLOWED_COOKIES


def test_exactly_the_contracts_headers_and_the_polos_auth_cookie_are_picked() -> None:
    credentials = Credentials.from_request(request_headers(), request_cookies())

    assert credentials.headers == (
        ("authorization", "Bearer sk_test_key"),
        ("cookie", f"polos_auth={JWT}"),
        ("project-id", "project-2"),
        ("traceparent", TRACEPARENT),
        ("x-project-id", "project-1"),
    )
    assert "not-forwarded" not in repr(credentials)


def test_header_names_are_matched_whatever_their_case() -> None:
    headers = Headers(
        raw=[
            (b"authorization", b"Bearer a"),
            (b"x-project-id", b"p"),
            (b"project-id", b"q"),
            (b"traceparent", TRACEPARENT.encode()),
        ]
    )

    credentials = Credentials.from_request(
        headers,
        {},
        header_names=["AUTHORIZATION", "X-Project-Id", "Project-ID", "TraceParent"],
    )

    assert credentials.as_dict() == {
        "authorization": "Bearer a",
        "x-project-id": "p",
        "project-id": "q",
        "traceparent": TRACEPARENT,
    }


def test_headers_sent_in_upper_case_are_found_and_forwarded_under_lower_case_names() -> None:
    headers = Headers({"AUTHORIZATION": "Bearer a", "X-PROJECT-ID": "p", "TRACEPARENT": "t"})

    credentials = Credentials.from_request(headers, {})

    assert credentials.as_dict() == {
        "authorization": "Bearer a",
        "x-project-id": "p",
        "traceparent": "t",
    }


def test_the_raw_cookie_header_is_never_forwarded_only_the_polos_auth_cookie() -> None:
    credentials = Credentials.from_request(request_headers(), request_cookies())

    assert credentials.as_dict()["cookie"] == f"polos_auth={JWT}"


@pytest.mark.parametrize(
    "cookies",
    [
        pytest.param({}, id="none"),
        pytest.param({"session": "s", "csrftoken": "c"}, id="others-only"),
        pytest.param({"POLOS_AUTH": "x", "Polos_Auth": "y"}, id="other-case"),
        pytest.param({"polos_auth_v2": "x", "xpolos_auth": "y"}, id="similar-names"),
    ],
)
def test_without_a_polos_auth_cookie_no_cookie_header_is_forwarded(
    cookies: dict[str, str],
) -> None:
    credentials = Credentials.from_request(Headers({"cookie": "session=s"}), cookies)

    assert "cookie" not in credentials.as_dict()


def test_a_request_with_nothing_forwardable_gives_empty_credentials() -> None:
    headers = Headers({"x-api-key": "k", "user-agent": "curl", "cookie": "session=s"})

    credentials = Credentials.from_request(headers, {"session": "s"})

    assert credentials == Credentials()
    assert credentials.as_dict() == {}


def test_a_narrowed_header_list_forwards_only_those_headers() -> None:
    credentials = Credentials.from_request(
        request_headers(), request_cookies(), header_names=["authorization"]
    )

    assert credentials.as_dict() == {
        "authorization": "Bearer sk_test_key",
        "cookie": f"polos_auth={JWT}",
    }


def test_an_empty_cookie_list_forwards_no_cookie() -> None:
    credentials = Credentials.from_request(request_headers(), request_cookies(), cookie_names=())

    assert "cookie" not in credentials.as_dict()
    assert "authorization" in credentials.as_dict()


def test_empty_header_and_cookie_lists_forward_nothing() -> None:
    credentials = Credentials.from_request(
        request_headers(), request_cookies(), header_names=(), cookie_names=()
    )

    assert credentials == Credentials()


def test_equal_requests_give_equal_hashable_credentials() -> None:
    first = Credentials.from_request(request_headers(), request_cookies())
    second = Credentials.from_request(request_headers(), request_cookies())

    assert first == second
    assert hash(first) == hash(second)
    assert {first: "cached"}[second] == "cached"


def test_the_order_and_case_of_the_incoming_headers_do_not_change_the_credentials() -> None:
    one = Headers(raw=[(b"x-project-id", b"p"), (b"authorization", b"Bearer a")])
    other = Headers({"Authorization": "Bearer a", "X-Project-ID": "p", "Accept": "*/*"})

    assert Credentials.from_request(one, {}) == Credentials.from_request(other, {})


@pytest.mark.parametrize(
    ("headers", "cookies"),
    [
        pytest.param({"authorization": "Bearer other"}, {"polos_auth": JWT}, id="other-token"),
        pytest.param({"authorization": "Bearer sk_test_key"}, {"polos_auth": "x"}, id="other-jwt"),
        pytest.param({"authorization": "Bearer sk_test_key"}, {}, id="no-cookie"),
        pytest.param(
            {"authorization": "Bearer sk_test_key", "x-project-id": "p"},
            {"polos_auth": JWT},
            id="extra-project",
        ),
    ],
)
def test_requests_with_different_credentials_give_different_keys(
    headers: dict[str, str], cookies: dict[str, str]
) -> None:
    base = Credentials.from_request(
        Headers({"authorization": "Bearer sk_test_key"}), {"polos_auth": JWT}
    )

    assert Credentials.from_request(Headers(headers), cookies) != base


def test_credentials_cannot_be_changed_after_they_are_made() -> None:
    credentials = Credentials.from_request(request_headers(), request_cookies())

    with pytest.raises(AttributeError):
        credentials.headers = ()  # type: ignore[misc]


def test_as_dict_gives_the_headers_to_send_and_a_fresh_dict_each_time() -> None:
    credentials = Credentials.from_request(request_headers(), request_cookies())

    sent = credentials.as_dict()
    sent["authorization"] = "tampered"

    assert credentials.as_dict()["authorization"] == "Bearer sk_test_key"


def test_a_polos_auth_cookie_value_is_forwarded_byte_for_byte() -> None:
    cookies = cookie_parser("polos_auth=YWJjZA==")

    credentials = Credentials.from_request(Headers({}), cookies)

    assert credentials.as_dict()["cookie"] == "polos_auth=YWJjZA=="
