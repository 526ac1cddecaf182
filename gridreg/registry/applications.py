# -*- test-case-name: tests.test_applications -*-
"""
What deployed applications add to the registry's indexes: adapter ids the
registry accepts without dynamic registration, replica groups with their
load-balancing policy, well-known objects, and allocatable objects (which
only allocation sessions see, L{gridreg.registry.allocation}).

Applications are few and change rarely, so the indexes are rebuilt from all
of them on every change; locate requests only read them.  A load derives
every stored application and rebuilds once (a rebuild per application made
loading N applications quadratic).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

from gridreg.ice.types import Identity
from gridreg.registry.application_metadata import ApplicationMetadata

if TYPE_CHECKING:  # the descriptor model is imported once an application is
    from gridreg.registry.descriptors import (
        ApplicationDescriptor,
        DeployedAdapter,
        DeployedAllocatable,
        DerivedApplication,
        ReplicaGroupDescriptor,
    )

APPLICATION = "application"


class DeployedIndex:
    """The union of every deployed application, indexed by id."""

    def __init__(self) -> None:
        self.derived: dict[str, DerivedApplication] = {}
        #: uuid, revision, who and when, by application name
        self.metadata: dict[str, ApplicationMetadata] = {}
        self.adapters: dict[str, DeployedAdapter] = {}
        self.replica_groups: dict[str, ReplicaGroupDescriptor] = {}
        #: identity to (proxy, type)
        self.objects: dict[Identity, tuple[Any, str]] = {}
        #: identity to (proxy, type, server id, whether the server is allocatable)
        self.allocatables: dict[Identity, DeployedAllocatable] = {}
        self._application_of: dict[str, str] = {}

    def clear(self) -> None:
        self.derived.clear()
        self.metadata.clear()
        self._rebuild()

    def load(self, records: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace every application by the stored records: one rebuild."""
        self.derived.clear()
        self.metadata.clear()
        for name, value in records.items():
            self._set(name, value)
        self._rebuild()

    def put(self, name: str, value: Optional[Mapping[str, Any]]) -> None:
        """Apply one replicated application record (None removes it)."""
        self._set(name, value)
        self._rebuild()

    def _set(self, name: str, value: Optional[Mapping[str, Any]]) -> None:
        if value is None:
            self.derived.pop(name, None)
            self.metadata.pop(name, None)
        else:
            from gridreg.registry.descriptors import derived_from_json

            self.derived[name] = derived_from_json(value)
            self.metadata[name] = ApplicationMetadata.from_json(value.get("meta"), name)

    def _rebuild(self) -> None:
        self.adapters = {}
        self.replica_groups = {}
        self.objects = {}
        self.allocatables = {}
        self._application_of = {}
        for name, app in self.derived.items():
            self.adapters.update(app.adapters)
            self.replica_groups.update(app.replica_groups)
            self.objects.update(app.objects)
            self.allocatables.update(app.allocatables)
            for adapter_id in list(app.adapters) + list(app.replica_groups):
                self._application_of[adapter_id] = name

    @property
    def applications(self) -> dict[str, ApplicationDescriptor]:
        return {name: app.descriptor for name, app in self.derived.items()}

    def application_of(self, adapter_id: str) -> Optional[str]:
        """The application that deploys an adapter or replica group, if any."""
        return self._application_of.get(adapter_id)

    def application_of_object(self, identity: Identity) -> Optional[str]:
        for name, app in self.derived.items():
            if identity in app.objects:
                return name
        return None
