/// Pruning history older than a cutoff, in small transactions.
extension Store {
    /// Deletes history from before `cutoff` (milliseconds since the epoch), at most `batchSize`
    /// rows per transaction and at most `maxBatches` transactions per call, so neither readers nor
    /// the collector wait long.
    ///
    /// Kept whatever their age: open connections, each namespace's latest sample (the next
    /// sample diffs against it), and the counters a window's first retained sample needs, so
    /// "every counter at a window's first sample" stays true.
    ///
    /// - Returns: rows deleted, and whether older history remains for a later call.
    @discardableResult
    public func prune(before cutoff: Int64, batchSize: Int = 2000, maxBatches: Int = 50) throws -> (deleted: Int, more: Bool) {
        guard let lastOldSample = try database.scalarInt("SELECT max(id) FROM samples WHERE at < ?", [.integer(cutoff)]) else {
            try clipWindows(before: cutoff)
            return (0, false)
        }
        try carryCounters(over: lastOldSample)
        let limit = SQLValue.integer(Int64(batchSize))
        var steps: [(String, [SQLValue])] = [
            ("DELETE FROM events WHERE id IN (SELECT id FROM events WHERE sample_id <= ? LIMIT ?)", [.integer(lastOldSample), limit]),
            (
                "DELETE FROM connections WHERE id IN (SELECT id FROM connections WHERE first_seen < ? AND closed_at < ? LIMIT ?)",
                [.integer(cutoff), .integer(cutoff), limit]
            ),
        ]
        var counterIDs: [Int64] = []
        try database.forEach("SELECT id FROM counter_names") { counterIDs.append($0.int64(0)) }
        for id in counterIDs {
            steps.append(
                (
                    """
                    DELETE FROM counters WHERE counter_id = ?1 AND sample_id IN (
                        SELECT sample_id FROM counters WHERE counter_id = ?1 AND sample_id <= ?2 LIMIT ?3)
                    """, [.integer(id), .integer(lastOldSample), limit]
                ))
        }
        steps.append(
            (
                """
                DELETE FROM samples WHERE id IN (
                    SELECT id FROM samples WHERE id <= ?1 AND id NOT IN (
                        SELECT max(s.id) FROM samples s JOIN windows w ON w.id = s.window_id GROUP BY w.namespace_id)
                    LIMIT ?2)
                """, [.integer(lastOldSample), limit]
            ))

        var deleted = 0
        var batches = 0
        for (sql, values) in steps {
            while true {
                guard batches < maxBatches else { return (deleted, true) }
                let changed = try database.transaction(.immediate) { () throws -> Int64 in
                    try database.cached(sql).run(values)
                    return database.changes
                }
                batches += 1
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
