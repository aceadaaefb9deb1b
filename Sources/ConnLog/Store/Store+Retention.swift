/// Pruning history older than a cutoff, in small transactions.
extension Store {
    /// Deletes history from before `cutoff` (milliseconds since the epoch), at most `batchSize`
    /// rows per transaction and at most `maxBatches` transactions per call, so neither readers nor
    /// the collector wait long. Open connections and each window's latest sample are kept.
    ///
    /// - Returns: rows deleted, and whether older history remains for a later call.
    @discardableResult
    public func prune(before cutoff: Int64, batchSize: Int = 2000, maxBatches: Int = 50) throws -> (deleted: Int, more: Bool) {
        guard let lastOldSample = try database.scalarInt("SELECT max(id) FROM samples WHERE at < ?", [.integer(cutoff)]) else {
            try clipWindows(before: cutoff)
            return (0, false)
        }
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
            steps.append((
                """
                DELETE FROM counters WHERE counter_id = ?1 AND sample_id IN (
                    SELECT sample_id FROM counters WHERE counter_id = ?1 AND sample_id <= ?2 LIMIT ?3)
                """, [.integer(id), .integer(lastOldSample), limit]
            ))
        }
        steps.append((
            """
            DELETE FROM samples WHERE id IN (
                SELECT id FROM samples WHERE id <= ?
                AND id NOT IN (SELECT max(id) FROM samples GROUP BY window_id) LIMIT ?)
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

    /// Drops windows that ended before `cutoff` and starts the one that straddles it there.
    private func clipWindows(before cutoff: Int64) throws {
        try database.transaction(.immediate) {
            try database.cached("DELETE FROM windows WHERE ended_at < ? AND id NOT IN (SELECT window_id FROM samples)")
                .run([.integer(cutoff)])
            try database.cached("UPDATE windows SET started_at = ? WHERE started_at < ? AND ended_at >= ?")
                .run([.integer(cutoff), .integer(cutoff), .integer(cutoff)])
        }
    }
}
