"""The ticket state machine as one registry: each action declared once, beside its function.

Like sqlite-utils' ``Migrations``, a decorator registers the domain function::

    @transition("complete", from_={CALLED}, to=COMPLETED, outcome="completed",
                body=ActionRequest, summary="Service done (CALLED → COMPLETED)")
    def complete(tx, ticket_id, *, user_id=None, version=None): ...

From the registry come the state check (``begin``), the ``/tickets/{id}/<name>``
API routes and their OpenAPI operations, the list of interaction outcomes, and
the tests' table of allowed moves. Adding an action is one function, one entry
(and its rows in the tests); a new state or outcome also needs a migration for
the schema's CHECK lists, which a test compares with the registry.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from ..bodies import Body

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Transition:
    """One action of the state machine.

    ``name`` is the action (and the API path segment). A ticket in a state of
    ``from_`` may take it and ends in ``to``. ``outcome`` closes the ticket's
    open call with that outcome (``None``: the action closes no call);
    ``call_stands`` says the call did happen, so the ticket stays "now
    serving" (completed, skipped) rather than being forgotten (returned …).
    ``past`` words the refusal ("… it cannot be returned to the queue");
    ``event`` is the change event's action (default: the outcome, else
    ``past``). ``body`` declares what the API takes; ``settings`` maps keyword
    arguments of ``fn`` to functions of the app's settings that make their
    values, ``staff_args`` are fixed arguments when staff act through the API.
    """

    name: str
    from_: frozenset[str]
    to: str
    fn: Callable[..., Any]
    summary: str
    body: type[Body]
    past: str
    outcome: str | None = None
    call_stands: bool = False
    event_name: str | None = None
    settings: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    staff_args: Mapping[str, Any] = field(default_factory=dict)

    @property
    def event(self) -> str:
        return self.event_name or self.outcome or self.past

    @property
    def records_user(self) -> bool:
        """Whether the function takes ``user_id`` (who acted), for the API to pass."""
        return "user_id" in inspect.signature(self.fn).parameters


class Transitions(Mapping[str, Transition]):
    """The registry: action name → ``Transition``, in declaration order."""

    def __init__(self) -> None:
        self._by_name: dict[str, Transition] = {}
        self._by_fn: dict[Callable[..., Any], Transition] = {}

    def transition(self, name: str, *, from_: Iterable[str], to: str, summary: str,
                   body: type[Body], past: str, outcome: str | None = None,
                   call_stands: bool = False, event: str | None = None,
                   settings: Mapping[str, Callable[[Any], Any]] | None = None,
                   staff_args: Mapping[str, Any] | None = None) -> Callable[[F], F]:
        """Decorator: register the function as the action ``name`` (returned unchanged)."""

        def register(fn: F) -> F:
            if name in self._by_name:
                raise ValueError(f"transition {name!r} is declared twice")
            entry = Transition(
                name=name, from_=frozenset(from_), to=to, fn=fn, summary=summary, body=body,
                past=past, outcome=outcome, call_stands=call_stands, event_name=event,
                settings=MappingProxyType(dict(settings or {})),
                staff_args=MappingProxyType(dict(staff_args or {})))
            self._by_name[name] = entry
            self._by_fn[fn] = entry
            return fn

        return register

    def of(self, fn: Callable[..., Any]) -> Transition:
        """The entry a registered function was declared with."""
        return self._by_fn[fn]

    def states(self) -> set[str]:
        """Every state an action starts from or leads to."""
        return {s for t in self.values() for s in (*t.from_, t.to)}

    def outcomes(self) -> tuple[str, ...]:
        """The outcomes a call can end with, in declaration order."""
        return tuple(dict.fromkeys(t.outcome for t in self.values() if t.outcome))

    def standing_outcomes(self) -> tuple[str, ...]:
        """Outcomes of calls that did happen (the ticket may stay "now serving")."""
        return tuple(t.outcome for t in self.values() if t.outcome and t.call_stands)

    def allowed(self) -> dict[tuple[str, str], str]:
        """``(state, action) → state reached`` for every allowed move."""
        return {(state, t.name): t.to for t in self.values() for state in sorted(t.from_)}

    def __getitem__(self, name: str) -> Transition:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)
