-- connlog schema version 6: how a connection ended is decided per connection where the kernel
-- reports it (the netlink source's destroy notice tells whether this side's FIN was acknowledged),
-- and the reset counter judges only the rest, so that a graceful close is never called a reset.
-- Connections closed before this version keep the reasons the earlier rule gave them: their
-- end_basis is NULL.

-- What decided an ending.
CREATE TABLE end_bases (
    code INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    meaning TEXT NOT NULL
);
INSERT INTO end_bases (code, name, meaning) VALUES
    (1, 'states', 'the states the samples saw: TIME_WAIT, FIN_WAIT1, FIN_WAIT2 or CLOSING; LAST_ACK; only SYN_SENT or SYN_RECV; a listener'),
    (2, 'kernel', 'the kernel''s report of the freed socket (netlink destroy notice): whether this side''s FIN was acknowledged'),
    (3, 'counters', 'the reset counter (Tcp EstabResets), for a connection with no report of its own'),
    (4, 'gap', 'nothing: it closed while nobody was recording');

-- Who sent the reset, where the kernel's report tells.
CREATE TABLE reset_senders (
    code INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    meaning TEXT NOT NULL
);
INSERT INTO reset_senders (code, name, meaning) VALUES
    (1, 'this_host', 'this host aborted it: the kernel disconnected the socket before freeing it (SO_LINGER 0)'),
    (2, 'peer', 'the peer: nothing acknowledged its end, nothing was left unread, no retransmission or probe was waiting');

UPDATE end_reasons SET meaning = 'seen in LAST_ACK, or last seen in CLOSE_WAIT and then closed gracefully: the peer closed first'
WHERE code = 2;
UPDATE end_reasons SET meaning = 'left ESTABLISHED or CLOSE_WAIT for gone without its FIN acknowledged: an RST sent or received, or given up after time-outs'
WHERE code = 3;
UPDATE end_reasons SET meaning = 'left ESTABLISHED straight to gone gracefully (its FIN acknowledged, or no reset counted): a close too quick to sample'
WHERE code = 4;
UPDATE end_reasons SET meaning = 'left ESTABLISHED or CLOSE_WAIT straight to gone, with no report of its own, where the reset counter cannot tell; or last seen in CLOSE'
WHERE code = 5;

ALTER TABLE connections ADD COLUMN end_basis INTEGER REFERENCES end_bases(code);
ALTER TABLE connections ADD COLUMN reset_by INTEGER REFERENCES reset_senders(code);

-- The rest of the kernel's report: data bytes sent (retransmissions included, tcpi_bytes_sent) and
-- the retransmitted part (tcpi_bytes_retrans), and from the destroy notice, the sequence space left
-- unacknowledged (idiag_wqueue) and the bytes left unread (idiag_rqueue).
ALTER TABLE connection_details ADD COLUMN bytes_sent INTEGER;
ALTER TABLE connection_details ADD COLUMN bytes_retrans INTEGER;
ALTER TABLE connection_details ADD COLUMN end_unacked INTEGER;
ALTER TABLE connection_details ADD COLUMN end_unread INTEGER;

-- What the reset counter was weighed with (see docs/SCHEMA.md): EstabResets and ActiveOpens +
-- PassiveOpens read just before the sample's sockets, the resets counted between the previous
-- read's end and this one's start (within) and from the previous read's start to this one's end
-- (around), the connections opened meanwhile that no read saw, and the resets among the sample's
-- closes that were decided per connection.
ALTER TABLE samples ADD COLUMN estab_resets_before INTEGER;
ALTER TABLE samples ADD COLUMN opens_before INTEGER;
ALTER TABLE samples ADD COLUMN resets_within INTEGER;
ALTER TABLE samples ADD COLUMN resets_around INTEGER;
ALTER TABLE samples ADD COLUMN unseen_opens INTEGER;
ALTER TABLE samples ADD COLUMN attributed_resets INTEGER;

-- Resets by who sent them and by what decided them, per peer, for `resets` over the whole
-- history and its note on resets the counter inferred. Rows closed before this version count in
-- neither of the last two.
ALTER TABLE peer_totals ADD COLUMN resets_by_this_host INTEGER NOT NULL DEFAULT 0;
ALTER TABLE peer_totals ADD COLUMN resets_by_peer INTEGER NOT NULL DEFAULT 0;
ALTER TABLE peer_totals ADD COLUMN resets_told INTEGER NOT NULL DEFAULT 0;
ALTER TABLE peer_totals ADD COLUMN resets_inferred INTEGER NOT NULL DEFAULT 0;

-- The resets not told per connection (inferred, or from before this version), for the notes
-- about a time asked.
CREATE INDEX connections_untold_resets ON connections(closed_at) WHERE end_reason = 3 AND end_basis IS NOT 2;


DROP TRIGGER peer_totals_change;
CREATE TRIGGER peer_totals_change AFTER UPDATE OF closed_at, last_seen, end_reason, end_basis, reset_by ON connections
WHEN NOT (OLD.closed_at IS NULL AND NEW.closed_at IS NOT NULL) BEGIN
    UPDATE peer_totals SET
        still_open = still_open - (OLD.closed_at IS NULL) + (NEW.closed_at IS NULL),
        closes = closes - (OLD.closed_at IS NOT NULL AND OLD.end_reason IS NOT 7) + (NEW.closed_at IS NOT NULL AND NEW.end_reason IS NOT 7),
        resets = resets - (OLD.end_reason IS 3) + (NEW.end_reason IS 3),
        failed_connects = failed_connects - (OLD.end_reason IS 6) + (NEW.end_reason IS 6),
        ambiguous = ambiguous - (OLD.end_reason IS 5) + (NEW.end_reason IS 5),
        last_seen = CASE WHEN last_seen IS OLD.last_seen AND NEW.last_seen IS NOT OLD.last_seen
                         THEN (SELECT max(c.last_seen) FROM connections c
                               WHERE c.remote_address = NEW.remote_address AND c.direction = NEW.direction
                                 AND c.service_port = NEW.service_port)
                         WHEN last_seen IS NULL OR NEW.last_seen > last_seen THEN NEW.last_seen ELSE last_seen END,
        last_reset = CASE WHEN OLD.end_reason = 3 AND last_reset IS OLD.closed_at
                               AND (NEW.end_reason IS NOT 3 OR NEW.closed_at IS NOT OLD.closed_at)
                          THEN (SELECT max(c.closed_at) FROM connections c
                                WHERE c.remote_address = NEW.remote_address AND c.direction = NEW.direction
                                  AND c.service_port = NEW.service_port AND c.end_reason = 3)
                          WHEN NEW.end_reason = 3 AND (last_reset IS NULL OR NEW.closed_at > last_reset) THEN NEW.closed_at
                          ELSE last_reset END,
        resets_by_this_host = resets_by_this_host - (OLD.end_reason IS 3 AND OLD.reset_by IS 1)
                              + (NEW.end_reason IS 3 AND NEW.reset_by IS 1),
        resets_by_peer = resets_by_peer - (OLD.end_reason IS 3 AND OLD.reset_by IS 2) + (NEW.end_reason IS 3 AND NEW.reset_by IS 2),
        resets_told = resets_told - (OLD.end_reason IS 3 AND OLD.end_basis IS 2) + (NEW.end_reason IS 3 AND NEW.end_basis IS 2),
        resets_inferred = resets_inferred - (OLD.end_reason IS 3 AND OLD.end_basis IS 3) + (NEW.end_reason IS 3 AND NEW.end_basis IS 3)
    WHERE remote_address = NEW.remote_address AND direction = NEW.direction AND service_port = NEW.service_port;
END;

DROP TRIGGER peer_totals_remove;
CREATE TRIGGER peer_totals_remove AFTER DELETE ON connections BEGIN
    UPDATE peer_totals SET
        connections = connections - 1, still_open = still_open - (OLD.closed_at IS NULL), opens = opens - (OLD.preexisting = 0),
        closes = closes - (OLD.closed_at IS NOT NULL AND OLD.end_reason IS NOT 7), resets = resets - (OLD.end_reason IS 3),
        failed_connects = failed_connects - (OLD.end_reason IS 6), ambiguous = ambiguous - (OLD.end_reason IS 5),
        last_seen = CASE WHEN last_seen IS OLD.last_seen
                         THEN (SELECT max(c.last_seen) FROM connections c
                               WHERE c.remote_address = OLD.remote_address AND c.direction = OLD.direction
                                 AND c.service_port = OLD.service_port)
                         ELSE last_seen END,
        last_reset = CASE WHEN OLD.end_reason = 3 AND last_reset IS OLD.closed_at
                          THEN (SELECT max(c.closed_at) FROM connections c
                                WHERE c.remote_address = OLD.remote_address AND c.direction = OLD.direction
                                  AND c.service_port = OLD.service_port AND c.end_reason = 3)
                          ELSE last_reset END,
        resets_by_this_host = resets_by_this_host - (OLD.end_reason IS 3 AND OLD.reset_by IS 1),
        resets_by_peer = resets_by_peer - (OLD.end_reason IS 3 AND OLD.reset_by IS 2),
        resets_told = resets_told - (OLD.end_reason IS 3 AND OLD.end_basis IS 2),
        resets_inferred = resets_inferred - (OLD.end_reason IS 3 AND OLD.end_basis IS 3)
    WHERE remote_address = OLD.remote_address AND direction = OLD.direction AND service_port = OLD.service_port;
    DELETE FROM peer_totals
    WHERE remote_address = OLD.remote_address AND direction = OLD.direction AND service_port = OLD.service_port
      AND connections = 0;
END;

DROP VIEW peer_totals_recounted;
CREATE VIEW peer_totals_recounted AS
SELECT c.remote_address, c.direction, c.service_port,
       count(*), sum(c.closed_at IS NULL), sum(c.preexisting = 0), sum(c.closed_at IS NOT NULL AND c.end_reason IS NOT 7),
       sum(c.end_reason IS 3), sum(c.end_reason IS 6), sum(c.end_reason IS 5), max(c.last_seen),
       max(CASE WHEN c.end_reason = 3 THEN c.closed_at END),
       count(x.bytes_acked), COALESCE(sum(x.bytes_acked), 0), COALESCE(sum(x.bytes_received), 0),
       sum(c.end_reason IS 3 AND c.reset_by IS 1), sum(c.end_reason IS 3 AND c.reset_by IS 2),
       sum(c.end_reason IS 3 AND c.end_basis IS 2), sum(c.end_reason IS 3 AND c.end_basis IS 3)
FROM connections c LEFT JOIN connection_details x ON x.connection_id = c.id
GROUP BY 1, 2, 3;

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
       b.name AS end_basis,
       rs.name AS reset_by,
       strftime('%Y-%m-%dT%H:%M:%fZ', c.time_wait_at / 1000.0, 'unixepoch') AS time_wait_at,
       c.max_retransmits, c.max_tx_queue, c.max_rx_queue,
       c.uid, c.inode, c.pid,
       p.name AS program,
       x.cookie,
       COALESCE(x.between_samples, 0) AS between_samples,
       strftime('%Y-%m-%dT%H:%M:%fZ', x.destroyed_at / 1000.0, 'unixepoch') AS destroyed_at,
       x.bytes_acked, x.bytes_received, x.segments_out, x.segments_in, x.retransmitted_segments,
       x.rtt_us / 1000.0 AS rtt_ms, x.cwnd,
       x.bytes_sent, x.bytes_retrans, x.end_unacked, x.end_unread
FROM connections c
JOIN namespaces n ON n.id = c.namespace_id
JOIN addresses la ON la.id = c.local_address
JOIN addresses ra ON ra.id = c.remote_address
JOIN directions d ON d.code = c.direction
LEFT JOIN tcp_states s ON s.code = c.state
LEFT JOIN end_reasons r ON r.code = c.end_reason
LEFT JOIN end_bases b ON b.code = c.end_basis
LEFT JOIN reset_senders rs ON rs.code = c.reset_by
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
       w.source, sa.destroys, sa.destroys_lost,
       sa.resets_within, sa.resets_around, sa.unseen_opens, sa.attributed_resets, sa.estab_resets_before, sa.opens_before
FROM samples sa
JOIN windows w ON w.id = sa.window_id
JOIN namespaces n ON n.id = w.namespace_id;
