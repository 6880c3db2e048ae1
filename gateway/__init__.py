"""polos-gateway: a GraphQL gateway in front of the Polos orchestrator's executions API."""

from gateway.app import create_app
from gateway.settings import Settings

__all__ = ["Settings", "create_app"]
