import ArgumentParser
import ConnLog

struct SQLCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sql",
        abstract: "Run one read-only SQL statement over the database.",
        discussion: """
            The database is opened read-only, and anything that would write, attach another \\
            file, change a setting or load an extension is refused. The views connections_v, \\
            events_v, samples_v, windows_v and counters_v show readable times, states and \\
            endpoints; docs/SCHEMA.md documents every table.

            Examples:
              connlog sql "SELECT end_reason, count(*) FROM connections_v GROUP BY end_reason"
              connlog sql "SELECT * FROM events_v WHERE remote LIKE '10.0.0.7:%'" --format csv --output events.csv
              connlog sql "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT x FROM n" --timeout 2s
            """
    )

    @OptionGroup var database: DatabaseOptions

    @Argument(help: "One SELECT (or WITH ... SELECT) statement.")
    var statement: String

    @Option(help: ArgumentHelp("Stop a query that runs longer than this (default 30s).", valueName: "duration"))
    var timeout: DurationArgument = DurationArgument(milliseconds: 30_000)

    @Option(help: "At most this many rows.")
    var limit: Int?

    @OptionGroup var output: OutputOptions

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    }

    func run() throws {
        let store = try Store(path: database.path, access: .read)
        let sink = try OutputSink(path: output.output, protecting: database.path)
        var writer: RecordWriter?
        var rows = 0
        do {
            var truncated = false
            try store.database.readOnlyQuery(statement, timeoutMilliseconds: timeout.milliseconds) { columns in
                writer = RecordWriter(format: output.format, columns: columns, sink: sink)
            } row: { row in
                if let limit, rows >= limit {
                    truncated = true
                    return false
                }
                writer?.write(row)
                rows += 1
                return true
            }
            try writer?.finish(notes: truncated ? ["stopped after --limit \(limit!) rows; more rows matched"] : [])
        } catch {
            sink.abandon()
            throw error
        }
    }
}
