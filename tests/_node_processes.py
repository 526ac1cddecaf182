"""
Real C{twistd gridnode} processes for integration tests and benchmarks,
next to the registries of L{tests._processes}.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import Deferred

from tests._lineprocess import LineProcess, ProcessReactor
from tests._processes import ICE_PYTHON, INTEROP_DIR, REPO_ROOT, write_config

#: the real Ice server nodes start in these tests: see tests/interop/ice_managed_server.py
MANAGED_SERVER = INTEROP_DIR / "ice_managed_server.py"


@attrs.define
class RunningNode:
    """A gridnode process."""

    name: str
    process: LineProcess
    data_dir: Path
    config_file: Path

    def stop(self) -> Deferred[LineProcess]:
        return self.process.terminate()

    def kill(self, signal: str = "KILL") -> Deferred[LineProcess]:
        return self.process.kill(signal)

    def has_session(self, replica: str, timeout: float = 30.0) -> Deferred[Any]:
        """Fires with the node's log event once it has a session with C{replica}."""

        def established(event: Mapping[str, Any]) -> bool:
            return (
                str(event.get("log_format", "")).startswith("Node {node} has a session with")
                and event.get("replica") == replica
            )

        return self.process.next_event(established, timeout=timeout)


def managed_server_xml(
    server_id: str,
    node: str,
    activation: str = "on-demand",
    adapter_id: str = "",
    group: str = "",
    extra: str = "",
    attributes: str = "",
    adapter_children: str = "",
) -> str:
    """A <server> running the real Ice server of L{MANAGED_SERVER}."""
    if os.geteuid() == 0 and "user=" not in attributes:
        # as IceGrid, a root node runs servers as nobody unless they name root
        attributes += ' user="root"'
    adapter = f' id="{adapter_id}"' if adapter_id else ""
    group_attr = f' replica-group="{group}"' if group else ""
    return (
        f'<server id="{server_id}" exe="{ICE_PYTHON}" activation="{activation}" {attributes}>'
        f"<option>{MANAGED_SERVER}</option>"
        f'<adapter name="Hello" endpoints="tcp -h 127.0.0.1"{adapter}{group_attr}>'
        f"{adapter_children}</adapter>"
        f"{extra}</server>"
    )


def start_gridnode(
    reactor: ProcessReactor,
    workdir: str | os.PathLike[str],
    name: str,
    properties: Mapping[str, str],
    args: tuple[str, ...] = (),
) -> RunningNode:
    """
    Run C{python -m twisted gridnode --config FILE} (twist: never daemonizes)
    with C{properties} on top of a data and an output directory under
    C{workdir}. Returns at once; wait with L{RunningNode.has_session}.
    """
    root = Path(workdir).resolve()
    data_dir = root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    (root / "out").mkdir(exist_ok=True)
    config = {
        "IceGrid.Node.Name": name,
        "IceGrid.Node.Data": str(data_dir),
        "IceGrid.Node.Output": str(root / "out"),
        "IceGrid.Node.Trace.Replica": "1",
        "IceGrid.Node.Trace.Server": "1",
        "IceGrid.Node.AllowRunningServersAsRoot": "1",
        **properties,
    }
    config_file = root / "gridnode.cfg"
    write_config(config_file, config)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, "-m", "twisted", "gridnode", "--config", str(config_file), *args]
    process = LineProcess.spawn(reactor, f"gridnode-{name}", command, env, root)
    return RunningNode(name, process, data_dir, config_file)
