import ConnLog
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Opens and closes loopback connections on one listener until stopped: some reset, some close
/// gracefully, some stay open for a while.
final class Churn: Sendable {
    let port: UInt16
    private let listener: Int32
    private let running = Atomic<Bool>(true)
    private let finished = Atomic<Bool>(false)

    init() throws {
        let made = try listenIPv4("127.0.0.1")
        listener = made.fd
        port = made.port
        let thread = Thread { [self] in self.loop() }
        thread.start()
    }

    private func loop() {
        var held: [(Int32, Int32)] = []
        var round = 0
        while running.load(ordering: .relaxed) {
            round += 1
            if let client = try? connectIPv4(to: port, from: "127.0.0.\(2 + round % 3)"), let server = try? acceptOne(listener) {
                held.append((client, server))
            }
            if held.count > 20 {
                let (client, server) = held.removeFirst()
                if round % 2 == 0 { setLingerZero(client) }
                close(client)
                close(server)
            }
            usleep(5_000)
        }
        for (client, server) in held {
            close(client)
            close(server)
        }
        finished.store(true, ordering: .relaxed)
    }

    /// Stops the churn, leaving the listener open.
    func stop() {
        running.store(false, ordering: .relaxed)
        while !finished.load(ordering: .relaxed) { usleep(10_000) }
    }

    func closeListener() { close(listener) }
}

extension CollectTests {
    /// Kills a sampling collector at random moments under churn, restarting it each time, and
    /// checks after every kill that the database is whole and consistent. Cycles: 10 here;
    /// `CONNLOG_TORTURE_CYCLES=300 swift test --filter killedCollector` for the long run.
    @Test func aKilledCollectorLeavesAWholeConsistentDatabase() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let cycles = Int(ProcessInfo.processInfo.environment["CONNLOG_TORTURE_CYCLES"] ?? "") ?? 10
        let churn = try Churn()
        var generator = SystemRandomNumberGenerator()
        for cycle in 1...cycles {
            let collector = try start(["collect", "--interval", "50ms", "--db", db])
            usleep(UInt32.random(in: 150_000...500_000, using: &generator))
            collector.signal(SIGKILL)
            _ = collector.finish()
            let problems = try consistencyProblems(db)
            #expect(problems.isEmpty, "after kill \(cycle): \(problems)")
            if !problems.isEmpty { break }
        }
        // Most runs committed samples before they were killed (a kill can land before the first), and closes were seen.
        let recordedSamples = Int(try query(db, "SELECT count(*) FROM samples").first?.first ?? "0") ?? 0
        #expect(recordedSamples >= cycles / 2)
        #expect(Int(try query(db, "SELECT count(*) FROM events WHERE kind = 3").first?.first ?? "0") ?? 0 > 0)
        if ProcessInfo.processInfo.environment["CONNLOG_TORTURE_CYCLES"] != nil {
            let closes = try query(db, "SELECT count(*) FROM events WHERE kind = 3").first?.first ?? "?"
            print("torture: \(cycles) kills, \(recordedSamples) samples, \(closes) closes recorded, consistent after every kill")
        }
        churn.stop()
        // Restarted once more, the collector brings the record up to date with the kernel.
        try collectOnce()
        try collectOnce()
        let live = try establishedBySS(port: churn.port)
        let recorded = Set(
            try query(
                db,
                "SELECT local || ' ' || remote FROM connections_v WHERE closed_at IS NULL AND state = 'ESTABLISHED' AND (local = ?1 OR remote = ?1)",
                [.text("127.0.0.1:\(churn.port)")]
            ).map { $0[0] })
        #expect(recorded == live)
        #expect(try consistencyProblems(db).isEmpty)
        churn.closeListener()
    }
}
