import ConnLog

#if canImport(Glibc)
    import Glibc
#endif

// connlog-bench TASK [name=value ...]: one in-process measurement per run, printed as one line
// of name=value pairs for scripts/bench. Whole-process comparisons (cat, ss, netstat,
// `connlog collect --once`) are timed by hyperfine in scripts/bench.

let arguments = Array(CommandLine.arguments.dropFirst())
guard let task = arguments.first else {
    fail(
        "usage: connlog-bench floor|diag|sample|synthesize|parse|burst|generate|upgrade|questions|prune [name=value ...]; see scripts/bench"
    )
}
let options: [String: String] = {
    var options: [String: String] = [:]
    for argument in arguments.dropFirst() {
        guard let equals = argument.firstIndex(of: "=") else { fail("expected name=value, got \(argument)") }
        options[String(argument[..<equals])] = String(argument[argument.index(after: equals)...])
    }
    return options
}()
@MainActor func option(_ name: String, _ fallback: Int) -> Int {
    guard let text = options[name] else { return fallback }
    guard let value = Int(text) else { fail("\(name) must be a whole number, got \(text)") }
    return value
}
/// source=proc (the default: the floor is the proc tables) or netlink.
@MainActor func sourceOption() -> SocketSourceChoice {
    guard let source = SocketSourceChoice(rawValue: options["source"] ?? "proc"), source != .auto else {
        fail("source must be proc or netlink")
    }
    return source
}
let runs = option("runs", 10)
let procRoot = options["proc-root"] ?? "/proc"

do {
    switch task {
    case "floor":
        // Reading the two tables and nothing else: what the kernel charges for the text.
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        let times = timings(runs: runs) {
            for name in ["tcp", "tcp6"] {
                let fd = open("\(procRoot)/net/\(name)", O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { fail("cannot open \(procRoot)/net/\(name)") }
                while buffer.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
                close(fd)
            }
        }
        report("floor", [("median_ms", format(Spread(times).median)), ("spread_ms", "\(Spread(times))")])

    case "diag":
        // The sock_diag netlink dump of every TCP socket, both families: what a netlink source reads.
        let diag = try SockDiag()
        var sightings: [Sighting] = []
        let times = try timings(runs: runs) {
            sightings.removeAll(keepingCapacity: true)
            try diag.dump(into: &sightings)
        }
        report("diag", [("sockets", "\(sightings.count)"), ("median_ms", format(Spread(times).median)), ("spread_ms", "\(Spread(times))")])

    case "sample":
        // A sidecar's steady state: the same sockets sample after sample (read, parse, diff, commit).
        let processes = options["processes"] == "1"
        let db = scratchDatabase("sample")
        defer { removeDatabase(db) }
        let source = sourceOption()
        let recorder = try Recorder(
            databasePath: db, options: .init(procRoot: procRoot, attributeProcesses: processes, interval: 1000, source: source))
        var sockets = 0
        for _ in 0..<3 { sockets = try recorder.recordSample().sockets }
        var reads: [Double] = []
        let times = try timings(runs: runs) {
            let summary = try recorder.recordSample()
            reads.append(Double(summary.readMicroseconds) / 1000)
        }
        report(
            "sample",
            [
                ("sockets", "\(sockets)"), ("source", recorder.socketSource), ("processes", processes ? "1" : "0"),
                ("median_ms", format(Spread(times).median)),
                ("spread_ms", "\(Spread(times))"), ("read_ms", format(Spread(reads).median)), ("peak_rss_mib", format(peakResidentMiB())),
            ])

    case "synthesize":
        guard let root = options["proc-root"] else { fail("synthesize needs proc-root=DIR") }
        try SyntheticTable.procRoot(at: root, count: option("sockets", 100_000))

    case "parse":
        let count = option("sockets", 100_000)
        let bytes = Array(SyntheticTable.ipv4(count: count).utf8)
        var sightings: [Sighting] = []
        sightings.reserveCapacity(count)
        var malformed = 0
        let times = timings(runs: runs) {
            sightings.removeAll(keepingCapacity: true)
            malformed = bytes.withUnsafeBytes { SocketTableParser.parse($0, family: 4, into: &sightings) }
        }
        guard sightings.count == count, malformed == 0 else { fail("parsed \(sightings.count) of \(count), \(malformed) malformed") }
        // The reference: one pass that reads every byte and does a little with each, as a plain C loop would.
        var checksum: UInt64 = 0
        let scans = timings(runs: runs) {
            bytes.withUnsafeBytes { raw in
                var sum: UInt64 = 0
                var lines: UInt64 = 0
                for byte in raw {
                    sum = sum &* 31 &+ UInt64(byte)
                    if byte == 10 { lines &+= 1 }
                }
                checksum &+= sum &+ lines
            }
        }
        let parse = Spread(times).median * 1_000_000 / Double(count)
        let scan = Spread(scans).median * 1_000_000 / Double(count)
        report(
            "parse",
            [
                ("lines", "\(count)"), ("ns_per_line", format(parse)), ("scan_ns_per_line", format(scan)),
                ("ratio", format(parse / scan)), ("bytes_per_line", "\(bytes.count / count)"), ("checksum", "\(checksum % 10)"),
            ])

    case "burst":
        // N connections open in one sample and all close in the next. On the netlink source
        // (source=netlink) each has a cookie and traffic, and the close sample takes a destroy
        // notice for each with its final traffic: every connection's details are written twice.
        let count = option("connections", 100_000)
        let netlink = sourceOption() == .netlink
        let db = scratchDatabase("burst")
        defer { removeDatabase(db) }
        let store = try Store(path: db, access: .write)
        var tracker = Tracker()
        let local = IPAddress(ipv4: 0x7F00_0001)
        let sightings = (0..<count).map { index -> Sighting in
            let peer: UInt32 = 0x7F01_0000 | UInt32(index / 50_000 + 1) << 8 | UInt32(index % 200 + 1)
            let remote = Endpoint(address: IPAddress(ipv4: peer), port: UInt16(10_000 + index % 50_000))
            var sighting = Sighting(
                key: SocketKey(local: Endpoint(address: local, port: 443), remote: remote), state: .established, inode: UInt64(1000 + index)
            )
            if netlink {
                sighting.cookie = UInt64(1000 + index)
                sighting.traffic = Traffic(bytesAcked: 1001, bytesReceived: 2001, segmentsOut: 5, segmentsIn: 6, rttMicroseconds: 40)
            }
            return sighting
        }
        let start: Int64 = 1_790_000_000_000
        var windowID: Int64?
        var phases: [(String, Double, Int)] = []
        // The close sample's diff, endings decided (Tracker.apply): not part of the commit.
        var diffMilliseconds = 0.0
        for (offset, table) in [sightings, []].enumerated() {
            var snapshot = Snapshot(
                at: start + Int64(offset) * 1000, namespace: 1, bootID: "b", sightings: table, counters: ["Tcp.EstabResets": 0])
            if netlink {
                snapshot.source = "netlink"
                snapshot.destroyed =
                    offset == 0
                    ? []
                    : sightings.map {
                        DestroyNotice(
                            at: snapshot.at - 10, key: $0.key, cookie: $0.cookie,
                            traffic: Traffic(
                                bytesAcked: 5002, bytesReceived: 9002, bytesSent: 5000, segmentsOut: 9, segmentsIn: 10, rttMicroseconds: 40),
                            established: true)
                    }
            }
            let diffing = now()
            let diff = tracker.apply(snapshot, expectedInterval: 1000)
            if offset == 1 { diffMilliseconds = Double(now() - diffing) / 1_000_000 }
            let began = now()
            windowID = try store.record(
                diff, context: .init(namespace: 1, bootID: "b", windowID: windowID, interval: 1000, source: snapshot.source))
            phases.append((offset == 0 ? "open" : "close", Double(now() - began) / 1_000_000, diff.events.count))
        }
        // SQLite's own rate for the same rows: a plain INSERT into a copy of the events table and its indexes.
        let reference = scratchDatabase("burst-reference")
        defer { removeDatabase(reference) }
        let plain = try Database(path: reference, mode: .readWrite(create: true))
        try plain.enableWriteAheadLog()
        try store.database.forEach(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'events' AND type IN ('table', 'index') AND sql IS NOT NULL ORDER BY type DESC"
        ) {
            row in
            try plain.execute(row.text(0))
        }
        var rows: [[SQLValue]] = []
        var columns = 0
        try store.database.forEach("SELECT * FROM events WHERE kind = 3") { row in
            columns = Int(row.columnCount)
            rows.append((0..<row.columnCount).map { row.value($0) })
        }
        let insert = "INSERT INTO events VALUES (\(Array(repeating: "?", count: columns).joined(separator: ", ")))"
        let began = now()
        try plain.transaction {
            let statement = try plain.cached(insert)
            for row in rows { try statement.run(row) }
        }
        let referenceMs = Double(now() - began) / 1_000_000
        let close = phases[1]
        let details = try store.database.scalarInt("SELECT count(*) FROM connection_details WHERE destroyed_at IS NOT NULL") ?? 0
        let noticed = netlink ? count : 0
        guard details == noticed else { fail("burst: \(details) connections have their destroy notice, not \(noticed)") }
        // Each notice decides its connection's ending (graceful, by its byte counts).
        let decided = try store.database.scalarInt("SELECT count(*) FROM connections WHERE end_basis = 2 AND end_reason = 4") ?? 0
        guard decided == noticed else { fail("burst: \(decided) endings decided by their notice, not \(noticed)") }
        report(
            "burst",
            [
                ("source", netlink ? "netlink" : "proc"), ("connections", "\(count)"), ("open_ms", format(phases[0].1)),
                ("close_ms", format(close.1)), ("close_diff_ms", format(diffMilliseconds)),
                ("close_events", "\(close.2)"), ("events_per_s", "\(Int(Double(close.2) / close.1 * 1000))"),
                ("sqlite_plain_ms", format(referenceMs)), ("sqlite_plain_rows_per_s", "\(Int(Double(rows.count) / referenceMs * 1000))"),
            ])

    case "generate":
        guard let db = options["db"] else { fail("generate needs db=PATH") }
        removeDatabase(db)
        let history = History(events: option("events", 10_000_000), peers: option("peers", 2000))
        let began = now()
        let samples = try {
            let store = try Store(path: db, access: .write)
            return try history.generate(into: store) { sample, events in
                printError("\rsample \(sample), \(events) events")
            }
        }()
        printError("\n")
        let seconds = Double(now() - began) / 1e9
        let database = try Database(path: db, mode: .readWrite(create: false))
        try database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        let sizes = try bytesByObject(database)
        let events = try database.scalarInt("SELECT count(*) FROM events") ?? 0
        let connections = try database.scalarInt("SELECT count(*) FROM connections") ?? 0
        var tables: [String: Int64] = [:]
        try database.forEach("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')") { row in
            tables[row.text(1), default: 0] += sizes[row.text(0)] ?? 0
        }
        let file = sizes.values.reduce(0, +)
        report(
            "generate",
            [
                ("samples", "\(samples)"), ("events", "\(events)"), ("connections", "\(connections)"),
                ("seconds", format(seconds)), ("file_mib", format(Double(file) / 1_048_576)),
                ("bytes_per_event", format(Double(tables["events"] ?? 0) / Double(max(1, events)))),
                ("bytes_per_connection", format(Double(tables["connections"] ?? 0) / Double(max(1, connections)))),
                ("file_bytes_per_event", format(Double(file) / Double(max(1, events)))),
            ])

    case "upgrade":
        // Brings a kept history database to this build's schema (opening it for writing migrates it).
        guard let db = options["db"] else { fail("upgrade needs db=PATH") }
        let began = now()
        _ = try Store(path: db, access: .write)
        report("upgrade", [("ms", format(Double(now() - began) / 1_000_000))])

    case "prune":
        // Retention as a collector runs it (batches of 2000 rows), over the oldest `days` of a
        // history: what deleting history costs while the running totals follow every deleted row.
        guard let db = options["db"] else { fail("prune needs db=PATH") }
        let store = try Store(path: db, access: .write)
        func count(_ table: String) throws -> Int64 { try store.database.scalarInt("SELECT count(*) FROM \(table)") ?? 0 }
        let (events, connections) = (try count("events"), try count("connections"))
        let cutoff = (try store.database.scalarInt("SELECT min(at) FROM samples") ?? 0) + Int64(option("days", 1)) * 86_400_000
        let began = now()
        while try store.prune(before: cutoff, batchSize: 2000, maxBatches: 1000).more {}
        let milliseconds = Double(now() - began) / 1_000_000
        let deletedEvents = events - (try count("events"))
        report(
            "prune",
            [
                ("events", "\(deletedEvents)"), ("connections", "\(connections - (try count("connections")))"),
                ("ms", format(milliseconds)), ("events_per_s", format(Double(deletedEvents) / max(milliseconds, 1) * 1000)),
            ])

    case "questions":
        guard let db = options["db"] else { fail("questions needs db=PATH") }
        let store = try Store(path: db, access: .read)
        let latest = try store.database.scalarInt("SELECT max(at) FROM samples") ?? 0
        let middle =
            try store.database.scalarInt("SELECT at FROM samples ORDER BY at LIMIT 1 OFFSET (SELECT count(*) / 2 FROM samples)") ?? 0
        // The whole history, and the last two hours: what an operator asks during an incident.
        let whole = QuestionParameters(limit: 20, now: latest)
        let recent = QuestionParameters(since: latest - 7_200_000, limit: 20, now: latest)
        var measured: [(String, Spread, Int, Spread, Int)] = []
        for question in Question.all {
            var rows = 0
            var recentRows = 0
            let times = try timings(runs: runs) {
                rows = 0
                _ = try store.ask(question, whole) { _ in rows += 1 }
            }
            let recentTimes = try timings(runs: runs) {
                recentRows = 0
                _ = try store.ask(question, recent) { _ in recentRows += 1 }
            }
            measured.append((question.name, Spread(times), rows, Spread(recentTimes), recentRows))
        }
        func netstat(at moment: Int64) throws -> (Spread, Int) {
            var count = 0
            let times = try timings(runs: runs) {
                count = 0
                _ = try store.socketTable(at: moment, state: nil, includeListeners: false, now: latest) { _ in count += 1 }
            }
            return (Spread(times), count)
        }
        let (middleTable, middleRows) = try netstat(at: middle)
        let (recentTable, recentRows) = try netstat(at: latest - 3_600_000)
        // netstat --at is one moment: mid-history in the first column, an hour ago in the second.
        measured.append(("netstat --at", middleTable, middleRows, recentTable, recentRows))
        // The straightforward way to the state-durations answer: every stay from raw events.
        var referenceRows = 0
        let reference = try timings(runs: max(1, runs / 3)) {
            referenceRows = 0
            try store.database.forEach(
                """
                WITH stays AS (
                    SELECT e.to_state AS state, (LEAD(s.at) OVER (PARTITION BY e.connection_id ORDER BY e.id) - s.at) / 1000.0 AS seconds
                    FROM events e JOIN samples s ON s.id = e.sample_id
                )
                SELECT state, count(*), avg(seconds) FROM stays WHERE seconds IS NOT NULL GROUP BY state
                """
            ) { _ in referenceRows += 1 }
        }
        for (name, spread, rows, recentSpread, recentRows) in measured {
            report(
                "question",
                [
                    ("name", name), ("median_ms", format(spread.median)), ("spread_ms", "\(spread)"), ("rows", "\(rows)"),
                    ("recent_median_ms", format(recentSpread.median)), ("recent_spread_ms", "\(recentSpread)"),
                    ("recent_rows", "\(recentRows)"),
                ])
        }
        report(
            "question",
            [
                ("name", "reference:state-stays-by-window-function"), ("median_ms", format(Spread(reference).median)),
                ("spread_ms", "\(Spread(reference))"), ("rows", "\(referenceRows)"), ("recent_median_ms", "0"),
                ("recent_spread_ms", "-"), ("recent_rows", "-"),
            ])
        let check = try timings(runs: 1) { _ = try store.integrityProblems(thorough: false) }
        report("quick_check", [("ms", format(check[0]))])

    default:
        fail("unknown task \(task)")
    }
} catch {
    fail("\(error)")
}
