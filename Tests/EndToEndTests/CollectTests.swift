import ConnLog
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The built binary against real loopback sockets. Serialized: the kernel's reset counter is
/// shared by the whole network namespace, and these tests read it. Every suite that opens and
/// closes TCP connections is nested here, so none closes a connection inside another's window.
@Suite("connlog collect and status, end to end", .serialized)
struct CollectTests {
    let directory: URL
    var db: String { directory.appendingPathComponent("connlog.db").path }

    init() throws { directory = try temporaryDirectory() }

    func collectOnce(_ extra: [String] = []) throws {
        let outcome = try run(["collect", "--once", "--db", db] + extra)
        #expect(outcome.status == 0, "collect --once failed: \(outcome.stderr)")
    }

    @Test func aResetIsRecordedAsReset() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let listener = try listenIPv4()
        defer { close(listener.fd) }
        // Any process on the host may close a connection in the same window, and then the counter
        // cannot say whose reset it counted: the window is judged ambiguous, as it should be. Such a
        // window is tried again, up to three times, on a new pair.
        var reasons: [[String]] = []
        var window: [[String]] = []
        for _ in 1...3 {
            let client = try connectIPv4(to: listener.port)
            let server = try acceptOne(listener.fd)
            defer { close(server) }
            let clientPort = localPort(client)
            try collectOnce()

            // What was recorded matches what ss sees right now.
            let seenBySS = try establishedBySS(port: listener.port)
            let recorded = Set(
                try query(
                    db, "SELECT local, remote FROM connections_v WHERE state = 'ESTABLISHED' AND (local = ?1 OR remote = ?1)",
                    [.text("127.0.0.1:\(listener.port)")]
                ).map { $0.joined(separator: " ") })
            #expect(seenBySS.count == 2)
            #expect(recorded == seenBySS)
            // This test process holds both ends, and the collector found it as `netstat -p` would.
            let owner = try query(
                db, "SELECT DISTINCT pid FROM connections_v WHERE (local = ?1 AND remote = ?2) OR (local = ?2 AND remote = ?1)",
                [.text("127.0.0.1:\(clientPort)"), .text("127.0.0.1:\(listener.port)")])
            #expect(owner == [["\(getpid())"]])

            setLingerZero(client)
            close(client)
            try collectOnce()

            reasons = try query(
                db,
                "SELECT direction, end_reason FROM connections_v WHERE (local = ?1 AND remote = ?2) OR (local = ?2 AND remote = ?1) ORDER BY direction",
                [.text("127.0.0.1:\(clientPort)"), .text("127.0.0.1:\(listener.port)")])
            window = try query(db, "SELECT resets >= reset_candidates, reset_candidates >= 2 FROM samples ORDER BY id DESC LIMIT 1")
            if window.first?.first == "1" { break }
            #expect(reasons == [["inbound", "ambiguous"], ["outbound", "ambiguous"]], "a window with others' closes")
        }
        #expect(reasons == [["inbound", "reset"], ["outbound", "reset"]])
        #expect(window == [["1", "1"]])
    }

    @Test func aGracefulCloseThroughTimeWaitIsAnActiveCloseAcrossRuns() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let listener = try quietListenerIPv4()  // asked about by port below
        defer { close(listener.fd) }
        let client = try connectIPv4(to: listener.port)
        let server = try acceptOne(listener.fd)
        let clientPort = localPort(client)
        try collectOnce()
        let before = Int64(Date().timeIntervalSince1970 * 1000)

        close(client)  // FIN: the client closes first and ends in TIME_WAIT
        var byte: UInt8 = 0
        #expect(recv(server, &byte, 1, 0) == 0)
        close(server)
        usleep(100_000)
        try collectOnce()

        let filter = "local = '127.0.0.1:\(clientPort)' AND remote = '127.0.0.1:\(listener.port)'"
        let waiting = try query(db, "SELECT id, state, end_reason, time_wait_at IS NOT NULL FROM connections_v WHERE \(filter)")
        #expect(waiting.count == 1)
        #expect(waiting.first?[1] == "TIME_WAIT")
        #expect(waiting.first?[2] == "NULL")
        let entered =
            try query(db, "SELECT time_wait_at FROM connections WHERE id = ?", [.text(waiting.first?[0] ?? "0")]).first.flatMap {
                Int64($0[0])
            } ?? 0
        // Between the sample that saw it ESTABLISHED and the one that saw it in TIME_WAIT.
        let sampled = try query(db, "SELECT min(at), max(at) FROM samples").first.map { $0.compactMap { Int64($0) } } ?? []
        #expect(sampled.count == 2)
        #expect(entered > (sampled.first ?? .max) && entered <= (sampled.last ?? 0))
        #expect(entered >= before - 1000)

        // TIME_WAIT lasts 60 s on Linux; the third run, another process, sees it gone.
        #expect(waitUntil(seconds: 75) { !procListsLocalPort(clientPort) })
        try collectOnce()
        let ended = try query(db, "SELECT id, end_reason, closed_at IS NOT NULL FROM connections_v WHERE \(filter)")
        #expect(ended == [[waiting.first?[0] ?? "?", "active_close", "1"]])
        let events = try query(
            db, "SELECT event, from_state, to_state FROM events_v WHERE connection_id = ? ORDER BY id", [.text(ended.first?[0] ?? "0")])
        #expect(events == [["open", "NULL", "ESTABLISHED"], ["state", "ESTABLISHED", "TIME_WAIT"], ["close", "TIME_WAIT", "NULL"]])
        #expect(try query(db, "SELECT count(*), sum(samples) FROM windows") == [["1", "3"]])

        // How long it sat in TIME_WAIT: Linux's fixed 60 s, give or take the sampling.
        let durations = try run([
            "query", "state-durations", "--state", "TIME_WAIT", "--port", "\(listener.port)", "--format", "json", "--db", db,
        ])
        let object = try JSONSerialization.jsonObject(with: Data(durations.stdout.utf8)) as? [String: Any]
        let row = (object?["rows"] as? [[String: Any]])?.first
        #expect(row?["state"] as? String == "TIME_WAIT")
        #expect(row?["count"] as? Int == 1)
        let seconds = row?["max_s"] as? Double ?? 0
        #expect(seconds > 58 && seconds < 70, "TIME_WAIT lasted \(seconds) s")
    }

    @Test func sigtermFinishesTheSampleAndExitsZero() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let collector = try start(["collect", "--interval", "200ms", "--db", db])
        #expect(waitUntil(seconds: 20) { ((try? query(db, "SELECT count(*) FROM samples").first?.first).flatMap { Int($0) } ?? 0) >= 3 })
        #expect(CollectorLock.holder(databasePath: db) == collector.process.processIdentifier)
        collector.signal(SIGTERM)
        let outcome = collector.finish()
        #expect(outcome.status == 0)
        #expect(!outcome.stderr.contains("failed"), "\(outcome.stderr)")
        #expect(CollectorLock.holder(databasePath: db) == nil)
        #expect(try query(db, "PRAGMA integrity_check") == [["ok"]])
        #expect(try query(db, "SELECT (SELECT sum(samples) FROM windows) = (SELECT count(*) FROM samples)") == [["1"]])
        #expect(try query(db, "SELECT mode, stopped_at IS NOT NULL FROM collectors") == [["loop", "1"]])
    }

    @Test func aSecondCollectorIsRefused() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let first = try start(["collect", "--interval", "100ms", "--db", db])
        #expect(waitUntil(seconds: 20) { CollectorLock.holder(databasePath: db) == first.process.processIdentifier })
        let second = try run(["collect", "--once", "--db", db])
        #expect(second.status != 0)
        #expect(second.stderr.contains("already recording"))
        #expect(second.stderr.contains("pid \(first.process.processIdentifier)"))
        first.signal(SIGINT)
        #expect(first.finish().status == 0)
        try collectOnce()
    }

    @Test func statusDescribesWhatWasRecorded() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let listener = try listenIPv6()
        defer { close(listener.fd) }
        let client = try connectIPv6(to: listener.port)
        defer { close(client) }
        let server = try acceptOne(listener.fd)
        defer { close(server) }
        try collectOnce()
        try collectOnce()
        let local = try query(db, "SELECT local FROM connections_v WHERE remote = ?", [.text("[::1]:\(listener.port)")])
        #expect(local == [["[::1]:\(localPort(client))"]])

        let table = try run(["status", "--db", db])
        #expect(table.status == 0)
        #expect(table.stdout.contains("schema version  \(Migration.latestVersion)"))
        #expect(table.stdout.contains("samples         2"))
        let json = try run(["status", "--db", db, "--format", "json"])
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(object?["samples"] as? Int == 2)
        #expect(object?["gaps"] as? Int == 0)
        #expect((object?["open_connections"] as? Int ?? 0) >= 3)
        #expect(object?["collector_pid"] is NSNull)
    }

    @Test func noProcessesSkipsAttribution() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let listener = try listenIPv4()
        defer { close(listener.fd) }
        try collectOnce(["--no-processes"])
        #expect(try query(db, "SELECT pid FROM connections_v WHERE local = ?", [.text("127.0.0.1:\(listener.port)")]) == [["NULL"]])
    }

    @Test func anUnreadableProcRootIsAClearErrorAndCreatesNothing() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let missing = directory.appendingPathComponent("no-such-proc").path
        let outcome = try run(["collect", "--once", "--db", db, "--proc-root", missing])
        #expect(outcome.status == 1)
        #expect(outcome.stderr.contains("\(missing)/net/tcp"))
        #expect(!FileManager.default.fileExists(atPath: db))
    }

    @Test func aDatabaseFromANewerConnlogIsRefusedUntouched() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        try collectOnce()
        let store = try Database(path: db, mode: .readWrite(create: false))
        try store.execute("PRAGMA user_version = \(Migration.latestVersion + 1)")
        try store.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        let before = try Data(contentsOf: URL(fileURLWithPath: db))
        let outcome = try run(["collect", "--once", "--db", db])
        #expect(outcome.status == 1)
        #expect(outcome.stderr.contains("newer than this connlog knows"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: db)) == before)
        #expect(try run(["status", "--db", db]).status == 1)
    }

    @Test func theBinaryWorksCopiedAloneWithTheDefaultDatabase() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let copy = directory.appendingPathComponent("connlog")
        try FileManager.default.copyItem(at: connlogBinary, to: copy)
        let outcome = try run(["collect", "--once"], executable: copy, directory: directory, environment: ["CONNLOG_DB": ""])
        #expect(outcome.status == 0, "\(outcome.stderr)")
        let created = directory.appendingPathComponent("connlog.db").path
        #expect(try query(created, "PRAGMA user_version") == [["\(Migration.latestVersion)"]])
        let mode = try FileManager.default.attributesOfItem(atPath: created)[.posixPermissions] as? Int
        #expect(mode == 0o600)

        let elsewhere = directory.appendingPathComponent("from-env.db").path
        #expect(try run(["collect", "--once"], executable: copy, directory: directory, environment: ["CONNLOG_DB": elsewhere]).status == 0)
        #expect(try query(elsewhere, "SELECT count(*) FROM samples") == [["1"]])
    }

    @Test func usageErrorsExitWithUsageStatus() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let outcome = try run(["collect", "--once", "--interval", "1s", "--db", db])
        #expect(outcome.status == 64)
        #expect(outcome.stderr.contains("--every"))
        #expect(try run(["collect", "--interval", "fast", "--db", db]).status == 64)
        #expect(!FileManager.default.fileExists(atPath: db))
    }
}
