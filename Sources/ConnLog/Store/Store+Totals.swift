/// Adding a sample's own rows to the running totals (`peer_totals`, `churn_minutes`,
/// `stay_lengths`).
///
/// A sample's opens, closes and events are added by one grouped statement per table at the end
/// of its transaction: a burst of 100k closes costs three statements, not three trigger runs per
/// row. Every later change to rows already counted (a close taken back, a reason revised,
/// retention) is followed by the triggers in `Migrations/`, so the totals stay exact whoever
/// changes history. The statements match the migrations' rebuilds restricted to one sample;
/// RollupTests hold them to those rebuilds. (A connection's traffic reaches `peer_totals` by
/// trigger on each write of its details: how much it changed is known only against the row the
/// write replaces.)
extension Store {
    func addToTotals(sample sampleID: Int64) throws {
        let sample = SQLValue.integer(sampleID)
        // Its new connections (open events) and its closes, per remote address, direction and service port.
        try database.cached(
            """
            INSERT INTO peer_totals (remote_address, direction, service_port, connections, still_open, opens, closes, resets,
                                     failed_connects, ambiguous, last_seen, last_reset, resets_by_this_host, resets_by_peer,
                                     resets_told, resets_inferred)
            SELECT c.remote_address, c.direction, c.service_port,
                   sum(e.kind = 1), sum(e.kind = 1) - sum(e.kind = 3), sum(e.kind = 1 AND c.preexisting = 0),
                   sum(e.kind = 3 AND c.end_reason IS NOT 7), sum(e.kind = 3 AND c.end_reason IS 3),
                   sum(e.kind = 3 AND c.end_reason IS 6), sum(e.kind = 3 AND c.end_reason IS 5),
                   max(CASE WHEN e.kind = 3 THEN c.last_seen END),
                   max(CASE WHEN e.kind = 3 AND c.end_reason = 3 THEN c.closed_at END),
                   sum(e.kind = 3 AND c.end_reason IS 3 AND c.reset_by IS 1), sum(e.kind = 3 AND c.end_reason IS 3 AND c.reset_by IS 2),
                   sum(e.kind = 3 AND c.end_reason IS 3 AND c.end_basis IS 2), sum(e.kind = 3 AND c.end_reason IS 3 AND c.end_basis IS 3)
            FROM events e JOIN connections c ON c.id = e.connection_id
            WHERE e.sample_id = ?1 AND e.kind <> 2
            GROUP BY 1, 2, 3
            ON CONFLICT DO UPDATE SET
                connections = connections + excluded.connections, still_open = still_open + excluded.still_open,
                opens = opens + excluded.opens, closes = closes + excluded.closes, resets = resets + excluded.resets,
                failed_connects = failed_connects + excluded.failed_connects, ambiguous = ambiguous + excluded.ambiguous,
                resets_by_this_host = resets_by_this_host + excluded.resets_by_this_host,
                resets_by_peer = resets_by_peer + excluded.resets_by_peer, resets_told = resets_told + excluded.resets_told,
                resets_inferred = resets_inferred + excluded.resets_inferred,
                last_seen = CASE WHEN last_seen IS NULL OR excluded.last_seen > last_seen THEN excluded.last_seen ELSE last_seen END,
                last_reset = CASE WHEN last_reset IS NULL OR excluded.last_reset > last_reset THEN excluded.last_reset
                                  ELSE last_reset END
            """
        ).run([sample])
        // Its opens and closes of connections other than listeners, in the sample's minute.
        try database.cached(
            """
            INSERT INTO churn_minutes
            SELECT s.at / 60000, sum(e.kind = 1 AND c.preexisting = 0), sum(e.kind = 3 AND c.end_reason IS NOT 7),
                   sum(e.kind = 3 AND c.end_reason IS 3), sum(e.kind = 3 AND c.end_reason IS 6)
            FROM events e JOIN samples s ON s.id = e.sample_id JOIN connections c ON c.id = e.connection_id
            WHERE e.sample_id = ?1 AND e.kind <> 2 AND c.direction <> 0
            GROUP BY 1
            ON CONFLICT (minute) DO UPDATE SET
                opens = opens + excluded.opens, closes = closes + excluded.closes, resets = resets + excluded.resets,
                failed_connects = failed_connects + excluded.failed_connects
            """
        ).run([sample])
        // The stays its events ended: each from its connection's previous event, when that is in
        // an earlier sample of the same run that does not begin it. (An open is a connection's
        // first event: it ends nothing. A connection known from its destroy notification alone
        // opens and closes in one sample: it stayed nowhere that a sample saw.)
        try database.cached(
            """
            INSERT INTO stay_lengths (state, milliseconds, stays)
            SELECT p.to_state, n.at - b.at, count(*)
            FROM samples n, events e, events p, samples b
            WHERE n.id = ?1 AND n.id <> n.run AND e.sample_id = ?1 AND e.kind <> 1
              AND p.id = (SELECT max(id) FROM events WHERE connection_id = e.connection_id AND id < e.id)
              AND p.kind IN (1, 2) AND b.id = p.sample_id AND b.run = n.run AND b.id <> b.run AND b.id <> n.id
            GROUP BY 1, 2
            ON CONFLICT DO UPDATE SET stays = stays + excluded.stays
            """
        ).run([sample])
    }
}
