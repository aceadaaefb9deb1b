import Foundation
import Testing

@testable import ConnLog

/// Every canned question over a database built from known samples, asserting exact rows.
@Suite("Canned questions over a known history")
struct QuestionTests {
    static let t0: Int64 = 1_700_000_000_000
    let directory: URL
    let store: Store

    static let listener = SocketKey(local: Endpoint(address: .ipv4Any, port: 5432), remote: Endpoint(address: .ipv4Any, port: 0))
    static let preexisting = key(5432, 40000, remote: "10.0.0.9")
    static let a1 = key(5432, 50001, remote: "10.0.0.1")
    static let a2 = key(5432, 50002, remote: "10.0.0.1")
    static let b1 = key(5432, 50003, remote: "10.0.0.2")
    static let failing = key(41000, 443, remote: "10.0.0.3")
    static let retransmitting = key(41001, 80, remote: "10.0.0.4")
    static let closingFirst = key(41002, 443, remote: "10.0.0.5")

    /// The story, one sample a second (see each line), with a gap from 5 s to 10 s.
    init() throws {
        directory = try temporaryDirectory()
        store = try Store(path: directory.appendingPathComponent("q.db").path, access: .write)
        let l = socket(Self.listener, .listen, inode: 1)
        let samples: [(Int64, [Sighting], Int64)] = [
            (0, [l, socket(Self.preexisting, .established, inode: 2)], 0),
            (
                1,
                [
                    l, socket(Self.preexisting, .established, inode: 2), socket(Self.a1, .established, inode: 10),
                    socket(Self.a2, .established, inode: 11), socket(Self.b1, .established, inode: 12),
                    socket(Self.failing, .synSent, inode: 13), socket(Self.retransmitting, .established, inode: 14, retransmits: 3),
                ], 0
            ),
            // a1 and a2 reset (two resets counted); b1's peer closes.
            (
                2,
                [
                    l, socket(Self.preexisting, .established, inode: 2), socket(Self.b1, .closeWait, inode: 12),
                    socket(Self.failing, .synSent, inode: 13), socket(Self.retransmitting, .established, inode: 14, retransmits: 3),
                ], 2
            ),
            // The connect fails; a1's 4-tuple is reused by a new connection; this side starts closing another.
            (
                3,
                [
                    l, socket(Self.preexisting, .established, inode: 2), socket(Self.b1, .lastAck, inode: 12),
                    socket(Self.a1, .established, inode: 20), socket(Self.retransmitting, .established, inode: 14, retransmits: 3),
                    socket(Self.closingFirst, .established, inode: 21),
                ], 2
            ),
            // b1 done; the retransmitting connection's key gets a new socket: a close and an open in one sample.
            (
                4,
                [
                    l, socket(Self.preexisting, .established, inode: 2), socket(Self.a1, .established, inode: 20),
                    socket(Self.retransmitting, .established, inode: 30), socket(Self.closingFirst, .timeWait, timer: 3, ticks: 5990),
                ], 2
            ),
            // The new a1 and the preexisting one go, one reset counted: ambiguous.
            (5, [l, socket(Self.retransmitting, .established, inode: 30), socket(Self.closingFirst, .timeWait, timer: 3, ticks: 5890)], 3),
            // After a gap: the TIME_WAIT went unseen.
            (10, [l, socket(Self.retransmitting, .established, inode: 30)], 3),
            (11, [socket(Self.retransmitting, .established, inode: 30)], 3),
        ]
        var tracker = Tracker()
        var window: Int64?
        var kernel = KernelCounters()
        for (second, sightings, resets) in samples {
            var snapshot = Snapshot(
                at: Self.t0 + second * 1000, namespace: 4_026_531_840, bootID: "boot", sightings: sightings)
            kernel.resets = resets
            kernel.count(&snapshot)
            let diff = tracker.apply(snapshot, expectedInterval: 1000)
            window = try store.record(diff, context: .init(namespace: snapshot.namespace, bootID: "boot", windowID: window, interval: 1000))
        }
    }

    func ask(_ name: String, _ adjust: (inout QuestionParameters) -> Void = { _ in }) throws -> (rows: [[String]], context: AnswerContext) {
        var parameters = QuestionParameters(now: Self.t0 + 11_500)
        adjust(&parameters)
        var rows: [[String]] = []
        let context = try store.ask(Question.named(name) ?? Question.rawEvents, parameters) { row in
            rows.append(row.map(Self.text))
        }
        return (rows, context)
    }

    static func text(_ value: SQLValue) -> String {
        switch value {
        case .null: "NULL"
        case .integer(let v): String(v)
        case .real(let v): String(v)
        case .text(let v): v
        case .blob: "blob"
        }
    }

    static func iso(_ second: Int64) -> String { TimeText.iso8601(t0 + second * 1000) }

    @Test func resetsRankPeersByResetsThenFailuresThenAmbiguity() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let answer = try ask("resets")
        #expect(
            answer.context.columns == [
                "peer", "resets", "failed_connects", "ambiguous", "connections", "last_reset", "reset_by_this_host", "reset_by_peer",
            ])
        // The proc source: no reset's sender is known.
        #expect(
            answer.rows == [
                ["10.0.0.1", "2", "0", "1", "3", Self.iso(2), "0", "0"],
                ["10.0.0.3", "0", "1", "0", "1", "NULL", "0", "0"],
                ["10.0.0.9", "0", "0", "1", "1", "NULL", "0", "0"],
                ["10.0.0.4", "0", "0", "0", "2", "NULL", "0", "0"],
                ["10.0.0.2", "0", "0", "0", "1", "NULL", "0", "0"],
                ["10.0.0.5", "0", "0", "0", "1", "NULL", "0", "0"],
            ])
        // The two resets come from the counter: two counted, two connections gone, nothing else opened.
        #expect(answer.context.notes.contains { $0.hasPrefix("2 of the resets were inferred from the kernel's reset counter") })
        // The gap is reported with the answer.
        #expect(answer.context.gaps == [Gap(from: Self.t0 + 5000, to: Self.t0 + 10_000, reason: "gap")])
        #expect(answer.context.notes.contains { $0.contains("1 gap") })
        #expect(answer.context.notes.contains { $0.hasPrefix("2 connection(s) ended `ambiguous`: ") })
        #expect(try ask("peers").context.notes.contains { $0.hasPrefix("1 connection(s) were already open when observation began") })
        #expect(try ask("resets") { $0.peer = "10.0.0.9" }.rows.count == 1)
        #expect(try ask("resets") { $0.until = Self.t0 + 1500 }.rows.allSatisfy { $0[1] == "0" })
    }

    @Test func failedConnectsByPeerAndPort() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(try ask("failed-connects").rows == [["10.0.0.3", "443", "1", Self.iso(3), Self.iso(3)]])
    }

    @Test func stateDurationsLeaveOutStaysCutByObservation() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        // ESTABLISHED stays: a1, a2, b1 and closingFirst 1 s each, the new a1 2 s. The listener and
        // the preexisting connection began before observation, the TIME_WAIT ended in the gap,
        // and the retransmitting connections are still open or were replaced (1 s, 3 s).
        let rows = try ask("state-durations").rows
        #expect(rows.first == ["ESTABLISHED", "6", "1.0", "1.5", "1.0", "3.0", "3.0"])
        #expect(
            Set(rows.dropFirst()) == [
                ["CLOSE_WAIT", "1", "1.0", "1.0", "1.0", "1.0", "1.0"],
                ["LAST_ACK", "1", "1.0", "1.0", "1.0", "1.0", "1.0"],
                ["SYN_SENT", "1", "2.0", "2.0", "2.0", "2.0", "2.0"],
            ])
        #expect(try ask("state-durations") { $0.state = .timeWait }.rows.isEmpty)
    }

    @Test func timelineListsACloseBeforeTheOpenThatReplacesIt() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let rows = try ask("timeline") { $0.port = 80 }.rows
        #expect(
            rows == [
                [
                    Self.iso(1), "open", "NULL", "ESTABLISHED", "127.0.0.1:41001", "10.0.0.4:80", "NULL", "NULL", "NULL", "NULL", "NULL",
                    "NULL", "NULL",
                ],
                [
                    Self.iso(4), "close", "ESTABLISHED", "NULL", "127.0.0.1:41001", "10.0.0.4:80", "NULL", "NULL", "NULL", "NULL", "NULL",
                    "vanished", "NULL",
                ],
                [
                    Self.iso(4), "open", "NULL", "ESTABLISHED", "127.0.0.1:41001", "10.0.0.4:80", "NULL", "NULL", "NULL", "NULL", "NULL",
                    "NULL", "NULL",
                ],
            ])
        #expect(try ask("timeline") { $0.limit = 2 }.rows.count == 2)
        // Entering LAST_ACK, and leaving it by the close.
        #expect(try ask("timeline") { $0.state = .lastAck }.rows.map { $0[1] } == ["state", "close"])
    }

    /// The timeline and the raw events select by a range of event ids; that range must hold
    /// exactly the events of the samples taken in the window asked about.
    @Test func timeWindowsKeepExactlyTheEventsOfTheirSamples() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let t0 = Self.t0
        let windows: [(Int64?, Int64?)] = [
            (nil, nil), (t0, t0 + 4000), (t0 + 1000, t0 + 1000), (t0 + 1500, t0 + 3500), (t0 + 6000, t0 + 9000),
            (t0 + 100_000, nil), (nil, t0), (nil, t0 - 1), (t0 + 3000, t0 + 1000), (t0 + 4000, nil),
        ]
        for (since, until) in windows {
            var expected: [String] = []
            try store.database.forEach(
                "SELECT s.at FROM events e JOIN samples s ON s.id = e.sample_id WHERE s.at BETWEEN ? AND ? ORDER BY e.id",
                [.integer(since ?? 0), .integer(until ?? Int64.max)]
            ) { expected.append(TimeText.iso8601($0.int64(0))) }
            let timeline = try ask("timeline") {
                $0.since = since
                $0.until = until
            }
            #expect(timeline.rows.map { $0[0] } == expected, "since \(String(describing: since)), until \(String(describing: until))")
            let raw = try ask("events") {
                $0.since = since
                $0.until = until
            }
            #expect(raw.rows.map { $0[1] } == expected)
        }
    }

    /// The questions find a time window's rows through indexes (connections closed since it
    /// began, events by id range, only the connections with an event in it); over any window they
    /// must answer exactly what the plain definitions of "alive" and "in the window" give.
    @Test func indexedWindowsAnswerLikeThePlainDefinitions() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let t0 = Self.t0
        try Self.expectIndexedWindowsMatchPlain(
            store, now: t0 + 11_500,
            windows: [
                (nil, nil), (t0 + 1500, nil), (t0 + 2000, t0 + 3000), (t0 + 4500, t0 + 11_000), (t0 + 10_000, nil), (nil, t0 + 1000),
                (t0 + 3000, t0 + 3000),
            ])
    }

    /// After the clock steps back, sample ids no longer rise with time: windows must still hold
    /// exactly the samples taken in them.
    @Test func windowsStayExactWhenTheClockStepsBack() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let stepped = try Store(path: directory.appendingPathComponent("clock.db").path, access: .write)
        var tracker = Tracker()
        var window: Int64?
        let t0 = Self.t0
        for (count, offset) in [0, 1000, 2000, 3000, 1500, 2500, 3500].enumerated() {
            // One more connection each sample, and the oldest one leaves every other sample: every sample has events.
            let sightings = (0...count).filter { $0 % 2 == 0 || $0 == count }.map {
                socket(key(UInt16(41000 + $0), 80, remote: "10.0.1.\($0 % 3 + 1)"), .established, inode: UInt64(500 + $0))
            }
            let snapshot = Snapshot(
                at: t0 + Int64(offset), namespace: 1, bootID: "boot", sightings: sightings, counters: [Snapshot.estabResetsCounter: 0])
            let diff = tracker.apply(snapshot, expectedInterval: 1000)
            window = try stepped.record(diff, context: .init(namespace: 1, bootID: "boot", windowID: window, interval: 1000))
        }
        try Self.expectIndexedWindowsMatchPlain(
            stepped, now: t0 + 4000,
            windows: [(t0 + 1200, t0 + 2200), (t0 + 1800, t0 + 2600), (t0 + 1000, t0 + 1600), (t0 + 2400, nil), (nil, t0 + 1500)])
        // The window before the step holds the sample at +2000 and the one after it at +1500.
        let store = stepped
        var parameters = QuestionParameters(since: t0 + 1200, until: t0 + 2200, now: t0 + 4000)
        parameters.limit = nil
        var times: Set<String> = []
        _ = try store.ask(try #require(Question.named("timeline")), parameters) { times.insert(Self.text($0[0])) }
        #expect(times == [TimeText.iso8601(t0 + 1500), TimeText.iso8601(t0 + 2000)])
    }

    /// Runs each windowed question over `windows` in `store` and compares its rows with the same
    /// SQL written with the plain definitions.
    static func expectIndexedWindowsMatchPlain(_ store: Store, now: Int64, windows: [(Int64?, Int64?)]) throws {
        let plainEvents = "e.sample_id IN (SELECT id FROM samples WHERE at BETWEEN :since AND :until)"
        let restriction = "WHERE e.connection_id IN (SELECT w.connection_id FROM events w WHERE \(Fragment.eventIDRange(alias: "w")))"
        for name in ["resets", "peers", "ports", "churn", "state-durations", "timeline"] {
            let question = try #require(Question.named(name))
            let plain = question.sql.replacingOccurrences(of: Fragment.aliveRows, with: Fragment.alive)
                .replacingOccurrences(of: restriction, with: "").replacingOccurrences(of: Fragment.eventsInTime, with: plainEvents)
            #expect(plain != question.sql, "\(name) no longer uses an indexed window; update this test")
            for (since, until) in windows {
                var parameters = QuestionParameters(since: since, until: until, now: now)
                parameters.limit = nil
                var asked: [[String]] = []
                _ = try store.ask(question, parameters) { asked.append($0.map(Self.text)) }
                let expected = try Self.rows(of: plain, in: store, parameters.sqlValues)
                #expect(asked == expected, "\(name) over \(String(describing: since))...\(String(describing: until))")
            }
        }
    }

    /// The rows `sql` gives in `store`, each value as ``text(_:)`` writes it.
    static func rows(of sql: String, in store: Store, _ values: [String: SQLValue] = [:]) throws -> [[String]] {
        let statement = try store.database.cached(sql)
        defer { statement.reset() }
        try statement.bind(named: values)
        var rows: [[String]] = []
        while try statement.step() {
            rows.append((0..<statement.columnCount).map { text(statement.value($0)) })
        }
        return rows
    }

    @Test func peersCountOpensClosesAndResets() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let rows = try ask("peers").rows
        // Read from the proc tables: no bytes known.
        #expect(rows.first == ["10.0.0.1", "3", "3", "3", "2", "NULL", "NULL", Self.iso(1), Self.iso(4)])
        #expect(rows.contains(["10.0.0.9", "1", "0", "1", "0", "NULL", "NULL", Self.iso(0), Self.iso(4)]))
    }

    @Test func listenersSayWhenTheyAppearedAndDisappeared() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(try ask("listeners").rows == [["0.0.0.0:5432", "NULL", Self.iso(0), Self.iso(10), "NULL", Self.iso(11), "closed"]])
        #expect(try ask("ports") { $0.until = Self.t0 + 1500 }.rows.map { $0[5] } == ["0", "0"])
    }

    @Test func churnPerBucket() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let rows = try ask("churn") { $0.bucket = 5000 }.rows
        #expect(
            rows == [
                [Self.iso(0), "8", "5", "2", "1"],
                [Self.iso(5), "0", "2", "0", "0"],
                // The TIME_WAIT that ended inside the gap is not counted at the time recording
                // resumed, which leaves that bucket with nothing to list.
            ])
    }

    @Test func retransmitsWorstFirst() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(
            try ask("retransmits").rows == [
                // From the proc tables: no segment counts.
                ["10.0.0.4", "127.0.0.1:41001", "10.0.0.4:80", "3", "NULL", "NULL", Self.iso(1), Self.iso(4), "vanished", "NULL"]
            ])
    }

    /// Two namespaces whose first windows retention removed, each left with a window that
    /// continued its run: every increase is one namespace's own counter's, never the difference
    /// between the two.
    @Test func counterIncreasesStayInTheirNamespaceAfterPruning() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: directory.appendingPathComponent("pruned.db").path, access: .write)
        let start: Int64 = 1_700_002_800_000  // on the hour
        var trackers = [Tracker(), Tracker()]
        var windows: [Int64?] = [nil, nil]
        // Seconds and the two namespaces' EstabResets, at 1 s spacing and then at 2 s: the change of
        // spacing starts an 'interval' window, which continues the run.
        let readings: [(Int64, Int64, Int64, Int64)] = [
            (0, 1000, 100, 5000), (1, 1000, 110, 5001), (2, 1000, 120, 5002), (4, 2000, 130, 5003), (6, 2000, 150, 5008),
        ]
        for (second, interval, one, two) in readings {
            for (index, value) in [one, two].enumerated() {
                let namespace = UInt64(index + 1)
                let snapshot = Snapshot(
                    at: start + second * 1000, namespace: namespace, bootID: "boot", sightings: [],
                    counters: [Snapshot.estabResetsCounter: value])
                let diff = trackers[index].apply(snapshot, expectedInterval: interval)
                windows[index] = try store.record(
                    diff, context: .init(namespace: namespace, bootID: "boot", windowID: windows[index], interval: interval))
            }
        }
        try store.prune(before: start + 3500)
        #expect(try store.database.scalarInt("SELECT count(*) FROM windows WHERE start_reason = 'first'") == 0)
        var rows: [[String]] = []
        _ = try store.ask(Question.counters, QuestionParameters(bucket: 3_600_000, now: start + 7000)) { rows.append($0.map(Self.text)) }
        // 150 - 130 and 5008 - 5003; the growth into each window's first kept sample is unknown, and so
        // is the time it covered: 2 s a namespace.
        #expect(rows == [[TimeText.iso8601(start), "Tcp.EstabResets", "25", "6.25"]])
    }

    @Test func counterIncreasesNeverCrossAGap() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let rows = try ask("counters") {
            $0.bucket = 5000; $0.counter = "Tcp.EstabResets"
        }.rows
        // +2 at 2 s, +1 at 5 s; the window after the gap starts a new baseline.
        // Rates divide by the time the samples covered: 4 s in the first bucket, 1 s in the second.
        #expect(rows == [[Self.iso(0), "Tcp.EstabResets", "2", "0.5"], [Self.iso(5), "Tcp.EstabResets", "1", "1.0"]])
        // A bucket shorter than the sampling interval still gives the rate over what a sample covered.
        #expect(try ask("counters") { $0.bucket = 100 }.rows.first == [Self.iso(1), "Tcp.ActiveOpens", "5", "5.0"])
        #expect(try ask("counters") { $0.bucket = 100 }.rows.dropFirst().first == [Self.iso(2), "Tcp.EstabResets", "2", "2.0"])
        #expect(try ask("counters") { $0.counter = "Tcp.PassiveOpens" }.rows.isEmpty)
    }

    @Test func gapsListWhenNobodyWasRecording() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(try ask("gaps").rows == [["4026531840", Self.iso(5), Self.iso(10), "5.0", "gap"]])
        let later = try ask("gaps") { $0.now = Self.t0 + 60_000 }.rows
        #expect(later.last == ["4026531840", Self.iso(11), "NULL", "49.0", "not recording since"])
    }

    @Test func portsByClassOfTheServicePort() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(
            try ask("ports").rows == [
                ["well-known", "4", "0", "4", "0", "0"],
                ["registered", "6", "5", "0", "1", "2"],
            ])
    }

    @Test func everyQuestionHasItsColumnsAndASummary() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(
            Question.all.map(\.name) == [
                "resets", "failed-connects", "state-durations", "timeline", "peers", "traffic", "listeners", "churn",
                "retransmits", "counters", "gaps", "ports",
            ])
        for question in Question.all {
            let answer = try ask(question.name)
            #expect(!question.summary.isEmpty)
            #expect(answer.rows.allSatisfy { $0.count == question.columns.count }, "\(question.name)")
        }
    }
}
