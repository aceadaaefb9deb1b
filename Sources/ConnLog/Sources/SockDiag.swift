import CNetlink

#if canImport(Glibc)
    import Glibc
#endif

/// Reads the TCP sockets of the caller's network namespace from the kernel's `NETLINK_SOCK_DIAG`
/// interface (what `ss` uses), as the same sightings `/proc/net/tcp` and `tcp6` give, plus each
/// socket's cookie and traffic (`struct tcp_info`).
///
/// One `SOCK_DIAG_BY_FAMILY` dump per family (`inet_diag_req_v2`, every state from ESTABLISHED
/// to NEW_SYN_RECV, with `INET_DIAG_INFO`). No privilege is needed. The fields follow what the
/// proc tables print, so the differ cannot tell the two sources apart: request sockets are
/// SYN_RECV with no inode, TIME_WAIT sockets show timer 3 and no inode, a listener's send
/// queue is 0 (the dump puts its backlog limit there), and the retransmit count is tcp_info's
/// retransmit timeouts (the dump's own is the probe count under the keepalive and zero-window
/// timers).
public final class SockDiag {
    private let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    private var sequence: UInt32 = 0

    /// States 1 (ESTABLISHED) to 12 (NEW_SYN_RECV); not 13, the bound-but-inactive sockets that
    /// the proc tables never list.
    static let allStates: UInt32 = 0x1FFE

    /// Opens the netlink socket; throws when the kernel offers no sock_diag (a container without
    /// netlink, or a kernel built without it).
    public init() throws(ConnLogError) {
        fd = try Self.openSocket(flags: 0)
    }

    deinit { close(fd) }

    static func openSocket(flags: Int32) throws(ConnLogError) -> Int32 {
        let fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | flags, NETLINK_SOCK_DIAG)
        guard fd >= 0 else {
            throw ConnLogError(
                "cannot open a NETLINK_SOCK_DIAG socket: \(FileReading.errorText(errno)); this kernel or container offers no socket diagnostics, so read the proc tables instead (--source proc)"
            )
        }
        return fd
    }

    /// Appends every TCP socket, IPv4 then IPv6, to `sightings`.
    public func dump(into sightings: inout [Sighting]) throws(ConnLogError) {
        try dump(family: UInt8(AF_INET), into: &sightings)
        try dump(family: UInt8(AF_INET6), into: &sightings)
    }

    /// The request: a netlink header and an `inet_diag_req_v2`, laid out as the kernel reads them.
    private struct Request {
        var header: nlmsghdr
        var body: inet_diag_req_v2
    }

    /// Appends every TCP socket of one address family (`AF_INET` or `AF_INET6`) to `sightings`.
    private func dump(family: UInt8, into sightings: inout [Sighting]) throws(ConnLogError) {
        sequence &+= 1
        var request = Request(header: nlmsghdr(), body: inet_diag_req_v2())
        request.header.nlmsg_len = UInt32(MemoryLayout<Request>.size)
        request.header.nlmsg_type = UInt16(SOCK_DIAG_BY_FAMILY)
        request.header.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_DUMP)
        request.header.nlmsg_seq = sequence
        request.body.sdiag_family = family
        request.body.sdiag_protocol = UInt8(IPPROTO_TCP)
        request.body.idiag_states = Self.allStates
        request.body.idiag_ext = UInt8(1 << (INET_DIAG_INFO - 1))
        let sent = withUnsafeBytes(of: &request) { send(fd, $0.baseAddress, $0.count, 0) }
        guard sent == MemoryLayout<Request>.size else {
            throw ConnLogError("cannot ask the kernel for its TCP sockets over netlink: \(FileReading.errorText(errno))")
        }
        while true {
            let received = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard received > 0 else {
                if received < 0 && errno == EINTR { continue }
                throw ConnLogError("cannot read the kernel's TCP sockets over netlink: \(FileReading.errorText(errno))")
            }
            var finished = false
            var failure: Int32?
            let complete = buffer.withUnsafeBytes { bytes in
                Self.forEachMessage(in: UnsafeRawBufferPointer(rebasing: bytes[..<received])) { type, sequence, body in
                    guard sequence == self.sequence else { return }
                    switch Int32(type) {
                    case NLMSG_DONE: finished = true
                    case NLMSG_ERROR: failure = body.count >= 4 ? body.loadUnaligned(as: Int32.self) : -EPROTO
                    case SOCK_DIAG_BY_FAMILY: if let decoded = Self.decode(body) { sightings.append(decoded.sighting) }
                    default: break
                    }
                }
            }
            if let failure {
                throw ConnLogError(
                    "the kernel refused the netlink socket dump: \(FileReading.errorText(-failure)); read the proc tables instead (--source proc)"
                )
            }
            guard complete else {
                throw ConnLogError(
                    "the kernel's netlink answer is cut short (\(received) bytes); read the proc tables instead (--source proc)")
            }
            if finished { return }
        }
    }

    /// Calls `body` with each netlink message's type, sequence number and payload.
    ///
    /// - Returns: false when a message's length runs past the end (a cut-short datagram).
    static func forEachMessage(
        in bytes: UnsafeRawBufferPointer, _ body: (_ type: UInt16, _ sequence: UInt32, _ payload: UnsafeRawBufferPointer) -> Void
    ) -> Bool {
        let headerSize = MemoryLayout<nlmsghdr>.size
        var offset = 0
        while offset + headerSize <= bytes.count {
            let header = bytes.loadUnaligned(fromByteOffset: offset, as: nlmsghdr.self)
            let length = Int(header.nlmsg_len)
            guard length >= headerSize, offset + length <= bytes.count else { return false }
            body(header.nlmsg_type, header.nlmsg_seq, UnsafeRawBufferPointer(rebasing: bytes[offset + headerSize..<offset + length]))
            offset += (length + 3) & ~3
        }
        return true
    }

    /// One socket of a dump or a destroy notification: its sighting, whether tcp_info counts a
    /// delivered segment (its handshake completed), and its keepalive or zero-window probes unanswered.
    static func decode(_ payload: UnsafeRawBufferPointer) -> (sighting: Sighting, delivered: Bool, probes: UInt8)? {
        let messageSize = MemoryLayout<inet_diag_msg>.size
        guard payload.count >= messageSize else { return nil }
        let message = payload.loadUnaligned(as: inet_diag_msg.self)
        var traffic: Traffic?
        var delivered = false
        var probes: UInt8 = 0
        // The dump's own retransmit count is the probes sent for the keepalive and zero-window
        // timers; the proc tables' retrnsmt is always the retransmit timeouts, as tcp_info's.
        var retransmits = UInt32(message.idiag_retrans)
        // Attributes follow, each a 4-byte header (length, type) and its payload, 4-byte aligned.
        // A listener's tcp_info counts nothing: it carries no traffic of its own.
        var offset = (messageSize + 3) & ~3
        while offset + 4 <= payload.count && message.idiag_state != TCPState.listen.rawValue {
            let length = Int(payload.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            let type = payload.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self)
            guard length >= 4, offset + length <= payload.count else { break }
            if Int(type) == INET_DIAG_INFO {
                // An older kernel sends a shorter tcp_info: what it lacks stays 0.
                var info = linux_tcp_info()
                withUnsafeMutableBytes(of: &info) { target in
                    let count = min(length - 4, target.count)
                    target.copyMemory(from: UnsafeRawBufferPointer(rebasing: payload[offset + 4..<offset + 4 + count]))
                }
                traffic = Traffic(
                    bytesAcked: info.tcpi_bytes_acked, bytesReceived: info.tcpi_bytes_received, bytesSent: info.tcpi_bytes_sent,
                    bytesRetransmitted: info.tcpi_bytes_retrans, segmentsOut: info.tcpi_segs_out, segmentsIn: info.tcpi_segs_in,
                    retransmittedSegments: info.tcpi_total_retrans, rttMicroseconds: info.tcpi_rtt,
                    congestionWindow: info.tcpi_snd_cwnd)
                delivered = info.tcpi_delivered > 0 || info.tcpi_bytes_received > 0
                retransmits = UInt32(info.tcpi_retransmits)
                probes = info.tcpi_probes
            }
            offset += (length + 3) & ~3
        }
        return (sighting(message, traffic: traffic, retransmits: retransmits), delivered, probes)
    }

    /// One `inet_diag_msg` as the proc tables would show it, with what its tcp_info gave. Built
    /// in one go: its cookie and traffic share one allocation.
    static func sighting(_ message: inet_diag_msg, traffic: Traffic?, retransmits: UInt32) -> Sighting {
        let family = message.idiag_family
        var state = TCPState(rawValue: message.idiag_state)
        // The proc tables show a request socket (NEW_SYN_RECV in the kernel) as SYN_RECV.
        if state.rawValue == 12 { state = .synReceived }
        let id = message.id
        let key = SocketKey(
            local: Endpoint(address: address(id.idiag_src, family: family), port: UInt16(bigEndian: id.idiag_sport)),
            remote: Endpoint(address: address(id.idiag_dst, family: family), port: UInt16(bigEndian: id.idiag_dport)))
        return Sighting(
            key: key, state: state, txQueue: state == .listen ? 0 : message.idiag_wqueue, rxQueue: message.idiag_rqueue,
            timer: message.idiag_timer, timerTicks: message.idiag_timer == 0 ? 0 : message.idiag_expires / 10,
            retransmits: retransmits, uid: message.idiag_uid, inode: UInt64(message.idiag_inode),
            cookie: UInt64(id.idiag_cookie.1) << 32 | UInt64(id.idiag_cookie.0), traffic: traffic)
    }

    /// An address as the kernel stores it: network byte order, IPv4 in the first four bytes.
    static func address(_ words: (UInt32, UInt32, UInt32, UInt32), family: UInt8) -> IPAddress {
        withUnsafeBytes(of: words) { bytes in
            func bigEndian(_ from: Int, _ count: Int) -> UInt64 {
                var value: UInt64 = 0
                for index in from..<from + count { value = value << 8 | UInt64(bytes[index]) }
                return value
            }
            if family == UInt8(AF_INET) { return IPAddress(ipv4: UInt32(bigEndian(0, 4))) }
            return IPAddress(ipv6High: bigEndian(0, 8), low: bigEndian(8, 8))
        }
    }
}
