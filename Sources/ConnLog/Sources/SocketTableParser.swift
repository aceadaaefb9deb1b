/// Parses the text of `/proc/net/tcp` and `/proc/net/tcp6` into sightings, byte by byte.
///
/// The format is `get_tcp4_sock`/`get_tcp6_sock` in net/ipv4/tcp_ipv4.c and net/ipv6/tcp_ipv6.c:
/// `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...`.
/// Addresses are hex of 32-bit words in the host's byte order; TIME_WAIT and request sockets
/// print shorter lines (`get_timewait4_sock`, `get_openreq4`). A line that does not parse is
/// counted and skipped.
public enum SocketTableParser {
    /// Appends the sockets in `text` (whole lines of a table) to `sightings`.
    ///
    /// - Parameter family: 4 for `tcp`, 6 for `tcp6`.
    /// - Parameter atStart: `text` begins the table, so a header line there is skipped; later
    ///   pieces of a table have none, and a line there that looks like one is malformed.
    /// - Returns: the number of lines that did not parse.
    @discardableResult
    public static func parse(
        _ text: UnsafeRawBufferPointer, family: UInt8, atStart: Bool = true, into sightings: inout [Sighting]
    ) -> Int {
        guard let base = text.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return 0 }
        let end = base + text.count
        var malformed = 0
        var line = base
        var first = atStart
        while line < end {
            var lineEnd = line
            while lineEnd < end && lineEnd.pointee != newline { lineEnd += 1 }
            defer { line = lineEnd + 1 }
            if first {
                first = false
                if isHeader(line, lineEnd) { continue }
            }
            if isBlank(line, lineEnd) { continue }
            if let sighting = parseLine(line, lineEnd, family: family) {
                sightings.append(sighting)
            } else {
                malformed += 1
            }
        }
        return malformed
    }

    /// Parses a table held in an array; see ``parse(_:family:into:)``.
    public static func parse(_ bytes: [UInt8], family: UInt8) -> (sightings: [Sighting], malformed: Int) {
        var sightings: [Sighting] = []
        let malformed = bytes.withUnsafeBytes { parse($0, family: family, into: &sightings) }
        return (sightings, malformed)
    }

    private static let newline = UInt8(ascii: "\n")
    private static let space = UInt8(ascii: " ")
    private static let colon = UInt8(ascii: ":")

    private static func isHeader(_ start: UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>) -> Bool {
        var p = start
        while p < end && p.pointee == space { p += 1 }
        return end - p >= 2 && p[0] == UInt8(ascii: "s") && p[1] == UInt8(ascii: "l")
    }

    private static func isBlank(_ start: UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>) -> Bool {
        var p = start
        while p < end && (p.pointee == space || p.pointee == UInt8(ascii: "\t") || p.pointee == UInt8(ascii: "\r")) { p += 1 }
        return p == end
    }

    /// One line, or nil when any field up to `inode` is missing or malformed.
    @inline(__always)
    static func parseLine(_ start: UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>, family: UInt8) -> Sighting? {
        var cursor = Cursor(p: start, end: end)
        cursor.skipSpaces()
        guard cursor.decimal() != nil, cursor.expect(colon) else { return nil }
        cursor.skipSpaces()
        guard let local = cursor.endpoint(family: family) else { return nil }
        guard cursor.expect(space), let remote = cursor.endpoint(family: family) else { return nil }
        guard cursor.expect(space), let state = cursor.hex(maxDigits: 2) else { return nil }
        guard cursor.expect(space), let tx = cursor.hex(maxDigits: 8), cursor.expect(colon),
            let rx = cursor.hex(maxDigits: 8)
        else { return nil }
        guard cursor.expect(space), let timer = cursor.hex(maxDigits: 2), cursor.expect(colon),
            let when = cursor.hex(maxDigits: 16)
        else { return nil }
        guard cursor.expect(space), let retransmits = cursor.hex(maxDigits: 8) else { return nil }
        cursor.skipSpaces()
        guard let uid = cursor.decimal(), uid <= UInt64(UInt32.max) else { return nil }
        cursor.skipSpaces()
        if cursor.p < cursor.end && cursor.p.pointee == UInt8(ascii: "-") { cursor.p += 1 }
        guard cursor.decimal() != nil else { return nil }
        cursor.skipSpaces()
        guard let inode = cursor.decimal() else { return nil }
        // The next byte must end the field; "123abc" is not an inode.
        guard cursor.p == cursor.end || cursor.p.pointee == space || cursor.p.pointee == UInt8(ascii: "\r") else { return nil }
        return Sighting(
            key: SocketKey(local: local, remote: remote),
            state: TCPState(rawValue: UInt8(truncatingIfNeeded: state)),
            txQueue: UInt32(truncatingIfNeeded: tx), rxQueue: UInt32(truncatingIfNeeded: rx),
            timer: UInt8(truncatingIfNeeded: timer), timerTicks: UInt32(truncatingIfNeeded: min(when, UInt64(UInt32.max))),
            retransmits: UInt32(truncatingIfNeeded: retransmits), uid: UInt32(uid), inode: inode)
    }

    /// A read position within one line.
    struct Cursor {
        var p: UnsafePointer<UInt8>
        let end: UnsafePointer<UInt8>

        @inline(__always) mutating func skipSpaces() {
            while p < end && p.pointee == UInt8(ascii: " ") { p += 1 }
        }

        @inline(__always) mutating func expect(_ byte: UInt8) -> Bool {
            guard p < end && p.pointee == byte else { return false }
            p += 1
            return true
        }

        @inline(__always) static func hexValue(_ byte: UInt8) -> UInt64? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt64(byte &- UInt8(ascii: "0"))
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt64(byte &- UInt8(ascii: "A") &+ 10)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt64(byte &- UInt8(ascii: "a") &+ 10)
            default: return nil
            }
        }

        /// 1 to `maxDigits` hex digits.
        @inline(__always) mutating func hex(maxDigits: Int) -> UInt64? {
            var value: UInt64 = 0
            var digits = 0
            while p < end, let digit = Self.hexValue(p.pointee) {
                guard digits < maxDigits else { return nil }
                value = value << 4 | digit
                digits += 1
                p += 1
            }
            return digits > 0 ? value : nil
        }

        /// Exactly 8 hex digits: one 32-bit word as the kernel printed it.
        @inline(__always) mutating func word() -> UInt32? {
            guard end - p >= 8 else { return nil }
            var value: UInt32 = 0
            for _ in 0..<8 {
                guard let digit = Self.hexValue(p.pointee) else { return nil }
                value = value << 4 | UInt32(digit)
                p += 1
            }
            return value
        }

        /// 1 to 19 decimal digits.
        @inline(__always) mutating func decimal() -> UInt64? {
            var value: UInt64 = 0
            var digits = 0
            while p < end, p.pointee >= UInt8(ascii: "0"), p.pointee <= UInt8(ascii: "9") {
                guard digits < 19 else { return nil }
                value = value &* 10 &+ UInt64(p.pointee &- UInt8(ascii: "0"))
                digits += 1
                p += 1
            }
            return digits > 0 ? value : nil
        }

        /// `ADDR:PORT`: 8 (IPv4) or 32 (IPv6) hex digits of host-order words, then 4 hex digits of port.
        ///
        /// Each word was printed from memory in network order, so its bytes are the word read
        /// back as big-endian (`0100007F` on x86-64 is 127.0.0.1).
        @inline(__always) mutating func endpoint(family: UInt8) -> Endpoint? {
            let address: IPAddress
            if family == 4 {
                guard let w = word() else { return nil }
                address = IPAddress(ipv4: UInt32(bigEndian: w))
            } else {
                guard let w0 = word(), let w1 = word(), let w2 = word(), let w3 = word() else { return nil }
                address = IPAddress(
                    ipv6High: UInt64(UInt32(bigEndian: w0)) << 32 | UInt64(UInt32(bigEndian: w1)),
                    low: UInt64(UInt32(bigEndian: w2)) << 32 | UInt64(UInt32(bigEndian: w3)))
            }
            guard expect(UInt8(ascii: ":")), let port = hex(maxDigits: 4) else { return nil }
            return Endpoint(address: address, port: UInt16(port))
        }
    }
}
