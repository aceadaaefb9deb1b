import ConnLog
import Foundation
import Testing

extension CollectTests {
    /// The sock_diag netlink dump against the proc tables and `ss -tan`, on the same live loopback
    /// sockets: listeners, established pairs and a TIME_WAIT, IPv4 and IPv6. Nested in
    /// CollectTests: the pairs it closes would otherwise land in their reset windows.
    @Suite("The netlink socket dump")
    struct SockDiagTests {
        /// One socket as both sources must agree on it; the TIME_WAIT timer's ticks move between
        /// two reads, so only whether a timer runs is compared, and the cookie and traffic are the
        /// dump's own.
        struct Seen: Hashable, CustomStringConvertible {
            var sighting: Sighting
            init(_ sighting: Sighting) {
                var sighting = sighting
                sighting.timerTicks = 0
                sighting.cookie = 0
                sighting.traffic = nil
                self.sighting = sighting
            }
            var description: String {
                let s = sighting
                return
                    "\(s.key) \(s.state) rx \(s.rxQueue) tx \(s.txQueue) timer \(s.timer) retrans \(s.retransmits) uid \(s.uid) inode \(s.inode)"
            }
        }

        @Test func theDumpAgreesWithTheProcTablesAndSS() throws {
            let listener4 = try listenIPv4()
            let listener6 = try listenIPv6()
            var fds = [listener4.fd, listener6.fd]
            defer { for fd in fds { close(fd) } }
            for _ in 0..<3 {
                fds.append(try connectIPv4(to: listener4.port))
                fds.append(try acceptOne(listener4.fd))
            }
            for _ in 0..<2 {
                fds.append(try connectIPv6(to: listener6.port))
                fds.append(try acceptOne(listener6.fd))
            }
            // One pair closed by the client first: the client's end waits in TIME_WAIT.
            let client = try connectIPv4(to: listener4.port)
            let server = try acceptOne(listener4.fd)
            let timeWaitPort = localPort(client)
            close(client)
            close(server)
            let ports: Set<UInt16> = [listener4.port, listener6.port]
            // A listener may reuse the port of an older connection still in TIME_WAIT (SO_REUSEADDR):
            // of the TIME_WAIT sockets, only this test's own is ours.
            func ours(_ sightings: [Sighting]) -> Set<Seen> {
                Set(
                    sightings.filter {
                        (ports.contains($0.key.local.port) || ports.contains($0.key.remote.port))
                            && ($0.state != .timeWait || $0.key.local.port == timeWaitPort)
                    }.map(Seen.init))
            }
            let diag = try SockDiag()
            // Both reads of a moment when nothing is in flight: retried, since loopback handshakes
            // and the TIME_WAIT close finish asynchronously.
            var proc: Set<Seen> = []
            var dumped: Set<Seen> = []
            let settled = waitUntil(seconds: 5) {
                var sightings: [Sighting] = []
                try? diag.dump(into: &sightings)
                dumped = ours(sightings)
                proc = ours((try? ProcSource(attributeProcesses: false).sample().sightings) ?? [])
                return dumped == proc && dumped.contains { $0.sighting.state == .timeWait }
            }
            #expect(settled, "only netlink: \(dumped.subtracting(proc)); only proc: \(proc.subtracting(dumped))")
            // The 2 listeners, the 10 ends of the 5 established pairs, and the TIME_WAIT.
            #expect(dumped.count == 2 + 10 + 1, "\(dumped)")
            #expect(dumped.filter { $0.sighting.key.family == 6 }.count == 1 + 4)
            let timeWait = try #require(dumped.first { $0.sighting.state == .timeWait })
            #expect(timeWait.sighting.key.local.port == timeWaitPort && timeWait.sighting.inode == 0 && timeWait.sighting.timer == 3)
            #expect(dumped.filter { $0.sighting.state == .established }.allSatisfy { $0.sighting.inode != 0 })

            // ss -tan lists the same endpoints in the same states.
            let names: [String: TCPState] = ["ESTAB": .established, "LISTEN": .listen, "TIME-WAIT": .timeWait]
            let ss = try run(["-tanH"], executable: URL(fileURLWithPath: "/usr/bin/ss"))
            var listed: Set<String> = []
            for line in ss.stdout.split(separator: "\n") {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
                guard fields.count >= 5, let state = names[fields[0]] else { continue }
                let local = fields[3]
                let remote = fields[4]
                guard ports.contains(where: { local.hasSuffix(":\($0)") || remote.hasSuffix(":\($0)") }) else { continue }
                guard state != .timeWait || local.hasSuffix(":\(timeWaitPort)") else { continue }
                // ss writes a listener's peer as *; the dump has the unspecified address and port 0.
                listed.insert("\(local) \(remote.hasSuffix(":*") ? "*" : remote) \(state)")
            }
            let fromDump = Set(
                dumped.map { seen -> String in
                    let s = seen.sighting
                    return "\(s.key.local) \(s.state == .listen ? "*" : s.key.remote.description) \(s.state)"
                })
            #expect(fromDump == listed, "only netlink: \(fromDump.subtracting(listed)); only ss: \(listed.subtracting(fromDump))")
        }

        /// Each socket's cookie, and its traffic as tcp_info counts it: the client's acknowledged
        /// bytes include its SYN, the server's received bytes are what was sent.
        @Test func theDumpCarriesCookiesAndTraffic() throws {
            let listener = try listenIPv4()
            let client = try connectIPv4(to: listener.port)
            let server = try acceptOne(listener.fd)
            defer { for fd in [listener.fd, client, server] { close(fd) } }
            let payload = [UInt8](repeating: 7, count: 5000)
            #expect(payload.withUnsafeBytes { send(client, $0.baseAddress, $0.count, 0) } == 5000)
            var received = 0
            var buffer = [UInt8](repeating: 0, count: 8192)
            while received < 5000 {
                let count = buffer.withUnsafeMutableBytes { recv(server, $0.baseAddress, $0.count, 0) }
                guard count > 0 else { break }
                received += count
            }
            #expect(received == 5000)
            let clientKey = localPort(client)
            let diag = try SockDiag()
            var ends: [Sighting] = []
            // The client's count moves when the server's acknowledgement arrives.
            let counted = waitUntil(seconds: 5) {
                var sightings: [Sighting] = []
                try? diag.dump(into: &sightings)
                ends = sightings.filter { $0.state == .established && ($0.key.local.port == clientKey || $0.key.remote.port == clientKey) }
                return ends.first { $0.key.local.port == clientKey }?.traffic?.bytesAcked == 5001
            }
            #expect(counted, "\(ends)")
            let clientEnd = try #require(ends.first { $0.key.local.port == clientKey })
            let serverEnd = try #require(ends.first { $0.key.remote.port == clientKey })
            #expect(serverEnd.traffic?.bytesReceived == 5000)
            #expect(clientEnd.traffic?.bytesReceived == 0)
            #expect((clientEnd.traffic?.segmentsOut ?? 0) >= 2 && (serverEnd.traffic?.segmentsIn ?? 0) >= 2)
            #expect(clientEnd.cookie != 0 && serverEnd.cookie != 0 && clientEnd.cookie != serverEnd.cookie)
            // The congestion window, as `ss -ti` shows it (an idle connection's stays put).
            let info = try run(
                ["-tinH", "state", "established", "( sport = :\(clientKey) )"], executable: URL(fileURLWithPath: "/usr/bin/ss"))
            let cwnd = info.stdout.split(whereSeparator: \.isWhitespace).first { $0.hasPrefix("cwnd:") }.flatMap { UInt32($0.dropFirst(5)) }
            #expect(cwnd != nil && clientEnd.traffic?.congestionWindow == cwnd, "\(info.stdout)")
            // A second dump gives each socket the same cookie.
            var again: [Sighting] = []
            try diag.dump(into: &again)
            #expect(again.contains { $0.key == clientEnd.key && $0.cookie == clientEnd.cookie })
        }
    }
}
