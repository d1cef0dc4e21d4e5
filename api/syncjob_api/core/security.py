"""Who is calling and what they may do: bearer tokens in two modes, chosen by AUTH_MODE.

- static: a YAML list of {token, user, role: viewer|admin, namespaces?: [...]}, mounted from a Secret. A token
  with `namespaces` has its role in those namespaces only; one without has it in every namespace (and cluster-wide).
- kubernetes: a TokenReview says who the bearer is, and SubjectAccessReviews decide what it may do in the namespace
  at stake: `list syncjobs` (group sync.tradingagents.io) to read, `patch syncjobs` to change. Answers are kept for
  a few seconds (AUTH_CACHE_SECONDS, a cachetools TTLCache) so a burst of reads, or one read over many
  namespaces, does not become a burst of reviews.

Both modes answer the same question, `allowed(identity, verb, namespace)`, and `syncjob_api.services.access` asks it
per namespace, so both scope reads and writes the same way. Unknown tokens are indistinguishable from missing ones
(401).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from cachetools import TTLCache
from kubernetes import client
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from syncjob import names
from syncjob_api.core.kube import REQUEST_TIMEOUT


class Role(StrEnum):
    VIEWER = "viewer"
    ADMIN = "admin"


class Verb(StrEnum):
    """The SyncJob verb a request needs: list to read (a namespace's jobs and records), patch to change."""

    GET = "get"
    LIST = "list"
    PATCH = "patch"


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...] = ()
    uid: str | None = None
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)
    role: Role | None = None  # static mode only: the role is a property of the token
    namespaces: frozenset[str] | None = None  # static mode only: where the role holds (None: everywhere)


class Authenticator(ABC):
    """Turns a bearer token into an identity, and answers whether it may use a verb on SyncJobs in a namespace
    (`namespace=None`: in every namespace, cluster-wide)."""

    @abstractmethod
    def authenticate(self, token: str) -> Identity | None: ...

    @abstractmethod
    def allowed(self, identity: Identity, verb: Verb, namespace: str | None) -> bool: ...


class StaticToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=16, description="At least 16 characters: no guessable default tokens.")
    user: str = Field(min_length=1)
    role: Role
    namespaces: list[str] | None = Field(
        default=None, min_length=1,
        description="The namespaces where the role holds; left out, it holds in every namespace.",
    )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class StaticAuthenticator(Authenticator):
    def __init__(self, tokens: list[StaticToken]) -> None:
        if len({t.token for t in tokens}) != len(tokens):
            raise ValueError("the tokens file lists a token twice")
        self._by_digest = {
            _digest(t.token): Identity(user=t.user, role=t.role,
                                       namespaces=None if t.namespaces is None else frozenset(t.namespaces))
            for t in tokens
        }

    @classmethod
    def from_file(cls, path: Path) -> StaticAuthenticator:
        raw = yaml.safe_load(path.read_text()) or []
        return cls(TypeAdapter(list[StaticToken]).validate_python(raw))

    def authenticate(self, token: str) -> Identity | None:
        wanted = _digest(token)
        found = None
        for digest, identity in self._by_digest.items():  # compare every entry: no timing hint of a near miss
            if hmac.compare_digest(digest, wanted):
                found = identity
        return found

    def allowed(self, identity: Identity, verb: Verb, namespace: str | None) -> bool:
        if identity.namespaces is not None and (namespace is None or namespace not in identity.namespaces):
            return False
        if verb is Verb.PATCH:
            return identity.role is Role.ADMIN
        return identity.role in (Role.VIEWER, Role.ADMIN)


_MISS = object()


class _TtlCache:
    """A thread-safe cachetools TTLCache; a TTL of 0 caches nothing."""

    def __init__(self, ttl: float, max_entries: int = 10000) -> None:
        self.ttl = ttl
        self._items: TTLCache[Any, Any] | None = TTLCache(max_entries, ttl) if ttl > 0 else None
        self._lock = threading.Lock()

    def get(self, key: Any) -> tuple[bool, Any]:
        if self._items is None:
            return False, None
        with self._lock:
            value = self._items.get(key, _MISS)
        return (False, None) if value is _MISS else (True, value)

    def put(self, key: Any, value: Any) -> None:
        if self._items is None:
            return
        with self._lock:
            self._items[key] = value


class KubernetesAuthenticator(Authenticator):
    """TokenReview and SubjectAccessReview through the API's own client (it needs `create` on both)."""

    def __init__(self, api: client.ApiClient, cache_seconds: float) -> None:
        self._authn = client.AuthenticationV1Api(api)
        self._authz = client.AuthorizationV1Api(api)
        self._identities = _TtlCache(cache_seconds)
        self._decisions = _TtlCache(cache_seconds)

    def authenticate(self, token: str) -> Identity | None:
        key = _digest(token)
        hit, cached = self._identities.get(key)
        if hit:
            return cached  # type: ignore[no-any-return]
        review = self._authn.create_token_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
            _request_timeout=REQUEST_TIMEOUT,
        )
        status = review.status
        identity = None
        if status is not None and status.authenticated and status.user is not None and status.user.username:
            user = status.user
            identity = Identity(user=user.username, groups=tuple(user.groups or ()), uid=user.uid,
                                extra={k: list(v) for k, v in (user.extra or {}).items()})
        self._identities.put(key, identity)
        return identity

    def allowed(self, identity: Identity, verb: Verb, namespace: str | None) -> bool:
        key = (identity.user, identity.groups, identity.uid, verb, namespace)
        hit, cached = self._decisions.get(key)
        if hit:
            return bool(cached)
        attributes: dict[str, Any] = {"group": names.GROUP, "resource": names.PLURAL, "verb": verb.value}
        if namespace:
            attributes["namespace"] = namespace
        spec: dict[str, Any] = {"user": identity.user, "groups": list(identity.groups),
                                "resourceAttributes": attributes}
        if identity.uid:
            spec["uid"] = identity.uid
        if identity.extra:
            spec["extra"] = identity.extra
        review = self._authz.create_subject_access_review(
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec},
            _request_timeout=REQUEST_TIMEOUT,
        )
        decision = bool(review.status is not None and review.status.allowed)
        self._decisions.put(key, decision)
        return decision
