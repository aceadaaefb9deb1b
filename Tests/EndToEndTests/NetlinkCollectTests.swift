import ConnLog
import Dispatch
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

extension CollectTests {
    /// The sampling loop on the netlink source against real loopback churn: connections that
    /// live a few milliseconds between two samples are recorded from the kernel's destroy
    /// notices, each once, with its close time and final bytes; the proc source misses them.
    /// Nested in CollectTests, whose tests read the namespace's reset counter: the two run one
    /// test at a time together, so this churn never lands in their windows.
    @Suite("on the netlink source")
    struct Netlink {
        let directory: URL

        init() throws { directory = try temporaryDirectory() }

        /// Runs `connlog collect` in the loop until `workload` is done and two more samples passed.
        /// - Parameter paused: stop the collector (SIGSTOP) during the workload, so that nothing
        ///   reads the kernel's notices meanwhile.
        func collecting(
            _ arguments: [String], db: String, interval: Double, paused: Bool = false, _ workload: () throws -> Void
        ) throws -> Outcome {
            let collector = try start(["collect", "--db", db, "--interval", "\(Int(interval * 1000))ms"] + arguments)
            // Only churn once the first sample began observation: notices before it are not recorded.
            let started = waitUntil(seconds: 10) {
                ((try? query(db, "SELECT count(*) FROM samples"))?.first?.first).flatMap { Int($0) } ?? 0 >= 1
            }
            #expect(started, "the collector never recorded a sample")
            if paused { collector.signal(SIGSTOP) }
            try workload()
            if paused { collector.signal(SIGCONT) }
            usleep(UInt32(interval * 2.5 * 1_000_000))
            collector.signal(SIGTERM)
            let outcome = collector.finish()
            #expect(outcome.status == 0, "collect failed: \(outcome.stderr)")
            return outcome
        }

        @Test func everyShortLivedConnectionIsRecordedOnceWithItsCloseAndBytes() throws {
            defer { try? FileManager.default.removeItem(at: directory) }
            let netlinkDB = directory.appendingPathComponent("netlink.db").path
            var churn: ShortLived?
            _ = try collecting(["--source", "netlink"], db: netlinkDB, interval: 1) {
                churn = try ShortLived.run(count: 2000, threads: 4, lifetimeMicroseconds: 5000)
            }
            let workload = try #require(churn)
            #expect(workload.clientPorts.count == 2000)
            // A client port comes back now and then (the server's TIME_WAIT on that pair gives way to
            // the new connection's SYN): connections, not ports, are counted.

            // The clients: each recorded once, closed, dated by the kernel, with its final bytes
            // (the request and its SYN and FIN acknowledged; the answer and the server's FIN received).
            let clients = try query(
                netlinkDB,
                """
                SELECT c.local_port, c.closed_at IS NOT NULL, x.destroyed_at BETWEEN c.last_seen AND c.closed_at,
                       x.bytes_acked, x.bytes_received, x.between_samples
                FROM connections c LEFT JOIN connection_details x ON x.connection_id = c.id
                WHERE c.remote_port = ? AND c.direction = 2 ORDER BY c.local_port
                """, [.integer(Int64(workload.port))])
            #expect(clients.compactMap { UInt16($0[0]) } == workload.clientPorts.sorted())
            let expected = ["1", "1", "\(ShortLived.request + 2)", "\(ShortLived.answer + 1)"]
            let wrong = clients.filter { Array($0[1...4]) != expected }
            #expect(wrong.isEmpty, "\(wrong.count) clients recorded otherwise, e.g. \(wrong.prefix(3))")
            let betweenSamples = clients.filter { $0[5] == "1" }.count
            // A 5 ms life is seen by a sample once in 200 or so: nearly all are known from their notice alone.
            #expect(betweenSamples > 1800, "\(betweenSamples) of 2000 between samples")
            // They left ESTABLISHED straight to gone, each weighed against the reset counter like any other.
            let endings = try query(
                netlinkDB,
                "SELECT DISTINCT r.name FROM connections c JOIN end_reasons r ON r.code = c.end_reason WHERE c.remote_port = ? AND c.direction = 2",
                [.integer(Int64(workload.port))]
            ).flatMap { $0 }
            #expect(Set(endings).isSubset(of: ["vanished", "passive_close", "reset", "ambiguous"]), "\(endings)")

            // The servers closed first: one connection each, seen waiting in TIME_WAIT (or seen
            // closing and then gone), carrying the final traffic of the socket TIME_WAIT replaced
            // (which the kernel may free before the client's FIN, once its own FIN is acknowledged).
            // A client port that comes back before the next sample ends the server's TIME_WAIT on it
            // (the new SYN takes it over), so no sample may see it: that server end is known from its
            // notice alone, between samples.
            let servers = try query(
                netlinkDB,
                """
                SELECT c.remote_port, c.state = 6 OR c.end_reason = 1, x.between_samples,
                       x.bytes_received BETWEEN \(ShortLived.request) AND \(ShortLived.request + 1)
                FROM connections c LEFT JOIN connection_details x ON x.connection_id = c.id
                WHERE c.local_port = ? AND c.direction = 1
                """, [.integer(Int64(workload.port))])
            #expect(servers.count == 2000)
            #expect(Set(servers.map { $0[0] }).count == Set(workload.clientPorts).count)
            #expect(servers.allSatisfy { $0[3] == "1" }, "\(servers.filter { $0[3] != "1" }.prefix(3))")
            let reused = Set(Dictionary(grouping: workload.clientPorts.map { "\($0)" }) { $0 }.filter { $1.count > 1 }.keys)
            let unseen = servers.filter { $0[1] != "1" }
            #expect(
                unseen.allSatisfy { $0[2] == "1" && reused.contains($0[0]) },
                "server ends not seen closing, not explained by a port that came back: \(unseen.prefix(3))")
            #expect(unseen.count <= workload.clientPorts.count - Set(workload.clientPorts).count)
            let serversBetweenSamples = servers.filter { $0[2] == "1" }.count
            // `traffic` adds them up: every byte of both ends, and the short-lived counted.
            let traffic = try run(["query", "traffic", "--db", netlinkDB, "--port", "\(workload.port)", "--format", "csv"])
            #expect(traffic.status == 0, "\(traffic.stderr)")
            let acked = 2000 * (ShortLived.request + 2) + 2000 * (ShortLived.answer + 1)
            let received = 2000 * (ShortLived.answer + 1) + 2000 * ShortLived.request
            let row = traffic.stdout.split(separator: "\r\n").dropFirst().first?.split(separator: ",").map(String.init) ?? []
            #expect(row.prefix(4) == ["127.0.0.1", "4000", "\(betweenSamples + serversBetweenSamples)", "\(acked)"], "\(traffic.stdout)")
            #expect((received...received + 2000).contains(Int(row.count > 4 ? row[4] : "") ?? 0), "\(traffic.stdout)")
            // `peers` has the same bytes, and each client's close in the timeline what it carried.
            let peers = try run(["query", "peers", "--db", netlinkDB, "--port", "\(workload.port)", "--format", "csv"])
            let peer = peers.stdout.split(separator: "\r\n").dropFirst().first?.split(separator: ",").map(String.init) ?? []
            #expect(peers.status == 0, "\(peers.stderr)")
            #expect(
                peer.count > 6 && [peer[0], peer[1], peer[5], peer[6]] == ["127.0.0.1", "4000", "\(acked)", row[4]], "\(peers.stdout)")
            let timeline = try run([
                "query", "timeline", "--db", netlinkDB, "--port", "\(workload.port)", "--limit", "100000", "--format", "csv",
            ])
            #expect(timeline.status == 0, "\(timeline.stderr)")
            let server = "127.0.0.1:\(workload.port)"
            let carried = ["\(ShortLived.request + 2)", "\(ShortLived.answer + 1)"]
            let clientCloses: [[String]] = timeline.stdout.split(separator: "\r\n").compactMap { line in
                let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                return fields.count == 13 && fields[1] == "close" && fields[5] == server ? fields : nil
            }
            #expect(clientCloses.count == 2000)
            // What it carried, and when the kernel freed it: before the sample that recorded the close.
            #expect(
                clientCloses.allSatisfy { Array($0[8...9]) == carried && !$0[10].isEmpty && $0[10] <= $0[0] }, "\(clientCloses.prefix(2))")
            // Every connection with traffic has its congestion window.
            #expect(
                try query(netlinkDB, "SELECT count(*) FROM connection_details WHERE bytes_acked IS NOT NULL AND COALESCE(cwnd, 0) = 0") == [
                    ["0"]
                ])
            // The samples took every notice, and none was dropped.
            let notices = try query(netlinkDB, "SELECT sum(destroys) >= 4000, sum(destroys_lost) FROM samples")
            #expect(notices == [["1", "0"]])
            #expect(try query(netlinkDB, "SELECT DISTINCT source FROM windows") == [["netlink"]])

            // The proc source, the same churn: it sees almost none of the clients.
            let procDB = directory.appendingPathComponent("proc.db").path
            var procChurn: ShortLived?
            _ = try collecting(["--source", "proc"], db: procDB, interval: 1) {
                procChurn = try ShortLived.run(count: 2000, threads: 4, lifetimeMicroseconds: 5000)
            }
            let procPort = try #require(procChurn).port
            let seen = try query(
                procDB, "SELECT count(*) FROM connections WHERE remote_port = ? AND direction = 2", [.integer(Int64(procPort))])
            #expect((Int(seen.first?.first ?? "") ?? 2000) < 200, "the proc source saw \(seen) of 2000 clients")
            #expect(try query(procDB, "SELECT DISTINCT source FROM windows") == [["proc"]])
            #expect(try query(procDB, "SELECT count(*) FROM connection_details") == [["0"]])
        }

        /// The destroy notices date closes and give traffic, but how a connection ended still comes
        /// from the states seen and the reset counter.
        @Test func aResetAndAGracefulCloseAreStillToldApart() throws {
            defer { try? FileManager.default.removeItem(at: directory) }
            let db = directory.appendingPathComponent("endings.db").path
            let listener = try listenIPv4()
            defer { close(listener.fd) }
            var resetPort: UInt16 = 0
            var gracefulPort: UInt16 = 0
            var quickPort: UInt16 = 0
            // Each step in a window of its own: two samples pass between them.
            func samplesPass() {
                func count() -> Int { ((try? query(db, "SELECT count(*) FROM samples"))?.first?.first).flatMap { Int($0) } ?? 0 }
                let now = count()
                #expect(waitUntil(seconds: 10) { count() >= now + 2 })
            }
            _ = try collecting(["--source", "netlink"], db: db, interval: 0.2) {
                let reset = try connectIPv4(to: listener.port)
                let resetServer = try acceptOne(listener.fd)
                let graceful = try connectIPv4(to: listener.port)
                let gracefulServer = try acceptOne(listener.fd)
                resetPort = localPort(reset)
                gracefulPort = localPort(graceful)
                #expect(send(graceful, "hello", 5, 0) == 5)
                samplesPass()  // both seen ESTABLISHED
                setLingerZero(reset)
                close(reset)
                close(resetServer)
                samplesPass()
                close(graceful)  // FIN: the client closes first and waits in TIME_WAIT
                var byte: UInt8 = 0
                while recv(gracefulServer, &byte, 1, 0) > 0 {}
                close(gracefulServer)
                samplesPass()
                // Opened and reset between two samples, by the server: the client is told by a RST.
                let quick = try connectIPv4(to: listener.port)
                let quickServer = try acceptOne(listener.fd)
                quickPort = localPort(quick)
                setLingerZero(quickServer)
                close(quickServer)
                #expect(recv(quick, &byte, 1, 0) < 0 && errno == ECONNRESET)
                close(quick)
                // A connect refused between two samples: disconnected before it is freed, like the abort.
                let closed = try listenIPv4()
                close(closed.fd)
                #expect((try? connectIPv4(to: closed.port)) == nil, "a connect to a closed port succeeded")
            }
            func ends(_ port: UInt16) throws -> [[String]] {
                try query(
                    db,
                    """
                    SELECT direction, state, COALESCE(end_reason, 'open'), destroyed_at IS NOT NULL, between_samples
                    FROM connections_v WHERE (local_port = ?1 AND remote_port = ?2) OR (local_port = ?2 AND remote_port = ?1)
                    ORDER BY direction
                    """, [.integer(Int64(port)), .integer(Int64(listener.port))])
            }
            let resetEnds = try ends(resetPort)
            let quickEnds = try ends(quickPort)
            #expect(resetEnds == [["inbound", "ESTABLISHED", "reset", "1", "0"], ["outbound", "ESTABLISHED", "reset", "1", "0"]])
            // The server's end was aborted: the kernel cleared its ports and local address before
            // freeing it, so its notice names no connection, and none is made up for it. It is
            // counted against its peer, with the refused connect, and the questions about endings
            // and `status` say so.
            #expect(quickEnds == [["outbound", "ESTABLISHED", "reset", "1", "1"]])
            let unnamed = try query(
                db, "SELECT sum(u.ends) FROM unnamed_ends u JOIN addresses a ON a.id = u.remote_address WHERE a.text = '127.0.0.1'")
            #expect(unnamed == [["2"]])
            let failed = try run(["query", "failed-connects", "--db", db])
            #expect(failed.stderr.contains("returned an error (127.0.0.1 2)"), "\(failed.stderr)")
            let status = try run(["status", "--db", db])
            #expect(status.stdout.contains("sockets aborted or failed to connect between samples without their ports"), "\(status.stdout)")
            // The client that closed first waits in TIME_WAIT, its final traffic from the notice.
            let client = try query(
                db,
                "SELECT state, end_reason, bytes_acked FROM connections_v WHERE local_port = ? AND remote_port = ?",
                [.integer(Int64(gracefulPort)), .integer(Int64(listener.port))])
            #expect(client == [["TIME_WAIT", "NULL", "7"]])
        }

        @Test func droppedNoticesAreRecordedAndReported() throws {
            defer { try? FileManager.default.removeItem(at: directory) }
            let db = directory.appendingPathComponent("dropped.db").path
            // The smallest buffer the kernel grants holds a handful of notices: a burst while the
            // collector is stopped overflows it.
            let outcome = try collecting(["--source", "netlink", "--destroy-buffer", "1"], db: db, interval: 2, paused: true) {
                _ = try ShortLived.run(count: 300, threads: 4, lifetimeMicroseconds: 0)
            }
            let lost = try query(db, "SELECT sum(destroys_lost) > 0, count(*) FILTER (WHERE destroys_lost > 0) FROM samples")
            #expect(lost.first?.first == "1", "no sample recorded dropped notices: \(lost)")
            #expect(outcome.stderr.contains("dropped socket destroy notifications"), "\(outcome.stderr)")
            let status = try run(["status", "--db", db])
            #expect(status.status == 0)
            #expect(status.stdout.contains("destroy notices dropped"), "\(status.stdout)")
            // Questions say so too: `gaps` lists those samples, and every question notes them.
            let gaps = try run(["query", "gaps", "--db", db, "--format", "csv"])
            #expect(gaps.stdout.contains("destroy notices dropped"), "\(gaps.stdout)")
            let peers = try run(["query", "peers", "--db", db])
            #expect(peers.stderr.contains("the kernel dropped destroy notices"), "\(peers.stderr)")
        }
    }
}

/// Short-lived loopback connections: each client sends a request, waits `lifetime`, reads the
/// answer and closes; the server answers and closes first (its end waits in TIME_WAIT).
struct ShortLived {
    static let request = 100
    static let answer = 200
    var port: UInt16
    /// The clients' ports, one per connection.
    var clientPorts: [UInt16]

    static func run(count: Int, threads: Int, lifetimeMicroseconds: UInt32) throws -> ShortLived {
        // Its questions are asked by this port: nothing else may use it.
        let listener = try quietListenerIPv4()
        defer { close(listener.fd) }
        let fd = listener.fd
        let served = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: ShortLived.request)
            let answer = [UInt8](repeating: 2, count: ShortLived.answer)
            for _ in 0..<count {
                let server = accept(fd, nil, nil)
                guard server >= 0 else { break }
                var received = 0
                while received < ShortLived.request {
                    let got = recv(server, &buffer, ShortLived.request - received, 0)
                    if got <= 0 { break }
                    received += got
                }
                _ = send(server, answer, answer.count, 0)
                close(server)
            }
            served.signal()
        }
        let ports = Mutex<[UInt16]>([])
        let failures = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            let share = count / threads + (thread < count % threads ? 1 : 0)
            var mine: [UInt16] = []
            let request = [UInt8](repeating: 1, count: ShortLived.request)
            var buffer = [UInt8](repeating: 0, count: 4096)
            for _ in 0..<share {
                guard let client = try? connectIPv4(to: listener.port) else {
                    failures.withLock { $0 += 1 }
                    continue
                }
                mine.append(localPort(client))
                _ = send(client, request, request.count, 0)
                if lifetimeMicroseconds > 0 { usleep(lifetimeMicroseconds) }
                while recv(client, &buffer, buffer.count, 0) > 0 {}
                close(client)
            }
            ports.withLock { $0 += mine }
        }
        served.wait()
        let failed = failures.withLock { $0 }
        guard failed == 0 else { throw SocketError("\(failed) connects failed") }
        return ShortLived(port: listener.port, clientPorts: ports.withLock { $0 })
    }
}
