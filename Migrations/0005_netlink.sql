-- connlog schema version 5: the netlink source. Sockets read over sock_diag carry the kernel's
-- socket cookie and their traffic (struct tcp_info), and the kernel's destroy notifications tell
-- of every socket it frees: when, with its final traffic, even one that opened and closed
-- between two samples. windows.source is now 'proc' or 'netlink'; a window also starts (with
-- start_reason 'source', not a gap) when the source changes.

-- What the netlink source adds to a connection; no row for one read from the proc tables alone.
CREATE TABLE connection_details (
    connection_id INTEGER PRIMARY KEY REFERENCES connections(id),
    cookie INTEGER NOT NULL,            -- the kernel's socket cookie (a TIME_WAIT socket keeps its predecessor's)
    between_samples INTEGER NOT NULL,   -- 1: opened and closed between two samples, known from its destroy
                                        -- notification alone; its states are inferred, not seen
    destroyed_at INTEGER,               -- when the kernel's destroy notification for it arrived (ms); NULL while none was
                                        -- heard, and for a connection that went on in TIME_WAIT
    bytes_acked INTEGER,                -- tcpi_bytes_acked: sequence space the peer acknowledged (SYN and FIN included)
    bytes_received INTEGER,             -- tcpi_bytes_received
    segments_out INTEGER,               -- tcpi_segs_out
    segments_in INTEGER,                -- tcpi_segs_in
    retransmitted_segments INTEGER,     -- tcpi_total_retrans
    rtt_us INTEGER,                     -- tcpi_rtt: smoothed round-trip time, microseconds
    cwnd INTEGER                        -- tcpi_snd_cwnd: congestion window, segments
);
-- The traffic columns hold the last sighting's figures (an open connection's are written at least
-- once a minute), and the final ones once the kernel freed the socket. NULL: no tcp_info was read
-- (TIME_WAIT, request and listening sockets have none).

-- `connlog query retransmits` finds connections that retransmitted without reading the others.
CREATE INDEX connection_details_retransmitting ON connection_details(retransmitted_segments) WHERE retransmitted_segments > 0;

-- Per peer, the traffic of its connections read over netlink, so that `peers` over the whole
-- history shows bytes without reading every connection. `measured`: how many of its connections
-- carry traffic (bytes_acked not NULL); the bytes are summed over those.
ALTER TABLE peer_totals ADD COLUMN measured INTEGER NOT NULL DEFAULT 0;
ALTER TABLE peer_totals ADD COLUMN bytes_acked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE peer_totals ADD COLUMN bytes_received INTEGER NOT NULL DEFAULT 0;

-- Each write of a connection's traffic moves its peer's totals by the difference. A connection new
-- in this sample may have no totals row yet (the sample's grouped statement adds its opens at the
-- end of the transaction, Store+Totals.swift): the row is made here, counting no connection yet.
CREATE TRIGGER peer_totals_traffic_add AFTER INSERT ON connection_details
WHEN NEW.bytes_acked IS NOT NULL OR NEW.bytes_received IS NOT NULL BEGIN
    INSERT INTO peer_totals (remote_address, direction, service_port, connections, still_open, opens, closes, resets,
                             failed_connects, ambiguous, measured, bytes_acked, bytes_received)
    SELECT remote_address, direction, service_port, 0, 0, 0, 0, 0, 0, 0,
           NEW.bytes_acked IS NOT NULL, COALESCE(NEW.bytes_acked, 0), COALESCE(NEW.bytes_received, 0)
    FROM connections WHERE id = NEW.connection_id
    ON CONFLICT DO UPDATE SET measured = measured + excluded.measured, bytes_acked = bytes_acked + excluded.bytes_acked,
                              bytes_received = bytes_received + excluded.bytes_received;
END;
CREATE TRIGGER peer_totals_traffic_change AFTER UPDATE OF bytes_acked, bytes_received ON connection_details
WHEN NEW.bytes_acked IS NOT OLD.bytes_acked OR NEW.bytes_received IS NOT OLD.bytes_received BEGIN
    INSERT INTO peer_totals (remote_address, direction, service_port, connections, still_open, opens, closes, resets,
                             failed_connects, ambiguous, measured, bytes_acked, bytes_received)
    SELECT remote_address, direction, service_port, 0, 0, 0, 0, 0, 0, 0,
           (NEW.bytes_acked IS NOT NULL) - (OLD.bytes_acked IS NOT NULL),
           COALESCE(NEW.bytes_acked, 0) - COALESCE(OLD.bytes_acked, 0),
           COALESCE(NEW.bytes_received, 0) - COALESCE(OLD.bytes_received, 0)
    FROM connections WHERE id = NEW.connection_id
    ON CONFLICT DO UPDATE SET measured = measured + excluded.measured, bytes_acked = bytes_acked + excluded.bytes_acked,
                              bytes_received = bytes_received + excluded.bytes_received;
END;

-- A connection's details go with it, and its traffic with them from its peer's totals. (Run before
-- or after peer_totals_remove, the totals come out the same: a row gone with its last connection
-- needs nothing taken out.)
CREATE TRIGGER connection_details_remove AFTER DELETE ON connections BEGIN
    UPDATE peer_totals SET
        measured = peer_totals.measured - (x.bytes_acked IS NOT NULL),
        bytes_acked = peer_totals.bytes_acked - COALESCE(x.bytes_acked, 0),
        bytes_received = peer_totals.bytes_received - COALESCE(x.bytes_received, 0)
    FROM (SELECT bytes_acked, bytes_received FROM connection_details WHERE connection_id = OLD.id) AS x
    WHERE remote_address = OLD.remote_address AND direction = OLD.direction AND service_port = OLD.service_port;
    DELETE FROM connection_details WHERE connection_id = OLD.id;
END;

-- Destroy notifications taken into the sample, and how often the kernel dropped some since the
-- previous sample because connlog's receive buffer was full (ENOBUFS): closes in such a sample
-- may lack their date, and connections that lived between its samples may be missing. Both NULL
-- when nothing listened (the proc source, or collect --once).
ALTER TABLE samples ADD COLUMN destroys INTEGER;
ALTER TABLE samples ADD COLUMN destroys_lost INTEGER;

-- Sockets this side aborted (SO_LINGER 0) or whose connect failed, told of by a destroy notice that
-- matched no connection a sample saw: the kernel clears their ports and local address before it
-- tells, so they are no connection rows. Per sample and peer, how many.
CREATE TABLE unnamed_ends (
    sample_id INTEGER NOT NULL REFERENCES samples(id),
    remote_address INTEGER NOT NULL REFERENCES addresses(id),
    ends INTEGER NOT NULL,
    PRIMARY KEY (sample_id, remote_address)
) WITHOUT ROWID;
CREATE TRIGGER unnamed_ends_remove AFTER DELETE ON samples BEGIN
    DELETE FROM unnamed_ends WHERE sample_id = OLD.id;
END;

-- A connection known from its destroy notification alone has its open and close in one sample: no
-- stay lies between them. Stays now also require the sample that ended one to differ from the
-- sample that began it (no such pair existed before this version, so the figures do not change).
DROP TRIGGER stay_lengths_remove;
CREATE TRIGGER stay_lengths_remove AFTER DELETE ON events BEGIN
    UPDATE stay_lengths SET stays = stays - 1 WHERE (state, milliseconds) = (
        SELECT p.to_state, o.at - b.at
        FROM samples o, events p, samples b
        WHERE o.id = OLD.sample_id
          AND p.id = (SELECT max(id) FROM events WHERE connection_id = OLD.connection_id AND id < OLD.id)
          AND p.kind IN (1, 2) AND b.id = p.sample_id AND b.run = o.run AND b.id <> b.run AND b.id <> o.id);
    UPDATE stay_lengths SET stays = stays - 1 WHERE (state, milliseconds) = (
        SELECT OLD.to_state, a.at - o.at
        FROM samples o, events x, samples a
        WHERE OLD.kind IN (1, 2) AND o.id = OLD.sample_id AND o.id <> o.run
          AND x.id = (SELECT min(id) FROM events WHERE connection_id = OLD.connection_id AND id > OLD.id)
          AND a.id = x.sample_id AND a.run = o.run AND a.id <> o.id);
    INSERT INTO stay_lengths (state, milliseconds, stays)
    SELECT p.to_state, a.at - b.at, 1
    FROM events p, samples b, events x, samples a
    WHERE p.id = (SELECT max(id) FROM events WHERE connection_id = OLD.connection_id AND id < OLD.id)
      AND p.kind IN (1, 2) AND b.id = p.sample_id AND b.id <> b.run
      AND x.id = (SELECT min(id) FROM events WHERE connection_id = OLD.connection_id AND id > OLD.id)
      AND a.id = x.sample_id AND a.run = b.run AND a.id <> b.id
    ON CONFLICT DO UPDATE SET stays = stays + 1;
    DELETE FROM stay_lengths WHERE stays = 0;
    DELETE FROM stay_length_buckets WHERE stays = 0;
END;

-- What peer_totals holds, recounted from the connections by its definition: for checking it.
CREATE VIEW peer_totals_recounted AS
SELECT c.remote_address, c.direction, c.service_port,
       count(*), sum(c.closed_at IS NULL), sum(c.preexisting = 0), sum(c.closed_at IS NOT NULL AND c.end_reason IS NOT 7),
       sum(c.end_reason IS 3), sum(c.end_reason IS 6), sum(c.end_reason IS 5), max(c.last_seen),
       max(CASE WHEN c.end_reason = 3 THEN c.closed_at END),
       count(x.bytes_acked), COALESCE(sum(x.bytes_acked), 0), COALESCE(sum(x.bytes_received), 0)
FROM connections c LEFT JOIN connection_details x ON x.connection_id = c.id
GROUP BY 1, 2, 3;

-- What stay_lengths holds, recounted from the events by its definition: for checking it.
CREATE VIEW stay_lengths_recounted AS
SELECT state, milliseconds, count(*) AS stays FROM (
    SELECT e.kind, e.to_state AS state, LEAD(s.at) OVER next - s.at AS milliseconds, s.id AS sample_id, s.run,
           LEAD(s.run) OVER next AS left_run, LEAD(s.id) OVER next AS left_sample
    FROM events e JOIN samples s ON s.id = e.sample_id
    WINDOW next AS (PARTITION BY e.connection_id ORDER BY e.id))
WHERE kind IN (1, 2) AND left_run = run AND sample_id <> run AND left_sample <> sample_id
GROUP BY state, milliseconds;

DROP VIEW connections_v;
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
       p.name AS program,
       x.cookie,
       COALESCE(x.between_samples, 0) AS between_samples,
       strftime('%Y-%m-%dT%H:%M:%fZ', x.destroyed_at / 1000.0, 'unixepoch') AS destroyed_at,
       x.bytes_acked, x.bytes_received, x.segments_out, x.segments_in, x.retransmitted_segments,
       x.rtt_us / 1000.0 AS rtt_ms, x.cwnd
FROM connections c
JOIN namespaces n ON n.id = c.namespace_id
JOIN addresses la ON la.id = c.local_address
JOIN addresses ra ON ra.id = c.remote_address
JOIN directions d ON d.code = c.direction
LEFT JOIN tcp_states s ON s.code = c.state
LEFT JOIN end_reasons r ON r.code = c.end_reason
LEFT JOIN programs p ON p.id = c.program_id
LEFT JOIN connection_details x ON x.connection_id = c.id;

DROP VIEW samples_v;
CREATE VIEW samples_v AS
SELECT sa.id,
       n.inode AS namespace,
       sa.window_id,
       strftime('%Y-%m-%dT%H:%M:%fZ', sa.at / 1000.0, 'unixepoch') AS at,
       strftime('%Y-%m-%dT%H:%M:%fZ', sa.after / 1000.0, 'unixepoch') AS after,
       sa.sockets, sa.malformed, sa.resets, sa.reset_candidates, sa.read_us, sa.attributed,
       w.source, sa.destroys, sa.destroys_lost
FROM samples sa
JOIN windows w ON w.id = sa.window_id
JOIN namespaces n ON n.id = w.namespace_id;
