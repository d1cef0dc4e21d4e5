"""Every source's spelling of a code becomes the canonical `600000.SH`."""

from __future__ import annotations

import pytest

from sync_image import codes


@pytest.mark.parametrize(("given", "canonical"), [
    ("600000.SH", "600000.SH"),      # tushare
    ("sh.600000", "600000.SH"),      # baostock
    ("600000", "600000.SH"),         # akshare eastmoney, bare
    ("sh600000", "600000.SH"),       # akshare sina
    ("SH600000", "600000.SH"),       # xueqiu
    ("600000.ss", "600000.SH"),      # yahoo-style suffix
    ("000001", "000001.SZ"),
    ("sz.000001", "000001.SZ"),
    ("300750", "300750.SZ"),
    ("688981", "688981.SH"),
    ("900901", "900901.SH"),         # SH B-share, not Beijing
    ("920001", "920001.BJ"),
    ("bj920001", "920001.BJ"),
    ("430047", "430047.BJ"),         # legacy Beijing code
    (1, "000001.SZ"),                # a CSV read the code as an integer
])
def test_every_spelling_normalises_to_the_canonical_code(given: object, canonical: str) -> None:
    assert codes.normalise(given) == canonical


def test_a_suffix_is_kept_so_the_sse_index_is_not_taken_for_ping_an_bank() -> None:
    assert codes.normalise("000001.SH") == "000001.SH"


@pytest.mark.parametrize("junk", ["", "abc", "60000", "1234567", "sh.60000x", "510300"])
def test_strings_that_are_not_stock_codes_are_rejected(junk: str) -> None:
    with pytest.raises(codes.CodeError):
        codes.normalise(junk)


def test_baostock_spelling_and_its_missing_beijing_market() -> None:
    assert codes.to_baostock("600000.SH") == "sh.600000"
    assert codes.to_baostock("000001") == "sz.000001"
    with pytest.raises(codes.CodeError):
        codes.to_baostock("920001.BJ")


def test_board_is_inferred_from_the_code() -> None:
    assert [codes.board_of(c) for c in ("600000.SH", "688981.SH", "300750.SZ", "920001.BJ")] == [
        "主板", "科创板", "创业板", "北交所"]
