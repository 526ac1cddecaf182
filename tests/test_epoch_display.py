# -*- test-case-name: tests.test_epoch_display -*-
"""
How an epoch reads in logs and in C{registry describe}, and the size of its
random token (L{gridreg.registry.epochs}).
"""

from __future__ import annotations

import string

from twisted.trial.unittest import SynchronousTestCase

from gridreg.registry.epochs import NO_EPOCH, Epoch, new_epoch


class EpochDisplayTests(SynchronousTestCase):
    def test_an_epoch_shows_its_number_and_the_start_of_its_token(self) -> None:
        self.assertEqual(str(Epoch(3, "0123456789abcdef")), "3 (01234567)")
        self.assertEqual(str(Epoch(3, "ab")), "3 (ab)")

    def test_an_epoch_without_token_shows_its_number(self) -> None:
        self.assertEqual(str(NO_EPOCH), "0")
        self.assertEqual(str(Epoch(7)), "7")

    def test_a_new_token_is_sixteen_hex_digits(self) -> None:
        token = new_epoch(NO_EPOCH).token
        self.assertEqual(len(token), 16)
        self.assertTrue(set(token) <= set(string.hexdigits.lower()))
