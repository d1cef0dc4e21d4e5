"""Fakes of the three libraries, for tests and demos: the adapters run for real, the network is never touched.

In the style of httpx's `MockTransport(handler)`: `FakeLibrary(handler)` stands in for the `tushare` module, a
tushare `pro_api()` client, the `akshare` module or the `baostock` module. Any attribute is a function; calling it
calls `handler(call)` with the function's name and arguments, and returns what the handler returns (a DataFrame
in the library's real shape, a `FakeResultSet` for baostock, None) or raises what it raises. Every call is recorded.

A fake that accepts anything cannot catch a renamed function or parameter, so a fake can be given the real library
as `spec`: then a call of a function the library lacks raises `AttributeError`, and arguments that do not bind to
the installed function's signature (`inspect.signature(...).bind`) raise `TypeError`, exactly as the real call
would. tushare's pro client answers any attribute (`DataApi.__getattr__`), so its endpoints are checked against
tushare's documentation instead (`tests/sync_image/sources/test_contracts.py`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeCall:
    """One call of a library function."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def arg(self, name: str, position: int = 0, default: Any = None) -> Any:
        if name in self.kwargs:
            return self.kwargs[name]
        return self.args[position] if len(self.args) > position else default


Handler = Callable[[FakeCall], Any]


class FakeLibrary:
    """A stand-in for a library module or client object; every function call goes to `handler`."""

    def __init__(self, handler: Handler, *, spec: Any = None, **attributes: Any) -> None:
        self._handler = handler
        self._spec = spec
        self.calls: list[FakeCall] = []
        for key, value in attributes.items():
            object.__setattr__(self, key, value)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)
        real = None
        if self._spec is not None:
            real = getattr(self._spec, name)  # AttributeError, as the library would raise
            real = inspect.unwrap(real)

        def function(*args: Any, **kwargs: Any) -> Any:
            if real is not None:
                inspect.signature(real).bind(*args, **kwargs)  # TypeError on a parameter the library lacks
            call = FakeCall(name, args, kwargs)
            self.calls.append(call)
            return self._handler(call)

        return function

    def called(self, name: str) -> list[FakeCall]:
        return [c for c in self.calls if c.name == name]


@dataclass
class FakeResultSet:
    """baostock's `ResultData`: string fields, string rows, a string `error_code`; iterated with next()."""

    fields: list[str]
    rows: Sequence[Sequence[str]] = ()
    error_code: str = "0"
    error_msg: str = "success"
    _i: int = field(default=0, repr=False)

    def next(self) -> bool:
        return self._i < len(self.rows)

    def get_row_data(self) -> list[str]:
        row = list(self.rows[self._i])
        self._i += 1
        return row

    def get_data(self) -> Any:
        raise AttributeError("'DataFrame' object has no attribute 'append'")  # what baostock does on pandas >= 2


def baostock_failure(code: str = "10002007", message: str = "网络接收错误。") -> FakeResultSet:
    """What every baostock call returns when the network is down."""
    return FakeResultSet(fields=[], rows=[], error_code=code, error_msg=message)
