"""Where a push goes: ``PushMode`` (Feast's enum) or its name, decided in one place."""

from __future__ import annotations

import enum

from featurestore.errors import PushError


class PushMode(enum.Enum):
    """Feast's push modes; ``FeatureStore.push`` also takes their names as strings."""

    ONLINE = 1
    OFFLINE = 2
    ONLINE_AND_OFFLINE = 3


def push_mode(to: PushMode | str) -> PushMode:
    """``to`` as a ``PushMode``: a PushMode, or "online", "offline", "online_and_offline"."""
    if isinstance(to, PushMode):
        return to
    if isinstance(to, str) and to.upper() in PushMode.__members__:
        return PushMode[to.upper()]
    raise PushError(
        f"push: to={to!r} is not a push mode; use 'online', 'offline' or 'online_and_offline' "
        "(or PushMode.ONLINE, PushMode.OFFLINE, PushMode.ONLINE_AND_OFFLINE)"
    )
