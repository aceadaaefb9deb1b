import ArgumentParser
import ConnLog

#if canImport(Glibc)
    import Glibc
#endif

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write an incident bundle: one CSV per question, the raw events, and a README.",
        discussion: """
            The bundle is written into a new directory, which appears whole or not at all; an \\
            existing directory is never overwritten.

            Examples:
              connlog export --since "2026-11-24 03:00" --until "2026-11-24 04:00" --dir incident-0300
              connlog export --since 2h --dir /tmp/last-two-hours
            """
    )

    @OptionGroup var database: DatabaseOptions

    @OptionGroup var window: TimeWindowOptions

    @Option(help: ArgumentHelp("The directory to create.", valueName: "dir"))
    var dir: String

    @Option(help: ArgumentHelp("Bucket length for churn.csv and counters.csv (default 1m).", valueName: "duration"))
    var bucket: DurationArgument?

    func validate() throws {
        _ = try window.resolve()
    }

    func run() throws {
        let (since, until, now) = try window.resolve()
        guard !FileManagerLite.exists(dir) else {
            throw ConnLogError("\(dir) already exists; connlog never overwrites an export: choose a new --dir")
        }
        let store = try Store(path: database.path, access: .read)
        let staging = "\(dir).tmp-\(getpid())"
        guard mkdir(staging, 0o700) == 0 else {
            throw ConnLogError(
                "cannot create \(staging): \(String(cString: strerror(errno))); check that the parent directory exists and is writable")
        }
        do {
            let parameters = QuestionParameters(since: since, until: until, bucket: bucket?.milliseconds ?? 60_000, now: now)
            var files: [(name: String, summary: String, rows: Int)] = []
            var notes: [String] = []
            var seenNotes: Set<String> = []
            for question in Question.all + [Question.rawEvents] {
                let sink = try OutputSink(path: "\(staging)/\(question.name).csv")
                let writer = RecordWriter(format: .csv, columns: question.columns, sink: sink)
                var rows = 0
                let context = try store.ask(question, parameters) {
                    writer.write($0)
                    rows += 1
                }
                try sink.commit()
                files.append((question.name + ".csv", question.summary, rows))
                for note in context.notes where !question.caveats.contains(note) && seenNotes.insert(note).inserted {
                    notes.append(note)
                }
            }
            let readme = Self.readme(since: since, until: until, now: now, database: database.path, files: files, notes: notes)
            let sink = try OutputSink(path: "\(staging)/README.txt")
            sink.write(readme)
            try sink.commit()
            guard rename(staging, dir) == 0 else {
                throw ConnLogError("cannot rename \(staging) to \(dir): \(String(cString: strerror(errno)))")
            }
            print("wrote \(files.count + 1) files to \(dir)")
        } catch {
            FileManagerLite.removeTree(staging)
            throw error
        }
    }

    static func readme(
        since: Int64?, until: Int64?, now: Int64, database: String, files: [(name: String, summary: String, rows: Int)],
        notes: [String]
    ) -> String {
        var text = """
            connlog incident bundle
            =======================

            Database:   \(database)
            From:       \(since.map(TimeText.iso8601) ?? "the beginning of the recording")
            To:         \(until.map(TimeText.iso8601) ?? "the end of the recording")
            Written at: \(TimeText.iso8601(now)) by connlog \(ConnLogVersion.current)

            Each file is CSV (RFC 4180) with a header row; times are ISO-8601 UTC.


            """
        let width = files.map(\.name.count).max() ?? 0
        for file in files {
            text +=
                "\(file.name)\(String(repeating: " ", count: width - file.name.count))  \(file.summary) (\(file.rows) row\(file.rows == 1 ? "" : "s"))\n"
        }
        text += """

            How connections ended (end_reason): active_close, passive_close, reset (its FIN never
            acknowledged: an RST sent or received, or a time-out), vanished (a graceful close too quick to
            sample), ambiguous (no report of its own, and the kernel's reset counter cannot tell),
            failed_connect, failed_handshake, unobserved (closed while nothing was recording), listen_closed.
            reset_by says who sent a reset where the kernel told: this_host or peer.

            """
        if !notes.isEmpty {
            text += "\nWhat could not be seen:\n" + notes.map { "- \($0)\n" }.joined()
        }
        return text
    }
}

/// The few file-system calls the CLI needs beyond writing output.
enum FileManagerLite {
    static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    /// Removes a directory of plain files (an unfinished export).
    static func removeTree(_ path: String) {
        if let directory = opendir(path) {
            while let entry = readdir(directory) {
                let name = withUnsafePointer(to: &entry.pointee.d_name) {
                    String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
                }
                if name != "." && name != ".." { unlink("\(path)/\(name)") }
            }
            closedir(directory)
        }
        rmdir(path)
    }
}
