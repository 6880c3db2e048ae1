"""Configuration: one pydantic-settings object, read from ``POLOS_GATEWAY_*`` variables.

Usage::

    settings = Settings()                       # environment and defaults
    settings = Settings(upstream_url="http://orchestrator:8080")   # explicit values win

Nothing reads settings at import time; ``create_app(settings)`` receives them.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, Field, RedisDsn, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gateway.credentials import ALLOWED_COOKIES, ALLOWED_HEADERS
from gateway.executions import parse_execution_id

PositiveSeconds = Annotated[float, Field(gt=0, le=600)]
TtlSeconds = Annotated[float, Field(ge=0, le=7 * 24 * 3600)]
# What a browser sends as Origin: scheme, host and port, nothing after.
_ORIGIN = re.compile(r"https?://[^/?#\s]+")


def _split_names(value: object) -> object:
    """Accept ``a,b,c`` in an environment variable as well as a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every knob of the gateway; each is also ``POLOS_GATEWAY_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="POLOS_GATEWAY_",
        extra="forbid",
        validate_default=True,
    )

    upstream_url: AnyHttpUrl | None = Field(
        default=None,
        description="Base URL of the Polos orchestrator. Unset: serve the embedded demo upstream.",
    )
    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port to listen on.")
    workers: int = Field(default=1, ge=1, le=64, description="Worker processes.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level of the gateway and its server."
    )
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="The gateway's log lines: one JSON object each, or text for people.",
    )
    shutdown_timeout: PositiveSeconds = Field(
        default=30.0,
        description="Seconds in-flight requests may take to finish after SIGTERM, once new "
        "connections are refused; what is still running then is cancelled.",
    )

    connect_timeout: PositiveSeconds = Field(
        default=2.0, description="Seconds to open a connection to the upstream."
    )
    read_timeout: PositiveSeconds = Field(
        default=10.0, description="Seconds to wait for upstream response bytes."
    )
    upstream_timeout: PositiveSeconds = Field(
        default=15.0,
        description="Overall seconds one upstream call may take, connect to last byte.",
    )
    max_concurrent_upstream: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="Upstream calls in flight at once per process; more wait their turn.",
    )

    max_ids_per_query: int = Field(
        default=200,
        ge=1,
        le=10_000,
        description="Most ids one `executions(ids)` field may ask for.",
    )
    max_fetches_per_request: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Most distinct executions one request may fetch, however it is shaped.",
    )
    max_upstream_body_bytes: int = Field(
        default=8 * 2**20,
        ge=1024,
        description="Largest upstream body accepted; a larger one is an upstream error.",
    )
    max_ancestors: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="Most levels `ancestors(limit)` and the walk to a root may climb.",
    )

    max_query_depth: int = Field(
        default=12,
        ge=2,
        le=100,
        description="Deepest selection nesting a query may have; walk long chains with ancestors.",
    )
    max_aliases: int = Field(
        default=30, ge=1, le=10_000, description="Most aliased fields in one document."
    )
    max_tokens: int = Field(
        default=2000, ge=10, le=1_000_000, description="Most GraphQL tokens in one document."
    )
    max_query_cost: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Most upstream fetches a query may cause, estimated before it runs "
        "(executions(ids) and ancestors(limit) count by their size).",
    )
    max_document_bytes: int = Field(
        default=20_000, ge=100, description="Largest GraphQL document accepted, in bytes."
    )
    max_request_bytes: int = Field(
        default=100_000, ge=1000, description="Largest HTTP request body accepted, in bytes."
    )
    request_deadline: PositiveSeconds = Field(
        default=30.0,
        description="Seconds one incoming request may take; what is unresolved by then is "
        "UPSTREAM_TIMEOUT beside the data that did resolve.",
    )
    introspection_enabled: bool = Field(
        default=True, description="Answer introspection queries (switch off in production)."
    )
    field_suggestions_enabled: bool = Field(
        default=True,
        description="Suggest field names in validation errors (switch off in production).",
    )

    retry_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Most attempts of one upstream GET (connect errors, 502, 503, 504, 429).",
    )
    retry_backoff_base: PositiveSeconds = Field(
        default=0.05, description="First retry waits up to this; each later one up to twice more."
    )
    retry_backoff_max: PositiveSeconds = Field(
        default=1.0, description="Longest wait between two attempts (also caps Retry-After)."
    )
    retry_budget_ratio: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Retries may add at most this share on top of first attempts, so an "
        "outage is not multiplied.",
    )
    breaker_failure_threshold: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Consecutive upstream failures that open the circuit breaker.",
    )
    breaker_cooldown: PositiveSeconds = Field(
        default=5.0,
        description="Seconds the breaker stays open before it lets one probe through.",
    )
    max_queued_upstream: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description="Upstream calls that may wait for a slot; beyond that RATE_LIMITED.",
    )

    batching_enabled: bool = Field(
        default=True,
        description="Batch and de-duplicate the fetches of one request (off: one call per field).",
    )
    cache_enabled: bool = Field(
        default=True,
        description="Share answers between requests with the same credentials: the cache and "
        "single-flight (off: every request asks the upstream itself).",
    )
    cache_final_ttl: TtlSeconds = Field(
        default=3600.0, description="Seconds a completed, failed or cancelled execution is kept."
    )
    cache_active_ttl: TtlSeconds = Field(
        default=1.0, description="Seconds any other execution is kept (0: not at all)."
    )
    cache_not_found_ttl: TtlSeconds = Field(
        default=5.0, description="Seconds an upstream 404 is kept (0: not at all)."
    )
    cache_max_entries: int = Field(
        default=10_000, ge=0, description="Most answers the in-process cache holds."
    )
    cache_max_bytes: int = Field(
        default=64 * 2**20, ge=0, description="Most bytes of answers the in-process cache holds."
    )

    response_cache_max_entries: int = Field(
        default=1000,
        ge=0,
        description="Most whole answers kept: those of queries that read only final "
        "executions, per caller (0: none).",
    )
    response_cache_max_bytes: int = Field(
        default=16 * 2**20, ge=0, description="Most bytes of whole answers kept."
    )

    subscription_poll_interval: PositiveSeconds = Field(
        default=1.0,
        description="Seconds between upstream polls of a watched execution after it changed.",
    )
    subscription_poll_max_interval: PositiveSeconds = Field(
        default=5.0,
        description="Longest wait between polls: the wait doubles up to it while nothing changes.",
    )
    subscription_max_failures: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Failed polls in a row (timeouts, 5xx) after which a subscription ends "
        "with the failure's error code.",
    )
    max_subscriptions_per_connection: int = Field(
        default=20, ge=1, le=10_000, description="Subscriptions one WebSocket may hold at once."
    )
    max_subscriptions_per_credential: int = Field(
        default=100,
        ge=1,
        le=1_000_000,
        description="Subscriptions one set of credentials may hold at once, over all its "
        "connections; beyond that RATE_LIMITED.",
    )
    max_subscriptions: int = Field(
        default=2000,
        ge=1,
        le=1_000_000,
        description="Subscriptions the process serves at once; beyond that RATE_LIMITED.",
    )

    redis_url: RedisDsn | None = Field(
        default=None,
        description="Redis for a cache shared by every replica, under each process's own "
        "(needs the redis extra). Unset: in-process cache only.",
    )
    redis_timeout: PositiveSeconds = Field(
        default=0.1, description="Seconds one Redis command may take before it is skipped."
    )
    cache_key_secret: SecretStr | None = Field(
        default=None,
        description="Key of the credential fingerprints; the same in every replica sharing "
        "Redis (required with it). Unset without Redis: a random one per process.",
    )

    persisted_queries_enabled: bool = Field(
        default=True,
        description="Automatic persisted queries (Apollo APQ): a client may send a document's "
        "SHA-256 instead of the document once it has registered it.",
    )
    persisted_queries_max_entries: int = Field(
        default=1000, ge=0, description="Most persisted documents each process keeps in memory."
    )
    persisted_queries_max_bytes: int = Field(
        default=8 * 2**20,
        ge=0,
        description="Most bytes of persisted documents each process keeps in memory.",
    )
    persisted_queries_ttl: TtlSeconds = Field(
        default=86400.0,
        description="Seconds a persisted document is kept in Redis, when Redis is configured "
        "(0: not at all).",
    )

    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Origins whose pages may call the gateway from a browser (CORS), such as "
        "https://app.example.com, or * for any. Empty: no CORS headers at all.",
    )
    cors_methods: Annotated[list[str], NoDecode] = Field(
        default=["GET", "POST"], description="Methods a page on an allowed origin may use."
    )
    cors_headers: Annotated[list[str], NoDecode] = Field(
        default=[
            "content-type",
            "authorization",
            "x-project-id",
            "project-id",
            "traceparent",
            "x-request-id",
        ],
        description="Request headers a page on an allowed origin may send.",
    )
    cors_allow_credentials: bool = Field(
        default=False,
        description="Let pages on allowed origins send the visitor's cookies (polos_auth).",
    )
    cors_max_age: int = Field(
        default=600, ge=0, le=86400, description="Seconds a browser may reuse a preflight answer."
    )

    @field_validator("cors_origins", "cors_methods", "cors_headers", mode="before")
    @classmethod
    def _cors_lists_from_text(cls, value: object) -> object:
        return _split_names(value)

    @field_validator("cors_origins")
    @classmethod
    def _origins_as_browsers_send_them(cls, value: list[str]) -> list[str]:
        origins = [origin.lower() for origin in value]
        for origin in origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin[:100]!r} is not an origin: scheme, host and optional port, "
                    "without a path or trailing slash (https://app.example.com), or *"
                )
        return list(dict.fromkeys(origins))

    @field_validator("cors_methods")
    @classmethod
    def _methods_upper(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(method.upper() for method in value))

    @field_validator("cors_headers")
    @classmethod
    def _headers_lower(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(header.lower() for header in value))

    @model_validator(mode="after")
    def _no_credentials_for_every_origin(self) -> Settings:
        if self.cors_allow_credentials and "*" in self.cors_origins:
            raise ValueError(
                "cors_allow_credentials with cors_origins * would let every web site act with "
                "its visitors' cookies: list the origins instead"
            )
        return self

    forward_headers: Annotated[list[str], NoDecode] = Field(
        default=sorted(ALLOWED_HEADERS),
        description="Request headers forwarded to the upstream (a subset of the contract's).",
    )
    forward_cookies: Annotated[list[str], NoDecode] = Field(
        default=sorted(ALLOWED_COOKIES),
        description="Cookies forwarded to the upstream (a subset of the contract's).",
    )

    explorer_samples: dict[str, str] = Field(
        default={},
        description="Executions the explorer page (/explorer) lists to open with one click: "
        "label to execution id, as a JSON object in the environment. `serve --demo` fills it "
        "with the demo's samples.",
    )

    @field_validator("explorer_samples")
    @classmethod
    def _samples_are_execution_ids(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 100:
            raise ValueError(f"at most 100 samples; got {len(value)}")
        samples: dict[str, str] = {}
        for label, raw_id in value.items():
            execution_id = parse_execution_id(raw_id)
            if execution_id is None:
                raise ValueError(f"sample {label[:80]!r} is not an execution id (a UUID)")
            if not label.strip() or len(label) > 200:
                raise ValueError("a sample label is 1 to 200 characters")
            samples[label.strip()] = execution_id
        return samples

    @field_validator("forward_headers", "forward_cookies", mode="before")
    @classmethod
    def _names_from_text(cls, value: object) -> object:
        return _split_names(value)

    @field_validator("forward_headers")
    @classmethod
    def _only_contract_headers(cls, value: list[str]) -> list[str]:
        names = sorted({name.lower() for name in value})
        unknown = sorted(set(names) - ALLOWED_HEADERS)
        if unknown:
            raise ValueError(
                f"cannot forward {', '.join(unknown)}: only {', '.join(sorted(ALLOWED_HEADERS))} "
                "may reach the upstream"
            )
        return names

    @field_validator("forward_cookies")
    @classmethod
    def _only_contract_cookies(cls, value: list[str]) -> list[str]:
        value = sorted(set(value))
        unknown = sorted(set(value) - ALLOWED_COOKIES)
        if unknown:
            raise ValueError(
                f"cannot forward cookie {', '.join(unknown)}: only "
                f"{', '.join(sorted(ALLOWED_COOKIES))} may reach the upstream"
            )
        return value

    @field_validator("upstream_url")
    @classmethod
    def _plain_base_url(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if value is not None and (value.query or value.fragment):
            raise ValueError("the upstream URL is a base URL: it takes no query or fragment")
        if value is not None and (value.username or value.password):
            raise ValueError("the upstream URL must not hold credentials: clients send their own")
        return value

    @model_validator(mode="after")
    def _redis_needs_a_shared_secret(self) -> Settings:
        if self.redis_url is not None and self.cache_key_secret is None:
            raise ValueError(
                "redis_url needs cache_key_secret: replicas share cached answers only when "
                "they fingerprint credentials with the same secret"
            )
        return self

    @model_validator(mode="after")
    def _timeouts_fit_together(self) -> Settings:
        if self.upstream_timeout < self.connect_timeout:
            raise ValueError(
                f"upstream_timeout ({self.upstream_timeout}s) must be at least "
                f"connect_timeout ({self.connect_timeout}s)"
            )
        if self.subscription_poll_max_interval < self.subscription_poll_interval:
            raise ValueError(
                f"subscription_poll_max_interval ({self.subscription_poll_max_interval}s) must "
                f"be at least subscription_poll_interval ({self.subscription_poll_interval}s)"
            )
        return self

    @property
    def upstream_base(self) -> str:
        """The upstream URL without a trailing slash, ready for path segments."""
        if self.upstream_url is None:
            raise RuntimeError("no upstream configured")
        return str(self.upstream_url).rstrip("/")
