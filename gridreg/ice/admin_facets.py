# -*- test-case-name: tests.test_admin_routers -*-
"""
An Ice admin object of our own: the object with facets (C{Properties},
C{Process}, C{Logger}, C{Metrics}) that every Ice 3.7 program offers under
C{Ice.Admin}, of which gridreg's registry and node serve C{Properties} and
C{Metrics} (with no views, as IceGrid 3.7.8's registry and node answer by
default: C{getMetricsViewNames} gives C{([], [])}, every view is unknown).

IceGrid's admin routers reach a registry's or a node's admin object this
way (C{getRegistryAdmin}, C{getNodeAdmin}); the IceGrid GUI reads the
C{BuildId} property and the property panels through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from gridreg.ice.encoding import InputStream, OutputStream
from gridreg.ice.exceptions import UserException
from gridreg.ice.messages import ReplyStatus, Request, not_exist_body
from gridreg.ice.servant import DispatchResult, ObjectAdapter, Servant, operation
from gridreg.ice.types import Identity, Version

#: the facets of C{Ice::PropertiesAdmin} and C{IceMX::MetricsAdmin}
PROPERTIES_FACET = "Properties"
METRICS_FACET = "Metrics"


class UnknownMetricsView(UserException):
    type_id = "::IceMX::UnknownMetricsView"


def forwarded_request(
    facet: str, operation: str, mode: int, context: Mapping[str, str], encoding: str, params: bytes
) -> Request:
    """
    A request for an admin object as a router relays its fields (encoding
    as C{"1.1"}); the identity is the admin object's own, which no answer names.
    """
    major, _, minor = encoding.partition(".")
    return Request(
        0,
        Identity("admin", ""),
        facet,
        operation,
        mode,
        dict(context),
        Version(int(major), int(minor)),
        params,
    )


class PropertiesAdminServant(Servant):
    """
    C{Ice::PropertiesAdmin} over a copy of a program's properties as
    loaded. C{setProperties} changes what the facet answers and nothing
    else, as it changes an Ice communicator's properties: IceGrid 3.7.8
    accepts it on its registry and node (checked), and so do we.
    """

    type_id = "::Ice::PropertiesAdmin"

    def __init__(self, properties: Mapping[str, str]) -> None:
        self.properties = dict(properties)

    @operation("getProperty")
    def get_property(self, request: Request, params: InputStream) -> bytes:
        out = OutputStream(request.encoding)
        out.write_string(self.properties.get(params.read_string(), ""))
        return out.getvalue()

    @operation("getPropertiesForPrefix")
    def get_properties_for_prefix(self, request: Request, params: InputStream) -> bytes:
        prefix = params.read_string()
        out = OutputStream(request.encoding)
        out.write_string_dict(
            {k: v for k, v in sorted(self.properties.items()) if k.startswith(prefix)}
        )
        return out.getvalue()

    @operation("setProperties")
    def set_properties(self, request: Request, params: InputStream) -> bytes:
        """An empty value removes the property, as in Ice."""
        for key, value in params.read_string_dict().items():
            if value:
                self.properties[key] = value
            else:
                self.properties.pop(key, None)
        return b""


class MetricsAdminServant(Servant):
    """C{IceMX::MetricsAdmin} of a program that configured no metrics view."""

    type_id = "::IceMX::MetricsAdmin"

    @operation("getMetricsViewNames")
    def get_metrics_view_names(self, request: Request, params: InputStream) -> bytes:
        out = OutputStream(request.encoding)
        out.write_string_seq([])  # disabledViews
        out.write_string_seq([])  # the enabled ones
        return out.getvalue()

    def _unknown_view(self, request: Request, params: InputStream) -> bytes:
        raise UnknownMetricsView()

    enable_metrics_view = operation("enableMetricsView")(_unknown_view)
    disable_metrics_view = operation("disableMetricsView")(_unknown_view)
    get_metrics_view = operation("getMetricsView")(_unknown_view)
    get_map_metrics_failures = operation("getMapMetricsFailures")(_unknown_view)
    get_metrics_failures = operation("getMetricsFailures")(_unknown_view)


class AdminObject:
    """An object with facets; a facet it lacks is answered C{FacetNotExistException}."""

    def __init__(self, facets: Optional[Mapping[str, Servant]] = None) -> None:
        self.facets: dict[str, Servant] = dict(facets or {})
        self._adapter = ObjectAdapter("Admin")

    @classmethod
    def with_properties(cls, properties: Mapping[str, str]) -> "AdminObject":
        return cls(
            {
                PROPERTIES_FACET: PropertiesAdminServant(properties),
                METRICS_FACET: MetricsAdminServant(),
            }
        )

    def dispatch(self, request: Request, connection: Any = None) -> DispatchResult:
        servant = self.facets.get(request.facet)
        if servant is None:
            return not_exist_body(
                ReplyStatus.FACET_NOT_EXIST, request.identity, request.facet, request.operation
            )
        return self._adapter.dispatch_to(servant, request, None, connection)
