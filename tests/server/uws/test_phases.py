"""The phase machine allows exactly the UWS transitions vocloud uses."""

import itertools

import pytest

from vocloud.server.errors import ForbiddenError
from vocloud.server.uws.phases import TERMINAL_PHASES, ExecutionPhase, check_transition

P = ExecutionPhase
ALLOWED = {
    (P.PENDING, P.QUEUED), (P.PENDING, P.ABORTED),
    (P.QUEUED, P.EXECUTING), (P.QUEUED, P.ABORTED), (P.QUEUED, P.ERROR),
    (P.EXECUTING, P.COMPLETED), (P.EXECUTING, P.ERROR), (P.EXECUTING, P.ABORTED),
}


@pytest.mark.parametrize(("current", "new"), list(itertools.product(P, P)))
def test_transition_table(current, new):
    if (current, new) in ALLOWED:
        check_transition(current, new)
    else:
        with pytest.raises(ForbiddenError) as info:
            check_transition(current, new)
        assert info.value.status == 403
        assert current.value in info.value.message


def test_terminal_phases_have_no_way_out():
    for phase in TERMINAL_PHASES:
        assert not any(current == phase for current, _ in ALLOWED)
