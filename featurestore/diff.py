"""What changed between two definitions of a feature view, worded once.

``plan`` (registry.py) and a model's binding (models/binding.py) both describe a view change
with ``view_diff``, so a user reads the same words in ``featurestore plan`` and in
``featurestore models describe``. Both sides are given in their stored form: the
definition as ``definition_dicts.view_to_dict`` writes it, and the join keys' dtype names, which
is what a registry record and a model artifact both keep.

One line per difference, in a fixed order: the source, ttl, entities, join key dtypes, the
fields (removed, added, dtype, order), the aggregations (removed, added, redefined), then what does not change values (``online``,
description, tags, owner, a field's description or tags). With ``features`` (the model
binding) only what decides those features' values is compared: the source's identity, ttl,
entities, key dtypes, and the listed features' presence and dtype.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from featurestore.definitions import format_ttl

SOURCE_IDENTITY = ("type", "path", "table", "query", "timestamp_field", "created_timestamp_column")
"""The source attributes that change values (the fingerprint's); the others are cosmetic."""

_COSMETIC = ("online", "description", "tags", "owner")


def view_diff(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    old_key_dtypes: Mapping[str, str],
    new_key_dtypes: Mapping[str, str],
    features: Sequence[str] | None = None,
) -> tuple[str, ...]:
    """The differences between two stored definitions of one view, one line each.

    ``features``: compare only what decides these features' values (see the module
    docstring); None compares everything ``plan`` shows.
    """
    details = []
    source_keys = SOURCE_IDENTITY if features is not None else _keys(old["source"], new["source"])
    changed = [k for k in source_keys if old["source"].get(k) != new["source"].get(k)]
    if changed:
        details.append(
            "source: "
            + ", ".join(
                f"{k} {old['source'].get(k)!r} -> {new['source'].get(k)!r}" for k in changed
            )
        )
    if old["ttl_microseconds"] != new["ttl_microseconds"]:
        details.append(f"ttl: {_ttl(old['ttl_microseconds'])} -> {_ttl(new['ttl_microseconds'])}")
    if old["entities"] != new["entities"]:
        details.append(f"entities: {old['entities']} -> {new['entities']}")
    keys = _keys(old_key_dtypes, new_key_dtypes)
    if any(old_key_dtypes.get(k) != new_key_dtypes.get(k) for k in keys):
        details.append(
            "join key dtypes: "
            + ", ".join(
                f"{k} {old_key_dtypes.get(k, 'none')} -> {new_key_dtypes.get(k, 'none')}"
                for k in keys
                if old_key_dtypes.get(k) != new_key_dtypes.get(k)
            )
        )
    details += _field_changes(old["schema"], new["schema"], features)
    details += _aggregation_changes(
        old.get("aggregations", []), new.get("aggregations", []), features
    )
    if features is None:
        details += [f"{k}: {old[k]!r} -> {new[k]!r}" for k in _COSMETIC if old[k] != new[k]]
        old_push, new_push = old.get("push_source"), new.get("push_source")
        if old_push != new_push:  # where pushes go: not the values (not in the fingerprint)
            if old_push and new_push and old_push["name"] == new_push["name"]:
                details.append(f"push source {new_push['name']!r}: description, tags or owner")
            else:
                details.append(f"push source: {_push_name(old_push)} -> {_push_name(new_push)}")
        old_docs = {f["name"]: (f["description"], f["tags"]) for f in old["schema"]}
        details += [
            f"schema: description or tags of {f['name']}"
            for f in new["schema"]
            if f["name"] in old_docs and old_docs[f["name"]] != (f["description"], f["tags"])
        ]
    return tuple(details)


def _field_changes(
    old_schema: Sequence[Mapping[str, Any]],
    new_schema: Sequence[Mapping[str, Any]],
    features: Sequence[str] | None,
) -> list[str]:
    old = {f["name"]: f["dtype"] for f in old_schema}
    new = {f["name"]: f["dtype"] for f in new_schema}
    # An aggregated view's features are its aggregations' outputs, not schema fields (its
    # schema declares only the columns it reads): ``_aggregation_changes`` compares those.
    compared = list(old) if features is None else [n for n in features if n in old]
    details = [f"schema: removed field {n}" for n in compared if n not in new]
    if features is None:
        details += [f"schema: added field {n} ({new[n]})" for n in new if n not in old]
    details += [
        f"schema: {n} dtype {old.get(n)} -> {new[n]}"
        for n in compared
        if n in new and old.get(n) != new[n]
    ]
    kept_old, kept_new = [n for n in old if n in new], [n for n in new if n in old]
    if features is None and kept_old != kept_new:
        details.append("schema: field order " + ", ".join(new))
    return details


def _push_name(push: Mapping[str, Any] | None) -> str:
    return "none" if push is None else repr(push["name"])


def _aggregation_changes(
    old: Sequence[Mapping[str, Any]],
    new: Sequence[Mapping[str, Any]],
    features: Sequence[str] | None,
) -> list[str]:
    """One line per aggregation added, removed or redefined (``definition_dicts.aggregation_to_dict``
    form); with ``features``, only those aggregations."""
    before = {a["name"]: a for a in old}
    after = {a["name"]: a for a in new}
    compared = list(before) if features is None else [f for f in features if f in before]
    details = [f"aggregations: removed {n}" for n in compared if n not in after]
    if features is None:
        details += [f"aggregations: added {n}" for n in after if n not in before]
    for name in compared:
        if name in after and before[name] != after[name]:
            parts = [
                f"{k.removesuffix('_us')} {_value(k, before[name][k])} -> "
                f"{_value(k, after[name][k])}"
                for k in ("function", "column", "time_window_us", "slide_interval_us")
                if before[name][k] != after[name][k]
            ]
            details.append(f"aggregations: {name} " + ", ".join(parts))
    return details


def _value(key: str, value: Any) -> str:
    if key.endswith("_us"):
        return format_ttl(timedelta(microseconds=value))
    return repr(value)


def _keys(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return [*a, *(k for k in b if k not in a)]


def _ttl(microseconds: int | None) -> str:
    return format_ttl(None if microseconds is None else timedelta(microseconds=microseconds))
