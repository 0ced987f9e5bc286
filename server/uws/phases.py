"""The UWS 1.1 phase machine as an explicit table of allowed transitions.

HELD, SUSPENDED, UNKNOWN and ARCHIVED are never entered: vocloud does not hold
or suspend jobs, always knows a job's phase, and destroys (rather than archives)
jobs at their destruction time (UWS 1.1 section 2.1.5).
"""

from __future__ import annotations

from vo_models.uws.types import ExecutionPhase

from ..errors import ForbiddenError

__all__ = ["ACTIVE_PHASES", "TERMINAL_PHASES", "ExecutionPhase", "check_transition"]

ACTIVE_PHASES = frozenset({ExecutionPhase.PENDING, ExecutionPhase.QUEUED, ExecutionPhase.EXECUTING})
"""Phases in which a WAIT may block (UWS 1.1 section 2.2.1.2)."""

TERMINAL_PHASES = frozenset({ExecutionPhase.COMPLETED, ExecutionPhase.ERROR, ExecutionPhase.ABORTED})
"""Phases a job never leaves."""

_ALLOWED: dict[ExecutionPhase, frozenset[ExecutionPhase]] = {
    ExecutionPhase.PENDING: frozenset({ExecutionPhase.QUEUED, ExecutionPhase.ABORTED}),
    ExecutionPhase.QUEUED: frozenset(
        {ExecutionPhase.EXECUTING, ExecutionPhase.ABORTED, ExecutionPhase.ERROR}
    ),
    ExecutionPhase.EXECUTING: frozenset(
        {ExecutionPhase.COMPLETED, ExecutionPhase.ERROR, ExecutionPhase.ABORTED}
    ),
    ExecutionPhase.COMPLETED: frozenset(),
    ExecutionPhase.ERROR: frozenset(),
    ExecutionPhase.ABORTED: frozenset(),
}


def check_transition(current: ExecutionPhase, new: ExecutionPhase) -> None:
    """Check that a job may go from ``current`` to ``new``.

    Raises
    ------
    ForbiddenError
        Raised if the transition is not allowed; UWS 1.1 section 2.2 asks for a
        403 on a request that is illegal for the job's current state.
    """
    if new not in _ALLOWED.get(current, frozenset()):
        msg = f"A job in phase {current.value} cannot go to {new.value}"
        raise ForbiddenError(msg)
