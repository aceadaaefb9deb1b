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

    public init(
        key: SocketKey, state: TCPState, txQueue: UInt32 = 0, rxQueue: UInt32 = 0, timer: UInt8 = 0,
        timerTicks: UInt32 = 0, retransmits: UInt32 = 0, uid: UInt32 = 0, inode: UInt64 = 0
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
    /// `Tcp.*` (net/snmp) and `TcpExt.*` (net/netstat) counters by name; empty when unreadable.
    public var counters: [String: Int64]
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
