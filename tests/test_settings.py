"""Unit tests of ``gateway.settings``: defaults, ``POLOS_GATEWAY_*`` variables, validation."""

from __future__ import annotations

import os
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.settings import Settings

UPSTREAM = "http://upstream.test:8080"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``POLOS_GATEWAY_*`` variable of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.upper().startswith("POLOS_GATEWAY_"):
            monkeypatch.delenv(name)


def refusal(**values: Any) -> str:
    """The text of the ValidationError that ``Settings(**values)`` raises."""
    with pytest.raises(ValidationError) as exc_info:
        Settings(**values)
    return str(exc_info.value)


def test_the_defaults_are_the_documented_ones() -> None:
    settings = Settings()

    assert settings.upstream_url is None
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.workers == 1
    assert settings.log_level == "info"
    assert settings.connect_timeout == 2.0
    assert settings.read_timeout == 10.0
    assert settings.upstream_timeout == 15.0
    assert settings.max_concurrent_upstream == 100
    assert settings.max_ids_per_query == 200
    assert settings.max_ancestors == 100
    assert settings.forward_headers == [
        "authorization",
        "project-id",
        "traceparent",
        "x-project-id",
    ]
    assert settings.forward_cookies == ["polos_auth"]


def test_without_an_upstream_there_is_no_upstream_base() -> None:
    with pytest.raises(RuntimeError, match="no upstream configured"):
        _ = Settings().upstream_base


def test_environment_variables_with_the_prefix_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLOS_GATEWAY_UPSTREAM_URL", UPSTREAM)
    monkeypatch.setenv("POLOS_GATEWAY_HOST", "0.0.0.0")  # noqa: S104
    monkeypatch.setenv("POLOS_GATEWAY_PORT", "9100")
    monkeypatch.setenv("POLOS_GATEWAY_WORKERS", "4")
    monkeypatch.setenv("POLOS_GATEWAY_LOG_LEVEL", "debug")
    monkeypatch.setenv("POLOS_GATEWAY_CONNECT_TIMEOUT", "0.5")
    monkeypatch.setenv("POLOS_GATEWAY_READ_TIMEOUT", "3")
    monkeypatch.setenv("POLOS_GATEWAY_UPSTREAM_TIMEOUT", "4.5")
    monkeypatch.setenv("POLOS_GATEWAY_MAX_CONCURRENT_UPSTREAM", "7")
    monkeypatch.setenv("POLOS_GATEWAY_MAX_IDS_PER_QUERY", "20")
    monkeypatch.setenv("POLOS_GATEWAY_MAX_ANCESTORS", "30")

    settings = Settings()

    assert settings.upstream_base == UPSTREAM
    assert settings.host == "0.0.0.0"  # noqa: S104
    assert settings.port == 9100
    assert settings.workers == 4
    assert settings.log_level == "debug"
    assert settings.connect_timeout == 0.5
    assert settings.read_timeout == 3.0
    assert settings.upstream_timeout == 4.5
    assert settings.max_concurrent_upstream == 7
    assert settings.max_ids_per_query == 20
    assert settings.max_ancestors == 30


def test_variables_without_the_prefix_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9999")
    monkeypatch.setenv("UPSTREAM_URL", UPSTREAM)

    settings = Settings()

    assert settings.port == 8000
    assert settings.upstream_url is None


def test_explicit_values_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLOS_GATEWAY_UPSTREAM_URL", "http://from-env.test:1")
    monkeypatch.setenv("POLOS_GATEWAY_PORT", "9100")

    settings = Settings(upstream_url=UPSTREAM, port=9200)

    assert settings.upstream_base == UPSTREAM
    assert settings.port == 9200


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("authorization,x-project-id", ["authorization", "x-project-id"]),
        (" Authorization , X-Project-ID ,", ["authorization", "x-project-id"]),
        ("traceparent", ["traceparent"]),
        ("", []),
    ],
)
def test_forward_headers_come_from_a_comma_separated_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv("POLOS_GATEWAY_FORWARD_HEADERS", value)

    assert Settings().forward_headers == expected


def test_forward_cookies_come_from_a_comma_separated_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POLOS_GATEWAY_FORWARD_COOKIES", "")

    assert Settings().forward_cookies == []


def test_forward_headers_may_also_be_given_as_a_list() -> None:
    assert Settings(forward_headers=["X-Project-ID"]).forward_headers == ["x-project-id"]


def test_an_invalid_value_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLOS_GATEWAY_PORT", "eighty")

    with pytest.raises(ValidationError, match="port"):
        Settings()


@pytest.mark.parametrize("field", ["connect_timeout", "read_timeout", "upstream_timeout"])
@pytest.mark.parametrize("value", [-1.0, 0.0])
def test_a_timeout_that_is_not_positive_is_refused(field: str, value: float) -> None:
    message = refusal(**{field: value})

    assert field in message
    assert "greater than 0" in message


def test_a_timeout_beyond_ten_minutes_is_refused() -> None:
    message = refusal(read_timeout=601)

    assert "read_timeout" in message
    assert "less than or equal to 600" in message


def test_an_overall_deadline_shorter_than_the_connect_timeout_is_refused() -> None:
    message = refusal(connect_timeout=5, upstream_timeout=2)

    assert "upstream_timeout (2.0s) must be at least connect_timeout (5.0s)" in message


def test_an_overall_deadline_equal_to_the_connect_timeout_is_accepted() -> None:
    settings = Settings(connect_timeout=3, upstream_timeout=3)

    assert settings.upstream_timeout == settings.connect_timeout == 3.0


@pytest.mark.parametrize(
    "header", ["cookie", "x-api-key", "Set-Cookie", "proxy-authorization", "host", "tracestate"]
)
def test_forwarding_a_header_outside_the_contract_is_refused(header: str) -> None:
    message = refusal(forward_headers=["authorization", header])

    assert "forward_headers" in message
    assert f"cannot forward {header.lower()}" in message


def test_forwarding_a_header_outside_the_contract_is_refused_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POLOS_GATEWAY_FORWARD_HEADERS", "authorization,x-api-key")

    with pytest.raises(ValidationError, match="cannot forward x-api-key"):
        Settings()


@pytest.mark.parametrize("cookie", ["session", "POLOS_AUTH", "polos_auth_v2"])
def test_forwarding_a_cookie_outside_the_contract_is_refused(cookie: str) -> None:
    message = refusal(forward_cookies=[cookie])

    assert "forward_cookies" in message
    assert f"cannot forward cookie {cookie}" in message


@pytest.mark.parametrize(
    "url", ["not a url", "upstream.test:8080", "ftp://upstream.test/", "http://", "//upstream.test"]
)
def test_an_upstream_that_is_not_an_http_url_is_refused(url: str) -> None:
    message = refusal(upstream_url=url)

    assert "upstream_url" in message
    assert "url" in message.split("upstream_url", 1)[1].lower()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", -1),
        ("port", 65536),
        ("workers", 0),
        ("max_concurrent_upstream", 0),
        ("max_ids_per_query", 0),
        ("max_ancestors", 0),
        ("log_level", "verbose"),
    ],
)
def test_an_out_of_range_value_is_refused_naming_the_setting(field: str, value: Any) -> None:
    assert field in refusal(**{field: value})


def test_an_unknown_setting_is_refused() -> None:
    assert "upstrem_url" in refusal(upstrem_url=UPSTREAM)


@pytest.mark.parametrize(
    ("url", "base"),
    [
        (UPSTREAM, UPSTREAM),
        (f"{UPSTREAM}/", UPSTREAM),
        (f"{UPSTREAM}/polos/", f"{UPSTREAM}/polos"),
        (f"{UPSTREAM}/polos", f"{UPSTREAM}/polos"),
        ("https://orchestrator.example.com", "https://orchestrator.example.com"),
    ],
)
def test_the_upstream_base_has_no_trailing_slash(url: str, base: str) -> None:
    assert Settings(upstream_url=url).upstream_base == base


@pytest.mark.parametrize("url", [f"{UPSTREAM}/?tenant=1", f"{UPSTREAM}/#top"])
def test_an_upstream_url_with_a_query_or_fragment_is_refused(url: str) -> None:
    message = refusal(upstream_url=url)

    assert "upstream_url" in message


@pytest.mark.parametrize(
    "url",
    [
        f"http://gateway:s3cret@{UPSTREAM.removeprefix('http://')}",
        f"http://gateway@{UPSTREAM.removeprefix('http://')}",
        f"http://:s3cret@{UPSTREAM.removeprefix('http://')}",
        "https://user:pass@orchestrator.example.com/polos",
    ],
)
def test_an_upstream_url_holding_a_username_or_password_is_refused_saying_why(url: str) -> None:
    message = refusal(upstream_url=url)

    assert "upstream_url" in message
    assert "must not hold credentials" in message


def test_repeated_forward_header_names_are_kept_once_whatever_their_case() -> None:
    settings = Settings(
        forward_headers=["Authorization", "authorization", "AUTHORIZATION", "traceparent"]
    )

    assert settings.forward_headers == ["authorization", "traceparent"]


def test_repeated_forward_header_names_in_the_environment_are_kept_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POLOS_GATEWAY_FORWARD_HEADERS", "x-project-id,X-Project-ID,x-project-id")

    assert Settings().forward_headers == ["x-project-id"]


def test_repeated_forward_cookie_names_are_kept_once() -> None:
    assert Settings(forward_cookies=["polos_auth", "polos_auth"]).forward_cookies == ["polos_auth"]


def test_the_per_request_fetch_cap_and_the_body_limit_have_their_documented_defaults() -> None:
    settings = Settings()

    assert settings.max_fetches_per_request == 1000
    assert settings.max_upstream_body_bytes == 8388608 == 8 * 2**20


def test_the_per_request_fetch_cap_and_the_body_limit_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POLOS_GATEWAY_MAX_FETCHES_PER_REQUEST", "25")
    monkeypatch.setenv("POLOS_GATEWAY_MAX_UPSTREAM_BODY_BYTES", "65536")

    settings = Settings()

    assert settings.max_fetches_per_request == 25
    assert settings.max_upstream_body_bytes == 65536


@pytest.mark.parametrize("field", ["max_fetches_per_request", "max_upstream_body_bytes"])
@pytest.mark.parametrize("value", [0, -1])
def test_a_fetch_cap_or_body_limit_that_is_not_positive_is_refused(field: str, value: int) -> None:
    message = refusal(**{field: value})

    assert field in message
    assert "greater than or equal to" in message
