"""breaker_open: the gateway's circuit breaker for a provider forced open (its admin API)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from lab.faults.actions.base import Action, register

if TYPE_CHECKING:
    from lab.faults.injector import FaultInjector
    from lab.faults.journal import Fault


@register
class BreakerOpenAction(Action):
    """Force the gateway's circuit breaker for the provider open (lifted by resetting it)."""

    type: Literal["breaker_open"] = "breaker_open"

    def apply(self, injector: FaultInjector, target: str, *, name: str | None = None) -> Fault:
        return injector.open_breaker(target, name=name)
