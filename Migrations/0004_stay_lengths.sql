-- connlog schema version 4: how long sockets stayed in each state, kept as an exact histogram, so
-- `state-durations` over the whole history reads a few hundred rows instead of every event; and
-- a sample's own rows are added to the running totals by the collector, once per sample.

-- A run is observation without a gap or a reboot: it begins with a namespace's first sample, or the
-- first after a gap or a reboot, whose events happened at some unknown time before it. `run` is the
-- id of the sample that began the sample's run: its own id when it begins one. Set when the sample
-- is recorded and never changed, so pruning a run's first samples leaves the rest of it as it was.
-- (Databases of version 3 take it from the windows; where pruning already removed the first sample
-- of a window that began a run, its first kept sample begins it instead, as version 3 counted it.)
ALTER TABLE samples ADD COLUMN run INTEGER;
UPDATE samples SET run = numbered.run FROM (
    SELECT s.id, COALESCE(max(CASE WHEN s.id IN (
                                  SELECT min(f.id) FROM samples f JOIN windows fw ON fw.id = f.window_id
                                  WHERE fw.start_reason IN ('first', 'gap', 'reboot') GROUP BY fw.id)
                              THEN s.id END) OVER namespace,
                          min(s.id) OVER namespace) AS run
    FROM samples s JOIN windows w ON w.id = s.window_id
    WINDOW namespace AS (PARTITION BY w.namespace_id ORDER BY s.id)) AS numbered
WHERE samples.id = numbered.id;

-- A stay runs from an open or state event of a connection to the connection's next event, when both
-- are in one run and the first does not begin it (a stay entered before observation began, or across
-- a gap, a reboot or a clock that stepped back, has no known length). Per state and length: how many.
CREATE TABLE stay_lengths (
    state INTEGER NOT NULL,             -- the state stayed in (events.to_state)
    milliseconds INTEGER NOT NULL,      -- from the sample that saw it entered to the one that saw it left
    stays INTEGER NOT NULL,
    -- The lengths that share their three leading digits; each length under a second is its own.
    bucket INTEGER AS (CASE WHEN milliseconds < 1000 THEN milliseconds
                            ELSE milliseconds - milliseconds % CAST(substr('1000000000000000000', 1, length(milliseconds) - 2) AS INTEGER)
                       END) VIRTUAL,
    PRIMARY KEY (state, milliseconds)
) WITHOUT ROWID;

-- The same stays per bucket (at most 900 buckets a decade of lengths): a percentile is found by
-- summing buckets up to the one that holds its rank, then the lengths of that bucket alone.
CREATE TABLE stay_length_buckets (
    state INTEGER NOT NULL,
    bucket INTEGER NOT NULL,            -- its smallest length: the length with all but three leading digits zero
    stays INTEGER NOT NULL,
    milliseconds INTEGER NOT NULL,      -- the lengths of its stays, summed
    PRIMARY KEY (state, bucket)
) WITHOUT ROWID;

-- Lengths and buckets whose last stay went are deleted at once; these find them without a scan.
CREATE INDEX stay_lengths_emptied ON stay_lengths(stays) WHERE stays = 0;
CREATE INDEX stay_length_buckets_emptied ON stay_length_buckets(stays) WHERE stays = 0;

CREATE TRIGGER stay_length_buckets_add AFTER INSERT ON stay_lengths BEGIN
    INSERT INTO stay_length_buckets VALUES (NEW.state, NEW.bucket, NEW.stays, NEW.stays * NEW.milliseconds)
    ON CONFLICT DO UPDATE SET stays = stays + excluded.stays, milliseconds = milliseconds + excluded.milliseconds;
END;
CREATE TRIGGER stay_length_buckets_change AFTER UPDATE OF stays ON stay_lengths BEGIN
    UPDATE stay_length_buckets
    SET stays = stays + NEW.stays - OLD.stays, milliseconds = milliseconds + (NEW.stays - OLD.stays) * NEW.milliseconds
    WHERE state = NEW.state AND bucket = NEW.bucket;
END;
CREATE TRIGGER stay_length_buckets_remove AFTER DELETE ON stay_lengths BEGIN
    UPDATE stay_length_buckets SET stays = stays - OLD.stays, milliseconds = milliseconds - OLD.stays * OLD.milliseconds
    WHERE state = OLD.state AND bucket = OLD.bucket;
END;

-- A sample's opens, closes and events are added to the totals by grouped statements at the end of
-- its transaction (Store+Totals.swift), which cost a burst of 100k closes far less than triggers
-- run once per row. Triggers follow every later change: a close taken back, a reason revised,
-- retention.
DROP TRIGGER peer_totals_add;
DROP TRIGGER peer_totals_close;
DROP TRIGGER churn_minutes_add;

-- A deleted event takes out the stay it ended and the one it began; if it had neighbours on both
-- sides, they now bound a stay. (Retention deletes a connection's oldest events; a close taken
-- back is its connection's last.)
CREATE TRIGGER stay_lengths_remove AFTER DELETE ON events BEGIN
    UPDATE stay_lengths SET stays = stays - 1 WHERE (state, milliseconds) = (
        SELECT p.to_state, o.at - b.at
        FROM samples o, events p, samples b
        WHERE o.id = OLD.sample_id
          AND p.id = (SELECT max(id) FROM events WHERE connection_id = OLD.connection_id AND id < OLD.id)
          AND p.kind IN (1, 2) AND b.id = p.sample_id AND b.run = o.run AND b.id <> b.run);
    UPDATE stay_lengths SET stays = stays - 1 WHERE (state, milliseconds) = (
        SELECT OLD.to_state, a.at - o.at
        FROM samples o, events x, samples a
        WHERE OLD.kind IN (1, 2) AND o.id = OLD.sample_id AND o.id <> o.run
          AND x.id = (SELECT min(id) FROM events WHERE connection_id = OLD.connection_id AND id > OLD.id)
          AND a.id = x.sample_id AND a.run = o.run);
    INSERT INTO stay_lengths (state, milliseconds, stays)
    SELECT p.to_state, a.at - b.at, 1
    FROM events p, samples b, events x, samples a
    WHERE p.id = (SELECT max(id) FROM events WHERE connection_id = OLD.connection_id AND id < OLD.id)
      AND p.kind IN (1, 2) AND b.id = p.sample_id AND b.id <> b.run
      AND x.id = (SELECT min(id) FROM events WHERE connection_id = OLD.connection_id AND id > OLD.id)
      AND a.id = x.sample_id AND a.run = b.run
    ON CONFLICT DO UPDATE SET stays = stays + 1;
    DELETE FROM stay_lengths WHERE stays = 0;
    DELETE FROM stay_length_buckets WHERE stays = 0;
END;

-- What databases of version 3 already hold (the buckets fill through their triggers).
INSERT INTO stay_lengths
SELECT state, milliseconds, count(*) FROM (
    SELECT e.kind, e.to_state AS state, LEAD(s.at) OVER next - s.at AS milliseconds, s.id AS sample_id, s.run,
           LEAD(s.run) OVER next AS left_run
    FROM events e JOIN samples s ON s.id = e.sample_id
    WINDOW next AS (PARTITION BY e.connection_id ORDER BY e.id))
WHERE kind IN (1, 2) AND left_run = run AND sample_id <> run
GROUP BY state, milliseconds;
