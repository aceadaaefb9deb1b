#if canImport(Glibc)
    import Glibc
#endif

/// What `connlog status` reports about a database.
public struct StoreStatus: Sendable, Equatable {
    public var path: String
    /// The database file plus its write-ahead log, in bytes.
    public var sizeBytes: Int64
    public var schemaVersion: Int
    public var firstSample: Int64?
    public var lastSample: Int64?
    public var samples: Int64
    public var connections: Int64
    public var openConnections: Int64
    public var events: Int64
    public var windows: Int64
    /// Pauses between windows: a collector stopped, a pause past twice the interval, or a reboot.
    public var gaps: Int64
    public var namespaces: Int64
    /// The expected spacing of the latest window, in milliseconds.
    public var interval: Int64?
    /// The pid of the collector holding the database's lock, if one is running.
    public var collectorPID: Int32?
    /// The latest window's source (`proc` or `netlink`).
    public var source: String?
    /// Which source recorded which windows, oldest first.
    public var sources: [SourceSpan] = []
    /// Destroy notices taken into samples (nil when nothing ever listened), and how often the
    /// kernel dropped some: in how many samples, and the last such sample's time.
    public var destroys: Int64?
    public var destroysLost: Int64 = 0
    public var samplesWithDrops: Int64 = 0
    public var lastDrop: Int64?
    /// Connections known from their destroy notice alone: they lived between two samples.
    public var betweenSamples: Int64 = 0
    /// Sockets aborted or failed to connect between two samples, known without their ports.
    public var unnamedEnds: Int64 = 0

    /// The windows one source recorded: how many, their samples, and the time they cover.
    public struct SourceSpan: Sendable, Equatable {
        public var source: String
        public var windows: Int64
        public var samples: Int64
        public var first: Int64
        public var last: Int64
    }
    /// Who is recording into the database now.
    public var collecting: Collecting

    /// Who is recording into a database.
    public enum Collecting: Sendable, Equatable {
        /// A collector holds the lock.
        case collector(pid: Int32)
        /// No collector runs, but samples keep arriving at the expected spacing: `collect --once` from cron.
        case cron
        /// Nobody: the last sample is older than twice the expected spacing, or its collector stopped.
        case nothing
    }
}

extension Store {
    /// Counts and times that describe the database, for `connlog status`.
    ///
    /// - Parameter now: the current time in milliseconds, to tell a live cron schedule from a stopped one.
    public func status(now: Int64) throws -> StoreStatus {
        func count(_ sql: String) throws -> Int64 { try database.scalarInt(sql) ?? 0 }
        var size: Int64 = 0
        for suffix in ["", "-wal"] {
            var info = stat()
            if stat(path + suffix, &info) == 0 { size += Int64(info.st_size) }
        }
        var interval: Int64?
        var source: String?
        try database.forEach("SELECT interval_ms, source FROM windows ORDER BY id DESC LIMIT 1") {
            interval = $0.int64(0)
            source = $0.text(1)
        }
        let lastSample = try database.scalarInt("SELECT max(at) FROM samples")
        // A loop collector that stopped after the last sample is not a cron schedule.
        let loopStopped = try database.scalarInt("SELECT stopped_at FROM collectors ORDER BY id DESC LIMIT 1")
        let collecting: StoreStatus.Collecting
        if let pid = CollectorLock.holder(databasePath: path) {
            collecting = .collector(pid: pid)
        } else if let lastSample, let interval, now - lastSample <= 2 * interval, (loopStopped ?? 0) < lastSample {
            collecting = .cron
        } else {
            collecting = .nothing
        }
        var status = StoreStatus(
            path: path, sizeBytes: size, schemaVersion: try database.userVersion(),
            firstSample: try database.scalarInt("SELECT min(at) FROM samples"),
            lastSample: lastSample,
            samples: try count("SELECT count(*) FROM samples"),
            connections: try count("SELECT count(*) FROM connections"),
            openConnections: try count("SELECT count(*) FROM connections WHERE closed_at IS NULL"),
            events: try count("SELECT count(*) FROM events"),
            windows: try count("SELECT count(*) FROM windows"),
            gaps: try count("SELECT count(*) FROM windows WHERE start_reason IN ('gap', 'reboot')"),
            namespaces: try count("SELECT count(*) FROM namespaces"),
            interval: interval,
            collectorPID: { if case .collector(let pid) = collecting { pid } else { nil } }(),
            source: source, collecting: collecting)
        try database.forEach(
            """
            SELECT source, count(*), sum(samples), min(started_at), max(ended_at) FROM windows
            GROUP BY source ORDER BY min(id)
            """
        ) {
            status.sources.append(
                StoreStatus.SourceSpan(
                    source: $0.text(0), windows: $0.int64(1), samples: $0.int64(2), first: $0.int64(3), last: $0.int64(4)))
        }
        try database.forEach(
            "SELECT sum(destroys), sum(destroys_lost), count(*) FILTER (WHERE destroys_lost > 0), max(at) FILTER (WHERE destroys_lost > 0) FROM samples"
        ) {
            status.destroys = $0.optionalInt64(0)
            status.destroysLost = $0.optionalInt64(1) ?? 0
            status.samplesWithDrops = $0.int64(2)
            status.lastDrop = $0.optionalInt64(3)
        }
        status.betweenSamples = try count("SELECT count(*) FROM connection_details WHERE between_samples = 1")
        status.unnamedEnds = try count("SELECT COALESCE(sum(ends), 0) FROM unnamed_ends")
        return status
    }
}

extension Store {
    /// Notes a collector run in `collectors`; returns its row id.
    public func collectorStarted(mode: String, interval: Int64, procRoot: String, at: Int64) throws -> Int64 {
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, name.count - 1)
        let hostname = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        try database.cached(
            """
            INSERT INTO collectors (pid, hostname, mode, interval_ms, proc_root, started_at, version)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """
        ).run([
            .integer(Int64(getpid())), .text(hostname), .text(mode), .integer(interval), .text(procRoot), .integer(at),
            .text(ConnLogVersion.current),
        ])
        return database.lastInsertRowID
    }

    /// Notes that a collector run ended cleanly.
    public func collectorStopped(_ id: Int64, at: Int64) throws {
        try database.cached("UPDATE collectors SET stopped_at = ? WHERE id = ?").run([.integer(at), .integer(id)])
    }
}
