# -*- test-case-name: tests.test_descriptors -*-
"""
IceGrid application descriptors: what the rest of gridreg imports.

An administrator deploys an application as IceGrid XML. L{parse_application}
reads it (L{gridreg.registry.descriptor_xml}) into the deployed model
(L{gridreg.registry.descriptor_model}, re-exported here), from which
L{derive} builds the indexes that locate requests need, and
L{check_conflicts}/L{check_update} keep different applications from
claiming the same ids.

Applications are stored as their original XML and re-parsed on load
(L{application_to_json}/L{application_from_json}), so what an operator
deployed is exactly what every replica derives from.

Imports run one way: this module uses the XML reader, which uses the model,
which knows nothing of XML.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import attrs

from gridreg.registry.descriptor_model import (
    ACTIVATION_MODES,
    LOAD_BALANCING_TYPES,
    LOAD_SAMPLES,
    AdapterDescriptor,
    ApplicationDescriptor,
    DeployedAdapter,
    DeployedAllocatable,
    DeployedServer,
    DerivedApplication,
    DescriptorError,
    LoadBalancing,
    NodeDescriptor,
    ObjectDescriptor,
    ReplicaGroupDescriptor,
    ServerDescriptor,
    check_conflicts,
    check_update,
    derive,
)

__all__ = [
    "ACTIVATION_MODES",
    "LOAD_BALANCING_TYPES",
    "LOAD_SAMPLES",
    "AdapterDescriptor",
    "ApplicationDescriptor",
    "DeployedAdapter",
    "DeployedAllocatable",
    "DeployedServer",
    "DerivedApplication",
    "DescriptorError",
    "LoadBalancing",
    "NodeDescriptor",
    "ObjectDescriptor",
    "ReplicaGroupDescriptor",
    "ServerDescriptor",
    "application_from_json",
    "application_to_json",
    "server_from_json",
    "server_to_json",
    "check_conflicts",
    "check_update",
    "derive",
    "derived_from_json",
    "derived_from_xml",
    "parse_application",
]


def parse_application(xml_text: str) -> ApplicationDescriptor:
    """
    Parse and validate IceGrid application XML.

    @raise DescriptorError: the XML is malformed, unsafe or invalid.
    """
    return parse_application_xml(xml_text)


def parse_application_xml(xml_text: str) -> ApplicationDescriptor:
    """
    L{gridreg.registry.descriptor_xml.parse_application_xml}, imported at
    the first XML: a registry that is never given any does without the XML
    reader (defusedxml, expat and the element tables).
    """
    from gridreg.registry import descriptor_xml

    return descriptor_xml.parse_application_xml(xml_text)


@lru_cache(maxsize=16)
def derived_from_xml(xml_text: str) -> DerivedApplication:
    """
    Parse and derive an application once per change: the write path (the
    database's checks, then the deployed index applying the committed
    record) asks for the same XML, and gets the same immutable result.

    @raise DescriptorError: the XML is malformed, unsafe or invalid.
    """
    return derive(parse_application_xml(xml_text))


def derived_from_json(record: Mapping[str, Any]) -> DerivedApplication:
    """
    L{derived_from_xml} of an L{application_to_json} record.

    @raise DescriptorError: the record is malformed or its XML invalid.
    """
    name, xml = _name_and_xml(record)
    derived = derived_from_xml(xml)
    if derived.descriptor.name != name:
        raise DescriptorError(
            f"stored application {name!r} holds a descriptor named {derived.descriptor.name!r}"
        )
    return derived


def _name_and_xml(record: Mapping[str, Any]) -> tuple[str, str]:
    name = record.get("name") if isinstance(record, Mapping) else None
    xml = record.get("xml") if isinstance(record, Mapping) else None
    if not isinstance(name, str) or not isinstance(xml, str):
        raise DescriptorError("a stored application record needs string 'name' and 'xml'")
    return name, xml


# -- storage ------------------------------------------------------------------


def application_to_json(app: ApplicationDescriptor) -> dict[str, Any]:
    """The stored record of an application: its name and original XML."""
    return {"name": app.name, "xml": app.xml}


def application_from_json(record: Mapping[str, Any]) -> ApplicationDescriptor:
    """
    Rebuild an application from L{application_to_json}'s record by parsing
    its XML again (parsing is deterministic, so every replica agrees).

    @raise DescriptorError: the record is malformed or its XML invalid.
    """
    name, xml = _name_and_xml(record)
    app = parse_application(xml)
    if app.name != name:
        raise DescriptorError(f"stored application {name!r} holds a descriptor named {app.name!r}")
    return app


# -- servers, as a replica sends them to their node ------------------------------


def server_to_json(server: ServerDescriptor) -> dict[str, Any]:
    """A server descriptor as plain JSON: what L{DeployServers} carries to a node."""
    return attrs.asdict(server)


def server_from_json(value: Mapping[str, Any]) -> ServerDescriptor:
    """
    Rebuild L{server_to_json}'s output.

    @raise DescriptorError: the value is not a server descriptor.
    """
    try:
        fields = dict(value)
        adapters = tuple(
            AdapterDescriptor(
                **{
                    **a,
                    "objects": tuple(ObjectDescriptor(**o) for o in a.get("objects", ())),
                    "allocatables": tuple(
                        ObjectDescriptor(**o) for o in a.get("allocatables", ())
                    ),
                }
            )
            for a in fields.pop("adapters", ())
        )
        return ServerDescriptor(
            **{
                **fields,
                "options": tuple(fields.get("options", ())),
                "envs": tuple(fields.get("envs", ())),
                "properties": tuple(tuple(p) for p in fields.get("properties", ())),
                "adapters": adapters,
                "logs": tuple(fields.get("logs", ())),
            }
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise DescriptorError(f"malformed server descriptor: {exc}") from None
