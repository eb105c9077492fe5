"""Damaging an answer's result (the `corrupt` behaviour): one field, picked with a seeded draw, made
malformed, dropped, or subtly wrong.

The result is never changed in place: the chain's blocks are cached and shared by every request, so a
damaged answer is a copy.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson

_HEX_DIGITS = "0123456789abcdef"
Path = tuple[Any, ...]  # keys and indexes from the result to a value


@dataclass(frozen=True, slots=True)
class AnswerDamage:
    """One answer's damage: its kind (specs.Damage) and the seed of the draw of the field it hits."""

    kind: str
    seed: int

    def apply(self, result: Any) -> tuple[Any, bool]:
        """The damaged result and whether anything was damaged (false, [], null have nothing to hit)."""
        rng = random.Random(self.seed)
        if self.kind == "missing":
            if not isinstance(result, dict | list):  # a hex scalar becomes null; false stays false
                return (None, True) if isinstance(result, str) else (result, False)
            keys = list(_dict_keys(result, ()))
            if not keys:
                return result, False
            *where, key = rng.choice(keys)
            damaged = _copy(result)
            del _at(damaged, tuple(where))[key]
            return damaged, True
        leaves = list(_hex_leaves(result, ()))
        if not leaves:
            return result, False
        where = rng.choice(leaves)
        damaged = _copy(result)
        if not where:
            return _damage_hex(self.kind, damaged), True
        *parent, key = where
        container = _at(damaged, tuple(parent))
        container[key] = _damage_hex(self.kind, container[key])
        return damaged, True


def _damage_hex(kind: str, value: str) -> str:
    digits = value[2:]
    if kind == "malformed":
        return "0x" + digits[:-1] + "z"
    if not digits:  # wrong_value of empty data
        return "0x00"
    last = _HEX_DIGITS[(_HEX_DIGITS.index(digits[-1].lower()) + 1) % 16]
    return "0x" + digits[:-1] + last  # a quantity's first digit stays: never a leading zero


def _hex_leaves(value: Any, path: Path) -> Any:
    if isinstance(value, str):
        if value.startswith("0x"):
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _hex_leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _hex_leaves(item, (*path, index))


def _dict_keys(value: Any, path: Path) -> Any:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key)
            yield from _dict_keys(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _dict_keys(item, (*path, index))


def _copy(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


def _at(value: Any, path: Path) -> Any:
    for key in path:
        value = value[key]
    return value
