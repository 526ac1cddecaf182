# -*- test-case-name: tests.test_node_servers -*-
"""
The lifecycle of one managed server, IceGrid's server states::

    Inactive --start--> Activating --ready--> Active
    Activating, Active --stop--> Deactivating
    Activating, Active, Deactivating --exited--> Inactive
    Inactive --destroy--> Destroyed

C{start} is the process being spawned, C{ready} every server-lifetime
adapter having registered, C{exited} the process having ended (whatever
the cause). The machine only says where the server is and refuses what
cannot happen there (L{automat.NoTransition}); L{gridreg.node.server}
does the work and feeds it what happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from automat import TypeMachineBuilder

from twisted.internet.interfaces import IReactorTime

__all__ = ["ServerInputs", "build_server_machine", "STATES"]

INACTIVE = "inactive"
ACTIVATING = "activating"
ACTIVE = "active"
DEACTIVATING = "deactivating"
DESTROYED = "destroyed"
#: the names L{ServerInputs.state} answers, as node live state carries them
STATES = (INACTIVE, ACTIVATING, ACTIVE, DEACTIVATING, DESTROYED)


class ServerInputs(Protocol):
    """What happens to a server."""

    def start(self) -> None:
        """Its process is being spawned."""

    def ready(self) -> None:
        """Every adapter it must register has registered: it is up."""

    def stop(self) -> None:
        """It is being asked to stop."""

    def exited(self) -> None:
        """Its process ended."""

    def destroy(self) -> None:
        """Its application no longer deploys it."""

    def state(self) -> str:
        """One of L{STATES}."""

    def since(self) -> float:
        """When it entered its current state (the clock's seconds)."""


@dataclass
class ServerCore:
    clock: IReactorTime
    entered: float = 0.0

    def enter(self) -> None:
        self.entered = self.clock.seconds()


def _build() -> Callable[[ServerCore], ServerInputs]:
    builder = TypeMachineBuilder(ServerInputs, ServerCore)
    Inactive = builder.state("Inactive")
    Activating = builder.state("Activating")
    Active = builder.state("Active")
    Deactivating = builder.state("Deactivating")
    Destroyed = builder.state("Destroyed")

    def moved(inputs: ServerInputs, core: ServerCore) -> None:
        core.enter()

    Inactive.upon(ServerInputs.start).to(Activating)(moved)
    Activating.upon(ServerInputs.ready).to(Active)(moved)
    for running in (Activating, Active):
        running.upon(ServerInputs.stop).to(Deactivating)(moved)
    for alive in (Activating, Active, Deactivating):
        alive.upon(ServerInputs.exited).to(Inactive)(moved)
    Inactive.upon(ServerInputs.destroy).to(Destroyed)(moved)
    Inactive.upon(ServerInputs.stop).loop().returns(None)
    Deactivating.upon(ServerInputs.stop).loop().returns(None)
    Active.upon(ServerInputs.ready).loop().returns(None)
    Destroyed.upon(ServerInputs.destroy).loop().returns(None)

    for state, name in (
        (Inactive, INACTIVE),
        (Activating, ACTIVATING),
        (Active, ACTIVE),
        (Deactivating, DEACTIVATING),
        (Destroyed, DESTROYED),
    ):

        def answer(inputs: ServerInputs, core: ServerCore, name: str = name) -> str:
            return name

        state.upon(ServerInputs.state).loop()(answer)

        def since(inputs: ServerInputs, core: ServerCore) -> float:
            return core.entered

        state.upon(ServerInputs.since).loop()(since)

    return builder.build()


_factory = _build()


def build_server_machine(clock: IReactorTime) -> ServerInputs:
    """A new machine: an inactive server."""
    core = ServerCore(clock)
    core.enter()
    return _factory(core)
