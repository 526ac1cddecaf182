"""
The internal protocol's version, in a module of its own so that gridadmin's
Twisted-free client (L{gridreg.admin.wire}) reads the same number as every
replica and node. A peer on another version is refused at C{Hello}.

History: 2: one chunked channel for snapshots, large changes and uploads;
epochs. 3: node sessions (L{gridreg.protocol.node_commands}). 4: snapshots
streamed in the binary format (C{BeginSnapshot}; L{gridreg.store.snapshot_codec}).
"""

PROTOCOL_VERSION = 4
