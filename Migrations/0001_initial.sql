-- connlog schema, version 1. Documented in docs/SCHEMA.md.
-- Times are INTEGER milliseconds since the Unix epoch (UTC); the *_v views show them as ISO-8601.
-- Codes (states, end reasons, directions) are small integers; the lookup tables name them.

CREATE TABLE tcp_states (
    code INTEGER PRIMARY KEY,          -- the kernel's st column (include/net/tcp_states.h)
    name TEXT NOT NULL UNIQUE
);
INSERT INTO tcp_states (code, name) VALUES
    (1, 'ESTABLISHED'), (2, 'SYN_SENT'), (3, 'SYN_RECV'), (4, 'FIN_WAIT1'),
    (5, 'FIN_WAIT2'), (6, 'TIME_WAIT'), (7, 'CLOSE'), (8, 'CLOSE_WAIT'),
    (9, 'LAST_ACK'), (10, 'LISTEN'), (11, 'CLOSING'), (12, 'NEW_SYN_RECV');

CREATE TABLE end_reasons (
    code INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    meaning TEXT NOT NULL
);
INSERT INTO end_reasons (code, name, meaning) VALUES
    (1, 'active_close', 'seen in FIN_WAIT1, FIN_WAIT2, CLOSING or TIME_WAIT: this side closed first, gracefully'),
    (2, 'passive_close', 'seen in LAST_ACK, or last seen in CLOSE_WAIT in a window with no reset: the peer closed first'),
    (3, 'reset', 'left ESTABLISHED or CLOSE_WAIT straight to gone, and Tcp EstabResets confirms an abort'),
    (4, 'vanished', 'left ESTABLISHED straight to gone while EstabResets did not move: a graceful close too quick to sample'),
    (5, 'ambiguous', 'left ESTABLISHED or CLOSE_WAIT straight to gone where EstabResets cannot tell which ones were resets, or last seen in CLOSE'),
    (6, 'failed_connect', 'left SYN_SENT without ever being ESTABLISHED: an outbound connect refused or timed out'),
    (7, 'unobserved', 'closed while nothing was recording: inside a gap, or across a reboot'),
    (8, 'listen_closed', 'a listening socket went away'),
    (9, 'failed_handshake', 'left SYN_RECV without ever being ESTABLISHED: an inbound handshake that never completed');

CREATE TABLE directions (
    code INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
INSERT INTO directions (code, name) VALUES (0, 'listen'), (1, 'inbound'), (2, 'outbound');

CREATE TABLE event_kinds (
    code INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
INSERT INTO event_kinds (code, name) VALUES (1, 'open'), (2, 'state'), (3, 'close');

-- One row per network namespace ever sampled; inode is the number in `net:[4026531840]`.
CREATE TABLE namespaces (
    id INTEGER PRIMARY KEY,
    inode INTEGER NOT NULL UNIQUE
);

-- One row per kernel boot seen (/proc/sys/kernel/random/boot_id).
CREATE TABLE boots (
    id INTEGER PRIMARY KEY,
    boot_id TEXT NOT NULL UNIQUE
);

-- Every address ever seen, once. bytes is 4 (IPv4) or 16 (IPv6) bytes in network order.
CREATE TABLE addresses (
    id INTEGER PRIMARY KEY,
    family INTEGER NOT NULL,           -- 4 or 6
    bytes BLOB NOT NULL UNIQUE,
    text TEXT NOT NULL                 -- 127.0.0.1, ::1, ::ffff:10.0.0.1
);

CREATE TABLE programs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE          -- /proc/<pid>/comm
);

-- An observation window: a stretch of time during which samples came at the expected spacing.
-- Between two windows of one namespace nobody was looking (a gap).
CREATE TABLE windows (
    id INTEGER PRIMARY KEY,
    namespace_id INTEGER NOT NULL REFERENCES namespaces(id),
    boot_id INTEGER NOT NULL REFERENCES boots(id),
    source TEXT NOT NULL,              -- 'proc'
    start_reason TEXT NOT NULL,        -- 'first', 'gap', 'reboot', or 'interval' (spacing changed, no gap)
    started_at INTEGER NOT NULL,       -- first sample
    ended_at INTEGER NOT NULL,         -- last sample so far
    interval_ms INTEGER NOT NULL,      -- expected spacing of samples
    samples INTEGER NOT NULL
);
CREATE INDEX windows_by_namespace ON windows(namespace_id, started_at);

-- One row per sample. resets/reset_candidates are R and V of the reset reconciliation.
CREATE TABLE samples (
    id INTEGER PRIMARY KEY,
    window_id INTEGER NOT NULL REFERENCES windows(id),
    at INTEGER NOT NULL,               -- when this sample was read
    after INTEGER,                     -- the namespace's previous sample; NULL for its first
    sockets INTEGER NOT NULL,          -- distinct sockets seen
    malformed INTEGER NOT NULL,        -- table lines skipped because they did not parse
    resets INTEGER,                    -- R: Tcp EstabResets delta since `after`; NULL when unknown
    reset_candidates INTEGER NOT NULL, -- V: connections that left ESTABLISHED/CLOSE_WAIT straight to gone
    read_us INTEGER NOT NULL,          -- microseconds spent reading the tables
    attributed INTEGER NOT NULL        -- 1 when sockets were attributed to processes (not --no-processes)
);
CREATE INDEX samples_by_time ON samples(at);
CREATE INDEX samples_by_window ON samples(window_id);

CREATE TABLE counter_names (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE          -- 'Tcp.EstabResets', 'TcpExt.ListenOverflows', ...
);

-- Kernel TCP counters, stored sparsely: every counter at a window's first sample,
-- afterwards only when its value changed. A counter's value at a sample is its latest row
-- at or before that sample within the same window.
CREATE TABLE counters (
    counter_id INTEGER NOT NULL REFERENCES counter_names(id),
    sample_id INTEGER NOT NULL REFERENCES samples(id),
    value INTEGER NOT NULL,
    PRIMARY KEY (counter_id, sample_id)
) WITHOUT ROWID;

-- One row per connection (a socket's lifetime under one identity). The rows with
-- closed_at IS NULL are the last sample's socket set, which the next sample diffs against.
CREATE TABLE connections (
    id INTEGER PRIMARY KEY,
    namespace_id INTEGER NOT NULL REFERENCES namespaces(id),
    family INTEGER NOT NULL,           -- 4 or 6
    local_address INTEGER NOT NULL REFERENCES addresses(id),
    local_port INTEGER NOT NULL,
    remote_address INTEGER NOT NULL REFERENCES addresses(id),
    remote_port INTEGER NOT NULL,      -- 0 for listeners
    direction INTEGER NOT NULL REFERENCES directions(code),
    preexisting INTEGER NOT NULL,      -- 1: already there when its window began; start unknown
    first_seen INTEGER NOT NULL,       -- the sample that first saw it
    last_seen INTEGER,                 -- the last sample that saw it; NULL while open
    closed_at INTEGER,                 -- the sample that saw it gone; NULL while open
    state INTEGER NOT NULL,            -- last state seen
    states_seen INTEGER NOT NULL,      -- bit (1 << code) set for every state seen
    end_reason INTEGER REFERENCES end_reasons(code), -- NULL while open
    time_wait_at INTEGER,              -- entry into TIME_WAIT, computed from tm->when
    max_retransmits INTEGER NOT NULL,  -- largest retrnsmt seen
    max_tx_queue INTEGER NOT NULL,
    max_rx_queue INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    inode INTEGER NOT NULL,            -- last non-zero inode seen (0 if never)
    pid INTEGER,                       -- owning process, where it could be read
    program_id INTEGER REFERENCES programs(id)
);
CREATE INDEX connections_open ON connections(namespace_id) WHERE closed_at IS NULL;
CREATE INDEX connections_by_remote ON connections(remote_address, remote_port);
CREATE INDEX connections_by_first_seen ON connections(first_seen);

-- What happened, in order: one row per open, state change and close.
-- The real moment lies between the sample's `after` and `at`.
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    sample_id INTEGER NOT NULL REFERENCES samples(id),
    connection_id INTEGER NOT NULL REFERENCES connections(id),
    kind INTEGER NOT NULL REFERENCES event_kinds(code),
    from_state INTEGER,                -- NULL for open
    to_state INTEGER                   -- NULL for close
);
CREATE INDEX events_by_sample ON events(sample_id);
CREATE INDEX events_by_connection ON events(connection_id);

-- Each collector run that recorded into this database.
CREATE TABLE collectors (
    id INTEGER PRIMARY KEY,
    pid INTEGER NOT NULL,
    hostname TEXT NOT NULL,
    mode TEXT NOT NULL,                -- 'loop' (collect --once runs leave no row)
    interval_ms INTEGER NOT NULL,
    proc_root TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    stopped_at INTEGER,                -- NULL while running, or if it was killed
    version TEXT NOT NULL
);

-- Readable views: ISO-8601 UTC times, state and reason names, endpoints as addr:port.

CREATE VIEW connections_v AS
SELECT c.id,
       n.inode AS namespace,
       c.family,
       CASE WHEN c.family = 6 THEN '[' || la.text || ']' ELSE la.text END || ':' || c.local_port AS local,
       CASE WHEN c.family = 6 THEN '[' || ra.text || ']' ELSE ra.text END || ':' || c.remote_port AS remote,
       la.text AS local_address, c.local_port,
       ra.text AS remote_address, c.remote_port,
       d.name AS direction,
       c.preexisting,
       strftime('%Y-%m-%dT%H:%M:%fZ', c.first_seen / 1000.0, 'unixepoch') AS first_seen,
       strftime('%Y-%m-%dT%H:%M:%fZ', c.last_seen / 1000.0, 'unixepoch') AS last_seen,
       strftime('%Y-%m-%dT%H:%M:%fZ', c.closed_at / 1000.0, 'unixepoch') AS closed_at,
       COALESCE(s.name, 'UNKNOWN') AS state,
       r.name AS end_reason,
       strftime('%Y-%m-%dT%H:%M:%fZ', c.time_wait_at / 1000.0, 'unixepoch') AS time_wait_at,
       c.max_retransmits, c.max_tx_queue, c.max_rx_queue,
       c.uid, c.inode, c.pid,
       p.name AS program
FROM connections c
JOIN namespaces n ON n.id = c.namespace_id
JOIN addresses la ON la.id = c.local_address
JOIN addresses ra ON ra.id = c.remote_address
JOIN directions d ON d.code = c.direction
LEFT JOIN tcp_states s ON s.code = c.state
LEFT JOIN end_reasons r ON r.code = c.end_reason
LEFT JOIN programs p ON p.id = c.program_id;

CREATE VIEW events_v AS
SELECT e.id,
       strftime('%Y-%m-%dT%H:%M:%fZ', sa.at / 1000.0, 'unixepoch') AS at,
       strftime('%Y-%m-%dT%H:%M:%fZ', sa.after / 1000.0, 'unixepoch') AS after,
       k.name AS event,
       CASE WHEN e.from_state IS NULL THEN NULL ELSE COALESCE(fs.name, 'UNKNOWN') END AS from_state,
       CASE WHEN e.to_state IS NULL THEN NULL ELSE COALESCE(ts.name, 'UNKNOWN') END AS to_state,
       e.connection_id,
       CASE WHEN c.family = 6 THEN '[' || la.text || ']' ELSE la.text END || ':' || c.local_port AS local,
       CASE WHEN c.family = 6 THEN '[' || ra.text || ']' ELSE ra.text END || ':' || c.remote_port AS remote,
       c.pid,
       p.name AS program
FROM events e
JOIN samples sa ON sa.id = e.sample_id
JOIN event_kinds k ON k.code = e.kind
JOIN connections c ON c.id = e.connection_id
JOIN addresses la ON la.id = c.local_address
JOIN addresses ra ON ra.id = c.remote_address
LEFT JOIN tcp_states fs ON fs.code = e.from_state
LEFT JOIN tcp_states ts ON ts.code = e.to_state
LEFT JOIN programs p ON p.id = c.program_id;

CREATE VIEW samples_v AS
SELECT sa.id,
       n.inode AS namespace,
       sa.window_id,
       strftime('%Y-%m-%dT%H:%M:%fZ', sa.at / 1000.0, 'unixepoch') AS at,
       strftime('%Y-%m-%dT%H:%M:%fZ', sa.after / 1000.0, 'unixepoch') AS after,
       sa.sockets, sa.malformed, sa.resets, sa.reset_candidates, sa.read_us, sa.attributed
FROM samples sa
JOIN windows w ON w.id = sa.window_id
JOIN namespaces n ON n.id = w.namespace_id;

CREATE VIEW windows_v AS
SELECT w.id,
       n.inode AS namespace,
       b.boot_id,
       w.source,
       w.start_reason,
       strftime('%Y-%m-%dT%H:%M:%fZ', w.started_at / 1000.0, 'unixepoch') AS started_at,
       strftime('%Y-%m-%dT%H:%M:%fZ', w.ended_at / 1000.0, 'unixepoch') AS ended_at,
       w.interval_ms / 1000.0 AS interval_s,
       w.samples
FROM windows w
JOIN namespaces n ON n.id = w.namespace_id
JOIN boots b ON b.id = w.boot_id;

CREATE VIEW counters_v AS
SELECT strftime('%Y-%m-%dT%H:%M:%fZ', sa.at / 1000.0, 'unixepoch') AS at,
       sa.id AS sample_id,
       cn.name,
       c.value
FROM counters c
JOIN counter_names cn ON cn.id = c.counter_id
JOIN samples sa ON sa.id = c.sample_id;
