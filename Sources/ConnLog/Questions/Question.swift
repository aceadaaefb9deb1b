/// What a question may be asked with.
public enum QuestionParameter: String, Sendable, CaseIterable {
    case since, until, limit, peer, port, state, bucket, counter
}

/// The values a question is asked with; nil means "not given".
public struct QuestionParameters: Sendable {
    /// Milliseconds since the epoch.
    public var since: Int64?
    public var until: Int64?
    /// At most this many rows.
    public var limit: Int?
    /// A remote (or, for the timeline, either) address as connlog writes it: `10.0.0.1`, `::1`.
    public var peer: String?
    public var port: Int?
    public var state: TCPState?
    /// Bucket length in milliseconds for `churn` and `counters`.
    public var bucket: Int64 = 60_000
    /// One counter for `counters`, e.g. `Tcp.RetransSegs`.
    public var counter: String?
    /// The current time, for "still not recording" at the end of `gaps`.
    public var now: Int64

    public init(
        since: Int64? = nil, until: Int64? = nil, limit: Int? = nil, peer: String? = nil, port: Int? = nil,
        state: TCPState? = nil, bucket: Int64 = 60_000, counter: String? = nil, now: Int64
    ) {
        self.since = since
        self.until = until
        self.limit = limit
        self.peer = peer
        self.port = port
        self.state = state
        self.bucket = bucket
        self.counter = counter
        self.now = now
    }

    /// Whether `parameter` was given; `bucket` always is.
    func isGiven(_ parameter: QuestionParameter) -> Bool {
        switch parameter {
        case .since: since != nil
        case .until: until != nil
        case .limit: limit != nil
        case .peer: peer != nil
        case .port: port != nil
        case .state: state != nil
        case .bucket: true
        case .counter: counter != nil
        }
    }

    /// The named SQL parameters every question's SQL may use.
    var sqlValues: [String: SQLValue] {
        [
            "since": .integer(since ?? 0), "until": .integer(until ?? Int64.max), "limit": .integer(Int64(limit ?? -1)),
            "peer": SQLValue(peer), "port": SQLValue(port), "state": state.map { .integer(Int64($0.rawValue)) } ?? .null,
            "bucket": .integer(max(1, bucket)), "counter": SQLValue(counter), "now": .integer(now),
        ]
    }
}

/// A canned question: a name, what it answers, what it accepts, and its SQL over the schema.
///
/// The column names and their order are part of the contract (SPEC.md), like a table's.
public struct Question: Sendable {
    public let name: String
    public let summary: String
    public let accepts: Set<QuestionParameter>
    public let columns: [String]
    /// Notes that always go with the answer, saying what it leaves out.
    public let caveats: [String]
    /// What the answer should say it could not tell, counted over the time asked about.
    public var blindSpots: Set<BlindSpot> = []
    /// SQL over the schema with the named parameters of ``QuestionParameters``: the definition.
    public let sql: String
    /// The same answer by a faster route (the running totals, or a better plan), where it covers what is asked.
    public var shortcut: Shortcut?

    /// The SQL that answers `parameters`: the shortcut where it applies, else the definition.
    func sql(for parameters: QuestionParameters) -> String {
        guard let shortcut, shortcut.scope.covers(parameters) else { return sql }
        return shortcut.sql
    }

    /// The question called `name`, or nil.
    public static func named(_ name: String) -> Question? { all.first { $0.name == name } }
}

/// SQL that gives exactly a question's answer for the parameters its scope covers, from the
/// running totals (`peer_totals`, `churn_minutes`, `stay_lengths`) or by a better plan than the
/// definition's.
public struct Shortcut: Sendable {
    /// The parameters the shortcut answers for: none of `absent` given, and, for bucketed
    /// answers from per-minute totals, buckets of whole minutes.
    public struct Scope: Sendable {
        public var absent: Set<QuestionParameter>
        public var wholeMinuteBuckets = false

        func covers(_ parameters: QuestionParameters) -> Bool {
            absent.allSatisfy { !parameters.isGiven($0) }
                && (!wholeMinuteBuckets || (parameters.bucket > 0 && parameters.bucket % 60_000 == 0))
        }
    }

    public let scope: Scope
    public let sql: String

    /// - Parameter absent: what must not be asked for: time bounds, say, when the SQL reads
    ///   whole-history totals (a plan SQLite cannot choose from bound values alone).
    init(absent: Set<QuestionParameter>, wholeMinuteBuckets: Bool = false, sql: String) {
        scope = Scope(absent: absent, wholeMinuteBuckets: wholeMinuteBuckets)
        self.sql = sql
    }
}

/// Something an answer's numbers hide unless it is said.
public enum BlindSpot: Sendable {
    /// Connections counted `ambiguous`, and in how many samples the reset counter could not tell.
    case ambiguousEndings
    /// Resets known from the reset counter alone, not from the connection's own report.
    case inferredResets
    /// Connections already open when observation began: their first_seen is a lower bound.
    case preexisting
    /// Sockets aborted or failed to connect between two samples, known per peer but not as
    /// connections (`unnamed_ends`).
    case unnamedEnds
}

/// SQL fragments the questions share.
enum Fragment {
    /// Milliseconds since the epoch as ISO-8601 UTC text.
    static func iso(_ expression: String) -> String {
        "strftime('%Y-%m-%dT%H:%M:%fZ', (\(expression)) / 1000.0, 'unixepoch')"
    }

    /// `addr:port`, IPv6 in brackets.
    static func endpoint(_ address: String, _ port: String, family: String = "c.family") -> String {
        "(CASE WHEN \(family) = 6 THEN '[' || \(address).text || ']' ELSE \(address).text END || ':' || \(port))"
    }

    /// Connections alive at some point in [since, until].
    static let alive = "c.first_seen <= :until AND (c.closed_at IS NULL OR c.closed_at >= :since)"
    /// The same set, found through the indexes on `closed_at` (closed since the window began)
    /// and on open connections: a question about a recent window reads only that window's
    /// connections. (Over the whole history it reads them all either way.)
    static let aliveRows = """
        c.first_seen <= :until AND c.id IN (
            SELECT id FROM connections WHERE closed_at >= :since UNION ALL SELECT id FROM connections WHERE closed_at IS NULL)
        """
    static let peerFilter = "(:peer IS NULL OR ra.text = :peer)"
    static let portFilter = "(:port IS NULL OR c.local_port = :port OR c.remote_port = :port)"
    /// Events with their sample (`s`), kind (`k`), connection (`c`), addresses (`la`, `ra`),
    /// state names (`fs`, `ts`) and program (`p`).
    static let eventRows = """
        FROM events e
            JOIN samples s ON s.id = e.sample_id
            JOIN event_kinds k ON k.code = e.kind
            JOIN connections c ON c.id = e.connection_id
            JOIN addresses la ON la.id = c.local_address
            JOIN addresses ra ON ra.id = c.remote_address
            LEFT JOIN tcp_states fs ON fs.code = e.from_state
            LEFT JOIN tcp_states ts ON ts.code = e.to_state
            LEFT JOIN programs p ON p.id = c.program_id
        """

    /// The running totals per peer, direction and service port (`t`), with the peer's address (`ra`).
    static let peerTotals = "FROM peer_totals t JOIN addresses ra ON ra.id = t.remote_address"
    /// 9999-12-31T23:59:59.999Z: an upper bound for "no end" that leaves room for arithmetic.
    static let farFuture = "253402300799999"

    /// The latest sample, standing in for "last seen" of a connection still open.
    static let latestSample = "(SELECT max(at) FROM samples)"
    /// Event ids from the first event of the earliest sample in [:since, :until] to the last event
    /// of the latest one: events are only ever added for the sample being recorded, so ids rise
    /// with sample ids, and a range lets `ORDER BY e.id LIMIT n` stop after n rows instead of
    /// sorting them all. The samples are bounded by id, not by time, because the clock can step
    /// back; a range can then also hold samples from outside the window, so callers also filter
    /// on the sample's time (``eventsInTime`` does).
    static func eventIDRange(alias: String) -> String {
        """
        \(alias).id BETWEEN
            (SELECT f.id FROM events f WHERE f.sample_id >= (SELECT min(id) FROM samples WHERE at BETWEEN :since AND :until)
             ORDER BY f.sample_id, f.id LIMIT 1)
        AND (SELECT l.id FROM events l WHERE l.sample_id <= (SELECT max(id) FROM samples WHERE at BETWEEN :since AND :until)
             ORDER BY l.sample_id DESC, l.id DESC LIMIT 1)
        """
    }

    /// The events (`e`, joined to their sample `s`) of the samples taken between :since and :until.
    static let eventsInTime = eventIDRange(alias: "e") + " AND s.at BETWEEN :since AND :until"
}
