/// Writing samples, and reading back what the differ needs to continue.
extension Store {
    /// Where the namespace's history stands: the tracker state and the current window.
    public struct Position: Sendable {
        public var tracker: Tracker.State
        /// The namespace's latest observation window, if any.
        public var windowID: Int64?
        /// Whether the namespace's last sample attributed sockets to processes.
        public var lastSampleAttributed: Bool = false
    }

    /// Everything the differ needs to continue the namespace's history after a restart:
    /// its open connections (the last sample's socket set), what the last sample closed,
    /// its last counters and boot id.
    public func position(namespace: UInt64) throws -> Position {
        let nextID = (try database.scalarInt("SELECT max(id) FROM connections") ?? 0) + 1
        guard
            let namespaceID = try database.scalarInt("SELECT id FROM namespaces WHERE inode = ?", [.integer(Int64(bitPattern: namespace))])
        else {
            return Position(tracker: Tracker.State(nextID: nextID), windowID: nil)
        }
        let window = try database.cached(
            """
            SELECT w.id, b.boot_id, (SELECT max(id) FROM samples WHERE window_id = w.id), w.interval_ms,
                   (SELECT min(id) FROM samples WHERE window_id = w.id), w.start_reason, w.source
            FROM windows w JOIN boots b ON b.id = w.boot_id
            WHERE w.namespace_id = ? ORDER BY w.id DESC LIMIT 1
            """)
        defer { window.reset() }
        try window.bind(namespaceID, at: 1)
        guard try window.step(), let lastSample = window.optionalInt64(2) else {
            return Position(tracker: Tracker.State(nextID: nextID), windowID: nil)
        }
        let windowID = window.int64(0)
        let bootID = window.text(1)
        let interval = window.int64(3)
        let firstSample = window.int64(4)
        // The closes of a reboot's first sample belong to the old boot: nothing may come back from them.
        let afterReboot = firstSample == lastSample && window.text(5) == WindowStart.reboot.rawValue
        let source = window.text(6)
        var lastAt: Int64 = 0
        var lastWindow = Ending.CounterWindow()
        var lastBefore: ResetCounters?
        var attributed = false
        try database.forEach(
            """
            SELECT at, attributed, resets_within, resets_around, unseen_opens, attributed_resets, estab_resets_before, opens_before
            FROM samples WHERE id = ?
            """, [.integer(lastSample)]
        ) {
            lastAt = $0.int64(0)
            attributed = $0.int(1) == 1
            lastWindow = Ending.CounterWindow(
                resetsWithin: $0.optionalInt64(2), resetsAround: $0.optionalInt64(3), unseenOpens: $0.optionalInt64(4),
                attributed: Int($0.optionalInt64(5) ?? 0))
            if let resets = $0.optionalInt64(6) { lastBefore = ResetCounters(estabResets: resets, opens: $0.optionalInt64(7)) }
        }

        var counters: [String: Int64] = [:]
        var names: [(Int64, String)] = []
        try database.forEach("SELECT id, name FROM counter_names") { names.append(($0.int64(0), $0.text(1))) }
        for (id, name) in names {
            let value = try database.scalarInt(
                """
                SELECT c.value FROM counters c JOIN samples s ON s.id = c.sample_id
                WHERE c.counter_id = ? AND c.sample_id BETWEEN ? AND ? AND s.window_id = ?
                ORDER BY c.sample_id DESC LIMIT 1
                """, [.integer(id), .integer(firstSample), .integer(lastSample), .integer(windowID)])
            if let value { counters[name] = value }
        }

        var open: [TrackedConnection] = []
        try loadConnections(where: "c.namespace_id = ? AND c.closed_at IS NULL", [.integer(namespaceID)]) { connection, _ in
            open.append(connection)
        }
        var justClosed: [SocketKey: TrackedConnection] = [:]
        var candidates: Set<Int64> = []
        var awaiting: [UInt64: Tracker.AwaitedClose] = [:]
        if !afterReboot {
            try loadConnections(
                where: "c.id IN (SELECT connection_id FROM events WHERE sample_id = ? AND kind = 3)", [.integer(lastSample)]
            ) { connection, basis in
                // Known from its destroy notice alone: no later sighting can be the same socket.
                guard !connection.betweenSamples else { return }
                justClosed[connection.key] = connection
                if basis == .counters { candidates.insert(connection.id) }
            }
            // Closes still owed their destroy notice (as Tracker.classify keeps them).
            try database.forEach(
                """
                SELECT x.cookie, c.id, c.closed_at, c.state, c.states_seen, c.direction, c.preexisting, c.end_basis
                FROM connections c JOIN connection_details x ON x.connection_id = c.id
                WHERE c.closed_at >= ? AND c.namespace_id = ? AND x.destroyed_at IS NULL AND x.between_samples = 0 AND c.state <> 6
                """, [.integer(lastAt - Tracker.awaitedFor), .integer(namespaceID)]
            ) {
                let opened = Ending.openedActively(
                    statesSeen: TCPStateSet(rawValue: UInt32(truncatingIfNeeded: $0.int64(4))),
                    direction: Direction(rawValue: $0.int(5)) ?? .outbound, preexisting: $0.int(6) != 0)
                awaiting[UInt64(bitPattern: $0.int64(0))] = Tracker.AwaitedClose(
                    connection: $0.int64(1), closedAt: $0.int64(2), lastState: TCPState(rawValue: UInt8(truncatingIfNeeded: $0.int(3))),
                    openedActively: opened, judgedByCounters: $0.optionalInt64(7) == Int64(EndBasis.counters.rawValue))
            }
        }

        var tracker = Tracker.State(
            openConnections: open, justClosed: justClosed, last: (lastAt, bootID, counters, interval), nextID: nextID,
            lastWindow: lastWindow, lastCandidates: candidates)
        tracker.lastCountersBeforeRead = lastBefore
        tracker.lastSource = source
        tracker.awaitingNotice = awaiting
        return Position(tracker: tracker, windowID: windowID, lastSampleAttributed: attributed)
    }

    private func loadConnections(
        where condition: String, _ values: [SQLValue], _ body: (TrackedConnection, EndBasis?) -> Void
    ) throws {
        // Many connections share a few addresses: each is decoded once.
        var addresses: [Int64: IPAddress] = [:]
        func address(_ row: Statement, id: Int32, bytes: Int32) -> IPAddress? {
            let key = row.int64(id)
            if let known = addresses[key] { return known }
            let decoded = IPAddress(bytes: row.blob(bytes))
            addresses[key] = decoded
            return decoded
        }
        try database.forEach(
            """
            SELECT c.id, la.bytes, c.local_port, ra.bytes, c.remote_port, c.state, c.states_seen, c.inode, c.uid,
                   c.direction, c.preexisting, c.first_seen, c.time_wait_at, c.max_retransmits, c.max_tx_queue,
                   c.max_rx_queue, c.pid, p.name, c.end_reason, c.local_address, c.remote_address,
                   x.cookie, x.between_samples, x.bytes_acked, x.bytes_received, x.segments_out, x.segments_in,
                   x.retransmitted_segments, x.rtt_us, x.destroyed_at, x.cwnd, c.end_basis, x.bytes_sent, x.bytes_retrans
            FROM connections c
            JOIN addresses la ON la.id = c.local_address
            JOIN addresses ra ON ra.id = c.remote_address
            LEFT JOIN programs p ON p.id = c.program_id
            LEFT JOIN connection_details x ON x.connection_id = c.id
            WHERE \(condition)
            """, values
        ) { row in
            guard let local = address(row, id: 19, bytes: 1), let remote = address(row, id: 20, bytes: 3) else { return }
            var owner: ProcessOwner?
            if let pid = row.optionalInt64(16) {
                owner = ProcessOwner(pid: Int32(truncatingIfNeeded: pid), program: row.optionalText(17) ?? "?")
            }
            var connection =
                TrackedConnection(
                    id: row.int64(0),
                    key: SocketKey(
                        local: Endpoint(address: local, port: UInt16(truncatingIfNeeded: row.int(2))),
                        remote: Endpoint(address: remote, port: UInt16(truncatingIfNeeded: row.int(4)))),
                    state: TCPState(rawValue: UInt8(truncatingIfNeeded: row.int(5))),
                    statesSeen: TCPStateSet(rawValue: UInt32(truncatingIfNeeded: row.int64(6))),
                    inode: UInt64(bitPattern: row.int64(7)), uid: UInt32(truncatingIfNeeded: row.int64(8)),
                    direction: Direction(rawValue: row.int(9)) ?? .outbound, preexisting: row.int(10) != 0,
                    firstSeen: row.int64(11), timeWaitAt: row.optionalInt64(12),
                    maxRetransmits: UInt32(truncatingIfNeeded: row.int64(13)),
                    maxTxQueue: UInt32(truncatingIfNeeded: row.int64(14)),
                    maxRxQueue: UInt32(truncatingIfNeeded: row.int64(15)), owner: owner)
            if let cookie = row.optionalInt64(21) {
                connection.cookie = UInt64(bitPattern: cookie)
                connection.betweenSamples = row.int(22) == 1
                connection.destroyedAt = row.optionalInt64(29)
                if let acked = row.optionalInt64(23) {
                    connection.traffic = Traffic(
                        bytesAcked: UInt64(bitPattern: acked), bytesReceived: UInt64(bitPattern: row.int64(24)),
                        bytesSent: UInt64(bitPattern: row.optionalInt64(32) ?? 0),
                        bytesRetransmitted: UInt64(bitPattern: row.optionalInt64(33) ?? 0),
                        segmentsOut: UInt32(truncatingIfNeeded: row.int64(25)), segmentsIn: UInt32(truncatingIfNeeded: row.int64(26)),
                        retransmittedSegments: UInt32(truncatingIfNeeded: row.int64(27)),
                        rttMicroseconds: UInt32(truncatingIfNeeded: row.int64(28)),
                        congestionWindow: UInt32(truncatingIfNeeded: row.optionalInt64(30) ?? 0))
                }
            }
            body(connection, row.optionalInt64(31).flatMap { EndBasis(rawValue: Int($0)) })
        }
    }

    /// What a sample is recorded with besides the diff.
    public struct SampleContext: Sendable {
        public var namespace: UInt64
        public var bootID: String
        /// The window the previous sample belonged to; ignored when the diff starts a window.
        public var windowID: Int64?
        /// The expected spacing of samples, in milliseconds.
        public var interval: Int64
        public var source: String
        public var malformedLines: Int
        public var readMicroseconds: Int64
        /// Whether sockets were attributed to processes in this sample.
        public var attributed: Bool

        public init(
            namespace: UInt64, bootID: String, windowID: Int64?, interval: Int64, source: String = "proc",
            malformedLines: Int = 0, readMicroseconds: Int64 = 0, attributed: Bool = false
        ) {
            self.namespace = namespace
            self.bootID = bootID
            self.windowID = windowID
            self.interval = interval
            self.source = source
            self.malformedLines = malformedLines
            self.readMicroseconds = readMicroseconds
            self.attributed = attributed
        }
    }

    /// Writes one sample (its record, window, counters, connections and events) in one
    /// transaction: all of it is stored, or none of it.
    ///
    /// - Returns: the id of the window the sample belongs to.
    @discardableResult
    public func record(_ diff: SampleDiff, context: SampleContext) throws -> Int64 {
        do {
            return try database.transaction(.immediate) { try write(diff, context: context) }
        } catch {
            forgetCachedIDs()
            if let error = error as? SQLiteError { throw Self.explain(error, path: path) }
            throw error
        }
    }

    private func write(_ diff: SampleDiff, context: SampleContext) throws -> Int64 {
        let namespaceID = try namespaceID(context.namespace)
        var windowID: Int64
        // Without a window to continue, the sample starts one as after a gap.
        let windowStart = diff.windowStart ?? (context.windowID == nil ? .gap : nil)
        if let windowStart {
            try database.cached(
                """
                INSERT INTO windows (namespace_id, boot_id, source, start_reason, started_at, ended_at, interval_ms, samples)
                VALUES (?, ?, ?, ?, ?, ?, ?, 1)
                """
            ).run([
                .integer(namespaceID), .integer(try bootRowID(context.bootID)), .text(context.source),
                .text(windowStart.rawValue), .integer(diff.at), .integer(diff.at), .integer(context.interval),
            ])
            windowID = database.lastInsertRowID
        } else {
            windowID = context.windowID!
            try database.cached("UPDATE windows SET ended_at = ?, samples = samples + 1 WHERE id = ?")
                .run([.integer(diff.at), .integer(windowID)])
        }

        // A sample after a gap or reboot (or the first) begins a run: its own id. Any other continues
        // the run of the namespace's previous sample.
        let beginsRun = windowStart?.isBlind == true
        try database.cached(
            """
            INSERT INTO samples (window_id, at, after, sockets, malformed, resets, reset_candidates, read_us, attributed, run,
                                 destroys, destroys_lost, estab_resets_before, opens_before, resets_within, resets_around,
                                 unseen_opens, attributed_resets)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,
                    CASE WHEN ?10 THEN NULL ELSE (SELECT s.run FROM samples s JOIN windows w ON w.id = s.window_id
                                                  WHERE w.namespace_id = ?11 ORDER BY s.id DESC LIMIT 1) END,
                    ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
            """
        ).run([
            .integer(windowID), .integer(diff.at), SQLValue(diff.after), .integer(Int64(diff.sockets)),
            .integer(Int64(context.malformedLines)), SQLValue(diff.resets), .integer(Int64(diff.resetCandidates)),
            .integer(context.readMicroseconds), .integer(context.attributed ? 1 : 0), .integer(beginsRun ? 1 : 0),
            .integer(namespaceID), SQLValue(diff.destroys.map(Int64.init)), SQLValue(diff.destroysLost.map(Int64.init)),
            SQLValue(diff.countersBeforeRead?.estabResets), SQLValue(diff.countersBeforeRead?.opens),
            SQLValue(diff.counterWindow.resetsWithin), SQLValue(diff.counterWindow.resetsAround),
            SQLValue(diff.counterWindow.unseenOpens), .integer(Int64(diff.counterWindow.attributed)),
        ])
        let sampleID = database.lastInsertRowID
        if beginsRun {
            try database.cached("UPDATE samples SET run = id WHERE id = ?").run([.integer(sampleID)])
        }

        let insertCounter = try database.cached("INSERT INTO counters (counter_id, sample_id, value) VALUES (?, ?, ?)")
        for (name, value) in diff.counterChanges.sorted(by: { $0.key < $1.key }) {
            try insertCounter.run([.integer(try counterID(name)), .integer(sampleID), .integer(value)])
        }
        let insertUnnamed = try database.cached("INSERT INTO unnamed_ends (sample_id, remote_address, ends) VALUES (?, ?, ?)")
        for (peer, ends) in diff.unnamedEnds {
            try insertUnnamed.run([.integer(sampleID), .integer(try addressID(peer)), .integer(Int64(ends))])
        }

        // OR FAIL on the statements that run once per connection or event: an error fails the
        // sample, whose transaction is rolled back whole anyway, so SQLite need not journal each
        // statement to undo it alone (as it would for one with triggers, such as the close).
        let insertConnection = try database.cached(
            """
            INSERT OR FAIL INTO connections (id, namespace_id, family, local_address, local_port, remote_address, remote_port,
                direction, preexisting, first_seen, state, states_seen, time_wait_at, max_retransmits, max_tx_queue,
                max_rx_queue, uid, inode, pid, program_id)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        for c in diff.opened {
            try insertConnection.run([
                .integer(c.id), .integer(namespaceID), .integer(Int64(c.key.family)),
                .integer(try addressID(c.key.local.address)), .integer(Int64(c.key.local.port)),
                .integer(try addressID(c.key.remote.address)), .integer(Int64(c.key.remote.port)),
                .integer(Int64(c.direction.rawValue)), .integer(c.preexisting ? 1 : 0), .integer(c.firstSeen),
                .integer(Int64(c.state.rawValue)), .integer(Int64(c.statesSeen.rawValue)), SQLValue(c.timeWaitAt),
                .integer(Int64(c.maxRetransmits)), .integer(Int64(c.maxTxQueue)), .integer(Int64(c.maxRxQueue)),
                .integer(Int64(c.uid)), .integer(Int64(bitPattern: c.inode)), SQLValue(c.owner.map { Int64($0.pid) }),
                SQLValue(try c.owner.map { try programID($0.program) }),
            ])
        }

        // What the netlink source adds to a connection (cookie, traffic, when the kernel freed it and
        // what it reported then).
        let details = try database.cached(
            """
            INSERT OR FAIL INTO connection_details (connection_id, cookie, between_samples, destroyed_at, end_unacked, end_unread,
                bytes_acked, bytes_received, segments_out, segments_in, retransmitted_segments, rtt_us, cwnd, bytes_sent,
                bytes_retrans)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (connection_id) DO UPDATE SET
                cookie = excluded.cookie, destroyed_at = COALESCE(excluded.destroyed_at, destroyed_at),
                end_unacked = COALESCE(excluded.end_unacked, end_unacked), end_unread = COALESCE(excluded.end_unread, end_unread),
                bytes_acked = COALESCE(excluded.bytes_acked, bytes_acked),
                bytes_received = COALESCE(excluded.bytes_received, bytes_received),
                segments_out = COALESCE(excluded.segments_out, segments_out),
                segments_in = COALESCE(excluded.segments_in, segments_in),
                retransmitted_segments = COALESCE(excluded.retransmitted_segments, retransmitted_segments),
                rtt_us = COALESCE(excluded.rtt_us, rtt_us), cwnd = COALESCE(excluded.cwnd, cwnd),
                bytes_sent = COALESCE(excluded.bytes_sent, bytes_sent), bytes_retrans = COALESCE(excluded.bytes_retrans, bytes_retrans)
            """)
        func writeDetails(_ c: TrackedConnection) throws {
            guard c.cookie != 0 else { return }
            try details.run(
                [
                    .integer(c.id), .integer(Int64(bitPattern: c.cookie)), .integer(c.betweenSamples ? 1 : 0), SQLValue(c.destroyedAt),
                    SQLValue(c.finalReport.map { Int64($0.unacknowledged) }), SQLValue(c.finalReport.map { Int64($0.unread) }),
                ] + Self.trafficValues(c.traffic))
        }
        for c in diff.opened { try writeDetails(c) }

        for id in diff.reopened {
            try database.cached("DELETE FROM events WHERE connection_id = ? AND kind = 3").run([.integer(id)])
            try database.cached(
                "UPDATE connection_details SET destroyed_at = NULL, end_unacked = NULL, end_unread = NULL WHERE connection_id = ?"
            ).run([.integer(id)])
            try database.cached(
                "UPDATE connections SET closed_at = NULL, last_seen = NULL, end_reason = NULL, end_basis = NULL, reset_by = NULL WHERE id = ?"
            )
            .run([.integer(id)])
        }

        let update = try database.cached(
            """
            UPDATE connections SET state = ?, states_seen = ?, time_wait_at = ?, max_retransmits = ?, max_tx_queue = ?,
                max_rx_queue = ?, uid = ?, inode = ?, pid = ?, program_id = ?
            WHERE id = ?
            """)
        for c in diff.updated {
            try update.run([
                .integer(Int64(c.state.rawValue)), .integer(Int64(c.statesSeen.rawValue)), SQLValue(c.timeWaitAt),
                .integer(Int64(c.maxRetransmits)), .integer(Int64(c.maxTxQueue)), .integer(Int64(c.maxRxQueue)),
                .integer(Int64(c.uid)), .integer(Int64(bitPattern: c.inode)), SQLValue(c.owner.map { Int64($0.pid) }),
                SQLValue(try c.owner.map { try programID($0.program) }), .integer(c.id),
            ])
            try writeDetails(c)
        }

        if let revised = diff.revisedPrevious {
            try database.cached(
                """
                UPDATE samples SET reset_candidates = ?, attributed_resets = ? WHERE id = (
                    SELECT max(s.id) FROM samples s JOIN windows w ON w.id = s.window_id
                    WHERE w.namespace_id = ? AND s.id < ?)
                """
            ).run([.integer(Int64(revised.candidates)), .integer(Int64(revised.attributed)), .integer(namespaceID), .integer(sampleID)])
        }
        let revise = try database.cached("UPDATE connections SET end_reason = ?, end_basis = ?, reset_by = ? WHERE id = ?")
        for (id, ending) in diff.revisedEndings { try revise.run(Self.endingValues(ending) + [.integer(id)]) }

        let close = try database.cached(
            "UPDATE OR FAIL connections SET closed_at = ?, last_seen = ?, end_reason = ?, end_basis = ?, reset_by = ? WHERE id = ?")
        for (c, ending) in diff.closed {
            try close.run([.integer(diff.at), SQLValue(diff.after)] + Self.endingValues(ending) + [.integer(c.id)])
            try writeDetails(c)
        }
        // A notice that came after the close (the upsert also makes the row of a connection read
        // from the proc tables, which has none). Retention shorter than the wait for a notice may
        // have removed the connection: a row for its id would then be an orphan.
        for late in diff.lateDestroys {
            guard try database.scalarInt("SELECT 1 FROM connections WHERE id = ?", [.integer(late.connection)]) != nil else {
                continue
            }
            try details.run(
                [
                    .integer(late.connection), .integer(Int64(bitPattern: late.cookie)), .integer(0), .integer(late.at),
                    .integer(Int64(late.report.unacknowledged)), .integer(Int64(late.report.unread)),
                ] + Self.trafficValues(late.traffic))
        }

        let insertEvent = try database.cached(
            "INSERT OR FAIL INTO events (sample_id, connection_id, kind, from_state, to_state) VALUES (?, ?, ?, ?, ?)")
        for event in diff.events {
            switch event {
            case .open(let id, let state):
                try insertEvent.run([.integer(sampleID), .integer(id), 1, .null, .integer(Int64(state.rawValue))])
            case .state(let id, let from, let to):
                try insertEvent.run([
                    .integer(sampleID), .integer(id), 2, .integer(Int64(from.rawValue)), .integer(Int64(to.rawValue)),
                ])
            case .close(let id, let last, _):
                try insertEvent.run([.integer(sampleID), .integer(id), 3, .integer(Int64(last.rawValue)), .null])
            }
        }
        try addToTotals(sample: sampleID)
        return windowID
    }

    /// The nine traffic columns of `connection_details`, in the order the upsert names them; NULL
    /// without tcp_info.
    static func trafficValues(_ t: Traffic?) -> [SQLValue] {
        [
            SQLValue(t.map { Int64(bitPattern: $0.bytesAcked) }), SQLValue(t.map { Int64(bitPattern: $0.bytesReceived) }),
            SQLValue(t.map { Int64($0.segmentsOut) }), SQLValue(t.map { Int64($0.segmentsIn) }),
            SQLValue(t.map { Int64($0.retransmittedSegments) }), SQLValue(t.map { Int64($0.rttMicroseconds) }),
            SQLValue(t.map { Int64($0.congestionWindow) }), SQLValue(t.map { Int64(bitPattern: $0.bytesSent) }),
            SQLValue(t.map { Int64(bitPattern: $0.bytesRetransmitted) }),
        ]
    }

    /// `end_reason`, `end_basis` and `reset_by` of an ending.
    static func endingValues(_ ending: Ending) -> [SQLValue] {
        [
            .integer(Int64(ending.reason.rawValue)), .integer(Int64(ending.basis.rawValue)),
            SQLValue(ending.resetBy.map { Int64($0.rawValue) }),
        ]
    }

    // MARK: Lookup rows, inserted on first use

    private func lookup(
        _ cache: ReferenceWritableKeyPath<Store, [String: Int64]>, _ key: String, select: String, insert: String
    ) throws -> Int64 {
        if let id = self[keyPath: cache][key] { return id }
        let id: Int64
        if let existing = try database.scalarInt(select, [.text(key)]) {
            id = existing
        } else {
            try database.cached(insert).run([.text(key)])
            id = database.lastInsertRowID
        }
        self[keyPath: cache][key] = id
        return id
    }

    func bootRowID(_ bootID: String) throws -> Int64 {
        try lookup(\.bootIDs, bootID, select: "SELECT id FROM boots WHERE boot_id = ?", insert: "INSERT INTO boots (boot_id) VALUES (?)")
    }

    func programID(_ name: String) throws -> Int64 {
        try lookup(\.programIDs, name, select: "SELECT id FROM programs WHERE name = ?", insert: "INSERT INTO programs (name) VALUES (?)")
    }

    func counterID(_ name: String) throws -> Int64 {
        try lookup(
            \.counterIDs, name, select: "SELECT id FROM counter_names WHERE name = ?", insert: "INSERT INTO counter_names (name) VALUES (?)"
        )
    }

    func namespaceID(_ inode: UInt64) throws -> Int64 {
        if let id = namespaceIDs[inode] { return id }
        let value = SQLValue.integer(Int64(bitPattern: inode))
        let id: Int64
        if let existing = try database.scalarInt("SELECT id FROM namespaces WHERE inode = ?", [value]) {
            id = existing
        } else {
            try database.cached("INSERT INTO namespaces (inode) VALUES (?)").run([value])
            id = database.lastInsertRowID
        }
        namespaceIDs[inode] = id
        return id
    }

    func addressID(_ address: IPAddress) throws -> Int64 {
        if let id = addressIDs[address] { return id }
        let bytes = SQLValue.blob(address.bytes)
        let id: Int64
        if let existing = try database.scalarInt("SELECT id FROM addresses WHERE bytes = ?", [bytes]) {
            id = existing
        } else {
            try database.cached("INSERT INTO addresses (family, bytes, text) VALUES (?, ?, ?)")
                .run([.integer(Int64(address.family)), bytes, .text(address.description)])
            id = database.lastInsertRowID
        }
        addressIDs[address] = id
        return id
    }
}
