/// How a connection ended; stored as `connections.end_reason` (the `end_reasons` table names the codes).
public enum EndReason: Int, Sendable, CaseIterable, CustomStringConvertible {
    /// Seen in FIN_WAIT1, FIN_WAIT2, CLOSING or TIME_WAIT: this side closed first, gracefully.
    case activeClose = 1
    /// Seen in LAST_ACK, or last seen in CLOSE_WAIT and then closed gracefully: the peer closed first.
    case passiveClose = 2
    /// Left ESTABLISHED or CLOSE_WAIT for gone without this side's FIN acknowledged: an RST sent or
    /// received, or given up after time-outs.
    case reset = 3
    /// Left ESTABLISHED straight to gone, gracefully: a close too quick to sample.
    case vanished = 4
    /// Left ESTABLISHED or CLOSE_WAIT straight to gone, and nothing tells whether it was reset.
    case ambiguous = 5
    /// Left SYN_SENT without ever being ESTABLISHED: an outbound connect refused or timed out.
    case failedConnect = 6
    /// Closed while nothing was recording: inside a gap, or across a reboot.
    case unobserved = 7
    /// A listening socket went away.
    case listenClosed = 8
    /// Left SYN_RECV without ever being ESTABLISHED: an inbound handshake that never completed
    /// (the client gave up, the accept queue overflowed, a SYN flood).
    case failedHandshake = 9

    /// The name used in the database, the CLI and exports: `active_close`, `reset`, ...
    public var name: String {
        switch self {
        case .activeClose: "active_close"
        case .passiveClose: "passive_close"
        case .reset: "reset"
        case .vanished: "vanished"
        case .ambiguous: "ambiguous"
        case .failedConnect: "failed_connect"
        case .unobserved: "unobserved"
        case .listenClosed: "listen_closed"
        case .failedHandshake: "failed_handshake"
        }
    }

    public var description: String { name }
}

/// What decided how a connection ended; stored as `connections.end_basis` (the `end_bases` table
/// names the codes).
public enum EndBasis: Int, Sendable, CaseIterable, CustomStringConvertible {
    /// The states the samples saw (TIME_WAIT, LAST_ACK, SYN_SENT only, a listener).
    case states = 1
    /// The kernel's own report of the socket as it freed it (netlink): its final tcp_info and queues.
    case kernel = 2
    /// The reset reconciliation: the kernel's counters, for a connection with no report of its own.
    case counters = 3
    /// Nothing: it closed while nobody was recording.
    case gap = 4

    public var name: String {
        switch self {
        case .states: "states"
        case .kernel: "kernel"
        case .counters: "counters"
        case .gap: "gap"
        }
    }

    public var description: String { name }
}

/// Who sent the RST that ended a connection, where the kernel's report tells; stored as
/// `connections.reset_by` (the `reset_senders` table names the codes).
public enum ResetSender: Int, Sendable, CaseIterable, CustomStringConvertible {
    /// This host aborted it: the kernel disconnected the socket before freeing it (SO_LINGER 0).
    case thisHost = 1
    /// The peer: its end was not acknowledged, nothing was left unread, and no retransmission or
    /// probe was waiting (a received RST; an administrator's `ss -K` looks the same).
    case peer = 2

    public var name: String {
        switch self {
        case .thisHost: "this_host"
        case .peer: "peer"
        }
    }

    public var description: String { name }
}

/// How a connection ended, what decided it, and who sent the reset where that is known.
public struct Ending: Hashable, Sendable, CustomStringConvertible {
    public var reason: EndReason
    public var basis: EndBasis
    public var resetBy: ResetSender?

    public init(_ reason: EndReason, _ basis: EndBasis, resetBy: ResetSender? = nil) {
        self.reason = reason
        self.basis = basis
        self.resetBy = resetBy
    }

    public var description: String { "\(reason) (\(basis)\(resetBy.map { ", by \($0)" } ?? ""))" }
}

/// Which side opened a connection; stored as `connections.direction`.
public enum Direction: Int, Sendable, CustomStringConvertible {
    /// A listening socket.
    case listen = 0
    /// Its local port was a listening port when it opened.
    case inbound = 1
    /// Anything else: this host connected out.
    case outbound = 2

    public var description: String {
        switch self {
        case .listen: "listen"
        case .inbound: "inbound"
        case .outbound: "outbound"
        }
    }
}

/// A connection being tracked: what the samples have seen of one socket under one identity.
public struct TrackedConnection: Hashable, Sendable {
    /// The row id in `connections`.
    public var id: Int64
    public var key: SocketKey
    /// The last state seen.
    public var state: TCPState
    public var statesSeen: TCPStateSet
    /// The last non-zero inode seen, or 0.
    public var inode: UInt64
    public var uid: UInt32
    public var direction: Direction
    /// Already there in the first sample of its observation window: its real start is unknown.
    public var preexisting: Bool
    /// The sample that first saw it, in milliseconds since the epoch.
    public var firstSeen: Int64
    /// When it entered TIME_WAIT, computed from the timer.
    public var timeWaitAt: Int64?
    public var maxRetransmits: UInt32
    public var maxTxQueue: UInt32
    public var maxRxQueue: UInt32
    public var owner: ProcessOwner?
    /// What the netlink source adds, boxed: a connection read from the proc tables pays one
    /// pointer for it, not 80 bytes (the table holds every open connection).
    private var netlink: Box<NetlinkFacts>?

    /// The kernel's socket cookie (netlink), or 0.
    public var cookie: UInt64 {
        get { netlink?.value.cookie ?? 0 }
        set { netlinkFacts.cookie = newValue }
    }
    /// Its traffic at the last sighting, or the final figures once the kernel freed the socket.
    public var traffic: Traffic? {
        get { netlink?.value.traffic }
        set { netlinkFacts.traffic = newValue }
    }
    /// When the stored row last got `traffic` (the sample's time): an open connection's figures
    /// are written at most once a minute, besides with every other change and at its close.
    public var trafficWrittenAt: Int64 {
        get { netlink?.value.trafficWrittenAt ?? 0 }
        set { netlinkFacts.trafficWrittenAt = newValue }
    }
    /// When the kernel's destroy notification for it arrived (netlink with destroy events).
    public var destroyedAt: Int64? {
        get { netlink?.value.destroyedAt }
        set { netlinkFacts.destroyedAt = newValue }
    }
    /// Known from its destroy notification alone: it opened and closed between two samples, and
    /// its state is inferred (ESTABLISHED, or SYN_SENT when its handshake never completed).
    public var betweenSamples: Bool {
        get { netlink?.value.betweenSamples ?? false }
        set { netlinkFacts.betweenSamples = newValue }
    }
    /// What the kernel's destroy notification told of its end, once it came. Its counts are the
    /// connection's `traffic` (setting a report with counts sets them), so each box holds them once.
    public var finalReport: FinalReport? {
        get {
            guard let facts = netlink?.value, let end = facts.end else { return nil }
            return FinalReport(
                disconnected: end.disconnected, traffic: end.counted ? facts.traffic : nil, unacknowledged: end.unacknowledged,
                unread: end.unread, retransmitting: end.retransmitting)
        }
        set {
            var facts = netlinkFacts
            facts.end = newValue.map {
                EndQueues(
                    disconnected: $0.disconnected, counted: $0.traffic != nil, retransmitting: $0.retransmitting,
                    unacknowledged: $0.unacknowledged, unread: $0.unread)
            }
            if let traffic = newValue?.traffic { facts.traffic = traffic }
            netlinkFacts = facts
        }
    }

    private struct NetlinkFacts: Hashable, Sendable {
        var cookie: UInt64 = 0
        var traffic: Traffic?
        var trafficWrittenAt: Int64 = 0
        var destroyedAt: Int64?
        var betweenSamples = false
        var end: EndQueues?
    }

    /// Takes in what the kernel's destroy notice told, in one change of the box: its cookie (for a
    /// connection that had none), when it came, and its final report.
    public mutating func take(notice cookie: UInt64, at: Int64, report: FinalReport) {
        var facts = netlinkFacts
        if facts.cookie == 0 { facts.cookie = cookie }
        facts.destroyedAt = at
        facts.end = EndQueues(
            disconnected: report.disconnected, counted: report.traffic != nil, retransmitting: report.retransmitting,
            unacknowledged: report.unacknowledged, unread: report.unread)
        if let traffic = report.traffic { facts.traffic = traffic }
        netlinkFacts = facts
    }

    /// A final report less its counts, which `traffic` holds.
    private struct EndQueues: Hashable, Sendable {
        var disconnected: Bool
        var counted: Bool
        var retransmitting: Bool
        var unacknowledged: UInt32
        var unread: UInt32
    }

    /// Every change makes a new box: copies of a connection never share one that changes.
    private var netlinkFacts: NetlinkFacts {
        get { netlink?.value ?? NetlinkFacts() }
        set { netlink = Box(newValue) }
    }

    public init(
        id: Int64, key: SocketKey, state: TCPState, statesSeen: TCPStateSet, inode: UInt64, uid: UInt32,
        direction: Direction, preexisting: Bool, firstSeen: Int64, timeWaitAt: Int64? = nil,
        maxRetransmits: UInt32 = 0, maxTxQueue: UInt32 = 0, maxRxQueue: UInt32 = 0, owner: ProcessOwner? = nil,
        cookie: UInt64 = 0, traffic: Traffic? = nil
    ) {
        self.id = id
        self.key = key
        self.state = state
        self.statesSeen = statesSeen
        self.inode = inode
        self.uid = uid
        self.direction = direction
        self.preexisting = preexisting
        self.firstSeen = firstSeen
        self.timeWaitAt = timeWaitAt
        self.maxRetransmits = maxRetransmits
        self.maxTxQueue = maxTxQueue
        self.maxRxQueue = maxRxQueue
        self.owner = owner
        if cookie != 0 || traffic != nil { netlink = Box(NetlinkFacts(cookie: cookie, traffic: traffic)) }
    }
}

/// One thing that happened to a connection between two samples.
public enum ConnectionEvent: Hashable, Sendable {
    /// First sighting, in `state`.
    case open(connection: Int64, state: TCPState)
    /// From one state to another.
    case state(connection: Int64, from: TCPState, to: TCPState)
    /// Gone; `last` is the last state seen.
    case close(connection: Int64, last: TCPState, reason: EndReason)

    public var connection: Int64 {
        switch self {
        case .open(let id, _), .state(let id, _, _), .close(let id, _, _): id
        }
    }
}

/// An immutable box: a value kept out of line, so that a struct holding a rarely-set value pays
/// one pointer for it. Compared and hashed by its value.
final class Box<Value: Hashable & Sendable>: Hashable, Sendable {
    let value: Value

    init(_ value: Value) { self.value = value }

    static func == (a: Box, b: Box) -> Bool { a === b || a.value == b.value }

    func hash(into hasher: inout Hasher) { hasher.combine(value) }
}
