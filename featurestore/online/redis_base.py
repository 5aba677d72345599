"""What the single-server and the cluster Redis stores share (featurestore/online/redis.py,
featurestore/online/redis_cluster.py): claims, drops and watermarks, which are scripts on the
project's meta hash alone and so run unchanged on both; the encoding of rows and hash names;
the refusal of rows of another identity; and failures turned into our errors.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from featurestore.errors import OnlineStoreError, OnlineStoreUnavailable
from featurestore.online import redis_scripts as lua
from featurestore.online.base import (
    Claim,
    OnlineStore,
    ViewIdentity,
    Watermark,
    changed_under,
    written_before_layouts,
)
from featurestore.online.codec import RowCodec, entity_keys, from_us, timestamp_us
from featurestore.types import MAX_TIME

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.definitions import Field

T = TypeVar("T")

WRITE_BATCH = 1_000  # keys per script call
CALLS_PER_PIPELINE = 8  # script calls per round trip
READ_BATCH = 2_000  # keys per read script call: bigger reads pipeline several calls
SCAN_COUNT = 1_000
RETIRED = "retired:"  # in the meta hash: a dropped generation whose rows may remain

# (group's key count, its views) per part of a read, in order
ReadParts = list[tuple[int, tuple[ViewIdentity, ...]]]


def held(identity: ViewIdentity) -> str:
    """How ``view:<view>`` names an identity (without the generation)."""
    return f"{identity.fingerprint}:{identity.layout}"


def claim_value(claim: Claim) -> str:
    """What ``view:<view>`` holds while ``claim`` is current."""
    return f"{held(claim.identity)}:{claim.generation}"


def claim_check(claim: Claim) -> str:
    """What the scripts compare to tell that ``claim`` is current: ``view:<view>`` and the
    meta hash's epoch (redis_scripts._CLAIMED)."""
    return f"{claim_value(claim)}@{claim.epoch}"


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (safe for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisStoreBase(OnlineStore):
    """What the single-server and the cluster store share: claims, drops and watermarks
    (scripts on the project's meta hash alone), row encoding, refusals and error messages.

    A subclass provides the plumbing: ``_script`` (one script call on the meta hash),
    ``_meta_field``, ``_collect_retired``, and the data paths ``write_rows`` and ``read``.
    """

    def __init__(self, url: str, project: str, socket_timeout: float) -> None:
        import redis

        super().__init__()
        self.location = mask_url(url)
        self.project = project
        self.socket_timeout = socket_timeout
        self._prefix = f"{project}|"
        self._meta = f"{project}#meta"
        self._errors: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            redis.exceptions.InvalidResponse,  # a server that does not speak Redis
        )
        # Only a broken connection is worth an immediate second try (a restarted server);
        # after a timeout, a second try would only double the wait the README promises.
        self._reset = redis.exceptions.ConnectionError
        self._noscript = redis.exceptions.NoScriptError
        self._response_error = redis.exceptions.ResponseError
        self._auth_error = redis.exceptions.AuthenticationError
        # everything _translate turns into our errors (AuthenticationError first: a subclass)
        self._failures: tuple[type[BaseException], ...] = (
            self._auth_error,
            *self._errors,
            self._response_error,
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._own_connections: list[Any] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r}, project={self.project!r})"

    # --- what a subclass provides ----------------------------------------------------------

    def _script(self, what: str, sha: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One script call on ``keys`` (the meta hash), failures turned into our errors."""
        raise NotImplementedError

    def _meta_field(self, what: str, field: str) -> bytes | None:
        """One field of the project's meta hash."""
        raise NotImplementedError

    def _meta_fields(self, what: str, fields: Sequence[str]) -> list[bytes | None]:
        """Fields of the project's meta hash, in one HMGET."""
        raise NotImplementedError

    def _collect_retired(self) -> int:
        """Delete the rows of retired generations; the number of rows deleted."""
        raise NotImplementedError

    # --- shared --------------------------------------------------------------------------

    def _call(self, what: str, func: Callable[[], T]) -> T:
        """Run ``func``, turning connection failures into OnlineStoreUnavailable."""
        try:
            return func()
        except self._failures as exc:
            raise self._translate(what, exc) from None

    def _translate(self, what: str, exc: BaseException) -> OnlineStoreError:
        """The error a redis-py exception becomes (one wording for sync and async calls)."""
        if isinstance(exc, self._auth_error):
            return OnlineStoreUnavailable(
                f"Redis at {self.location} refused the credentials in its URL ({what}): "
                f"{str(exc).rstrip('.')}. Put the right password in the URL: "
                "redis://:PASSWORD@host:port/db"
            )
        if isinstance(exc, self._errors):
            return OnlineStoreUnavailable(
                f"Redis at {self.location} does not answer ({what}): {str(exc).rstrip('.')}. "
                "Is the server running, and the URL (featurestore.yaml or "
                "FEATURESTORE_REDIS_URL) right?"
            )
        return OnlineStoreError(f"Redis at {self.location} refused to {what}: {exc}")

    def _holds(self, view: str) -> int | None:
        """The view's current generation (None: none), for error messages."""
        raw = self._meta_field("read a generation", f"view:{view}")
        return None if raw is None else int(raw.rsplit(b":", 1)[1])

    def _encode(
        self,
        claim: Claim,
        batch: pa.RecordBatch,
        join_keys: Sequence[str],
        features: Sequence[Field],
    ) -> tuple[list[str], list[bytes]]:
        """The hash names and rows of ``batch``, once its layout is checked to be the claim's."""
        codec = RowCodec(features)
        if codec.layout != claim.identity.layout:
            raise OnlineStoreError(
                f"rows of feature view {claim.identity.view!r} encoded with layout "
                f"{codec.layout}, but its claim is for layout {claim.identity.layout}"
            )
        if batch.num_rows == 0:
            return [], []
        keys = [self._prefix + k for k in entity_keys(batch, join_keys)]
        return keys, codec.encode_batch(batch)

    def _refuse(self, statuses: str, rows: list[list[bytes | None]], parts: ReadParts) -> None:
        """Blank (and count) the rows of views whose generation is another identity's
        (status "x"); raise for a view holding data from before generations ("L")."""
        letters = iter(statuses)  # one per (group, view), in order
        start = 0
        for count, views in parts:
            for j, view in enumerate(views):
                letter = next(letters)
                if letter == "L":
                    raise written_before_layouts(view.view, self.location)
                if letter == "x":
                    refused = 0
                    for row in rows[start : start + count]:
                        if row[j] is not None:
                            row[j] = None
                            refused += 1
                    self._count_refused(view.view, refused)
            start += count

    def claim(self, identity: ViewIdentity) -> Claim:
        generation, retired, epoch = self._script(
            "claim a view",
            lua.CLAIM_SHA,
            [self._meta],
            [identity.view, held(identity), secrets.token_hex(8), self._first_generation()],
        )
        if retired:
            self._call("drop a view", self._collect_retired)
        return Claim(identity, int(generation), epoch.decode())

    def _first_generation(self) -> int:
        """Where to count generations from if the meta hash has no counter (one server:
        from 0, as its rows went with the counter)."""
        return 0

    def get_watermark(self, view: str) -> Watermark | None:
        return self.get_watermarks([view])[view]

    def get_watermarks(self, views: Sequence[str]) -> dict[str, Watermark | None]:
        if not views:
            return {}
        raws = self._meta_fields("read watermarks", watermark_fields(views))
        return parse_watermarks(views, raws)

    def set_watermark(self, claim: Claim, watermark: Watermark) -> None:
        created = "" if watermark.max_created is None else timestamp_us(watermark.max_created)
        view = claim.identity.view
        args = [f"view:{view}", claim_check(claim), f"watermark:{view}"]
        args += [f"{timestamp_us(watermark.end)}:{created}", str(timestamp_us(MAX_TIME))]
        if not self._script("write a watermark", lua.WATERMARK_SHA, [self._meta], args):
            raise changed_under(claim, self._holds(view), self.location)

    def drop_view(self, view: str) -> int:
        self._script("drop a view", lua.DROP_SHA, [self._meta], [view])
        return self._call("drop a view", self._collect_retired)


def watermark_fields(views: Sequence[str]) -> list[str]:
    """The meta hash's fields holding these views' watermarks."""
    return [f"watermark:{view}" for view in views]


def parse_watermarks(
    views: Sequence[str], raws: Sequence[bytes | None]
) -> dict[str, Watermark | None]:
    """Each view's watermark from its meta field (None: never materialized)."""
    return {
        view: None if raw is None else _parse_watermark(raw)
        for view, raw in zip(views, raws, strict=True)
    }


def _parse_watermark(raw: bytes) -> Watermark:
    end, created = raw.decode().split(":")
    return Watermark(from_us(int(end)), from_us(int(created)) if created else None)
