import CNetlink
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Hears about every TCP socket the kernel frees in the caller's network namespace, from the
/// sock_diag multicast groups for TCP destruction (IPv4 and IPv6; what `ss -E` reads). No
/// privilege is needed.
///
/// A thread of its own reads the notifications as they come and stamps each with the time it
/// arrived, so a sample that takes long neither delays their dates nor lets the receive buffer
/// fill. When the buffer does fill, the kernel drops notifications and says so once (ENOBUFS):
/// that is counted, so the samples it touched are known to be inexact. ``stop()`` (or releasing
/// the listener) ends the thread and closes the socket; a listener is started once.
public final class DestroyListener: Sendable {
    private let channel: Channel
    private let thread = Mutex<Thread>(.notStarted)
    /// The receive buffer the kernel granted, in bytes, as asked for (it reserves as much again
    /// for its bookkeeping, and reports the two together).
    public let receiveBufferBytes: Int

    private enum Thread: Sendable {
        case notStarted
        case running(pthread_t)
        case stopped
    }

    /// What a take returns: the notices in the order they arrived, and how often the kernel
    /// dropped some meanwhile.
    public typealias Heard = (notices: [DestroyNotice], lost: Int)

    /// Notifications kept between two takes at most; more count as lost.
    static let capacity = 2_000_000

    struct Inbox {
        var notices: [DestroyNotice] = []
        var lost = 0
    }

    /// What the thread shares with the listener: the sockets and the inbox. The thread holds its
    /// own reference, so the listener can be released (and stop the thread) while it runs.
    private final class Channel: Sendable {
        let fd: Int32
        /// A pipe: writing to it wakes the thread and makes it stop.
        let wake: Int32
        let wakeWriter: Int32
        let inbox = Mutex(Inbox())

        init(fd: Int32, wake: Int32, wakeWriter: Int32) {
            self.fd = fd
            self.wake = wake
            self.wakeWriter = wakeWriter
        }

        deinit {
            close(fd)
            close(wake)
            close(wakeWriter)
        }
    }

    /// Joins the destroy groups. Nothing is heard until ``start()``.
    ///
    /// - Parameter receiveBuffer: bytes of notifications the kernel may queue for connlog (each
    ///   takes about 600 with its bookkeeping). Without CAP_NET_ADMIN the kernel caps it at
    ///   `net.core.rmem_max`: compare ``receiveBufferBytes``.
    public init(receiveBuffer: Int) throws(ConnLogError) {
        let fd = try SockDiag.openSocket(flags: Int32(SOCK_NONBLOCK.rawValue))
        var size = Int32(clamping: receiveBuffer)
        let length = socklen_t(MemoryLayout<Int32>.size)
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, length) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, length)
        }
        var granted: Int32 = 0
        var grantedLength = length
        _ = getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &granted, &grantedLength)
        var address = sockaddr_nl()
        address.nl_family = sa_family_t(AF_NETLINK)
        let ipv4: UInt32 = 1 << (SKNLGRP_INET_TCP_DESTROY.rawValue - 1)
        let ipv6: UInt32 = 1 << (SKNLGRP_INET6_TCP_DESTROY.rawValue - 1)
        address.nl_groups = ipv4 | ipv6
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_nl>.size)) }
        }
        guard bound == 0 else {
            let error = errno
            close(fd)
            throw ConnLogError(
                "cannot listen for the kernel's socket destroy notifications: \(FileReading.errorText(error)); closes are dated by the samples alone"
            )
        }
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else {
            let error = errno
            close(fd)
            throw ConnLogError("cannot create a pipe for the destroy listener: \(FileReading.errorText(error))")
        }
        for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        channel = Channel(fd: fd, wake: pipeEnds[0], wakeWriter: pipeEnds[1])
        receiveBufferBytes = Int(granted) / 2
    }

    deinit { stop() }

    /// Starts the listening thread; a second call does nothing.
    public func start() throws(ConnLogError) {
        try thread.withLock { (thread: inout Thread) throws(ConnLogError) in
            guard case .notStarted = thread else { return }
            var created = pthread_t()
            let context = Unmanaged.passRetained(channel).toOpaque()
            let result = pthread_create(
                &created, nil,
                { context in
                    let channel = Unmanaged<Channel>.fromOpaque(context!).takeRetainedValue()
                    DestroyListener.listen(on: channel)
                    return nil
                }, context)
            guard result == 0 else {
                Unmanaged<Channel>.fromOpaque(context).release()
                throw ConnLogError("cannot start the destroy listener's thread: \(FileReading.errorText(result))")
            }
            thread = .running(created)
        }
    }

    /// Stops the thread and waits for it; notifications not taken yet stay to be taken, and no
    /// more are heard.
    public func stop() {
        let running = thread.withLock { (thread: inout Thread) -> pthread_t? in
            defer { thread = .stopped }
            if case .running(let handle) = thread { return handle }
            return nil
        }
        guard let running else { return }
        var one: UInt8 = 1
        _ = write(channel.wakeWriter, &one, 1)
        pthread_join(running, nil)
        // Leave the groups, so the kernel stops queueing for a listener nobody reads.
        for group in [SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET6_TCP_DESTROY] {
            var number = Int32(group.rawValue)
            _ = setsockopt(channel.fd, SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, &number, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// Everything heard since the last take, in the order it arrived, and how often the kernel
    /// dropped notifications meanwhile.
    public func take() -> Heard {
        channel.inbox.withLock { inbox in
            defer { inbox = Inbox() }
            return (inbox.notices, inbox.lost)
        }
    }

    /// Puts back what a take returned (the sample that took it was not recorded), ahead of
    /// what was heard since.
    public func giveBack(_ taken: Heard) {
        channel.inbox.withLock { inbox in
            inbox.notices = taken.notices + inbox.notices
            inbox.lost += taken.lost
        }
    }

    private static func listen(on channel: Channel) {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        var watched = [
            pollfd(fd: channel.fd, events: Int16(POLLIN), revents: 0), pollfd(fd: channel.wake, events: Int16(POLLIN), revents: 0),
        ]
        var heard: [DestroyNotice] = []
        while true {
            if poll(&watched, 2, -1) < 0 {
                // EINTR, or the kernel short of memory for a moment: try again.
                if errno != EINTR { usleep(10_000) }
                continue
            }
            if watched[1].revents != 0 { return }
            var lost = 0
            // Until the socket is drained, handing what was heard over every 1024 notifications.
            while heard.count < 1024 {
                let received = buffer.withUnsafeMutableBytes { recv(channel.fd, $0.baseAddress, $0.count, 0) }
                if received < 0 {
                    if errno == ENOBUFS {
                        lost += 1
                        continue
                    }
                    if errno == EINTR { continue }
                    break
                }
                if received == 0 { break }
                let at = TimeText.nowMilliseconds()
                _ = buffer.withUnsafeBytes { bytes in
                    SockDiag.forEachMessage(in: UnsafeRawBufferPointer(rebasing: bytes[..<received])) { type, _, payload in
                        guard Int32(type) == SOCK_DIAG_BY_FAMILY, let decoded = SockDiag.decode(payload) else { return }
                        let sighting = decoded.sighting
                        // A freed socket is in CLOSE: its queues are the kernel's idiag_wqueue and rqueue.
                        heard.append(
                            DestroyNotice(
                                at: at, key: sighting.key, cookie: sighting.cookie, traffic: sighting.traffic,
                                established: decoded.delivered, unacknowledged: sighting.txQueue, unread: sighting.rxQueue,
                                retransmitting: sighting.retransmits > 0 || decoded.probes > 0))
                    }
                }
            }
            channel.inbox.withLock { inbox in
                let room = max(0, Self.capacity - inbox.notices.count)
                if heard.count > room { lost += 1 }
                inbox.notices.append(contentsOf: heard.prefix(room))
                inbox.lost += lost
            }
            heard.removeAll(keepingCapacity: true)
        }
    }
}
