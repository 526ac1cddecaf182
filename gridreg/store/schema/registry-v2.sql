-- The gridreg registry database, schema version 2.
-- Loaded by gridreg/store/sqlite.py inside one transaction when the file is new.
-- Version 1 had the same tables with the records always current; a version 1
-- file is read as version 2 (its log's changes after meta's serial are in its
-- records already, and applying them again changes nothing), and its version
-- number is raised on open so that code which reads only the records refuses it.

-- Exactly one row: the schema version of this file.
CREATE TABLE version (
    version INTEGER NOT NULL
);
INSERT INTO version (version) VALUES (2);

-- Exactly one row: the lineage UUID and the serial the records table is at.
-- The changes log holds every change after it (a commit writes only its change
-- to the log; the records it changed are written to the records table once
-- every PRUNE_EVERY serials, in the commit that prunes the log, or sooner when
-- many are pending, see gridreg/store/sqlite.py): the last
-- stored change is the log's last, unless the log holds none after it.
CREATE TABLE meta (
    database_id TEXT NOT NULL,
    serial INTEGER NOT NULL
);

-- The state at meta's serial: records[kind][key] = value, a JSON object; the
-- current state is that with the log's changes after meta's serial applied.
CREATE TABLE records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;

-- The retained log of recent changes, as shipped to slaves (JSON bodies).
CREATE TABLE changes (
    serial INTEGER PRIMARY KEY,
    body TEXT NOT NULL
);
