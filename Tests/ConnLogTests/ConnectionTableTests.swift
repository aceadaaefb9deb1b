import Testing

@testable import ConnLog

/// The differ's open-connection table against a plain dictionary, over random inserts and
/// removals: every lookup must agree, including after the backward shifts that removals make.
@Suite("The open-connection table")
struct ConnectionTableTests {
    static func connection(_ number: Int) -> TrackedConnection {
        // Few distinct addresses and ports, so that home slots collide and probe runs form.
        let remote = "127.0.\(number % 7).\(number % 251 + 1)"
        return TrackedConnection(
            id: Int64(number), key: key(UInt16(1000 + number % 3), UInt16(number % 65_000 + 1), remote: remote), state: .established,
            statesSeen: TCPStateSet(.established), inode: UInt64(number), uid: 0, direction: .inbound, preexisting: false, firstSeen: 0)
    }

    @Test func lookupsAgreeWithADictionaryThroughInsertsAndRemovals() {
        var table = ConnectionTable()
        var model: [SocketKey: Int64] = [:]
        // Seeded, so that a failure can be replayed.
        var random = SplitMix64(state: 7)
        var next = 0
        for round in 0..<300 {
            // Grow for a while, then shrink, so both the growth and a nearly empty index are covered.
            let inserts = round < 150 ? Int.random(in: 0...40, using: &random) : Int.random(in: 0...10, using: &random)
            if round % 50 == 0 { table.reserveCapacity(table.count + inserts) }
            for _ in 0..<inserts {
                let connection = Self.connection(next)
                next += 1
                table.insert(connection)
                model[connection.key] = connection.id
            }
            let removals = min(table.count, Int.random(in: 0...(round < 150 ? 20 : 45), using: &random))
            var positions = Set<Int>()
            while positions.count < removals { positions.insert(Int.random(in: 0..<table.count, using: &random)) }
            for position in positions { model[table[position].key] = nil }
            table.remove(at: Array(positions))

            #expect(table.count == model.count)
            for (key, id) in model {
                guard let position = table.position(of: key) else {
                    Issue.record("round \(round): \(key) is missing")
                    return
                }
                #expect(table[position].id == id)
                // A guess, right or wrong, finds the same position.
                #expect(table.position(of: key, likely: Int.random(in: 0...table.count, using: &random)) == position)
                #expect(table.position(of: key, likely: position) == position)
            }
            // Removed keys are gone.
            for number in stride(from: 0, to: next, by: 17) where model[Self.connection(number).key] == nil {
                #expect(table.position(of: Self.connection(number).key) == nil)
                #expect(table.position(of: Self.connection(number).key, likely: 0) == nil)
            }
        }
    }

    @Test func theStateRoundTripsThroughTheDictionaryView() {
        let connections = (0..<500).map(Self.connection)
        var state = Tracker.State(open: Dictionary(uniqueKeysWithValues: connections.map { ($0.key, $0) }))
        #expect(state.open.count == 500)
        #expect(Set(state.openConnections.map(\.id)) == Set(connections.map(\.id)))
        state.open[connections[3].key] = nil
        #expect(state.open.count == 499)
        #expect(state.table.position(of: connections[3].key) == nil)
    }
}
