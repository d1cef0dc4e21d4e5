"""Who is calling and what they may do: bearer tokens in two modes, chosen by AUTH_MODE.

- static: a YAML list of {token, user, role: viewer|admin}, mounted from a Secret. Good for development and tests.
- kubernetes: a TokenReview says who the bearer is, and SubjectAccessReviews decide the role in the namespace at
  stake: `get syncjobs` (group sync.tradingagents.io) makes a viewer, `patch syncjobs` an admin. Answers are kept for
  a few seconds (AUTH_CACHE_SECONDS) so a burst of reads does not become a burst of reviews.

Reads need `get`, every mutation needs `patch`. Unknown tokens are indistinguishable from missing ones (401).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from syncjob import names
from syncjob_api.core.kube import REQUEST_TIMEOUT


class Role(StrEnum):
    VIEWER = "viewer"
    ADMIN = "admin"


class Verb(StrEnum):
    """The SyncJob verb a request needs: get to read, patch to change."""

    GET = "get"
    PATCH = "patch"


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...] = ()
    uid: str | None = None
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)
    role: Role | None = None  # static mode only: the role is a property of the token


class Authenticator(ABC):
    """Turns a bearer token into an identity, and answers whether it may use a verb on SyncJobs in a namespace."""

    needs_namespace = False

    @abstractmethod
    def authenticate(self, token: str) -> Identity | None: ...

    @abstractmethod
    def allowed(self, identity: Identity, verb: Verb, namespace: str | None) -> bool: ...


class StaticToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=16, description="At least 16 characters: no guessable default tokens.")
    user: str = Field(min_length=1)
    role: Role


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class StaticAuthenticator(Authenticator):
    def __init__(self, tokens: list[StaticToken]) -> None:
        if len({t.token for t in tokens}) != len(tokens):
            raise ValueError("the tokens file lists a token twice")
        self._by_digest = {_digest(t.token): Identity(user=t.user, role=t.role) for t in tokens}

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
        if verb is Verb.GET:
            return identity.role in (Role.VIEWER, Role.ADMIN)
        return identity.role is Role.ADMIN


class _TtlCache:
    def __init__(self, ttl: float, max_entries: int = 10000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._items: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> tuple[bool, Any]:
        with self._lock:
            hit = self._items.get(key)
            if hit is None or hit[0] < time.monotonic():
                return False, None
            return True, hit[1]

    def put(self, key: Any, value: Any) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._items) >= self.max_entries:
                self._items.clear()
            self._items[key] = (time.monotonic() + self.ttl, value)


class KubernetesAuthenticator(Authenticator):
    """TokenReview and SubjectAccessReview through the API's own client (it needs `create` on both)."""

    needs_namespace = True

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
