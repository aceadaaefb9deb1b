/// What identifies a socket within one network namespace: family, local and remote endpoint.
///
/// The family is the table the socket came from (`tcp` or `tcp6`); an IPv4-mapped address in
/// `tcp6` stays an IPv6 key.
public struct SocketKey: Hashable, Sendable, CustomStringConvertible {
    public var local: Endpoint
    public var remote: Endpoint

    public init(local: Endpoint, remote: Endpoint) {
        self.local = local
        self.remote = remote
    }

    public var family: UInt8 { local.address.family }

    public var description: String { "\(local) -> \(remote)" }

    /// Feeds four words instead of every field: keys are hashed several times per socket per
    /// sample, and this is most of the differ's cost on a large table.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(local.address.high ^ (remote.address.high &* 0x9E37_79B9_7F4A_7C15))
        hasher.combine(local.address.low)
        hasher.combine(remote.address.low)
        hasher.combine(UInt64(local.port) << 32 | UInt64(remote.port) << 8 | UInt64(local.address.family))
    }
}

/// One line of `/proc/net/tcp` or `tcp6`: a socket as one read of the table saw it.
public struct Sighting: Hashable, Sendable {
    public var key: SocketKey
    public var state: TCPState
    public var txQueue: UInt32
    public var rxQueue: UInt32
    /// The `tr` column: which timer runs (3 is the TIME_WAIT timer).
    public var timer: UInt8
    /// The `tm->when` column: time left on that timer, in USER_HZ ticks (1/100 s).
    public var timerTicks: UInt32
    /// The `retrnsmt` column: unrecovered retransmit timeouts.
    public var retransmits: UInt32
    public var uid: UInt32
    /// 0 for TIME_WAIT and request sockets.
    public var inode: UInt64
    /// The cookie and traffic, boxed: a line of the proc tables has neither and pays one pointer.
    private var netlink: Box<NetlinkFacts>?

    private struct NetlinkFacts: Hashable, Sendable {
        var cookie: UInt64
        var traffic: Traffic?
    }

    /// The kernel's socket cookie, which a TIME_WAIT socket keeps from the socket it replaced
    /// when one was given out before; 0 where the source has none (the proc tables).
    public var cookie: UInt64 {
        get { netlink?.value.cookie ?? 0 }
        set { netlink = newValue == 0 && traffic == nil ? nil : Box(NetlinkFacts(cookie: newValue, traffic: traffic)) }
    }
    /// What the socket carried so far, where the source has it (netlink, for full sockets).
    public var traffic: Traffic? {
        get { netlink?.value.traffic }
        set { netlink = cookie == 0 && newValue == nil ? nil : Box(NetlinkFacts(cookie: cookie, traffic: newValue)) }
    }

    public init(
        key: SocketKey, state: TCPState, txQueue: UInt32 = 0, rxQueue: UInt32 = 0, timer: UInt8 = 0,
        timerTicks: UInt32 = 0, retransmits: UInt32 = 0, uid: UInt32 = 0, inode: UInt64 = 0, cookie: UInt64 = 0,
        traffic: Traffic? = nil
    ) {
        self.key = key
        self.state = state
        self.txQueue = txQueue
        self.rxQueue = rxQueue
        self.timer = timer
        self.timerTicks = timerTicks
        self.retransmits = retransmits
        self.uid = uid
        self.inode = inode
        if cookie != 0 || traffic != nil { netlink = Box(NetlinkFacts(cookie: cookie, traffic: traffic)) }
    }
}

/// A connection's traffic so far, from the kernel's `struct tcp_info` (what `ss -ti` prints).
public struct Traffic: Hashable, Sendable {
    /// `tcpi_bytes_acked`: sequence space the peer acknowledged, SYN and FIN included.
    public var bytesAcked: UInt64
    /// `tcpi_bytes_received`: sequence space received, FIN included.
    public var bytesReceived: UInt64
    /// `tcpi_bytes_sent`: data bytes sent, retransmissions included (no SYN or FIN).
    public var bytesSent: UInt64
    /// `tcpi_bytes_retrans`: the retransmitted part of `bytesSent`.
    public var bytesRetransmitted: UInt64
    /// `tcpi_segs_out` and `tcpi_segs_in`: segments sent and received, retransmissions included.
    public var segmentsOut: UInt32
    public var segmentsIn: UInt32
    /// `tcpi_total_retrans`: segments retransmitted over the connection's life.
    public var retransmittedSegments: UInt32
    /// `tcpi_rtt`: the smoothed round-trip time, in microseconds.
    public var rttMicroseconds: UInt32
    /// `tcpi_snd_cwnd`: the congestion window, in segments.
    public var congestionWindow: UInt32

    public init(
        bytesAcked: UInt64 = 0, bytesReceived: UInt64 = 0, bytesSent: UInt64 = 0, bytesRetransmitted: UInt64 = 0,
        segmentsOut: UInt32 = 0, segmentsIn: UInt32 = 0, retransmittedSegments: UInt32 = 0, rttMicroseconds: UInt32 = 0,
        congestionWindow: UInt32 = 0
    ) {
        self.bytesAcked = bytesAcked
        self.bytesReceived = bytesReceived
        self.bytesSent = bytesSent
        self.bytesRetransmitted = bytesRetransmitted
        self.segmentsOut = segmentsOut
        self.segmentsIn = segmentsIn
        self.retransmittedSegments = retransmittedSegments
        self.rttMicroseconds = rttMicroseconds
        self.congestionWindow = congestionWindow
    }
}

/// A TCP socket the kernel freed, as its sock_diag destroy notification told it.
///
/// The kernel frees a socket when it is closed and done with (a graceful close going into
/// TIME_WAIT frees the full socket then, and leaves a TIME_WAIT socket with the same cookie), so
/// each socket is told once, however briefly it lived. The notification names the socket and
/// carries its final traffic and queues; its state is always CLOSE and its inode and uid are 0.
public struct DestroyNotice: Hashable, Sendable {
    /// When connlog received it, in milliseconds since the epoch.
    public var at: Int64
    public var key: SocketKey
    public var cookie: UInt64
    public var traffic: Traffic?
    /// Whether its handshake completed (tcp_info counts a delivered segment): false for a connect
    /// abandoned in SYN_SENT.
    public var established: Bool
    /// `idiag_wqueue`: sequence space written but not acknowledged (data, and this side's FIN).
    public var unacknowledged: UInt32
    /// `idiag_rqueue`: bytes received that the program never read.
    public var unread: UInt32
    /// `tcpi_retransmits` or `tcpi_probes` was not 0: a retransmission or probe went unanswered.
    public var retransmitting: Bool

    public init(
        at: Int64, key: SocketKey, cookie: UInt64, traffic: Traffic?, established: Bool, unacknowledged: UInt32 = 0,
        unread: UInt32 = 0, retransmitting: Bool = false
    ) {
        self.at = at
        self.key = key
        self.cookie = cookie
        self.traffic = traffic
        self.established = established
        self.unacknowledged = unacknowledged
        self.unread = unread
        self.retransmitting = retransmitting
    }

    /// The kernel disconnected the socket before freeing it (`tcp_disconnect` clears the remote
    /// port, the local address and the counters): this side aborted it (SO_LINGER 0, or a listener
    /// closing with it unaccepted), or its connect() returned an error.
    public var disconnected: Bool { key.remote.port == 0 }

    /// What it tells of how its connection ended.
    public var report: FinalReport {
        FinalReport(
            disconnected: disconnected, traffic: disconnected ? nil : traffic, unacknowledged: unacknowledged, unread: unread,
            retransmitting: retransmitting)
    }
}

/// What the kernel reported of a socket as it freed it, for deciding how its connection ended
/// (``Ending``).
public struct FinalReport: Hashable, Sendable {
    /// The kernel disconnected it first: this side aborted it.
    public var disconnected: Bool
    /// Its final tcp_info counts; nil when disconnected (they were zeroed) or not sent.
    public var traffic: Traffic?
    /// Sequence space written but not acknowledged at the end (`idiag_wqueue`).
    public var unacknowledged: UInt32
    /// Bytes received and never read (`idiag_rqueue`).
    public var unread: UInt32
    /// A retransmission or keepalive probe was unanswered at the end.
    public var retransmitting: Bool

    public init(disconnected: Bool, traffic: Traffic?, unacknowledged: UInt32, unread: UInt32, retransmitting: Bool) {
        self.disconnected = disconnected
        self.traffic = traffic
        self.unacknowledged = unacknowledged
        self.unread = unread
        self.retransmitting = retransmitting
    }
}

/// The process that holds a socket open, as `/proc/<pid>/fd` and `/proc/<pid>/comm` show it.
public struct ProcessOwner: Hashable, Sendable {
    public var pid: Int32
    public var program: String

    public init(pid: Int32, program: String) {
        self.pid = pid
        self.program = program
    }
}

/// One sample of a network namespace: its sockets, its TCP counters, and where and when it was read.
public struct Snapshot: Sendable {
    /// When the tables were read, in milliseconds since the Unix epoch.
    public var at: Int64
    /// The network namespace's inode number (`net:[4026531840]`).
    public var namespace: UInt64
    /// The kernel's boot id; a change means the host rebooted.
    public var bootID: String
    /// Every line that parsed, possibly with duplicates (the kernel does not read the table atomically).
    public var sightings: [Sighting]
    /// `Tcp.*` (net/snmp) and `TcpExt.*` (net/netstat) counters by name, read after the sockets;
    /// empty when unreadable.
    public var counters: [String: Int64]
    /// The reset reconciliation's counters read just before the sockets: the list is not read in
    /// one instant, so a reset counted while it was read may belong to a socket on either side.
    public var countersBeforeRead: ResetCounters?
    /// Table lines that did not parse and were skipped.
    public var malformedLines: Int
    /// Owners of socket inodes, for the inodes that could be attributed.
    public var owners: [UInt64: ProcessOwner]
    /// Whether process attribution ran (false with `--no-processes`).
    public var attributed: Bool
    /// What could not be read but did not stop the sample, one sentence each.
    public var problems: [String] = []
    /// Time spent reading and parsing, in microseconds.
    public var readMicroseconds: Int64
    /// Where the sockets were read: `proc` (the tables) or `netlink` (sock_diag).
    public var source: String = "proc"
    /// The sockets the kernel freed since the previous sample, in the order they were told;
    /// nil when nothing listened for them (the proc source, or `collect --once`).
    public var destroyed: [DestroyNotice]?
    /// How often the kernel dropped destroy notifications since the previous sample because
    /// connlog's receive buffer was full (ENOBUFS): the sockets they told of are not dated.
    public var destroysLost: Int = 0

    public init(
        at: Int64, namespace: UInt64, bootID: String, sightings: [Sighting], counters: [String: Int64] = [:],
        malformedLines: Int = 0, owners: [UInt64: ProcessOwner] = [:], attributed: Bool = false, readMicroseconds: Int64 = 0
    ) {
        self.at = at
        self.namespace = namespace
        self.bootID = bootID
        self.sightings = sightings
        self.counters = counters
        self.malformedLines = malformedLines
        self.owners = owners
        self.attributed = attributed
        self.readMicroseconds = readMicroseconds
    }

    /// The counter the reset reconciliation reads (`Tcp: EstabResets` in net/snmp).
    public static let estabResetsCounter = "Tcp.EstabResets"
}

/// What the reset reconciliation reads of the kernel's counters at one moment (net/snmp's `Tcp:`
/// line): the aborts counted so far, and the connections opened so far.
public struct ResetCounters: Hashable, Sendable {
    /// `EstabResets`: sockets that went from ESTABLISHED or CLOSE_WAIT straight to CLOSE.
    public var estabResets: Int64
    /// `ActiveOpens` + `PassiveOpens`: connects begun and connections accepted; nil when either is missing.
    public var opens: Int64?

    public init(estabResets: Int64, opens: Int64?) {
        self.estabResets = estabResets
        self.opens = opens
    }

    /// From counters by name; nil without `EstabResets`.
    public init?(_ counters: [String: Int64]) {
        guard let resets = counters[Snapshot.estabResetsCounter] else { return nil }
        let opens = counters["Tcp.ActiveOpens"].flatMap { active in counters["Tcp.PassiveOpens"].map { active &+ $0 } }
        self.init(estabResets: resets, opens: opens)
    }
}
