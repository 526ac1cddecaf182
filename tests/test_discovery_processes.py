"""
Real Ice 3.7 programs with the IceLocatorDiscovery plug-in find a
gridregistry by multicast, resolve through it and register adapters.

Multicast stays off every real network: L{NetnsTests} runs the cases of
L{tests._discovery_cases} in a network namespace of its own (C{unshare -n})
whose only interface is loopback, in a nested trial.
"""

from __future__ import annotations

import os
import shutil
import sys

from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests._discovery_cases import IN_NETNS as _IN_NETNS
from tests._processes import REPO_ROOT, ice_missing


def _netns_missing() -> str | None:
    if ice_missing():
        return ice_missing()
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip (util-linux, iproute2) is missing"
    if os.environ.get(_IN_NETNS) == "1":
        return "already inside the namespace"
    return None


class NetnsTests(TestCase):
    """Runs L{InNamespace} under C{unshare -n}, with only a loopback interface up."""

    skip = _netns_missing()
    timeout = 180

    async def test_in_namespace(self) -> None:
        temp = os.path.abspath(self.mktemp())
        os.makedirs(temp)
        env = dict(os.environ, **{_IN_NETNS: "1"})
        probe = await getProcessOutputAndValue("unshare", ["-n", "true"], env=env)
        if probe[2] != 0:
            self.skipTest(f"cannot create a network namespace: {probe[1].decode(errors='replace')}")
        script = (
            "ip link set lo up && exec \"$0\" -m twisted.trial --temp-directory=\"$1\" "
            "tests._discovery_cases.InNamespace"
        )
        out, err, code = await getProcessOutputAndValue(
            "unshare",
            ["-n", "sh", "-c", script, sys.executable, os.path.join(temp, "trial")],
            env=env,
            path=str(REPO_ROOT),
        )
        text = out.decode(errors="replace") + err.decode(errors="replace")
        self.assertEqual(code, 0, text)
        self.assertIn("PASSED", text)
        self.assertNotIn("SKIPPED", text, text)
