import ArgumentParser
import ConnLog

#if canImport(Glibc)
    import Glibc
#endif

/// `--db`, shared by every command that opens the database.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The database file (default: $CONNLOG_DB, else ./connlog.db).", valueName: "path"))
    var db: String?

    var path: String {
        if let db { return db }
        if let fromEnvironment = getenv("CONNLOG_DB").map({ String(cString: $0) }), !fromEnvironment.isEmpty {
            return fromEnvironment
        }
        return "connlog.db"
    }
}

/// A duration on the command line: `200ms`, `1s`, `1m`, `2h`, `30d`.
struct DurationArgument: ExpressibleByArgument, CustomStringConvertible {
    let milliseconds: Int64

    init(milliseconds: Int64) { self.milliseconds = milliseconds }

    init?(argument: String) {
        guard let value = TimeText.milliseconds(argument) else { return nil }
        milliseconds = value
    }

    var description: String { TimeText.duration(milliseconds) }

    static var defaultCompletionKind: CompletionKind { .default }
}

extension SocketSourceChoice: ExpressibleByArgument {}

/// A size in bytes: `65536`, `256k`, `4m`.
struct ByteCountArgument: ExpressibleByArgument {
    var bytes: Int

    init?(argument: String) {
        let text = argument.lowercased()
        let multiplier: Int
        switch text.last {
        case "k": multiplier = 1 << 10
        case "m": multiplier = 1 << 20
        case "g": multiplier = 1 << 30
        default: multiplier = 1
        }
        guard let number = Int(multiplier == 1 ? text : String(text.dropLast())), number > 0, number <= (1 << 31) / multiplier
        else { return nil }
        bytes = number * multiplier
    }
}

/// Output format for commands that print records.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

/// Writes a line to stderr, prefixed with the program name.
func warn(_ message: String) {
    var line = "connlog: \(message)\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
