"""The caller's credentials: exactly what the contract lets the gateway pass to the upstream.

Everything a client sends is dropped except ``Authorization``, ``X-Project-ID``,
``Project-ID``, ``traceparent`` and the ``polos_auth`` cookie. The same value object keys
anything the gateway keeps about a response, so data fetched with one set of credentials is
never handed to a request carrying another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

ALLOWED_HEADERS = frozenset({"authorization", "x-project-id", "project-id", "traceparent"})
ALLOWED_COOKIES = frozenset({"polos_auth"})


@dataclass(frozen=True, slots=True)
class Credentials:
    """Headers to send upstream, as sorted ``(lower-case name, value)`` pairs."""

    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_request(
        cls,
        headers: Mapping[str, str],
        cookies: Mapping[str, str],
        *,
        header_names: Iterable[str] = ALLOWED_HEADERS,
        cookie_names: Iterable[str] = ALLOWED_COOKIES,
    ) -> Credentials:
        """Pick the forwardable credentials out of an incoming request.

        ``headers`` must be case-insensitive (Starlette's ``Headers`` is); ``cookies`` is
        the request's parsed cookies.
        """
        picked: dict[str, str] = {}
        for name in header_names:
            value = headers.get(name)
            if value:
                picked[name.lower()] = value
        cookie = _cookie_header(cookies, cookie_names)
        if cookie:
            picked["cookie"] = cookie
        return cls(headers=tuple(sorted(picked.items())))

    def as_dict(self) -> dict[str, str]:
        return dict(self.headers)


def _cookie_header(cookies: Mapping[str, str], names: Iterable[str]) -> str:
    # Values pass verbatim: they came out of a Cookie header, so they hold no ';', CR or LF.
    return "; ".join(f"{name}={cookies[name]}" for name in sorted(names) if cookies.get(name))
