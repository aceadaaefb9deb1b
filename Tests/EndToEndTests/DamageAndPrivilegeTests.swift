import ConnLog
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A damaged database is reported by every command that meets the damage, and never written into.
@Suite("a damaged database")
struct DamagedDatabaseTests {
    let directory: URL
    var db: String { directory.appendingPathComponent("connlog.db").path }

    init() throws { directory = try temporaryDirectory() }

    /// A database with two samples of a fixture table, checkpointed into the main file.
    func recordedDatabase() throws -> FakeProc {
        let proc = try FakeProc(in: directory)
        let lines = (0..<200).map { index in
            "0100007F:\(String(format: "%04X", 20000 + index)) 0200007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 \(50000 + index) 1 0000000087e53dda 20 0 0 10 -1"
        }
        try proc.table(lines)
        #expect(try run(["collect", "--once", "--no-processes", "--db", db, "--proc-root", proc.root.path]).status == 0)
        try proc.table(Array(lines.dropFirst(100)))
        #expect(try run(["collect", "--once", "--no-processes", "--db", db, "--proc-root", proc.root.path]).status == 0)
        let database = try Database(path: db, mode: .readWrite(create: false))
        try database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return proc
    }

    /// Overwrites the b-tree page holding `table`'s root with garbage.
    func damageRootPage(of table: String) throws {
        let page = try #require(Int(try query(db, "SELECT rootpage FROM sqlite_master WHERE name = ?", [.text(table)]).first?.first ?? ""))
        let file = try FileHandle(forUpdating: URL(fileURLWithPath: db))
        try file.seek(toOffset: UInt64((page - 1) * 4096))
        try file.write(contentsOf: Data(repeating: 0xEE, count: 64))
        try file.close()
    }

    func contents() throws -> Data { try Data(contentsOf: URL(fileURLWithPath: db)) }

    @Test func aDamagedPageIsReportedByEveryCommandAndNothingIsWritten() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let proc = try recordedDatabase()
        #expect(try run(["status", "--check", "--db", db]).stdout.contains("integrity       ok"))
        try damageRootPage(of: "connections")
        let before = try contents()

        let once = try run(["collect", "--once", "--no-processes", "--db", db, "--proc-root", proc.root.path])
        #expect(once.status == 1)
        #expect(once.stderr.contains("is damaged"), "\(once.stderr)")
        #expect(once.stderr.contains("PRAGMA integrity_check"))

        // A loop checks the whole file before its first sample and refuses to write into it.
        let loop = try run([
            "collect", "--interval", "100ms", "--duration", "1s", "--no-processes", "--db", db, "--proc-root", proc.root.path,
        ])
        #expect(loop.status == 1)
        #expect(loop.stderr.contains("is damaged"), "\(loop.stderr)")
        #expect(loop.stderr.contains("will not write into it"))

        let check = try run(["status", "--check", "--db", db])
        #expect(check.status == 1)
        #expect(!check.stdout.isEmpty, "the findings are listed")
        #expect(check.stderr.contains("is damaged"))

        // A question that reads the damaged page says so in words, not as a SQLite code.
        let peers = try run(["query", "peers", "--db", db])
        #expect(peers.status == 1)
        #expect(peers.stderr.contains("is damaged"), "\(peers.stderr)")
        #expect(!peers.stderr.contains("SQLite error"))

        #expect(try contents() == before, "nothing was written into the damaged file")
    }

    /// Upgrading writes (new indexes): a damaged older database is refused before any of it.
    @Test func aDamagedOlderDatabaseIsNotUpgraded() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let proc = try recordedDatabase()
        // Back to schema version 1: without the indexes version 2 creates.
        let database = try Database(path: db, mode: .readWrite(create: false))
        let version2 = try #require(Migration.all.first { $0.version == 2 })
        for line in version2.sql.split(separator: "\n") where line.hasPrefix("CREATE INDEX ") {
            try database.execute("DROP INDEX \(line.split(separator: " ")[2])")
        }
        try database.execute("PRAGMA user_version = 1")
        try database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        // Damage a table the upgrade does not read.
        try damageRootPage(of: "events")
        let before = try contents()

        let once = try run(["collect", "--once", "--no-processes", "--db", db, "--proc-root", proc.root.path])
        #expect(once.status == 1)
        #expect(once.stderr.contains("is damaged"), "\(once.stderr)")
        #expect(try contents() == before)
        #expect(try query(db, "PRAGMA user_version") == [["1"]])
    }

    @Test func aTruncatedFileIsReportedAndLeftAsItIs() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let proc = try recordedDatabase()
        let size = try contents().count
        // Cut mid-page, as a copy interrupted half-way would.
        #expect(truncate(db, off_t(size / 2 + 1000)) == 0)
        let before = try contents()
        for arguments in [
            ["collect", "--once", "--no-processes", "--db", db, "--proc-root", proc.root.path],
            ["collect", "--interval", "100ms", "--duration", "1s", "--no-processes", "--db", db, "--proc-root", proc.root.path],
            ["status", "--check", "--db", db],
        ] {
            let outcome = try run(arguments)
            #expect(outcome.status == 1, "\(arguments)")
            #expect(outcome.stderr.contains("is damaged"), "\(arguments): \(outcome.stderr)")
        }
        #expect(try contents() == before)
    }
}

extension FixtureProcRootTests {
    /// Cron may start a run while the last one is still going: exactly one of them records.
    @Test func overlappingOnceRunsNeverBothRecord() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let proc = try FakeProc(in: directory)
        let rounds = 5
        let concurrent = 12
        var recorded = 0
        var refused = 0
        for round in 0..<rounds {
            // Each round the table holds other connections, so every run that records has events to write.
            try proc.table(
                (0..<50).map { index in
                    "0100007F:\(String(format: "%04X", 20000 + round * 100 + index)) 0200007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 \(60000 + round * 100 + index) 1 0000000087e53dda 20 0 0 10 -1"
                })
            let children = try (0..<concurrent).map { _ in
                try start(["collect", "--once", "--no-processes", "--db", db, "--proc-root", proc.root.path])
            }
            for child in children {
                let outcome = child.finish()
                if outcome.status == 0 {
                    recorded += 1
                } else {
                    #expect(outcome.status == 1)
                    #expect(outcome.stderr.contains("already recording"), "\(outcome.stderr)")
                    refused += 1
                }
            }
        }
        #expect(recorded >= rounds)
        // Twelve runs started at once overlap on any machine; without a refusal this test proved nothing.
        #expect(refused > 0)
        #expect(try query(db, "SELECT count(*) FROM samples") == [["\(recorded)"]])
        // Each sample follows the one before it: no two runs started from the same position.
        #expect(
            try query(
                db, "SELECT count(*) FROM samples s WHERE s.id > 1 AND s.after IS NOT (SELECT at FROM samples p WHERE p.id = s.id - 1)")
                == [["0"]])
        #expect(try consistencyProblems(db).isEmpty)
        #expect(try query(db, "SELECT count(*) FROM connections WHERE closed_at IS NULL") == [["50"]])
    }
}

/// Recording needs no privilege; only other users' process names do. Needs root to become `nobody`.
@Suite("least privilege", .serialized, .enabled(if: getuid() == 0, "switching to another user needs root"))
struct PrivilegeTests {
    static let nobody = "65534"
    let directory: URL
    let binary: URL
    var db: String { directory.appendingPathComponent("connlog.db").path }

    /// A directory owned by `nobody`, with its own copy of the binary (the build folder may not be
    /// reachable by other users).
    init() throws {
        directory = try temporaryDirectory()
        binary = directory.appendingPathComponent("connlog")
        try FileManager.default.copyItem(at: connlogBinary, to: binary)
        chmod(directory.path, 0o755)
        chown(directory.path, 65534, 65534)
    }

    /// Runs `arguments` as `nobody`.
    func runAsNobody(_ arguments: [String], executable: URL? = nil) throws -> Outcome {
        try run(
            ["--reuid=\(Self.nobody)", "--regid=\(Self.nobody)", "--clear-groups", (executable ?? binary).path] + arguments,
            executable: URL(fileURLWithPath: "/usr/bin/setpriv"))
    }

    @Test func anUnprivilegedCollectorRecordsEverySocketButOnlyItsOwnProcesses() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let rootListener = try listenIPv4()
        defer { close(rootListener.fd) }
        // A process of nobody's own, holding a listener.
        let script =
            "import socket, sys, time\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen()\nprint(s.getsockname()[1], flush=True)\nsys.stdin.read()\n"
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        holder.arguments = ["--reuid=\(Self.nobody)", "--regid=\(Self.nobody)", "--clear-groups", "/usr/bin/python3", "-c", script]
        let input = Pipe()
        let output = Pipe()
        holder.standardInput = input
        holder.standardOutput = output
        try holder.run()
        defer {
            try? input.fileHandleForWriting.close()
            holder.waitUntilExit()
        }
        let line = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
        let nobodyPort = try #require(UInt16(line.trimmingCharacters(in: .whitespacesAndNewlines)))

        let outcome = try runAsNobody(["collect", "--once", "--db", db])
        #expect(outcome.status == 0, "\(outcome.stderr)")
        let rows = try query(
            db, "SELECT local, pid FROM connections_v WHERE local IN (?, ?) ORDER BY local",
            [.text("127.0.0.1:\(rootListener.port)"), .text("127.0.0.1:\(nobodyPort)")])
        let owners = Dictionary(uniqueKeysWithValues: rows.map { ($0[0], $0[1]) })
        #expect(owners["127.0.0.1:\(rootListener.port)"] == "NULL", "another user's socket is recorded without its process")
        #expect(owners["127.0.0.1:\(nobodyPort)"] == "\(holder.processIdentifier)")

        for file in [db, db + "-wal", db + ".lock"] {
            var info = stat()
            #expect(stat(file, &info) == 0, "\(file)")
            #expect(info.st_mode & 0o777 == 0o600, "\(file) is private")
            #expect(info.st_uid == 65534)
        }
    }

    @Test func aDatabaseOrDirectoryThisUserCannotWriteIsRefusedAndNothingIsCreated() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(try runAsNobody(["collect", "--once", "--no-processes", "--db", db]).status == 0)
        for file in [db + "-wal", db + "-shm", db + ".lock"] { try? FileManager.default.removeItem(atPath: file) }
        chmod(db, 0o400)
        let before = try Data(contentsOf: URL(fileURLWithPath: db))

        let file = try runAsNobody(["collect", "--once", "--no-processes", "--db", db])
        #expect(file.status == 1)
        #expect(file.stderr.contains("\(db) is not writable by this user (Permission denied)"), "\(file.stderr)")

        chmod(db, 0o600)
        chmod(directory.path, 0o555)
        defer { chmod(directory.path, 0o755) }
        let folder = try runAsNobody(["collect", "--once", "--no-processes", "--db", db])
        #expect(folder.status == 1)
        #expect(folder.stderr.contains("cannot write in \(directory.path) (Permission denied)"), "\(folder.stderr)")

        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted() == ["connlog", "connlog.db"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: db)) == before)
        // Reading needs no write access.
        #expect(try runAsNobody(["status", "--db", db]).status == 0)
    }

    @Test func aReaderWhoCannotShareTheLiveLogIsRefusedRatherThanShownStaleHistory() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        // Root records into a directory only root can write; the operator made the file readable.
        let rootOwned = directory.appendingPathComponent("root")
        try FileManager.default.createDirectory(at: rootOwned, withIntermediateDirectories: false)
        let shared = rootOwned.appendingPathComponent("connlog.db").path
        let collector = try start(["collect", "--interval", "100ms", "--no-processes", "--db", shared])
        defer {
            collector.signal(SIGTERM)
            _ = collector.finish()
        }
        #expect(waitUntil(seconds: 20) { (try? query(shared, "SELECT count(*) FROM samples").first?.first).flatMap { Int($0) } ?? 0 >= 2 })
        chmod(shared, 0o644)
        // The recent samples live in the write-ahead log, which `nobody` cannot share: reading the
        // file alone would silently show an older history.
        let status = try runAsNobody(["status", "--db", shared])
        #expect(status.status == 1)
        #expect(status.stderr.contains("write-ahead log holds recent samples"), "\(status.stderr)")
    }
}
