"""The mobile node's one state table: every input in every state is decided there."""

import ast
import itertools
from pathlib import Path

import pytest

from mipro.core.mn_states import ILLEGAL, TABLE, IllegalTransition, Input, State, Via, next_state

S, V, I = State, Via, Input  # noqa: E741


def test_every_input_in_every_state_is_decided():
    """No combination falls through: each moves, is ignored, or is refused by name."""
    for event, state, via in itertools.product(Input, State, Via):
        try:
            moved = next_state(state, via, event)
        except IllegalTransition as exc:
            assert event.name in str(exc) and state.value in str(exc)
            continue
        assert moved is None or (moved[0] in State and moved[1] in Via)


@pytest.mark.parametrize("state,via,event,after", [
    (S.IDLE, V.NONE, I.HOME_LINK, (S.IDLE, V.HOME)),  # booting at home ...
    (S.IDLE, V.HOME, I.DEREGISTRATION, (S.DEREGISTERING, V.HOME)),  # ... deregisters
    (S.DEREGISTERING, V.HOME, I.DEREGISTERED, (S.HOME, V.HOME)),
    (S.HOME, V.HOME, I.HOME_LINK, None),  # already home: nothing
    (S.REGISTERED, V.FA, I.CARE_OF_ADDRESS, None),  # a lease while an FA serves
    (S.REGISTERED, V.COLOCATED, I.FOREIGN_AGENT, (S.REGISTERING, V.FA)),
    (S.REGISTERED, V.FA, I.REQUEST, (S.REGISTERED, V.FA)),  # a renewal
    (S.REGISTERED, V.FA, I.AGENT_LOST, (S.IDLE, V.NONE)),
    (S.REGISTERED, V.COLOCATED, I.BINDING_EXPIRED, (S.REGISTERING, V.COLOCATED)),
])
def test_transitions(state, via, event, after):
    assert next_state(state, via, event) == after


@pytest.mark.parametrize("state,via,event", [
    (S.IDLE, V.NONE, I.REQUEST),  # no care-of address to register
    (S.HOME, V.HOME, I.REQUEST),  # at home it only deregisters
    (S.IDLE, V.COLOCATED, I.ACCEPTED),  # an acceptance of nothing
    (S.REGISTERED, V.FA, I.DEREGISTERED),
    (S.HOME, V.HOME, I.BINDING_EXPIRED),
])
def test_impossible_inputs_are_errors(state, via, event):
    with pytest.raises(IllegalTransition):
        next_state(state, via, event)


def test_the_engine_changes_state_only_through_the_table():
    """core/mn.py assigns state and via only in _step (and the initial values)."""
    tree = ast.parse((Path(__file__).resolve().parents[2] / "mipro/core/mn.py").read_text())
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef) or fn.name in ("__init__", "_step"):
            continue
        for node in ast.walk(fn):
            for target in getattr(node, "targets", []) + [getattr(node, "target", None)]:
                if isinstance(target, ast.Attribute) and target.attr in ("state", "via"):
                    pytest.fail(f"{fn.name} sets self.{target.attr} outside the table")
            assert not (isinstance(node, ast.Tuple) and any(
                isinstance(e, ast.Attribute) and e.attr in ("state", "via") for e in node.elts)
                and fn.name != "_step"), fn.name
    assert ILLEGAL in TABLE.values()
