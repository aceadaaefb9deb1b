import Foundation
import Testing

@testable import ConnLog

@Suite("Parsing /proc/net/tcp and tcp6")
struct SocketTableParserTests {
    @Test func ipv4LinesAsTheKernelPrintsThem() throws {
        let (sightings, malformed) = SocketTableParser.parse(try fixture("tcp_ipv4.txt"), family: 4)
        #expect(malformed == 0)
        #expect(sightings.count == 3)

        let listener = sightings[0]
        #expect(listener.key.local.description == "0.0.0.0:2024")
        #expect(listener.key.remote.description == "0.0.0.0:0")
        #expect(listener.state == .listen)
        #expect(listener.inode == 1073)

        // A TIME_WAIT line is shorter, has inode 0, timer 3 and the time left in USER_HZ ticks.
        let timeWait = sightings[1]
        #expect(timeWait.key.local.description == "127.0.0.1:45698")
        #expect(timeWait.key.remote.description == "127.0.0.1:43181")
        #expect(timeWait.state == .timeWait)
        #expect(timeWait.inode == 0)
        #expect(timeWait.timer == 3)
        #expect(timeWait.timerTicks == 0x175B)

        let established = sightings[2]
        #expect(established.key.local.description == "127.0.0.1:8080")
        #expect(established.key.remote.description == "127.0.0.2:50000")
        #expect(established.state == .established)
        #expect(established.txQueue == 42)
        #expect(established.rxQueue == 16)
        #expect(established.timer == 1)
        #expect(established.timerTicks == 20)
        #expect(established.retransmits == 3)
        #expect(established.uid == 1000)
        #expect(established.inode == 52341)
    }

    @Test func ipv6WordsAreByteSwappedOneByOne() throws {
        let (sightings, malformed) = SocketTableParser.parse(try fixture("tcp6_addresses.txt"), family: 6)
        #expect(malformed == 0)
        #expect(sightings.map(\.key.local.description) == ["[::]:43181", "[::1]:43181", "[2001:db8::1]:443"])
        #expect(sightings.map(\.key.remote.description) == ["[::]:0", "[::1]:44468", "[::ffff:10.0.0.1]:54321"])
        #expect(sightings.allSatisfy { $0.key.family == 6 })
        #expect(sightings[2].uid == 33)
        #expect(sightings[2].key.remote.address.bytes == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 0, 0, 1])
    }

    @Test func everyStateCodeHasItsName() throws {
        let (sightings, malformed) = SocketTableParser.parse(try fixture("tcp_every_state.txt"), family: 4)
        #expect(malformed == 0)
        #expect(
            sightings.map(\.state.name) == [
                "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
                "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV", "UNKNOWN",
            ])
        #expect(sightings[12].state.rawValue == 0x0D)
        #expect(sightings[5].inode == 0)
    }

    @Test func malformedLinesAreCountedAndSkipped() throws {
        let (sightings, malformed) = SocketTableParser.parse(try fixture("tcp_malformed.txt"), family: 4)
        #expect(sightings.map(\.inode) == [111, 222, 333])
        #expect(malformed == 7)
    }

    @Test func emptyAndHeaderOnlyTablesHoldNoSockets() throws {
        for name in ["tcp_empty.txt", "tcp_header_only.txt"] {
            let (sightings, malformed) = SocketTableParser.parse(try fixture(name), family: 4)
            #expect(sightings.isEmpty, "\(name)")
            #expect(malformed == 0, "\(name)")
        }
    }

    @Test func ipv4LinesInTheIPv6TableAreMalformed() throws {
        let (sightings, malformed) = SocketTableParser.parse(try fixture("tcp_ipv4.txt"), family: 6)
        #expect(sightings.isEmpty)
        #expect(malformed == 3)
    }

    /// A table far larger than the reader's buffer arrives in pieces: every line must come out
    /// exactly as from the whole text, including a line longer than the buffer, and a line that
    /// looks like the header is malformed anywhere but at the top.
    @Test func aLargeTableReadInPiecesParsesLikeTheWholeText() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("connlog-pieces-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        for folder in ["net", "sys/kernel/random", "self/ns"] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        try FileManager.default.createSymbolicLink(
            atPath: root.appendingPathComponent("self/ns/net").path, withDestinationPath: "net:[4026531840]")
        try "b\n".write(to: root.appendingPathComponent("sys/kernel/random/boot_id"), atomically: true, encoding: .utf8)
        let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        try header.write(to: root.appendingPathComponent("net/tcp6"), atomically: true, encoding: .utf8)
        var table = header
        for index in 0..<6000 {
            if index == 2000 { table += String(repeating: "A", count: 600_000) + "\n" }
            if index == 4000 { table += "  sl  local_address rem_address\n" }
            let port = String(format: "%04X", 10000 + index)
            table +=
                "  \(index): 0100007F:1F90 0200007F:\(port) 01 00000000:00000000 00:00000000 00000000  1000        0 \(70000 + index) 1 0000000000000000 20 4 30 10 -1\n"
        }
        try table.write(to: root.appendingPathComponent("net/tcp"), atomically: true, encoding: .utf8)

        let snapshot = try ProcSource(root: root.path, attributeProcesses: false).sample()
        let whole = SocketTableParser.parse(Array(table.utf8), family: 4)
        #expect(snapshot.sightings.count == 6000)
        #expect(snapshot.sightings == whole.sightings)
        #expect(snapshot.malformedLines == 2)
        #expect(whole.malformed == 2)
        // A piece after the first has no header: a line that looks like one is malformed there.
        var none: [Sighting] = []
        #expect(Array(header.utf8).withUnsafeBytes { SocketTableParser.parse($0, family: 4, atStart: false, into: &none) } == 1)
    }

    @Test func kernelCountersByName() throws {
        let snmp = String(decoding: try fixture("snmp.txt"), as: UTF8.self)
        let netstat = String(decoding: try fixture("netstat.txt"), as: UTF8.self)
        let tcp = CounterParser.parse(snmp, prefixes: ["Tcp"])
        #expect(tcp["Tcp.MaxConn"] == -1)
        #expect(tcp["Tcp.RtoMin"] == 200)
        #expect(tcp[Snapshot.estabResetsCounter] != nil)
        #expect(tcp.keys.allSatisfy { $0.hasPrefix("Tcp.") })
        let ext = CounterParser.parse(netstat, prefixes: ["TcpExt"])
        #expect(ext["TcpExt.ListenOverflows"] != nil)
        #expect(ext.count > 50)
        #expect(!ext.keys.contains { $0.hasPrefix("IpExt.") })
    }
}

@Suite("Addresses and endpoints as text")
struct AddressTextTests {
    @Test func ipv6FollowsRFC5952() {
        func v6(_ groups: [UInt16]) -> String {
            let high = groups[0..<4].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
            let low = groups[4..<8].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
            return IPAddress(ipv6High: high, low: low).description
        }
        #expect(v6([0, 0, 0, 0, 0, 0, 0, 1]) == "::1")
        #expect(v6([0, 0, 0, 0, 0, 0, 0, 0]) == "::")
        #expect(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]) == "2001:db8::1")
        #expect(v6([0x2001, 0xdb8, 0, 1, 0, 0, 0, 1]) == "2001:db8:0:1::1")
        #expect(v6([0x2001, 0xdb8, 0, 0, 1, 0, 0, 1]) == "2001:db8::1:0:0:1")
        #expect(v6([0xfe80, 0, 0, 0, 1, 2, 3, 4]) == "fe80::1:2:3:4")
        #expect(v6([1, 2, 3, 4, 5, 6, 7, 8]) == "1:2:3:4:5:6:7:8")
        #expect(v6([1, 0, 3, 4, 5, 6, 7, 0]) == "1:0:3:4:5:6:7:0")
        #expect(v6([0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001]) == "::ffff:10.0.0.1")
    }

    @Test func endpointsBracketIPv6() {
        #expect(Endpoint(address: ipv4("10.1.2.3"), port: 80).description == "10.1.2.3:80")
        #expect(Endpoint(address: IPAddress(ipv6High: 0, low: 1), port: 443).description == "[::1]:443")
    }

    @Test func bytesRoundTrip() {
        for address in [ipv4("192.168.1.20"), IPAddress(ipv6High: 0x2001_0db8_0000_0000, low: 0xFFFF_0000_0000_0001)] {
            #expect(IPAddress(bytes: address.bytes) == address)
        }
        #expect(IPAddress(bytes: [1, 2, 3]) == nil)
    }
}

@Suite("Durations and times as text")
struct TimeTextTests {
    @Test func durations() {
        #expect(TimeText.milliseconds("200ms") == 200)
        #expect(TimeText.milliseconds("1s") == 1000)
        #expect(TimeText.milliseconds("1.5s") == 1500)
        #expect(TimeText.milliseconds("15m") == 900_000)
        #expect(TimeText.milliseconds("2h") == 7_200_000)
        #expect(TimeText.milliseconds("30d") == 2_592_000_000)
        for bad in ["", "s", "10", "-5s", "abc", "5x", "0s", "1.2.3s"] {
            #expect(TimeText.milliseconds(bad) == nil, "\(bad)")
        }
        #expect(TimeText.duration(200) == "200ms")
        #expect(TimeText.duration(90_000) == "1m30s")
        #expect(TimeText.duration(86_400_000) == "1d")
    }

    @Test func instantsInEachAcceptedForm() {
        let now: Int64 = 1_795_489_920_123
        let midnight: Int64 = 1_795_478_400_000  // 2026-11-24T00:00:00Z
        #expect(TimeText.instant("2026-11-24T03:12:00Z", now: now) == midnight + 3 * 3_600_000 + 12 * 60_000)
        #expect(TimeText.instant("2026-11-24 03:12", now: now) == midnight + 3 * 3_600_000 + 12 * 60_000)
        #expect(TimeText.instant("2026-11-24T03:12:00.5", now: now) == midnight + 3 * 3_600_000 + 12 * 60_000 + 500)
        #expect(TimeText.instant("2026-11-24T04:12:00+01:00", now: now) == midnight + 3 * 3_600_000 + 12 * 60_000)
        #expect(TimeText.instant("2026-11-23T22:12:00-05:00", now: now) == midnight + 3 * 3_600_000 + 12 * 60_000)
        #expect(TimeText.instant("2026-11-24", now: now) == midnight)
        #expect(TimeText.instant("15m", now: now) == now - 900_000)
        #expect(TimeText.instant(" 7d ", now: now) == now - 7 * 86_400_000)
        for bad in [
            "", "yesterday", "2026-13-01", "2026-02-30", "2026-11-24T25:00", "2026-11-24T03:12:00+1", "2026-11-24X03:12", "24/11/2026",
        ] {
            #expect(TimeText.instant(bad, now: now) == nil, "\(bad)")
        }
    }

    @Test func iso8601() {
        #expect(TimeText.iso8601(0) == "1970-01-01T00:00:00.000Z")
        #expect(TimeText.iso8601(1_795_489_920_123) == "2026-11-24T03:12:00.123Z")
    }
}
