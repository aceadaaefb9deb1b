import Foundation
import Testing

@testable import ConnLog

@Suite("The store: migrations, atomic samples, restart")
struct StoreTests {
    let directory: URL
    var path: String { directory.appendingPathComponent("connlog.db").path }

    init() throws { directory = try temporaryDirectory() }

    /// Records `snapshots` in order, the way the recorder does, and returns the diffs.
    @discardableResult
    func record(_ snapshots: [Snapshot], into store: Store, interval: Int64 = 1000) throws -> [SampleDiff] {
        var position = try store.position(namespace: snapshots[0].namespace)
        var tracker = Tracker(state: position.tracker)
        var diffs: [SampleDiff] = []
        for snapshot in snapshots {
            let diff = tracker.apply(snapshot, expectedInterval: interval)
            position.windowID = try store.record(
                diff,
                context: .init(namespace: snapshot.namespace, bootID: snapshot.bootID, windowID: position.windowID, interval: interval))
            diffs.append(diff)
        }
        return diffs
    }

    /// A sample whose counters read `resets` EstabResets and `opens` connections opened, the same
    /// before and after its sockets.
    func snapshot(at seconds: Int64, _ sightings: [Sighting], resets: Int64 = 0, opens: Int64 = 0) -> Snapshot {
        var snapshot = Snapshot(
            at: 1_700_000_000_000 + seconds * 1000, namespace: 4_026_531_840, bootID: "boot", sightings: sightings,
            counters: [Snapshot.estabResetsCounter: resets, "Tcp.ActiveOpens": opens, "Tcp.PassiveOpens": 0])
        snapshot.countersBeforeRead = ResetCounters(estabResets: resets, opens: opens)
        return snapshot
    }

    @Test func freshDatabaseGetsEverySchemaVersionAnd0600() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: path, access: .write)
        #expect(try store.database.userVersion() == Migration.latestVersion)
        #expect(try store.database.scalarText("PRAGMA journal_mode") == "wal")
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        for table in ["samples", "connections", "events", "counters", "windows", "addresses", "collectors"] {
            #expect(try store.database.scalarInt("SELECT count(*) FROM sqlite_master WHERE name = ?", [.text(table)]) == 1)
        }
    }

    @Test func eachOlderVersionIsUpgradedInPlaceWithItsData() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        for version in 0..<Migration.latestVersion {
            let file = directory.appendingPathComponent("v\(version).db").path
            do {
                let database = try Database(path: file, mode: .readWrite(create: true))
                try database.migrate(Array(Migration.all.prefix(version)))
                try database.execute("CREATE TABLE IF NOT EXISTS keep_me (x INTEGER); INSERT INTO keep_me VALUES (42);")
            }
            // A table the migrations do not know makes it look foreign at version 0; that is tested below.
            if version == 0 { try Database(path: file, mode: .readWrite(create: false)).execute("DROP TABLE keep_me") }
            let store = try Store(path: file, access: .write)
            #expect(try store.database.userVersion() == Migration.latestVersion)
            if version > 0 { #expect(try store.database.scalarInt("SELECT x FROM keep_me") == 42) }
        }
    }

    @Test func newerSchemaIsRefusedAndLeftUntouched() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        do {
            let database = try Database(path: path, mode: .readWrite(create: true))
            try database.execute("CREATE TABLE future (x); PRAGMA user_version = \(Migration.latestVersion + 1);")
        }
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        for access in [Store.Access.write, .read] {
            #expect {
                _ = try Store(path: path, access: access)
            } throws: { error in
                "\(error)".contains("newer than this connlog knows")
            }
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
        #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
    }

    @Test func foreignAndDamagedFilesAreRefusedAndLeftUntouched() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let foreign = directory.appendingPathComponent("foreign.db").path
        do { try Database(path: foreign, mode: .readWrite(create: true)).execute("CREATE TABLE orders (id INTEGER)") }
        let garbage = directory.appendingPathComponent("garbage.db").path
        try Data(repeating: 0xAB, count: 8192).write(to: URL(fileURLWithPath: garbage))
        for (file, phrase) in [(foreign, "not a connlog one"), (garbage, "not a SQLite database")] {
            let before = try Data(contentsOf: URL(fileURLWithPath: file))
            #expect(throws: ConnLogError.self) { _ = try Store(path: file, access: .write) }
            #expect {
                _ = try Store(path: file, access: .write)
            } throws: { "\($0)".contains(phrase) }
            #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == before)
        }
    }

    @Test func readingAMissingDatabaseSaysWhatToDo() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect { _ = try Store(path: path, access: .read) } throws: { "\($0)".contains("run `connlog collect` first") }
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test func aSampleIsAllOrNothing() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: path, access: .write)
        let first = key(40000, 80)
        let second = key(40001, 80)
        try record([snapshot(at: 0, [socket(first, .established, inode: 1)])], into: store)
        let counts = { () throws -> [Int64] in
            try ["samples", "connections", "events", "counters", "addresses"].map {
                try store.database.scalarInt("SELECT count(*) FROM \($0)") ?? -1
            } + [try store.database.scalarInt("SELECT samples FROM windows") ?? -1]
        }
        let before = try counts()
        // Fail the transaction half-way: after the sample, window, counters and connections are written.
        try store.database.execute(
            "CREATE TRIGGER fail_midway BEFORE INSERT ON events WHEN NEW.kind = 1 BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
        #expect(throws: (any Error).self) {
            try record(
                [snapshot(at: 1, [socket(first, .closeWait, inode: 1), socket(second, .established, inode: 2)], resets: 3)], into: store)
        }
        #expect(try counts() == before)
        #expect(try store.database.scalarInt("SELECT state FROM connections WHERE id = 1") == Int64(TCPState.established.rawValue))
        try store.database.execute("DROP TRIGGER fail_midway")
        // The next attempt starts from what the database holds and records the sample whole.
        let diffs = try record(
            [snapshot(at: 2, [socket(first, .closeWait, inode: 1), socket(second, .established, inode: 2)])], into: store)
        #expect(diffs[0].events.count == 2)
        #expect(try store.database.scalarInt("SELECT count(*) FROM connections") == 2)
    }

    @Test func historyContinuesAcrossReopening() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let client = key(40000, 5432)
        let listener = SocketKey(local: Endpoint(address: .ipv4Any, port: 5432), remote: Endpoint(address: .ipv4Any, port: 0))
        let server = key(5432, 40000)
        do {
            let store = try Store(path: path, access: .write)
            try record(
                [
                    snapshot(at: 0, [socket(listener, .listen, inode: 1)]),
                    snapshot(
                        at: 1,
                        [
                            socket(listener, .listen, inode: 1), socket(client, .established, inode: 2),
                            socket(server, .established, inode: 3),
                        ]),
                ], into: store)
        }
        // A new process, as `collect --once` from cron: it diffs against the stored set.
        let store = try Store(path: path, access: .write)
        let diffs = try record(
            [snapshot(at: 2, [socket(listener, .listen, inode: 1), socket(client, .timeWait, timer: 3, ticks: 5900)], resets: 0)],
            into: store)
        #expect(diffs[0].windowStart == nil)
        #expect(
            diffs[0].events == [
                .state(connection: 2, from: .established, to: .timeWait),
                .close(connection: 3, last: .established, reason: .vanished),
            ])
        var rows: [String] = []
        try store.database.forEach("SELECT local, remote, direction, state, end_reason FROM connections_v ORDER BY id") { row in
            rows.append((0..<5).map { row.optionalText(Int32($0)) ?? "NULL" }.joined(separator: " "))
        }
        #expect(
            rows == [
                "0.0.0.0:5432 0.0.0.0:0 listen LISTEN NULL",
                "127.0.0.1:40000 127.0.0.1:5432 outbound TIME_WAIT NULL",
                "127.0.0.1:5432 127.0.0.1:40000 inbound ESTABLISHED vanished",
            ])
        #expect(try store.database.scalarInt("SELECT count(*) FROM windows") == 1)
        #expect(try store.database.scalarInt("SELECT samples FROM windows") == 3)
    }

    @Test func aMissedReadIsTakenBackInTheDatabase() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: path, access: .write)
        let client = key(40000, 443)
        try record([snapshot(at: 0, [socket(client, .established, inode: 5)]), snapshot(at: 1, [])], into: store)
        #expect(try store.database.scalarInt("SELECT count(*) FROM events WHERE kind = 3") == 1)
        // Reopened by a new process, which must know what the last sample closed.
        try record([snapshot(at: 2, [socket(client, .established, inode: 5)])], into: store)
        #expect(try store.database.scalarInt("SELECT count(*) FROM events WHERE kind = 3") == 0)
        #expect(try store.database.scalarInt("SELECT count(*) FROM connections WHERE closed_at IS NULL") == 1)
        // Open again: nothing says how it ended, nor what decided that.
        #expect(try store.database.scalarInt("SELECT count(*) FROM connections WHERE end_basis IS NOT NULL OR reset_by IS NOT NULL") == 0)
        #expect(try store.database.scalarInt("SELECT count(*) FROM connections") == 1)
    }

    @Test func aWithdrawnCloseIsRevisedInTheDatabaseAcrossRuns() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let a = key(40000, 443)
        let b = key(40001, 443)
        do {
            let store = try Store(path: path, access: .write)
            try record(
                [
                    snapshot(at: 0, [socket(a, .established, inode: 1), socket(b, .established, inode: 2)]),
                    snapshot(at: 1, [], resets: 1),
                ], into: store)
        }
        let store = try Store(path: path, access: .write)
        let diffs = try record([snapshot(at: 2, [socket(a, .established, inode: 1)], resets: 1)], into: store)
        #expect(diffs[0].reopened == [1])
        var rows: [String] = []
        try store.database.forEach("SELECT id, COALESCE(end_reason, 'open') FROM connections_v ORDER BY id") { row in
            rows.append("\(row.int(0)) \(row.text(1))")
        }
        #expect(rows == ["1 open", "2 reset"])
        #expect(try store.database.scalarInt("SELECT reset_candidates FROM samples ORDER BY id LIMIT 1 OFFSET 1") == 1)
    }

    @Test func nothingComesBackFromBeforeAReboot() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let client = key(40000, 443)
        do {
            let store = try Store(path: path, access: .write)
            var rebooted = snapshot(at: 1, [])
            rebooted.bootID = "boot-2"
            try record([snapshot(at: 0, [socket(client, .established, inode: 7)]), rebooted], into: store)
        }
        var again = snapshot(at: 2, [socket(client, .established, inode: 7)])
        again.bootID = "boot-2"
        let store = try Store(path: path, access: .write)
        let diffs = try record([again], into: store)
        #expect(diffs[0].reopened.isEmpty)
        #expect(diffs[0].opened.map(\.id) == [2])
        #expect(try store.database.scalarText("SELECT end_reason FROM connections_v WHERE id = 1") == "unobserved")
    }

    @Test func migrationsApplyInOrderKeepDataAndRollBackWhole() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let one = Migration(version: 1, name: "one", sql: "CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
        let two = Migration(version: 2, name: "two", sql: "ALTER TABLE t ADD COLUMN y TEXT DEFAULT 'kept';")
        let broken = Migration(version: 3, name: "broken", sql: "CREATE TABLE u (z INTEGER); INSERT INTO nowhere VALUES (1);")
        let database = try Database(path: path, mode: .readWrite(create: true))
        try database.migrate([one])
        try database.execute("INSERT INTO t VALUES (2)")
        try database.migrate([one, two])
        #expect(try database.userVersion() == 2)
        #expect(try database.scalarInt("SELECT count(*) FROM t WHERE y = 'kept'") == 2)
        #expect(throws: SQLiteError.self) { try database.migrate([one, two, broken]) }
        // The failed migration left nothing behind: no table u, version still 2.
        #expect(try database.userVersion() == 2)
        #expect(try database.scalarInt("SELECT count(*) FROM sqlite_master WHERE name = 'u'") == 0)
    }

    @Test func countersAreStoredSparsely() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: path, access: .write)
        try record((0..<5).map { snapshot(at: $0, [], resets: $0 < 3 ? 0 : 4) }, into: store)
        var values: [Int64] = []
        try store.database.forEach("SELECT value FROM counters_v WHERE name = 'Tcp.EstabResets' ORDER BY sample_id") {
            values.append($0.int64(0))
        }
        #expect(values == [0, 4])
        #expect(try store.database.scalarInt("SELECT resets FROM samples ORDER BY id DESC LIMIT 1 OFFSET 1") == 4)
    }

    @Test func retentionDeletesOldHistoryAndKeepsOpenConnections() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: path, access: .write)
        let old = key(40000, 80)
        let kept = key(40001, 80)
        var snapshots: [Snapshot] = []
        for second in 0..<50 {
            var sightings = [socket(kept, .established, inode: 2)]
            if second < 10 { sightings.append(socket(old, .established, inode: UInt64(100 + second / 2))) }
            snapshots.append(snapshot(at: Int64(second), sightings))
        }
        try record(snapshots, into: store)
        let cutoff: Int64 = 1_700_000_000_000 + 30 * 1000
        var more = true
        while more { more = try store.prune(before: cutoff, batchSize: 3, maxBatches: 4).more }
        #expect(try store.database.scalarInt("SELECT min(at) FROM samples") == cutoff)
        #expect(try store.database.scalarInt("SELECT count(*) FROM connections WHERE closed_at < ?", [.integer(cutoff)]) == 0)
        #expect(try store.database.scalarInt("SELECT count(*) FROM connections WHERE closed_at IS NULL") == 1)
        #expect(try store.database.scalarInt("SELECT started_at FROM windows") == cutoff)
        #expect(try store.database.scalarInt("SELECT samples FROM windows") == 20)
        // The first kept sample still carries every counter, so values stay known after the cut.
        // (EstabResets, ActiveOpens and PassiveOpens, which never changed.)
        #expect(try store.database.scalarInt("SELECT count(*) FROM counters WHERE sample_id = (SELECT min(id) FROM samples)") == 3)
        #expect(try store.database.scalarInt("SELECT count(*) FROM counters_v") == 3)
        #expect(try store.database.scalarText("PRAGMA integrity_check") == "ok")
    }

    @Test func retentionDropsWholeOldWindowsButKeepsTheLatestSample() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: path, access: .write)
        // Two windows: seconds 0-4, then a gap, then 100-104.
        try record((0..<5).map { snapshot(at: $0, []) } + (100..<105).map { snapshot(at: $0, []) }, into: store)
        #expect(try store.database.scalarInt("SELECT count(*) FROM windows") == 2)
        try store.prune(before: 1_700_000_000_000 + 50_000)
        #expect(try store.database.scalarInt("SELECT count(*) FROM windows") == 1)
        #expect(try store.database.scalarInt("SELECT count(*) FROM samples") == 5)
        // Everything older than the latest sample goes; that one stays for the next diff.
        try store.prune(before: 1_700_000_000_000 + 500_000)
        #expect(try store.database.scalarInt("SELECT count(*) FROM samples") == 1)
        #expect(try store.database.scalarInt("SELECT started_at = ended_at FROM windows") == 1)
        try record([snapshot(at: 105, [])], into: store)
        #expect(try store.database.scalarInt("SELECT count(*) FROM windows") == 1)
    }

    @Test func retentionOfManyCountersFinishesInFewBatches() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try Store(path: path, access: .write)
        // 200 counters that change every sample, as a busy host's segment counters do.
        let snapshots = (0..<20).map { second -> Snapshot in
            var s = snapshot(at: Int64(second), [])
            for index in 0..<200 { s.counters["TcpExt.Counter\(index)"] = Int64(second) }
            return s
        }
        try record(snapshots, into: store)
        var calls = 0
        var more = true
        while more && calls < 20 {
            more = try store.prune(before: 1_700_000_000_000 + 10_000, batchSize: 500, maxBatches: 3).more
            calls += 1
        }
        #expect(!more)
        // 10 old samples x 200 counters (+3) go, in transactions of 500 rows: a handful of calls.
        #expect(calls <= 3)
        #expect(try store.database.scalarInt("SELECT count(*) FROM samples") == 10)
        #expect(try store.database.scalarInt("SELECT count(*) FROM counters WHERE sample_id < (SELECT min(id) FROM samples)") == 0)
        #expect(try store.database.scalarInt("SELECT count(*) FROM counters WHERE sample_id = (SELECT min(id) FROM samples)") == 203)
    }

    @Test func embeddedMigrationsMatchTheFiles() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Migrations")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".sql") }.sorted()
        #expect(files.count == Migration.all.count)
        for (file, migration) in zip(files, Migration.all) {
            #expect(file == String(format: "%04d_%@.sql", migration.version, migration.name))
            #expect(try String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8) == migration.sql)
        }
    }

    @Test func oneCollectorAtATime() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        do {
            let lock = try CollectorLock(databasePath: path)
            #expect(CollectorLock.holder(databasePath: path) == getpid())
            #expect { _ = try CollectorLock(databasePath: path) } throws: {
                "\($0)".contains("collector (pid \(getpid())) is already recording")
            }
            // A refused attempt leaves the holder's pid in place.
            #expect(CollectorLock.holder(databasePath: path) == getpid())
            _ = lock
        }
        // A process another test spawns at this moment holds a copy of every descriptor between
        // its fork and its exec (O_CLOEXEC closes them only at exec), and with them the lock; so
        // the release is awaited briefly rather than expected at once.
        var released = CollectorLock.holder(databasePath: path) == nil
        for _ in 0..<100 where !released {
            usleep(20_000)
            released = CollectorLock.holder(databasePath: path) == nil
        }
        #expect(released)
        _ = try CollectorLock(databasePath: path)
    }
}
