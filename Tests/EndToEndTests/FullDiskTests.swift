import ConnLog
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A database on a small filesystem that fills up. Needs root to mount a tmpfs of its own.
@Suite("connlog collect on a full disk", .serialized, .enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
struct FullDiskTests {
    let directory: URL
    var disk: String { directory.appendingPathComponent("disk").path }
    var db: String { disk + "/connlog.db" }

    init() throws {
        directory = try temporaryDirectory()
    }

    /// Runs `mount` with `arguments`; the test stops if it fails.
    func mount(_ arguments: [String]) throws {
        let outcome = try run(arguments, executable: URL(fileURLWithPath: "/bin/mount"))
        try #require(outcome.status == 0, "mount \(arguments): \(outcome.stderr)")
    }

    /// `count` established sockets whose inodes start at `firstInode`: a new table each time.
    func lines(_ count: Int, firstInode: Int) -> [String] {
        (0..<count).map { index in
            let port = String(format: "%04X", 20000 + index)
            return
                "0100007F:\(port) 0200007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 \(firstInode + index) 1 0000000087e53dda 20 0 0 10 -1"
        }
    }

    @Test func readOnlyMediaRefuseCollectingButAnswerQuestions() throws {
        defer {
            _ = umount(disk)
            try? FileManager.default.removeItem(at: directory)
        }
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: true)
        try mount(["-t", "tmpfs", "-o", "size=4m", "tmpfs", disk])
        let proc = try FakeProc(in: directory)
        try proc.table([FakeProc.listener, FakeProc.established])
        #expect(try run(["collect", "--once", "--db", db, "--proc-root", proc.root.path]).status == 0)
        try mount(["-o", "remount,ro", disk])
        let before = try Data(contentsOf: URL(fileURLWithPath: db))

        let collect = try run(["collect", "--once", "--db", db, "--proc-root", proc.root.path])
        #expect(collect.status == 1)
        #expect(collect.stderr.contains("Read-only file system"), "\(collect.stderr)")
        // Evidence on read-only media can still be questioned.
        let status = try run(["status", "--db", db])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("samples         1"))
        let listeners = try run(["query", "listeners", "--format", "csv", "--db", db])
        #expect(listeners.status == 0, "\(listeners.stderr)")
        #expect(listeners.stdout.contains("127.0.0.1:5432"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: db)) == before)
    }

    @Test func aFullDiskIsReportedKeepsTheDatabaseWholeAndRecordingResumes() throws {
        defer {
            _ = umount(disk)
            try? FileManager.default.removeItem(at: directory)
        }
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: true)
        try mount(["-t", "tmpfs", "-o", "size=1m", "tmpfs", disk])
        let proc = try FakeProc(in: directory)
        try proc.table(lines(300, firstInode: 1000))
        let collector = try start(["collect", "--interval", "50ms", "--no-processes", "--db", db, "--proc-root", proc.root.path])
        #expect(waitUntil(seconds: 20) { ((try? query(db, "SELECT count(*) FROM samples"))?.first?.first).flatMap { Int($0) } ?? 0 >= 1 })

        // New sockets every 100 ms until the disk is full: the writes start failing.
        var generation = 1
        var full = false
        for _ in 0..<400 where !full {
            generation += 1
            try proc.table(lines(300, firstInode: 1000 * generation))
            usleep(100_000)
            var info = statvfs()
            full = statvfs(disk, &info) == 0 && info.f_bavail * UInt(info.f_bsize) < 64 * 1024
        }
        try #require(full, "the tmpfs never filled")
        usleep(500_000)
        #expect(try query(db, "PRAGMA integrity_check") == [["ok"]])
        let before = Int(try query(db, "SELECT count(*) FROM samples").first?.first ?? "0") ?? 0

        // Space returns (the filesystem grows), and recording goes on by itself.
        try mount(["-o", "remount,size=8m", disk])
        try proc.table(lines(300, firstInode: 1000 * (generation + 1)))
        #expect(waitUntil(seconds: 20) { (Int((try? query(db, "SELECT count(*) FROM samples"))?.first?.first ?? "0") ?? 0) > before })
        collector.signal(SIGTERM)
        let outcome = collector.finish()
        #expect(outcome.status == 0)
        #expect(outcome.stderr.contains("is full"), "\(outcome.stderr)")
        #expect(outcome.stderr.contains("recovered after"), "\(outcome.stderr)")
        #expect(try query(db, "PRAGMA integrity_check") == [["ok"]])
        #expect(
            try query(db, "SELECT count(*) FROM windows w WHERE w.samples <> (SELECT count(*) FROM samples s WHERE s.window_id = w.id)")
                == [["0"]])
    }
}
