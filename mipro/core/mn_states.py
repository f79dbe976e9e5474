"""The mobile node's states, and the one table that says what each input does to them.

After h11's ``_state.py``: the state is a pair, the registration phase and what the
node is attached through; every input looks itself up here and either moves the
state, means nothing in it (IGNORED: e.g. a DHCP lease while a foreign agent
serves), or cannot happen in it (IllegalTransition: a bug, said in one place).
The engine (core/mn.py) keeps no other record of either.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    """The registration phase."""

    IDLE = "idle"  # no care-of address, or nothing registered
    REGISTERING = "registering"
    REGISTERED = "registered"
    DEREGISTERING = "deregistering"
    HOME = "home"


class Via(enum.Enum):
    """What the node is attached through."""

    NONE = "none"
    FA = "fa"  # a foreign agent's care-of address
    COLOCATED = "colocated"  # its own care-of address (DHCP)
    HOME = "home"  # the home link


class Input(enum.Enum):
    CARE_OF_ADDRESS = "a co-located care-of address was obtained"
    CARE_OF_ADDRESS_LOST = "the co-located care-of address was lost"
    HOME_LINK = "the home link (its home agent heard, or a home address leased)"
    FOREIGN_AGENT = "a foreign agent to move to"
    AGENT_LOST = "the foreign agent's advertisements stopped"
    REQUEST = "a registration request sent"
    DEREGISTRATION = "a deregistration request sent"
    ACCEPTED = "the registration accepted"
    DEREGISTERED = "the deregistration accepted"
    BINDING_EXPIRED = "the binding's lifetime ran out"


class IllegalTransition(RuntimeError):
    pass


ANY = None  # in a key: any phase or attachment; in a result: unchanged
IGNORED = "ignored"
ILLEGAL = "illegal"

S, V, I = State, Via, Input  # noqa: E741 - short names keep the table readable

#: (input, phase, attachment) -> (phase, attachment) after it, IGNORED or ILLEGAL.
#: Looked up most specific first: (i, p, v), (i, p, ANY), (i, ANY, v), (i, ANY, ANY);
#: an input with no entry at all is illegal.
TABLE: dict[tuple[Input, State | None, Via | None],
            tuple[State | None, Via | None] | str] = {
    (I.CARE_OF_ADDRESS, ANY, V.FA): IGNORED,  # a foreign agent serves: leases mean nothing
    (I.CARE_OF_ADDRESS, ANY, ANY): (ANY, V.COLOCATED),
    (I.CARE_OF_ADDRESS_LOST, ANY, V.COLOCATED): (S.IDLE, V.NONE),
    (I.CARE_OF_ADDRESS_LOST, ANY, ANY): IGNORED,
    (I.HOME_LINK, S.HOME, V.HOME): IGNORED,  # already home
    (I.HOME_LINK, S.DEREGISTERING, V.HOME): IGNORED,  # on its way
    (I.HOME_LINK, ANY, ANY): (ANY, V.HOME),
    (I.FOREIGN_AGENT, S.REGISTERED, ANY): (S.REGISTERING, V.FA),  # the new FA's turn
    (I.FOREIGN_AGENT, ANY, ANY): (ANY, V.FA),
    (I.AGENT_LOST, ANY, V.FA): (S.IDLE, V.NONE),
    (I.AGENT_LOST, ANY, ANY): IGNORED,
    (I.REQUEST, ANY, V.NONE): ILLEGAL,  # no care-of address to register
    (I.REQUEST, ANY, V.HOME): ILLEGAL,  # at home it only deregisters
    (I.REQUEST, S.REGISTERED, ANY): (S.REGISTERED, ANY),  # a renewal: registered meanwhile
    (I.REQUEST, ANY, ANY): (S.REGISTERING, ANY),
    (I.DEREGISTRATION, ANY, V.NONE): ILLEGAL,
    (I.DEREGISTRATION, ANY, ANY): (S.DEREGISTERING, ANY),
    (I.ACCEPTED, S.REGISTERING, ANY): (S.REGISTERED, ANY),
    (I.ACCEPTED, S.REGISTERED, ANY): (S.REGISTERED, ANY),
    (I.DEREGISTERED, S.DEREGISTERING, V.HOME): (S.HOME, V.HOME),
    (I.DEREGISTERED, S.DEREGISTERING, ANY): (S.IDLE, ANY),
    (I.BINDING_EXPIRED, S.REGISTERED, ANY): (S.REGISTERING, ANY),
}


def next_state(state: State, via: Via, event: Input) -> tuple[State, Via] | None:
    """The state after ``event``, or None if it means nothing now; raises
    IllegalTransition if it cannot happen now."""
    for key in ((event, state, via), (event, state, ANY), (event, ANY, via),
                (event, ANY, ANY)):
        if key in TABLE:
            result = TABLE[key]
            break
    else:
        result = ILLEGAL
    if result == ILLEGAL:
        raise IllegalTransition(f"{event.name} in {state.value}/{via.value}: "
                                f"{event.value} cannot happen now")
    if result == IGNORED:
        return None
    assert isinstance(result, tuple)
    phase, attachment = result
    return (state if phase is ANY else phase, via if attachment is ANY else attachment)
