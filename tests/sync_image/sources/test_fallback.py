"""The fallback chain: priority order, switching per batch, and the attempts it records."""

# ruff: noqa: RUF001  (library error messages are quoted verbatim, full-width punctuation included)
from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import pytest

from sync_image.errors import AllSourcesFailed
from sync_image.sources.akshare import AkshareSource
from sync_image.sources.baostock import BaostockSource
from sync_image.sources.fake import FakeCall, FakeLibrary, baostock_failure
from sync_image.sources.fallback import FallbackSource
from sync_image.sources.tushare import TushareSource
from tests.sync_image.conftest import ak_hist, ak_spot, ts_daily

DAY = dt.date(2018, 7, 18)


def tushare(handler: Any) -> TushareSource:
    return TushareSource("token", pro=FakeLibrary(handler), module=FakeLibrary(handler))


def akshare(handler: Any = None) -> AkshareSource:
    return AkshareSource(api=FakeLibrary(handler or (lambda call: ak_hist(call.kwargs.get("symbol", "000001")))))


def test_the_first_source_that_delivers_wins_and_later_ones_are_not_asked() -> None:
    ak = akshare()
    chain = FallbackSource([tushare(lambda call: ts_daily()), ak])
    frame, used = chain.call("daily", lambda s: s.daily(["000001.SZ"], DAY, DAY))
    assert used == "tushare" and not frame.empty
    assert ak._api.calls == []  # type: ignore[union-attr]
    assert [(a.source, a.error_class) for a in chain.attempts] == [("tushare", None)]


def test_permission_refusal_moves_on_and_is_not_asked_again() -> None:
    def refuse(call: FakeCall) -> Any:
        raise Exception("抱歉，您没有接口访问权限，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。")

    ts = tushare(refuse)
    chain = FallbackSource([ts, akshare()])
    for batch in range(3):
        chain.batch = batch
        assert chain.call("daily", lambda s: s.daily(["000001.SZ"], DAY, DAY))[1] == "akshare"
    assert len(ts._pro.called("daily")) == 1  # type: ignore[union-attr]
    assert chain.attempts[0].error_class == "SourcePermissionDenied" and chain.attempts[0].batch == 0
    assert chain.source_used == "akshare"


def test_work_switches_source_per_batch_when_the_preferred_one_fails_midway() -> None:
    calls = {"n": 0}

    def flaky(call: FakeCall) -> pd.DataFrame:
        calls["n"] += 1
        if calls["n"] == 2:
            raise Exception("抱歉，您每分钟最多访问该接口500次")
        return ts_daily()

    chain = FallbackSource([tushare(flaky), akshare()])
    used = []
    for batch in range(3):
        chain.batch = batch
        used.append(chain.call("daily", lambda s: s.daily(["000001.SZ"], DAY, DAY))[1])
    assert used == ["tushare", "akshare", "tushare"]  # back to the preferred source once it recovers
    assert [(a.source, a.error_class, a.batch) for a in chain.attempts] == [
        ("tushare", None, 0), ("tushare", "SourceRateLimited", 1), ("akshare", None, 1), ("tushare", None, 2)]


def test_empty_answers_move_on_to_the_next_source() -> None:
    chain = FallbackSource([tushare(lambda call: pd.DataFrame()), akshare()])
    assert chain.call("daily", lambda s: s.daily(["000001.SZ"], DAY, DAY))[1] == "akshare"
    assert chain.attempts[0].error_class == "SourceEmpty"


def test_a_source_without_the_feature_is_skipped_with_a_recorded_reason() -> None:
    bs = BaostockSource(api=FakeLibrary(lambda call: baostock_failure()))
    chain = FallbackSource([bs, akshare(lambda call: ak_spot())])
    _frame, used = chain.call("quotes", lambda s: s.quotes(["600000.SH"]))
    assert used == "akshare"
    assert chain.attempts[0].error_class == "FeatureNotSupported"
    assert bs._api.calls == []  # type: ignore[union-attr]  # not even a login


def test_every_source_failing_raises_with_every_error() -> None:
    def down(call: FakeCall) -> Any:
        raise OSError("Network is unreachable")

    baostock = BaostockSource(api=FakeLibrary(lambda c: baostock_failure()))
    chain = FallbackSource([tushare(down), akshare(down), baostock])
    with pytest.raises(AllSourcesFailed) as caught:
        chain.call("daily", lambda s: s.daily(["000001.SZ"], DAY, DAY))
    assert [e.source for e in caught.value.errors] == ["tushare", "akshare", "baostock"]
    assert {a.error_class for a in chain.attempts} == {"SourceUnavailable"}
    assert chain.source_used is None


def test_an_unclassified_library_error_counts_as_that_source_failing() -> None:
    class Broken(AkshareSource):
        def daily(self, codes: Any, start: dt.date, end: dt.date) -> pd.DataFrame:
            raise RuntimeError("bug in the adapter")

    chain = FallbackSource([Broken(api=FakeLibrary(lambda c: None)), tushare(lambda call: ts_daily())])
    assert chain.call("daily", lambda s: s.daily(["000001.SZ"], DAY, DAY))[1] == "tushare"
    assert chain.attempts[0].message.startswith("RuntimeError")
