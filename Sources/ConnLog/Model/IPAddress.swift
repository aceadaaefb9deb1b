/// An IPv4 or IPv6 address, held as its bytes in network order.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible, Comparable {
    /// 4 for IPv4, 6 for IPv6.
    public let family: UInt8
    /// The 16 bytes of an IPv6 address, or of an IPv4 address in the low 32 bits of `low`, both big-endian numbers.
    public let high: UInt64
    public let low: UInt64

    /// An IPv4 address from its 32-bit value (`0x7F000001` is 127.0.0.1).
    public init(ipv4 value: UInt32) {
        family = 4
        high = 0
        low = UInt64(value)
    }

    /// An IPv6 address from its 128 bits as two big-endian halves.
    public init(ipv6High high: UInt64, low: UInt64) {
        family = 6
        self.high = high
        self.low = low
    }

    /// The address from its 4 or 16 network-order bytes, or nil for any other length.
    public init?(bytes: [UInt8]) {
        func number(_ slice: ArraySlice<UInt8>) -> UInt64 { slice.reduce(0) { $0 << 8 | UInt64($1) } }
        switch bytes.count {
        case 4: self.init(ipv4: UInt32(number(bytes[0..<4])))
        case 16: self.init(ipv6High: number(bytes[0..<8]), low: number(bytes[8..<16]))
        default: return nil
        }
    }

    public static let ipv4Any = IPAddress(ipv4: 0)
    public static let ipv6Any = IPAddress(ipv6High: 0, low: 0)

    /// The address's bytes in network order: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        if family == 4 { return (0..<4).map { UInt8(truncatingIfNeeded: low >> (24 - 8 * UInt64($0))) } }
        return (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64($0))) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64($0))) }
    }

    /// Whether this is 0.0.0.0 or `::`.
    public var isUnspecified: Bool { high == 0 && low == 0 }

    /// The conventional text: dotted quad, or RFC 5952 IPv6 (`::1`, `::ffff:10.0.0.1`).
    public var description: String {
        if family == 4 { return Self.dottedQuad(UInt32(truncatingIfNeeded: low)) }
        if high == 0 && low >> 32 == 0xFFFF {
            return "::ffff:" + Self.dottedQuad(UInt32(truncatingIfNeeded: low))
        }
        let groups: [UInt16] =
            (0..<4).map { UInt16(truncatingIfNeeded: high >> (48 - 16 * UInt64($0))) }
            + (0..<4).map { UInt16(truncatingIfNeeded: low >> (48 - 16 * UInt64($0))) }
        // RFC 5952: the longest run (at least two) of zero groups becomes "::", the first such if tied.
        var bestStart = -1, bestLength = 0, runStart = -1
        for index in 0...8 {
            if index < 8 && groups[index] == 0 {
                if runStart < 0 { runStart = index }
            } else if runStart >= 0 {
                if index - runStart > bestLength { bestStart = runStart; bestLength = index - runStart }
                runStart = -1
            }
        }
        if bestLength < 2 { bestStart = -1 }
        var text = ""
        var index = 0
        while index < 8 {
            if index == bestStart {
                text += "::"
                index += bestLength
                continue
            }
            if !text.isEmpty && !text.hasSuffix(":") { text += ":" }
            text += String(groups[index], radix: 16)
            index += 1
        }
        return text
    }

    private static func dottedQuad(_ value: UInt32) -> String {
        "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
    }

    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        (a.family, a.high, a.low) < (b.family, b.high, b.low)
    }
}

/// An address and a port, written `addr:port`, IPv6 in brackets (`[::1]:443`).
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    public var description: String {
        address.family == 6 ? "[\(address)]:\(port)" : "\(address):\(port)"
    }
}
