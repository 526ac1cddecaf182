"""
The gridnode plugin's options: IceGrid's property names, --node-name and
--property overrides, and start-up refused with a message naming the bad
or missing property.
"""

from __future__ import annotations

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from gridreg.node.tap import Options

LOCATOR = "Ice.Default.Locator=DemoIceGrid/Locator:tcp -h 127.0.0.1 -p 4061"


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


class NodeOptionsTests(SynchronousTestCase):
    def base(self) -> list[str]:
        return [
            "--property", LOCATOR,
            "--property", f"IceGrid.Node.Data={self.mktemp()}",
            "--property", "GridReg.Internal.Insecure=1",
        ]

    def test_properties_and_node_name(self) -> None:
        options = parse(
            *self.base(),
            "--property", "IceGrid.Node.Name=ignored",
            "--property", "IceGrid.Node.WaitTime=7",
            "--property", "IceGrid.Node.Output=out",
            "--property", "IceGrid.Node.RedirectErrToOut=1",
            "--property", "IceGrid.Node.PropertiesOverride=Ice.Trace.Network=1 Ice.Warn.Connections",
            "--node-name", "node7",
        )
        config = options.node_config
        assert config is not None
        self.assertEqual(config.name, "node7")
        self.assertEqual(config.wait_time, 7)
        self.assertTrue(config.redirect_err_to_out)
        self.assertTrue(config.output_dir and config.output_dir.endswith("/out"))
        self.assertEqual(config.instance_name, "DemoIceGrid")
        self.assertEqual(
            config.properties_override, (("Ice.Trace.Network", "1"), ("Ice.Warn.Connections", "1"))
        )

    def test_config_file(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"IceGrid.Node.Name=node1\nIceGrid.Node.Data=data\n{LOCATOR}\n"
                    "GridReg.Internal.Insecure=1\n")
        config = parse("--config", path).node_config
        assert config is not None
        self.assertEqual(config.name, "node1")

    def assert_refused(self, *args: str, naming: str) -> None:
        with self.assertRaises(usage.UsageError) as caught:
            parse(*args)
        self.assertIn(naming, str(caught.exception))

    def test_name_required(self) -> None:
        self.assert_refused(*self.base(), naming="IceGrid.Node.Name")

    def test_data_required(self) -> None:
        self.assert_refused(
            "--property", LOCATOR, "--property", "GridReg.Internal.Insecure=1",
            "--node-name", "n", naming="IceGrid.Node.Data",
        )

    def test_locator_required(self) -> None:
        self.assert_refused(
            "--property", "IceGrid.Node.Data=d", "--property", "GridReg.Internal.Insecure=1",
            "--node-name", "n", naming="Ice.Default.Locator",
        )

    def test_bad_wait_time(self) -> None:
        self.assert_refused(
            *self.base(), "--node-name", "n", "--property", "IceGrid.Node.WaitTime=soon",
            naming="IceGrid.Node.WaitTime",
        )
        self.assert_refused(
            *self.base(), "--node-name", "n", "--property", "IceGrid.Node.WaitTime=0",
            naming="IceGrid.Node.WaitTime",
        )

    def test_tls_required_unless_insecure_is_asked_for(self) -> None:
        self.assert_refused(
            "--property", LOCATOR, "--property", "IceGrid.Node.Data=d", "--node-name", "n",
            naming="IceSSL",
        )

    def test_bad_node_name(self) -> None:
        self.assert_refused(*self.base(), "--node-name", "a/b", naming="IceGrid.Node.Name")

    def test_plugin_is_listed(self) -> None:
        from twisted.plugin import getPlugins
        from twisted.application.service import IServiceMaker

        names = {p.tapname for p in getPlugins(IServiceMaker)}
        self.assertIn("gridnode", names)
        self.assertIn("gridregistry", names)


class NodeLoadTests(SynchronousTestCase):
    """What a node reports as its load: the load averages over its processors."""

    def test_load_file_and_processor_count(self) -> None:
        from gridreg.node.service import _load_sampler

        path = self.mktemp()
        with open(path, "w") as f:
            f.write("4.00 2.00 1.00 3/200 1234\n")
        options = parse(
            "--property", LOCATOR, "--property", f"IceGrid.Node.Data={self.mktemp()}",
            "--property", "GridReg.Internal.Insecure=1", "--node-name", "n",
            "--property", f"GridReg.Node.LoadAverageFile={path}",
            "--property", "IceGrid.Node.ProcessorSocketCount=4",
        )
        assert options.node_config is not None
        self.assertEqual(_load_sampler(options.node_config)(), (1.0, 0.5, 0.25))

    def test_negative_processor_count_refused(self) -> None:
        with self.assertRaises(usage.UsageError) as caught:
            parse(
                "--property", LOCATOR, "--property", "IceGrid.Node.Data=d",
                "--property", "GridReg.Internal.Insecure=1", "--node-name", "n",
                "--property", "IceGrid.Node.ProcessorSocketCount=-1",
            )
        self.assertIn("IceGrid.Node.ProcessorSocketCount", str(caught.exception))
