import ArgumentParser
import ConnLog

@main
struct ConnLogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connlog",
        abstract: "Record a Linux host's TCP connection history into one SQLite file, and answer questions about it.",
        discussion: """
            Samples /proc/net/tcp and tcp6, turns the difference between samples into events \
            (a socket opened, changed state, closed) and keeps them in a documented schema \
            (docs/SCHEMA.md) that `sqlite3` can query too.
            """,
        version: ConnLogVersion.current,
        subcommands: [CollectCommand.self, StatusCommand.self, QueryCommand.self, SQLCommand.self, NetstatCommand.self, ExportCommand.self]
    )

    /// Runs the command; a SQLite error about the database file itself (damaged, full,
    /// read-only...) is said the way an operator needs it, whichever command met it.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let error as SQLiteError {
            exit(withError: error.path.flatMap { ConnLogError(aboutFile: error, path: $0) } ?? error)
        } catch {
            exit(withError: error)
        }
    }
}
