#if canImport(Glibc)
    import Glibc
#endif

/// Takes samples of one network namespace from a proc filesystem, and optionally its sockets
/// from netlink.
///
/// Reads `<root>/net/tcp`, `<root>/net/tcp6`, `<root>/net/snmp`, `<root>/net/netstat`, the boot id
/// and the namespace id, and (unless disabled) attributes sockets to processes. `root` is `/proc`,
/// a copy of it (`/host/proc` in a container, or test fixtures), or `/proc/<pid>` to sample that
/// process's network namespace. Buffers and the process cache are reused from sample to sample.
///
/// With ``netlink`` set, the socket list comes from a sock_diag dump instead of the tables (the
/// counters, boot id and namespace still come from `root`), and with ``destroyListener`` set
/// too, each sample carries the sockets the kernel freed since the previous one.
public final class ProcSource {
    /// The directory everything is read under.
    public let root: String
    /// Where `sys/kernel/random/boot_id` and the `<pid>` directories live: `root`, or its parent
    /// when `root` is `/proc/<pid>`.
    public let systemRoot: String
    private let owners: ProcessOwners?
    /// Reads the sockets over netlink instead of the tables: only for the caller's own namespace.
    public var netlink: SockDiag?
    /// Whether a failed netlink dump falls back to the tables for this sample and every later one
    /// (`--source auto`), rather than failing the sample.
    public var fallsBackToTables = false
    /// Hears the sockets the kernel frees between samples (with ``netlink``).
    public var destroyListener: DestroyListener?
    /// Where the sockets are read now: `netlink` or `proc` (as `windows.source` names them).
    public var socketSource: String { netlink == nil ? "proc" : "netlink" }
    private var buffer: [UInt8] = []
    private var sightings: [Sighting] = []

    /// - Parameters:
    ///   - root: the proc filesystem to read, `/proc` by default.
    ///   - attributeProcesses: whether to find each socket's owning process (`--no-processes` turns it off).
    public init(root: String = "/proc", attributeProcesses: Bool = true) {
        var root = root
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        self.root = root
        let last = root.split(separator: "/").last.map(String.init) ?? ""
        if !last.isEmpty, last.allSatisfy(\.isNumber), !FileReading.exists("\(root)/sys/kernel/random/boot_id") {
            let parent = String(root.dropLast(last.count + 1))
            systemRoot = parent.isEmpty ? "/" : parent
        } else {
            systemRoot = root
        }
        owners = attributeProcesses ? ProcessOwners(processRoot: systemRoot) : nil
    }

    /// Tells process attribution which sockets an earlier run already attributed, so that only
    /// new inodes are looked up.
    ///
    /// - Parameter withoutOwners: whether the earlier run looked for owners, so that sockets it
    ///   recorded without one are not owned by any process this user can see.
    public func rememberOwners(of connections: some Sequence<TrackedConnection>, withoutOwners: Bool) {
        guard let owners else { return }
        var known: [UInt64: ProcessOwner] = [:]
        var unowned: Set<UInt64> = []
        for connection in connections where connection.inode != 0 {
            if let owner = connection.owner {
                known[connection.inode] = owner
            } else if withoutOwners {
                unowned.insert(connection.inode)
            }
        }
        owners.seed(owners: known, unattributable: unowned)
    }

    /// Checks that the tables, boot id and namespace id can be read, without taking a sample.
    public func checkReadable() throws(ConnLogError) {
        let table = "\(root)/net/tcp"
        guard access(table, R_OK) == 0 else {
            throw ConnLogError("cannot read \(table): \(FileReading.errorText(errno)); point --proc-root at a proc filesystem")
        }
        _ = try bootID()
        _ = try namespaceID()
    }

    /// Reads one sample. Malformed table lines are counted, not fatal; a missing or unreadable
    /// `net/tcp`, boot id or namespace id is an error that names the path.
    public func sample() throws(ConnLogError) -> Snapshot {
        // Taken before the sample's time and its dump: a socket whose notice is taken is gone
        // from the dump, or is the TIME_WAIT socket that replaced it, and was freed before `at`.
        let heard = netlink == nil ? nil : destroyListener?.take()
        do {
            return try read(heard: heard)
        } catch {
            if let heard { destroyListener?.giveBack(heard) }
            throw error
        }
    }

    /// Hands a sample's destroy notices back to be taken again by the next one, when the sample
    /// was not recorded.
    public func giveBack(_ snapshot: Snapshot) {
        guard let destroyed = snapshot.destroyed else { return }
        destroyListener?.giveBack((destroyed, snapshot.destroysLost))
    }

    private func read(heard: DestroyListener.Heard?) throws(ConnLogError) -> Snapshot {
        let started = FileReading.monotonicNanoseconds()
        // Right after the notices were taken: a notice taken is of a socket freed before `at`.
        let at = TimeText.nowMilliseconds()
        // The reset reconciliation brackets the socket list with the counters (Ending.swift says why).
        let before = text("\(root)/net/snmp").flatMap { ResetCounters(CounterParser.parse($0, prefixes: ["Tcp"])) }
        sightings.removeAll(keepingCapacity: true)
        var problems: [String] = []
        var malformed = 0
        if let netlink {
            do {
                try netlink.dump(into: &sightings)
            } catch  where fallsBackToTables {
                self.netlink = nil
                destroyListener?.stop()
                destroyListener = nil
                sightings.removeAll(keepingCapacity: true)
                problems.append("\(error.message); reading the proc tables from now on")
            }
        }
        if netlink == nil {
            malformed = try readTable("\(root)/net/tcp", family: 4, required: true)
            malformed += try readTable("\(root)/net/tcp6", family: 6, required: false)
        }
        let readTime = (FileReading.monotonicNanoseconds() - started) / 1000

        if malformed > 0 { problems.append("skipped \(malformed) malformed lines in \(root)/net/tcp and tcp6") }
        var counters: [String: Int64] = [:]
        if let snmp = text("\(root)/net/snmp") {
            counters = CounterParser.parse(snmp, prefixes: ["Tcp"])
        }
        if counters[Snapshot.estabResetsCounter] == nil {
            problems.append(
                "cannot read Tcp EstabResets from \(root)/net/snmp: closes without a report of their own are recorded as ambiguous")
        }
        if let netstat = text("\(root)/net/netstat") {
            counters.merge(CounterParser.parse(netstat, prefixes: ["TcpExt"])) { a, _ in a }
        } else {
            problems.append("cannot read \(root)/net/netstat: TcpExt counters are not recorded")
        }

        var attributed: [UInt64: ProcessOwner] = [:]
        if let owners {
            attributed = owners.owners(of: sightings.lazy.map(\.inode))
        }
        // The notices go with the netlink source: a fall back to the tables in this sample drops them.
        let heard = netlink == nil ? nil : heard
        if let lost = heard?.lost, lost > 0 {
            problems.append(
                "the kernel dropped socket destroy notifications \(lost) times (its buffer for connlog was full): some closes are dated by the samples alone, and some short-lived connections were missed; raise --destroy-buffer"
            )
        }
        var snapshot = Snapshot(
            at: at, namespace: try namespaceID(), bootID: try bootID(), sightings: sightings,
            counters: counters, malformedLines: malformed, owners: attributed, attributed: owners != nil,
            readMicroseconds: readTime)
        snapshot.problems = problems
        snapshot.countersBeforeRead = before
        snapshot.source = socketSource
        snapshot.destroyed = heard?.notices
        snapshot.destroysLost = heard?.lost ?? 0
        return snapshot
    }

    /// A small file as text, read through the buffer the tables use (no allocation per sample).
    private func text(_ path: String) -> String? {
        guard let count = try? FileReading.read(path, into: &buffer) else { return nil }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }

    private func readTable(_ path: String, family: UInt8, required: Bool) throws(ConnLogError) -> Int {
        // A kernel booted with ipv6.disable=1 has no tcp6; that is an empty table, not an error.
        if !required && !FileReading.exists(path) { return 0 }
        var malformed = 0
        var atStart = true
        try FileReading.readLines(path, buffer: &buffer) { piece in
            malformed += SocketTableParser.parse(piece, family: family, atStart: atStart, into: &sightings)
            atStart = false
        }
        return malformed
    }

    /// The boot id (`sys/kernel/random/boot_id`), trimmed.
    func bootID() throws(ConnLogError) -> String {
        let path = "\(systemRoot)/sys/kernel/random/boot_id"
        guard let text = text(path) else {
            throw ConnLogError("cannot read \(path): connlog needs the boot id to notice reboots; point --proc-root at a proc filesystem")
        }
        let trimmed = String(text.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
        guard !trimmed.isEmpty else { throw ConnLogError("\(path) is empty; point --proc-root at a proc filesystem") }
        return trimmed
    }

    /// Checks that `root` shows the caller's own network namespace, the only one netlink reads.
    public func checkOwnNamespace() throws(ConnLogError) {
        let own = FileReading.link("/proc/self/ns/net")
        let sampled = try namespaceID()
        guard let own, own == "net:[\(sampled)]" else {
            throw ConnLogError(
                "netlink reads only connlog's own network namespace (\(own ?? "unknown")), but \(root) shows net:[\(sampled)]; use --source proc to read its tables"
            )
        }
    }

    /// The network namespace's inode, from the `net:[N]` link at `self/ns/net` (or `ns/net` under `/proc/<pid>`).
    public func namespaceID() throws(ConnLogError) -> UInt64 {
        let candidates = ["\(root)/self/ns/net", "\(root)/ns/net"]
        for path in candidates {
            guard let target = FileReading.link(path) else { continue }
            guard target.hasPrefix("net:["), target.hasSuffix("]"), let id = UInt64(target.dropFirst(5).dropLast()) else {
                throw ConnLogError("\(path) points to \"\(target)\", not net:[N]; point --proc-root at a proc filesystem")
            }
            return id
        }
        throw ConnLogError(
            "cannot read the network namespace id at \(candidates[0]): run as a user who may read it, or point --proc-root at a proc filesystem"
        )
    }
}
