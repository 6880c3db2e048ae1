"""Unit tests of ``gateway.credentials``: what of a request may travel to the upstream."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.datastructures import Headers
from starlette.requests import cookie_parser

from gateway.credentials import (
    ALLOWED_COOKIES,
    ALLOWED_HEADERS,
    Credentials,
    credential_fingerprint,
)

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


def cookie_header(raw: str) -> Headers:
    """Request headers carrying ``raw`` as the Cookie header, as Starlette decodes it."""
    return Headers(raw=[(b"cookie", raw.encode("latin-1"))])


def forwarded_cookie(raw: str) -> str | None:
    """The Cookie header sent upstream for a request whose Cookie header is ``raw``."""
    return Credentials.from_request(cookie_header(raw)).as_dict().get("cookie")


def test_the_contract_lists_exactly_four_headers_and_one_cookie() -> None:
    assert frozenset({"authorization", "x-project-id", "project-id", "traceparent"}) == (
        ALLOWED_HEADERS
    )
    assert frozenset({"polos_auth"}) == ALLOWED_COOKIES


def test_exactly_the_contracts_headers_and_the_polos_auth_cookie_are_picked() -> None:
    credentials = Credentials.from_request(request_headers())

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

    credentials = Credentials.from_request(headers)

    assert credentials.as_dict() == {
        "authorization": "Bearer a",
        "x-project-id": "p",
        "traceparent": "t",
    }


def test_the_raw_cookie_header_is_never_forwarded_only_the_polos_auth_cookie() -> None:
    credentials = Credentials.from_request(request_headers())

    assert credentials.as_dict()["cookie"] == f"polos_auth={JWT}"


@pytest.mark.parametrize(
    "cookies",
    [
        pytest.param("", id="none"),
        pytest.param("session=s; csrftoken=c", id="others-only"),
        pytest.param("POLOS_AUTH=x; Polos_Auth=y", id="other-case"),
        pytest.param("polos_auth_v2=x; xpolos_auth=y", id="similar-names"),
        pytest.param("polos_auth=", id="empty-value"),
        pytest.param("polos_auth", id="no-value"),
    ],
)
def test_without_a_polos_auth_cookie_no_cookie_header_is_forwarded(cookies: str) -> None:
    credentials = Credentials.from_request(cookie_header(cookies))

    assert "cookie" not in credentials.as_dict()


def test_a_request_with_nothing_forwardable_gives_empty_credentials() -> None:
    headers = Headers({"x-api-key": "k", "user-agent": "curl", "cookie": "session=s"})

    credentials = Credentials.from_request(headers)

    assert credentials == Credentials()
    assert credentials.as_dict() == {}


def test_a_narrowed_header_list_forwards_only_those_headers() -> None:
    credentials = Credentials.from_request(request_headers(), header_names=["authorization"])

    assert credentials.as_dict() == {
        "authorization": "Bearer sk_test_key",
        "cookie": f"polos_auth={JWT}",
    }


def test_an_empty_cookie_list_forwards_no_cookie() -> None:
    credentials = Credentials.from_request(request_headers(), cookie_names=())

    assert "cookie" not in credentials.as_dict()
    assert "authorization" in credentials.as_dict()


def test_empty_header_and_cookie_lists_forward_nothing() -> None:
    credentials = Credentials.from_request(request_headers(), header_names=(), cookie_names=())

    assert credentials == Credentials()


def test_equal_requests_give_equal_hashable_credentials() -> None:
    first = Credentials.from_request(request_headers())
    second = Credentials.from_request(request_headers())

    assert first == second
    assert hash(first) == hash(second)
    assert {first: "cached"}[second] == "cached"


def test_the_order_and_case_of_the_incoming_headers_do_not_change_the_credentials() -> None:
    one = Headers(raw=[(b"x-project-id", b"p"), (b"authorization", b"Bearer a")])
    other = Headers({"Authorization": "Bearer a", "X-Project-ID": "p", "Accept": "*/*"})

    assert Credentials.from_request(one) == Credentials.from_request(other)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(
            {"authorization": "Bearer other", "cookie": f"polos_auth={JWT}"}, id="other-token"
        ),
        pytest.param(
            {"authorization": "Bearer sk_test_key", "cookie": "polos_auth=x"}, id="other-jwt"
        ),
        pytest.param({"authorization": "Bearer sk_test_key"}, id="no-cookie"),
        pytest.param(
            {
                "authorization": "Bearer sk_test_key",
                "x-project-id": "p",
                "cookie": f"polos_auth={JWT}",
            },
            id="extra-project",
        ),
    ],
)
def test_requests_with_different_credentials_give_different_keys(headers: dict[str, str]) -> None:
    base = Credentials.from_request(
        Headers({"authorization": "Bearer sk_test_key", "cookie": f"polos_auth={JWT}"})
    )

    assert Credentials.from_request(Headers(headers)) != base


def test_credentials_cannot_be_changed_after_they_are_made() -> None:
    credentials = Credentials.from_request(request_headers())

    with pytest.raises(AttributeError):
        credentials.headers = ()  # type: ignore[misc]


def test_as_dict_gives_the_headers_to_send_and_a_fresh_dict_each_time() -> None:
    credentials = Credentials.from_request(request_headers())

    sent = credentials.as_dict()
    sent["authorization"] = "tampered"

    assert credentials.as_dict()["authorization"] == "Bearer sk_test_key"


def test_a_polos_auth_cookie_value_is_forwarded_byte_for_byte() -> None:
    credentials = Credentials.from_request(cookie_header("polos_auth=YWJjZA=="))

    assert credentials.as_dict()["cookie"] == "polos_auth=YWJjZA=="


# --- values that could not travel unchanged -----------------------------------------------


@pytest.mark.parametrize("name", ["Authorization", "X-Project-ID", "Project-ID", "traceparent"])
@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Bearer \xff", id="latin-1-byte"),
        pytest.param("Bearer caf\xe9", id="accented-letter"),
        pytest.param("Bearer a\x00b", id="nul"),
        pytest.param("Bearer a\x1bb", id="escape"),
        pytest.param("Bearer a\x7f", id="delete"),
        pytest.param("Bearer a\tb", id="tab"),
        pytest.param("Bearer a\r\nX-Injected: 1", id="crlf"),
    ],
)
def test_a_credential_header_with_non_ascii_or_control_characters_is_dropped_alone(
    name: str, value: str
) -> None:
    other = "x-project-id" if name.lower() != "x-project-id" else "authorization"
    headers = Headers(
        raw=[(name.lower().encode(), value.encode("latin-1")), (other.encode(), b"p")]
    )

    credentials = Credentials.from_request(headers)

    assert credentials.as_dict() == {other: "p"}


@pytest.mark.parametrize(
    "cookies",
    [
        pytest.param("polos_auth=t\xffk", id="latin-1-byte"),
        pytest.param("polos_auth=t\x00k", id="nul"),
        pytest.param("polos_auth=t\x7fk", id="delete"),
        pytest.param("polos_auth=t\tk", id="tab"),
    ],
)
def test_a_polos_auth_cookie_with_non_ascii_or_control_characters_is_dropped(
    cookies: str,
) -> None:
    assert forwarded_cookie(cookies) is None


# --- the polos_auth cookie: verbatim, and alone -------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("YWJjZA==", id="base64-padding"),
        pytest.param('"YWJjZA=="', id="quoted"),
        pytest.param('"abc"', id="quoted-plain"),
        pytest.param(JWT, id="jwt"),
        pytest.param("a=b=c", id="equals-signs"),
        pytest.param("%22percent%3B", id="percent-escapes-kept-encoded"),
        pytest.param("!#$%&'()*+-./:<>?@[]^_`{|}~", id="every-cookie-punctuation"),
    ],
)
def test_the_polos_auth_cookie_value_is_forwarded_verbatim_quotes_and_all(value: str) -> None:
    raw = f"session=abc; polos_auth={value}; csrftoken=def"

    assert forwarded_cookie(raw) == f"polos_auth={value}"
    assert forwarded_cookie(f"polos_auth={value}") == f"polos_auth={value}"


def test_only_the_first_well_formed_polos_auth_cookie_is_forwarded() -> None:
    assert forwarded_cookie("polos_auth=first; polos_auth=second") == "polos_auth=first"
    assert forwarded_cookie("polos_auth=a b; polos_auth=second") == "polos_auth=second"


@pytest.mark.parametrize(
    "cookies",
    [
        pytest.param(
            'polos_auth="tok\\073 session=stolen\\073 other=x"', id="octal-escaped-semicolons"
        ),
        pytest.param('polos_auth="tok\\015\\012X-Injected: 1"', id="octal-escaped-crlf"),
        pytest.param('polos_auth="tok\\"; session=stolen"', id="escaped-quote"),
        pytest.param("polos_auth=tok,session=stolen", id="comma"),
        pytest.param("polos_auth=tok session=stolen", id="space"),
        pytest.param("polos_auth=tok\\session=stolen", id="backslash"),
        pytest.param("polos_auth=tok\r\nX-Injected: 1", id="crlf"),
        pytest.param("polos_auth=tok\nsession=stolen", id="lf"),
        pytest.param('polos_auth="tok session=stolen"', id="quoted-space"),
    ],
)
def test_a_polos_auth_value_that_could_smuggle_another_cookie_is_not_forwarded(
    cookies: str,
) -> None:
    assert forwarded_cookie(f"{cookies}; other=x") is None
    assert forwarded_cookie(cookies) is None


def test_a_semicolon_ends_the_polos_auth_value_and_what_follows_is_not_forwarded() -> None:
    assert forwarded_cookie("polos_auth=tok;session=stolen") == "polos_auth=tok"


# What the forwarded Cookie header may ever be: one polos_auth pair of cookie-octets or quotes.
FORWARDED_COOKIE = re.compile(r'polos_auth=[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e"]+')

latin_1_text = st.text(alphabet=st.characters(max_codepoint=0xFF))
cookie_fragments = st.sampled_from(
    [
        "polos_auth",
        "polos_auth=",
        "session=",
        "=",
        ";",
        "; ",
        ",",
        " ",
        '"',
        "\\",
        "\\073",
        "\\015\\012",
        "\r\n",
        "\t",
        "\x00",
        "\xff",
        "YWJjZA==",
        "stolen",
    ]
)
cookie_headers = st.one_of(
    latin_1_text,
    st.lists(
        st.one_of(cookie_fragments, latin_1_text.filter(lambda t: len(t) < 4)), max_size=24
    ).map("".join),
)


@given(cookie_headers)
@example('polos_auth="tok\\073 session=stolen\\073 other=x"')
@example('polos_auth="tok\\015\\012X-Injected: 1"')
@example("polos_auth=a\r\nsession=b")
@example('polos_auth="a;session=b"')
@example("polos_auth=a,session=b")
@example("polos_auth=YWJjZA==; session=s")
def test_any_cookie_header_forwards_at_most_one_well_formed_polos_auth_pair_taken_from_it(
    raw: str,
) -> None:
    forwarded = forwarded_cookie(raw)

    if forwarded is not None:
        assert FORWARDED_COOKIE.fullmatch(forwarded), forwarded
        assert set(cookie_parser(forwarded)) == {"polos_auth"}
        assert forwarded.removeprefix("polos_auth=") in raw  # nothing invented or decoded


# RFC 6265 cookie-octets: printable ASCII but for space, '"', ',', ';' and backslash.
cookie_octets = st.text(
    alphabet=[chr(code) for code in range(0x21, 0x7F) if chr(code) not in '",;\\'], min_size=1
)


@given(cookie_octets, st.booleans())
def test_any_well_formed_polos_auth_value_is_forwarded_unchanged(value: str, quoted: bool) -> None:
    if quoted:
        value = f'"{value}"'

    assert forwarded_cookie(f"a=1; polos_auth={value}; b=2") == f"polos_auth={value}"


# --- credential_fingerprint ---------------------------------------------------------------

SECRET = b"fingerprint-secret"
BASE_REQUEST = {
    "Authorization": "Bearer sk_test_key",
    "X-Project-ID": "project-1",
    "Project-ID": "project-2",
    "traceparent": TRACEPARENT,
    "Cookie": f"polos_auth={JWT}; session=s",
}


def fingerprint_of(headers: dict[str, str], secret: bytes = SECRET) -> str:
    return credential_fingerprint(Credentials.from_request(Headers(headers)), secret)


def test_requests_differing_only_in_traceparent_share_a_fingerprint() -> None:
    other_trace = {
        **BASE_REQUEST,
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    no_trace = {k: v for k, v in BASE_REQUEST.items() if k != "traceparent"}

    assert fingerprint_of(other_trace) == fingerprint_of(BASE_REQUEST)
    assert fingerprint_of(no_trace) == fingerprint_of(BASE_REQUEST)


def test_requests_differing_only_in_cookies_that_are_not_forwarded_share_a_fingerprint() -> None:
    other_cookies = {**BASE_REQUEST, "Cookie": f"csrftoken=c; polos_auth={JWT}"}

    assert fingerprint_of(other_cookies) == fingerprint_of(BASE_REQUEST)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Authorization", "Bearer sk_test_other"),
        ("Authorization", None),
        ("X-Project-ID", "project-9"),
        ("X-Project-ID", None),
        ("Project-ID", "project-9"),
        ("Project-ID", None),
        ("Cookie", "polos_auth=other.jwt.value; session=s"),
        ("Cookie", "session=s"),
    ],
)
def test_requests_differing_in_any_identifying_credential_get_different_fingerprints(
    name: str, value: str | None
) -> None:
    changed = {k: v for k, v in BASE_REQUEST.items() if k != name}
    if value is not None:
        changed[name] = value

    assert fingerprint_of(changed) != fingerprint_of(BASE_REQUEST)


def test_the_same_value_under_a_different_project_header_gets_a_different_fingerprint() -> None:
    assert fingerprint_of({"X-Project-ID": "p"}) != fingerprint_of({"Project-ID": "p"})


def test_the_fingerprint_depends_on_the_secret() -> None:
    assert fingerprint_of(BASE_REQUEST, b"secret-one") != fingerprint_of(
        BASE_REQUEST, b"secret-two"
    )
    assert fingerprint_of(BASE_REQUEST, b"secret-one") == fingerprint_of(
        BASE_REQUEST, b"secret-one"
    )


def test_the_fingerprint_is_64_hex_digits_that_do_not_contain_any_credential() -> None:
    hex_project = "0123456789abcdef0123"  # a credential that could pass for part of a digest
    request = {**BASE_REQUEST, "X-Project-ID": hex_project}

    fingerprint = fingerprint_of(request)

    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint)
    for credential in ("sk_test_key", hex_project, "project-2", JWT, JWT[:16]):
        assert credential not in fingerprint


_HEADER_NAMES = st.sampled_from(
    [b"authorization", b"x-project-id", b"project-id", b"traceparent", b"cookie", b"x-api-key"]
)
_HEADER_VALUES = st.sampled_from(
    [
        *(b"Bearer one", b"Bearer two", b"project-1", TRACEPARENT.encode(), b"", b"caf\xe9"),
        *(f"polos_auth={JWT}".encode(), b"session=x; polos_auth=abc", b"polos_auth=a b"),
    ]
)


@given(
    raw=st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=8),
    names=st.sets(st.sampled_from(["Authorization", "x-project-id", "TRACEPARENT"])),
)
@example(raw=[(b"authorization", b"Bearer one"), (b"authorization", b"Bearer two")], names=set())
def test_the_one_pass_over_raw_headers_picks_exactly_what_the_header_lookup_picks(
    raw: list[tuple[bytes, bytes]], names: set[str]
) -> None:
    """Repeated headers (the first wins), names in any case, cookies among others."""
    header_names = names or ALLOWED_HEADERS

    one_pass = Credentials.from_raw_headers(raw, header_names=header_names)

    assert one_pass == Credentials.from_request(Headers(raw=raw), header_names=header_names)
