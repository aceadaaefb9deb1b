-- connlog schema version 3: running totals that answer whole-history questions without reading
-- every connection, kept exact by triggers on whatever writes the raw rows (a sample, a close
-- taken back, a reason revised, retention).

-- The port a connection serves: the local port of listeners and inbound connections, the remote
-- port of outbound ones. Computed when read, stored nowhere.
ALTER TABLE connections ADD COLUMN service_port INTEGER
    AS (CASE WHEN direction = 2 THEN remote_port ELSE local_port END) VIRTUAL;

-- Per remote address, direction and service port: what `peers`, `resets` and `ports` sum when
-- asked about the whole history. A row goes when its last connection does.
CREATE TABLE peer_totals (
    remote_address INTEGER NOT NULL REFERENCES addresses(id),
    direction INTEGER NOT NULL REFERENCES directions(code),
    service_port INTEGER NOT NULL,
    connections INTEGER NOT NULL,
    still_open INTEGER NOT NULL,        -- closed_at IS NULL
    opens INTEGER NOT NULL,             -- preexisting = 0
    closes INTEGER NOT NULL,            -- closed, not while nothing was recording (end_reason <> 7)
    resets INTEGER NOT NULL,            -- end_reason = 3
    failed_connects INTEGER NOT NULL,   -- end_reason = 6
    ambiguous INTEGER NOT NULL,         -- end_reason = 5
    last_seen INTEGER,                  -- max(last_seen) of its closed connections
    last_reset INTEGER,                 -- max(closed_at) of its resets
    PRIMARY KEY (remote_address, direction, service_port)
) WITHOUT ROWID;

-- Opens and closes of connections other than listeners, per minute of the sample that saw
-- them (samples.at / 60000): `churn` in whole minutes without reading every event.
CREATE TABLE churn_minutes (
    minute INTEGER PRIMARY KEY,
    opens INTEGER NOT NULL,             -- open events of connections not preexisting
    closes INTEGER NOT NULL,            -- close events, end_reason <> 7
    resets INTEGER NOT NULL,
    failed_connects INTEGER NOT NULL
);

-- Peers' first connection is found through this index rather than kept in a total (retention
-- removes exactly those first connections); it replaces connections_by_remote, which nothing
-- read by port.
DROP INDEX connections_by_remote;
CREATE INDEX connections_by_peer ON connections(remote_address, first_seen);

-- "Open at T" is first_seen <= T < closed_at: with first_seen beside closed_at the index alone
-- answers it. No question reads connections by first_seen alone, so that index goes (16 bytes a
-- connection).
DROP INDEX connections_by_closed_at;
CREATE INDEX connections_by_closed_at ON connections(closed_at, first_seen);
DROP INDEX connections_by_first_seen;

-- Failed connects by peer and port, in order: `failed-connects` reads only this index.
DROP INDEX connections_failed;
CREATE INDEX connections_failed ON connections(remote_address, remote_port, closed_at) WHERE end_reason = 6;

-- A connection is added to its totals when inserted and taken out when deleted; an update
-- takes the old row out and puts the new one in. A largest value that leaves is found again
-- among the remaining rows (rare: a close taken back, or retention removing a key's newest close).

CREATE TRIGGER peer_totals_add AFTER INSERT ON connections BEGIN
    INSERT INTO peer_totals VALUES (
        NEW.remote_address, NEW.direction, NEW.service_port,
        1, NEW.closed_at IS NULL, NEW.preexisting = 0, NEW.closed_at IS NOT NULL AND NEW.end_reason IS NOT 7,
        NEW.end_reason IS 3, NEW.end_reason IS 6, NEW.end_reason IS 5,
        NEW.last_seen, CASE WHEN NEW.end_reason = 3 THEN NEW.closed_at END)
    ON CONFLICT DO UPDATE SET
        connections = connections + 1, still_open = still_open + excluded.still_open, opens = opens + excluded.opens,
        closes = closes + excluded.closes, resets = resets + excluded.resets,
        failed_connects = failed_connects + excluded.failed_connects, ambiguous = ambiguous + excluded.ambiguous,
        last_seen = CASE WHEN last_seen IS NULL OR excluded.last_seen > last_seen THEN excluded.last_seen ELSE last_seen END,
        last_reset = CASE WHEN last_reset IS NULL OR excluded.last_reset > last_reset THEN excluded.last_reset ELSE last_reset END;
END;

-- The common update, a close: one row changes in place.
CREATE TRIGGER peer_totals_close AFTER UPDATE OF closed_at, last_seen, end_reason ON connections
WHEN OLD.closed_at IS NULL AND NEW.closed_at IS NOT NULL BEGIN
    UPDATE peer_totals SET
        still_open = still_open - 1, closes = closes + (NEW.end_reason IS NOT 7), resets = resets + (NEW.end_reason IS 3),
        failed_connects = failed_connects + (NEW.end_reason IS 6), ambiguous = ambiguous + (NEW.end_reason IS 5),
        last_seen = CASE WHEN last_seen IS NULL OR NEW.last_seen > last_seen THEN NEW.last_seen ELSE last_seen END,
        last_reset = CASE WHEN NEW.end_reason = 3 AND (last_reset IS NULL OR NEW.closed_at > last_reset) THEN NEW.closed_at
                          ELSE last_reset END
    WHERE remote_address = NEW.remote_address AND direction = NEW.direction AND service_port = NEW.service_port;
END;

-- Any other update of those columns (a close taken back, a reason revised): out with the old, in with the new.
CREATE TRIGGER peer_totals_change AFTER UPDATE OF closed_at, last_seen, end_reason ON connections
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
                          ELSE last_reset END
    WHERE remote_address = NEW.remote_address AND direction = NEW.direction AND service_port = NEW.service_port;
END;

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
                          ELSE last_reset END
    WHERE remote_address = OLD.remote_address AND direction = OLD.direction AND service_port = OLD.service_port;
    DELETE FROM peer_totals
    WHERE remote_address = OLD.remote_address AND direction = OLD.direction AND service_port = OLD.service_port
      AND connections = 0;
END;

-- An open or close event counts in its sample's minute, by how its connection is (or was) known
-- to have ended; a revised reason moves the count of its close event.
CREATE TRIGGER churn_minutes_add AFTER INSERT ON events WHEN NEW.kind <> 2 BEGIN
    INSERT INTO churn_minutes (minute, opens, closes, resets, failed_connects)
    SELECT s.at / 60000, NEW.kind = 1 AND c.preexisting = 0, NEW.kind = 3 AND c.end_reason IS NOT 7,
           NEW.kind = 3 AND c.end_reason IS 3, NEW.kind = 3 AND c.end_reason IS 6
    FROM samples s, connections c
    WHERE s.id = NEW.sample_id AND c.id = NEW.connection_id AND c.direction <> 0
    ON CONFLICT (minute) DO UPDATE SET
        opens = opens + excluded.opens, closes = closes + excluded.closes, resets = resets + excluded.resets,
        failed_connects = failed_connects + excluded.failed_connects;
END;

CREATE TRIGGER churn_minutes_remove AFTER DELETE ON events WHEN OLD.kind <> 2 BEGIN
    UPDATE churn_minutes SET
        opens = opens - (OLD.kind = 1 AND gone.preexisting = 0), closes = closes - (OLD.kind = 3 AND gone.end_reason IS NOT 7),
        resets = resets - (OLD.kind = 3 AND gone.end_reason IS 3), failed_connects = failed_connects - (OLD.kind = 3 AND gone.end_reason IS 6)
    FROM (SELECT s.at / 60000 AS minute, c.preexisting, c.end_reason FROM samples s, connections c
          WHERE s.id = OLD.sample_id AND c.id = OLD.connection_id AND c.direction <> 0) AS gone
    WHERE churn_minutes.minute = gone.minute;
END;

CREATE TRIGGER churn_minutes_revise AFTER UPDATE OF end_reason ON connections
WHEN NEW.direction <> 0 AND OLD.end_reason IS NOT NULL AND NEW.end_reason IS NOT NULL AND OLD.end_reason IS NOT NEW.end_reason BEGIN
    UPDATE churn_minutes SET
        closes = closes - (OLD.end_reason IS NOT 7) + (NEW.end_reason IS NOT 7),
        resets = resets - (OLD.end_reason IS 3) + (NEW.end_reason IS 3),
        failed_connects = failed_connects - (OLD.end_reason IS 6) + (NEW.end_reason IS 6)
    WHERE minute = (SELECT s.at / 60000 FROM events e JOIN samples s ON s.id = e.sample_id
                    WHERE e.connection_id = NEW.id AND e.kind = 3);
END;

-- What databases of version 2 already hold.
INSERT INTO peer_totals
SELECT remote_address, direction, service_port,
       count(*), sum(closed_at IS NULL), sum(preexisting = 0), sum(closed_at IS NOT NULL AND end_reason IS NOT 7),
       sum(end_reason IS 3), sum(end_reason IS 6), sum(end_reason IS 5), max(last_seen),
       max(CASE WHEN end_reason = 3 THEN closed_at END)
FROM connections
GROUP BY 1, 2, 3;

INSERT INTO churn_minutes
SELECT s.at / 60000, sum(e.kind = 1 AND c.preexisting = 0), sum(e.kind = 3 AND c.end_reason IS NOT 7),
       sum(e.kind = 3 AND c.end_reason IS 3), sum(e.kind = 3 AND c.end_reason IS 6)
FROM events e JOIN samples s ON s.id = e.sample_id JOIN connections c ON c.id = e.connection_id
WHERE e.kind <> 2 AND c.direction <> 0
GROUP BY 1;
