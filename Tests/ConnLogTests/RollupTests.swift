import Foundation
import Testing

@testable import ConnLog

/// The running totals (`peer_totals`, `churn_minutes`, `stay_lengths`) are kept by triggers through every way
/// history changes: samples, closes taken back, reasons revised, retention, a clock that steps
/// back, gaps and a reboot. Random histories, recorded through the real differ and store, must
/// leave them equal to a rebuild from the raw rows, and every shortcut must answer exactly like
/// its question's definition.
@Suite("Running totals answer like the raw rows")
struct RollupTests {
    static let peers = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "127.0.0.1", "192.0.2.7"]

    /// One simulated socket: the states it is seen in, one step at a time, then gone.
    struct Live {
        var key: SocketKey
        var inode: UInt64
        var states: [TCPState]
        var step = 0
        var state: TCPState? { step < states.count ? states[step] : nil }
    }

    static let lives: [[TCPState]] = [
        [.established, .timeWait],
        [.established],  // gone from ESTABLISHED: a reset, a vanished close or ambiguous, by the counter
        [.established, .closeWait],
        [.established, .closeWait, .lastAck],
        [.established, .finWait1, .finWait2, .timeWait],
        [.synSent],  // a failed connect
        [.synReceived],  // a failed handshake
        [.established, .established, .established, .established],
    ]

    /// A random history through the real differ: opens on several peers and ports, every kind of
    /// ending, sockets missing from one read (closes taken back, reasons revised), gaps, a clock
    /// that steps back, a listener that comes and goes, and a reboot.
    struct RandomHistory {
        var random: SplitMix64
        var tracker = Tracker()
        var window: Int64?
        var live: [Live] = []
        var nextInode: UInt64 = 100
        var nextPort: UInt16 = 30_000
        var resets: Int64 = 0
        var opens: Int64 = 0
        var bootID = "boot-1"
        var at: Int64
        let first: Int64
        var listening: [UInt16: UInt64] = [5432: 1, 80: 2]
        var takebacks = 0
        var samples = 0
        /// Notices held back a sample, as the kernel tells of a socket only when its last file
        /// descriptor closes; and how many the differ took as late.
        var heldBack: [DestroyNotice] = []
        var lateNotices = 0
        /// Whether samples may come from netlink (false: what versions before 5 could record).
        let netlink: Bool

        init(seed: UInt64, netlink: Bool = true) {
            self.netlink = netlink
            random = SplitMix64(state: seed)
            at = 1_700_000_000_000 + Int64.random(in: 0..<60_000, using: &random)
            first = at
        }

        /// A destroy notice for `key` with one of the endings the kernel reports, chosen at random:
        /// graceful either way a connection opened, reset with nothing or something unread, aborted
        /// by this host (disconnected), or with byte counts no rule explains.
        mutating func ending(_ key: SocketKey, cookie: UInt64, established: Bool, at: Int64) -> DestroyNotice {
            let sent = UInt64.random(in: 0...5000, using: &random)
            var key = key
            var traffic: Traffic? = Traffic(bytesAcked: sent + 2, bytesReceived: 7, bytesSent: sent)
            var unread: UInt32 = 0
            switch Int.random(in: 0..<6, using: &random) {
            case 0: traffic?.bytesAcked = sent + 1
            case 1: traffic?.bytesAcked = sent
            case 2:
                traffic?.bytesAcked = sent + 1
                unread = 40
            case 3:
                key = SocketKey(
                    local: Endpoint(address: .ipv4Any, port: key.local.port), remote: Endpoint(address: key.remote.address, port: 0))
                traffic = nil
            case 4: traffic?.bytesAcked = sent * 3 + 7
            default: break
            }
            return DestroyNotice(at: at, key: key, cookie: cookie, traffic: traffic, established: established, unread: unread)
        }

        mutating func recordSample(into store: Store) throws {
            samples += 1
            // Time moves on by about 20 s; now and then a gap, a step back, or a reboot.
            let roll = Int.random(in: 0..<100, using: &random)
            if roll < 3 {
                at += 200_000
            } else if roll < 6 {
                at -= 45_000
            } else {
                at += 20_000 + Int64.random(in: -2000...2000, using: &random)
            }
            if samples == 90 {
                bootID = "boot-2"
                live.removeAll()
                heldBack.removeAll()
            }
            // A listener goes away now and then, and comes back.
            if Int.random(in: 0..<40, using: &random) == 0 {
                if listening[80] == nil {
                    listening[80] = nextInode
                    nextInode += 1
                } else {
                    listening[80] = nil
                }
            }

            // Most samples come from netlink, with cookies and the kernel's destroy notices: the
            // sockets gone since the previous sample, and some that lived and died in between.
            // Samples 40 to 49 read the proc tables (a change of source starts a window).
            let netlink = self.netlink && !(40..<50).contains(samples)
            var destroyed = heldBack.map {
                var notice = $0
                notice.at = at - 700
                return notice
            }
            heldBack.removeAll()
            var abrupt = 0
            var next: [Live] = []
            for var connection in live {
                if Bool.random(using: &random) {
                    let was = connection.state
                    connection.step += 1
                    if connection.state == nil {
                        if was == .established || was == .closeWait { abrupt += 1 }
                        let notice = ending(connection.key, cookie: connection.inode, established: was != .synSent, at: at - 500)
                        if Int.random(in: 0..<4, using: &random) == 0 {
                            heldBack.append(notice)
                        } else {
                            destroyed.append(notice)
                        }
                        continue
                    }
                }
                next.append(connection)
            }
            live = next
            for _ in 0..<Int.random(in: 0...2, using: &random) {
                let established = Int.random(in: 0..<4, using: &random) > 0
                if established { abrupt += 1 }
                let key = SocketKey(
                    local: Endpoint(address: ipv4("127.0.0.1"), port: nextPort),
                    remote: Endpoint(address: ipv4(RollupTests.peers.randomElement(using: &random)!), port: 443))
                nextPort = nextPort == 60_000 ? 30_000 : nextPort + 1
                destroyed.append(ending(key, cookie: nextInode, established: established, at: at - 300))
                nextInode += 1
                opens += 1
            }
            for _ in 0..<Int.random(in: 0...4, using: &random) {
                let peer = ipv4(RollupTests.peers.randomElement(using: &random)!)
                let ephemeral = nextPort
                nextPort = nextPort == 60_000 ? 30_000 : nextPort + 1
                let states = RollupTests.lives.randomElement(using: &random)!
                let inbound = states.first != .synSent && (states.first == .synReceived || Bool.random(using: &random))
                let key =
                    inbound
                    ? SocketKey(
                        local: Endpoint(address: ipv4("127.0.0.1"), port: [5432, 80].randomElement(using: &random)!),
                        remote: Endpoint(address: peer, port: ephemeral))
                    : SocketKey(
                        local: Endpoint(address: ipv4("127.0.0.1"), port: ephemeral),
                        remote: Endpoint(address: peer, port: [443, 8080, 55_000].randomElement(using: &random)!))
                live.append(Live(key: key, inode: nextInode, states: states))
                nextInode += 1
                opens += 1
            }
            // The kernel counts some, all or none of the abrupt endings as resets, some of them
            // while the sockets are read; and now and then a connection no sample sees.
            resets += Int64(Int.random(in: 0...abrupt, using: &random))
            let duringRead = Int64(Int.random(in: 0...1, using: &random))
            opens += Int64(Int.random(in: 0...1, using: &random))

            var sightings = listening.sorted { $0.key < $1.key }.map { port, inode in
                socket(
                    SocketKey(local: Endpoint(address: .ipv4Any, port: port), remote: Endpoint(address: .ipv4Any, port: 0)), .listen,
                    inode: inode)
            }
            for connection in live {
                // A socket missing from one read comes back in the next: its close is taken back.
                if Int.random(in: 0..<25, using: &random) == 0 {
                    takebacks += 1
                    continue
                }
                sightings.append(socket(connection.key, connection.state!, inode: connection.inode))
            }
            if netlink {
                // Traffic grows as the samples go; a socket without tcp_info (TIME_WAIT) has none.
                for index in sightings.indices {
                    sightings[index].cookie = sightings[index].inode
                    if sightings[index].state != .timeWait && sightings[index].state != .listen {
                        sightings[index].traffic = Traffic(
                            bytesAcked: UInt64(samples) * 100 + sightings[index].inode, bytesReceived: UInt64(samples) * 7)
                    }
                }
            }
            var snapshot = Snapshot(at: at, namespace: 7, bootID: bootID, sightings: sightings)
            snapshot.countersBeforeRead = ResetCounters(estabResets: resets, opens: opens)
            resets += duringRead
            snapshot.counters = [Snapshot.estabResetsCounter: resets, "Tcp.ActiveOpens": opens, "Tcp.PassiveOpens": 0]
            snapshot.source = netlink ? "netlink" : "proc"
            snapshot.destroyed = netlink ? destroyed : nil
            let diff = tracker.apply(snapshot, expectedInterval: 20_000)
            lateNotices += diff.lateDestroys.count
            window = try store.record(
                diff, context: .init(namespace: 7, bootID: bootID, windowID: window, interval: 20_000, source: snapshot.source))
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6] as [UInt64])
    func totalsFollowEveryChangeAndShortcutsAnswerLikeTheirDefinitions(seed: UInt64) throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: directory.appendingPathComponent("r.db").path, access: .write)
        var history = RandomHistory(seed: seed)
        var pruned = 0
        // The endings the totals had to follow, summed over the checks.
        var endings: [EndReason: Int] = [:]
        for sample in 0..<160 {
            try history.recordSample(into: store)
            if sample % 40 == 39 {
                // Retention in small batches, as a collector does it.
                pruned += try store.prune(before: history.at - 600_000, batchSize: 5, maxBatches: 10_000).deleted
            }
            if sample % 20 == 19 {
                for reason in [EndReason.reset, .ambiguous, .failedConnect] {
                    endings[reason, default: 0] += Int(
                        try store.database.scalarInt(
                            "SELECT count(*) FROM connections WHERE end_reason = ?", [.integer(Int64(reason.rawValue))]) ?? 0)
                }
                try Self.expectTotalsMatchRebuild(store, after: "sample \(sample)")
                try Self.expectShortcutsMatchDefinitions(store, first: history.first, last: history.at, random: &history.random)
            }
        }
        #expect(history.takebacks > 0)
        #expect(history.lateNotices > 0)
        #expect(pruned > 0)
        #expect(endings.count == 3 && endings.values.allSatisfy { $0 > 0 }, "\(endings)")
    }

    /// Events deleted in any order, not only oldest first as retention and take-backs delete them,
    /// leave the stays exactly what the remaining events bound.
    @Test func staysFollowEventsDeletedInAnyOrder() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: directory.appendingPathComponent("d.db").path, access: .write)
        var history = RandomHistory(seed: 42)
        for _ in 0..<80 { try history.recordSample(into: store) }
        var remaining = try QuestionTests.rows(of: "SELECT id FROM events", in: store).map { Int64($0[0])! }
        #expect(remaining.count > 200)
        var deleted = 0
        while remaining.count > 20 {
            let id = remaining.remove(at: Int.random(in: 0..<remaining.count, using: &history.random))
            try store.database.execute("DELETE FROM events WHERE id = \(id)")
            deleted += 1
            if deleted % 25 == 0 { try Self.expectTotalsMatchRebuild(store, after: "\(deleted) deletions") }
        }
    }

    /// A database recorded by version 2, before any totals, gets them from its history when
    /// upgraded, and keeps them from then on.
    @Test func anUpgradedDatabaseGetsTotalsFromItsHistory() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("v2.db").path
        var history = RandomHistory(seed: 99, netlink: false)
        do {
            // Recording at version 2 is recording without the later schema: the same rows.
            let store = try Store(path: path, access: .write)
            for _ in 0..<60 { try history.recordSample(into: store) }
            // Undo the versions after 2, newest first: drop what each created, and recreate the
            // indexes it dropped as earlier versions made them. (A trigger a version dropped is not
            // recreated: every trigger comes from version 3 or later, whose undo drops it anyway.)
            for migration in Migration.all.filter({ $0.version > 2 }).reversed() {
                let earlier = Migration.all.filter { $0.version < migration.version }.flatMap { $0.sql.split(separator: "\n") }
                var drops = ""
                var recreates = ""
                var views = ""
                for line in migration.sql.split(separator: "\n") {
                    let words = line.split(separator: " ")
                    if line.hasPrefix("CREATE VIEW ") {
                        // Views go first (a table or column they read cannot go while they stand),
                        // and come back as the last earlier version defined them.
                        drops = "DROP VIEW IF EXISTS \(words[2]);" + drops
                        let earlierSQL = Migration.all.filter { $0.version < migration.version }.map(\.sql).joined(separator: "\n")
                        if let start = earlierSQL.range(of: "CREATE VIEW \(words[2]) AS", options: .backwards) {
                            views += String(earlierSQL[start.lowerBound...].prefix { $0 != ";" }) + ";"
                        }
                    } else if line.hasPrefix("CREATE TABLE ") || line.hasPrefix("CREATE INDEX ") || line.hasPrefix("CREATE TRIGGER ") {
                        drops += "DROP \(words[1]) IF EXISTS \(words[2]);"
                    } else if line.hasPrefix("ALTER TABLE ") && words[3] == "ADD" {
                        // After the triggers that read the column are gone.
                        recreates += "ALTER TABLE \(words[2]) DROP COLUMN \(words[5]);"
                    } else if line.hasPrefix("DROP INDEX ") {
                        let name = words[2].trimmingCharacters(in: [";"])
                        recreates += try #require(earlier.last { $0.hasPrefix("CREATE INDEX \(name) ") }) + "\n"
                    }
                }
                try store.database.execute(drops + recreates + views + "PRAGMA user_version = \(migration.version - 1);")
            }
        }
        let store = try Store(path: path, access: .write)
        #expect(try store.database.userVersion() == Migration.latestVersion)
        #expect(
            try store.database.scalarInt("SELECT sum(connections) FROM peer_totals")
                == store.database.scalarInt("SELECT count(*) FROM connections"))
        try Self.expectShortcutsMatchDefinitions(store, first: history.first, last: history.at, random: &history.random)
        for _ in 0..<40 { try history.recordSample(into: store) }
        try Self.expectTotalsMatchRebuild(store, after: "sample 100")
        try Self.expectShortcutsMatchDefinitions(store, first: history.first, last: history.at, random: &history.random)
    }

    /// The totals equal what their migration's rebuild computes from the raw rows.
    static func expectTotalsMatchRebuild(_ store: Store, after moment: String) throws {
        for table in ["peer_totals", "churn_minutes", "stay_lengths"] {
            let migration = try #require(Migration.all.first { $0.sql.contains("INSERT INTO \(table)\n") })
            var rebuild = try #require(
                migration.sql.components(separatedBy: "INSERT INTO \(table)\n").last?.components(separatedBy: ";").first)
            // A later version's definition, where one recounts the table as a view.
            if Migration.all.contains(where: { $0.sql.contains("CREATE VIEW \(table)_recounted AS") }) {
                rebuild = "SELECT * FROM \(table)_recounted"
            }
            // Not stay_lengths' bucket: a generated column.
            let columns = table == "stay_lengths" ? "state, milliseconds, stays" : "*"
            var kept = try QuestionTests.rows(of: "SELECT \(columns) FROM \(table) ORDER BY 1, 2, 3", in: store).map {
                $0.joined(separator: " ")
            }
            var rebuilt = try QuestionTests.rows(of: "SELECT * FROM (\(rebuild)) ORDER BY 1, 2, 3", in: store).map {
                $0.joined(separator: " ")
            }
            // A minute whose events all went keeps a row of zeros where the rebuild has none.
            if table == "churn_minutes" {
                kept.removeAll { $0.hasSuffix(" 0 0 0 0") }
                rebuilt.removeAll { $0.hasSuffix(" 0 0 0 0") }
            }
            #expect(kept == rebuilt, "\(table) after \(moment)")
        }
        // The buckets sum their lengths, and a length or bucket whose last stay went is gone.
        #expect(
            try QuestionTests.rows(of: "SELECT * FROM stay_length_buckets ORDER BY 1, 2", in: store)
                == QuestionTests.rows(
                    of: """
                        SELECT state, bucket, sum(stays), sum(stays * milliseconds) FROM stay_lengths
                        GROUP BY state, bucket HAVING sum(stays) > 0 ORDER BY 1, 2
                        """, in: store), "stay_length_buckets after \(moment)")
        #expect(try store.database.scalarInt("SELECT count(*) FROM stay_lengths WHERE stays <= 0") == 0)
        // A clock that stepped back begins a run: no stay spans it, so none is negative.
        #expect(try store.database.scalarInt("SELECT count(*) FROM stay_lengths WHERE milliseconds < 0") == 0)
    }

    /// Every question with a shortcut, over parameters its scope covers, answers like its SQL definition.
    static func expectShortcutsMatchDefinitions(_ store: Store, first: Int64, last: Int64, random: inout SplitMix64) throws {
        var asked: [QuestionParameters] = []
        for peer in [nil] + peers {
            asked.append(QuestionParameters(peer: peer, now: last))
        }
        for state in [TCPState.established, .timeWait, .closeWait, .synSent] {
            asked.append(QuestionParameters(state: state, now: last))
        }
        for port in [443, 5432, 55_000] {
            asked.append(QuestionParameters(port: port, now: last))
            asked.append(QuestionParameters(peer: peers[0], port: port, now: last))
        }
        for _ in 0..<6 {
            let since = Int64.random(in: first - 60_000...last, using: &random)
            let until = Int64.random(in: since...last + 60_000, using: &random)
            let bucket: Int64 = [60_000, 120_000, 300_000].randomElement(using: &random)!
            asked.append(QuestionParameters(since: since, until: until, bucket: bucket, now: last))
            asked.append(QuestionParameters(since: since, bucket: bucket, now: last))
            asked.append(QuestionParameters(until: until, bucket: bucket, now: last))
            asked.append(QuestionParameters(since: since, until: since + Int64.random(in: 0..<90_000, using: &random), now: last))
        }
        for question in Question.all {
            guard let shortcut = question.shortcut else { continue }
            var used = 0
            for parameters in asked where shortcut.scope.covers(parameters) {
                used += 1
                var answer: [[String]] = []
                _ = try store.ask(question, parameters) { answer.append($0.map(QuestionTests.text)) }
                let expected = try QuestionTests.rows(of: question.sql, in: store, parameters.sqlValues)
                #expect(
                    answer == expected,
                    "\(question.name) since \(String(describing: parameters.since)) until \(String(describing: parameters.until)) peer \(parameters.peer ?? "-") state \(String(describing: parameters.state)) bucket \(parameters.bucket)"
                )
            }
            #expect(used >= 5, "\(question.name): its shortcut answered \(used) of the parameter sets")
        }
        // The note on resets not told per connection reads the totals over the whole history, and
        // the rows of a time asked: asked of all time, the two agree.
        for peer in [nil] + peers {
            let whole = try store.blindSpotNotes([.inferredResets], QuestionParameters(peer: peer, now: last))
            let allTime = try store.blindSpotNotes([.inferredResets], QuestionParameters(since: 0, until: Int64.max, peer: peer, now: last))
            #expect(whole == allTime, "peer \(peer ?? "-")")
        }
    }
}
