/// A period in which nothing was recording, as questions report it.
public struct Gap: Sendable, Equatable {
    public var from: Int64
    /// nil while still not recording.
    public var to: Int64?
    /// `gap`, `reboot`, or `not recording since`.
    public var reason: String
}

/// What comes with an answer besides its rows: its columns, and what could not be seen.
public struct AnswerContext: Sendable {
    public var columns: [String]
    /// Gaps that overlap the time asked about.
    public var gaps: [Gap]
    /// Sentences the reader should know before trusting the rows.
    public var notes: [String]
}

extension Store {
    /// Runs a canned question, calling `row` with each result row as it is read.
    public func ask(
        _ question: Question, _ parameters: QuestionParameters, row: ([SQLValue]) throws -> Void
    ) throws -> AnswerContext {
        var context = try coverage(parameters, caveats: question.caveats)
        context.notes += try blindSpotNotes(question.blindSpots, parameters)
        let statement = try database.cached(question.sql(for: parameters))
        defer { statement.reset() }
        try statement.bind(named: parameters.sqlValues)
        let count = statement.columnCount
        while try statement.step() {
            try row((0..<count).map { statement.value($0) })
        }
        var answered = context
        answered.columns = question.columns
        return answered
    }

    /// Says what the numbers hide: ambiguous endings, connections whose start is unknown, and
    /// sockets known to have ended between samples without a name.
    func blindSpotNotes(_ spots: Set<BlindSpot>, _ parameters: QuestionParameters) throws -> [String] {
        let values = parameters.sqlValues
        var notes: [String] = []
        if spots.contains(.ambiguousEndings) {
            let statement = try database.cached(
                """
                SELECT count(*) FROM connections c JOIN addresses ra ON ra.id = c.remote_address
                WHERE c.end_reason = 5 AND c.closed_at BETWEEN :since AND :until AND \(Fragment.peerFilter) AND \(Fragment.portFilter)
                """)
            defer { statement.reset() }
            try statement.bind(named: values)
            if try statement.step(), statement.int64(0) > 0 {
                notes.append(
                    "\(statement.int64(0)) connection(s) ended `ambiguous`: they went straight from ESTABLISHED to gone with no report of their own (the proc source, collect --once, or a destroy notice that was dropped or never came), and the kernel's reset counter could not tell whether they were resets (samples.resets_within, resets_around, unseen_opens): some of them may have been"
                )
            }
        }
        if spots.contains(.inferredResets) {
            // Over the whole history the running totals hold the counts; a time asked reads the
            // few rows in it through their index.
            let wholeHistory = parameters.since == nil && parameters.until == nil && parameters.port == nil
            let statement = try database.cached(
                wholeHistory
                    ? """
                    SELECT COALESCE(sum(t.resets_inferred), 0), COALESCE(sum(t.resets - t.resets_told - t.resets_inferred), 0)
                    \(Fragment.peerTotals) WHERE \(Fragment.peerFilter)
                    """
                    : """
                    SELECT COALESCE(sum(c.end_basis = 3), 0), COALESCE(sum(c.end_basis IS NULL), 0)
                    FROM connections c JOIN addresses ra ON ra.id = c.remote_address
                    WHERE c.end_reason = 3 AND c.end_basis IS NOT 2 AND c.closed_at BETWEEN :since AND :until
                      AND \(Fragment.peerFilter) AND \(Fragment.portFilter)
                    """)
            defer { statement.reset() }
            try statement.bind(named: values)
            if try statement.step() {
                if statement.int64(0) > 0 {
                    notes.append(
                        "\(statement.int64(0)) of the resets were inferred from the kernel's reset counter, not told per connection (end_basis 'counters'): in their samples it counted more resets than everything else that closed could explain"
                    )
                }
                if statement.int64(1) > 0 {
                    notes.append(
                        "\(statement.int64(1)) of the resets were recorded before schema version 6, by a rule that weighed the reset counter alone and could call a graceful close a reset"
                    )
                }
            }
        }
        if spots.contains(.preexisting) {
            let statement = try database.cached(
                """
                SELECT count(*) FROM connections c JOIN addresses ra ON ra.id = c.remote_address
                WHERE c.preexisting = 1 AND c.direction <> 0 AND \(Fragment.alive) AND \(Fragment.peerFilter) AND \(Fragment.portFilter)
                """)
            defer { statement.reset() }
            try statement.bind(named: values)
            if try statement.step(), statement.int64(0) > 0 {
                notes.append(
                    "\(statement.int64(0)) connection(s) were already open when observation began: their first_seen is a lower bound, and they are not counted as opens"
                )
            }
        }
        if spots.contains(.unnamedEnds) {
            let statement = try database.cached(
                """
                SELECT ra.text, sum(u.ends) FROM unnamed_ends u
                JOIN samples s ON s.id = u.sample_id JOIN addresses ra ON ra.id = u.remote_address
                WHERE s.at BETWEEN :since AND :until AND \(Fragment.peerFilter)
                GROUP BY ra.id ORDER BY 2 DESC, 1
                """)
            defer { statement.reset() }
            try statement.bind(named: values)
            var peers: [(peer: String, ends: Int64)] = []
            while try statement.step() { peers.append((statement.text(0), statement.int64(1))) }
            if !peers.isEmpty {
                let total = peers.reduce(0) { $0 + $1.ends }
                var listed = peers.prefix(5).map { "\($0.peer) \($0.ends)" }.joined(separator: ", ")
                if peers.count > 5 { listed += ", and \(peers.count - 5) more peers" }
                let port = parameters.port == nil ? "" : "; their ports are unknown, so --port does not narrow this"
                notes.append(
                    "between samples, \(total) socket(s) ended unseen that this host aborted (SO_LINGER 0, or not yet accepted when their listener closed) or whose connect() returned an error (\(listed)): the kernel clears their ports before it tells, so they match no row\(port)"
                )
            }
        }
        return notes
    }

    /// Gaps within the time asked about, and notes on what could not be seen there.
    public func coverage(_ parameters: QuestionParameters, caveats: [String] = []) throws -> AnswerContext {
        var gaps: [Gap] = []
        var lastEnd: [Int64: Int64] = [:]
        var latestWindow: [Int64: (end: Int64, interval: Int64)] = [:]
        try database.forEach("SELECT namespace_id, start_reason, started_at, ended_at, interval_ms FROM windows ORDER BY id") { row in
            let namespace = row.int64(0)
            if let previous = lastEnd[namespace], row.text(1) == "gap" || row.text(1) == "reboot" {
                gaps.append(Gap(from: previous, to: row.int64(2), reason: row.text(1)))
            }
            lastEnd[namespace] = row.int64(3)
            latestWindow[namespace] = (row.int64(3), row.int64(4))
        }
        for (_, window) in latestWindow where parameters.now - window.end > 2 * window.interval {
            gaps.append(Gap(from: window.end, to: nil, reason: "not recording since"))
        }
        let since = parameters.since ?? Int64.min
        let until = parameters.until ?? Int64.max
        gaps = gaps.filter { $0.from <= until && ($0.to ?? parameters.now) >= since }.sorted { $0.from < $1.from }

        var notes = caveats
        if !gaps.isEmpty {
            let seconds = gaps.reduce(Int64(0)) { $0 + (min($1.to ?? parameters.now, until) - max($1.from, since)) } / 1000
            notes.append(
                "the time asked about holds \(gaps.count) gap\(gaps.count == 1 ? "" : "s") (\(TimeText.duration(max(1, seconds) * 1000)) in all) when nothing was recording: nothing is known there (`connlog query gaps` lists them)"
            )
        }
        let dropped =
            try database.scalarInt(
                "SELECT count(*) FROM samples WHERE at BETWEEN ? AND ? AND destroys_lost > 0", [.integer(since), .integer(until)]) ?? 0
        if dropped > 0 {
            notes.append(
                "in \(dropped) sample\(dropped == 1 ? "" : "s") of the time asked about the kernel dropped destroy notices (connlog's buffer was full): closes there may lack their exact time, and connections that lived between those samples may be missing (`connlog query gaps` lists them)"
            )
        }
        if let first = try database.scalarInt("SELECT min(at) FROM samples"), let asked = parameters.since, asked < first {
            notes.append("recording began at \(TimeText.iso8601(first)); nothing is known before it")
        }
        if try database.scalarInt("SELECT count(*) FROM samples") == 0 {
            notes.append("the database holds no samples yet: run `connlog collect`")
        }
        return AnswerContext(columns: [], gaps: gaps, notes: notes)
    }
}
