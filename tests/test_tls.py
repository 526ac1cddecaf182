# -*- test-case-name: tests.test_tls -*-
"""
Tests for L{gridreg.tls} (mutual TLS, peer identities, authorization) and
L{gridreg.certs} (the demo CA command).

TLS runs for real (OpenSSL) over an in-memory pump, so the handshakes,
rejections and identities are the ones a deployment sees; one test uses
real loopback sockets to prove the endpoint helpers fit together.
"""

from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from service_identity import VerificationError
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from gridreg import certs, tls
from gridreg.config.properties import Properties, PropertyError
from gridreg.ice.types import TcpEndpoint
from gridreg.tls import ADMIN, NODE, REGISTRY, PeerIdentity, PeerNotAuthorized, TLSConfig

MASTER = tls.dns_name(REGISTRY, "Master")
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def grid(test: SynchronousTestCase, **kwargs: Any) -> dict[tuple[str, str], TLSConfig]:
    """The certificates of a demo grid, in a fresh directory."""
    return certs.make_demo_certs(
        test.mktemp(),
        kwargs.pop("replicas", ["Master", "Replica1", "Replica2"]),
        kwargs.pop("nodes", ["node1"]),
        kwargs.pop("admins", ["admin"]),
        **kwargs,
    )


@implementer(IHandshakeListener)
class Peer(Protocol):
    """
    An application protocol over TLS that records what it saw, and, as a
    server, authorizes its peer right after the handshake as gridreg's
    sessions do.
    """

    def __init__(self, greeting: bytes, require: str | None = None) -> None:
        self.greeting = greeting
        self.require = require
        self.identity: PeerIdentity | None = None
        self.refused: PeerNotAuthorized | None = None
        self.received = b""
        self.lost: Failure | None = None

    @property
    def tls(self) -> Any:
        """The TLS transport (ISSLTransport, ITCPTransport)."""
        return self.transport

    def connectionMade(self) -> None:
        self.tls.write(self.greeting)  # TLS holds it until the handshake is done

    def handshakeCompleted(self) -> None:
        try:
            self.identity = tls.peer_identity(self.tls)
            if self.require is not None:
                tls.authorize(self.identity, self.require)
        except PeerNotAuthorized as e:
            self.refused = e
            self.tls.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost = reason

    def why_lost(self) -> str:
        assert self.lost is not None, "the connection is still open"
        return str(self.lost.value)


def talk(
    server_options: IOpenSSLServerConnectionCreator,
    client_options: IOpenSSLClientConnectionCreator,
    require: str | None = None,
) -> tuple[Peer, Peer]:
    """Run a TLS connection in memory to its end; (client, server) application protocols."""
    clock = Clock()
    server, client = Peer(b"from server", require), Peer(b"from client")

    def side(options: Any, is_client: bool, app: Peer) -> Callable[[], Protocol]:
        factory = TLSMemoryBIOFactory(
            options, is_client, Factory.forProtocol(lambda: app), clock=clock
        )
        return lambda: factory.buildProtocol(None)

    _, _, pump = iosim.connectedServerAndClient(
        side(server_options, False, server), side(client_options, True, client), clock=clock
    )
    pump.flush()
    return client, server


class MutualTLSTests(SynchronousTestCase):
    """Who can connect to whom, and what each side learns about the other."""

    def setUp(self) -> None:
        self.grid = grid(self)
        self.master = tls.server_tls_options(self.grid[REGISTRY, "Master"])

    def assert_refused(self, server: Peer) -> None:
        """The server application saw no peer and no byte, and the link is gone."""
        self.assertIsNone(server.identity)
        self.assertEqual(server.received, b"")
        self.assertIsNotNone(server.lost)

    def test_replicas_learn_each_others_identity(self) -> None:
        """A slave with a grid certificate reaches the master; each side reads the other's name."""
        client, server = talk(
            self.master,
            tls.client_tls_options(self.grid[REGISTRY, "Replica1"], MASTER),
            require=REGISTRY,
        )
        self.assertEqual(
            server.identity, PeerIdentity(REGISTRY, "Replica1", "replica1.registry.gridreg")
        )
        self.assertEqual(client.identity, PeerIdentity(REGISTRY, "Master", MASTER))
        self.assertEqual((server.received, client.received), (b"from client", b"from server"))
        self.assertIsNone(server.refused)
        self.assertIsNone(server.lost)

    def test_replaced_certificate_files_are_read_again(self) -> None:
        """
        The loaded certificates are kept per certificate set, but a set
        whose files were replaced (a new CA, say) is read again.
        """
        out = self.mktemp()
        first = certs.make_demo_certs(out, ["Master", "Replica1"], [], [])
        tls.server_tls_options(first[REGISTRY, "Master"])  # loaded and kept
        second = certs.make_demo_certs(out, ["Master", "Replica1"], [], [], force=True)
        self.assertEqual(first[REGISTRY, "Master"], second[REGISTRY, "Master"])  # same paths
        client, server = talk(
            tls.server_tls_options(second[REGISTRY, "Master"]),
            tls.client_tls_options(second[REGISTRY, "Replica1"], MASTER),
            require=REGISTRY,
        )
        self.assertEqual(client.identity, PeerIdentity(REGISTRY, "Master", MASTER))
        presented = client.tls.getPeerCertificate().to_cryptography()
        on_disk = x509.load_pem_x509_certificate(read(second[REGISTRY, "Master"].cert_file))
        self.assertEqual(presented, on_disk)

    def test_client_from_another_ca_is_rejected(self) -> None:
        """
        A certificate from another CA does not get in, even from a client
        that trusts our CA and claims a replica's name.
        """
        stranger = grid(self, replicas=["Replica1"], nodes=[], admins=[])[REGISTRY, "Replica1"]
        config = TLSConfig(
            self.grid[REGISTRY, "Master"].ca_file, stranger.cert_file, stranger.key_file
        )
        client, server = talk(self.master, tls.client_tls_options(config, MASTER))
        self.assert_refused(server)
        self.assertIn("certificate verify failed", server.why_lost())
        self.assertIsNotNone(client.lost)

    def test_client_without_certificate_is_rejected(self) -> None:
        """The internal endpoint requires a client certificate."""
        ca = Certificate.loadPEM(read(self.grid[REGISTRY, "Master"].ca_file))
        client, server = talk(self.master, optionsForClientTLS(MASTER, trustRoot=ca))
        self.assert_refused(server)
        self.assertIn("did not return a certificate", server.why_lost())
        self.assertIsNotNone(client.lost)
        self.assertEqual(client.received, b"")

    def test_node_is_not_a_replica(self) -> None:
        """A valid node certificate authenticates but is not authorized for a slave session."""
        client, server = talk(
            self.master, tls.client_tls_options(self.grid[NODE, "node1"], MASTER), require=REGISTRY
        )
        self.assertEqual(server.identity, PeerIdentity(NODE, "node1", "node1.node.gridreg"))
        self.assertEqual(
            str(server.refused), "peer 'node1' has role node, this endpoint accepts registry"
        )
        self.assertIsNotNone(client.lost)

    def test_client_checks_the_servers_name(self) -> None:
        """A client expecting Master refuses a server holding Replica2's certificate."""
        impostor = tls.server_tls_options(self.grid[REGISTRY, "Replica2"])
        client, server = talk(
            impostor, tls.client_tls_options(self.grid[REGISTRY, "Replica1"], MASTER)
        )
        self.assertIsNone(client.identity)
        self.assertEqual(client.received, b"")
        assert client.lost is not None
        self.assertIsInstance(client.lost.value, VerificationError)
        self.assertEqual(server.received, b"")

    def test_client_refuses_a_server_from_another_ca(self) -> None:
        """A server with the right name but another CA's certificate is refused."""
        other = grid(self, replicas=["Master"], nodes=[], admins=[])[REGISTRY, "Master"]
        client, server = talk(
            tls.server_tls_options(other),
            tls.client_tls_options(self.grid[REGISTRY, "Replica1"], MASTER),
        )
        self.assertIsNone(client.identity)
        self.assertIn("certificate verify failed", client.why_lost())
        self.assertEqual(server.received, b"")


class AuthorizeTests(SynchronousTestCase):
    """L{tls.authorize} checks role, then the exact name."""

    node = PeerIdentity(NODE, "node1", "node1.node.gridreg")

    def test_role(self) -> None:
        tls.authorize(self.node, NODE)
        for role in (REGISTRY, ADMIN):
            e = self.assertRaises(PeerNotAuthorized, tls.authorize, self.node, role)
            self.assertEqual(str(e), f"peer 'node1' has role node, this endpoint accepts {role}")

    def test_exact_name(self) -> None:
        """Names that share a DNS label (case) are still told apart by the CN."""
        tls.authorize(PeerIdentity(REGISTRY, "Master", MASTER), REGISTRY, "Master")
        e = self.assertRaises(
            PeerNotAuthorized,
            tls.authorize,
            PeerIdentity(REGISTRY, "master", MASTER),
            REGISTRY,
            "Master",
        )
        self.assertEqual(
            str(e),
            "peer 'master' (master.registry.gridreg) is not the registry 'Master' expected here",
        )


class PeerIdentityTests(SynchronousTestCase):
    """L{tls.peer_identity} accepts only certificates of gridreg's shape."""

    def setUp(self) -> None:
        config = grid(self, replicas=["Master"], nodes=[], admins=[])[REGISTRY, "Master"]
        with open(config.ca_file.replace(".pem", ".key"), "rb") as f:
            self.ca_key = serialization.load_pem_private_key(f.read(), None)
        with open(config.ca_file, "rb") as f:
            self.ca = x509.load_pem_x509_certificate(f.read())
        with open(config.cert_file, "rb") as f:
            self.master = x509.load_pem_x509_certificate(f.read())

    def issue(self, cn: str | None, *dns: str) -> x509.Certificate:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.ca.subject)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(NOW)
            .not_valid_after(NOW + timedelta(days=1))
        )
        if dns:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
            )
        return builder.sign(self.ca_key, hashes.SHA256())  # type: ignore[arg-type]

    def refused(self, cert: object) -> str:
        return str(self.assertRaises(PeerNotAuthorized, tls.peer_identity, cert))

    def test_transport_or_certificate(self) -> None:
        """Both a transport (after the handshake) and a bare certificate work."""

        class Transport:
            def getPeerCertificate(self) -> Any:
                return master

        master = Certificate.loadPEM(self.master.public_bytes(serialization.Encoding.PEM))
        expected = PeerIdentity(REGISTRY, "Master", MASTER)
        self.assertEqual(tls.peer_identity(Transport()), expected)
        self.assertEqual(tls.peer_identity(master.original), expected)
        self.assertEqual(tls.peer_identity(self.master), expected)

    def test_no_certificate(self) -> None:
        class Transport:
            def getPeerCertificate(self) -> None:
                return None

        self.assertEqual(self.refused(Transport()), "the peer presented no certificate")

    def test_no_gridreg_name(self) -> None:
        self.assertIn("has no <name>.<role>.gridreg DNS name", self.refused(self.issue("Master")))
        self.assertIn(
            "has no <name>.<role>.gridreg DNS name",
            self.refused(self.issue("Master", "master.example.com", "a.b.c.gridreg")),
        )

    def test_unknown_role(self) -> None:
        self.assertEqual(
            self.refused(self.issue("Master", "master.root.gridreg")),
            "peer master.root.gridreg has the unknown role 'root'",
        )

    def test_several_identities(self) -> None:
        """One certificate cannot claim two roles."""
        self.assertIn(
            "several identities",
            self.refused(self.issue("node1", "node1.node.gridreg", "node1.admin.gridreg")),
        )

    def test_cn_must_match(self) -> None:
        """The CN is the authorized name, so it must encode to the DNS label clients checked."""
        self.assertIn(
            "its CN 'Replica1' does not match", self.refused(self.issue("Replica1", MASTER))
        )
        self.assertIn("no single subject CN", self.refused(self.issue(None, MASTER)))


def ascii_lower(name: str) -> str:
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in name)


LDH_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")


class DnsNameTests(SynchronousTestCase):
    """L{tls.dns_name} spells every name as a valid, distinct DNS name."""

    def test_plain_names(self) -> None:
        self.assertEqual(MASTER, "master.registry.gridreg")
        self.assertEqual(tls.dns_name(NODE, "node-1"), "node-1.node.gridreg")
        self.assertEqual(tls.dns_name(ADMIN, "admin"), "admin.admin.gridreg")

    def test_odd_names_get_a_hash(self) -> None:
        """Names DNS cannot spell are encoded deterministically and do not collide."""
        odd = [
            "Replica 1",
            "Replica_1",
            "replica.1",
            "Replica-1-",
            "-Replica-1",
            "Réplica1",
            "\u212aey",
            "x" * 64,
            "replica-1-0badcafe",
            "ab--cd",
            "___",
        ]
        plain = ["replica-1", "y" * 63, "key", "Key"]
        labels = [tls.dns_label(name) for name in odd + plain]
        self.assertEqual(labels, [tls.dns_label(name) for name in odd + plain])
        self.assertEqual(len(set(labels)), len(labels) - 1)  # key / Key share one, as DNS does
        for name, label in zip(odd, labels):
            self.assertRegex(label, LDH_LABEL)
            self.assertRegex(label, r"-[0-9a-f]{8}\Z", name)
        self.assertEqual(tls.dns_label("y" * 63), "y" * 63)
        self.assertTrue(tls.dns_label("Replica 1").startswith("replica-1-"))

    @settings(derandomize=True, database=None, max_examples=300, deadline=None)
    @given(st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=80))
    def test_valid_and_distinct(self, a: str, b: str) -> None:
        """Any two names differing other than in ASCII case get different, valid labels."""
        self.assertRegex(tls.dns_label(a), LDH_LABEL)
        if tls.dns_label(a) == tls.dns_label(b):
            self.assertEqual(ascii_lower(a), ascii_lower(b))

    def test_bad_arguments(self) -> None:
        self.assertRaises(ValueError, tls.dns_name, "root", "x")
        self.assertRaises(ValueError, tls.dns_name, NODE, "")


class PropertiesTests(SynchronousTestCase):
    """L{tls.tls_config_from_properties} reads IceSSL's properties and names the bad one."""

    def setUp(self) -> None:
        self.master = grid(self, replicas=["Master"], nodes=[], admins=[])[REGISTRY, "Master"]
        self.dir = os.path.abspath(os.path.dirname(self.master.ca_file))

    def properties(self, **values: str) -> Properties:
        props = Properties()
        for key, value in values.items():
            props.set("IceSSL." + key, value, "grid.cfg:7")
        return props

    def test_unset(self) -> None:
        self.assertIsNone(tls.tls_config_from_properties(Properties()))

    def test_default_dir(self) -> None:
        """Relative paths are under IceSSL.DefaultDir; absolute ones stay."""
        config = tls.tls_config_from_properties(
            self.properties(
                DefaultDir=self.dir,
                CAs="ca.pem",
                CertFile="registry-Master.pem",
                KeyFile=os.path.abspath(self.master.key_file),
            )
        )
        self.assertEqual(
            config,
            TLSConfig(
                os.path.join(self.dir, "ca.pem"),
                os.path.join(self.dir, "registry-Master.pem"),
                os.path.abspath(self.master.key_file),
            ),
        )

    def test_missing_file(self) -> None:
        e = self.assertRaises(
            PropertyError,
            tls.tls_config_from_properties,
            self.properties(
                DefaultDir=self.dir,
                CAs="ca.pem",
                CertFile="registry-Nobody.pem",
                KeyFile="registry-Master.key",
            ),
        )
        self.assertEqual(
            str(e),
            "grid.cfg:7: invalid value for IceSSL.CertFile: "
            f"'registry-Nobody.pem': {self.dir}/registry-Nobody.pem: "
            "no such file",
        )

    def test_partial(self) -> None:
        """Setting only some of the three is a mistake, not 'no TLS'."""
        e = self.assertRaises(
            PropertyError, tls.tls_config_from_properties, self.properties(CAs=self.master.ca_file)
        )
        self.assertIn("IceSSL.CertFile is not set", str(e))

    def test_wrong_key(self) -> None:
        e = self.assertRaises(
            PropertyError,
            tls.tls_config_from_properties,
            self.properties(
                CAs=self.master.ca_file,
                CertFile=self.master.cert_file,
                KeyFile=os.path.join(self.dir, "ca.key"),
            ),
        )
        self.assertIn("invalid value for IceSSL.KeyFile", str(e))
        self.assertIn("not the private key of the certificate", str(e))

    def test_not_pem(self) -> None:
        e = self.assertRaises(
            PropertyError,
            tls.tls_config_from_properties,
            self.properties(
                CAs=self.master.key_file,
                CertFile=self.master.cert_file,
                KeyFile=self.master.key_file,
            ),
        )
        self.assertIn("invalid value for IceSSL.CAs", str(e))
        self.assertIn("not a PEM certificate file", str(e))


class InsecureTests(SynchronousTestCase):
    """Plain TCP internally needs an explicit, loudly logged opt-in."""

    def allowed(self, value: str | None) -> tuple[bool, list[str]]:
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        props = Properties()
        if value is not None:
            props.set(tls.INSECURE_PROPERTY, value)
        allowed = tls.insecure_allowed(props)
        return allowed, [e["log_format"] for e in events if e.get("log_namespace") == "gridreg.tls"]

    def test_default_is_tls(self) -> None:
        self.assertEqual(self.allowed(None), (False, []))
        self.assertEqual(self.allowed("0"), (False, []))

    def test_opt_in_warns(self) -> None:
        self.assertEqual(tls.INSECURE_PROPERTY, "GridReg.Internal.Insecure")
        self.assertEqual(self.allowed("1"), (True, [tls.INSECURE_WARNING]))

    def test_bad_value(self) -> None:
        e = self.assertRaises(PropertyError, self.allowed, "yes")
        self.assertIn("GridReg.Internal.Insecure: 'yes': not an integer", str(e))


class CertsCommandTests(SynchronousTestCase):
    """L{certs.make_demo_certs} and C{gridreg-certs}."""

    def run_main(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = certs.main(list(argv), out, err)
        return status, out.getvalue(), err.getvalue()

    def test_files_and_modes(self) -> None:
        """Keys are private to their owner; certificates have gridreg's names and usages."""
        out = self.mktemp()
        status, stdout, _ = self.run_main(
            "--out",
            out,
            "--instance",
            "DemoIceGrid",
            "--replica",
            "Master",
            "--node",
            "node1",
            "--admin",
            "admin",
            "--days",
            "30",
        )
        self.assertEqual(status, 0)
        self.assertEqual(
            sorted(os.listdir(out)),
            [
                "admin-admin.key",
                "admin-admin.pem",
                "ca.key",
                "ca.pem",
                "node-node1.key",
                "node-node1.pem",
                "registry-Master.key",
                "registry-Master.pem",
            ],
        )
        self.assertEqual(len(stdout.splitlines()), 8)
        for name in os.listdir(out):
            mode = stat.S_IMODE(os.stat(os.path.join(out, name)).st_mode)
            self.assertEqual(mode, 0o600 if name.endswith(".key") else 0o644, name)
        with open(os.path.join(out, "ca.pem"), "rb") as f:
            ca = x509.load_pem_x509_certificate(f.read())
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        self.assertEqual((constraints.ca, constraints.path_length), (True, 0))
        self.assertTrue(ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign)
        with open(os.path.join(out, "node-node1.pem"), "rb") as f:
            node = x509.load_pem_x509_certificate(f.read())
        node.verify_directly_issued_by(ca)
        self.assertIsInstance(node.public_key(), ec.EllipticCurvePublicKey)
        self.assertEqual(tls.peer_identity(node), PeerIdentity(NODE, "node1", "node1.node.gridreg"))
        self.assertEqual(
            node.not_valid_after_utc - node.not_valid_before_utc,
            timedelta(days=30) + certs.BACKDATE,
        )
        usages = node.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual({u._name for u in usages}, {"serverAuth", "clientAuth"})

    def test_idempotent(self) -> None:
        """A second run reuses the CA and existing peers, so a new node joins the same grid."""
        out = self.mktemp()
        first = certs.make_demo_certs(out, ["Master"], now=NOW)
        files = {n: read(os.path.join(out, n)) for n in os.listdir(out)}
        second = certs.make_demo_certs(out, ["Master"], ["node2"], now=NOW)
        for name, data in files.items():
            self.assertEqual(read(os.path.join(out, name)), data, name)
        self.assertEqual(second[REGISTRY, "Master"], first[REGISTRY, "Master"])
        node = second[NODE, "node2"]
        self.assertEqual(node.ca_file, first[REGISTRY, "Master"].ca_file)
        _, server = talk(
            tls.server_tls_options(first[REGISTRY, "Master"]), tls.client_tls_options(node, MASTER)
        )
        self.assertEqual(server.identity, PeerIdentity(NODE, "node2", "node2.node.gridreg"))

    def test_force_reissues_peers_only(self) -> None:
        out = self.mktemp()
        config = certs.make_demo_certs(out, ["Master"])[REGISTRY, "Master"]
        ca, leaf = read(config.ca_file), read(config.cert_file)
        status, stdout, _ = self.run_main("--out", out, "--replica", "Master", "--force")
        self.assertEqual(status, 0)
        self.assertEqual(read(config.ca_file), ca)
        self.assertNotEqual(read(config.cert_file), leaf)
        self.assertIn(f"created {config.cert_file}", stdout)

    def test_foreign_peer_file(self) -> None:
        """A kept certificate must come from the directory's CA."""
        out, other = self.mktemp(), self.mktemp()
        certs.make_demo_certs(out, ["Master"])
        foreign = certs.make_demo_certs(other, ["Master"])[REGISTRY, "Master"]
        os.replace(foreign.cert_file, os.path.join(out, "registry-Master.pem"))
        status, _, stderr = self.run_main("--out", out, "--replica", "Master")
        self.assertEqual(status, 1)
        self.assertIn("registry-Master.pem is not signed by", stderr)

    def test_odd_names_get_safe_file_names(self) -> None:
        out = self.mktemp()
        config = certs.make_demo_certs(out, ["../Replica 1"])[REGISTRY, "../Replica 1"]
        self.assertEqual(os.path.dirname(config.cert_file), out)
        self.assertEqual(
            os.path.basename(config.cert_file), f"registry-{tls.dns_label('../Replica 1')}.pem"
        )

    def test_bad_arguments(self) -> None:
        """Bad arguments exit with status 2 and say what is wrong."""
        out = self.mktemp()
        for argv, message in [
            ((), "the following arguments are required: --out"),
            (("--out", out, "--days", "0"), "--days must be at least 1"),
            (("--out", out, "--days", "x"), "invalid int value"),
            (
                ("--out", out, "--replica", "Master", "--replica", "master"),
                "would share the DNS name master.registry.gridreg",
            ),
            (("--out", out, "--node", "n" * 65), "must have 1 to 64 characters"),
        ]:
            status, stdout, stderr = self.run_main(*argv)
            self.assertEqual((status, stdout), (2, ""), argv)
            self.assertIn(message, stderr)
        self.assertFalse(os.path.exists(out))


class RealSocketTests(TestCase):
    """The endpoint helpers over real loopback sockets."""

    timeout = 10

    def test_endpoints(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self.exchange())

    async def exchange(self) -> None:
        from twisted.internet import reactor

        config = grid(self)
        server_done: Deferred[Peer] = Deferred()

        class Server(Peer):
            def dataReceived(self, data: bytes) -> None:
                super().dataReceived(data)
                server_done.callback(self)

        server = Server(b"from server", require=REGISTRY)
        endpoint = tls.wrap_server_endpoint(
            reactor, "tcp:0:interface=127.0.0.1", config[REGISTRY, "Master"]
        )
        port: Any = await endpoint.listen(Factory.forProtocol(lambda: server))
        self.addCleanup(port.stopListening)

        client_done: Deferred[None] = Deferred()
        client = Peer(b"from client")
        client.connectionLost = lambda reason: client_done.callback(None)  # type: ignore
        dial = tls.wrap_client_endpoint(
            reactor, "127.0.0.1", port.getHost().port, config[REGISTRY, "Replica1"], MASTER
        )
        await dial.connect(Factory.forProtocol(lambda: client))

        await server_done
        self.assertEqual(
            server.identity, PeerIdentity(REGISTRY, "Replica1", "replica1.registry.gridreg")
        )
        self.assertEqual(server.received, b"from client")
        self.assertEqual(client.identity, PeerIdentity(REGISTRY, "Master", MASTER))
        client.tls.loseConnection()
        await client_done

    def test_ice_endpoint(self) -> Deferred[None]:
        """An Ice endpoint from IceGrid.Registry.Internal.Endpoints listens with TLS too."""
        from twisted.internet import reactor

        config = grid(self, nodes=[], admins=[])
        endpoint = tls.wrap_server_endpoint(
            reactor, TcpEndpoint("127.0.0.1", 0), config[REGISTRY, "Master"]
        )

        async def check() -> None:
            port: Any = await endpoint.listen(Factory.forProtocol(Protocol))
            self.assertEqual(port.getHost().host, "127.0.0.1")
            await port.stopListening()

        return Deferred.fromCoroutine(check())
