/// The socket table as it was at one moment, rebuilt from the history.
extension Store {
    /// Columns of ``socketTable(at:state:includeListeners:row:)``, as in `netstat -nt` (CSV names).
    public static let socketTableColumns = ["proto", "recv_q", "send_q", "local", "foreign", "state", "pid", "program"]

    /// Every connection open at the latest sample at or before `at`, in the state it was then.
    ///
    /// - Returns: the time of the sample shown (nil when no sample is that old), and notes.
    public func socketTable(
        at: Int64, state: TCPState?, includeListeners: Bool, now: Int64, row: ([SQLValue]) throws -> Void
    ) throws -> (sampleAt: Int64?, context: AnswerContext) {
        var context = try coverage(QuestionParameters(since: at, until: at, now: now))
        context.columns = Self.socketTableColumns
        guard let sample = try database.scalarInt("SELECT at FROM samples WHERE at <= ? ORDER BY at DESC LIMIT 1", [.integer(at)])
        else {
            context.notes.append("nothing was recorded at or before \(TimeText.iso8601(at))")
            return (nil, context)
        }
        context.notes.insert("as seen by the sample at \(TimeText.iso8601(sample)) (the latest at or before the time asked)", at: 0)
        context.notes.append("Recv-Q and Send-Q are the largest queues seen over each connection's life, not at that moment")
        let statement = try database.cached(
            """
            WITH alive_then AS (
                SELECT c.*, (SELECT e.to_state FROM events e JOIN samples s ON s.id = e.sample_id
                             WHERE e.connection_id = c.id AND s.at <= :at AND e.kind <> 3
                             ORDER BY e.id DESC LIMIT 1) AS state_then
                FROM connections c
                -- Those closed after the moment, found in the index on (closed_at, first_seen) alone, and open ones.
                WHERE c.first_seen <= :at AND c.id IN (
                    SELECT id FROM connections WHERE closed_at > :at AND first_seen <= :at
                    UNION ALL SELECT id FROM connections WHERE closed_at IS NULL)
            )
            SELECT CASE WHEN t.family = 6 THEN 'tcp6' ELSE 'tcp' END AS proto, t.max_rx_queue AS recv_q,
                   t.max_tx_queue AS send_q, \(Fragment.endpoint("la", "t.local_port", family: "t.family")) AS local,
                   \(Fragment.endpoint("ra", "t.remote_port", family: "t.family")) AS "foreign",
                   COALESCE(ts.name, 'UNKNOWN') AS state, t.pid, p.name AS program
            FROM alive_then t
            JOIN addresses la ON la.id = t.local_address
            JOIN addresses ra ON ra.id = t.remote_address
            LEFT JOIN tcp_states ts ON ts.code = COALESCE(t.state_then, t.state)
            LEFT JOIN programs p ON p.id = t.program_id
            WHERE (:state IS NULL OR COALESCE(t.state_then, t.state) = :state)
              AND (:listeners = 1 OR COALESCE(t.state_then, t.state) <> 10)
            ORDER BY t.family, la.bytes, t.local_port, ra.bytes, t.remote_port
            """)
        defer { statement.reset() }
        try statement.bind(named: [
            "at": .integer(sample), "state": state.map { .integer(Int64($0.rawValue)) } ?? .null,
            "listeners": .integer(includeListeners ? 1 : 0),
        ])
        while try statement.step() {
            try row((0..<statement.columnCount).map { statement.value($0) })
        }
        return (sample, context)
    }
}
