# -*- test-case-name: tests.test_replication -*-
"""
What a replica's replication is doing, and why it is not live: shown by
C{gridadmin registry list} and C{registry describe}, so an operator sees a
slave that fell out of sync (and the reason) instead of a stale copy that
looks healthy.
"""

from __future__ import annotations

import attrs

#: the master, or a slave that holds every change and receives new ones
LIVE = "live"
#: registered with the master and catching up (missed changes or a snapshot)
SYNCING = "syncing"
#: looking for the master (a slave), or no session (as the master sees a slave)
DISCONNECTED = "disconnected"
#: the last sync or push failed; the slave reconnects and retries by itself
FAILED = "failed"
#: the master refused the slave's session; an operator must act
REFUSED = "refused"


@attrs.define
class ReplicaStatus:
    """
    @ivar state: one of L{LIVE}, L{SYNCING}, L{DISCONNECTED}, L{FAILED}, L{REFUSED}.
    @ivar reason: why, in words, when the state is not L{LIVE}.
    @ivar since: when the state began (the clock's seconds).
    """

    state: str
    reason: str = ""
    since: float = 0.0
