# -*- test-case-name: tests.test_application_loading -*-
"""
Loading and changing applications costs what it should: a registry that
loads N applications parses and derives each once and rebuilds its deployed
index once (not once per application), and deploying one application parses
its descriptor once although the database, the index and the listeners all
look at it.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.trial.unittest import SynchronousTestCase

from gridreg.ice.types import Identity
from gridreg.registry import descriptors
from gridreg.registry.descriptors import application_to_json, parse_application
from gridreg.registry.state import RegistryState
from tests.test_applications import demo_xml, make_registry


def application_xml(index: int) -> str:
    """The demo application renamed so that N of them deploy side by side."""
    return (
        demo_xml()
        .replace('name="DemoApp"', f'name="App{index}"')
        .replace("HelloGroup", f"Group{index}")
        .replace("HelloServer", f"Server{index}")
        .replace('identity="hello"', f'identity="hello{index}"')
    )


class Counted:
    """Wrap a function and count its calls."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.function(*args, **kwargs)


class LoadingTests(SynchronousTestCase):
    def setUp(self) -> None:
        descriptors.derived_from_xml.cache_clear()
        self.addCleanup(descriptors.derived_from_xml.cache_clear)
        self.parses = Counted(descriptors.parse_application_xml)
        self.derives = Counted(descriptors.derive)
        self.patch(descriptors, "parse_application_xml", self.parses)
        self.patch(descriptors, "derive", self.derives)

    def test_loading_n_applications_is_linear(self) -> None:
        """
        Each stored application is parsed and derived once and the deployed
        index is built once, so loading N applications costs N parses.
        """
        count = 40
        records = {
            "application": {
                f"App{i}": {**application_to_json(parse_application(application_xml(i)))}
                for i in range(count)
            }
        }
        self.parses.calls = 0
        state = RegistryState()
        rebuilds = Counted(state.deployed._rebuild)
        self.patch(state.deployed, "_rebuild", rebuilds)
        state.load(records)
        self.assertEqual((self.parses.calls, self.derives.calls, rebuilds.calls), (count, count, 1))
        self.assertEqual(len(state.deployed.replica_groups), count)
        self.assertEqual(state.application_of_adapter(f"Group{count - 1}"), f"App{count - 1}")
        self.assertIsNotNone(state.find_object(Identity(f"hello{count - 1}")))

    def test_one_deployment_parses_its_descriptor_once(self) -> None:
        """
        Adding an application parses and derives its XML once: the database's
        checks and the deployed index that applies the committed record share
        the result.
        """
        registry = make_registry(self)
        self.successResultOf(registry.database.add_application(application_xml(1)))
        self.assertEqual((self.parses.calls, self.derives.calls), (1, 1))
        self.assertEqual(registry.state.application_of_adapter("Group1"), "App1")

    def test_one_update_parses_its_descriptor_once(self) -> None:
        """An update of a deployed application parses the new XML once."""
        registry = make_registry(self)
        self.successResultOf(registry.database.add_application(application_xml(1)))
        self.parses.calls = self.derives.calls = 0
        updated = application_xml(1).replace('identity="hello1"', 'identity="hi1"')
        self.successResultOf(registry.database.add_application(updated, update=True))
        self.assertEqual((self.parses.calls, self.derives.calls), (1, 1))
        self.assertIsNotNone(registry.state.find_object(Identity("hi1")))
        self.assertIsNone(registry.state.find_object(Identity("hello1")))
