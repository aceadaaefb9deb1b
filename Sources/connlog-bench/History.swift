import ConnLog

/// Thirty days of a busy host, made sample by sample through the real differ and store.
///
/// Every `interval` a few hundred connections open to and from `peers` addresses in
/// 127.1.0.0/16 and each follows one of five lives: closed through TIME_WAIT, reset, closed by
/// the peer (CLOSE_WAIT, LAST_ACK), a connect that never established, or a long-lived one. The
/// kernel counters move to match (EstabResets equals the resets, now and then one less, which
/// makes a sample's endings ambiguous), and there are gaps and one reboot.
struct History {
    var events: Int
    var peers: Int
    var days: Int = 30
    var interval: Int64 = 300_000

    /// One connection's life: the states it is seen in, one per sample, then gone.
    private static let lives: [[TCPState]] = [
        [.established, .timeWait],
        [.established, .timeWait],
        [.established, .timeWait],
        [.established, .timeWait],
        [.established, .timeWait],
        [.established, .timeWait],
        [.established],  // reset: leaves ESTABLISHED straight to gone, counted in EstabResets
        [.established],
        [.established, .closeWait, .lastAck],
        [.synSent],
        [.established, .timeWait],  // long-lived: established for `extra` more samples
    ]
    private static let longLived = 10
    private static let resetLives: Set<Int> = [6, 7]

    private struct Live {
        var key: SocketKey
        var life: Int
        var step: Int
        /// Samples the first state lasts beyond one.
        var extra: Int
        var inode: UInt64

        var state: TCPState? {
            let states = History.lives[life]
            let index = max(0, step - extra)
            return index < states.count ? states[index] : nil
        }
    }

    /// Records the history into `store`; returns the samples written.
    func generate(into store: Store, progress: (Int, Int) -> Void) throws -> Int {
        let samplesWanted = days * 86_400_000 / Int(interval)
        // About 2.7 events per connection.
        let opensPerSample = max(1, events * 10 / 27 / samplesWanted)
        let start: Int64 = 1_790_000_000_000
        let local = IPAddress(ipv4: 0x7F00_0001)
        var tracker = Tracker()
        var windowID: Int64?
        var live: [Live] = []
        var connection = 0
        var counters: [String: Int64] = [
            "Tcp.EstabResets": 0, "Tcp.ActiveOpens": 0, "Tcp.PassiveOpens": 0, "Tcp.RetransSegs": 0, "TcpExt.ListenOverflows": 0,
        ]
        var random = SplitMix(seed: 42)
        var bootID = "11111111-2222-3333-4444-555555555555"
        let listeners = [443, 5432, 6379, 8080].map { port in
            Sighting(
                key: SocketKey(local: Endpoint(address: local, port: UInt16(port)), remote: Endpoint(address: IPAddress(ipv4: 0), port: 0)),
                state: .listen, inode: UInt64(port))
        }
        var written = 0
        var recorded = 0
        for sample in 0..<samplesWanted {
            // A one-hour gap every four days, and a reboot half-way.
            if sample % (4 * 288) == 100 { continue }
            if sample == samplesWanted / 2 {
                bootID = "99999999-2222-3333-4444-555555555555"
                live.removeAll()
            }
            let at = start + Int64(sample) * interval + Int64(random.next() % 2000)
            var resets = 0
            var next: [Live] = []
            for var connection in live {
                connection.step += 1
                if connection.state != nil {
                    next.append(connection)
                } else if Self.resetLives.contains(connection.life) {
                    resets += 1
                }
            }
            for _ in 0..<opensPerSample {
                connection += 1
                let peer = IPAddress(ipv4: 0x7F01_0000 | UInt32(random.next() % UInt64(peers) + 1))
                let ephemeral = UInt16(10_000 + connection % 50_000)
                let life = Int(random.next() % UInt64(Self.lives.count))
                // A connect that never establishes is outbound by nature (SYN_SENT).
                let inbound = random.next() % 3 != 0 && Self.lives[life].first != .synSent
                let service = UInt16([443, 5432, 6379, 8080][Int(random.next() % 4)])
                let key =
                    inbound
                    ? SocketKey(local: Endpoint(address: local, port: service), remote: Endpoint(address: peer, port: ephemeral))
                    : SocketKey(local: Endpoint(address: local, port: ephemeral), remote: Endpoint(address: peer, port: service))
                let extra = life == Self.longLived ? Int(random.next() % 100) : 0
                next.append(Live(key: key, life: life, step: 0, extra: extra, inode: UInt64(1_000_000 + connection)))
                counters[inbound ? "Tcp.PassiveOpens" : "Tcp.ActiveOpens", default: 0] += 1
            }
            live = next
            // Now and then one reset goes uncounted, so that sample's endings are ambiguous.
            counters["Tcp.EstabResets", default: 0] += Int64(resets > 0 && sample % 50 == 0 ? resets - 1 : resets)
            counters["Tcp.RetransSegs", default: 0] += Int64(random.next() % 40)
            if sample % 500 == 0 { counters["TcpExt.ListenOverflows", default: 0] += 3 }
            var sightings = listeners
            sightings.reserveCapacity(live.count + listeners.count)
            for connection in live {
                guard let state = connection.state else { continue }
                sightings.append(
                    Sighting(
                        key: connection.key, state: state, retransmits: state == .synSent ? UInt32(connection.step) : 0,
                        inode: state == .timeWait ? 0 : connection.inode))
            }
            var snapshot = Snapshot(at: at, namespace: 4_026_532_999, bootID: bootID, sightings: sightings, counters: counters)
            // Nothing is reset while the tables are read: the counters read before them agree.
            snapshot.countersBeforeRead = ResetCounters(counters)
            let diff = tracker.apply(snapshot, expectedInterval: interval)
            windowID = try store.record(
                diff, context: Store.SampleContext(namespace: 4_026_532_999, bootID: bootID, windowID: windowID, interval: interval))
            written += diff.events.count
            recorded += 1
            if sample % 500 == 0 { progress(sample, written) }
        }
        return recorded
    }
}

/// A small, fast, seeded random number generator, so every run generates the same history.
struct SplitMix {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
