/// How a closed connection ended: every rule in one place, each deciding only what the ones
/// before it left open.
///
/// 1. Nothing was recording just before the sample that saw it gone: `unobserved`.
/// 2. The states the samples saw: a listener is `listen_closed`; FIN_WAIT1, FIN_WAIT2, CLOSING or
///    TIME_WAIT is `active_close` (this side closed first); LAST_ACK is `passive_close`; only
///    SYN_SENT or SYN_RECV is `failed_connect` or `failed_handshake`. They win over the kernel's
///    report: a connection seen in FIN_WAIT1 whose FIN was never acknowledged (the peer reset it
///    or went silent) still closed first.
/// 3. What is left went from ESTABLISHED or CLOSE_WAIT straight to gone. The kernel's report of
///    the freed socket (the netlink source's destroy notice) decides each one on its own
///    (``fromReport(_:lastState:openedActively:)``).
/// 4. Those without a usable report (the proc source, `collect --once`, a notice the kernel dropped
///    or that has not come) are weighed against the kernel's reset counter (``byCounters(_:candidates:window:)``),
///    which proves either that all of them were reset or that none was, or leaves them `ambiguous`.
extension Ending {
    /// What the states and the kernel's report decide; nil for a connection that only the reset
    /// counter can judge (one of the sample's V).
    static func decided(_ connection: TrackedConnection, blind: Bool) -> Ending? {
        if blind { return Ending(.unobserved, .gap) }
        if connection.state == .listen { return Ending(.listenClosed, .states) }
        if connection.statesSeen.hasActiveClose { return Ending(.activeClose, .states) }
        if connection.statesSeen.contains(.lastAck) { return Ending(.passiveClose, .states) }
        let opening = connection.state == .synSent || connection.state == .synReceived || connection.state == .newSynReceived
        if opening && !connection.statesSeen.contains(.established) {
            // A connection known from its notice alone has its SYN_SENT inferred from tcp_info.
            let basis: EndBasis = connection.betweenSamples ? .kernel : .states
            return Ending(connection.state == .synSent ? .failedConnect : .failedHandshake, basis)
        }
        guard isCandidate(connection) else {
            // Last seen in CLOSE or a state the kernel has no name for: nothing tells how it ended.
            return Ending(.ambiguous, .states)
        }
        if let report = connection.finalReport,
            let ending = fromReport(report, lastState: connection.state, openedActively: openedActively(connection))
        {
            return ending
        }
        // The counter's bounds hold for connections a sample saw alive; one known from its notice
        // alone may have been reset in an earlier window.
        return connection.betweenSamples ? Ending(.ambiguous, .kernel) : nil
    }

    /// Whether a closed connection left ESTABLISHED or CLOSE_WAIT straight to gone, with nothing in
    /// its states that tells how it ended: the kind the kernel's report or the counter must judge.
    static func isCandidate(_ connection: TrackedConnection) -> Bool {
        (connection.state == .established || connection.state == .closeWait)
            && !connection.statesSeen.hasActiveClose && !connection.statesSeen.contains(.lastAck)
    }

    /// Whether this side opened the connection (connect()), which decides whether tcp_info's
    /// acknowledged bytes count a SYN; nil when the direction was only guessed.
    ///
    /// A connection already open when observation began, with no listener on its local port then,
    /// was taken for outbound: its listener may have closed before (a server draining its
    /// connections), so that is not known.
    static func openedActively(_ connection: TrackedConnection) -> Bool? {
        openedActively(statesSeen: connection.statesSeen, direction: connection.direction, preexisting: connection.preexisting)
    }

    static func openedActively(statesSeen: TCPStateSet, direction: Direction, preexisting: Bool) -> Bool? {
        if statesSeen.contains(.synSent) { return true }
        if statesSeen.contains(.synReceived) || statesSeen.contains(.newSynReceived) { return false }
        switch direction {
        case .inbound: return false
        case .outbound: return preexisting ? nil : true
        case .listen: return nil
        }
    }

    /// How a connection that left ESTABLISHED or CLOSE_WAIT ended, from the kernel's report of
    /// its freed socket; nil when the report cannot tell.
    ///
    /// Graceful means this side's FIN was acknowledged (net/ipv4/tcp_input.c, `tcp_snd_una_update`):
    /// - a socket the kernel disconnected first (its remote port cleared) was aborted by this host;
    /// - sequence space still unacknowledged (`idiag_wqueue` > 0: data, or the FIN itself) means
    ///   the FIN was not acknowledged: the connection was reset, or gave up;
    /// - with everything acknowledged, `tcpi_bytes_acked` is the SYN of an active open (a passive
    ///   open's SYN-ACK is never counted), every data byte once, and the FIN if one was sent:
    ///   acknowledged minus data sent once (`tcpi_bytes_sent - tcpi_bytes_retrans`) is 1 more for
    ///   an active open than for a passive one, and 1 more with a FIN than without. A difference
    ///   the two readings cannot explain (a send that failed on this host before it left is
    ///   counted twice by `tcpi_bytes_sent`) makes the report unusable, and so does 1 where the
    ///   side that opened is not known (a passive open with its FIN, or an active one without).
    ///
    /// Who sent the reset: this host for a disconnected socket; the peer when nothing was left
    /// unread (closing with unread data makes this host send one) and no retransmission or
    /// keepalive probe was waiting (a time-out sends none); otherwise not known.
    static func fromReport(_ report: FinalReport, lastState: TCPState, openedActively: Bool?) -> Ending? {
        if report.disconnected { return Ending(.reset, .kernel, resetBy: .thisHost) }
        guard let traffic = report.traffic, traffic.bytesRetransmitted <= traffic.bytesSent,
            traffic.bytesAcked <= UInt64(Int64.max), traffic.bytesSent <= UInt64(Int64.max)
        else { return nil }
        let finAcknowledged: Bool
        if report.unacknowledged > 0 {
            finAcknowledged = false
        } else {
            let margin = Int64(traffic.bytesAcked) - Int64(traffic.bytesSent - traffic.bytesRetransmitted)
            switch (openedActively, margin) {
            case (false, 1), (true, 2), (nil, 2): finAcknowledged = true
            case (false, 0), (true, 1), (nil, 0): finAcknowledged = false
            default: return nil
            }
        }
        if finAcknowledged { return Ending(lastState == .closeWait ? .passiveClose : .vanished, .kernel) }
        let sender: ResetSender? = report.unread == 0 && !report.retransmitting ? .peer : nil
        return Ending(.reset, .kernel, resetBy: sender)
    }

    /// What the kernel's reset counter (`Tcp: EstabResets`, net/snmp) says of one sample's
    /// candidates: the connections a sample saw alive that are now gone from ESTABLISHED or
    /// CLOSE_WAIT with no report of their own.
    ///
    /// The kernel adds one exactly when a socket goes from ESTABLISHED or CLOSE_WAIT straight to
    /// CLOSE (`tcp_set_state` in net/ipv4/tcp.c), for every socket in the namespace: the
    /// candidates, the closes already decided per connection, and sockets no read saw (on loopback
    /// both ends of a reset count). Each list of sockets is bracketed by two reads of the counters,
    /// since a list is not read in one instant.
    public struct CounterWindow: Sendable, Equatable {
        /// Resets counted between the end of the previous read and the start of this one: each of
        /// a socket the previous read saw alive, or of one opened since.
        public var resetsWithin: Int64?
        /// Resets counted from the start of the previous read to the end of this one: every
        /// candidate's reset, if it was one, is among them.
        public var resetsAround: Int64?
        /// Connections the kernel opened (`ActiveOpens` + `PassiveOpens`) from the start of the
        /// previous read to the end of this one that neither read saw: each may have been reset unseen.
        public var unseenOpens: Int64?
        /// Resets among the sample's closes that were decided per connection.
        public var attributed: Int = 0

        public init(resetsWithin: Int64? = nil, resetsAround: Int64? = nil, unseenOpens: Int64? = nil, attributed: Int = 0) {
            self.resetsWithin = resetsWithin
            self.resetsAround = resetsAround
            self.unseenOpens = unseenOpens
            self.attributed = attributed
        }
    }

    /// The counter's verdict on one of `candidates` connections: all were reset when the resets
    /// that only they can explain are at least as many as they are; none was when the kernel
    /// counted no reset at all around them; otherwise `ambiguous`. A graceful close is never
    /// called a reset: the resets of everything else that closed are taken out first.
    static func byCounters(_ connection: TrackedConnection, candidates: Int, window: CounterWindow) -> Ending {
        if window.resetsAround == 0 {
            return Ending(connection.state == .closeWait ? .passiveClose : .vanished, .counters)
        }
        if let within = window.resetsWithin, let unseen = window.unseenOpens,
            within - Int64(window.attributed) - unseen >= Int64(candidates)
        {
            return Ending(.reset, .counters)
        }
        return Ending(.ambiguous, .counters)
    }
}
