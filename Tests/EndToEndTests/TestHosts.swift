import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A host of the test's own: a network namespace with its loopback up, deleted when the test is
/// done. Its sockets and its kernel counters are its own, so nothing else on the machine moves
/// them. Needs root (CI runs as root).
final class TestHost: Sendable {
    let name: String
    /// The namespace's file, for `setns`.
    private let handle: Int32

    init(_ label: String) throws {
        name = "connlog-\(label)-\(UUID().uuidString.prefix(8).lowercased())"
        try Self.ip(["netns", "add", name])
        try Self.ip(["-n", name, "link", "set", "lo", "up"])
        handle = open("/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
        guard handle >= 0 else { throw SocketError("open /run/netns/\(name)") }
    }

    deinit {
        close(handle)
        _ = try? Self.ip(["netns", "delete", name])
    }

    @discardableResult
    static func ip(_ arguments: [String]) throws -> String {
        let outcome = try run(arguments, executable: URL(fileURLWithPath: "/usr/sbin/ip"))
        guard outcome.status == 0 else { throw SocketError("ip \(arguments.joined(separator: " ")): \(outcome.stderr)") }
        return outcome.stdout
    }

    /// Runs a program inside the namespace (`ip netns exec`) to completion.
    @discardableResult
    func exec(_ program: String, _ arguments: [String]) throws -> Outcome {
        try run(["netns", "exec", name, program] + arguments, executable: URL(fileURLWithPath: "/usr/sbin/ip"))
    }

    /// Starts `connlog` inside the namespace.
    func startConnlog(_ arguments: [String]) throws -> Child {
        try start(["netns", "exec", name, connlogBinary.path] + arguments, executable: URL(fileURLWithPath: "/usr/sbin/ip"))
    }

    /// Sets a per-namespace sysctl (`net.ipv4.tcp_syn_retries`, say).
    func sysctl(_ name: String, _ value: String) throws {
        let outcome = try exec("/usr/sbin/sysctl", ["-q", "-w", "\(name)=\(value)"])
        guard outcome.status == 0 else { throw SocketError("sysctl \(name): \(outcome.stderr)") }
    }

    /// Loads nftables rules into the namespace (`nft -f`), replacing any the test loaded before:
    /// packets dropped on input are lost on the way, as on a real network (dropped on output,
    /// the sender would be told, and count them twice).
    func firewall(_ rules: String) throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("connlog-nft-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: file) }
        try "flush ruleset\n\(rules)\n".write(to: file, atomically: true, encoding: .utf8)
        let outcome = try exec("/usr/sbin/nft", ["-f", file.path])
        guard outcome.status == 0 else { throw SocketError("nft: \(outcome.stderr)") }
    }

    /// Runs `body` on a thread that joined the namespace: the sockets it creates are the
    /// namespace's, wherever they are used afterwards.
    func inside<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        let result = Mutex<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let handle = self.handle
        let thread = Thread {
            defer { done.signal() }
            // CLONE_NEWNET: this thread only.
            guard joinNamespace(handle, 0x4000_0000) == 0 else {
                result.withLock { $0 = .failure(SocketError("setns")) }
                return
            }
            let outcome = Result { try body() }
            result.withLock { $0 = outcome }
        }
        thread.stackSize = 8 << 20
        thread.start()
        done.wait()
        return try result.withLock { $0! }.get()
    }

    /// Joins this host to `other` by a veth pair, with `address` here and `otherAddress` there
    /// (10.213.0.0/16, /24 prefixes), and the extra `aliases` here (more client addresses).
    func link(to other: TestHost, address: String, otherAddress: String, aliases: [String] = []) throws {
        let here = "v\(UUID().uuidString.prefix(8).lowercased())"
        let there = "w\(here.dropFirst())"
        try Self.ip(["link", "add", here, "netns", name, "type", "veth", "peer", "name", there, "netns", other.name])
        for address in [address] + aliases { try Self.ip(["-n", name, "addr", "add", "\(address)/24", "dev", here]) }
        try Self.ip(["-n", other.name, "addr", "add", "\(otherAddress)/24", "dev", there])
        try Self.ip(["-n", name, "link", "set", here, "up"])
        try Self.ip(["-n", other.name, "link", "set", there, "up"])
    }
}

/// `setns(2)`, which Glibc's module leaves out (it needs _GNU_SOURCE): looked up in the C library.
private let joinNamespace: @convention(c) (Int32, Int32) -> Int32 = {
    guard let symbol = dlsym(nil, "setns") else { fatalError("the C library has no setns") }
    return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
}()

/// A collector running in a test host's namespace until stopped.
final class TestCollector {
    let db: String
    private let child: Child

    /// Starts `connlog collect` on `db` and waits for its first sample.
    init(on host: TestHost, db: String, interval: String = "200ms", extra: [String] = ["--source", "netlink"]) throws {
        self.db = db
        child = try host.startConnlog(["collect", "--db", db, "--interval", interval, "--no-processes"] + extra)
        guard waitUntil(seconds: 15, { samples() >= 1 }) else {
            child.signal(SIGTERM)
            throw SocketError("the collector never recorded a sample: \(child.finish().stderr)")
        }
    }

    /// Samples recorded so far.
    func samples() -> Int {
        ((try? query(db, "SELECT count(*) FROM samples"))?.first?.first).flatMap { Int($0) } ?? 0
    }

    /// Waits until `count` more samples were recorded (a state held that long is seen by one).
    func samplesPass(_ count: Int = 2) throws {
        let now = samples()
        guard waitUntil(seconds: 20, { samples() >= now + count }) else { throw SocketError("the collector stopped sampling") }
    }

    /// Lets two more samples pass (the last notices taken), then stops it; its outcome.
    func stop() throws -> Outcome {
        try samplesPass()
        child.signal(SIGTERM)
        return child.finish()
    }
}
