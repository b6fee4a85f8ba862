"""API keys, their quotas, and the operator's credentials (`platform.security`)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from pydantic import Field, field_validator

from gpucluster.config.base import Strict, check_names
from gpucluster.config.model import KEY_NAME_PATTERN


class QuotaConfig(Strict):
    """Limits on one API key's use; null: unlimited (or, per key, the next quota that sets it)."""

    requests_per_minute: int | None = Field(
        None, ge=1, description="Requests admitted in any 60 s window."
    )
    tokens_per_minute: int | None = Field(
        None,
        ge=1,
        description="Prompt + completion tokens in any 60 s window, charged from the engine's "
        "usage when a request ends; a request is refused once the window holds this many.",
    )
    concurrent_requests: int | None = Field(
        None,
        ge=1,
        description="Generation requests (completions, chat, embeddings) in flight at once.",
    )


class SecurityConfig(Strict):
    """API keys, their quotas, and operator credentials."""

    api_keys_file: Path | None = Field(
        None,
        description="File of API keys, one per line (# comments); re-read when it changes. "
        "With it or GPUCLUSTER_API_KEYS set, /v1 requires `Authorization: Bearer <key>`.",
    )
    keys_file: Path | None = Field(
        None,
        description="The named key store that `gpucluster keys create` writes (SHA-256 digests "
        "only); null: `<state_dir>/keys.json`. Once it exists, /v1 requires a key.",
    )
    default_quota: QuotaConfig = Field(
        default_factory=QuotaConfig,
        description="Quota of every key that neither `quotas` nor its own stored quota limits.",
    )
    quotas: dict[str, QuotaConfig] = Field(
        default_factory=dict,
        description="Quotas per key name; each limit set here wins over the key's stored quota, "
        "which wins over default_quota.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or CIDRs of proxies in front of nginx whose real_ip_header is "
        "believed for the client address; empty: the TCP peer's address.",
    )
    real_ip_header: str = Field(
        "X-Forwarded-For",
        min_length=1,
        description="Header that trusted proxies put the client address in.",
    )
    dashboard_user: str = Field(
        "operator",
        min_length=1,
        description="The /dashboard basic-auth login the first `up` "
        "creates, and the one `gpucluster dashboard-password` resets without --user.",
    )
    dashboard_write: bool = Field(
        False,
        description="Let /dashboard pass every call to Ray's dashboard, job submission and Serve "
        "deploys included: the dashboard password then runs any command on every node. "
        "false: only the calls its viewing pages make (GET), everything else gets 403.",
    )

    @field_validator("quotas")
    @classmethod
    def _key_names(cls, quotas: dict[str, QuotaConfig]) -> dict[str, QuotaConfig]:
        check_names(
            quotas,
            KEY_NAME_PATTERN,
            "key names",
            "lower-case letters, digits and . _ -, starting with a letter or digit, at most 63",
        )
        return quotas

    @field_validator("dashboard_user")
    @classmethod
    def _htpasswd_user(cls, value: str) -> str:
        # a line of nginx's basic-auth file is `user:hash`; basic auth itself splits on `:`
        if re.search(r"[:\x00-\x1f\x7f]", value):
            raise ValueError("must not hold ':' or control characters")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"{proxy!r} is not an IP address or CIDR") from None
        return proxies

    @field_validator("real_ip_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9-]+", value):
            raise ValueError("must be an HTTP header name (letters, digits and -)")
        return value
