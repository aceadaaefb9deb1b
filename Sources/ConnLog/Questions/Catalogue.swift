/// Every canned question, in the order `connlog query --list` shows them.
extension Question {
    public static let all: [Question] = [
        resets, failedConnects, stateDurations, timeline, peers, traffic, listeners, churn, retransmits, counters, gaps, ports,
    ]

    static let resets = Question(
        name: "resets",
        summary: "peers ranked by connections that ended in a reset",
        accepts: [.since, .until, .limit, .peer, .port],
        columns: [
            "peer", "resets", "failed_connects", "ambiguous", "connections", "last_reset", "reset_by_this_host", "reset_by_peer",
        ],
        caveats: [
            "reset_by_this_host and reset_by_peer count the resets whose sender the kernel told (netlink destroy notices); one that timed out, left data unread, or is known from the reset counter alone is in resets only"
        ],
        blindSpots: [.ambiguousEndings, .inferredResets, .unnamedEnds],
        sql: """
            SELECT ra.text AS peer,
                   sum(c.end_reason IS 3 AND c.closed_at BETWEEN :since AND :until) AS resets,
                   sum(c.end_reason IS 6 AND c.closed_at BETWEEN :since AND :until) AS failed_connects,
                   sum(c.end_reason IS 5 AND c.closed_at BETWEEN :since AND :until) AS ambiguous,
                   count(*) AS connections,
                   \(Fragment.iso("max(CASE WHEN c.end_reason = 3 AND c.closed_at BETWEEN :since AND :until THEN c.closed_at END)")) AS last_reset,
                   sum(c.end_reason IS 3 AND c.reset_by IS 1 AND c.closed_at BETWEEN :since AND :until) AS reset_by_this_host,
                   sum(c.end_reason IS 3 AND c.reset_by IS 2 AND c.closed_at BETWEEN :since AND :until) AS reset_by_peer
            FROM connections c JOIN addresses ra ON ra.id = c.remote_address
            WHERE c.direction <> 0 AND \(Fragment.aliveRows) AND \(Fragment.peerFilter) AND \(Fragment.portFilter)
            GROUP BY ra.id
            ORDER BY resets DESC, failed_connects DESC, ambiguous DESC, connections DESC, peer
            LIMIT :limit
            """,
        shortcut: Shortcut(
            absent: [.since, .until, .port],
            sql: """
                SELECT ra.text AS peer, sum(t.resets) AS resets, sum(t.failed_connects) AS failed_connects,
                       sum(t.ambiguous) AS ambiguous, sum(t.connections) AS connections,
                       \(Fragment.iso("max(t.last_reset)")) AS last_reset, sum(t.resets_by_this_host) AS reset_by_this_host,
                       sum(t.resets_by_peer) AS reset_by_peer
                \(Fragment.peerTotals)
                WHERE t.direction <> 0 AND \(Fragment.peerFilter)
                GROUP BY t.remote_address
                ORDER BY resets DESC, failed_connects DESC, ambiguous DESC, connections DESC, peer
                LIMIT :limit
                """))

    static let failedConnects = Question(
        name: "failed-connects",
        summary: "outbound connects that never established, by peer and port",
        accepts: [.since, .until, .limit, .peer, .port],
        columns: ["peer", "port", "failed_connects", "first_failed", "last_failed"],
        caveats: [
            "on the proc source, a connect refused or timed out within one sample interval leaves no row; Tcp.AttemptFails in `counters` counts them"
        ],
        blindSpots: [.unnamedEnds],
        sql: """
            SELECT ra.text AS peer, c.remote_port AS port, count(*) AS failed_connects,
                   \(Fragment.iso("min(c.closed_at)")) AS first_failed, \(Fragment.iso("max(c.closed_at)")) AS last_failed
            FROM connections c JOIN addresses ra ON ra.id = c.remote_address
            WHERE c.end_reason = 6 AND c.closed_at BETWEEN :since AND :until AND \(Fragment.peerFilter)
              AND (:port IS NULL OR c.remote_port = :port)
            GROUP BY c.remote_address, c.remote_port
            ORDER BY failed_connects DESC, peer, port
            LIMIT :limit
            """,
        shortcut: Shortcut(
            absent: [.since, .until],
            // Without a time condition SQLite reads the failures' own index, in group order, and
            // looks up only each group's address instead of every failure's.
            sql: """
                SELECT ra.text AS peer, f.port, f.failed_connects, \(Fragment.iso("f.first_failed")) AS first_failed,
                       \(Fragment.iso("f.last_failed")) AS last_failed
                FROM (SELECT c.remote_address, c.remote_port AS port, count(*) AS failed_connects,
                             min(c.closed_at) AS first_failed, max(c.closed_at) AS last_failed
                      FROM connections c WHERE c.end_reason = 6 AND (:port IS NULL OR c.remote_port = :port)
                      GROUP BY c.remote_address, c.remote_port) f
                JOIN addresses ra ON ra.id = f.remote_address
                WHERE \(Fragment.peerFilter)
                ORDER BY failed_connects DESC, peer, port
                LIMIT :limit
                """))

    /// A stay runs from the sample that first saw a state to the sample that saw it left. Stays
    /// entered at the start of a run of observation (the first sample, or the first after a gap
    /// or reboot), spanning two runs, or not left yet are cut by observation, and left out.
    /// Lengths are summed as whole milliseconds, so the totals in `stay_lengths` give the same
    /// figures to the last digit.
    static let stateDurations = Question(
        name: "state-durations",
        summary: "how long sockets stayed in each state: count, min, avg, p50, p95, max seconds",
        accepts: [.since, .until, .peer, .port, .state],
        columns: ["state", "count", "min_s", "avg_s", "p50_s", "p95_s", "max_s"],
        caveats: [
            "a stay counts from the sample that first saw the state to the one that saw it left, so each end is as precise as the sampling interval",
            "stays cut by the start or end of observation (a gap, a reboot, or still going) are left out",
            "a connection that lived and died between two samples (known from its netlink destroy notification) stayed in no state a sample saw",
            "a stay belongs to the time asked about when it began there",
        ],
        sql: """
            WITH ev AS (
                SELECT e.connection_id, e.kind, e.to_state, s.at, s.id AS sample_id, s.run,
                       LEAD(s.at) OVER next AS left_at, LEAD(s.run) OVER next AS left_run, LEAD(s.id) OVER next AS left_sample
                FROM events e JOIN samples s ON s.id = e.sample_id
                -- A stay that began in the window has its entry event there: only those connections matter.
                WHERE e.connection_id IN (SELECT w.connection_id FROM events w WHERE \(Fragment.eventIDRange(alias: "w")))
                WINDOW next AS (PARTITION BY e.connection_id ORDER BY e.id)
            ),
            stays AS (
                SELECT ev.to_state AS state, ev.left_at - ev.at AS milliseconds
                FROM ev JOIN connections c ON c.id = ev.connection_id JOIN addresses ra ON ra.id = c.remote_address
                WHERE ev.kind IN (1, 2) AND ev.left_run = ev.run AND ev.sample_id <> ev.run AND ev.left_sample <> ev.sample_id
                  AND ev.at BETWEEN :since AND :until AND (:state IS NULL OR ev.to_state = :state)
                  AND \(Fragment.peerFilter) AND \(Fragment.portFilter)
            ),
            ranked AS (
                SELECT state, milliseconds, ROW_NUMBER() OVER (PARTITION BY state ORDER BY milliseconds) AS rank,
                       count(*) OVER (PARTITION BY state) AS n
                FROM stays
            )
            SELECT COALESCE(ts.name, 'UNKNOWN') AS state, n AS count, min(milliseconds) / 1000.0 AS min_s,
                   round(sum(milliseconds) / 1000.0 / n, 3) AS avg_s,
                   max(CASE WHEN rank = (n * 50 + 99) / 100 THEN milliseconds END) / 1000.0 AS p50_s,
                   max(CASE WHEN rank = (n * 95 + 99) / 100 THEN milliseconds END) / 1000.0 AS p95_s,
                   max(milliseconds) / 1000.0 AS max_s
            FROM ranked LEFT JOIN tcp_states ts ON ts.code = ranked.state
            GROUP BY ranked.state
            ORDER BY count DESC, state, ranked.state
            """,
        shortcut: Shortcut(
            absent: [.since, .until, .peer, .port],
            // A percentile's rank is found by summing buckets up to the one that holds it, then
            // its length by summing that bucket's lengths (the least whose running count reaches
            // the rank); the least and greatest lengths are one lookup each.
            sql: """
                WITH buckets AS (
                    SELECT state, bucket, stays, sum(stays) OVER running - stays AS before, LEAD(bucket) OVER running AS next
                    FROM stay_length_buckets WHERE :state IS NULL OR state = :state
                    WINDOW running AS (PARTITION BY state ORDER BY bucket ROWS UNBOUNDED PRECEDING)
                ),
                states AS (
                    SELECT state, sum(stays) AS n, sum(milliseconds) AS milliseconds
                    FROM stay_length_buckets WHERE :state IS NULL OR state = :state GROUP BY state
                ),
                ranks AS (
                    SELECT state, 50 AS percent, (n * 50 + 99) / 100 AS rank FROM states
                    UNION ALL
                    SELECT state, 95, (n * 95 + 99) / 100 FROM states
                ),
                percentiles AS (
                    SELECT r.state, r.percent, (
                        SELECT min(milliseconds) FROM (
                            SELECT milliseconds, sum(stays) OVER (ORDER BY milliseconds ROWS UNBOUNDED PRECEDING) AS upto
                            FROM stay_lengths
                            WHERE state = b.state AND milliseconds BETWEEN b.bucket AND COALESCE(b.next - 1, \(Int64.max)))
                        WHERE b.before + upto >= r.rank) AS milliseconds
                    FROM ranks r JOIN buckets b ON b.state = r.state AND r.rank > b.before AND r.rank <= b.before + b.stays
                )
                SELECT COALESCE(ts.name, 'UNKNOWN') AS state, s.n AS count,
                       (SELECT min(milliseconds) FROM stay_lengths WHERE state = s.state) / 1000.0 AS min_s,
                       round(s.milliseconds / 1000.0 / s.n, 3) AS avg_s,
                       (SELECT milliseconds FROM percentiles WHERE state = s.state AND percent = 50) / 1000.0 AS p50_s,
                       (SELECT milliseconds FROM percentiles WHERE state = s.state AND percent = 95) / 1000.0 AS p95_s,
                       (SELECT max(milliseconds) FROM stay_lengths WHERE state = s.state) / 1000.0 AS max_s
                FROM states s LEFT JOIN tcp_states ts ON ts.code = s.state
                ORDER BY count DESC, state, s.state
                """))

    static let timeline = Question(
        name: "timeline",
        summary: "events in time order: opens, state changes, closes",
        accepts: [.since, .until, .limit, .peer, .port, .state],
        columns: [
            "time", "event", "from_state", "to_state", "local", "remote", "pid", "program", "bytes_acked", "bytes_received",
            "destroyed_at", "end_reason", "reset_by",
        ],
        caveats: [
            "a close shows how its connection ended (end_reason) and, for a reset whose sender the kernel's report told, who sent it (reset_by: this_host or peer)",
            "a close shows what its connection carried, when it was read over netlink: its final traffic once the kernel freed the socket, else the last read",
            "destroyed_at is when the kernel told it freed the socket, to the millisecond (netlink only): between the last sample that saw the connection and the close's time, or later for a socket its program held on to after a reset",
        ],
        sql: """
            SELECT \(Fragment.iso("s.at")) AS time, k.name AS event, fs.name AS from_state, ts.name AS to_state,
                   \(Fragment.endpoint("la", "c.local_port")) AS local, \(Fragment.endpoint("ra", "c.remote_port")) AS remote,
                   c.pid, p.name AS program, x.bytes_acked, x.bytes_received,
                   \(Fragment.iso("x.destroyed_at")) AS destroyed_at, r.name AS end_reason, rs.name AS reset_by
            \(Fragment.eventRows)
            LEFT JOIN connection_details x ON x.connection_id = c.id AND e.kind = 3
            LEFT JOIN end_reasons r ON r.code = c.end_reason AND e.kind = 3
            LEFT JOIN reset_senders rs ON rs.code = c.reset_by AND e.kind = 3
            WHERE \(Fragment.eventsInTime)
              AND (:peer IS NULL OR ra.text = :peer OR la.text = :peer) AND \(Fragment.portFilter)
              AND (:state IS NULL OR e.from_state = :state OR e.to_state = :state)
            ORDER BY e.id
            LIMIT :limit
            """)

    static let peers = Question(
        name: "peers",
        summary: "remote addresses by connections, with opens, closes, resets and bytes",
        accepts: [.since, .until, .limit, .peer, .port],
        columns: ["peer", "connections", "opens", "closes", "resets", "bytes_acked", "bytes_received", "first_seen", "last_seen"],
        caveats: [
            "bytes are summed over the connections read over netlink, each its whole life as tcp_info counts it; empty where none was (the proc source), and `traffic` has more"
        ],
        blindSpots: [.ambiguousEndings, .preexisting, .unnamedEnds],
        sql: """
            SELECT ra.text AS peer, count(*) AS connections,
                   sum(c.first_seen >= :since AND c.preexisting = 0) AS opens,
                   sum(c.closed_at IS NOT NULL AND c.end_reason IS NOT 7 AND c.closed_at BETWEEN :since AND :until) AS closes,
                   sum(c.end_reason IS 3 AND c.closed_at BETWEEN :since AND :until) AS resets,
                   sum(x.bytes_acked) AS bytes_acked, sum(x.bytes_received) AS bytes_received,
                   \(Fragment.iso("min(c.first_seen)")) AS first_seen,
                   \(Fragment.iso("max(COALESCE(c.last_seen, \(Fragment.latestSample)))")) AS last_seen
            FROM connections c JOIN addresses ra ON ra.id = c.remote_address
            LEFT JOIN connection_details x ON x.connection_id = c.id
            WHERE c.direction <> 0 AND \(Fragment.aliveRows) AND \(Fragment.peerFilter) AND \(Fragment.portFilter)
            GROUP BY ra.id
            ORDER BY connections DESC, peer
            LIMIT :limit
            """,
        shortcut: Shortcut(
            absent: [.since, .until, .port],
            sql: """
                SELECT ra.text AS peer, sum(t.connections) AS connections, sum(t.opens) AS opens, sum(t.closes) AS closes,
                       sum(t.resets) AS resets,
                       CASE WHEN sum(t.measured) > 0 THEN sum(t.bytes_acked) END AS bytes_acked,
                       CASE WHEN sum(t.measured) > 0 THEN sum(t.bytes_received) END AS bytes_received,
                       \(Fragment.iso("""
                           SELECT c.first_seen FROM connections c WHERE c.remote_address = t.remote_address AND c.direction <> 0
                           ORDER BY c.first_seen LIMIT 1
                           """)) AS first_seen,
                       \(Fragment.iso("""
                           CASE WHEN sum(t.still_open) > 0 THEN max(\(Fragment.latestSample), COALESCE(max(t.last_seen), \(Fragment.latestSample)))
                                ELSE max(t.last_seen) END
                           """)) AS last_seen
                \(Fragment.peerTotals)
                WHERE t.direction <> 0 AND \(Fragment.peerFilter)
                GROUP BY t.remote_address
                ORDER BY connections DESC, peer
                LIMIT :limit
                """))

    static let listeners = Question(
        name: "listeners",
        summary: "listening sockets: first and last seen, when each appeared and disappeared",
        accepts: [.since, .until, .limit, .port],
        columns: ["local", "program", "first_seen", "last_seen", "appeared", "disappeared", "status"],
        caveats: [
            "appeared is empty for a listener already there when observation began; disappeared is empty while it listens, or when it went while nothing was recording"
        ],
        sql: """
            SELECT \(Fragment.endpoint("la", "c.local_port")) AS local, p.name AS program,
                   \(Fragment.iso("c.first_seen")) AS first_seen,
                   \(Fragment.iso("COALESCE(c.last_seen, \(Fragment.latestSample))")) AS last_seen,
                   CASE WHEN c.preexisting = 1 THEN NULL ELSE \(Fragment.iso("c.first_seen")) END AS appeared,
                   CASE WHEN c.end_reason = 7 THEN NULL ELSE \(Fragment.iso("c.closed_at")) END AS disappeared,
                   CASE WHEN c.closed_at IS NULL THEN 'listening'
                        WHEN c.end_reason = 7 THEN 'gone while not recording' ELSE 'closed' END AS status
            FROM connections c
            JOIN addresses la ON la.id = c.local_address
            LEFT JOIN programs p ON p.id = c.program_id
            WHERE c.direction = 0 AND \(Fragment.alive) AND (:port IS NULL OR c.local_port = :port)
            ORDER BY c.local_port, c.first_seen
            LIMIT :limit
            """)

    static let churn = Question(
        name: "churn",
        summary: "opens, closes, resets and failed connects per time bucket (--bucket)",
        accepts: [.since, .until, .limit, .peer, .port, .bucket],
        columns: ["bucket", "opens", "closes", "resets", "failed_connects"],
        caveats: [
            "buckets with no open or close are not listed",
            "sockets already there when observation began are not counted as opens, nor closes that happened while nothing was recording",
        ],
        sql: """
            SELECT \(Fragment.iso("(s.at / :bucket) * :bucket")) AS bucket,
                   sum(e.kind = 1 AND c.preexisting = 0) AS opens,
                   sum(e.kind = 3 AND c.end_reason IS NOT 7) AS closes,
                   sum(e.kind = 3 AND c.end_reason = 3) AS resets,
                   sum(e.kind = 3 AND c.end_reason = 6) AS failed_connects
            FROM events e
            JOIN samples s ON s.id = e.sample_id
            JOIN connections c ON c.id = e.connection_id
            JOIN addresses ra ON ra.id = c.remote_address
            WHERE \(Fragment.eventsInTime)
              AND c.direction <> 0 AND \(Fragment.peerFilter) AND \(Fragment.portFilter)
            GROUP BY s.at / :bucket
            HAVING opens + closes > 0
            ORDER BY s.at / :bucket
            LIMIT :limit
            """,
        shortcut: Shortcut(
            absent: [.peer, .port], wholeMinuteBuckets: true,
            sql: """
                WITH minutes AS (
                    -- The whole minutes in [:since, :until], from the first to the last; none when first > last.
                    SELECT (:since + 59999) / 60000 AS first, (min(:until, \(Fragment.farFuture)) - 59999) / 60000 AS last
                ),
                counted AS (
                    SELECT m.minute * 60000 AS at, m.opens, m.closes, m.resets, m.failed_connects
                    FROM churn_minutes m, minutes WHERE m.minute BETWEEN minutes.first AND minutes.last
                    UNION ALL
                    -- The part-minutes before the first whole one and after the last, from their events.
                    SELECT s.at, e.kind = 1 AND c.preexisting = 0, e.kind = 3 AND c.end_reason IS NOT 7,
                           e.kind = 3 AND c.end_reason IS 3, e.kind = 3 AND c.end_reason IS 6
                    FROM events e JOIN samples s ON s.id = e.sample_id JOIN connections c ON c.id = e.connection_id
                    WHERE e.kind <> 2 AND c.direction <> 0 AND e.sample_id IN (
                        SELECT id FROM samples, minutes WHERE at BETWEEN :since AND min(:until, minutes.first * 60000 - 1)
                        UNION ALL
                        SELECT id FROM samples, minutes WHERE at BETWEEN max(:since, max(minutes.first, minutes.last + 1) * 60000) AND :until)
                )
                SELECT \(Fragment.iso("(at / :bucket) * :bucket")) AS bucket, sum(opens) AS opens, sum(closes) AS closes,
                       sum(resets) AS resets, sum(failed_connects) AS failed_connects
                FROM counted
                GROUP BY at / :bucket
                HAVING sum(opens) + sum(closes) > 0
                ORDER BY at / :bucket
                LIMIT :limit
                """))

    static let retransmits = Question(
        name: "retransmits",
        summary: "connections with retransmit timeouts or retransmitted segments, worst first, with their peers",
        accepts: [.since, .until, .limit, .peer, .port],
        columns: [
            "peer", "local", "remote", "max_retransmits", "retransmitted_segments", "segments_out", "first_seen", "closed_at", "end_reason",
            "program",
        ],
        caveats: [
            "max_retransmits is the kernel's unrecovered retransmit timeouts (retrnsmt) at the samples; Tcp.RetransSegs in `counters` counts every retransmitted segment",
            "retransmitted_segments and segments_out are the connection's whole life as tcp_info counts it (netlink source only; empty from the proc tables)",
        ],
        sql: """
            SELECT ra.text AS peer, \(Fragment.endpoint("la", "c.local_port")) AS local,
                   \(Fragment.endpoint("ra", "c.remote_port")) AS remote, c.max_retransmits,
                   x.retransmitted_segments, x.segments_out,
                   \(Fragment.iso("c.first_seen")) AS first_seen, \(Fragment.iso("c.closed_at")) AS closed_at,
                   r.name AS end_reason, p.name AS program
            FROM connections c
            JOIN addresses la ON la.id = c.local_address
            JOIN addresses ra ON ra.id = c.remote_address
            LEFT JOIN connection_details x ON x.connection_id = c.id
            LEFT JOIN end_reasons r ON r.code = c.end_reason
            LEFT JOIN programs p ON p.id = c.program_id
            WHERE c.id IN (SELECT id FROM connections WHERE max_retransmits > 0
                           UNION SELECT connection_id FROM connection_details WHERE retransmitted_segments > 0)
              AND \(Fragment.alive) AND \(Fragment.peerFilter) AND \(Fragment.portFilter)
            ORDER BY c.max_retransmits DESC, COALESCE(x.retransmitted_segments, 0) DESC, c.id
            LIMIT :limit
            """)

    static let traffic = Question(
        name: "traffic",
        summary:
            "remote addresses by bytes carried, with segments, retransmitted segments, RTT and short-lived connections (netlink source)",
        accepts: [.since, .until, .limit, .peer, .port],
        columns: [
            "peer", "connections", "short_lived", "bytes_acked", "bytes_received", "segments_out", "segments_in", "retransmitted_segments",
            "avg_rtt_ms",
        ],
        caveats: [
            "only connections read over netlink carry traffic: history from the proc tables is not in these figures",
            "a connection's figures are its whole life as tcp_info counts it (bytes_acked includes its SYN and FIN), the final ones once the kernel freed it; an open connection's are at most a minute old",
            "short_lived counts connections that opened and closed between two samples, known from the kernel's destroy notices alone",
        ],
        sql: """
            SELECT ra.text AS peer, count(*) AS connections, sum(x.between_samples) AS short_lived,
                   sum(x.bytes_acked) AS bytes_acked, sum(x.bytes_received) AS bytes_received,
                   sum(x.segments_out) AS segments_out, sum(x.segments_in) AS segments_in,
                   sum(x.retransmitted_segments) AS retransmitted_segments, round(avg(x.rtt_us) / 1000.0, 3) AS avg_rtt_ms
            -- CROSS JOIN keeps this order: only connections read over netlink are looked at.
            FROM connection_details x
            CROSS JOIN connections c ON c.id = x.connection_id
            JOIN addresses ra ON ra.id = c.remote_address
            WHERE c.direction <> 0 AND \(Fragment.alive) AND \(Fragment.peerFilter) AND \(Fragment.portFilter)
            GROUP BY ra.id
            ORDER BY COALESCE(sum(x.bytes_acked), 0) + COALESCE(sum(x.bytes_received), 0) DESC, connections DESC, peer
            LIMIT :limit
            """)

    /// Counters worth a rate; gauges such as Tcp.CurrEstab are left to --counter.
    static let rateCounters = [
        "Tcp.ActiveOpens", "Tcp.PassiveOpens", "Tcp.AttemptFails", "Tcp.EstabResets", "Tcp.RetransSegs", "Tcp.InErrs",
        "Tcp.OutRsts", "TcpExt.ListenOverflows", "TcpExt.ListenDrops", "TcpExt.TCPTimeouts", "TcpExt.TCPAbortOnTimeout",
        "TcpExt.TCPSynRetrans",
    ]

    static let counters = Question(
        name: "counters",
        summary: "kernel TCP counter increases and rates per time bucket (--bucket, --counter), like sar -n ETCP",
        accepts: [.since, .until, .limit, .bucket, .counter],
        columns: ["bucket", "counter", "increase", "per_second"],
        caveats: [
            "buckets in which a counter did not move are not listed",
            "increases are never taken across a gap or reboot; per_second divides by the time the samples in the bucket covered",
        ],
        sql: """
            WITH firsts AS (
                -- The first remaining sample of each run has no increase, so its time is not covered.
                SELECT min(id) AS id FROM samples GROUP BY run
            ),
            changes AS (
                -- Counters keep counting through a run of observation, and start again after a gap or reboot.
                SELECT c.counter_id, s.at, c.value - LAG(c.value) OVER (PARTITION BY c.counter_id, s.run ORDER BY c.sample_id) AS increase
                FROM counters c
                JOIN samples s ON s.id = c.sample_id
                WHERE c.counter_id IN (
                    SELECT id FROM counter_names
                    WHERE (:counter IS NULL AND name IN (\(rateCounters.map { "'\($0)'" }.joined(separator: ", ")))) OR name = :counter)
            ),
            increases AS (
                SELECT at / :bucket AS slot, counter_id, sum(increase) AS increase
                FROM changes
                WHERE increase IS NOT NULL AND increase <> 0 AND at BETWEEN :since AND :until
                GROUP BY 1, 2
            ),
            covered AS (
                SELECT at / :bucket AS slot, sum(at - after) AS milliseconds
                FROM samples WHERE id NOT IN (SELECT id FROM firsts) AND at BETWEEN :since AND :until
                GROUP BY at / :bucket
            )
            -- Joined, not looked up per row: the time covered is summed once per bucket.
            SELECT \(Fragment.iso("i.slot * :bucket")) AS bucket, cn.name AS counter, i.increase,
                   round(i.increase * 1000.0 / max(1, cv.milliseconds), 3) AS per_second
            FROM increases i JOIN counter_names cn ON cn.id = i.counter_id LEFT JOIN covered cv ON cv.slot = i.slot
            ORDER BY i.slot, cn.name
            LIMIT :limit
            """)

    static let gaps = Question(
        name: "gaps",
        summary: "periods when nothing was recording (a stopped collector, a pause, a reboot), or when destroy notices were dropped",
        accepts: [.since, .until, .limit],
        columns: ["namespace", "from", "to", "seconds", "reason"],
        caveats: [],
        sql: """
            WITH ordered AS (
                SELECT w.*, LAG(w.ended_at) OVER (PARTITION BY w.namespace_id ORDER BY w.id) AS previous_end
                FROM windows w
            ),
            found AS (
                SELECT namespace_id, previous_end AS gap_from, started_at AS gap_to, start_reason AS reason
                FROM ordered WHERE start_reason IN ('gap', 'reboot')
                UNION ALL
                SELECT namespace_id, ended_at, NULL, 'not recording since'
                FROM windows
                WHERE id IN (SELECT max(id) FROM windows GROUP BY namespace_id) AND :now - ended_at > 2 * interval_ms
                UNION ALL
                -- Recording, but not exactly: the kernel dropped destroy notices between these two samples.
                SELECT w.namespace_id, s.after, s.at, 'destroy notices dropped ' || s.destroys_lost || ' times'
                FROM samples s JOIN windows w ON w.id = s.window_id
                WHERE s.destroys_lost > 0
            )
            SELECT n.inode AS namespace, \(Fragment.iso("gap_from")) AS "from", \(Fragment.iso("gap_to")) AS "to",
                   (COALESCE(gap_to, :now) - gap_from) / 1000.0 AS seconds, reason
            FROM found JOIN namespaces n ON n.id = found.namespace_id
            WHERE COALESCE(gap_to, :now) >= :since AND gap_from <= :until
            ORDER BY gap_from
            LIMIT :limit
            """)

    static let ports = Question(
        name: "ports",
        summary: "connections by port class: well-known 0-1023, registered 1024-49151, dynamic 49152-65535",
        accepts: [.since, .until, .peer],
        columns: ["port_class", "connections", "inbound", "outbound", "listeners", "resets"],
        caveats: [
            "the class is of the service port: the local port of listeners and inbound connections, the remote port of outbound ones"
        ],
        sql: """
            WITH classified AS (
                SELECT c.* FROM connections c JOIN addresses ra ON ra.id = c.remote_address
                WHERE \(Fragment.aliveRows) AND \(Fragment.peerFilter)
            )
            SELECT CASE WHEN service_port < 1024 THEN 'well-known' WHEN service_port < 49152 THEN 'registered'
                        ELSE 'dynamic' END AS port_class,
                   count(*) AS connections, sum(direction = 1) AS inbound, sum(direction = 2) AS outbound,
                   sum(direction = 0) AS listeners, sum(end_reason IS 3 AND closed_at BETWEEN :since AND :until) AS resets
            FROM classified
            GROUP BY port_class
            ORDER BY min(service_port)
            """,
        shortcut: Shortcut(
            absent: [.since, .until, .port],
            sql: """
                SELECT CASE WHEN t.service_port < 1024 THEN 'well-known' WHEN t.service_port < 49152 THEN 'registered'
                            ELSE 'dynamic' END AS port_class,
                       sum(t.connections) AS connections, sum(CASE WHEN t.direction = 1 THEN t.connections ELSE 0 END) AS inbound,
                       sum(CASE WHEN t.direction = 2 THEN t.connections ELSE 0 END) AS outbound,
                       sum(CASE WHEN t.direction = 0 THEN t.connections ELSE 0 END) AS listeners, sum(t.resets) AS resets
                \(Fragment.peerTotals)
                WHERE \(Fragment.peerFilter)
                GROUP BY port_class
                ORDER BY min(t.service_port)
                """))

    /// Every event in the time asked about, with both sample times and how its connection ended;
    /// not a canned question but the raw material `connlog export` ships with the answers.
    public static let rawEvents = Question(
        name: "events",
        summary: "every event with its sample times, endpoints, process and how its connection ended",
        accepts: [.since, .until, .limit],
        columns: [
            "id", "at", "after", "event", "from_state", "to_state", "connection_id", "local", "remote", "pid", "program", "end_reason",
        ],
        caveats: [],
        sql: """
            SELECT e.id, \(Fragment.iso("s.at")) AS at, \(Fragment.iso("s.after")) AS after, k.name AS event,
                   fs.name AS from_state, ts.name AS to_state, e.connection_id,
                   \(Fragment.endpoint("la", "c.local_port")) AS local, \(Fragment.endpoint("ra", "c.remote_port")) AS remote,
                   c.pid, p.name AS program, r.name AS end_reason
            \(Fragment.eventRows)
            LEFT JOIN end_reasons r ON r.code = c.end_reason
            WHERE \(Fragment.eventsInTime)
            ORDER BY e.id
            LIMIT :limit
            """)
}
