import ConnLog
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Every way a connection ends, on real sockets, recorded by the built binary on the netlink
/// source and read back: both ends, IPv4 and IPv6, seen by samples and lived between two. Each
/// test runs in a network namespace of its own, so the kernel's counters and notices are its own.
@Suite("How connections ended, on real sockets")
struct RealEndingTests {
    let directory: URL

    init() throws { directory = try temporaryDirectory() }

    /// One connection of a scenario, both ends in the test host.
    final class Pair: @unchecked Sendable {
        let family: Int32
        var client: Int32 = -1
        var server: Int32 = -1
        var clientPort: UInt16 = 0

        init(family: Int32) { self.family = family }

        /// Connects to `listener`, accepts, and exchanges a request and an answer.
        func open(to listener: (fd: Int32, port: UInt16)) throws {
            client = family == AF_INET ? try connectIPv4(to: listener.port) : try connectIPv6(to: listener.port)
            server = try acceptOne(listener.fd)
            clientPort = localPort(client)
            try sendAll(client, count: 100)
            try receive(server, count: 100)
            try sendAll(server, count: 200)
            try receive(client, count: 200)
        }
    }

    /// What one end must be recorded as: one of `reasons` with its reset's sender; or still in
    /// TIME_WAIT (it closed first, gracefully); or, for an end this side aborted between two
    /// samples, possibly no row at all (the kernel cleared its ports), counted in `unnamed_ends`.
    struct Expected: Sendable, CustomStringConvertible {
        var reasons: Set<String>
        var resetBy: String = "NULL"
        var mayBeUnnamed = false
        var description: String { "\(reasons.sorted()) by \(resetBy)\(mayBeUnnamed ? " or unnamed" : "")" }

        static func ended(_ reasons: String..., by sender: String = "NULL", orUnnamed: Bool = false) -> Expected {
            Expected(reasons: Set(reasons), resetBy: sender, mayBeUnnamed: orUnnamed)
        }
        static let closedFirst = Expected(reasons: ["TIME_WAIT", "active_close"])
    }

    /// A way of ending: its steps after the pair opened (each a moment a sample may see, when it
    /// lives long), and how each end is recorded, for a long life and for one between samples.
    struct Kind: Sendable {
        var name: String
        var steps: [@Sendable (Pair) throws -> Void]
        var long: (client: Expected, server: Expected)
        var short: (client: Expected, server: Expected)
    }

    static let kinds: [Kind] = [
        Kind(
            name: "client abort",
            steps: [
                { pair in
                    setLingerZero(pair.client)
                    close(pair.client)
                    readToEnd(pair.server)
                    close(pair.server)
                }
            ],
            long: (.ended("reset", by: "this_host"), .ended("reset", by: "peer")),
            short: (.ended("reset", by: "this_host", orUnnamed: true), .ended("reset", by: "peer"))),
        Kind(
            name: "server abort",
            steps: [
                { pair in
                    setLingerZero(pair.server)
                    close(pair.server)
                    readToEnd(pair.client)
                    close(pair.client)
                }
            ],
            long: (.ended("reset", by: "peer"), .ended("reset", by: "this_host")),
            short: (.ended("reset", by: "peer"), .ended("reset", by: "this_host", orUnnamed: true))),
        // The server closes with 500 bytes it never read: the kernel sends a RST. (A program the
        // peer reset may leave data unread too, so that end's sender is not known.)
        Kind(
            name: "close with unread data",
            steps: [
                { pair in try sendAll(pair.client, count: 500) },
                { pair in
                    usleep(20_000)
                    close(pair.server)
                    readToEnd(pair.client)
                    close(pair.client)
                },
            ],
            long: (.ended("reset", by: "peer"), .ended("reset")),
            short: (.ended("reset", by: "peer"), .ended("reset"))),
        Kind(
            name: "graceful, client first",
            steps: [
                { pair in close(pair.client) },
                { pair in
                    readToEnd(pair.server)
                    close(pair.server)
                },
            ],
            long: (.closedFirst, .ended("passive_close")),
            short: (.closedFirst, .ended("vanished", "passive_close"))),
        Kind(
            name: "graceful, server first",
            steps: [
                { pair in close(pair.server) },
                { pair in
                    readToEnd(pair.client)
                    close(pair.client)
                },
            ],
            long: (.ended("passive_close"), .closedFirst),
            short: (.ended("vanished", "passive_close"), .closedFirst)),
        // The server's program holds the reset socket a while: a sample sees it gone with no
        // notice yet (the counter judges it), and the notice that comes when it is closed decides.
        Kind(
            name: "reset, its socket held open",
            steps: [
                { pair in
                    setLingerZero(pair.client)
                    close(pair.client)
                },
                { pair in
                    readToEnd(pair.server)
                    close(pair.server)
                },
            ],
            long: (.ended("reset", by: "this_host"), .ended("reset", by: "peer")),
            short: (.ended("reset", by: "this_host", orUnnamed: true), .ended("reset", by: "peer"))),
        // The client closes its sending side (its FIN acknowledged), and the server then aborts.
        // The client finished its side gracefully: the reset is the server's.
        Kind(
            name: "half-close, then reset",
            steps: [
                { pair in _ = shutdown(pair.client, Int32(SHUT_WR)) },
                { pair in
                    readToEnd(pair.server)
                    // The server acknowledges the FIN (a delayed ACK goes within 40 ms) before it
                    // aborts; aborted sooner, the client's FIN would never be acknowledged: a reset.
                    usleep(100_000)
                    setLingerZero(pair.server)
                    close(pair.server)
                },
                { pair in
                    var byte: UInt8 = 0
                    _ = recv(pair.client, &byte, 1, 0)
                    close(pair.client)
                },
            ],
            long: (.ended("active_close"), .ended("reset", by: "this_host")),
            short: (.ended("vanished", "active_close"), .ended("reset", by: "this_host", orUnnamed: true))),
    ]

    @Test(arguments: [AF_INET, AF_INET6])
    func eachEndingIsRecordedRightAtBothEnds(family: Int32) throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let host = try TestHost("endings")
        let db = directory.appendingPathComponent("endings.db").path
        let collector = try TestCollector(on: host, db: db)
        let listener = try host.inside { family == AF_INET ? try listenIPv4() : try listenIPv6() }
        defer { close(listener.fd) }

        // The long-lived: every kind at once, a pause of two samples after each step.
        let long = Self.kinds.map { _ in Pair(family: family) }
        for pair in long { try host.inside { try pair.open(to: listener) } }
        try collector.samplesPass()
        for step in 0..<Self.kinds.map(\.steps.count).max()! {
            for (kind, pair) in zip(Self.kinds, long) where step < kind.steps.count {
                try host.inside { try kind.steps[step](pair) }
            }
            try collector.samplesPass()
        }
        // The short-lived: each kind opened and ended within a few milliseconds, three times.
        var short: [(Kind, Pair)] = []
        for _ in 0..<3 {
            for kind in Self.kinds {
                let pair = Pair(family: family)
                try host.inside {
                    try pair.open(to: listener)
                    for step in kind.steps { try step(pair) }
                }
                short.append((kind, pair))
            }
        }
        let outcome = try collector.stop()
        #expect(outcome.status == 0, "\(outcome.stderr)")

        let server = family == AF_INET ? "127.0.0.1" : "::1"
        var unnamed = 0
        var couldBeUnnamed = 0
        func check(_ pair: Pair, _ kind: Kind, _ expected: (client: Expected, server: Expected), life: String) throws {
            for (end, want, local, remote) in [
                ("client", expected.client, pair.clientPort, listener.port), ("server", expected.server, listener.port, pair.clientPort),
            ] {
                let rows = try query(
                    db,
                    """
                    SELECT COALESCE(end_reason, state), COALESCE(reset_by, 'NULL'), COALESCE(end_basis, 'NULL')
                    FROM connections_v WHERE local_port = ? AND remote_port = ? AND preexisting = 0
                    """, [.integer(Int64(local)), .integer(Int64(remote))])
                let context = "\(kind.name), \(life), \(family == AF_INET ? "IPv4" : "IPv6"), \(end) end"
                if rows.isEmpty && want.mayBeUnnamed {
                    unnamed += 1
                    continue
                }
                if want.mayBeUnnamed { couldBeUnnamed += 1 }
                #expect(rows.count == 1, "\(context): \(rows)")
                guard let row = rows.first else { continue }
                #expect(want.reasons.contains(row[0]) && row[1] == want.resetBy, "\(context): \(row), want \(want)")
                // Every ending but TIME_WAIT's own was decided by the states or the kernel's report.
                if row[0] != "TIME_WAIT" { #expect(["states", "kernel"].contains(row[2]), "\(context): \(row)") }
            }
        }
        for (kind, pair) in zip(Self.kinds, long) { try check(pair, kind, kind.long, life: "seen by samples") }
        for (kind, pair) in short { try check(pair, kind, kind.short, life: "between samples") }
        // Each aborted end with no row is counted against its peer, and only those.
        let counted = try query(
            db, "SELECT COALESCE(sum(u.ends), 0) FROM unnamed_ends u JOIN addresses a ON a.id = u.remote_address WHERE a.text = ?",
            [.text(server)])
        #expect(counted == [["\(unnamed)"]], "\(unnamed) unnamed, \(couldBeUnnamed) aborted ends had rows")
        #expect(try query(db, "SELECT count(*) FROM connections WHERE end_reason = 5") == [["0"]])
        // Most of the short-lived lived between two samples.
        let between = try query(db, "SELECT count(*) FROM connections_v WHERE between_samples = 1")
        #expect((Int(between.first?.first ?? "") ?? 0) >= Self.kinds.count, "\(between)")
        // `resets` says who sent them, as the rows do.
        let resets = try run(["query", "resets", "--db", db, "--format", "csv"])
        #expect(resets.status == 0, "\(resets.stderr)")
        let peer = resets.stdout.split(separator: "\r\n").dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false) }
            .first { $0.first.map(String.init) == server }
        let recorded = try query(
            db,
            "SELECT count(*), sum(reset_by = 'this_host'), sum(reset_by = 'peer') FROM connections_v WHERE end_reason = 'reset' AND remote_address = ?",
            [.text(server)])
        #expect(
            peer.map { [String($0[1]), String($0[6]), String($0[7])] } == recorded.first, "\(resets.stdout) against \(recorded)")
    }
}

/// Sends `count` bytes.
func sendAll(_ fd: Int32, count: Int) throws {
    let bytes = [UInt8](repeating: 7, count: count)
    var sent = 0
    while sent < count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, count - sent, Int32(MSG_NOSIGNAL)) }
        guard n > 0 else { throw SocketError("send") }
        sent += n
    }
}

/// Receives exactly `count` bytes.
func receive(_ fd: Int32, count: Int) throws {
    var buffer = [UInt8](repeating: 0, count: count)
    var got = 0
    while got < count {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
        guard n > 0 else { throw SocketError("recv") }
        got += n
    }
}

/// Reads until the stream ends: the peer's FIN, or its RST (ECONNRESET).
func readToEnd(_ fd: Int32) {
    var buffer = [UInt8](repeating: 0, count: 4096)
    while recv(fd, &buffer, buffer.count, 0) > 0 {}
}

extension RealEndingTests {
    /// What needs the network to misbehave: lost segments retransmitted before a graceful close,
    /// a simultaneous close (both FINs held back until both ends sent theirs), a connect refused
    /// while a sample saw it in SYN_SENT and one refused between samples, and a connect that
    /// timed out. The namespace's firewall drops packets as they arrive (nftables).
    @Test(arguments: [AF_INET, AF_INET6])
    func lossSimultaneousCloseAndFailedConnects(family: Int32) throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let host = try TestHost("network")
        try host.sysctl("net.ipv4.tcp_syn_retries", "1")
        let db = directory.appendingPathComponent("network.db").path
        let collector = try TestCollector(on: host, db: db)
        let listener = try host.inside { family == AF_INET ? try listenIPv4() : try listenIPv6() }
        defer { close(listener.fd) }
        let server = family == AF_INET ? "127.0.0.1" : "::1"

        // 15% of the segments either way lost: 300 kB answers, then the client closes first.
        try host.firewall(
            """
            table inet loss {
                chain in {
                    type filter hook input priority 0;
                    tcp dport \(listener.port) numgen random mod 100 < 15 drop
                    tcp sport \(listener.port) numgen random mod 100 < 15 drop
                }
            }
            """)
        let lossy = (0..<4).map { _ in Pair(family: family) }
        for pair in lossy {
            try host.inside {
                try pair.open(to: listener)
                try sendAll(pair.server, count: 300_000)
                try receive(pair.client, count: 300_000)
                close(pair.client)
                readToEnd(pair.server)
                close(pair.server)
            }
        }
        try collector.samplesPass()

        // Both ends close while neither hears the other; then their FINs cross.
        let simultaneous = Pair(family: family)
        try host.inside { try simultaneous.open(to: listener) }
        try host.firewall(dropping("tcp sport \(simultaneous.clientPort)", "tcp dport \(simultaneous.clientPort)"))
        close(simultaneous.client)
        close(simultaneous.server)
        try collector.samplesPass()
        try host.firewall("")

        // A closed port: refused while a sample sees the connect in SYN_SENT (its first SYN lost),
        // refused between samples without blocking (the socket keeps its ports), and refused to a
        // blocking connect() (disconnected before it is freed: no row, counted against its peer).
        let closedPort = try host.inside { () -> UInt16 in
            let spare = family == AF_INET ? try listenIPv4() : try listenIPv6()
            close(spare.fd)
            return spare.port
        }
        try host.firewall(dropping("tcp dport \(closedPort)"))
        let seenRefused = try host.inside { try connectWithoutBlocking(family: family, to: closedPort) }
        try collector.samplesPass()
        try host.firewall("")
        #expect(waitForConnect(seenRefused.fd, seconds: 10) == ECONNREFUSED)
        close(seenRefused.fd)
        let quickRefused = try host.inside { try connectWithoutBlocking(family: family, to: closedPort) }
        #expect(waitForConnect(quickRefused.fd, seconds: 5) == ECONNREFUSED)
        close(quickRefused.fd)
        try host.inside {
            let refused = family == AF_INET ? try? connectIPv4(to: closedPort) : try? connectIPv6(to: closedPort)
            #expect(refused == nil, "a connect to a closed port succeeded")
        }

        // No answer at all: one SYN retransmitted (tcp_syn_retries 1), then the kernel gives up.
        try host.firewall(dropping("tcp dport \(closedPort)"))
        let timedOut = try host.inside { try connectWithoutBlocking(family: family, to: closedPort) }
        #expect(waitForConnect(timedOut.fd, seconds: 15) == ETIMEDOUT)
        close(timedOut.fd)
        let outcome = try collector.stop()
        #expect(outcome.status == 0, "\(outcome.stderr)")

        func ending(local: UInt16, remote: UInt16) throws -> [[String]] {
            try query(
                db,
                """
                SELECT COALESCE(end_reason, state), COALESCE(reset_by, 'NULL'), COALESCE(end_basis, 'NULL'), COALESCE(bytes_retrans, 0)
                FROM connections_v WHERE local_port = ? AND remote_port = ?
                """, [.integer(Int64(local)), .integer(Int64(remote))])
        }
        var retransmitted = 0
        for pair in lossy {
            let client = try ending(local: pair.clientPort, remote: listener.port)
            let end = try ending(local: listener.port, remote: pair.clientPort)
            #expect(client.count == 1 && ["TIME_WAIT", "active_close"].contains(client.first?[0] ?? ""), "lossy client: \(client)")
            #expect(end.count == 1 && ["passive_close", "vanished"].contains(end.first?[0] ?? ""), "lossy server: \(end)")
            retransmitted += Int(end.first?[3] ?? "") ?? 0
        }
        #expect(retransmitted > 0, "nothing was retransmitted: the loss rule did not bite")
        for (local, remote) in [(simultaneous.clientPort, listener.port), (listener.port, simultaneous.clientPort)] {
            let rows = try ending(local: local, remote: remote)
            #expect(rows.count == 1 && ["TIME_WAIT", "active_close"].contains(rows.first?[0] ?? ""), "simultaneous close: \(rows)")
        }
        #expect(try ending(local: seenRefused.port, remote: closedPort).map { Array($0[0...2]) } == [["failed_connect", "NULL", "states"]])
        let quick = try ending(local: quickRefused.port, remote: closedPort)
        #expect(quick.count == 1 && quick.first?[0] == "failed_connect", "refused between samples: \(quick)")
        #expect(try ending(local: timedOut.port, remote: closedPort).map { Array($0[0...2]) } == [["failed_connect", "NULL", "states"]])
        let unnamed = try query(
            db, "SELECT sum(u.ends) FROM unnamed_ends u JOIN addresses a ON a.id = u.remote_address WHERE a.text = ?", [.text(server)])
        #expect(unnamed == [["1"]])
        // Nothing here was reset, and nothing is left unexplained.
        #expect(try query(db, "SELECT count(*) FROM connections WHERE end_reason IN (3, 5)") == [["0"]])
    }
}

/// nftables rules that drop, as they arrive, the packets each of `matches` selects.
func dropping(_ matches: String...) -> String {
    "table inet test {\n    chain in {\n        type filter hook input priority 0;\n"
        + matches.map { "        \($0) drop\n" }.joined() + "    }\n}"
}

/// Starts a connect that does not wait for its answer; the socket and its local port.
func connectWithoutBlocking(family: Int32, to port: UInt16) throws -> (fd: Int32, port: UInt16) {
    let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
    guard fd >= 0 else { throw SocketError("socket") }
    let started =
        family == AF_INET
        ? withSocketAddress(sockaddr_in("127.0.0.1", port: port)) { connect(fd, $0, $1) }
        : withSocketAddress(sockaddr_in6(loopbackPort: port)) { connect(fd, $0, $1) }
    guard started == 0 || errno == EINPROGRESS else {
        close(fd)
        throw SocketError("connect")
    }
    return (fd, localPort(fd))
}

/// Waits up to `seconds` for a connect to finish; its error (0 when it connected), or -1 if it did not finish.
func waitForConnect(_ fd: Int32, seconds: Int32) -> Int32 {
    var watched = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
    guard poll(&watched, 1, seconds * 1000) == 1 else { return -1 }
    var error: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
    return error
}
