# -*- test-case-name: tests.test_tls_stdlib -*-
"""
L{gridreg.tls.ssl_client_context}: the standard library context
C{gridadmin} dials replicas with, which must be as strict as the
pyOpenSSL client options (L{gridreg.tls.client_tls_options}).
"""

from __future__ import annotations

import ssl

from twisted.trial.unittest import SynchronousTestCase

from gridreg.certs import make_demo_certs
from gridreg.config.properties import Properties
from gridreg.tls import ADMIN, ssl_client_context, tls_config_from_properties


class SSLClientContextTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.certs = make_demo_certs(self.mktemp(), ["Master"], admins=["admin"])
        self.config = self.certs[ADMIN, "admin"]

    def properties(self, key_file: str) -> Properties:
        properties = Properties()
        properties.set("IceSSL.CAs", self.config.ca_file)
        properties.set("IceSSL.CertFile", self.config.cert_file)
        properties.set("IceSSL.KeyFile", key_file)
        return properties

    def assertStrict(self, context: ssl.SSLContext) -> None:
        self.assertEqual(context.verify_mode, ssl.CERT_REQUIRED)
        self.assertTrue(context.check_hostname)
        self.assertEqual(context.minimum_version, ssl.TLSVersion.TLSv1_2)
        with open(self.config.ca_file) as f:
            grid_ca = ssl.PEM_cert_to_DER_cert(f.read())
        self.assertEqual(context.get_ca_certs(binary_form=True), [grid_ca])

    def test_the_checked_context_and_a_fresh_one(self) -> None:
        """
        Both the context the configuration check made and one made later
        trust the grid CA alone, require the server's certificate and name,
        and refuse anything older than TLS 1.2.
        """
        config = tls_config_from_properties(self.properties(self.config.key_file))
        assert config is not None
        self.assertStrict(ssl_client_context(config))
        self.assertStrict(ssl_client_context(config))

    def test_key_of_another_certificate(self) -> None:
        """Files that do not belong together are an error, not a context."""
        other = self.certs["registry", "Master"].key_file
        config = tls_config_from_properties(self.properties(self.config.key_file))
        assert config is not None
        mismatched = type(config)(config.ca_file, config.cert_file, other)
        self.assertRaises(ssl.SSLError, ssl_client_context, mismatched)
