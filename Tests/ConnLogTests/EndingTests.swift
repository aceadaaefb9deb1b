import Testing

@testable import ConnLog

/// The ending rules (Tracking/Ending.swift): the kernel's report of a freed socket decides each
/// connection on its own, the states seen win over it, and the reset counter judges only what is
/// left, never calling a graceful close a reset.
@Suite("How connections ended")
struct EndingTests {
    /// A report with final counts: `sent` data bytes (of them `retransmitted` again), `acked` sequence space acknowledged.
    func report(
        sent: UInt64, retransmitted: UInt64 = 0, acked: UInt64, unacknowledged: UInt32 = 0, unread: UInt32 = 0,
        retransmitting: Bool = false
    ) -> FinalReport {
        FinalReport(
            disconnected: false, traffic: Traffic(bytesAcked: acked, bytesSent: sent, bytesRetransmitted: retransmitted),
            unacknowledged: unacknowledged, unread: unread, retransmitting: retransmitting)
    }

    func judge(_ report: FinalReport, active: Bool?, last: TCPState = .established) -> Ending? {
        Ending.fromReport(report, lastState: last, openedActively: active)
    }

    /// The cases measured on this kernel's loopback (client sends 1000 bytes, server 3000).
    @Test func theKernelsReportTellsAGracefulCloseFromAReset() {
        let graceful = Ending(.vanished, .kernel)
        let byPeer = Ending(.reset, .kernel, resetBy: .peer)
        // Graceful either way: the active open's SYN and FIN, the passive one's FIN.
        #expect(judge(report(sent: 1000, acked: 1002), active: true) == graceful)
        #expect(judge(report(sent: 3000, acked: 3001), active: false) == graceful)
        #expect(judge(report(sent: 3000, acked: 3001), active: false, last: .closeWait) == Ending(.passiveClose, .kernel))
        // The end that received the RST: its data acknowledged, no FIN.
        #expect(judge(report(sent: 3000, acked: 3000), active: false) == byPeer)
        #expect(judge(report(sent: 1000, acked: 1001), active: true) == byPeer)
        // This side aborted (SO_LINGER 0): disconnected first, its counts zeroed.
        let disconnected = FinalReport(disconnected: true, traffic: nil, unacknowledged: 70658, unread: 0, retransmitting: false)
        #expect(judge(disconnected, active: nil) == Ending(.reset, .kernel, resetBy: .thisHost))
        // Closed with 500 bytes unread: the kernel sent a RST, but a program reset by its peer can
        // leave data unread too, so the sender is not known.
        #expect(judge(report(sent: 3000, acked: 3000, unread: 500), active: false) == Ending(.reset, .kernel))
        // Its FIN (or data) never acknowledged: not graceful, whatever the byte counts.
        #expect(judge(report(sent: 1000, acked: 1001, unacknowledged: 1), active: true) == byPeer)
        #expect(judge(report(sent: 160_768, retransmitted: 47_616, acked: 113_153, unacknowledged: 3_797_504), active: true) == byPeer)
        // Given up after time-outs (TCP_USER_TIMEOUT, keepalive): nobody sent a RST.
        #expect(
            judge(report(sent: 1500, retransmitted: 400, acked: 1001, unacknowledged: 100, retransmitting: true), active: true)
                == Ending(.reset, .kernel))
        #expect(judge(report(sent: 1000, acked: 1001, retransmitting: true), active: true) == Ending(.reset, .kernel))
        // Retransmitted data counts once: 10% loss, then a graceful close.
        #expect(judge(report(sent: 262_464, retransmitted: 62_464, acked: 200_001), active: false) == graceful)
        // TCP Fast Open, both ends.
        #expect(judge(report(sent: 700, acked: 702), active: true) == graceful)
        #expect(judge(report(sent: 2000, acked: 2001), active: false) == graceful)
    }

    /// Where the side that opened is not known, only the readings that both directions agree on
    /// are taken; where the counts fit no reading, the report is not used.
    @Test func aReportThatCannotTellIsNotUsed() {
        #expect(judge(report(sent: 100, acked: 101), active: nil) == nil)
        #expect(judge(report(sent: 100, acked: 102), active: nil) == Ending(.vanished, .kernel))
        #expect(judge(report(sent: 100, acked: 100), active: nil) == Ending(.reset, .kernel, resetBy: .peer))
        #expect(judge(report(sent: 100, acked: 102), active: false) == nil)
        #expect(judge(report(sent: 100, acked: 100), active: true) == nil)
        // A send that failed on this host before it left is counted again when it is sent: 26000
        // bytes counted for 6000 sent, then a graceful close. Not called a reset.
        #expect(judge(report(sent: 26000, acked: 6002), active: true) == nil)
        #expect(judge(report(sent: 10, retransmitted: 20, acked: 12), active: true) == nil)
        let noCounts = FinalReport(disconnected: false, traffic: nil, unacknowledged: 0, unread: 0, retransmitting: false)
        #expect(judge(noCounts, active: true) == nil)
    }

    func seen(_ states: [TCPState]) -> TCPStateSet {
        var set = TCPStateSet(rawValue: 0)
        for state in states { set.insert(state) }
        return set
    }

    func closed(_ states: [TCPState], report: FinalReport?, direction: Direction = .outbound) -> TrackedConnection {
        var connection = TrackedConnection(
            id: 1, key: key(40000, 443), state: states.last!, statesSeen: seen(states), inode: 5, uid: 0,
            direction: direction, preexisting: false, firstSeen: 0, cookie: 9)
        connection.finalReport = report
        return connection
    }

    /// States that show which side closed first win over the report: a FIN_WAIT1 whose FIN the
    /// peer never acknowledged (it reset, or went silent) still closed first.
    @Test func theStatesSeenWinOverTheReport() {
        let unacknowledged = report(sent: 1000, acked: 1001, unacknowledged: 1)
        #expect(Ending.decided(closed([.established, .finWait1], report: unacknowledged), blind: false) == Ending(.activeClose, .states))
        #expect(
            Ending.decided(closed([.established, .closeWait, .lastAck], report: unacknowledged), blind: false)
                == Ending(.passiveClose, .states))
        #expect(Ending.decided(closed([.synSent], report: nil), blind: false) == Ending(.failedConnect, .states))
        // ESTABLISHED or CLOSE_WAIT straight to gone: the report decides, or nothing but the counter can.
        #expect(
            Ending.decided(closed([.established, .closeWait], report: unacknowledged), blind: false)
                == Ending(.reset, .kernel, resetBy: .peer))
        #expect(Ending.decided(closed([.established], report: nil), blind: false) == nil)
        #expect(Ending.decided(closed([.established], report: unacknowledged), blind: true) == Ending(.unobserved, .gap))
    }

    /// Which side opened decides whether a SYN is in the acknowledged count; it is only guessed for
    /// a connection already open when observation began without a listener on its port.
    @Test func whichSideOpenedIsKnownOrLeftOpen() {
        #expect(Ending.openedActively(statesSeen: seen([.synSent, .established]), direction: .inbound, preexisting: true) == true)
        #expect(Ending.openedActively(statesSeen: seen([.synReceived, .established]), direction: .outbound, preexisting: false) == false)
        #expect(Ending.openedActively(statesSeen: seen([.established]), direction: .inbound, preexisting: true) == false)
        #expect(Ending.openedActively(statesSeen: seen([.established]), direction: .outbound, preexisting: false) == true)
        #expect(Ending.openedActively(statesSeen: seen([.established]), direction: .outbound, preexisting: true) == nil)
    }

    /// The counter proves all candidates reset only with as many resets as nothing else can
    /// explain, and none only when it counted no reset at all.
    @Test func theCounterProvesAllOrNoneOrNothing() {
        let gone = closed([.established], report: nil)
        func verdict(_ window: Ending.CounterWindow, candidates: Int = 1) -> EndReason {
            Ending.byCounters(gone, candidates: candidates, window: window).reason
        }
        #expect(verdict(.init(resetsWithin: 1, resetsAround: 1, unseenOpens: 0)) == .reset)
        #expect(verdict(.init(resetsWithin: 0, resetsAround: 0, unseenOpens: 5)) == .vanished)
        #expect(
            Ending.byCounters(closed([.established, .closeWait], report: nil), candidates: 1, window: .init(resetsAround: 0)).reason
                == .passiveClose)
        // A connection no read saw may have been the one reset.
        #expect(verdict(.init(resetsWithin: 1, resetsAround: 1, unseenOpens: 1)) == .ambiguous)
        #expect(verdict(.init(resetsWithin: 2, resetsAround: 2, unseenOpens: 1)) == .reset)
        // A reset already decided per connection explains one of R.
        #expect(verdict(.init(resetsWithin: 1, resetsAround: 1, unseenOpens: 0, attributed: 1)) == .ambiguous)
        #expect(verdict(.init(resetsWithin: 2, resetsAround: 2, unseenOpens: 0, attributed: 1)) == .reset)
        // Fewer resets than candidates, or counters that could not be read.
        #expect(verdict(.init(resetsWithin: 1, resetsAround: 1, unseenOpens: 0), candidates: 2) == .ambiguous)
        #expect(verdict(.init()) == .ambiguous)
        #expect(verdict(.init(resetsWithin: 3, resetsAround: 3, unseenOpens: nil)) == .ambiguous)
    }
}
