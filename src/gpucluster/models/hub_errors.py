"""What goes wrong talking to the Hugging Face hub, as ModelErrors saying what to do next."""

from __future__ import annotations

from types import ModuleType

from gpucluster.models.sources import ModelPrepareError, ModelSourceError


class HubAccessError(ModelPrepareError):
    """The hub refused the files: a gated or private model without a token that may read it."""


class HubNotFoundError(ModelSourceError):
    """The hub has no such repo, or no such revision of it."""


class HubUnreachableError(ModelPrepareError):
    """The hub (or the mirror HF_ENDPOINT names) did not answer, and nothing usable is cached.

    `summary` says what failed alone, for when a cached copy is used instead.
    """

    def __init__(self, message: str, summary: str) -> None:
        super().__init__(message)
        self.summary = summary


class DiskSpaceError(ModelPrepareError):
    """The model cache's filesystem has too little free space for what is still to download."""

    next_step = (
        "`gpucluster models du` shows what the cache holds; `gpucluster models rm NAME` frees it"
    )


class ChecksumError(ModelPrepareError):
    """A downloaded file's bytes differ from the checksum the hub lists for it."""


def http_client() -> ModuleType:
    """The HTTP library huggingface_hub raises the errors of: httpx2 from 2.x, httpx before."""
    try:
        import httpx2
    except ImportError:
        import httpx

        return httpx
    return httpx2


def translate(exc: BaseException, repo_id: str, revision: str, endpoint: str) -> Exception | None:
    """The ModelError for a huggingface_hub or network error `exc`, or None if it is neither."""
    http = http_client()
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = f"{endpoint}/{repo_id}"
    token_hint = (
        f"set HF_TOKEN to a token of an account that accepted the model's licence on its page "
        f"{page}, then pull again (`gpucluster pull {repo_id}`)"
    )
    if isinstance(exc, GatedRepoError):
        status = exc.response.status_code if exc.response is not None else None
        why = {
            401: " (401: no token was sent)",
            403: " (403: the token sent has no access to it)",
        }.get(status, "")
        return HubAccessError(
            f"{repo_id} is a gated model and {endpoint} refused access{why}: {token_hint}"
        )
    if isinstance(exc, RevisionNotFoundError):
        return HubNotFoundError(
            f"{repo_id} has no revision {revision!r} on {endpoint}: set `revision` to a branch, "
            f"tag or commit listed on {page}/tree/main, or remove it for main"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return HubNotFoundError(
            f"{repo_id} was not found on {endpoint}: check the id on {page}; if the model is "
            "private or gated, set HF_TOKEN to a token that may read it"
        )
    if isinstance(exc, RemoteEntryNotFoundError):
        return ModelPrepareError(
            f"{endpoint} lists a file of {repo_id} it then does not serve ({exc}); pull again "
            "later, or pin `revision` to another commit"
        )
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status in (401, 403):
            return HubAccessError(
                f"{endpoint} answered {status} for {repo_id}: HF_TOKEN is missing, wrong or "
                f"lacks access; {token_hint}"
            )
        summary = f"{endpoint} answered {status} for {repo_id}"
        return HubUnreachableError(f"{summary}; try again later. {alternatives(endpoint)}", summary)
    if isinstance(exc, (http.TransportError, OfflineModeIsEnabled)):
        summary = (
            f"cannot reach the Hugging Face hub at {endpoint} ({str(exc) or type(exc).__name__})"
        )
        return HubUnreachableError(
            f"{summary} and {repo_id} (revision {revision}) is not in the model cache. "
            f"{alternatives(endpoint)}",
            summary,
        )
    return None


def alternatives(endpoint: str) -> str:
    """What to do when this host cannot download from the hub."""
    return (
        "Alternatives: pull on a host that reaches it (`gpucluster pull`) and copy its model "
        "cache directory here; set HF_ENDPOINT to a mirror this host reaches (now "
        f"{endpoint}); or point `source` at a local model directory"
    )
