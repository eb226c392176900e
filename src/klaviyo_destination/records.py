"""``@record``: the data classes events and planned requests are made of.

Frozen to the type checker (``dataclass_transform(frozen_default=True)``: mypy strict, which CI
runs over everything, refuses any assignment to a field), plain slotted data classes at run
time. A frozen data class sets each field through ``object.__setattr__`` when it is built, and
an event builds four of them (the event, its job, its planned request and result): that was
1.5-3 us of the 37 us an event costs at 100 events a request (bench/optimisations.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform, overload

_T = TypeVar("_T")


@overload
def record(cls: type[_T], /) -> type[_T]: ...
@overload
def record(*, kw_only: bool = False) -> Callable[[type[_T]], type[_T]]: ...
@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(
    cls: type[_T] | None = None, /, *, kw_only: bool = False
) -> type[_T] | Callable[[type[_T]], type[_T]]:
    """``@dataclass(frozen=True, slots=True)`` as the type checker sees it; not frozen when run."""

    def make(target: type[_T]) -> type[_T]:
        return dataclass(slots=True, kw_only=kw_only)(target)

    return make if cls is None else make(cls)
