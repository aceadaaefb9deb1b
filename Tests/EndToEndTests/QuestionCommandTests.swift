import ConnLog
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Questions asked of real recordings. In `CollectTests`, whose tests run one at a time: they
/// read the kernel's reset counter, which the whole network namespace shares.
extension CollectTests {
    @Test func resetsRankTheWorstPeerFirstAndAGracefulPeerAtZero() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let listener = try listenIPv4()
        defer { close(listener.fd) }
        var pairs: [(client: Int32, server: Int32, from: String)] = []
        for (source, count) in [("127.0.0.2", 10), ("127.0.0.3", 3), ("127.0.0.4", 2)] {
            for _ in 0..<count {
                let client = try connectIPv4(to: listener.port, from: source)
                pairs.append((client, try acceptOne(listener.fd), source))
            }
        }
        try collectOnce()
        let seenBySS = try establishedBySS(port: listener.port)
        let firstSample = try query(db, "SELECT max(at) FROM samples").first?.first ?? ""

        // Resets from two peers in one sample window, graceful closes in the next.
        for pair in pairs where pair.from != "127.0.0.4" {
            setLingerZero(pair.client)
            close(pair.client)
            close(pair.server)
        }
        try collectOnce()
        for pair in pairs where pair.from == "127.0.0.4" {
            close(pair.client)
            var byte: UInt8 = 0
            _ = recv(pair.server, &byte, 1, 0)
            close(pair.server)
        }
        usleep(100_000)
        try collectOnce()

        let answer = try run(["query", "resets", "--port", "\(listener.port)", "--format", "csv", "--db", db])
        #expect(answer.status == 0, "\(answer.stderr)")
        let rows = answer.stdout.split(separator: "\r\n").map {
            $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        }
        #expect(
            rows.first == [
                "peer", "resets", "failed_connects", "ambiguous", "connections", "last_reset", "reset_by_this_host", "reset_by_peer",
            ])
        let peers = rows.dropFirst().map { $0[0] }
        let resets = Dictionary(uniqueKeysWithValues: rows.dropFirst().map { ($0[0], $0[1]) })
        #expect(resets["127.0.0.2"] == "10")
        #expect(resets["127.0.0.3"] == "3")
        #expect(resets["127.0.0.4"] == "0")
        #expect((peers.firstIndex(of: "127.0.0.2") ?? 99) < (peers.firstIndex(of: "127.0.0.3") ?? -1))
        #expect((peers.firstIndex(of: "127.0.0.3") ?? 99) < (peers.firstIndex(of: "127.0.0.4") ?? -1))

        // The table as it was at the first sample is what ss printed then.
        let table = try run(["netstat", "--at", firstSample.isEmpty ? "1s" : isoOf(firstSample), "--format", "csv", "--db", db])
        #expect(table.status == 0, "\(table.stderr)")
        let then = Set(
            table.stdout.split(separator: "\r\n").dropFirst().map { $0.split(separator: ",").map(String.init) }
                .filter { $0[5] == "ESTABLISHED" && ($0[3] == "127.0.0.1:\(listener.port)" || $0[4] == "127.0.0.1:\(listener.port)") }
                .map { "\($0[3]) \($0[4])" })
        #expect(then.count == 30)
        #expect(then == seenBySS)
    }

    /// The sample time stored as milliseconds, as ISO-8601 for --at.
    func isoOf(_ milliseconds: String) -> String { TimeText.iso8601(Int64(milliseconds) ?? 0) }
}

@Suite("connlog query, sql and export output")
struct QueryOutputTests {
    let directory: URL
    var db: String { directory.appendingPathComponent("connlog.db").path }

    init() throws {
        directory = try temporaryDirectory()
        let proc = try FakeProc(in: directory)
        try proc.table([FakeProc.listener, FakeProc.established])
        let outcome = try run(["collect", "--once", "--db", db, "--proc-root", proc.root.path, "--no-processes"])
        #expect(outcome.status == 0)
    }

    func fileBytes() throws -> Data { try Data(contentsOf: URL(fileURLWithPath: db)) }

    @Test func sqlRefusesEveryWriteAndEscapeAndLeavesTheFileAlone() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let before = try fileBytes()
        let refused: [(String, String)] = [
            ("INSERT INTO boots (boot_id) VALUES ('x')", "INSERT is refused"),
            ("UPDATE connections SET pid = 1", "UPDATE is refused"),
            ("DELETE FROM events", "DELETE is refused"),
            ("DROP TABLE events", "changing the schema"),
            ("CREATE TABLE x (a)", "changing the schema"),
            ("CREATE TEMP VIEW v AS SELECT 1", "changing the schema"),
            ("ALTER TABLE events ADD COLUMN z", "refused"),
            ("ATTACH '\(directory.path)/other.db' AS other", "ATTACH and DETACH are refused"),
            ("PRAGMA user_version = 99", "PRAGMA user_version = 99 is refused"),
            ("PRAGMA journal_mode = DELETE", "is refused"),
            ("SELECT load_extension('/nonexistent.so')", "load_extension() is refused"),
            ("SELECT 1; DELETE FROM events", "one statement at a time"),
            ("VACUUM", "refused"),
            ("BEGIN", "refused"),
        ]
        for (statement, message) in refused {
            let outcome = try run(["sql", statement, "--db", db])
            #expect(outcome.status == 1, "\(statement)")
            #expect(outcome.stderr.contains(message), "\(statement): \(outcome.stderr)")
        }
        #expect(try fileBytes() == before)
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("other.db").path))
        let reading = try run(["sql", "SELECT count(*) AS n FROM connections_v", "--db", db, "--format", "csv"])
        #expect(reading.stdout == "n\r\n2\r\n")
        #expect(try run(["sql", "PRAGMA table_info(samples)", "--db", db]).status == 0)
    }

    @Test func sqlTimeoutStopsARunawayQueryAndLeavesNoOutputFile() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let target = directory.appendingPathComponent("out.csv").path
        let outcome = try run([
            "sql", "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT x FROM n", "--timeout", "500ms",
            "--format", "csv", "--output", target, "--db", db,
        ])
        #expect(outcome.status == 1)
        #expect(outcome.stderr.contains("longer than --timeout"))
        #expect(!FileManager.default.fileExists(atPath: target))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix("out.csv") }
        #expect(leftovers.isEmpty)
        let limited = try run([
            "sql", "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT x FROM n", "--limit", "3", "--format", "csv",
            "--db", db,
        ])
        #expect(limited.stdout == "x\r\n1\r\n2\r\n3\r\n")
        #expect(limited.stderr.contains("stopped after --limit 3 rows"))
    }

    @Test func csvQuotesWhatNeedsQuotingAndKeepsUnicode() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let outcome = try run([
            "sql",
            "SELECT 'a,b' AS comma, 'say \"hi\"' AS quote, 'line1' || char(10) || 'line2' AS newline, 'prøgram ☃' AS program, NULL AS empty, 7 AS number",
            "--format", "csv", "--db", db,
        ])
        #expect(
            outcome.stdout == "comma,quote,newline,program,empty,number\r\n\"a,b\",\"say \"\"hi\"\"\",\"line1\nline2\",prøgram ☃,,7\r\n")
    }

    @Test func jsonHasTypedNumbersAndNullsAndNdjsonStreamsRows() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let outcome = try run(["sql", "SELECT 1 AS i, 1.5 AS r, NULL AS n, 'x\"y' AS t", "--format", "json", "--db", db])
        let object = try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any]
        let row = (object?["rows"] as? [[String: Any]])?.first
        #expect(row?["i"] as? Int == 1)
        #expect(row?["r"] as? Double == 1.5)
        #expect(row?["n"] is NSNull)
        #expect(row?["t"] as? String == "x\"y")
        let lines = try run(["query", "timeline", "--format", "ndjson", "--db", db]).stdout.split(separator: "\n")
        #expect(lines.count == 2)
        for line in lines {
            let event = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(event?["event"] as? String == "open")
            #expect((event?["time"] as? String)?.hasSuffix("Z") == true)
        }
    }

    @Test func queryOptionsAndTimesAreCheckedWithClearErrors() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let cases: [([String], String)] = [
            (["query", "nonsense"], "no question called 'nonsense'"),
            (["query", "resets", "--state", "TIME_WAIT"], "--state does not apply to 'resets'"),
            (["query", "state-durations", "--state", "WAITING"], "'WAITING' is not a TCP state"),
            (["query", "resets", "--since", "yesterday-ish"], "--since 'yesterday-ish' is not a time"),
            (["query", "resets", "--since", "2026-02-31"], "is not a time"),
            (["query", "resets", "--since", "1h", "--until", "2h"], "--since is after --until"),
            (["query", "resets", "--peer", "not-an-ip"], "is not an IPv4 or IPv6 address"),
            (["netstat", "--at", "noon"], "--at 'noon' is not a time"),
        ]
        for (arguments, message) in cases {
            let outcome = try run(arguments + ["--db", db])
            #expect(outcome.status == 64, "\(arguments)")
            #expect(outcome.stderr.contains(message), "\(arguments): \(outcome.stderr)")
        }
        for form in ["2026-11-24T03:00:00Z", "2026-11-24 03:00", "2026-11-24T03:00:00.250+01:00", "2026-11-24", "90s", "15m", "2h", "7d"] {
            #expect(try run(["query", "resets", "--since", form, "--db", db]).status == 0, "\(form)")
        }
        let list = try run(["query", "--list"])
        #expect(list.stdout.split(separator: "\n").count == Question.all.count)
    }

    @Test func outputNeverReplacesTheDatabaseNorCommitsAShortFile() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let before = try fileBytes()
        let clobber = try run(["sql", "SELECT 1 AS x", "--db", db, "--output", db])
        #expect(clobber.status == 1)
        #expect(clobber.stderr.contains("is the database itself"))
        #expect(try fileBytes() == before)
        // A file-size limit makes a write fail half-way: nothing may appear under the name asked for.
        let target = directory.appendingPathComponent("big.csv").path
        let limited = try run(
            [
                "-c",
                "ulimit -f 100; trap '' XFSZ; exec \"$0\" sql \"SELECT printf('%.*c', 200000, 'x') AS x\" --format csv --output \"$1\" --db \"$2\"",
                connlogBinary.path, target, db,
            ], executable: URL(fileURLWithPath: "/bin/sh"))
        #expect(limited.status == 1)
        #expect(limited.stderr.contains("cannot write"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix("big.csv") }.isEmpty)
    }

    @Test func anInterruptedOutputLeavesNoFileBehind() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let target = directory.appendingPathComponent("long.csv").path
        let child = try start([
            "sql", "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT x FROM n", "--format", "csv",
            "--output", target, "--db", db,
        ])
        #expect(
            waitUntil(seconds: 20) {
                (try? FileManager.default.contentsOfDirectory(atPath: directory.path))?.contains { $0.hasPrefix("long.csv.tmp") } == true
            })
        child.signal(SIGINT)
        let outcome = child.finish()
        #expect(outcome.status != 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix("long.csv") }.isEmpty)
    }

    @Test func sqlReadsTableValuedFunctionsButNotPointersOrHugeValues() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(try run(["sql", "SELECT value FROM json_each('[1,2]')", "--format", "csv", "--db", db]).stdout == "value\r\n1\r\n2\r\n")
        #expect(
            try run(["sql", "SELECT name FROM pragma_table_info('samples') LIMIT 1", "--format", "csv", "--db", db]).stdout
                == "name\r\nid\r\n")
        #expect(try run(["sql", "SELECT 1 AS x; -- a comment", "--db", db]).status == 0)
        let pointer = try run(["sql", "SELECT fts3_tokenizer('simple')", "--db", db])
        #expect(pointer.status == 1)
        #expect(pointer.stderr.contains("fts3_tokenizer() is refused"))
        let huge = try run(["sql", "SELECT length(printf('%.*c', 300000000, 'x'))", "--timeout", "1s", "--db", db])
        #expect(huge.status == 1)
        #expect(huge.stderr.contains("larger than 16 MiB") || huge.stderr.contains("longer than --timeout"), "\(huge.stderr)")
    }

    @Test func csvQuotesByScalarNotByCharacter() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let outcome = try run([
            "sql", "SELECT 'a' || char(13, 10) || 'b' AS crlf, 'x,' || char(769) || 'y' AS mark, 'a' || char(0) || 'b' AS nul", "--format",
            "csv", "--db", db,
        ])
        #expect(outcome.stdout == "crlf,mark,nul\r\n\"a\r\nb\",\"x,\u{0301}y\",a\u{0000}b\r\n")
        let table = try run(["sql", "SELECT 'a' || char(13, 10) || 'b' AS crlf", "--db", db])
        #expect(table.stdout.split(separator: "\n").count == 3)
    }

    @Test func mistakesAreNamed() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let counter = try run(["query", "counters", "--counter", "Tcp.EstabReset", "--db", db])
        #expect(counter.status == 64)
        #expect(counter.stderr.contains("no counter called 'Tcp.EstabReset'"))
        let folder = try run(["status", "--db", directory.path])
        #expect(folder.status == 1)
        #expect(folder.stderr.contains("is a directory"))
        let early = try run(["netstat", "--at", "1990-01-01", "--db", db])
        #expect(early.status == 1)
        #expect(early.stderr.contains("nothing was recorded at or before 1990-01-01T00:00:00.000Z"))
    }

    @Test func everyCommandHasHelpWithExamplesAndIsInTheReadme() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let readme = try String(
            contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("README.md"), encoding: .utf8)
        for command in ["collect", "status", "query", "sql", "netstat", "export"] {
            let help = try run([command, "--help"])
            #expect(help.status == 0, "\(command)")
            #expect(help.stdout.contains("Examples:"), "\(command)")
            #expect(readme.contains("connlog \(command)"), "\(command)")
        }
    }

    @Test func exportWritesABundleOnceAndNeverOverwrites() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let bundle = directory.appendingPathComponent("incident").path
        let outcome = try run(["export", "--dir", bundle, "--since", "1h", "--db", db])
        #expect(outcome.status == 0, "\(outcome.stderr)")
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: bundle))
        #expect(files == Set(Question.all.map { "\($0.name).csv" } + ["events.csv", "README.txt"]))
        let events = try String(contentsOfFile: "\(bundle)/events.csv", encoding: .utf8)
        #expect(events.hasPrefix("id,at,after,event,from_state,to_state,connection_id,local,remote,pid,program,end_reason\r\n"))
        #expect(events.split(separator: "\r\n").count == 3)
        let readme = try String(contentsOfFile: "\(bundle)/README.txt", encoding: .utf8)
        #expect(readme.contains("resets.csv"))
        // The two fixture connections were there when recording began: the bundle says so.
        #expect(readme.contains("What could not be seen:"))
        #expect(readme.contains("already open when observation began"))
        let again = try run(["export", "--dir", bundle, "--db", db])
        #expect(again.status == 1)
        #expect(again.stderr.contains("already exists"))
    }
}
