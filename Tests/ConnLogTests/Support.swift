import Foundation
import Testing

@testable import ConnLog

/// A file from Tests/ConnLogTests/Fixtures.
func fixture(_ name: String) throws -> [UInt8] {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)")
    return Array(try Data(contentsOf: url))
}

func ipv4(_ text: String) -> IPAddress {
    let parts = text.split(separator: ".").map { UInt32($0)! }
    return IPAddress(ipv4: parts[0] << 24 | parts[1] << 16 | parts[2] << 8 | parts[3])
}

/// A key on 127.0.0.1 (or the given addresses) for differ tests.
func key(_ localPort: UInt16, _ remotePort: UInt16, local: String = "127.0.0.1", remote: String = "127.0.0.1") -> SocketKey {
    SocketKey(
        local: Endpoint(address: ipv4(local), port: localPort),
        remote: Endpoint(address: ipv4(remote), port: remotePort))
}

/// A fresh directory under the system temporary directory, removed by the caller's `defer`.
func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("connlog-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// The kernel's TCP counters for synthetic samples, as the reset reconciliation reads them: one
/// open for each key never seen before (not a listener's, nor a request socket's).
struct KernelCounters {
    /// `Tcp: EstabResets` so far.
    var resets: Int64 = 0
    /// `ActiveOpens` + `PassiveOpens` so far.
    var opens: Int64 = 0
    private var everSeen: Set<SocketKey> = []

    /// Counts the opens of `snapshot`'s new keys, plus `unseenOpens` connections no sample sees,
    /// and sets its counters as read just before its sockets and after them, with
    /// `resetsDuringRead` resets counted in between.
    mutating func count(_ snapshot: inout Snapshot, unseenOpens: Int64 = 0, resetsDuringRead: Int64 = 0) {
        let counted = snapshot.sightings.filter { ![.listen, .synReceived].contains($0.state) }.map(\.key)
        let new = Set(counted).subtracting(everSeen)
        everSeen.formUnion(snapshot.sightings.map(\.key))
        opens += Int64(new.count) + unseenOpens
        snapshot.countersBeforeRead = ResetCounters(estabResets: resets, opens: opens)
        resets += resetsDuringRead
        snapshot.counters[Snapshot.estabResetsCounter] = resets
        snapshot.counters["Tcp.ActiveOpens"] = opens
        snapshot.counters["Tcp.PassiveOpens"] = 0
    }
}
