/// Pruning history older than a cutoff, in small transactions.
extension Store {
    /// Deletes history from before `cutoff` (milliseconds since the epoch), at most `batchSize`
    /// rows per transaction and at most `maxBatches` transactions that delete something per call,
    /// so neither readers nor the collector wait long.
    ///
    /// Kept whatever their age: open connections, each namespace's latest sample (the next
    /// sample diffs against it), and the counters a window's first retained sample needs, so
    /// "every counter at a window's first sample" stays true.
    ///
    /// - Returns: rows deleted, and whether older history remains for a later call.
    @discardableResult
    /// - Parameter until: a monotonic deadline in nanoseconds (`CLOCK_MONOTONIC`) after which no
    ///   new batch starts.
    public func prune(
        before cutoff: Int64, batchSize: Int = 2000, maxBatches: Int = 50, until deadline: Int64 = .max
    ) throws -> (deleted: Int, more: Bool) {
        // Everything before the first sample at or after the cut. Ids follow recording order, so
        // after the wall clock stepped back nothing recorded later is taken for old.
        let firstKept = try database.scalarInt("SELECT id FROM samples WHERE at >= ? ORDER BY at, id LIMIT 1", [.integer(cutoff)])
        let lastOld =
            firstKept == nil
            ? try database.scalarInt("SELECT max(id) FROM samples")
            : try database.scalarInt("SELECT max(id) FROM samples WHERE id < ?", [.integer(firstKept!)])
        guard let lastOldSample = lastOld else {
            try clipWindows(before: cutoff)
            return (0, false)
        }
        try carryCounters(over: lastOldSample)
        // Each step deletes up to `limit` rows and returns how many; it is done when it deletes fewer.
        func rows(_ sql: String, _ values: [SQLValue]) -> (Int64) throws -> Int64 {
            { limit in
                try self.database.cached(sql).run(values + [.integer(limit)])
                return self.database.changes
            }
        }
        var counterIDs: [Int64] = []
        try database.forEach("SELECT id FROM counter_names ORDER BY id") { counterIDs.append($0.int64(0)) }
        var counterCursor = 0
        // One step for all counters: a transaction moves on to the next counter when one runs out,
        // so the number of transactions follows the rows deleted, not the number of counters.
        let counters: (Int64) throws -> Int64 = { limit in
            var total: Int64 = 0
            while counterCursor < counterIDs.count && total < limit {
                let asked = limit - total
                try self.database.cached(
                    """
                    DELETE FROM counters WHERE counter_id = ?1 AND sample_id IN (
                        SELECT sample_id FROM counters WHERE counter_id = ?1 AND sample_id <= ?2 LIMIT ?3)
                    """
                ).run([.integer(counterIDs[counterCursor]), .integer(lastOldSample), .integer(asked)])
                let changed = self.database.changes
                total += changed
                if changed < asked { counterCursor += 1 }
            }
            return total
        }
        // A connection that closed before the cut goes with all its events in one transaction, so a
        // reader never sees a closed connection without its close event.
        let closedConnections: (Int64) throws -> Int64 = { limit in
            try self.database.execute("CREATE TEMP TABLE IF NOT EXISTS prune_batch (id INTEGER PRIMARY KEY); DELETE FROM prune_batch;")
            try self.database.cached(
                "INSERT INTO prune_batch SELECT id FROM connections WHERE first_seen < ? AND closed_at < ? LIMIT ?"
            ).run([.integer(cutoff), .integer(cutoff), .integer(limit)])
            let count = self.database.changes
            try self.database.cached("DELETE FROM events WHERE connection_id IN (SELECT id FROM prune_batch)").run()
            try self.database.cached("DELETE FROM connections WHERE id IN (SELECT id FROM prune_batch)").run()
            return count
        }
        let steps: [(Int64) throws -> Int64] = [
            closedConnections,
            // What is left of the old events belongs to connections still open, or closed after the cut.
            rows("DELETE FROM events WHERE id IN (SELECT id FROM events WHERE sample_id <= ? LIMIT ?)", [.integer(lastOldSample)]),
            counters,
            rows(
                """
                DELETE FROM samples WHERE id IN (
                    SELECT id FROM samples WHERE id <= ? AND id NOT IN (
                        SELECT max(s.id) FROM samples s JOIN windows w ON w.id = s.window_id GROUP BY w.namespace_id)
                    LIMIT ?)
                """, [.integer(lastOldSample)]),
        ]

        var deleted = 0
        var batches = 0
        for step in steps {
            while true {
                guard batches < maxBatches, FileReading.monotonicNanoseconds() < deadline else { return (deleted, true) }
                let changed = try database.transaction(.immediate) { try step(Int64(batchSize)) }
                // A step with nothing to delete costs one cheap transaction and no budget.
                if changed > 0 { batches += 1 }
                deleted += Int(changed)
                if changed < batchSize { break }
            }
        }
        try clipWindows(before: cutoff)
        return (deleted, false)
    }

    /// For each window that straddles the cut, copies every counter's value as of its first
    /// kept sample onto that sample, before older rows go.
    private func carryCounters(over lastOldSample: Int64) throws {
        try database.transaction(.immediate) {
            try database.cached(
                """
                INSERT OR IGNORE INTO counters (counter_id, sample_id, value)
                SELECT c.id, k.first_kept,
                       (SELECT value FROM counters v WHERE v.counter_id = c.id AND v.sample_id <= k.first_kept
                          AND v.sample_id IN (SELECT id FROM samples WHERE window_id = k.window_id)
                        ORDER BY v.sample_id DESC LIMIT 1)
                FROM (SELECT window_id, min(id) AS first_kept FROM samples
                      WHERE id > ?1 AND window_id IN (SELECT window_id FROM samples WHERE id <= ?1)
                      GROUP BY window_id) k
                JOIN counter_names c
                WHERE EXISTS (SELECT 1 FROM counters v WHERE v.counter_id = c.id AND v.sample_id <= k.first_kept
                                AND v.sample_id IN (SELECT id FROM samples WHERE window_id = k.window_id))
                """
            ).run([.integer(lastOldSample)])
        }
    }

    /// Drops windows left without samples and starts the ones that straddle the cut at their first kept sample.
    private func clipWindows(before cutoff: Int64) throws {
        try database.transaction(.immediate) {
            try database.cached("DELETE FROM windows WHERE ended_at < ? AND id NOT IN (SELECT window_id FROM samples)")
                .run([.integer(cutoff)])
            try database.cached(
                """
                UPDATE windows SET started_at = (SELECT min(at) FROM samples WHERE window_id = windows.id),
                    samples = (SELECT count(*) FROM samples WHERE window_id = windows.id)
                WHERE started_at < ?1 AND EXISTS (SELECT 1 FROM samples WHERE window_id = windows.id)
                """
            ).run([.integer(cutoff)])
        }
    }
}
