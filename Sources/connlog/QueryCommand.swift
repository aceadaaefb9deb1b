import ArgumentParser
import ConnLog

#if canImport(Glibc)
    import Glibc
#endif

struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Answer a canned question about the recorded history.",
        discussion: """
            `connlog query --list` names the questions. Each answer says when the time asked \\
            about holds gaps in the recording (on stderr, or in the JSON's "gaps" and "notes").

            Examples:
              connlog query resets --since 2h
              connlog query state-durations --state TIME_WAIT
              connlog query timeline --since "2026-11-24 03:00" --until "2026-11-24 03:15" --peer 10.0.0.7
              connlog query churn --bucket 5m --since 1d --format csv --output churn.csv
              connlog query counters --counter TcpExt.ListenOverflows --bucket 10s
            """
    )

    @OptionGroup var database: DatabaseOptions

    @Argument(
        help:
            "The question: resets, failed-connects, state-durations, timeline, peers, listeners, churn, retransmits, counters, gaps, ports."
    )
    var name: String?

    @Flag(help: "List the questions, one line each.")
    var list = false

    @OptionGroup var window: TimeWindowOptions

    @Option(help: "At most this many rows.")
    var limit: Int?

    @Option(help: ArgumentHelp("Only this remote address (10.0.0.7, ::1).", valueName: "address"))
    var peer: String?

    @Option(help: "Only connections with this local or remote port.")
    var port: Int?

    @Option(help: ArgumentHelp("Only this TCP state (TIME_WAIT, ESTABLISHED, ...).", valueName: "name"))
    var state: String?

    @Option(help: ArgumentHelp("Bucket length for churn and counters (default 1m).", valueName: "duration"))
    var bucket: DurationArgument?

    @Option(help: ArgumentHelp("One kernel counter for counters, e.g. Tcp.RetransSegs.", valueName: "name"))
    var counter: String?

    @OptionGroup var output: OutputOptions

    func validate() throws {
        if list { return }
        guard let name else { throw ValidationError("name a question, or use --list to see them") }
        guard let question = Question.named(name) else {
            throw ValidationError("no question called '\(name)'; the questions are: \(Question.all.map(\.name).joined(separator: ", "))")
        }
        let given: [(QuestionParameter, Bool)] = [
            (.since, window.since != nil), (.until, window.until != nil), (.limit, limit != nil), (.peer, peer != nil),
            (.port, port != nil), (.state, state != nil), (.bucket, bucket != nil), (.counter, counter != nil),
        ]
        for (parameter, isGiven) in given where isGiven && !question.accepts.contains(parameter) {
            throw ValidationError("--\(parameter.rawValue) does not apply to '\(name)'")
        }
        if let state, TCPState(name: state) == nil {
            throw ValidationError("'\(state)' is not a TCP state; use one of \(TCPState.known.map(\.name).joined(separator: ", "))")
        }
        if let peer, normalizedAddress(peer) == nil {
            throw ValidationError("'\(peer)' is not an IPv4 or IPv6 address")
        }
        if let port, !(0...65535).contains(port) { throw ValidationError("--port must be between 0 and 65535") }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        _ = try window.resolve()
    }

    func run() throws {
        if list {
            let width = Question.all.map(\.name.count).max() ?? 0
            for question in Question.all {
                print(question.name + String(repeating: " ", count: width - question.name.count + 2) + question.summary)
            }
            return
        }
        let question = Question.named(name!)!
        let (since, until, now) = try window.resolve()
        let parameters = QuestionParameters(
            since: since, until: until, limit: limit, peer: peer.flatMap(normalizedAddress), port: port,
            state: state.flatMap { TCPState(name: $0) }, bucket: bucket?.milliseconds ?? 60_000, counter: counter, now: now)
        let store = try Store(path: database.path, access: .read)
        if let counter, try store.database.scalarInt("SELECT count(*) FROM counter_names WHERE name = ?", [.text(counter)]) == 0 {
            throw ValidationError(
                "no counter called '\(counter)' was recorded; names look like Tcp.RetransSegs or TcpExt.ListenOverflows (connlog sql \"SELECT name FROM counter_names\" lists them)"
            )
        }
        let sink = try OutputSink(path: output.output, protecting: database.path)
        do {
            let writer = RecordWriter(format: output.format, columns: question.columns, sink: sink)
            let context = try store.ask(question, parameters) { writer.write($0) }
            try writer.finish(gaps: context.gaps, notes: context.notes)
        } catch {
            sink.abandon()
            throw error
        }
    }
}

/// `--since` and `--until`: ISO-8601 (no zone is UTC) or a duration ago.
struct TimeWindowOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "From this moment: 2026-11-24T03:00:00Z, \"2026-11-24 03:00\" (UTC), or a duration ago (90s, 15m, 2h, 7d).", valueName: "time"))
    var since: String?

    @Option(help: ArgumentHelp("Up to this moment, in the same forms.", valueName: "time"))
    var until: String?

    /// The window in milliseconds since the epoch, and now.
    func resolve() throws -> (since: Int64?, until: Int64?, now: Int64) {
        let now = TimeText.nowMilliseconds()
        func parse(_ text: String?, _ option: String) throws -> Int64? {
            guard let text else { return nil }
            guard let value = TimeText.instant(text, now: now) else {
                throw ValidationError(
                    "--\(option) '\(text)' is not a time; use ISO-8601 like 2026-11-24T03:00:00Z or \"2026-11-24 03:00\" (UTC), or a duration ago like 15m"
                )
            }
            return value
        }
        let since = try parse(since, "since")
        let until = try parse(until, "until")
        if let since, let until, since > until { throw ValidationError("--since is after --until") }
        return (since, until, now)
    }
}

/// The address as connlog writes it (`::1`, `10.0.0.7`), from any form `inet_pton` reads; brackets allowed.
func normalizedAddress(_ text: String) -> String? {
    var text = text.trimmingCharacters(in: " ")
    if text.hasPrefix("[") && text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
    var v4 = in_addr()
    if inet_pton(AF_INET, text, &v4) == 1 {
        return IPAddress(ipv4: UInt32(bigEndian: v4.s_addr)).description
    }
    var v6 = in6_addr()
    if inet_pton(AF_INET6, text, &v6) == 1 {
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        return IPAddress(bytes: bytes)?.description
    }
    return nil
}

extension String {
    func trimmingCharacters(in character: Character) -> String {
        String(drop { $0 == character }.reversed().drop { $0 == character }.reversed())
    }
}
