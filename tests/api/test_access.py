"""Unit tests of the access model: static tokens scoped to namespaces, the reviews' TTL cache, scopes as MongoDB
filters, and the job names the incumbent's page filters by."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from syncjob_api.core.security import (
    Identity,
    KubernetesAuthenticator,
    Role,
    StaticAuthenticator,
    StaticToken,
    Verb,
)
from syncjob_api.services.access import Scope
from syncjob_api.services.jobs import page_name


def _static(**token: Any) -> tuple[StaticAuthenticator, Identity]:
    auth = StaticAuthenticator([StaticToken(token="t" * 20, user="u", **token)])
    found = auth.authenticate("t" * 20)
    assert found is not None
    return auth, found


def test_a_static_token_without_namespaces_holds_its_role_everywhere() -> None:
    auth, who = _static(role=Role.ADMIN)
    assert all(auth.allowed(who, verb, ns) for verb in Verb for ns in (None, "a", "b"))
    auth, who = _static(role=Role.VIEWER)
    assert auth.allowed(who, Verb.LIST, None) and not auth.allowed(who, Verb.PATCH, "a")


def test_a_static_token_with_namespaces_holds_its_role_there_only() -> None:
    auth, who = _static(role=Role.ADMIN, namespaces=["md-staging"])
    assert auth.allowed(who, Verb.LIST, "md-staging") and auth.allowed(who, Verb.PATCH, "md-staging")
    assert not auth.allowed(who, Verb.LIST, "md-prod") and not auth.allowed(who, Verb.PATCH, "md-prod")
    assert not auth.allowed(who, Verb.LIST, None)  # cluster-wide needs a token without namespaces
    with pytest.raises(ValueError):
        StaticToken(token="t" * 20, user="u", role=Role.VIEWER, namespaces=[])


class _Reviews:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def create_subject_access_review(self, body: dict[str, Any], **_: Any) -> Any:
        self.calls.append(body["spec"]["resourceAttributes"])
        allowed = body["spec"]["resourceAttributes"].get("namespace") == "md-prod"
        return client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(),
                                            status=client.V1SubjectAccessReviewStatus(allowed=allowed))


@pytest.mark.parametrize(("seconds", "reviews"), [(10, 3), (0, 6)])
def test_subject_access_reviews_are_cached_per_namespace_and_verb(seconds: float, reviews: int) -> None:
    auth = KubernetesAuthenticator(client.ApiClient(), seconds)
    fake = _Reviews()
    auth._authz = fake  # type: ignore[assignment]
    who = Identity(user="bob")
    for _ in range(2):
        assert auth.allowed(who, Verb.LIST, "md-prod") and not auth.allowed(who, Verb.LIST, "md-staging")
        assert not auth.allowed(who, Verb.PATCH, None)
    assert len(fake.calls) == reviews
    assert {(c["verb"], c.get("namespace")) for c in fake.calls} == {
        ("list", "md-prod"), ("list", "md-staging"), ("patch", None)}


def test_scopes_filter_records_by_namespace() -> None:
    assert Scope(None, legacy=True).query() == {}
    assert Scope(None, legacy=False).query() == {"namespace": {"$type": "string"}}
    assert Scope(frozenset({"b", "a"}), legacy=False).query() == {"namespace": {"$in": ["a", "b"]}}
    assert Scope(frozenset({"a"}), legacy=True).query() == {"namespace": {"$in": ["a", None]}}
    scoped = Scope(frozenset({"a"}), legacy=False)
    assert scoped.sees("a") and not scoped.sees("b") and not scoped.sees(None)
    assert Scope(frozenset(), legacy=False).empty and not Scope(frozenset(), legacy=True).empty


@pytest.mark.parametrize(("display", "sources", "name"), [
    ("Tushare-实时行情同步", ["tushare", "akshare"], "Tushare-实时行情同步"),
    ("实时行情同步", ["akshare"], "实时行情同步（AKShare）"),  # noqa: RUF001 (the incumbent's brackets)
    (None, ["baostock"], "baostock-daily（BaoStock）"),  # noqa: RUF001
    ("Files", ["file"], "Files"),  # no source the page knows
    (None, ["file"], "baostock-daily"),
])
def test_job_names_carry_the_primary_sources_spelling(display: str | None, sources: list[str], name: str) -> None:
    assert page_name(display, "baostock-daily", sources) == name
