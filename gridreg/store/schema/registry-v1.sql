-- The gridreg registry database, schema version 1.
-- Loaded by gridreg/store/sqlite.py inside one transaction when the file is new.

-- Exactly one row: the schema version of this file.
CREATE TABLE version (
    version INTEGER NOT NULL
);
INSERT INTO version (version) VALUES (1);

-- Exactly one row: the lineage UUID and the serial of the last stored change,
-- unless the changes log holds a later one (a commit writes only its change).
CREATE TABLE meta (
    database_id TEXT NOT NULL,
    serial INTEGER NOT NULL
);

-- The current state: records[kind][key] = value, value being a JSON object.
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
