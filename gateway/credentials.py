"""The caller's credentials: exactly what the contract lets the gateway pass to the upstream.

Everything a client sends is dropped except ``Authorization``, ``X-Project-ID``,
``Project-ID``, ``traceparent`` and the ``polos_auth`` cookie (rebuilt as the only cookie).
A value that could not travel in an HTTP header unchanged (non-ASCII, control characters) is
dropped too, so the upstream answers as it would to a request without it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

ALLOWED_HEADERS = frozenset({"authorization", "x-project-id", "project-id", "traceparent"})
ALLOWED_COOKIES = frozenset({"polos_auth"})
# Forwarded, but says nothing about who is asking: it differs on every request.
_NOT_IDENTITY = frozenset({"traceparent"})

_HEADER_VALUE = re.compile(r"[\x20-\x7e]+")
# RFC 6265 cookie-octets, optionally in double quotes: no ';', ',', '"', '\', space or CTLs.
_COOKIE_VALUE = re.compile(r'"?([\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+)"?')


@dataclass(frozen=True, slots=True)
class Credentials:
    """Headers to send upstream, as sorted ``(lower-case name, value)`` pairs."""

    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_request(
        cls,
        headers: Mapping[str, str],
        *,
        header_names: Iterable[str] = ALLOWED_HEADERS,
        cookie_names: Iterable[str] = ALLOWED_COOKIES,
    ) -> Credentials:
        """Pick the forwardable credentials out of an incoming request's headers.

        ``headers`` must be case-insensitive (Starlette's ``Headers`` is), or have lower-case
        keys with ``header_names`` lower-case too; the cookies are read from its raw
        ``Cookie`` header.
        """
        picked: dict[str, str] = {}
        for name in header_names:
            value = headers.get(name)
            if value and _HEADER_VALUE.fullmatch(value):
                picked[name.lower()] = value.strip()
        cookie = _cookie_header(headers.get("cookie", ""), cookie_names)
        if cookie:
            picked["cookie"] = cookie
        return cls(headers=tuple(sorted(picked.items())))

    @classmethod
    def from_raw_headers(
        cls,
        raw: Sequence[tuple[bytes, bytes]],
        *,
        header_names: Iterable[str] = ALLOWED_HEADERS,
        cookie_names: Iterable[str] = ALLOWED_COOKIES,
    ) -> Credentials:
        """``from_request`` over an ASGI scope's header list, in one pass over it.

        Every request is asked this once or twice; a lookup per name in Starlette's
        ``Headers`` scans the whole list each time.
        """
        names, wanted = _raw_names(tuple(header_names))
        first: dict[str, str] = {}
        for name, value in raw:  # ASGI header names are lower-case
            if name in wanted:
                first.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        return cls.from_request(first, header_names=names, cookie_names=cookie_names)

    def as_dict(self) -> dict[str, str]:
        return dict(self.headers)


@functools.lru_cache(maxsize=16)
def _raw_names(header_names: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[bytes]]:
    """The names lower-cased, and as the bytes an ASGI header list holds, the cookie's too:
    the same few settings on every request, worked out once."""
    names = tuple(name.lower() for name in header_names)
    return names, frozenset(name.encode("latin-1") for name in names) | {b"cookie"}


def _cookie_header(raw: str, names: Iterable[str]) -> str:
    """``name=value`` for each wanted cookie with a well-formed value, joined as one header."""
    wanted = set(names)
    found: dict[str, str] = {}
    for pair in raw.split(";"):
        name, sep, value = pair.strip().partition("=")
        match = _COOKIE_VALUE.fullmatch(value.strip())
        if sep and name in wanted and name not in found and match:
            found[name] = match.group(0)
    return "; ".join(f"{name}={found[name]}" for name in sorted(found))


def credential_fingerprint(credentials: Credentials, secret: bytes) -> str:
    """A keyed hash of who is asking: every forwarded credential except ``traceparent``.

    Two requests share cached answers only when their fingerprints are equal, that is when
    they carry the same Authorization, project headers and ``polos_auth`` cookie.
    """
    identity = "\n".join(
        f"{name}:{value}" for name, value in credentials.headers if name not in _NOT_IDENTITY
    )
    return hmac.new(secret, identity.encode(), hashlib.sha256).hexdigest()
