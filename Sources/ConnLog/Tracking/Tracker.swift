/// Why a sample starts a new observation window.
public enum WindowStart: String, Sendable {
    /// The namespace's first sample ever.
    case first
    /// The previous sample is more than twice the expected interval ago.
    case gap
    /// The boot id changed: the host rebooted since the previous sample.
    case reboot
    /// The expected spacing changed (a cron schedule after a sidecar, say). Observation was
    /// continuous: this is not a gap, but each window keeps one interval.
    case interval
    /// The sockets are now read from another source (netlink or the proc tables). Observation
    /// was continuous: each window keeps one source.
    case source

    /// Whether nothing was recording just before this sample (a gap or reboot, or no history at all).
    public var isBlind: Bool { self != .interval && self != .source }
}

/// What one sample changed, ready to be written in one transaction.
public struct SampleDiff: Sendable {
    /// When the sample was taken, and the namespace's previous sample (nil for its first).
    public var at: Int64
    public var after: Int64?
    /// Set when this sample begins an observation window.
    public var windowStart: WindowStart?
    /// Events in the order they are recorded; on one key a close comes before the open that replaces it.
    public var events: [ConnectionEvent] = []
    /// Connections first seen in this sample.
    public var opened: [TrackedConnection] = []
    /// Open connections whose stored facts changed (state, maxima, inode, owner).
    public var updated: [TrackedConnection] = []
    /// Connections seen gone, with how they ended.
    public var closed: [(connection: TrackedConnection, ending: Ending)] = []
    /// Connections closed by the previous sample that this sample saw again unchanged: that read
    /// missed them (the kernel does not read the table atomically), so their close is withdrawn.
    public var reopened: [Int64] = []
    /// Endings decided again: a close an earlier sample recorded whose destroy notice came only
    /// now, and, when a withdrawn close or such a notice takes one of the previous sample's
    /// candidates out of its V, that sample's other candidates judged again.
    public var revisedEndings: [(connection: Int64, ending: Ending)] = []
    /// The previous sample's V and attributed resets after such a revision.
    public var revisedPrevious: (candidates: Int, attributed: Int)?
    /// R: the `Tcp: EstabResets` delta since the previous sample, when both were read in one boot.
    public var resets: Int64?
    /// V: connections a sample saw alive that left ESTABLISHED or CLOSE_WAIT straight to gone
    /// with no report of their own, judged by the reset counter.
    public var resetCandidates: Int = 0
    /// What the counter was weighed with (``Ending/CounterWindow``), and the counters read before
    /// this sample's sockets, kept for the next sample's window.
    public var counterWindow = Ending.CounterWindow()
    public var countersBeforeRead: ResetCounters?
    /// Counters to store: all of them when a window starts, else the ones whose value changed.
    public var counterChanges: [String: Int64] = [:]
    /// Distinct sockets in the sample, after folding duplicated lines.
    public var sockets: Int = 0
    /// Destroy notifications taken into this sample, and how often the kernel dropped some since
    /// the previous sample; both nil when nothing listened for them.
    public var destroys: Int?
    public var destroysLost: Int?
    /// Connections an earlier sample closed whose destroy notification came only now: when the
    /// kernel freed them, and what it reported.
    public var lateDestroys: [LateDestroy] = []
    /// Sockets the kernel disconnected before it freed them, that matched no connection a sample
    /// saw, per peer: aborted by this side (SO_LINGER 0, or never accepted when their listener
    /// closed), or whose connect() returned an error. The kernel had cleared their ports and local
    /// address, so they cannot be recorded as connections.
    public var unnamedEnds: [IPAddress: Int] = [:]
}

/// A destroy notification for a connection an earlier sample closed.
public struct LateDestroy: Sendable, Equatable {
    public var connection: Int64
    public var cookie: UInt64
    /// When it arrived.
    public var at: Int64
    public var report: FinalReport
    /// The final traffic, unless the kernel zeroed it (a disconnected socket).
    public var traffic: Traffic? { report.traffic }
}

/// The pure differ: previous socket set + a new sample -> events and per-connection facts.
///
/// Identity follows the spec: a socket's key is (family, local, remote) within one namespace;
/// the same key is a new connection when its inode changes from one non-zero value to another,
/// or when a closing state goes back to SYN_SENT, SYN_RECV or ESTABLISHED. A socket read twice
/// in one sample is one socket; one missed by a single read is taken back (see `reopened`).
public struct Tracker: Sendable {
    /// What the tracker remembers between samples; loaded from the store for `collect --once`.
    public struct State: Sendable {
        /// The open connections: the last sample's socket set.
        var table: ConnectionTable
        /// The open connections by key (built on each call: for resuming and inspecting, not per socket).
        public var open: [SocketKey: TrackedConnection] {
            get { Dictionary(uniqueKeysWithValues: table.connections.map { ($0.key, $0) }) }
            set {
                table = ConnectionTable(newValue.values)
                listeningPorts = nil
            }
        }
        /// The open connections, in no particular order.
        public var openConnections: [TrackedConnection] { table.connections }
        /// Connections the last sample closed, in case the next read shows that read missed them.
        public var justClosed: [SocketKey: TrackedConnection]
        /// The last sample's time, boot id, counters and expected interval (nil before the first sample).
        public var last: (at: Int64, bootID: String, counters: [String: Int64], interval: Int64)?
        /// The id the next new connection gets.
        public var nextID: Int64
        /// What the last sample's counter verdict was weighed with, and the ids of its
        /// candidates (its V), for judging them again when one of them is taken out of V.
        public var lastWindow = Ending.CounterWindow()
        public var lastCandidates: Set<Int64>
        /// The reset counters read just before the last sample's sockets.
        public var lastCountersBeforeRead: ResetCounters?
        /// The local ports of `open`'s listeners, kept between samples; nil until computed.
        var listeningPorts: Set<UInt16>?
        /// Where the last sample's sockets were read (`proc` or `netlink`).
        public var lastSource: String?
        /// Closed connections whose destroy notice has not come yet, by cookie: the kernel frees a
        /// socket (and tells) only when its last file descriptor closes, which can be long after
        /// it left the tables. A notice that finds one here dates that close, and is never taken
        /// for a connection of its own. Kept for ``awaitedFor`` after the close.
        public var awaitingNotice: [UInt64: AwaitedClose] = [:]
        var awaitingPrunedAt: Int64 = 0

        public init(
            open: [SocketKey: TrackedConnection] = [:], justClosed: [SocketKey: TrackedConnection] = [:],
            last: (at: Int64, bootID: String, counters: [String: Int64], interval: Int64)? = nil, nextID: Int64 = 1,
            lastWindow: Ending.CounterWindow = Ending.CounterWindow(), lastCandidates: Set<Int64> = []
        ) {
            self.init(
                openConnections: Array(open.values), justClosed: justClosed, last: last, nextID: nextID, lastWindow: lastWindow,
                lastCandidates: lastCandidates)
        }

        /// - Parameter openConnections: connections with distinct keys.
        public init(
            openConnections: [TrackedConnection], justClosed: [SocketKey: TrackedConnection] = [:],
            last: (at: Int64, bootID: String, counters: [String: Int64], interval: Int64)? = nil, nextID: Int64 = 1,
            lastWindow: Ending.CounterWindow = Ending.CounterWindow(), lastCandidates: Set<Int64> = []
        ) {
            self.table = ConnectionTable(openConnections)
            self.justClosed = justClosed
            self.last = last
            self.nextID = nextID
            self.lastWindow = lastWindow
            self.lastCandidates = lastCandidates
        }
    }

    /// A closed connection still owed its destroy notice, with what its notice needs to decide
    /// its ending again when the counter judged it.
    public struct AwaitedClose: Sendable, Equatable {
        public var connection: Int64
        public var closedAt: Int64
        /// The state it was last seen in, and whether this side opened it (``Ending/openedActively(_:)``).
        public var lastState: TCPState
        public var openedActively: Bool?
        /// Its ending came from the reset counter: its notice decides it instead.
        public var judgedByCounters: Bool

        public init(
            connection: Int64, closedAt: Int64, lastState: TCPState = .established, openedActively: Bool? = nil,
            judgedByCounters: Bool = false
        ) {
            self.connection = connection
            self.closedAt = closedAt
            self.lastState = lastState
            self.openedActively = openedActively
            self.judgedByCounters = judgedByCounters
        }
    }

    /// How long a closed connection waits for its destroy notice, in milliseconds.
    public static let awaitedFor: Int64 = 30 * 60_000

    public private(set) var state: State
    /// Scratch space for ``mayRepeatKeys(_:table:)``, kept between samples.
    private var fingerprints: [UInt64] = []

    /// Linux's fixed TIME_WAIT length (`TCP_TIMEWAIT_LEN` in include/net/tcp.h), in USER_HZ ticks.
    static let timeWaitTicks: Int64 = 6000
    /// The timer number `/proc/net/tcp` shows for the TIME_WAIT timer (`get_timewait4_sock`).
    static let timeWaitTimer: UInt8 = 3

    public init(state: State = State()) {
        self.state = state
    }

    /// Diffs `snapshot` against the previous sample.
    ///
    /// - Parameter slack: milliseconds the previous sample itself took in a running loop; a
    ///   sample late because its predecessor overran the interval is not a gap.
    /// - Parameter expectedInterval: the expected spacing of samples in milliseconds; a pause
    ///   longer than twice this is a gap, and what closed inside it is `unobserved`.
    public mutating func apply(_ snapshot: Snapshot, expectedInterval: Int64, slack: Int64 = 0) -> SampleDiff {
        var diff = SampleDiff(at: snapshot.at, after: state.last?.at)
        let sightings = Self.mayRepeatKeys(snapshot.sightings, table: &fingerprints) ? deduplicate(snapshot.sightings) : snapshot.sightings
        diff.sockets = sightings.count

        if let last = state.last {
            if last.bootID != snapshot.bootID {
                diff.windowStart = .reboot
            } else if snapshot.at - last.at > 2 * expectedInterval + slack || snapshot.at < last.at {
                diff.windowStart = .gap
            } else if last.interval != expectedInterval {
                diff.windowStart = .interval
            } else if let source = state.lastSource, source != snapshot.source {
                diff.windowStart = .source
            }
            if last.bootID == snapshot.bootID, let now = snapshot.counters[Snapshot.estabResetsCounter],
                let before = last.counters[Snapshot.estabResetsCounter], now >= before
            {
                diff.resets = now - before
            }
        } else {
            diff.windowStart = .first
        }
        diff.countersBeforeRead = snapshot.countersBeforeRead
        // What the reset counter can be weighed with: only within one boot, with observation before.
        var window = Ending.CounterWindow()
        var opensAround: Int64?
        if let last = state.last, last.bootID == snapshot.bootID, diff.windowStart?.isBlind != true {
            let after = ResetCounters(snapshot.counters)
            if let before = snapshot.countersBeforeRead, let previousAfter = ResetCounters(last.counters),
                before.estabResets >= previousAfter.estabResets
            {
                window.resetsWithin = before.estabResets - previousAfter.estabResets
            }
            if let after, let previousBefore = state.lastCountersBeforeRead {
                if after.estabResets >= previousBefore.estabResets { window.resetsAround = after.estabResets - previousBefore.estabResets }
                if let now = after.opens, let then = previousBefore.opens, now >= then { opensAround = now - then }
            }
        }
        let lastCounters = diff.windowStart == nil ? state.last?.counters ?? [:] : [:]
        diff.counterChanges = snapshot.counters.filter { lastCounters[$0.key] != $0.value }

        if diff.windowStart == .reboot {
            // Nothing on the old boot survives it, and no read saw when it went.
            for connection in state.table.connections.sorted(by: { $0.id < $1.id }) {
                diff.events.append(.close(connection: connection.id, last: connection.state, reason: .unobserved))
                diff.closed.append((connection, Ending(.unobserved, .gap)))
            }
            state.table.removeAll()
            state.listeningPorts = []
            state.justClosed.removeAll()
            state.lastCandidates.removeAll()
            state.awaitingNotice.removeAll()
        }

        let previouslyClosed = state.justClosed
        state.justClosed.removeAll(keepingCapacity: true)

        // Destroy notices by cookie, for the connections they tell of to claim. One heard before
        // observation began (or across a gap) tells of a socket whose life nobody watched.
        var notices: [UInt64: DestroyNotice] = [:]
        if let destroyed = snapshot.destroyed {
            diff.destroys = destroyed.count
            diff.destroysLost = snapshot.destroysLost
            if diff.windowStart?.isBlind != true {
                for notice in destroyed { notices[notice.cookie] = notice }
            }
        }

        // Match each sighting to its open connection with one lookup, updating it in place.
        // Sightings with no open connection (new, or back after a missed read) and new
        // generations on a known key are opened once the closures are known, so every close in
        // a sample precedes every open, and no insertion moves a position still in use.
        var seen = [Bool](repeating: false, count: state.table.count)
        // Positions in `sightings` (not copies: at a large first sample every sighting is unmatched).
        var unmatched: [(index: Int32, replacing: Bool)] = []
        var pendingClosures: [TrackedConnection] = []
        var closing: [Int] = []
        // The kernel lists sockets in the same order from one read to the next, and the table
        // keeps them in the order they were first read: the one after the last match is tried first.
        var likely = 0
        for (index, sighting) in sightings.enumerated() {
            guard let position = state.table.position(of: sighting.key, likely: likely) else {
                unmatched.append((Int32(index), false))
                continue
            }
            likely = position + 1
            seen[position] = true
            if isNewGeneration(state.table[position], sighting) {
                let connection = state.table[position]
                pendingClosures.append(connection)
                closing.append(position)
                diff.events.append(.close(connection: connection.id, last: connection.state, reason: .ambiguous))
                unmatched.append((Int32(index), true))
            } else if Self.update(&state.table[position], with: sighting, snapshot: snapshot, into: &diff) {
                diff.updated.append(state.table[position])
            }
        }
        // The open connections no sighting matched are gone.
        for position in seen.indices where !seen[position] {
            let connection = state.table[position]
            pendingClosures.append(connection)
            closing.append(position)
            diff.events.append(.close(connection: connection.id, last: connection.state, reason: .ambiguous))
        }
        // A new connection (seen, or known from its destroy notice) is inbound when its local port
        // was listening at the previous sample or is now.
        var listeningPorts: Set<UInt16> = []
        if !unmatched.isEmpty || !notices.isEmpty {
            listeningPorts = state.listeningPorts ?? Self.listeningPorts(of: state.table.connections)
            for sighting in sightings where sighting.state == .listen { listeningPorts.insert(sighting.key.local.port) }
            // A listener that opened and closed between two samples is known from its notice alone.
            for notice in notices.values
            where notice.key.remote.port == 0 && notice.key.remote.address.isUnspecified && notice.key.local.port != 0 {
                listeningPorts.insert(notice.key.local.port)
            }
        }
        state.table.remove(at: closing)
        // Connections known from destroy notices alone are closed before any opens of this sample.
        let opensStart = diff.events.count
        // Grown once, not by doubling: at a large first sample the doubling copies were the peak of memory.
        state.table.reserveCapacity(state.table.count + unmatched.count)
        diff.opened.reserveCapacity(unmatched.count)
        for (index, replacing) in unmatched {
            let sighting = sightings[Int(index)]
            if !replacing, var connection = previouslyClosed[sighting.key], isSameSocket(connection, sighting, at: snapshot.at),
                diff.windowStart?.isBlind != true
            {
                diff.reopened.append(connection.id)
                if connection.destroyedAt != nil { connection.destroyedAt = nil }
                if connection.finalReport != nil { connection.finalReport = nil }
                _ = Self.update(&connection, with: sighting, snapshot: snapshot, into: &diff)
                state.table.insert(connection)
                diff.updated.append(connection)
            } else {
                open(sighting, snapshot: snapshot, listeningPorts: listeningPorts, into: &diff)
            }
        }
        if let opensAround {
            // The connections this read saw that the kernel opened since the previous read began.
            // (Not request sockets, first seen in SYN_RECV: PassiveOpens counts a connection when
            // its handshake completes. A connect is counted in the same call that lists it.)
            let seen = diff.opened.reduce(Int64(0)) { count, connection in
                let request = connection.state == .synReceived || connection.state == .newSynReceived
                return count + (connection.direction == .listen || request ? 0 : 1)
            }
            window.unseenOpens = opensAround >= seen ? opensAround - seen : nil
        }
        var decidedLate: [Int64: Ending] = [:]
        if !notices.isEmpty {
            claim(
                &notices, previouslyClosed: previouslyClosed, closures: &pendingClosures, listeningPorts: listeningPorts,
                eventsAt: opensStart, snapshot: snapshot, decidedLate: &decidedLate, into: &diff)
        }
        let listenerChanged = diff.events.contains { event in
            if case .state(_, let from, let to) = event { return from == .listen || to == .listen }
            return false
        }
        if state.listeningPorts == nil || listenerChanged || diff.opened.contains(where: { $0.state == .listen })
            || pendingClosures.contains(where: { $0.state == .listen }) || !diff.reopened.isEmpty
        {
            state.listeningPorts = Self.listeningPorts(of: state.table.connections)
        }
        revisePreviousSample(previouslyClosed: previouslyClosed, decidedLate: decidedLate, into: &diff)
        classify(pendingClosures, window: window, into: &diff)

        state.last = (snapshot.at, snapshot.bootID, snapshot.counters, expectedInterval)
        state.lastCountersBeforeRead = snapshot.countersBeforeRead
        state.lastSource = snapshot.source
        return diff
    }

    /// Gives each destroy notice to the connection it tells of, in the order they arrived,
    /// trying the cookie before the key:
    ///
    /// - a connection still in the sample with its cookie (a TIME_WAIT socket that inherited it):
    ///   its final traffic; it closes when the TIME_WAIT socket goes;
    /// - a connection this sample saw gone with its cookie: when the kernel freed it, and its
    ///   final traffic;
    /// - a connection an earlier sample closed, still owed a notice (``State/awaitingNotice``):
    ///   the same, written into its row;
    /// - by key: the TIME_WAIT socket that took over from the last socket freed on its key, or
    ///   a connection read from the proc tables (no cookie), live, gone now or gone before;
    /// - none: it opened and closed between two samples, and is recorded as such.
    ///
    /// A socket this side aborted (SO_LINGER 0) or whose connect() returned an error is
    /// disconnected before it is freed: the kernel clears its remote port, local address and
    /// counters. Its notice is matched by cookie alone; one that matches nothing names no
    /// connection to record, and is counted against its peer (``SampleDiff/unnamedEnds``). Not
    /// listeners' notices, nor those of sockets that never connected: they name no peer.
    ///
    /// A notice for an earlier close that the reset counter judged decides that ending again
    /// (`decidedLate`, by connection).
    private mutating func claim(
        _ notices: inout [UInt64: DestroyNotice], previouslyClosed: [SocketKey: TrackedConnection], closures: inout [TrackedConnection],
        listeningPorts: Set<UInt16>, eventsAt opensStart: Int, snapshot: Snapshot, decidedLate: inout [Int64: Ending],
        into diff: inout SampleDiff
    ) {
        var closingByKey: [SocketKey: Int] = [:]
        var closingByCookie: [UInt64: Int] = [:]
        for (index, connection) in closures.enumerated() {
            closingByKey[connection.key] = index
            if connection.cookie != 0 { closingByCookie[connection.cookie] = index }
        }
        // A TIME_WAIT socket took over from the last socket freed on its key: when a client
        // reuses the port between two samples, the earlier sockets' TIME_WAIT ones are gone.
        var lastOnKey: [SocketKey: UInt64] = [:]
        for notice in snapshot.destroyed ?? [] { lastOnKey[notice.key] = notice.cookie }
        var betweenSamplesEvents: [ConnectionEvent] = []
        for notice in snapshot.destroyed ?? [] where notices.removeValue(forKey: notice.cookie) != nil {
            let named = notice.key.remote.port != 0
            // Disconnecting also zeroes the counters: an unnamed notice's traffic is not the connection's.
            let traffic = named ? notice.traffic : nil
            let live = named ? state.table.position(of: notice.key) : nil
            // By cookie first: a connection carrying the notice's cookie is surely its socket.
            if let live, state.table[live].cookie == notice.cookie {
                giveFinalTraffic(traffic, to: live, at: snapshot.at, into: &diff)
            } else if let index = closingByCookie[notice.cookie] {
                date(&closures[index], by: notice)
            } else if let awaited = state.awaitingNotice.removeValue(forKey: notice.cookie) {
                diff.lateDestroys.append(
                    LateDestroy(connection: awaited.connection, cookie: notice.cookie, at: notice.at, report: notice.report))
                if awaited.judgedByCounters,
                    let ending = Ending.fromReport(notice.report, lastState: awaited.lastState, openedActively: awaited.openedActively)
                {
                    decidedLate[awaited.connection] = ending
                }
            } else if let live, lastOnKey[notice.key] == notice.cookie,
                state.table[live].cookie == 0 || Self.tookOverFromAFullSocket(state.table[live])
            {
                // Read from the proc tables (no cookie), or the TIME_WAIT socket that took over the
                // key with a cookie of its own (the full socket was never dumped alive).
                if state.table[live].cookie == 0 { state.table[live].cookie = notice.cookie }
                giveFinalTraffic(traffic, to: live, at: snapshot.at, into: &diff)
            } else if named, let index = closingByKey[notice.key], closures[index].cookie == 0 {
                date(&closures[index], by: notice)
            } else if named, let connection = previouslyClosed[notice.key], connection.cookie == 0 {
                diff.lateDestroys.append(
                    LateDestroy(connection: connection.id, cookie: notice.cookie, at: notice.at, report: notice.report))
                if state.lastCandidates.contains(connection.id),
                    let ending = Ending.fromReport(
                        notice.report, lastState: connection.state, openedActively: Ending.openedActively(connection))
                {
                    decidedLate[connection.id] = ending
                }
            } else if named {
                // Its handshake completed, or it never left SYN_SENT: the state it left is inferred.
                let state: TCPState = notice.established ? .established : .synSent
                var connection = TrackedConnection(
                    id: self.state.nextID, key: notice.key, state: state, statesSeen: [], inode: 0, uid: 0,
                    direction: listeningPorts.contains(notice.key.local.port) ? .inbound : .outbound, preexisting: false,
                    firstSeen: snapshot.at, cookie: notice.cookie, traffic: notice.traffic)
                self.state.nextID += 1
                connection.betweenSamples = true
                connection.destroyedAt = notice.at
                connection.finalReport = notice.report
                connection.trafficWrittenAt = snapshot.at
                diff.opened.append(connection)
                betweenSamplesEvents.append(.open(connection: connection.id, state: state))
                betweenSamplesEvents.append(.close(connection: connection.id, last: state, reason: .ambiguous))
                closures.append(connection)
            } else if !notice.key.remote.address.isUnspecified && diff.windowStart != .source {
                // (Right after the proc tables, a connection read from them has no cookie to be
                // found by: its unnamed notice would be counted beside its row.)
                diff.unnamedEnds[notice.key.remote.address, default: 0] += 1
            }
        }
        // Before this sample's opens: on one key, a close comes before the open that replaces it.
        diff.events.insert(contentsOf: betweenSamplesEvents, at: opensStart)
    }

    /// A TIME_WAIT socket (or one in FIN_WAIT2 that never had an inode) that replaced a full socket.
    static func tookOverFromAFullSocket(_ connection: TrackedConnection) -> Bool {
        connection.state == .timeWait || connection.state == .finWait2 && connection.inode == 0
    }

    /// A live connection (its TIME_WAIT socket) gets the final traffic of the socket it replaced.
    private mutating func giveFinalTraffic(_ traffic: Traffic?, to position: Int, at: Int64, into diff: inout SampleDiff) {
        guard let traffic else { return }
        state.table[position].traffic = traffic
        state.table[position].trafficWrittenAt = at
        diff.updated.append(state.table[position])
    }

    /// A connection this sample saw gone gets when the kernel freed it and its final traffic;
    /// one last seen in a handshake state that the notice shows established left ESTABLISHED.
    private func date(_ connection: inout TrackedConnection, by notice: DestroyNotice) {
        var report = notice.report
        // A listener carries no traffic of its own.
        if connection.state == .listen { report.traffic = nil }
        connection.take(notice: notice.cookie, at: notice.at, report: report)
        if notice.established && (connection.state == .synSent || connection.state == .synReceived) {
            connection.state = .established
            connection.statesSeen.insert(.established)
        }
    }

    /// Folds lines that name the same key into one, keeping the one that continues the tracked
    /// connection (same inode), else one with a live inode, else the last read.
    ///
    /// - Returns: the distinct sightings.
    func deduplicate(_ sightings: [Sighting]) -> [Sighting] {
        var index: [SocketKey: Int] = [:]
        index.reserveCapacity(sightings.count)
        var result: [Sighting] = []
        result.reserveCapacity(sightings.count)
        for sighting in sightings {
            let candidate = result.count
            // One hash: the default subscript inserts `candidate` when the key is new.
            let position = Self.value(of: &index[sighting.key, default: candidate])
            if position == candidate {
                result.append(sighting)
                continue
            }
            let kept = result[position]
            let trackedInode = state.table.position(of: sighting.key).map { state.table[$0].inode } ?? 0
            if trackedInode != 0 && kept.inode == trackedInode { continue }
            if trackedInode != 0 && sighting.inode == trackedInode || kept.inode == 0 || sighting.inode != 0 && sighting.inode < kept.inode
            {
                result[position] = sighting
            }
        }
        return result
    }

    @inline(__always) private static func value(of slot: inout Int) -> Int { slot }

    /// Whether two sightings may share a key, from a table of 64-bit fingerprints: much cheaper
    /// than hashing every key into a dictionary. A repeated fingerprint (a duplicate line, or very
    /// rarely two keys that mix alike) sends the sample to the exact ``deduplicate(_:)``.
    static func mayRepeatKeys(_ sightings: [Sighting], table: inout [UInt64]) -> Bool {
        var size = 16
        while size < sightings.count * 2 { size <<= 1 }
        if table.count != size {
            table = [UInt64](repeating: 0, count: size)
        } else {
            table.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        }
        let mask = size - 1
        return table.withUnsafeMutableBufferPointer { slots in
            for sighting in sightings {
                let fingerprint = Self.fingerprint(sighting.key) | 1
                var slot = Int(truncatingIfNeeded: fingerprint >> 29) & mask
                while slots[slot] != 0 {
                    if slots[slot] == fingerprint { return true }
                    slot = (slot + 1) & mask
                }
                slots[slot] = fingerprint
            }
            return false
        }
    }

    /// Chosen per process, so that peers cannot pick addresses and ports whose fingerprints
    /// collide and turn every lookup into a long probe (as Swift's own hashing is seeded).
    static let fingerprintSeed = UInt64.random(in: 1...UInt64.max)

    /// Mixes every field of a key into 64 bits (multiply and xor-shift steps), from a per-process seed.
    @inline(__always) static func fingerprint(_ key: SocketKey) -> UInt64 {
        @inline(__always) func mix(_ hash: UInt64, _ word: UInt64) -> UInt64 {
            var value = (hash ^ word) &* 0x9E37_79B9_7F4A_7C15
            value ^= value >> 31
            return value
        }
        var hash = mix(fingerprintSeed, key.local.address.high)
        hash = mix(hash, key.local.address.low)
        hash = mix(hash, key.remote.address.high)
        hash = mix(hash, key.remote.address.low)
        hash = mix(hash, UInt64(key.local.port) << 32 | UInt64(key.remote.port) << 8 | UInt64(key.local.address.family))
        return hash ^ (hash >> 29)
    }

    /// The local ports of listening sockets among `connections`.
    static func listeningPorts(of connections: [TrackedConnection]) -> Set<UInt16> {
        var ports: Set<UInt16> = []
        for connection in connections where connection.state == .listen { ports.insert(connection.key.local.port) }
        return ports
    }

    private func isNewGeneration(_ connection: TrackedConnection, _ sighting: Sighting) -> Bool {
        if connection.inode != 0 && sighting.inode != 0 && connection.inode != sighting.inode { return true }
        if connection.cookie != 0 && sighting.cookie != 0 && connection.cookie != sighting.cookie { return true }
        return connection.state.isClosing && sighting.state.isOpening
    }

    /// Whether a sighting is the socket a previous read closed, rather than a new one on its key.
    private func isSameSocket(_ connection: TrackedConnection, _ sighting: Sighting, at: Int64) -> Bool {
        if isNewGeneration(connection, sighting) || connection.betweenSamples { return false }
        if connection.inode != 0 && connection.inode == sighting.inode { return true }
        if connection.cookie != 0 && connection.cookie == sighting.cookie { return true }
        guard sighting.inode == 0 && sighting.state.isClosing else { return false }
        // An orphaned or TIME_WAIT socket has no inode. Two TIME_WAIT sightings are one socket
        // only if they agree on when it entered TIME_WAIT: a quick reuse of the 4-tuple would not.
        if connection.state == .timeWait && sighting.state == .timeWait {
            guard let entered = connection.timeWaitAt, let again = Self.timeWaitEntry(sighting, at: at, notBefore: nil) else {
                return false
            }
            return abs(entered - again) <= 2000
        }
        return true
    }

    /// Takes connections out of the previous sample's V: closes withdrawn (the socket was there
    /// after all) and those whose destroy notice came now and decided them. Its other candidates
    /// are judged again against the same counters, with one resets fewer to explain for each of
    /// the taken out that was a reset.
    private func revisePreviousSample(
        previouslyClosed: [SocketKey: TrackedConnection], decidedLate: [Int64: Ending], into diff: inout SampleDiff
    ) {
        for (connection, ending) in decidedLate.sorted(by: { $0.key < $1.key }) { diff.revisedEndings.append((connection, ending)) }
        let late = state.lastCandidates.intersection(decidedLate.keys)
        let withdrawn = state.lastCandidates.intersection(diff.reopened).union(late)
        guard !withdrawn.isEmpty else { return }
        var window = state.lastWindow
        window.attributed += late.filter { decidedLate[$0]?.reason == .reset }.count
        let remaining = previouslyClosed.values.filter { state.lastCandidates.contains($0.id) && !withdrawn.contains($0.id) }
        diff.revisedPrevious = (remaining.count, window.attributed)
        for connection in remaining.sorted(by: { $0.id < $1.id }) {
            diff.revisedEndings.append((connection.id, Ending.byCounters(connection, candidates: remaining.count, window: window)))
        }
    }

    private mutating func open(_ sighting: Sighting, snapshot: Snapshot, listeningPorts: Set<UInt16>, into diff: inout SampleDiff) {
        let direction: Direction =
            sighting.state == .listen ? .listen : listeningPorts.contains(sighting.key.local.port) ? .inbound : .outbound
        var connection = TrackedConnection(
            id: state.nextID, key: sighting.key, state: sighting.state, statesSeen: TCPStateSet(sighting.state),
            inode: sighting.inode, uid: sighting.uid, direction: direction, preexisting: diff.windowStart?.isBlind == true,
            firstSeen: snapshot.at, maxRetransmits: sighting.retransmits, maxTxQueue: sighting.txQueue,
            maxRxQueue: sighting.rxQueue, owner: sighting.inode == 0 ? nil : snapshot.owners[sighting.inode],
            cookie: sighting.cookie, traffic: sighting.traffic)
        if sighting.traffic != nil { connection.trafficWrittenAt = snapshot.at }
        state.nextID += 1
        if sighting.state == .timeWait {
            connection.timeWaitAt = Self.timeWaitEntry(sighting, at: snapshot.at, notBefore: nil)
        }
        state.table.insert(connection)
        diff.opened.append(connection)
        diff.events.append(.open(connection: connection.id, state: sighting.state))
    }

    /// Folds a sighting into an open connection; true when a stored fact changed.
    ///
    /// Static: an instance method called with `&state.table[position]` makes Swift copy the
    /// tracker for the call, and the write-back then copies the whole table, once per socket.
    private static func update(
        _ connection: inout TrackedConnection, with sighting: Sighting, snapshot: Snapshot, into diff: inout SampleDiff
    )
        -> Bool
    {
        // Each field is written only when it changes, so that is all the answer needs: no copy of
        // the connection to compare with (a copy and a comparison per socket cost more than the rest).
        var changed = false
        if sighting.state != connection.state {
            diff.events.append(.state(connection: connection.id, from: connection.state, to: sighting.state))
            if sighting.state == .timeWait && connection.timeWaitAt == nil {
                connection.timeWaitAt = Self.timeWaitEntry(sighting, at: snapshot.at, notBefore: diff.after)
            }
            connection.state = sighting.state
            connection.statesSeen.insert(sighting.state)
            changed = true
        }
        if sighting.inode != 0 {
            if connection.inode != sighting.inode || connection.uid != sighting.uid {
                connection.inode = sighting.inode
                connection.uid = sighting.uid
                changed = true
            }
            if connection.owner == nil, let owner = snapshot.owners[sighting.inode] {
                connection.owner = owner
                changed = true
            }
        }
        if sighting.retransmits > connection.maxRetransmits {
            connection.maxRetransmits = sighting.retransmits
            changed = true
        }
        if sighting.txQueue > connection.maxTxQueue {
            connection.maxTxQueue = sighting.txQueue
            changed = true
        }
        if sighting.rxQueue > connection.maxRxQueue {
            connection.maxRxQueue = sighting.rxQueue
            changed = true
        }
        if sighting.cookie != connection.cookie && sighting.cookie != 0 {
            connection.cookie = sighting.cookie
            changed = true
        }
        // Traffic moves on every busy connection in every sample: it alone is written once a
        // minute (the close writes the last figures whatever their age).
        if let traffic = sighting.traffic, traffic != connection.traffic {
            connection.traffic = traffic
            if snapshot.at - connection.trafficWrittenAt >= Self.trafficRefresh { changed = true }
        }
        if changed && connection.traffic != nil { connection.trafficWrittenAt = snapshot.at }
        return changed
    }

    /// How often an open connection's traffic figures are written, in milliseconds.
    static let trafficRefresh: Int64 = 60_000

    /// When a TIME_WAIT socket entered the state: the sample time less the part of the 60 s
    /// already spent, kept after the previous sample that saw it in another state.
    private static func timeWaitEntry(_ sighting: Sighting, at: Int64, notBefore: Int64?) -> Int64? {
        guard sighting.timer == Self.timeWaitTimer else { return nil }
        let spentTicks = Self.timeWaitTicks - min(Int64(sighting.timerTicks), Self.timeWaitTicks)
        var entry = at - spentTicks * 10
        if let notBefore, entry <= notBefore { entry = notBefore + 1 }
        return entry
    }

    /// Decides how each closed connection ended (Ending.swift): by its states or the kernel's
    /// report where they tell, else by the reset counter over the sample's `window`.
    private mutating func classify(_ closures: [TrackedConnection], window: Ending.CounterWindow, into diff: inout SampleDiff) {
        var endings: [Int64: Ending] = [:]
        var candidates: Set<Int64> = []
        var window = window
        let blind = diff.windowStart?.isBlind == true
        for connection in closures {
            if let ending = Ending.decided(connection, blind: blind) {
                endings[connection.id] = ending
                // A reset decided per connection among those a read saw is one R need not explain.
                if ending.reason == .reset && !connection.betweenSamples { window.attributed += 1 }
            } else {
                candidates.insert(connection.id)
            }
        }
        diff.resetCandidates = candidates.count
        diff.counterWindow = window
        for connection in closures {
            let ending = endings[connection.id] ?? Ending.byCounters(connection, candidates: candidates.count, window: window)
            diff.closed.append((connection, ending))
            guard !connection.betweenSamples else { continue }
            state.justClosed[connection.key] = connection
            // A TIME_WAIT socket's end is never told: its full socket's was, when TIME_WAIT began.
            if connection.cookie != 0 && connection.destroyedAt == nil && connection.state != .timeWait {
                state.awaitingNotice[connection.cookie] = AwaitedClose(
                    connection: connection.id, closedAt: diff.at, lastState: connection.state,
                    openedActively: Ending.openedActively(connection), judgedByCounters: ending.basis == .counters)
            }
        }
        if !state.awaitingNotice.isEmpty && diff.at - state.awaitingPrunedAt >= 60_000 {
            state.awaitingNotice = state.awaitingNotice.filter { diff.at - $0.value.closedAt < Self.awaitedFor }
            state.awaitingPrunedAt = diff.at
        }
        state.lastWindow = window
        state.lastCandidates = candidates
        // The reason, and the state it left (a destroy notice can show a handshake completed).
        let final = Dictionary(
            diff.closed.map { ($0.connection.id, ($0.ending.reason, $0.connection.state)) }, uniquingKeysWith: { $1 })
        diff.events = diff.events.map { event in
            if case .close(let id, _, _) = event, let (reason, last) = final[id] {
                return .close(connection: id, last: last, reason: reason)
            }
            return event
        }
    }
}
