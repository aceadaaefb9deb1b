import Testing

@testable import ConnLog

/// Drives a Tracker through synthetic samples one second apart, with the kernel's counters read
/// before and after each sample's sockets.
struct Driver {
    var tracker = Tracker()
    var at: Int64 = 1_700_000_000_000
    var bootID = "boot-a"
    var kernel = KernelCounters()
    let interval: Int64 = 1000

    /// A sample holding `sightings`. Before it the kernel counted `resetsSince` more EstabResets
    /// and `unseenOpens` connections no sample sees (besides an open for each key never seen
    /// before); `resetsDuringRead` more while the sockets were read.
    mutating func snapshot(
        _ sightings: [Sighting], resetsSince: Int64 = 0, resetsDuringRead: Int64 = 0, unseenOpens: Int64 = 0, advance: Int64 = 1000,
        owners: [UInt64: ProcessOwner] = [:]
    ) -> Snapshot {
        at += advance
        kernel.resets += resetsSince
        var snapshot = Snapshot(at: at, namespace: 4_026_531_840, bootID: bootID, sightings: sightings, owners: owners)
        kernel.count(&snapshot, unseenOpens: unseenOpens, resetsDuringRead: resetsDuringRead)
        return snapshot
    }

    /// Takes a sample (see ``snapshot(_:resetsSince:resetsDuringRead:unseenOpens:advance:owners:)``).
    mutating func sample(
        _ sightings: [Sighting], resetsSince: Int64 = 0, resetsDuringRead: Int64 = 0, unseenOpens: Int64 = 0, advance: Int64 = 1000,
        owners: [UInt64: ProcessOwner] = [:]
    ) -> SampleDiff {
        let snapshot = snapshot(
            sightings, resetsSince: resetsSince, resetsDuringRead: resetsDuringRead, unseenOpens: unseenOpens, advance: advance,
            owners: owners)
        return tracker.apply(snapshot, expectedInterval: interval)
    }

    /// The end reason of the one connection the diff closed.
    static func reason(_ diff: SampleDiff) -> EndReason? {
        diff.closed.count == 1 ? diff.closed[0].ending.reason : nil
    }

    /// The ending of the one connection the diff closed.
    static func ending(_ diff: SampleDiff) -> Ending? {
        diff.closed.count == 1 ? diff.closed[0].ending : nil
    }
}

func socket(_ k: SocketKey, _ state: TCPState, inode: UInt64 = 100, timer: UInt8 = 0, ticks: UInt32 = 0, retransmits: UInt32 = 0)
    -> Sighting
{
    Sighting(
        key: k, state: state, timer: timer, timerTicks: ticks, retransmits: retransmits, uid: 1000, inode: state == .timeWait ? 0 : inode)
}

@Suite("The differ: events and how connections ended")
struct TrackerTests {
    let client = key(40000, 5432)

    @Test func activeCloseThroughTimeWait() {
        var d = Driver()
        _ = d.sample([])
        let opened = d.sample([socket(client, .established)])
        #expect(opened.events == [.open(connection: 1, state: .established)])
        #expect(opened.opened[0].preexisting == false)
        let waiting = d.sample([socket(client, .timeWait, timer: 3, ticks: 5950)])
        #expect(waiting.events == [.state(connection: 1, from: .established, to: .timeWait)])
        // 50 ticks of the 6000 already spent: entered 500 ms before this sample.
        #expect(waiting.updated[0].timeWaitAt == d.at - 500)
        let gone = d.sample([])
        #expect(gone.events == [.close(connection: 1, last: .timeWait, reason: .activeClose)])
        #expect(gone.resetCandidates == 0)
    }

    @Test func passiveCloseThroughLastAck() {
        var d = Driver()
        _ = d.sample([socket(client, .established)])
        _ = d.sample([socket(client, .closeWait)])
        _ = d.sample([socket(client, .lastAck)])
        #expect(Driver.reason(d.sample([], resetsSince: 5)) == .passiveClose)
    }

    @Test func closeWaitGoneWithoutResetsIsPassiveClose() {
        var d = Driver()
        _ = d.sample([socket(client, .established)])
        _ = d.sample([socket(client, .closeWait)])
        let gone = d.sample([])
        #expect(Driver.reason(gone) == .passiveClose)
        #expect(gone.resets == 0)
        #expect(gone.resetCandidates == 1)
    }

    @Test func establishedGoneWithAResetCountedIsReset() {
        var d = Driver()
        _ = d.sample([socket(client, .established)])
        let gone = d.sample([], resetsSince: 1)
        #expect(Driver.reason(gone) == .reset)
        #expect(gone.resets == 1)
        #expect(gone.resetCandidates == 1)
    }

    @Test func closeWaitGoneWithAResetCountedIsReset() {
        var d = Driver()
        _ = d.sample([socket(client, .established)])
        _ = d.sample([socket(client, .closeWait)])
        #expect(Driver.reason(d.sample([], resetsSince: 1)) == .reset)
    }

    @Test func establishedGoneWithoutResetsVanished() {
        var d = Driver()
        _ = d.sample([socket(client, .established)])
        #expect(Driver.reason(d.sample([])) == .vanished)
    }

    @Test func fewerResetsThanCandidatesIsAmbiguousForAll() {
        var d = Driver()
        let other = key(40001, 5432)
        _ = d.sample([socket(client, .established, inode: 1), socket(other, .established, inode: 2)])
        let gone = d.sample([], resetsSince: 1)
        #expect(gone.closed.map(\.ending.reason) == [.ambiguous, .ambiguous])
        #expect(gone.resets == 1)
        #expect(gone.resetCandidates == 2)
    }

    /// The kernel counts resets of every socket in the namespace, seen or not: a graceful close
    /// in the same window as a reset no sample saw is not called a reset.
    @Test func aResetNoSampleSawDoesNotMakeAGracefulCloseAReset() {
        var d = Driver()
        _ = d.sample([socket(client, .established)])
        let gone = d.sample([], resetsSince: 1, unseenOpens: 1)
        #expect(Driver.ending(gone) == Ending(.ambiguous, .counters))
        #expect(gone.counterWindow.unseenOpens == 1 && gone.counterWindow.resetsWithin == 1)
        // With no such connection, the one reset counted is the candidate's.
        var e = Driver()
        _ = e.sample([socket(client, .established)])
        #expect(Driver.ending(e.sample([], resetsSince: 1)) == Ending(.reset, .counters))
    }

    /// A socket the previous read saw alive and that was reset while it was read is counted in
    /// that sample's counters, though it is gone only in the next: neither sample can claim it.
    @Test func aResetCountedWhileTheSocketsWereReadProvesNothing() {
        var d = Driver()
        let other = key(40001, 5432)
        _ = d.sample([socket(client, .established, inode: 1), socket(other, .established, inode: 2)])
        // `client` closes gracefully; `other` is read alive, then reset before the counters are read.
        let first = d.sample([socket(other, .established, inode: 2)], resetsDuringRead: 1)
        #expect(Driver.ending(first) == Ending(.ambiguous, .counters))
        #expect(first.resets == 1 && first.counterWindow.resetsWithin == 0)
        let second = d.sample([])
        #expect(Driver.ending(second) == Ending(.ambiguous, .counters))
        // Without a reset while reading, each sample's own is clear.
        var e = Driver()
        _ = e.sample([socket(client, .established, inode: 1), socket(other, .established, inode: 2)])
        #expect(Driver.ending(e.sample([socket(other, .established, inode: 2)])) == Ending(.vanished, .counters))
        #expect(Driver.ending(e.sample([], resetsSince: 1)) == Ending(.reset, .counters))
    }

    @Test func synSentNeverEstablishedIsAFailedConnect() {
        var d = Driver()
        _ = d.sample([socket(client, .synSent)])
        #expect(Driver.reason(d.sample([], resetsSince: 3)) == .failedConnect)
    }

    @Test func listenerGoingAwayIsListenClosed() {
        var d = Driver()
        let listener = SocketKey(local: Endpoint(address: .ipv4Any, port: 5432), remote: Endpoint(address: .ipv4Any, port: 0))
        let opened = d.sample([socket(listener, .listen)])
        #expect(opened.opened[0].direction == .listen)
        #expect(Driver.reason(d.sample([])) == .listenClosed)
    }

    @Test func closedInsideAGapIsUnobserved() {
        var d = Driver()
        _ = d.sample([socket(client, .established)])
        let late = d.sample([], resetsSince: 1, advance: 2001)
        #expect(late.windowStart == .gap)
        #expect(Driver.reason(late) == .unobserved)
        #expect(late.resetCandidates == 0)
    }

    @Test func pauseUpToTwiceTheIntervalIsNoGap() {
        var d = Driver()
        _ = d.sample([socket(client, .established)])
        let diff = d.sample([socket(client, .established)], advance: 2000)
        #expect(diff.windowStart == nil)
    }

    @Test func aSampleLateBecauseItsPredecessorOverranIsNoGap() {
        var d = Driver()
        _ = d.sample([socket(client, .established)])
        // 2.5 s later, but the previous sample took 700 ms: the collector was running all along.
        let snapshot = d.snapshot([], advance: 2500)
        let diff = d.tracker.apply(snapshot, expectedInterval: 1000, slack: 700)
        #expect(diff.windowStart == nil)
        #expect(diff.closed.map(\.ending.reason) == [.vanished])
    }

    @Test func rebootClosesEverythingAsUnobserved() {
        var d = Driver()
        let listener = SocketKey(local: Endpoint(address: .ipv4Any, port: 5432), remote: Endpoint(address: .ipv4Any, port: 0))
        _ = d.sample([socket(client, .established), socket(listener, .listen, inode: 7)])
        d.bootID = "boot-b"
        // The same keys after a reboot are new connections, present when the window began.
        let after = d.sample([socket(client, .established)])
        #expect(after.windowStart == .reboot)
        #expect(after.closed.map(\.ending.reason) == [.unobserved, .unobserved])
        #expect(after.opened.count == 1)
        #expect(after.opened[0].id == 3)
        #expect(after.opened[0].preexisting)
        #expect(after.resets == nil)
        #expect(after.events.first == .close(connection: 1, last: .established, reason: .unobserved))
    }

    @Test func aNewSpacingStartsAWindowWithoutAGap() {
        var d = Driver()
        _ = d.sample([socket(client, .established)])
        let snapshot = d.snapshot([socket(key(1, 2), .established, inode: 5)])
        let diff = d.tracker.apply(snapshot, expectedInterval: 60_000)
        #expect(diff.windowStart == .interval)
        #expect(diff.opened[0].preexisting == false)
        #expect(diff.closed.map(\.ending.reason) == [.vanished])
        // A window's first sample stores every counter.
        #expect(diff.counterChanges.count == snapshot.counters.count)
    }

    @Test func lastSeenInCloseIsAmbiguousAndNotACandidate() {
        var d = Driver()
        _ = d.sample([socket(client, .established)])
        _ = d.sample([socket(client, .close)])
        let gone = d.sample([], resetsSince: 1)
        #expect(Driver.reason(gone) == .ambiguous)
        #expect(gone.resetCandidates == 0)
    }

    @Test func firstSampleOfAWindowIsPreexisting() {
        var d = Driver()
        let first = d.sample([socket(client, .established)])
        #expect(first.windowStart == .first)
        #expect(first.opened[0].preexisting)
        let second = d.sample([socket(client, .established), socket(key(40001, 5432), .synSent, inode: 2)])
        #expect(second.opened.count == 1)
        #expect(second.opened[0].preexisting == false)
    }

    @Test func newInodeOnTheSameKeyIsANewConnection() {
        var d = Driver()
        _ = d.sample([socket(client, .established, inode: 100)])
        // (The successor is an open of its own, though its key is not new.)
        let diff = d.sample([socket(client, .established, inode: 200)], resetsSince: 1, unseenOpens: 1)
        // The close of the old one comes first, then the open of its successor.
        #expect(
            diff.events == [
                .close(connection: 1, last: .established, reason: .reset),
                .open(connection: 2, state: .established),
            ])
    }

    @Test func closingStateBackToSynSentIsANewConnection() {
        var d = Driver()
        _ = d.sample([socket(client, .established)])
        _ = d.sample([socket(client, .timeWait, timer: 3, ticks: 5000)])
        let diff = d.sample([socket(client, .synSent, inode: 300)])
        #expect(
            diff.events == [
                .close(connection: 1, last: .timeWait, reason: .activeClose),
                .open(connection: 2, state: .synSent),
            ])
    }

    @Test func inodeTurningZeroInTimeWaitIsTheSameConnection() {
        var d = Driver()
        _ = d.sample([socket(client, .established, inode: 100)])
        let diff = d.sample([socket(client, .timeWait, timer: 3, ticks: 5999)])
        #expect(diff.opened.isEmpty)
        #expect(diff.closed.isEmpty)
        #expect(diff.updated[0].inode == 100)
    }

    @Test func aSocketReadTwiceIsOneSocket() {
        var d = Driver()
        let line = socket(client, .established)
        let diff = d.sample([line, socket(key(1, 2), .established, inode: 9), line])
        #expect(diff.sockets == 2)
        #expect(diff.opened.count == 2)
        #expect(d.sample([line, line]).events.count == 1)  // only key(1, 2) closing
    }

    @Test func duplicateKeysKeepTheTrackedInode() {
        // Two SO_REUSEPORT listeners share a key; the tracked one must not flap between them.
        var d = Driver()
        let listener = SocketKey(local: Endpoint(address: .ipv4Any, port: 80), remote: Endpoint(address: .ipv4Any, port: 0))
        _ = d.sample([socket(listener, .listen, inode: 20), socket(listener, .listen, inode: 10)])
        let tracked = d.tracker.state.open[listener]!.inode
        for order in [[10, 20], [20, 10], [20, 10]] {
            let diff = d.sample(order.map { socket(listener, .listen, inode: UInt64($0)) })
            #expect(diff.events.isEmpty)
        }
        #expect(d.tracker.state.open[listener]!.inode == tracked)
    }

    @Test func aSocketMissedByOneReadIsTakenBack() {
        var d = Driver()
        _ = d.sample([socket(client, .established, inode: 100)])
        let missed = d.sample([])
        #expect(missed.closed.count == 1)
        let back = d.sample([socket(client, .established, inode: 100)])
        #expect(back.reopened == [1])
        #expect(back.opened.isEmpty)
        #expect(d.tracker.state.open[client]?.id == 1)
    }

    @Test func aWithdrawnCloseRevisesThePreviousSamplesResetAttribution() {
        var d = Driver()
        let other = key(40001, 5432)
        _ = d.sample([socket(client, .established, inode: 1), socket(other, .established, inode: 2)])
        // One read misses `client` while `other` really goes, with one reset counted: R = 1, V = 2.
        let missed = d.sample([], resetsSince: 1)
        #expect(missed.closed.map(\.ending.reason) == [.ambiguous, .ambiguous])
        let back = d.sample([socket(client, .established, inode: 1)])
        #expect(back.reopened == [1])
        // Only `other` left ESTABLISHED straight to gone, and the one reset was its.
        #expect(back.revisedPrevious?.candidates == 1)
        #expect(back.revisedEndings.map(\.connection) == [2])
        #expect(back.revisedEndings.map(\.ending) == [Ending(.reset, .counters)])
    }

    @Test func aMissedSocketBackWithoutItsInodeInAClosingStateIsTheSame() {
        var d = Driver()
        _ = d.sample([socket(client, .established, inode: 101)])
        _ = d.sample([])
        let back = d.sample([socket(client, .finWait2, inode: 0)])
        #expect(back.reopened == [1])
        #expect(back.opened.isEmpty)
        #expect(back.events == [.state(connection: 1, from: .established, to: .finWait2)])
    }

    @Test func aNewTimeWaitOnAnExpiredOnesKeyIsANewConnection() {
        var d = Driver()
        _ = d.sample([socket(client, .established)])
        _ = d.sample([socket(client, .timeWait, timer: 3, ticks: 100)])  // one second left
        #expect(Driver.reason(d.sample([])) == .activeClose)
        // The same 4-tuple, freshly in TIME_WAIT: a new connection, not the old one taken back.
        let again = d.sample([socket(client, .timeWait, timer: 3, ticks: 5990)])
        #expect(again.reopened.isEmpty)
        #expect(again.opened.map(\.id) == [2])
    }

    @Test func aTimeWaitMissedByOneReadIsTakenBack() {
        var d = Driver()
        _ = d.sample([socket(client, .established)])
        _ = d.sample([socket(client, .timeWait, timer: 3, ticks: 5950)])  // entered 0.5 s ago
        _ = d.sample([])
        let back = d.sample([socket(client, .timeWait, timer: 3, ticks: 5750)])  // 2 s later: the same entry
        #expect(back.reopened == [1])
    }

    @Test func synReceivedNeverEstablishedIsAFailedHandshake() {
        var d = Driver()
        let listener = SocketKey(local: Endpoint(address: .ipv4Any, port: 5432), remote: Endpoint(address: .ipv4Any, port: 0))
        let inbound = key(5432, 41000, remote: "127.0.0.9")
        _ = d.sample([socket(listener, .listen, inode: 1), socket(inbound, .synReceived, inode: 0)])
        let gone = d.sample([socket(listener, .listen, inode: 1)], resetsSince: 2)
        #expect(Driver.reason(gone) == .failedHandshake)
        #expect(gone.resetCandidates == 0)
    }

    @Test func directionFollowsTheListeningPorts() {
        var d = Driver()
        let listener = SocketKey(local: Endpoint(address: .ipv4Any, port: 5432), remote: Endpoint(address: .ipv4Any, port: 0))
        let inbound = key(5432, 41000, remote: "127.0.0.2")
        let outbound = key(41001, 443)
        let diff = d.sample([
            socket(listener, .listen, inode: 1), socket(inbound, .established, inode: 2), socket(outbound, .established, inode: 3),
        ])
        #expect(diff.opened.map(\.direction) == [.listen, .inbound, .outbound])
    }

    /// The listening ports are kept between samples: a port counts as listening when it did at
    /// the previous sample or does now, and stops counting once its listener is gone (or the
    /// host rebooted).
    @Test func directionRemembersListenersAcrossSamplesAndForgetsThemWhenTheyGo() {
        var d = Driver()
        let listener = SocketKey(local: Endpoint(address: .ipv4Any, port: 5432), remote: Endpoint(address: .ipv4Any, port: 0))
        _ = d.sample([socket(listener, .listen, inode: 1)])
        // The listener goes in the sample that first sees a connection to its port: still inbound.
        let lastOne = d.sample([socket(key(5432, 41000, remote: "127.0.0.2"), .established, inode: 2)])
        #expect(lastOne.opened.map(\.direction) == [.inbound])
        let afterwards = d.sample([
            socket(key(5432, 41000, remote: "127.0.0.2"), .established, inode: 2),
            socket(key(5432, 41001, remote: "127.0.0.3"), .established, inode: 3),
        ])
        #expect(afterwards.opened.map(\.direction) == [.outbound])

        // A listener before a reboot says nothing about the port after it.
        var r = Driver()
        _ = r.sample([socket(listener, .listen, inode: 1)])
        r.bootID = "boot-b"
        let rebooted = r.sample([socket(key(5432, 41002, remote: "127.0.0.4"), .established, inode: 4)])
        #expect(rebooted.windowStart == .reboot)
        #expect(rebooted.opened.map(\.direction) == [.outbound])
    }

    /// Within a sample every close comes before every open, whatever the table's order.
    @Test func aSampleRecordsItsClosesBeforeItsOpens() {
        var d = Driver()
        let old = key(41000, 443)
        let reused = key(41001, 443)
        _ = d.sample([socket(old, .established, inode: 1), socket(reused, .established, inode: 2)])
        // A new connection listed first, the old one gone, and a new socket on a known key.
        let diff = d.sample([socket(key(41002, 443), .established, inode: 3), socket(reused, .established, inode: 4)])
        let kinds = diff.events.map { event -> String in
            switch event {
            case .open: "open"
            case .state: "state"
            case .close: "close"
            }
        }
        #expect(kinds == ["close", "close", "open", "open"])
        #expect(Set(diff.closed.map(\.connection.id)) == [1, 2])
        #expect(diff.opened.map(\.key) == [key(41002, 443), reused])
    }

    @Test func factsAccumulate() {
        var d = Driver()
        let owner = ProcessOwner(pid: 42, program: "psql")
        _ = d.sample([socket(client, .established, retransmits: 2)])
        let diff = d.sample([socket(client, .established, retransmits: 5)], owners: [100: owner])
        #expect(diff.events.isEmpty)
        #expect(diff.updated[0].maxRetransmits == 5)
        #expect(diff.updated[0].owner == owner)
        let lower = d.sample([socket(client, .established, retransmits: 1)])
        #expect(lower.updated.isEmpty)
    }

    @Test func countersAreStoredWhenTheyChange() {
        var d = Driver()
        let first = d.sample([])
        #expect(first.counterChanges.count == 3)
        let same = d.sample([])
        #expect(same.counterChanges.isEmpty)
        let moved = d.sample([], resetsSince: 2)
        #expect(moved.counterChanges == [Snapshot.estabResetsCounter: 2])
        #expect(moved.resets == 2)
    }
}
