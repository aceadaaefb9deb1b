#if canImport(Glibc)
    import Glibc
#endif

/// Where the collector reads the socket list (`--source`).
public enum SocketSourceChoice: String, Sendable, CaseIterable {
    /// Netlink where the kernel allows it and the proc root is connlog's own namespace, else the tables.
    case auto
    /// The sock_diag netlink interface, with destroy notifications in the sampling loop.
    case netlink
    /// The proc tables (`net/tcp` and `net/tcp6`).
    case proc
}

/// The collector: sample -> diff -> one transaction, once or on a steady cadence.
///
/// Holds the database's collector lock for its lifetime, so two recorders never both write
/// into one database.
public final class Recorder {
    public struct Options: Sendable {
        /// The proc filesystem to sample.
        public var procRoot: String = "/proc"
        /// Attribute sockets to processes (off with `--no-processes`).
        public var attributeProcesses: Bool = true
        /// Expected spacing of samples in milliseconds: the loop's interval, or cron's `--every`.
        public var interval: Int64 = 1000
        /// Delete history older than this many milliseconds (`--retain`); nil keeps everything.
        public var retain: Int64?
        /// Where the socket list is read.
        public var source: SocketSourceChoice = .auto
        /// Bytes of destroy notifications the kernel may queue for the loop (`--destroy-buffer`).
        public var destroyBuffer: Int = Self.defaultDestroyBuffer
        public static let defaultDestroyBuffer = 4 << 20

        public init(
            procRoot: String = "/proc", attributeProcesses: Bool = true, interval: Int64 = 1000, retain: Int64? = nil,
            source: SocketSourceChoice = .auto, destroyBuffer: Int = Self.defaultDestroyBuffer
        ) {
            self.procRoot = procRoot
            self.attributeProcesses = attributeProcesses
            self.interval = interval
            self.retain = retain
            self.source = source
            self.destroyBuffer = destroyBuffer
        }
    }

    /// What one recorded sample held.
    public struct SampleSummary: Sendable {
        public var at: Int64
        public var sockets: Int
        public var events: Int
        public var opened: Int
        public var closed: Int
        public var malformedLines: Int
        /// What could not be read but did not stop the sample, one sentence each.
        public var problems: [String]
        public var windowStart: WindowStart?
        /// Where the sockets were read: `proc` or `netlink`.
        public var source: String
        /// Destroy notifications taken into the sample, and how often some were dropped; nil
        /// when nothing listened.
        public var destroys: Int?
        public var destroysLost: Int?
        /// Reading and parsing the tables, in microseconds.
        public var readMicroseconds: Int64
        /// The whole sample: read, attribute, diff and commit, in microseconds.
        public var totalMicroseconds: Int64
    }

    public let store: Store
    public let options: Options
    private let lock: CollectorLock
    private let source: ProcSource
    private var tracker: Tracker?
    private var namespace: UInt64?
    private var windowID: Int64?
    private var lastPrune: Int64 = 0
    /// How long the loop was busy (sampling and pruning) before the current sample started, in
    /// milliseconds: a sample late by that much is not a gap. 0 outside a loop.
    private var busyMilliseconds: Int64 = 0

    /// Why `--source auto` reads the proc tables, when it does.
    public private(set) var sourceNotice: String?
    /// Where the sockets are read now: `netlink` or `proc`.
    public var socketSource: String { source.socketSource }

    /// Checks the proc filesystem, takes the database's collector lock, then opens (creating or
    /// upgrading) the database; nothing is created when the proc filesystem cannot be read, or
    /// when `--source netlink` cannot open its socket.
    public init(databasePath: String, options: Options) throws {
        source = ProcSource(root: options.procRoot, attributeProcesses: options.attributeProcesses)
        try source.checkReadable()
        // `auto` trusts only the real /proc: a copy (fixtures, a container's /host/proc) may show
        // another namespace's tables under a namespace link that looks like connlog's own.
        if options.source == .auto && FileReading.realPath(options.procRoot) != "/proc" {
            sourceNotice =
                "reading the proc tables under \(options.procRoot): netlink reads only connlog's own namespace (--source netlink to insist)"
        } else if options.source != .proc {
            do {
                try source.checkOwnNamespace()
                // A kernel that opens the socket but refuses the dump is found by the first
                // sample: `auto` then reads the tables from it on, without a dump spent here.
                source.netlink = try SockDiag()
                source.fallsBackToTables = options.source == .auto
            } catch {
                if options.source == .netlink { throw error }
                sourceNotice = "reading the proc tables: \(error.message)"
            }
        }
        try Store.checkWritable(databasePath)
        lock = try CollectorLock(databasePath: databasePath)
        store = try Store(path: databasePath, access: .write)
        self.options = options
    }

    /// Takes one sample, diffs it against the previous one (in memory, or the database's after a
    /// restart) and records it in one transaction.
    @discardableResult
    public func recordSample() throws -> SampleSummary {
        try explainingDatabaseErrors(takeSample)
    }

    /// Says SQLite's errors about the file the way an operator needs them, and marks damage.
    private func explainingDatabaseErrors<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as SQLiteError {
            throw Store.explain(error, path: store.path)
        }
    }

    private func takeSample() throws -> SampleSummary {
        let started = FileReading.monotonicNanoseconds()
        if tracker == nil {
            try resume(namespace: try source.namespaceID())
        }
        let snapshot = try source.sample()
        if namespace != snapshot.namespace {
            // `/proc/<pid>` whose process moved to another namespace: continue that one's history.
            try resume(namespace: snapshot.namespace)
        }
        let diff = tracker!.apply(snapshot, expectedInterval: options.interval, slack: busyMilliseconds)
        do {
            windowID = try store.record(
                diff,
                context: Store.SampleContext(
                    namespace: snapshot.namespace, bootID: snapshot.bootID, windowID: windowID, interval: options.interval,
                    source: snapshot.source, malformedLines: snapshot.malformedLines, readMicroseconds: snapshot.readMicroseconds,
                    attributed: snapshot.attributed))
        } catch {
            // The database is the truth: start again from what it holds, with the notices the
            // sample took (they may date closes the next sample records again).
            tracker = nil
            source.giveBack(snapshot)
            throw error
        }
        let total = (FileReading.monotonicNanoseconds() - started) / 1000
        return SampleSummary(
            at: snapshot.at, sockets: diff.sockets, events: diff.events.count, opened: diff.opened.count,
            closed: diff.closed.count, malformedLines: snapshot.malformedLines, problems: snapshot.problems,
            windowStart: diff.windowStart, source: snapshot.source, destroys: diff.destroys, destroysLost: diff.destroysLost,
            readMicroseconds: snapshot.readMicroseconds, totalMicroseconds: total)
    }

    /// Loads where the namespace's history stands from the database.
    private func resume(namespace: UInt64) throws {
        let position = try store.position(namespace: namespace)
        tracker = Tracker(state: position.tracker)
        windowID = position.windowID
        self.namespace = namespace
        source.rememberOwners(of: position.tracker.openConnections, withoutOwners: position.lastSampleAttributed)
    }

    /// Prunes history older than `options.retain`, at most once a minute, for at most
    /// `budget` milliseconds: a large backlog is worked off over several samples.
    public func pruneIfDue(now: Int64, budget: Int64) throws {
        guard let retain = options.retain, now - lastPrune >= 60_000 else { return }
        let result = try explainingDatabaseErrors {
            try store.prune(before: now - retain, until: FileReading.monotonicNanoseconds() + budget * 1_000_000)
        }
        if !result.more { lastPrune = now }
    }

    /// How a sampling loop ended.
    public struct RunOutcome: Sendable {
        /// Samples recorded.
        public var samples: Int
        /// Samples that failed (and were not recorded).
        public var failures: Int
        /// Whether the last attempt failed.
        public var lastFailed: Bool
        /// Whether a stop signal ended the loop (rather than `duration`).
        public var stoppedBySignal: Bool
        /// What ended the loop early: the database is damaged, so nothing more is written into it.
        public var stoppedBy: ConnLogError?
    }

    /// Samples every `options.interval` until `duration` (milliseconds) has passed or one of
    /// `stopSignals` arrives; a signal lets the sample in hand finish and be committed.
    ///
    /// Ticks are kept on a fixed grid from the start, so sampling does not drift; a sample that
    /// overruns skips the ticks it missed. Failures are reported through `log` (rate-limited)
    /// and sampling goes on, except when the database turns out to be damaged: then the loop
    /// stops and `stoppedBy` says so. The file is checked (`PRAGMA quick_check`) before the
    /// first sample, so a damaged database is refused rather than written into.
    ///
    /// - Parameter onSample: called after each recorded sample.
    @discardableResult
    public func run(
        duration: Int64?, stopSignals: [Int32] = [SIGINT, SIGTERM], log: @escaping (String) -> Void,
        onSample: (SampleSummary) -> Void = { _ in }
    ) -> RunOutcome {
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in stopSignals { sigaddset(&signals, signal) }
        // Blocked signals stay pending until sigtimedwait takes them between samples.
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        var outcome = RunOutcome(samples: 0, failures: 0, lastFailed: false, stoppedBySignal: false)
        // Before the clock starts: on a large file the check takes seconds, which must not count
        // as the first sample overrunning its interval.
        do {
            try store.checkWhole()
        } catch {
            outcome.stoppedBy = error
            return outcome
        }
        let intervalNanoseconds = options.interval * 1_000_000
        let start = FileReading.monotonicNanoseconds()
        let end = duration.map { start + $0 * 1_000_000 }
        var failures = RateLimitedLog(log)
        var warnings = RateLimitedLog(log)
        var tick: Int64 = 0
        defer { busyMilliseconds = 0 }
        // Destroy notifications are heard between samples, on their own thread (which inherits the
        // blocked signals). Without them the netlink source still dumps; closes are then dated
        // by the samples alone.
        var listener: DestroyListener?
        if source.netlink != nil {
            do {
                let opened = try DestroyListener(receiveBuffer: options.destroyBuffer)
                if opened.receiveBufferBytes < options.destroyBuffer {
                    warnings.report(
                        "the kernel granted \(opened.receiveBufferBytes) bytes for destroy notices, not the \(options.destroyBuffer) asked: net.core.rmem_max caps it without CAP_NET_ADMIN; a burst of closes may overflow it"
                    )
                }
                try opened.start()
                listener = opened
                source.destroyListener = opened
            } catch {
                warnings.report("\(error)")
            }
        }
        defer {
            listener?.stop()
            source.destroyListener = nil
        }
        let run = try? store.collectorStarted(
            mode: "loop", interval: options.interval, procRoot: options.procRoot, at: TimeText.nowMilliseconds())
        defer { if let run { try? store.collectorStopped(run, at: TimeText.nowMilliseconds()) } }
        while true {
            let began = FileReading.monotonicNanoseconds()
            do {
                let summary = try recordSample()
                outcome.samples += 1
                outcome.lastFailed = false
                onSample(summary)
                for problem in summary.problems { warnings.report(problem) }
                // Pruning gets half an interval, so it never makes the next sample late.
                try pruneIfDue(now: summary.at, budget: max(1, options.interval / 2))
                failures.recovered()
            } catch {
                outcome.failures += 1
                outcome.lastFailed = true
                if let error = error as? ConnLogError, error.kind == .damagedDatabase {
                    outcome.stoppedBy = error
                    break
                }
                failures.report("sample failed: \(error)")
            }
            let now = FileReading.monotonicNanoseconds()
            busyMilliseconds = (now - began) / 1_000_000
            tick += 1
            var next = start + tick * intervalNanoseconds
            if next <= now {
                let missed = (now - next) / intervalNanoseconds + 1
                tick += missed
                next += missed * intervalNanoseconds
                warnings.report("a sample took longer than the interval; skipped \(missed) tick(s)")
            }
            if let end, next > end { break }
            if Self.wait(for: signals, nanoseconds: next - now) {
                outcome.stoppedBySignal = true
                break
            }
        }
        return outcome
    }

    /// Waits up to `nanoseconds` for one of `signals`; true if one arrived.
    private static func wait(for signals: sigset_t, nanoseconds: Int64) -> Bool {
        var signals = signals
        var remaining = nanoseconds
        while true {
            var timeout = timespec(tv_sec: Int(remaining / 1_000_000_000), tv_nsec: Int(remaining % 1_000_000_000))
            let started = FileReading.monotonicNanoseconds()
            let result = sigtimedwait(&signals, nil, &timeout)
            if result > 0 { return true }
            if errno != EINTR { return false }
            remaining -= FileReading.monotonicNanoseconds() - started
            if remaining <= 0 { return false }
        }
    }
}

@available(*, unavailable)
extension Recorder: Sendable {}

/// Logs each kind of problem once a minute at most, saying how often it recurred meanwhile.
///
/// Messages that differ only in their numbers ("skipped 3 malformed lines", "skipped 4 ...")
/// are one kind.
struct RateLimitedLog {
    private let sink: (String) -> Void
    private var entries: [String: (logged: Int64, suppressed: Int)] = [:]
    private var failures = 0

    init(_ sink: @escaping (String) -> Void) { self.sink = sink }

    mutating func report(_ message: String) {
        failures += 1
        let kind = String(message.filter { !$0.isNumber })
        let now = FileReading.monotonicNanoseconds()
        if let entry = entries[kind], now - entry.logged < 60_000_000_000 {
            entries[kind]?.suppressed += 1
            return
        }
        let repeats = entries[kind]?.suppressed ?? 0
        sink(repeats > 0 ? "\(message) (and \(repeats) more times in the last minute)" : message)
        entries[kind] = (now, 0)
    }

    /// After failures, says that things work again.
    mutating func recovered() {
        if failures > 0 { sink("recovered after \(failures) failed sample\(failures == 1 ? "" : "s")") }
        failures = 0
        entries.removeAll()
    }
}
