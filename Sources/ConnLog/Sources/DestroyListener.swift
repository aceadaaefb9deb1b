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
/// that is counted, so the samples it touched are known to be inexact.
public final class DestroyListener: Sendable {
    private let fd: Int32
    /// A pipe: writing to it wakes the thread and makes it stop.
    private let wake: Int32
    private let wakeWriter: Int32
    private let inbox = Mutex(Inbox())
    private let thread = Mutex<pthread_t?>(nil)
    /// The receive buffer the kernel granted, in bytes.
    public let receiveBufferBytes: Int

    /// Notifications kept between two takes at most; more count as lost.
    static let capacity = 2_000_000

    struct Inbox {
        var notices: [DestroyNotice] = []
        var lost = 0
    }

    /// Joins the destroy groups. Nothing is heard until ``start()``.
    ///
    /// - Parameter receiveBuffer: bytes of notifications the kernel may queue for connlog (each
    ///   takes about 600 with its bookkeeping). Without CAP_NET_ADMIN the kernel caps it at
    ///   `net.core.rmem_max`.
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
        self.fd = fd
        wake = pipeEnds[0]
        wakeWriter = pipeEnds[1]
        receiveBufferBytes = Int(granted)
    }

    deinit {
        stop()
        close(fd)
        close(wake)
        close(wakeWriter)
    }

    /// Starts the listening thread.
    public func start() throws(ConnLogError) {
        try thread.withLock { (handle: inout pthread_t?) throws(ConnLogError) in
            guard handle == nil else { return }
            var created = pthread_t()
            let context = Unmanaged.passRetained(self).toOpaque()
            let result = pthread_create(
                &created, nil,
                { context in
                    let listener = Unmanaged<DestroyListener>.fromOpaque(context!).takeRetainedValue()
                    listener.listen()
                    return nil
                }, context)
            guard result == 0 else {
                Unmanaged<DestroyListener>.fromOpaque(context).release()
                throw ConnLogError("cannot start the destroy listener's thread: \(FileReading.errorText(result))")
            }
            handle = created
        }
    }

    /// Stops the thread and waits for it; notifications not taken yet stay to be taken.
    public func stop() {
        guard
            let handle = thread.withLock({ (handle: inout pthread_t?) -> pthread_t? in
                defer { handle = nil }
                return handle
            })
        else { return }
        var one: UInt8 = 1
        _ = write(wakeWriter, &one, 1)
        pthread_join(handle, nil)
    }

    /// Everything heard since the last take, in the order it arrived, and how often the kernel
    /// dropped notifications meanwhile.
    public func take() -> (notices: [DestroyNotice], lost: Int) {
        inbox.withLock { inbox in
            defer { inbox = Inbox() }
            return (inbox.notices, inbox.lost)
        }
    }

    private func listen() {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        var watched = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
        var heard: [DestroyNotice] = []
        while true {
            if poll(&watched, 2, -1) < 0 {
                if errno == EINTR { continue }
                return
            }
            if watched[1].revents != 0 { return }
            var lost = 0
            // Until the socket is drained, handing what was heard over every 1024 notifications.
            while heard.count < 1024 {
                let received = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
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
                        heard.append(
                            DestroyNotice(
                                at: at, key: sighting.key, cookie: sighting.cookie, traffic: sighting.traffic,
                                established: decoded.delivered))
                    }
                }
            }
            inbox.withLock { inbox in
                let room = max(0, Self.capacity - inbox.notices.count)
                if heard.count > room { lost += 1 }
                inbox.notices.append(contentsOf: heard.prefix(room))
                inbox.lost += lost
            }
            heard.removeAll(keepingCapacity: true)
        }
    }
}
