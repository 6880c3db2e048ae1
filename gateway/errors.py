"""One error model for both front doors.

Errors are raised where the fact is known and translated once per front door: GraphQL reads
``extensions`` (graphql-core copies them from the original exception onto the located error),
the REST route relays an upstream answer as it came or answers in the orchestrator's error
shape. Messages are written for the person who sent the query: they never carry a stack trace,
an upstream URL or a credential.

The hierarchy::

    GatewayError                       code                     what happened
     ├── BadUserInput                  BAD_USER_INPUT           the request itself is wrong
     ├── QueryTooComplex               QUERY_TOO_COMPLEX        the request asks for too much
     ├── CycleDetected                 CYCLE_DETECTED           a tree link leads back to itself
     └── UpstreamFailure               (per subclass)           the orchestrator did not deliver
          ├── UpstreamAnswered         by status: 400 BAD_USER_INPUT, 401 UNAUTHENTICATED,
          │    │                       403 FORBIDDEN, 404 NOT_FOUND, 429 RATE_LIMITED,
          │    │                       anything else UPSTREAM_ERROR
          │    └── NotCancellable      BAD_USER_INPUT           cancel refused: already final
          ├── UpstreamMalformed        UPSTREAM_ERROR           200, but not an execution
          ├── UpstreamTimeout          UPSTREAM_TIMEOUT         no answer in time
          └── UpstreamUnavailable      UPSTREAM_UNAVAILABLE     no connection
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """The machine-readable codes of the contract, sent as ``extensions.code``."""

    NOT_FOUND = "NOT_FOUND"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    UPSTREAM_ERROR = "UPSTREAM_ERROR"
    UPSTREAM_TIMEOUT = "UPSTREAM_TIMEOUT"
    UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
    CYCLE_DETECTED = "CYCLE_DETECTED"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    RATE_LIMITED = "RATE_LIMITED"
    INTERNAL = "INTERNAL"


class GatewayError(Exception):
    """Base of every expected failure; ``code`` says which kind it is."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def reword(self, message: str) -> None:
        """Say what happened in the words of the caller who knows more; the code stays."""
        self.message = message
        self.args = (message,)

    @property
    def upstream_status(self) -> int | None:
        """The HTTP status the upstream answered with, when it answered."""
        return None

    @property
    def extensions(self) -> dict[str, Any]:
        extensions: dict[str, Any] = {"code": self.code.value}
        if self.upstream_status is not None:
            extensions["upstreamStatus"] = self.upstream_status
        return extensions


class BadUserInput(GatewayError):
    code = ErrorCode.BAD_USER_INPUT


class QueryTooComplex(GatewayError):
    code = ErrorCode.QUERY_TOO_COMPLEX


class CycleDetected(GatewayError):
    code = ErrorCode.CYCLE_DETECTED


class UpstreamFailure(GatewayError):
    """The orchestrator did not deliver an execution."""

    code = ErrorCode.UPSTREAM_ERROR


_CODE_BY_STATUS = {
    400: ErrorCode.BAD_USER_INPUT,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    429: ErrorCode.RATE_LIMITED,
}

# Said to a GraphQL client instead of the upstream's own body, which may name internals.
_MESSAGE_BY_STATUS = {
    400: "The orchestrator refused the request for execution {id} as malformed; "
    "check the X-Project-ID header.",
    401: "The orchestrator did not accept the credentials sent with this request.",
    403: "The credentials sent with this request may not {verb} execution {id}.",
    404: "Execution {id} was not found.",
    429: "The orchestrator is rate limiting these credentials; retry later.",
}
_DEFAULT_MESSAGE = "The orchestrator failed to {verb} execution {id} (HTTP {status})."


class UpstreamAnswered(UpstreamFailure):
    """The orchestrator answered with a status other than 200.

    Keeps the answer (status, body and the headers a client acts on) so the REST route can
    relay it unchanged. GraphQL clients see only the code, the status and our own message,
    which names what was asked (``verb``: "read", "cancel").
    """

    def __init__(
        self,
        execution_id: str,
        status: int,
        body: bytes = b"",
        headers: tuple[tuple[str, str], ...] = (),
        *,
        verb: str = "read",
    ) -> None:
        template = _MESSAGE_BY_STATUS.get(status, _DEFAULT_MESSAGE)
        super().__init__(template.format(id=execution_id, status=status, verb=verb))
        self.status = status
        self.body = body
        self.headers = headers
        self.code = _CODE_BY_STATUS.get(status, ErrorCode.UPSTREAM_ERROR)

    @property
    def upstream_status(self) -> int:
        return self.status


class NotCancellable(UpstreamAnswered):
    """The orchestrator refused a cancel (400 ``CANCELLATION_ERROR``): the execution is in a
    status that cannot be cancelled, typically a final one."""

    def __init__(
        self,
        execution_id: str,
        status_word: str | None,
        body: bytes = b"",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(execution_id, 400, body, headers)
        in_status = f" in status {status_word}" if status_word else " in its current status"
        self.reword(f"Execution {execution_id} cannot be cancelled{in_status}.")


class UpstreamMalformed(UpstreamFailure):
    """The orchestrator answered 200 with something that is not an execution."""

    def __init__(self, execution_id: str, problem: str) -> None:
        super().__init__(
            f"The orchestrator answered for execution {execution_id} with an invalid body: "
            f"{problem}."
        )

    @property
    def upstream_status(self) -> int:
        return 200


class UpstreamTimeout(UpstreamFailure):
    code = ErrorCode.UPSTREAM_TIMEOUT


class UpstreamUnavailable(UpstreamFailure):
    code = ErrorCode.UPSTREAM_UNAVAILABLE
