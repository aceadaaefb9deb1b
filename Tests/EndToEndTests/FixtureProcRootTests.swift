import ConnLog
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A proc filesystem made of plain files, in the kernel's exact text format.
struct FakeProc {
    let root: URL

    init(in directory: URL) throws {
        root = directory.appendingPathComponent("proc")
        for folder in ["net", "sys/kernel/random", "self/ns"] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        try FileManager.default.createSymbolicLink(
            atPath: root.appendingPathComponent("self/ns/net").path, withDestinationPath: "net:[4026532999]")
        try write("net/tcp6", Self.header)
        try write("net/snmp", "Tcp: RtoAlgorithm EstabResets CurrEstab\nTcp: 1 0 0\n")
        try write("net/netstat", "TcpExt: ListenOverflows TW\nTcpExt: 0 0\n")
        try boot("11111111-2222-3333-4444-555555555555")
    }

    static let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"

    func write(_ path: String, _ text: String) throws {
        try text.write(to: root.appendingPathComponent(path), atomically: true, encoding: .utf8)
    }

    func boot(_ id: String) throws { try write("sys/kernel/random/boot_id", id + "\n") }

    /// Sets net/tcp to these lines (after the header).
    func table(_ lines: [String]) throws {
        try write("net/tcp", Self.header + lines.enumerated().map { "  \($0.offset): \($0.element)\n" }.joined())
    }

    static let listener =
        "0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 9001 1 0000000087e53dda 100 0 0 10 0"
    static let established =
        "0100007F:1538 0200007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 9002 1 0000000087e53dda 20 0 0 10 -1"
}

@Suite("connlog collect over a fixture proc-root", .serialized)
struct FixtureProcRootTests {
    let directory: URL
    var db: String { directory.appendingPathComponent("connlog.db").path }

    init() throws { directory = try temporaryDirectory() }

    @Test func rebootsAndMalformedLinesAreRecorded() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let proc = try FakeProc(in: directory)
        let once = ["collect", "--once", "--db", db, "--proc-root", proc.root.path, "--no-processes"]
        try proc.table([FakeProc.listener, FakeProc.established])
        #expect(try run(once).status == 0)
        #expect(
            try query(db, "SELECT local, remote, direction, preexisting FROM connections_v ORDER BY id") == [
                ["127.0.0.1:5432", "0.0.0.0:0", "listen", "1"],
                ["127.0.0.1:5432", "127.0.0.2:50000", "inbound", "1"],
            ])
        #expect(try query(db, "SELECT DISTINCT namespace FROM samples_v") == [["4026532999"]])

        try proc.boot("99999999-2222-3333-4444-555555555555")
        try proc.table([FakeProc.listener, "this line is not a socket", FakeProc.established])
        let outcome = try run(once)
        #expect(outcome.status == 0)
        #expect(outcome.stderr.contains("skipped 1 malformed lines"))
        #expect(
            try query(db, "SELECT id, end_reason FROM connections_v WHERE closed_at IS NOT NULL ORDER BY id") == [
                ["1", "unobserved"], ["2", "unobserved"],
            ])
        #expect(try query(db, "SELECT count(*) FROM connections WHERE closed_at IS NULL AND preexisting = 1") == [["2"]])
        #expect(try query(db, "SELECT start_reason FROM windows ORDER BY id") == [["first"], ["reboot"]])
        #expect(try query(db, "SELECT malformed FROM samples ORDER BY id") == [["0"], ["1"]])
    }

    @Test func cronRunsFurtherApartThanTwiceTheirSpacingLeaveAGap() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let proc = try FakeProc(in: directory)
        let once = ["collect", "--once", "--every", "200ms", "--db", db, "--proc-root", proc.root.path]
        try proc.table([FakeProc.established])
        #expect(try run(once).status == 0)
        usleep(600_000)
        try proc.table([])
        #expect(try run(once).status == 0)
        #expect(try query(db, "SELECT end_reason FROM connections_v") == [["unobserved"]])
        #expect(try query(db, "SELECT start_reason FROM windows ORDER BY id") == [["first"], ["gap"]])
        let status = try run(["status", "--db", db])
        #expect(status.stdout.contains("gaps            1"))
    }

    @Test func durationStopsTheLoopOnItsOwn() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let proc = try FakeProc(in: directory)
        try proc.table([FakeProc.listener])
        let outcome = try run(["collect", "--interval", "100ms", "--duration", "1s", "--db", db, "--proc-root", proc.root.path])
        #expect(outcome.status == 0)
        let samples = Int(try query(db, "SELECT count(*) FROM samples").first?.first ?? "0") ?? 0
        // About ten; fewer when the machine is loaded and samples overrun their ticks.
        #expect((2...11).contains(samples))
        #expect(try query(db, "SELECT count(*), min(start_reason) FROM windows") == [["1", "first"]])
    }

    @Test func aFailedCommitIsRetriedFromWhatTheDatabaseHolds() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let proc = try FakeProc(in: directory)
        try proc.table([FakeProc.listener, FakeProc.established])
        let recorder = try Recorder(databasePath: db, options: .init(procRoot: proc.root.path, attributeProcesses: false))
        try recorder.recordSample()
        let other = try Database(path: db, mode: .readWrite(create: false))
        try other.execute(
            "CREATE TRIGGER no_close BEFORE INSERT ON events WHEN NEW.kind = 3 BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
        try proc.table([FakeProc.listener])
        #expect(throws: ConnLogError.self) { try recorder.recordSample() }
        try other.execute("DROP TRIGGER no_close")
        // The recorder must not believe the failed sample happened: the close is recorded now.
        try recorder.recordSample()
        #expect(try query(db, "SELECT id, end_reason FROM connections_v ORDER BY id") == [["1", "NULL"], ["2", "vanished"]])
        #expect(try query(db, "SELECT count(*) FROM events WHERE kind = 3") == [["1"]])
        #expect(try query(db, "SELECT count(*) FROM samples") == [["2"]])
    }

    @Test func aFifoOrASymlinkLoopAsTheTableIsRefusedWithoutHanging() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let proc = try FakeProc(in: directory)
        let table = proc.root.appendingPathComponent("net/tcp").path
        #expect(mkfifo(table, 0o600) == 0)
        let fifo = try run(["collect", "--once", "--db", db, "--proc-root", proc.root.path])
        #expect(fifo.status == 1)
        #expect(fifo.stderr.contains("\(table): not a regular file"))
        try FileManager.default.removeItem(atPath: table)
        try FileManager.default.createSymbolicLink(atPath: table, withDestinationPath: table)
        let loop = try run(["collect", "--once", "--db", db, "--proc-root", proc.root.path])
        #expect(loop.status == 1)
        #expect(loop.stderr.contains(table))
    }

    @Test func aMissingCounterFileIsReportedNotFatal() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let proc = try FakeProc(in: directory)
        try proc.table([FakeProc.established])
        try FileManager.default.removeItem(at: proc.root.appendingPathComponent("net/snmp"))
        let outcome = try run(["collect", "--once", "--db", db, "--proc-root", proc.root.path])
        #expect(outcome.status == 0)
        #expect(outcome.stderr.contains("cannot read Tcp EstabResets from \(proc.root.path)/net/snmp"))
        #expect(try query(db, "SELECT count(*) FROM samples") == [["1"]])
    }

    @Test func aLoopWhoseLastSampleFailedExitsNonZero() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let proc = try FakeProc(in: directory)
        try proc.table([FakeProc.listener])
        let collector = try start(["collect", "--interval", "100ms", "--duration", "2s", "--db", db, "--proc-root", proc.root.path])
        #expect(waitUntil(seconds: 20) { (Int((try? query(db, "SELECT count(*) FROM samples"))?.first?.first ?? "0") ?? 0) >= 1 })
        try FileManager.default.removeItem(at: proc.root.appendingPathComponent("net/tcp"))
        let outcome = collector.finish()
        #expect(outcome.status == 1)
        #expect(outcome.stderr.contains("the last sample failed"))
    }

    @Test func theLockHoldsThroughASymbolicLink() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let proc = try FakeProc(in: directory)
        try proc.table([FakeProc.listener])
        let collector = try start(["collect", "--interval", "100ms", "--db", db, "--proc-root", proc.root.path])
        #expect(waitUntil(seconds: 20) { CollectorLock.holder(databasePath: db) == collector.process.processIdentifier })
        let link = directory.appendingPathComponent("link.db").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: db)
        let second = try run(["collect", "--once", "--db", link, "--proc-root", proc.root.path])
        #expect(second.status == 1)
        #expect(second.stderr.contains("already recording"))
        collector.signal(SIGTERM)
        #expect(collector.finish().status == 0)
    }

    @Test func troubleIsLoggedOnceNotPerSample() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let proc = try FakeProc(in: directory)
        try proc.table([FakeProc.listener])
        let collector = try start(["collect", "--interval", "50ms", "--db", db, "--proc-root", proc.root.path])
        #expect(waitUntil(seconds: 20) { ((try? query(db, "SELECT count(*) FROM samples"))?.first?.first).flatMap { Int($0) } ?? 0 >= 1 })
        try FileManager.default.removeItem(at: proc.root.appendingPathComponent("net/tcp"))
        usleep(800_000)
        try proc.table([FakeProc.listener])
        let before = Int(try query(db, "SELECT count(*) FROM samples").first?.first ?? "0") ?? 0
        #expect(waitUntil(seconds: 20) { (Int((try? query(db, "SELECT count(*) FROM samples"))?.first?.first ?? "0") ?? 0) > before })
        collector.signal(SIGTERM)
        let outcome = collector.finish()
        #expect(outcome.status == 0)
        let lines = outcome.stderr.split(separator: "\n")
        #expect(lines.filter { $0.contains("sample failed") && $0.contains("net/tcp") }.count == 1, "\(outcome.stderr)")
        #expect(lines.contains { $0.contains("recovered after") }, "\(outcome.stderr)")
        // The listener was never seen gone by a sample, so it is one connection, still open.
        #expect(try query(db, "SELECT count(*), sum(closed_at IS NULL) FROM connections") == [["1", "1"]])
    }
}
