import ArgumentParser
import ConnLog

struct NetstatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "netstat",
        abstract: "Show the TCP socket table as it was at a moment, laid out like `netstat -ntp`.",
        discussion: """
            The table comes from the latest sample at or before --at. Like `netstat -nt`, \\
            listening sockets are left out unless --all is given. In CSV the columns are \\
            proto, recv_q, send_q, local, foreign, state, pid, program.

            Examples:
              connlog netstat --at "2026-11-24 03:12"
              connlog netstat --at 10m --state TIME_WAIT
              connlog netstat --at 2026-11-24T03:12:00Z --format csv --output table-0312.csv
            """
    )

    @OptionGroup var database: DatabaseOptions

    @Option(help: ArgumentHelp("The moment: 2026-11-24T03:12:00Z, \"2026-11-24 03:12\" (UTC), or a duration ago (10m).", valueName: "time"))
    var at: String

    @Option(help: ArgumentHelp("Only sockets in this state.", valueName: "name"))
    var state: String?

    @Flag(name: [.short, .long], help: "Include listening sockets.")
    var all = false

    @OptionGroup var output: OutputOptions

    func validate() throws {
        if let state, TCPState(name: state) == nil {
            throw ValidationError("'\(state)' is not a TCP state; use one of \(TCPState.known.map(\.name).joined(separator: ", "))")
        }
        if TimeText.instant(at, now: TimeText.nowMilliseconds()) == nil {
            throw ValidationError(
                "--at '\(at)' is not a time; use ISO-8601 like 2026-11-24T03:12:00Z or \"2026-11-24 03:12\" (UTC), or a duration ago like 10m"
            )
        }
    }

    func run() throws {
        let now = TimeText.nowMilliseconds()
        let moment = TimeText.instant(at, now: now)!
        let store = try Store(path: database.path, access: .read)
        guard try store.database.scalarInt("SELECT count(*) FROM samples WHERE at <= ?", [.integer(moment)]) ?? 0 > 0 else {
            let first =
                try store.database.scalarInt("SELECT min(at) FROM samples").map { "; recording began at \(TimeText.iso8601($0))" } ?? ""
            throw ConnLogError("nothing was recorded at or before \(TimeText.iso8601(moment))\(first)")
        }
        let sink = try OutputSink(path: output.output, protecting: database.path)
        do {
            if output.format == .table {
                var rows: [[SQLValue]] = []
                let (_, context) = try store.socketTable(
                    at: moment, state: state.flatMap { TCPState(name: $0) }, includeListeners: all, now: now
                ) { rows.append($0) }
                sink.write(Self.netstatLayout(rows))
                try sink.commit()
                for note in context.notes { warn("note: \(note)") }
            } else {
                let writer = RecordWriter(format: output.format, columns: Store.socketTableColumns, sink: sink)
                let (_, context) = try store.socketTable(
                    at: moment, state: state.flatMap { TCPState(name: $0) }, includeListeners: all, now: now
                ) { writer.write($0) }
                try writer.finish(gaps: context.gaps, notes: context.notes)
            }
        } catch {
            sink.abandon()
            throw error
        }
    }

    /// `netstat -ntp`'s columns: Proto, Recv-Q, Send-Q, Local Address, Foreign Address, State, PID/Program name.
    static func netstatLayout(_ rows: [[SQLValue]]) -> String {
        func text(_ value: SQLValue) -> String { RecordWriter.plainText(value) }
        func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
            let padding = String(repeating: " ", count: max(0, width - text.count))
            return right ? padding + text : text + padding
        }
        let local = max(23, rows.map { text($0[3]).count }.max() ?? 0)
        let foreign = max(23, rows.map { text($0[4]).count }.max() ?? 0)
        var out = "Proto Recv-Q Send-Q \(pad("Local Address", local)) \(pad("Foreign Address", foreign)) State       PID/Program name\n"
        for row in rows {
            let owner = text(row[6]).isEmpty ? "-" : "\(text(row[6]))/\(text(row[7]))"
            out += "\(pad(text(row[0]), 5)) \(pad(text(row[1]), 6, right: true)) \(pad(text(row[2]), 6, right: true)) "
            out += "\(pad(text(row[3]), local)) \(pad(text(row[4]), foreign)) \(pad(text(row[5]), 11)) \(owner)\n"
        }
        return out
    }
}
