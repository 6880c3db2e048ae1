"""An upstream that answers each poll of an execution with the next step of a script.

For tests of what changes over time (subscriptions, cancel): the n-th GET of an id gets the
n-th step (the last one repeats), and a step can be held until the test releases it, which
is how a test knows where the poller is without looking at a clock.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.servers import Holds, Recorder


@dataclass(frozen=True)
class Step:
    """One answer: ``status`` and ``body``; ``held`` ones wait for ``release``."""

    body: bytes = b""
    status: int = 200
    held: bool = False


class SteppedUpstream:
    """Usage::

    upstream = SteppedUpstream()
    upstream.script(execution_id, Step(queued), Step(running, held=True), Step(done))
    upstream.on_cancel(execution_id, Step(b'{"status": "pending_cancel"}'))
    """

    def __init__(self) -> None:
        self._steps: dict[str, list[Step]] = {}
        self._cancels: dict[str, Step] = {}
        self.polls: Counter[str] = Counter()
        self.holds = Holds()
        self.app = Recorder(
            Starlette(
                routes=[
                    Route("/api/v1/executions/{execution_id}", self._get),
                    Route(
                        "/api/v1/executions/{execution_id}/cancel", self._cancel, methods=["POST"]
                    ),
                ]
            )
        )

    def script(self, execution_id: str, *steps: Step) -> None:
        self._steps[execution_id] = list(steps)

    def on_cancel(self, execution_id: str, step: Step) -> None:
        self._cancels[execution_id] = step

    def cancels(self) -> list[str]:
        """The paths of the cancels received, in order."""
        return [r.path for r in self.app.requests if r.method == "POST"]

    def wait_held(self, count: int = 1, timeout: float = 30) -> None:
        self.holds.wait_held(count, timeout)

    def release(self) -> None:
        """Let every held answer go, now and from now on."""
        self.holds.release()

    async def _get(self, request: Request) -> Response:
        execution_id = request.path_params["execution_id"]
        steps = self._steps.get(execution_id)
        if not steps:
            return Response(status_code=404)
        step = steps[min(self.polls[execution_id], len(steps) - 1)]
        self.polls[execution_id] += 1
        return await self._answer(step)

    async def _cancel(self, request: Request) -> Response:
        step = self._cancels.get(request.path_params["execution_id"])
        return Response(status_code=404) if step is None else await self._answer(step)

    async def _answer(self, step: Step) -> Response:
        if step.held:
            await self.holds.wait()
        return Response(step.body, status_code=step.status, media_type="application/json")
