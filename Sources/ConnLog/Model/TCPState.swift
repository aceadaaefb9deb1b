/// A TCP state as the kernel numbers it in the `st` column of `/proc/net/tcp`.
///
/// An open set, like `Errno`: codes the kernel adds later still round-trip, and are named `UNKNOWN`.
/// Mirrors `include/net/tcp_states.h`.
public struct TCPState: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let established = TCPState(rawValue: 0x01)
    public static let synSent = TCPState(rawValue: 0x02)
    public static let synReceived = TCPState(rawValue: 0x03)
    public static let finWait1 = TCPState(rawValue: 0x04)
    public static let finWait2 = TCPState(rawValue: 0x05)
    public static let timeWait = TCPState(rawValue: 0x06)
    public static let close = TCPState(rawValue: 0x07)
    public static let closeWait = TCPState(rawValue: 0x08)
    public static let lastAck = TCPState(rawValue: 0x09)
    public static let listen = TCPState(rawValue: 0x0A)
    public static let closing = TCPState(rawValue: 0x0B)
    public static let newSynReceived = TCPState(rawValue: 0x0C)

    private static let names = [
        "UNKNOWN", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
        "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV",
    ]

    /// The name `netstat` and `ss` print: `ESTABLISHED`, `TIME_WAIT`, ...; `UNKNOWN` for other codes.
    public var name: String {
        Int(rawValue) < Self.names.count ? Self.names[Int(rawValue)] : "UNKNOWN"
    }

    public var description: String { name }

    /// The state with this name (as `name` spells it), or nil.
    public init?(name: String) {
        let upper = String(name.uppercased().map { $0 == "-" ? "_" : $0 })
        guard let index = Self.names.firstIndex(of: upper), index > 0 else { return nil }
        self.init(rawValue: UInt8(index))
    }

    /// Every state the kernel names, in code order.
    public static let known: [TCPState] = (1...12).map { TCPState(rawValue: UInt8($0)) }

    /// FIN_WAIT1, FIN_WAIT2, CLOSING, TIME_WAIT, CLOSE_WAIT, LAST_ACK and CLOSE: a connection on its way out.
    public var isClosing: Bool {
        switch self {
        case .finWait1, .finWait2, .closing, .timeWait, .closeWait, .lastAck, .close: return true
        default: return false
        }
    }

    /// SYN_SENT, SYN_RECV and ESTABLISHED: states a new connection on a reused key starts in.
    public var isOpening: Bool {
        self == .synSent || self == .synReceived || self == .established
    }

    /// The states in which this side closed first (an active close).
    public var isActiveClose: Bool {
        self == .finWait1 || self == .finWait2 || self == .closing || self == .timeWait
    }
}

/// A set of TCP states, one bit per code (bit `1 << code`), as stored in `connections.states_seen`.
public struct TCPStateSet: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public init(_ state: TCPState) {
        self.rawValue = state.rawValue < 32 ? 1 << UInt32(state.rawValue) : 1
    }

    public func contains(_ state: TCPState) -> Bool { contains(TCPStateSet(state)) }

    public mutating func insert(_ state: TCPState) { formUnion(TCPStateSet(state)) }

    /// Whether any state in this set is one where this side closed first.
    public var hasActiveClose: Bool {
        !isDisjoint(with: [TCPStateSet(.finWait1), TCPStateSet(.finWait2), TCPStateSet(.closing), TCPStateSet(.timeWait)])
    }
}
