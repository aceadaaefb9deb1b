import ConnLog
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Resets and graceful closes in the same sampling windows, as on any busy host: 2,000
/// connections of a few milliseconds from 50 client addresses, those from odd addresses aborted by
/// their client (SO_LINGER 0: the server end receives a RST), those from even ones closed
/// gracefully (the client's FIN first, then the server's). Each connection's ending is its own,
/// whatever else closed in its window.
@Suite("Resets beside graceful closes")
struct MixedWorkloadTests {
    let directory: URL

    init() throws { directory = try temporaryDirectory() }

    /// The workload: a listener at `serverAddress` in `serverHost`, clients in `clientHost` from
    /// each of `clients`, `perClient` connections each, interleaved. Returns the listener's port.
    static func workload(
        serverHost: TestHost, serverAddress: String, clientHost: TestHost, clients: [String], perClient: Int
    ) throws -> UInt16 {
        let listener = try serverHost.inside { try listenIPv4(serverAddress) }
        defer { close(listener.fd) }
        let total = clients.count * perClient
        let served = DispatchSemaphore(value: 0)
        let fd = listener.fd
        // The server answers each request, then reads until the client's FIN or RST, and closes.
        Thread.detachNewThread {
            defer { served.signal() }
            for _ in 0..<total {
                let server = accept(fd, nil, nil)
                guard server >= 0 else { return }
                try? receive(server, count: 50)
                try? sendAll(server, count: 50)
                readToEnd(server)
                close(server)
            }
        }
        try clientHost.inside {
            for round in 0..<perClient {
                for (index, address) in clients.enumerated() {
                    let client = try connectIPv4(to: listener.port, address: serverAddress, from: address)
                    try sendAll(client, count: 50)
                    try receive(client, count: 50)
                    if Self.aborts(index) { setLingerZero(client) }
                    close(client)
                    _ = round
                }
            }
        }
        guard served.wait(timeout: .now() + 60) == .success else { throw SocketError("the server did not serve them all") }
        return listener.port
    }

    /// Clients at odd positions (odd last address bytes) abort.
    static func aborts(_ index: Int) -> Bool { index % 2 == 1 }

    /// `query resets` for the database, by peer: resets, ambiguous, reset_by_this_host, reset_by_peer.
    static func resetsByPeer(_ db: String, port: UInt16) throws -> [String: [String]] {
        let answer = try run(["query", "resets", "--db", db, "--port", "\(port)", "--format", "csv"])
        #expect(answer.status == 0, "\(answer.stderr)")
        var peers: [String: [String]] = [:]
        for line in answer.stdout.split(separator: "\r\n").dropFirst() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            peers[fields[0]] = [fields[1], fields[3], fields[6], fields[7]]
        }
        return peers
    }

    /// Every server end right: a reset by the peer for the aborting clients, a graceful close for
    /// the others; and `resets` lists exactly the aborting peers, 40 each, none ambiguous.
    static func expectServerEndsRight(_ db: String, port: UInt16, clients: [String], perClient: Int) throws {
        let ends = try query(
            db,
            """
            SELECT remote_address, end_reason, COALESCE(reset_by, 'NULL'), count(*) FROM connections_v
            WHERE local_port = ? AND direction = 'inbound' GROUP BY 1, 2, 3
            """, [.integer(Int64(port))])
        var wrong: [[String]] = []
        var right = 0
        for row in ends {
            guard let index = clients.firstIndex(of: row[0]) else {
                wrong.append(row)
                continue
            }
            let ok = aborts(index) ? row[1] == "reset" && row[2] == "peer" : ["vanished", "passive_close"].contains(row[1])
            if ok { right += Int(row[3]) ?? 0 } else { wrong.append(row) }
        }
        #expect(wrong.isEmpty, "server ends recorded wrong: \(wrong)")
        #expect(right == clients.count * perClient)
        let peers = try resetsByPeer(db, port: port)
        for (index, client) in clients.enumerated() {
            let expected = aborts(index) ? ["\(perClient)", "0", "0", "\(perClient)"] : ["0", "0", "0", "0"]
            #expect(peers[client] == expected, "\(client): \(peers[client] ?? [])")
        }
    }

    /// The client ends this host aborted: each recorded as this host's reset, or (lived between two
    /// samples, its ports cleared by the kernel) counted against the server's address.
    static func expectAbortedClientEndsRight(_ db: String, port: UInt16, server: String, aborted: Int) throws {
        let rows = try query(
            db,
            """
            SELECT count(*), COALESCE(sum(end_reason = 'reset' AND reset_by = 'this_host'), 0),
                   COALESCE(sum(end_reason = 'ambiguous'), 0)
            FROM connections_v WHERE remote_port = ? AND direction = 'outbound' AND end_reason IN ('reset', 'ambiguous')
            """, [.integer(Int64(port))])
        let unnamed = try query(
            db, "SELECT COALESCE(sum(u.ends), 0) FROM unnamed_ends u JOIN addresses a ON a.id = u.remote_address WHERE a.text = ?",
            [.text(server)])
        let recorded = Int(rows.first?[0] ?? "") ?? -1
        #expect(rows.first?[1] == rows.first?[0] && rows.first?[2] == "0", "\(rows)")
        #expect(recorded + (Int(unnamed.first?.first ?? "") ?? 0) == aborted, "\(recorded) rows, unnamed \(unnamed)")
        // The graceful ones closed first: TIME_WAIT, never a reset.
        let graceful = try query(
            db,
            """
            SELECT count(*) FROM connections_v WHERE remote_port = ? AND direction = 'outbound'
            AND COALESCE(end_reason, state) NOT IN ('TIME_WAIT', 'active_close', 'reset')
            """, [.integer(Int64(port))])
        #expect(graceful == [["0"]])
    }

    static let loopbackClients = (0..<50).map { "127.0.1.\($0 + 1)" }

    /// One host, the default source, one sample a second.
    @Test func onOneHostEveryServerEndIsRight() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let host = try TestHost("mixed")
        let db = directory.appendingPathComponent("mixed.db").path
        let collector = try TestCollector(on: host, db: db, interval: "1s", extra: [])
        let port = try Self.workload(
            serverHost: host, serverAddress: "127.0.0.1", clientHost: host, clients: Self.loopbackClients, perClient: 40)
        let outcome = try collector.stop()
        #expect(outcome.status == 0, "\(outcome.stderr)")
        #expect(try query(db, "SELECT DISTINCT source FROM windows") == [["netlink"]])
        try Self.expectServerEndsRight(db, port: port, clients: Self.loopbackClients, perClient: 40)
        try Self.expectAbortedClientEndsRight(db, port: port, server: "127.0.0.1", aborted: 1000)
        let peers = try Self.resetsByPeer(db, port: port)
        #expect(peers["127.0.0.1"]?[1] == "0", "the client ends: \(peers["127.0.0.1"] ?? [])")
    }

    /// Two hosts joined by a link, a collector on each: each sees only its own ends, so each reset
    /// is counted once, where it happened.
    @Test func onTwoHostsBothRecordsAreRight() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let serverHost = try TestHost("server")
        let clientHost = try TestHost("client")
        let clients = (0..<50).map { "10.213.7.\($0 + 10)" }
        try clientHost.link(to: serverHost, address: clients[0], otherAddress: "10.213.7.1", aliases: Array(clients.dropFirst()))
        let serverDB = directory.appendingPathComponent("server.db").path
        let clientDB = directory.appendingPathComponent("client.db").path
        let serverCollector = try TestCollector(on: serverHost, db: serverDB, interval: "1s", extra: [])
        let clientCollector = try TestCollector(on: clientHost, db: clientDB, interval: "1s", extra: [])
        let port = try Self.workload(
            serverHost: serverHost, serverAddress: "10.213.7.1", clientHost: clientHost, clients: clients, perClient: 40)
        for collector in [serverCollector, clientCollector] {
            let outcome = try collector.stop()
            #expect(outcome.status == 0, "\(outcome.stderr)")
        }
        try Self.expectServerEndsRight(serverDB, port: port, clients: clients, perClient: 40)
        #expect(try query(serverDB, "SELECT count(*) FROM connections WHERE direction = 2") == [["0"]])
        try Self.expectAbortedClientEndsRight(clientDB, port: port, server: "10.213.7.1", aborted: 1000)
        #expect(try query(clientDB, "SELECT count(*) FROM connections WHERE direction = 1") == [["0"]])
    }

    /// The proc source has no report of any connection, only the reset counter, and sees only
    /// what lives across a sample: 100 connections held open, then closed in one window (half
    /// aborted by their client, half gracefully) among 400 more aborted between two samples. It
    /// may say less, never that a graceful close was a reset; alone in their window, resets are
    /// proven.
    @Test func onTheProcSourceNoGracefulCloseIsAReset() throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let host = try TestHost("proc")
        let db = directory.appendingPathComponent("proc.db").path
        let collector = try TestCollector(on: host, db: db, interval: "1s", extra: ["--source", "proc"])
        let listener = try host.inside { try listenIPv4() }
        defer { close(listener.fd) }
        let clients = Self.loopbackClients
        /// Connections from each of `indices`' client addresses, held open.
        func hold(_ indices: [Int]) throws -> [(client: Int32, server: Int32, index: Int)] {
            try host.inside {
                try indices.map { index in
                    let client = try connectIPv4(to: listener.port, from: clients[index])
                    return (client, try acceptOne(listener.fd), index)
                }
            }
        }
        @Sendable func end(_ pair: (client: Int32, server: Int32, index: Int)) {
            if Self.aborts(pair.index) { setLingerZero(pair.client) }
            close(pair.client)
            readToEnd(pair.server)
            close(pair.server)
        }
        let held = try hold((0..<100).map { $0 % clients.count })
        try collector.samplesPass()
        try host.inside {
            for (n, pair) in held.enumerated() {
                end(pair)
                for _ in 0..<(n % 2 == 0 ? 8 : 0) {
                    let quick = try connectIPv4(to: listener.port, from: clients[1])
                    let server = try acceptOne(listener.fd)
                    end((quick, server, 1))
                }
            }
        }
        try collector.samplesPass()
        // Alone in their window, ten aborts: the counter proves each.
        let aloneSince = Int64(Date().timeIntervalSince1970 * 1000) - 1
        let alone = try hold(Array(repeating: 1, count: 10))
        let alonePorts = alone.map { "\(localPort($0.client))" }.joined(separator: ",")
        try collector.samplesPass()
        try host.inside { for pair in alone { end(pair) } }
        let outcome = try collector.stop()
        #expect(outcome.status == 0, "\(outcome.stderr)")
        #expect(try query(db, "SELECT DISTINCT source FROM windows") == [["proc"]])

        let graceful = clients.enumerated().filter { !Self.aborts($0.offset) }.map { "'\($0.element)'" }.joined(separator: ",")
        let servers = try query(
            db,
            """
            SELECT end_reason, count(*) FROM connections_v
            WHERE local_port = ? AND remote_address IN (\(graceful)) AND preexisting = 0 GROUP BY 1 ORDER BY 1
            """, [.integer(Int64(listener.port))])
        #expect(!servers.contains { $0[0] == "reset" }, "graceful closes recorded as resets: \(servers)")
        // Not an empty answer: the graceful server ends were seen, and closed.
        #expect(servers.reduce(0) { $0 + (Int($1[1]) ?? 0) } == 50, "\(servers)")
        let clientsReset = try query(
            db, "SELECT count(*) FROM connections_v WHERE remote_port = ? AND local_address IN (\(graceful)) AND end_reason = 'reset'",
            [.integer(Int64(listener.port))])
        #expect(clientsReset == [["0"]])
        let proven = try query(
            db,
            """
            SELECT r.name, b.name, count(*) FROM connections c
            JOIN end_reasons r ON r.code = c.end_reason JOIN end_bases b ON b.code = c.end_basis
            WHERE c.first_seen >= ?2
              AND ((c.local_port = ?1 AND c.remote_port IN (\(alonePorts))) OR (c.remote_port = ?1 AND c.local_port IN (\(alonePorts))))
            GROUP BY 1, 2
            """, [.integer(Int64(listener.port)), .integer(aloneSince)])
        #expect(proven == [["reset", "counters", "20"]], "the ten aborts alone: \(proven)")
    }
}
