import ConnLog
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

extension CollectTests {
    /// Readers ask questions and run SQL in a loop while the collector samples every 100 ms under
    /// churn, with retention pruning: no reader fails, none sees half a sample, and the collector
    /// is never held up past its interval (no gap appears). Seconds: 3 here;
    /// `CONNLOG_CONTENTION_SECONDS=120 swift test --filter readersNeverWait` for the long run.
    @Test func readersNeverWaitNorSeeHalfASampleWhileTheCollectorWrites() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let seconds = Double(ProcessInfo.processInfo.environment["CONNLOG_CONTENTION_SECONDS"] ?? "") ?? 3
        let churn = try Churn()
        defer { churn.closeListener() }
        // --retain 1s keeps the pruner busy deleting while readers read.
        let collector = try start(["collect", "--interval", "100ms", "--retain", "1s", "--db", db])
        #expect(waitUntil(seconds: 20) { ((try? query(db, "SELECT count(*) FROM samples"))?.first?.first).flatMap { Int($0) } ?? 0 >= 2 })
        let deadline = Date().addingTimeInterval(seconds)
        var readers = 0
        var failures: [String] = []
        let questions = ["resets", "timeline", "peers", "churn", "counters", "gaps", "state-durations"]
        while Date() < deadline {
            // One read transaction: a sample is either wholly in it or not at all.
            let whole = try run([
                "sql",
                "SELECT count(*) FROM windows w WHERE w.samples <> (SELECT count(*) FROM samples s WHERE s.window_id = w.id)",
                "--format", "csv", "--db", db,
            ])
            readers += 1
            if whole.status != 0 || whole.stdout != "count(*)\r\n0\r\n" { failures.append("sql: \(whole.stdout) \(whole.stderr)") }
            let asked = try run(["query", questions[readers % questions.count], "--since", "1m", "--format", "csv", "--db", db])
            readers += 1
            if asked.status != 0 { failures.append("query: \(asked.stderr)") }
        }
        if ProcessInfo.processInfo.environment["CONNLOG_CONTENTION_SECONDS"] != nil {
            let samples = try query(db, "SELECT count(*) FROM samples").first?.first ?? "?"
            print("contention: \(readers) reader runs over \(Int(seconds)) s, \(failures.count) failed; collector kept \(samples) samples")
        }
        churn.stop()
        collector.signal(SIGTERM)
        let outcome = collector.finish()
        #expect(outcome.status == 0)
        #expect(!outcome.stderr.contains("failed"), "\(outcome.stderr)")
        #expect(failures.isEmpty, "\(failures.prefix(3))")
        #expect(readers >= 4)
        // The collector kept its cadence: one window, never a pause past twice the interval.
        #expect(try query(db, "SELECT count(*) FROM windows WHERE start_reason IN ('gap', 'reboot')") == [["0"]])
        let problems = try consistencyProblems(db, pruned: true)
        #expect(problems.isEmpty, "\(problems)")
    }
}
