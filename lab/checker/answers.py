"""The checker's load-side half: one answer, checked against the simulated chain at its send time."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any


class AnswerInspector:
    """Checks successful answers against the simulated chain. The load calls `inspect` once per
    successful answer (a batch: once per entry) and merges what it returns into that request's row."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> AnswerInspector | None:
        """The inspector for the chain the environment names, or None when it names none (nothing checked)."""
        return None

    def inspect(self, method: str, params: Sequence[Any], result: Any, sent_at: float) -> dict[str, Any]:
        """The checker columns of the `requests` row (`answer_block`, `check`, `check_detail`) for a
        successful answer to `method(params)` sent at `sent_at` (unix seconds)."""
        return {}
