"""The sync image's exceptions, and the one rule that reads them: which move the fallback chain on, which stop the run.

Every adapter turns its library's failure modes (tushare's bare `Exception(msg)` and silently empty frames,
akshare's `requests` and `KeyError`/`ValueError` errors, baostock's `error_code` strings) into this tree, so the
fallback chain and the runner never look at a library's own exceptions.

* SyncError
  * SourceError ............ a source could not deliver this batch: the batch moves to the next source
    * SourceUnavailable .... network down, server error, login failed, blocked IP
      * SourceRateLimited .. the source's quota for this API is used up
    * SourceTimeout ........ the source did not answer in time
    * SourcePermissionDenied  missing or wrong token, not enough points, account refused
    * SourceEmpty .......... the source answered, with nothing in it
    * SourceDataError ...... the answer did not have the shape the adapter knows (upstream schema change)
    * FeatureNotSupported .. the source has no such data (baostock quotes, Beijing codes on baostock)
  * AllSourcesFailed ....... every source failed for one batch: the batch counts as an error, the run goes on
  * ConfigurationError ..... the pod contract is unusable (exit 2): stops the run
  * StoreUnavailable ....... MongoDB stayed unreachable past the retry budget: stops the run

* RunInterrupted (a BaseException, so no adapter's `except Exception` can swallow it): stops the run now
  * RunCancelled ........... the execution record asked for cancellation (`cancel_requested`): `cancelled`
  * RecordClosed ........... another writer gave the record its verdict: the pod writes nothing more
  * RunTerminated .......... the pod got SIGTERM: `cancelled` if a cancel was requested, else the attempt is
                             `terminated` and the operator records Kubernetes' verdict (docs/pod-contract.md)
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


class SyncError(Exception):
    """Base class of the sync image's own errors."""


class SourceError(SyncError):
    """A source could not deliver one piece of work; the fallback chain tries the next source."""

    def __init__(self, message: str, *, source: str = "") -> None:
        super().__init__(message)
        self.source = source

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class SourceUnavailable(SourceError):
    """The source cannot be reached or refused to serve (network, server error, failed login)."""


class SourceRateLimited(SourceUnavailable):
    """The source's rate limit or daily quota for this API is exhausted."""


class SourceTimeout(SourceError):
    """The source did not answer in time."""


class SourcePermissionDenied(SourceError):
    """The account, token or points tier does not allow this API."""


class SourceEmpty(SourceError):
    """The source answered with no rows."""


class SourceDataError(SourceError):
    """The source answered with a shape the adapter does not know (the upstream changed its format)."""


class FeatureNotSupported(SourceError):
    """The source does not offer this data at all, or not for these codes."""


class AllSourcesFailed(SyncError):
    """Every source in the chain failed for one batch."""

    def __init__(self, message: str, errors: list[SourceError]) -> None:
        super().__init__(message)
        self.errors = errors


class ConfigurationError(SyncError):
    """The pod's configuration cannot be used (exit code 2)."""


class StoreUnavailable(SyncError):
    """MongoDB stayed unreachable for longer than the retry budget."""


class RunInterrupted(BaseException):  # a control-flow signal, like KeyboardInterrupt
    """The run must stop now. A BaseException so that no broad handler swallows it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RunCancelled(RunInterrupted):
    """Cancellation was requested on the execution record."""


class RecordClosed(RunInterrupted):
    """Another writer closed the execution record (or it is gone): its verdict stands."""

    def __init__(self, reason: str, status: str | None) -> None:
        super().__init__(reason)
        self.status = status


class RunTerminated(RunInterrupted):
    """The pod was terminated (SIGTERM)."""


@dataclass(frozen=True)
class Attempt:
    """One try of one source for one batch, as the execution record lists it."""

    source: str
    error_class: str | None
    message: str
    batch: int | None = None
    rows: int = 0

    def to_doc(self) -> dict[str, object]:
        doc: dict[str, object] = {"source": self.source, "error_class": self.error_class, "message": self.message}
        if self.batch is not None:
            doc["batch"] = self.batch
        if self.error_class is None:
            doc["rows"] = self.rows
        return doc


_TIMEOUT_NAMES = {"Timeout", "ReadTimeout", "ConnectTimeout", "TimeoutError", "timeout"}
_NETWORK_NAMES = {"ConnectionError", "ProxyError", "SSLError", "HTTPError", "ChunkedEncodingError",
                  "RemoteDisconnected", "JSONDecodeError", "TooManyRedirects", "RequestException"}


def classify_exception(exc: BaseException, source: str) -> SourceError:
    """Map a library or transport exception to the tree above; unknown errors count as the source being unavailable.

    `requests` is matched by class name so this module needs no import of it (each library brings its own).
    """
    if isinstance(exc, SourceError):
        if not exc.source:
            exc.source = source
        return exc
    names = {cls.__name__ for cls in type(exc).__mro__}
    text = f"{type(exc).__name__}: {exc}"
    if names & _TIMEOUT_NAMES or isinstance(exc, socket.timeout | TimeoutError):
        return SourceTimeout(text, source=source)
    if names & _NETWORK_NAMES or isinstance(exc, OSError):
        return SourceUnavailable(text, source=source)
    if isinstance(exc, KeyError | ValueError | IndexError | TypeError | AttributeError):
        return SourceDataError(text, source=source)
    return SourceUnavailable(text, source=source)
