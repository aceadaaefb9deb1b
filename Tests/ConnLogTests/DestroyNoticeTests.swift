import Foundation
import Testing

@testable import ConnLog

/// The differ with the netlink source's destroy notices: each freed socket is given to the
/// connection it tells of, or recorded as one that lived between two samples, never twice.
@Suite("The differ: destroy notices")
struct DestroyNoticeTests {
    let client = key(40000, 5432)
    /// The final counts of a connection this side opened and closed gracefully: 4999 data bytes
    /// sent once, acknowledged with its SYN and FIN.
    let traffic = Traffic(bytesAcked: 5001, bytesReceived: 320, bytesSent: 4999, segmentsOut: 9, segmentsIn: 7, rttMicroseconds: 40)
    /// The same connection reset: the peer acknowledged its SYN and data, never a FIN.
    let aborted = Traffic(bytesAcked: 5000, bytesReceived: 320, bytesSent: 4999, segmentsOut: 9, segmentsIn: 7, rttMicroseconds: 40)

    /// A sample from netlink: sightings with cookies, and the notices heard since the previous one.
    func sample(
        _ d: inout Driver, _ sightings: [Sighting], destroyed: [DestroyNotice]?, resetsSince: Int64 = 0, unseenOpens: Int64 = 0,
        advance: Int64 = 1000
    ) -> SampleDiff {
        var snapshot = d.snapshot(sightings, resetsSince: resetsSince, unseenOpens: unseenOpens, advance: advance)
        snapshot.source = "netlink"
        snapshot.destroyed = destroyed
        return d.tracker.apply(snapshot, expectedInterval: d.interval)
    }

    func cookied(_ sighting: Sighting, _ cookie: UInt64) -> Sighting {
        var sighting = sighting
        sighting.cookie = cookie
        return sighting
    }

    func notice(_ key: SocketKey, cookie: UInt64, at: Int64, established: Bool = true, traffic: Traffic? = nil) -> DestroyNotice {
        DestroyNotice(at: at, key: key, cookie: cookie, traffic: traffic ?? self.traffic, established: established)
    }

    @Test func aConnectionBetweenTwoSamplesIsRecordedOnceWithItsDateAndTraffic() {
        var d = Driver()
        _ = sample(&d, [], destroyed: [])
        let heard = d.at + 400
        let diff = sample(&d, [], destroyed: [notice(client, cookie: 77, at: heard)])
        #expect(diff.events == [.open(connection: 1, state: .established), .close(connection: 1, last: .established, reason: .vanished)])
        #expect(diff.opened.count == 1 && diff.closed.count == 1)
        let closed = diff.closed[0].connection
        #expect(closed.betweenSamples && closed.destroyedAt == heard && closed.traffic == traffic && closed.cookie == 77)
        #expect(closed.statesSeen.isEmpty, "no sample saw a state")
        // Its own report decided it (its FIN was acknowledged): the counter had nothing to weigh.
        #expect(diff.closed[0].ending == Ending(.vanished, .kernel) && diff.resetCandidates == 0 && diff.destroys == 1)
        // One the peer reset, whatever the counter says.
        var e = Driver()
        _ = sample(&e, [], destroyed: [])
        let reset = sample(&e, [], destroyed: [notice(client, cookie: 78, at: e.at + 10, traffic: aborted)])
        #expect(Driver.ending(reset) == Ending(.reset, .kernel, resetBy: .peer))
        // A connect abandoned in SYN_SENT failed.
        var f = Driver()
        _ = sample(&f, [], destroyed: [])
        let failed = sample(&f, [], destroyed: [notice(client, cookie: 79, at: f.at + 10, established: false)])
        #expect(Driver.ending(failed) == Ending(.failedConnect, .kernel) && failed.resetCandidates == 0)
    }

    @Test func aNoticeDatesTheCloseOfASampledConnection() {
        var d = Driver()
        _ = sample(&d, [cookied(socket(client, .established), 5)], destroyed: [])
        let heard = d.at + 250
        let gone = sample(&d, [], destroyed: [notice(client, cookie: 5, at: heard)])
        #expect(gone.events == [.close(connection: 1, last: .established, reason: .vanished)])
        #expect(gone.opened.isEmpty)
        #expect(gone.closed[0].connection.destroyedAt == heard && gone.closed[0].connection.traffic == traffic)
    }

    /// A graceful close frees the socket as TIME_WAIT takes over its key; the TIME_WAIT socket
    /// keeps the cookie only if one was given out before, so the key decides.
    @Test func aNoticeForASocketNowInTimeWaitGivesItsTrafficAndKeepsItOpen() {
        var d = Driver()
        _ = sample(&d, [], destroyed: [])
        let diff = sample(
            &d, [cookied(socket(client, .timeWait, timer: 3, ticks: 5990), 900)], destroyed: [notice(client, cookie: 31, at: d.at + 500)])
        #expect(diff.events == [.open(connection: 1, state: .timeWait)])
        #expect(diff.closed.isEmpty)
        #expect(diff.updated.last?.id == 1 && diff.updated.last?.traffic == traffic)
        #expect(d.tracker.state.openConnections.first?.cookie == 900)
        let gone = sample(&d, [], destroyed: [])
        #expect(Driver.reason(gone) == .activeClose)
    }

    @Test func aNoticeAfterTheSampleThatSawTheCloseIsWrittenIntoIt() {
        var d = Driver()
        _ = sample(&d, [cookied(socket(client, .established), 5)], destroyed: [])
        let gone = sample(&d, [], destroyed: [])
        #expect(gone.closed.count == 1)
        let late = sample(&d, [], destroyed: [notice(client, cookie: 5, at: d.at + 20)])
        #expect(late.events.isEmpty)
        #expect(late.lateDestroys.count == 1 && late.lateDestroys[0].connection == 1 && late.lateDestroys[0].traffic == traffic)
    }

    @Test func noticesThatNameNoPeerOrCameBeforeObservationAreNotConnections() {
        var d = Driver()
        // Heard before the first sample: nobody watched that socket's life.
        let first = sample(&d, [], destroyed: [notice(key(40009, 0, local: "0.0.0.0"), cookie: 1, at: d.at)])
        #expect(first.events.isEmpty && first.destroys == 1 && first.unnamedEnds.isEmpty)
        // A failed connect, or an abort (SO_LINGER 0), is disconnected before it is freed: the
        // kernel tells of it with its remote port and local address cleared. It is counted against
        // its peer. A socket that never connected (a listener) names no peer at all.
        let second = sample(
            &d, [],
            destroyed: [
                notice(key(40001, 0, local: "0.0.0.0", remote: "10.0.0.5"), cookie: 2, at: d.at + 10, established: false),
                notice(key(40002, 0, local: "0.0.0.0", remote: "10.0.0.5"), cookie: 3, at: d.at + 20, established: false),
                notice(key(40003, 0, local: "0.0.0.0", remote: "10.0.0.6"), cookie: 4, at: d.at + 30, established: false),
                notice(key(5432, 0, remote: "0.0.0.0"), cookie: 5, at: d.at + 40, established: false),
            ])
        #expect(second.events.isEmpty && second.opened.isEmpty && second.destroys == 4)
        #expect(second.unnamedEnds == [ipv4("10.0.0.5"): 2, ipv4("10.0.0.6"): 1])
        // Right after samples of the proc tables, a connection read there has no cookie to be found
        // by: an unnamed notice may be its own, so it is not counted beside its row.
        let proc = d.snapshot([socket(client, .established)])
        _ = d.tracker.apply(proc, expectedInterval: d.interval)
        let switched = sample(
            &d, [], destroyed: [notice(key(40000, 0, local: "0.0.0.0"), cookie: 6, at: d.at + 10, established: false)], resetsSince: 1)
        #expect(switched.windowStart == .source && switched.closed.count == 1 && switched.unnamedEnds.isEmpty)
    }

    /// An aborted socket's notice has its remote port and local address cleared: its cookie
    /// still finds the connection the sample saw gone.
    @Test func anAbortedSocketIsFoundByItsCookie() {
        var d = Driver()
        var seen = cookied(socket(client, .established), 5)
        let lastSeen = Traffic(bytesAcked: 12, bytesReceived: 7, segmentsOut: 4, segmentsIn: 4)
        seen.traffic = lastSeen
        _ = sample(&d, [seen], destroyed: [])
        let cleared = SocketKey(local: Endpoint(address: .ipv4Any, port: 40000), remote: Endpoint(address: ipv4("127.0.0.1"), port: 0))
        let gone = sample(&d, [], destroyed: [notice(cleared, cookie: 5, at: d.at + 3)], resetsSince: 1)
        #expect(gone.events == [.close(connection: 1, last: .established, reason: .reset)])
        #expect(gone.closed[0].connection.destroyedAt == d.at - 1000 + 3)
        // Found, so not counted among the sockets that ended unseen.
        #expect(gone.unnamedEnds.isEmpty)
        // Disconnecting zeroed its counters too: the last sighting's figures stay.
        #expect(gone.closed[0].connection.traffic == lastSeen)
        // The next sample's late notice finds the previous sample's close by cookie too.
        _ = sample(&d, [cookied(socket(key(40002, 5432), .established), 8)], destroyed: [])
        _ = sample(&d, [], destroyed: [])
        let late = sample(&d, [], destroyed: [notice(SocketKey(local: cleared.local, remote: cleared.remote), cookie: 8, at: d.at + 1)])
        #expect(late.events.isEmpty && late.lateDestroys.map(\.connection) == [2] && late.unnamedEnds.isEmpty)
    }

    /// On loopback both ends of a reset count, and the kernel told of both: the resets decided
    /// per connection are taken out of R, so a graceful close beside them is not called a reset.
    @Test func resetsToldPerConnectionAreTakenOutOfTheCounter() {
        var d = Driver()
        let server = key(5432, 40000)
        let graceful = key(40001, 443)
        _ = sample(&d, [], destroyed: [])
        _ = sample(
            &d,
            [
                cookied(socket(client, .established, inode: 1), 1), cookied(socket(server, .established, inode: 2), 2),
                socket(graceful, .established, inode: 3),
            ], destroyed: [])
        let disconnected = SocketKey(local: Endpoint(address: .ipv4Any, port: 40000), remote: Endpoint(address: ipv4("127.0.0.1"), port: 0))
        let gone = sample(
            &d, [],
            destroyed: [notice(disconnected, cookie: 1, at: d.at + 5), notice(server, cookie: 2, at: d.at + 6, traffic: aborted)],
            resetsSince: 2)
        let endings = Dictionary(uniqueKeysWithValues: gone.closed.map { ($0.connection.id, $0.ending) })
        #expect(endings[1] == Ending(.reset, .kernel, resetBy: .thisHost))
        #expect(endings[2] == Ending(.reset, .kernel, resetBy: .peer))
        // Both counted resets are theirs: the one left is not proven either way (the counter alone
        // once judged all three, and could tell nothing of any).
        #expect(endings[3] == Ending(.ambiguous, .counters))
        #expect(gone.resetCandidates == 1 && gone.counterWindow.attributed == 2)
    }

    /// A destroy notice that comes after its close decides an ending the counter judged, and the
    /// candidates left in that sample are judged again with one fewer to explain.
    @Test func aLateNoticeDecidesWhatTheCounterCouldNot() throws {
        let other = key(40001, 5432)
        for (late, expected) in [(traffic, Ending(.reset, .counters)), (aborted, Ending(.ambiguous, .counters))] {
            var d = Driver()
            _ = sample(&d, [], destroyed: [])
            _ = sample(
                &d, [cookied(socket(client, .established, inode: 1), 1), cookied(socket(other, .established, inode: 2), 2)], destroyed: [])
            // Both gone, one reset counted, and neither notice has come (their programs hold the sockets).
            let gone = sample(&d, [], destroyed: [], resetsSince: 1)
            #expect(gone.closed.map(\.ending) == [Ending(.ambiguous, .counters), Ending(.ambiguous, .counters)])
            let next = sample(&d, [], destroyed: [notice(client, cookie: 1, at: d.at + 5, traffic: late)])
            let decided = late == traffic ? Ending(.vanished, .kernel) : Ending(.reset, .kernel, resetBy: .peer)
            #expect(next.lateDestroys.map(\.connection) == [1])
            #expect(next.revisedEndings.map(\.connection) == [1, 2])
            #expect(next.revisedEndings.map(\.ending) == [decided, expected])
            #expect(next.revisedPrevious?.candidates == 1 && next.revisedPrevious?.attributed == (late == traffic ? 0 : 1))
        }
        // Older than the previous sample, and after a restart: it decides its own ending.
        let scratch = try ScratchStore()
        var d = Driver()
        try scratch.record(sample(&d, [], destroyed: []), bootID: d.bootID)
        try scratch.record(sample(&d, [cookied(socket(client, .established), 9)], destroyed: []), bootID: d.bootID)
        try scratch.record(sample(&d, [], destroyed: [], resetsSince: 1, unseenOpens: 1), bootID: d.bootID)
        try scratch.record(sample(&d, [], destroyed: []), bootID: d.bootID)
        d.tracker = Tracker(state: try scratch.store.position(namespace: 4_026_531_840).tracker)
        let late = sample(&d, [], destroyed: [notice(client, cookie: 9, at: d.at + 3, traffic: aborted)])
        #expect(late.revisedEndings.map(\.ending) == [Ending(.reset, .kernel, resetBy: .peer)] && late.revisedPrevious == nil)
        try scratch.record(late, bootID: d.bootID)
        #expect(
            try QuestionTests.rows(of: "SELECT end_reason, end_basis, reset_by, end_unacked FROM connections_v", in: scratch.store)
                == [["reset", "kernel", "peer", "0"]])
        // The totals followed the revision.
        #expect(
            try QuestionTests.rows(of: "SELECT resets, ambiguous, resets_by_peer FROM peer_totals", in: scratch.store) == [["1", "0", "1"]])
    }

    @Test func anotherCookieOnTheSameKeyIsAnotherConnection() {
        var d = Driver()
        _ = sample(&d, [cookied(socket(client, .established, inode: 0), 5)], destroyed: [])
        let next = sample(&d, [cookied(socket(client, .established, inode: 0), 6)], destroyed: [notice(client, cookie: 5, at: d.at + 1)])
        #expect(
            next.events == [
                .close(connection: 1, last: .established, reason: .vanished), .open(connection: 2, state: .established),
            ])
        #expect(next.closed[0].connection.destroyedAt != nil)
    }

    @Test func aChangeOfSourceStartsAWindowWithoutAGap() {
        var d = Driver()
        _ = sample(&d, [cookied(socket(client, .established), 5)], destroyed: [])
        let proc = d.sample([socket(client, .established)])
        #expect(proc.windowStart == .source && proc.events.isEmpty)
        #expect(WindowStart.source.isBlind == false)
    }

    /// The kernel tells of a socket when its program closes the file descriptor, which can be
    /// long after the socket left the tables (a reset on an idle pooled connection): the notice
    /// still finds that close, also after a restart, and never becomes a connection of its own.
    @Test func aNoticeLongAfterItsCloseDatesItAndIsNotAConnection() throws {
        var d = Driver()
        _ = sample(&d, [cookied(socket(client, .established), 5)], destroyed: [])
        let gone = sample(&d, [], destroyed: [], resetsSince: 1)
        #expect(gone.closed.count == 1)
        for _ in 0..<5 { _ = sample(&d, [], destroyed: []) }
        let late = sample(&d, [], destroyed: [notice(client, cookie: 5, at: d.at + 7)])
        #expect(late.events.isEmpty && late.opened.isEmpty)
        #expect(late.lateDestroys.map(\.connection) == [1])
        // A restart reads the closes still owed a notice back from the database.
        let scratch = try ScratchStore()
        var e = Driver()
        try scratch.record(sample(&e, [cookied(socket(client, .established), 9)], destroyed: []), bootID: e.bootID)
        try scratch.record(sample(&e, [], destroyed: [], resetsSince: 1), bootID: e.bootID)
        e.tracker = Tracker(state: try scratch.store.position(namespace: 4_026_531_840).tracker)
        let afterRestart = sample(&e, [], destroyed: [notice(client, cookie: 9, at: e.at + 3)])
        #expect(afterRestart.opened.isEmpty && afterRestart.lateDestroys.map(\.connection) == [1])
        try scratch.record(afterRestart, bootID: e.bootID)
        #expect(
            try QuestionTests.rows(of: "SELECT count(*), count(destroyed_at) FROM connection_details", in: scratch.store) == [["1", "1"]])
    }

    /// Retention shorter than the wait for a notice may remove the connection first: its late
    /// notice then leaves nothing behind, not a details row for an id a later connection could get.
    @Test func aLateNoticeForAPrunedConnectionLeavesNoRow() throws {
        let scratch = try ScratchStore()
        var d = Driver()
        try scratch.record(sample(&d, [cookied(socket(client, .established), 9)], destroyed: []), bootID: d.bootID)
        try scratch.record(sample(&d, [], destroyed: [], resetsSince: 1), bootID: d.bootID)
        #expect(try scratch.store.prune(before: d.at + 1).deleted > 0)
        let late = sample(&d, [], destroyed: [notice(client, cookie: 9, at: d.at + 3)])
        #expect(late.lateDestroys.map(\.connection) == [1])
        try scratch.record(late, bootID: d.bootID)
        #expect(try QuestionTests.rows(of: "SELECT count(*) FROM connections", in: scratch.store) == [["0"]])
        #expect(try QuestionTests.rows(of: "SELECT count(*) FROM connection_details", in: scratch.store) == [["0"]])
    }

    /// A notice goes to the connection with its cookie before any match by key: here the key's
    /// new connection waits in TIME_WAIT while the old one's notice comes late.
    @Test func theCookieDecidesBeforeTheKey() {
        var d = Driver()
        _ = sample(&d, [cookied(socket(client, .established), 5)], destroyed: [])
        _ = sample(&d, [], destroyed: [])
        _ = sample(&d, [cookied(socket(client, .established, inode: 200), 6)], destroyed: [])
        let diff = sample(
            &d, [cookied(socket(client, .timeWait, timer: 3, ticks: 5990), 6)], destroyed: [notice(client, cookie: 5, at: d.at + 1)])
        #expect(diff.lateDestroys.map(\.connection) == [1])
        #expect(!diff.updated.contains { $0.traffic == traffic }, "the TIME_WAIT connection took the old one's traffic")
    }

    /// An orphaned socket whose FIN was acknowledged is replaced by a TIME_WAIT-kind socket that
    /// still reads FIN_WAIT2: a notice for the full socket goes to it by key, as for TIME_WAIT.
    @Test func aNoticeForASocketNowInFinWait2WithoutAnInodeKeepsItOpen() {
        var d = Driver()
        _ = sample(&d, [], destroyed: [])
        let diff = sample(
            &d, [cookied(socket(client, .finWait2, inode: 0, timer: 3, ticks: 5990), 900)],
            destroyed: [notice(client, cookie: 31, at: d.at)])
        #expect(diff.events == [.open(connection: 1, state: .finWait2)])
        #expect(diff.closed.isEmpty && diff.updated.last?.traffic == traffic)
    }

    /// A client that reuses its port between two samples: the first connection's TIME_WAIT
    /// gave way to the second, and the TIME_WAIT now on the key is the second's. Both are recorded.
    @Test func twoSocketsFreedOnOneKeyAreTwoConnections() {
        var d = Driver()
        _ = sample(&d, [], destroyed: [])
        let diff = sample(
            &d, [cookied(socket(client, .timeWait, timer: 3, ticks: 5990), 900)],
            destroyed: [notice(client, cookie: 31, at: d.at + 100), notice(client, cookie: 32, at: d.at + 400)])
        #expect(diff.opened.count == 2)
        #expect(diff.closed.map(\.connection.cookie) == [31], "the first lived between the samples")
        #expect(d.tracker.state.openConnections.map(\.cookie) == [900])
    }

    /// A connection last sampled in SYN_SENT whose notice shows the handshake completed left
    /// ESTABLISHED: its report judges it, it is not called a failed connect.
    @Test func aHandshakeTheNoticeShowsCompletedIsNotAFailedConnect() {
        var d = Driver()
        _ = sample(&d, [cookied(socket(client, .synSent), 5)], destroyed: [])
        let gone = sample(&d, [], destroyed: [notice(client, cookie: 5, at: d.at + 9, traffic: aborted)], resetsSince: 1)
        #expect(gone.events == [.close(connection: 1, last: .established, reason: .reset)])
        #expect(gone.resetCandidates == 0)
        var e = Driver()
        _ = sample(&e, [cookied(socket(client, .synSent), 5)], destroyed: [])
        let failed = sample(&e, [], destroyed: [notice(client, cookie: 5, at: e.at + 9, established: false)])
        #expect(failed.events == [.close(connection: 1, last: .synSent, reason: .failedConnect)])
    }

    /// On one key, a connection that lived between the samples closes before the open of the
    /// one the sample sees.
    @Test func aCloseBetweenSamplesComesBeforeTheOpenOnItsKey() {
        var d = Driver()
        _ = sample(&d, [], destroyed: [])
        let diff = sample(&d, [cookied(socket(client, .established), 8)], destroyed: [notice(client, cookie: 7, at: d.at + 2)])
        #expect(
            diff.events == [
                .open(connection: 2, state: .established), .close(connection: 2, last: .established, reason: .vanished),
                .open(connection: 1, state: .established),
            ])
    }

    /// What the netlink source adds is stored and asked about: `traffic` ranks peers by bytes
    /// and counts the short-lived, `peers` sums bytes (from its running totals over the whole
    /// history), a close in the `timeline` shows what its connection carried, `retransmits`
    /// lists retransmitted segments.
    @Test func trafficAndRetransmittedSegmentsReachTheQuestions() throws {
        let scratch = try ScratchStore()
        let store = scratch.store
        var d = Driver()
        func record(_ diff: SampleDiff) throws { try scratch.record(diff, bootID: d.bootID) }
        func ask(_ question: Question, _ parameters: QuestionParameters? = nil) throws -> [[String]] {
            var rows: [[String]] = []
            _ = try store.ask(question, parameters ?? QuestionParameters(now: d.at)) { row in
                rows.append(row.map { QuestionTests.text($0) })
            }
            return rows
        }
        let lossy = key(40010, 443, remote: "10.0.0.7")
        var sighting = cookied(socket(lossy, .established), 11)
        sighting.traffic = Traffic(
            bytesAcked: 900, bytesReceived: 40, segmentsOut: 30, segmentsIn: 20, retransmittedSegments: 4, rttMicroseconds: 2500)
        try record(sample(&d, [], destroyed: []))
        try record(sample(&d, [sighting], destroyed: []))
        #expect(try ask(Question.peers).map { Array($0[0...6]) } == [["10.0.0.7", "1", "1", "0", "0", "900", "40"]])
        // It goes, reset, and its notice carries the final figures; another, reset too, lives
        // between the samples.
        var final = aborted
        final.retransmittedSegments = 6
        let quick = key(40011, 443, remote: "10.0.0.7")
        try record(
            sample(
                &d, [],
                destroyed: [
                    DestroyNotice(at: d.at + 100, key: lossy, cookie: 11, traffic: final, established: true),
                    notice(quick, cookie: 12, at: d.at + 200, traffic: aborted),
                ], resetsSince: 2))
        #expect(try ask(Question.traffic) == [["10.0.0.7", "2", "1", "10000", "640", "18", "14", "6", "0.04"]])
        // The final figures replaced the last read ones in the totals; asked of a window, the
        // connections' own rows give the same.
        let peers = [["10.0.0.7", "2", "2", "2", "2", "10000", "640"]]
        #expect(try ask(Question.peers).map { Array($0[0...6]) } == peers)
        #expect(try ask(Question.peers, QuestionParameters(port: 443, now: d.at)).map { Array($0[0...6]) } == peers)
        // Each close with what it carried, when the kernel freed the socket, how it ended and who reset it.
        let closes = try ask(Question.timeline).filter { $0[1] == "close" }
        let freed = [100, 200].map { TimeText.iso8601(d.at - 1000 + $0) }
        #expect(
            closes.map { Array($0[5...]) } == [
                ["10.0.0.7:443", "NULL", "NULL", "5000", "320", freed[0], "reset", "peer"],
                ["10.0.0.7:443", "NULL", "NULL", "5000", "320", freed[1], "reset", "peer"],
            ])
        let retransmits = try ask(Question.retransmits)
        #expect(retransmits.map { Array($0[0...5]) } == [["10.0.0.7", "127.0.0.1:40010", "10.0.0.7:443", "0", "6", "9"]])
        #expect(
            try QuestionTests.rows(
                of: "SELECT between_samples, destroyed_at IS NOT NULL, end_reason, end_basis, reset_by FROM connections_v ORDER BY id",
                in: store)
                == [["0", "1", "reset", "kernel", "peer"], ["1", "1", "reset", "kernel", "peer"]])
    }

    /// Sockets that ended between samples without their ports are no rows, but the questions
    /// about endings say how many there were, to which peers, over the time and peer asked.
    @Test func unnamedEndsAreReportedByTheQuestionsAboutEndings() throws {
        let scratch = try ScratchStore()
        var d = Driver()
        func record(_ diff: SampleDiff) throws { try scratch.record(diff, bootID: d.bootID) }
        func aborted(_ port: UInt16, to peer: String, cookie: UInt64) -> DestroyNotice {
            notice(key(port, 0, local: "0.0.0.0", remote: peer), cookie: cookie, at: d.at + 5, established: false)
        }
        try record(sample(&d, [], destroyed: []))
        try record(
            sample(
                &d, [],
                destroyed: [aborted(40001, to: "10.0.0.5", cookie: 2), aborted(40002, to: "10.0.0.5", cookie: 3)]))
        let between = d.at
        try record(sample(&d, [], destroyed: [aborted(40003, to: "10.0.0.6", cookie: 4)]))
        func notes(_ question: Question, _ parameters: QuestionParameters) throws -> [String] {
            try scratch.store.ask(question, parameters) { _ in }.notes.filter { $0.contains("ended unseen") }
        }
        let everything = QuestionParameters(now: d.at)
        let text =
            "between samples, 3 socket(s) ended unseen that this host aborted (SO_LINGER 0, or not yet accepted when their listener closed) or whose connect() returned an error (10.0.0.5 2, 10.0.0.6 1): the kernel clears their ports before it tells, so they match no row"
        for question in [Question.resets, .failedConnects, .peers] {
            #expect(try notes(question, everything) == [text], "\(question.name)")
        }
        // Their ports are unknown: asked about one, the note says it cannot narrow them.
        #expect(
            try notes(.peers, QuestionParameters(port: 443, now: d.at)) == [
                text + "; their ports are unknown, so --port does not narrow this"
            ])
        #expect(try notes(.resets, QuestionParameters(peer: "10.0.0.6", now: d.at)).first?.contains("1 socket(s)") == true)
        #expect(try notes(.resets, QuestionParameters(until: between, now: d.at)).first?.contains("(10.0.0.5 2)") == true)
        #expect(try notes(.timeline, everything).isEmpty)
        #expect(try QuestionTests.rows(of: "SELECT count(*) FROM connections", in: scratch.store) == [["0"]])
        // Retention takes them with their samples.
        _ = try scratch.store.prune(before: between + 1)
        #expect(try QuestionTests.rows(of: "SELECT sum(ends) FROM unnamed_ends", in: scratch.store) == [["1"]])
    }
}

/// A scratch database that netlink samples are recorded into, removed with it.
final class ScratchStore {
    let directory: URL
    let store: Store
    private var window: Int64?

    init() throws {
        directory = try temporaryDirectory()
        store = try Store(path: directory.appendingPathComponent("netlink.db").path, access: .write)
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    /// Records a diff of the `Driver`'s namespace, in netlink windows.
    func record(_ diff: SampleDiff, bootID: String) throws {
        window = try store.record(
            diff, context: .init(namespace: 4_026_531_840, bootID: bootID, windowID: window, interval: 1000, source: "netlink"))
    }
}
