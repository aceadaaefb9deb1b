#if canImport(Glibc)
    import Glibc
#endif

/// Reads the TCP sockets of the caller's network namespace from the kernel's `NETLINK_SOCK_DIAG`
/// interface (what `ss` uses), as the same sightings `/proc/net/tcp` and `tcp6` give.
///
/// One `SOCK_DIAG_BY_FAMILY` dump per family (`inet_diag_req_v2`, every state from ESTABLISHED
/// to NEW_SYN_RECV). No privilege is needed. The fields follow what the proc tables print, so
/// the differ cannot tell the two sources apart: request sockets are SYN_RECV with no inode,
/// TIME_WAIT sockets show timer 3 and no inode, and a listener's send queue is 0 (the dump
/// puts its backlog limit there).
public final class SockDiag {
    private let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    private var sequence: UInt32 = 0

    // From linux/netlink.h, linux/sock_diag.h and linux/inet_diag.h.
    static let netlinkSockDiag: Int32 = 4
    static let sockDiagByFamily: UInt16 = 20
    static let request: UInt16 = 0x1, dump: UInt16 = 0x300
    static let done: UInt16 = 3, error: UInt16 = 2
    static let headerSize = 16, requestSize = 56, messageSize = 72
    /// States 1 (ESTABLISHED) to 12 (NEW_SYN_RECV); not 13, the bound-but-inactive sockets that
    /// the proc tables never list.
    static let allStates: UInt32 = 0x1FFE

    /// Opens the netlink socket; throws when the kernel offers no sock_diag (a container without
    /// netlink, or a kernel built without it).
    public init() throws(ConnLogError) {
        let fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Self.netlinkSockDiag)
        guard fd >= 0 else {
            throw ConnLogError(
                "cannot open a NETLINK_SOCK_DIAG socket: \(FileReading.errorText(errno)); this kernel or container offers no socket diagnostics, so read the proc tables instead"
            )
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Appends every TCP socket, IPv4 then IPv6, to `sightings`.
    public func dump(into sightings: inout [Sighting]) throws(ConnLogError) {
        try dump(family: UInt8(AF_INET), into: &sightings)
        try dump(family: UInt8(AF_INET6), into: &sightings)
    }

    /// Appends every TCP socket of one address family (`AF_INET` or `AF_INET6`) to `sightings`.
    private func dump(family: UInt8, into sightings: inout [Sighting]) throws(ConnLogError) {
        sequence &+= 1
        var message = [UInt8](repeating: 0, count: Self.headerSize + Self.requestSize)
        Self.put(UInt32(message.count), at: 0, in: &message)
        Self.put(Self.sockDiagByFamily, at: 4, in: &message)
        Self.put(Self.request | Self.dump, at: 6, in: &message)
        Self.put(sequence, at: 8, in: &message)
        message[16] = family
        message[17] = UInt8(IPPROTO_TCP)
        Self.put(Self.allStates, at: 20, in: &message)
        let sent = message.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        guard sent == message.count else {
            throw ConnLogError("cannot ask the kernel for its TCP sockets over netlink: \(FileReading.errorText(errno))")
        }
        while true {
            let received = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard received > 0 else {
                if received < 0 && errno == EINTR { continue }
                throw ConnLogError("cannot read the kernel's TCP sockets over netlink: \(FileReading.errorText(errno))")
            }
            var offset = 0
            while offset + Self.headerSize <= received {
                let length = Int(Self.get32(buffer, at: offset))
                let type = Self.get16(buffer, at: offset + 4)
                guard length >= Self.headerSize, offset + length <= received else {
                    throw ConnLogError("the kernel's netlink answer is cut short (\(received) bytes); read the proc tables instead")
                }
                if Self.get32(buffer, at: offset + 8) == sequence {
                    switch type {
                    case Self.done:
                        return
                    case Self.error:
                        let code = Int32(bitPattern: Self.get32(buffer, at: offset + Self.headerSize))
                        throw ConnLogError(
                            "the kernel refused the netlink socket dump: \(FileReading.errorText(-code)); read the proc tables instead")
                    case Self.sockDiagByFamily where length >= Self.headerSize + Self.messageSize:
                        sightings.append(Self.sighting(buffer, at: offset + Self.headerSize))
                    default:
                        break
                    }
                }
                offset += (length + 3) & ~3
            }
        }
    }

    /// One `inet_diag_msg` as the proc tables would show it.
    static func sighting(_ bytes: [UInt8], at start: Int) -> Sighting {
        let family = bytes[start]
        var state = TCPState(rawValue: bytes[start + 1])
        let timer = bytes[start + 2]
        let localPort = UInt16(bytes[start + 4]) << 8 | UInt16(bytes[start + 5])
        let remotePort = UInt16(bytes[start + 6]) << 8 | UInt16(bytes[start + 7])
        let local = address(bytes, at: start + 8, family: family)
        let remote = address(bytes, at: start + 24, family: family)
        let expires = get32(bytes, at: start + 52)
        let inode = UInt64(get32(bytes, at: start + 68))
        // The proc tables show a request socket (NEW_SYN_RECV in the kernel) as SYN_RECV.
        if state.rawValue == 12 { state = .synReceived }
        return Sighting(
            key: SocketKey(local: Endpoint(address: local, port: localPort), remote: Endpoint(address: remote, port: remotePort)),
            state: state, txQueue: state == .listen ? 0 : get32(bytes, at: start + 60), rxQueue: get32(bytes, at: start + 56),
            timer: timer, timerTicks: timer == 0 ? 0 : expires / 10, retransmits: UInt32(bytes[start + 3]),
            uid: get32(bytes, at: start + 64), inode: inode)
    }

    static func address(_ bytes: [UInt8], at start: Int, family: UInt8) -> IPAddress {
        func bigEndian(_ from: Int, _ count: Int) -> UInt64 {
            var value: UInt64 = 0
            for index in from..<from + count { value = value << 8 | UInt64(bytes[index]) }
            return value
        }
        if family == UInt8(AF_INET) { return IPAddress(ipv4: UInt32(bigEndian(start, 4))) }
        return IPAddress(ipv6High: bigEndian(start, 8), low: bigEndian(start + 8, 8))
    }

    // Netlink headers and inet_diag's numbers other than ports and addresses are in host order.
    static func get32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
    }

    static func get16(_ bytes: [UInt8], at offset: Int) -> UInt16 {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt16.self) }
    }

    static func put<T: FixedWidthInteger>(_ value: T, at offset: Int, in bytes: inout [UInt8]) {
        withUnsafeBytes(of: value) { bytes.replaceSubrange(offset..<offset + $0.count, with: $0) }
    }
}
