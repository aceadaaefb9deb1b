import ArgumentParser
import ConnLog

#if canImport(Glibc)
    import Glibc
#endif

/// How records are printed.
enum RecordFormat: String, ExpressibleByArgument, CaseIterable {
    /// Aligned columns for a terminal.
    case table
    /// RFC 4180, with a header row of snake_case names.
    case csv
    /// One object: `rows` (an array of objects with typed numbers and nulls), `gaps` and `notes`.
    case json
    /// One JSON object per row and line, streamed.
    case ndjson
}

/// `--format` and `--output`, shared by every command that prints records.
struct OutputOptions: ParsableArguments {
    @Option(help: "Output format: table, csv, json or ndjson.")
    var format: RecordFormat = .table

    @Option(help: ArgumentHelp("Write to this file (atomically: a failed run leaves no half-written file).", valueName: "file"))
    var output: String?
}

/// The temporary output file to remove if the user interrupts; read by a signal handler, so a C string.
nonisolated(unsafe) private var interruptedOutput: UnsafeMutablePointer<CChar>?

/// On SIGINT or SIGTERM while a file is being written: remove the temporary and exit like the signal would.
private let removeTemporaryOutput: @convention(c) (Int32) -> Void = { signal in
    if let path = interruptedOutput { unlink(path) }
    _exit(128 + signal)
}

/// Bytes on their way to stdout or to a file that appears, whole, only when committed.
final class OutputSink {
    private var buffer: [UInt8] = []
    /// The first write that failed; a sink that lost bytes must never be committed.
    private var failure: ConnLogError?
    private let fd: Int32
    private let temporaryPath: String?
    private let finalPath: String?

    /// - Parameter protecting: a database whose files the output must not replace.
    init(path: String?, protecting database: String? = nil) throws {
        if let path, let database, Self.sameFile(path, asAnyOf: [database, database + "-wal", database + "-shm"]) {
            throw ConnLogError("--output \(path) is the database itself; choose another file")
        }
        guard let path else {
            fd = 1
            temporaryPath = nil
            finalPath = nil
            return
        }
        let temporary = "\(path).tmp-\(getpid())"
        let opened = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard opened >= 0 else {
            throw ConnLogError("cannot write \(path): \(String(cString: strerror(errno))); check that the directory exists and is writable")
        }
        fd = opened
        temporaryPath = temporary
        finalPath = path
        interruptedOutput = strdup(temporary)
        signal(SIGINT, removeTemporaryOutput)
        signal(SIGTERM, removeTemporaryOutput)
        // A parent may have blocked them (the mask is inherited across exec); Ctrl-C must still work.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &signals, nil)
    }

    func write(_ text: String) {
        guard failure == nil else { return }
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 1 << 16 {
            do { try flush() } catch { failure = error as? ConnLogError ?? ConnLogError("\(error)") }
        }
    }

    private static func sameFile(_ path: String, asAnyOf others: [String]) -> Bool {
        var target = stat()
        guard stat(path, &target) == 0 else { return false }
        return others.contains { other in
            var info = stat()
            return stat(other, &info) == 0 && info.st_dev == target.st_dev && info.st_ino == target.st_ino
        }
    }

    func flush() throws {
        var offset = 0
        while offset < buffer.count {
            let written = buffer.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                let message = String(cString: strerror(errno))
                buffer.removeAll()
                throw ConnLogError("cannot write \(finalPath ?? "standard output"): \(message)")
            }
            offset += written
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Writes what is left; for a file, syncs it and renames it into place.
    func commit() throws {
        if let failure {
            abandon()
            throw failure
        }
        do { try flush() } catch {
            abandon()
            throw error
        }
        guard let temporaryPath, let finalPath else { return }
        defer { forgetTemporary() }
        guard fsync(fd) == 0, close(fd) == 0, rename(temporaryPath, finalPath) == 0 else {
            let message = String(cString: strerror(errno))
            unlink(temporaryPath)
            throw ConnLogError("cannot write \(finalPath): \(message)")
        }
    }

    /// Drops a file that will not be completed.
    func abandon() {
        guard let temporaryPath else { return }
        close(fd)
        unlink(temporaryPath)
        forgetTemporary()
    }

    private func forgetTemporary() {
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
        free(interruptedOutput)
        interruptedOutput = nil
    }
}

/// Writes rows of SQL values in one of the record formats.
final class RecordWriter {
    let format: RecordFormat
    let columns: [String]
    private let sink: OutputSink
    private var tableRows: [[String]] = []
    private var rowCount = 0
    private let showProgress = isatty(2) == 1

    init(format: RecordFormat, columns: [String], sink: OutputSink) {
        self.format = format
        // JSON objects need distinct keys: a second "a" becomes "a_2".
        var seen: [String: Int] = [:]
        self.columns = columns.map { name in
            seen[name, default: 0] += 1
            return seen[name]! == 1 ? name : "\(name)_\(seen[name]!)"
        }
        self.sink = sink
        switch format {
        case .csv: sink.write(self.columns.map(Self.csvField).joined(separator: ",") + "\r\n")
        case .json: sink.write("{\"rows\": [")
        case .table, .ndjson: break
        }
    }

    func write(_ row: [SQLValue]) {
        switch format {
        case .table:
            tableRows.append(row.map(Self.tableText))
        case .csv:
            sink.write(row.map { Self.csvField(Self.plainText($0)) }.joined(separator: ",") + "\r\n")
        case .json:
            sink.write((rowCount == 0 ? "\n  " : ",\n  ") + jsonObject(row))
        case .ndjson:
            sink.write(jsonObject(row) + "\n")
        }
        rowCount += 1
        if showProgress && format != .table && rowCount % 100_000 == 0 {
            FileHandleStandardError.write("\r\(rowCount) rows")
        }
    }

    /// Ends the output; for JSON, adds what could not be seen. Notes go to stderr for the other formats.
    func finish(gaps: [Gap] = [], notes: [String] = []) throws {
        if showProgress && rowCount >= 100_000 && format != .table { FileHandleStandardError.write("\r\(rowCount) rows\n") }
        switch format {
        case .table:
            sink.write(renderTable())
        case .csv, .ndjson:
            break
        case .json:
            let gapObjects = gaps.map { gap in
                "{\"from\": \(jsonString(TimeText.iso8601(gap.from))), \"to\": \(gap.to.map { jsonString(TimeText.iso8601($0)) } ?? "null"), \"reason\": \(jsonString(gap.reason))}"
            }
            sink.write(
                (rowCount == 0 ? "" : "\n") + "], \"gaps\": [" + gapObjects.joined(separator: ", ") + "], \"notes\": ["
                    + notes.map(jsonString).joined(separator: ", ") + "]}\n")
        }
        try sink.commit()
        if format != .json {
            for note in notes { warn("note: \(note)") }
        }
    }

    private func jsonObject(_ row: [SQLValue]) -> String {
        "{" + zip(columns, row).map { "\(jsonString($0)): \(Self.jsonValue($1))" }.joined(separator: ", ") + "}"
    }

    static func jsonValue(_ value: SQLValue) -> String {
        switch value {
        case .null: return "null"
        case .integer(let v): return String(v)
        case .real(let v): return v.isFinite ? String(v) : "null"
        case .text(let v): return jsonString(v)
        case .blob(let v): return jsonString(v.map { String(format2: $0) }.joined())
        }
    }

    static func plainText(_ value: SQLValue) -> String {
        switch value {
        case .null: return ""
        case .integer(let v): return String(v)
        case .real(let v): return String(v)
        case .text(let v): return v
        case .blob(let v): return v.map { String(format2: $0) }.joined()
        }
    }

    static func tableText(_ value: SQLValue) -> String {
        if case .null = value { return "-" }
        // One line per row: a line break, tab or other control character would break the columns.
        var scalars = String.UnicodeScalarView()
        for scalar in plainText(value).unicodeScalars {
            scalars.append(scalar.value < 0x20 || scalar.value == 0x7F ? " " : scalar)
        }
        return String(scalars)
    }

    /// RFC 4180: quote a field holding a comma, a quote or a line break; double the quotes.
    /// Checked by scalar: "\r\n", or a comma followed by a combining mark, is one Character.
    static func csvField(_ text: String) -> String {
        let special: Set<Unicode.Scalar> = [",", "\"", "\n", "\r"]
        guard text.unicodeScalars.contains(where: special.contains) else { return text }
        var scalars = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if scalar == "\"" { scalars.append("\"") }
            scalars.append(scalar)
        }
        return "\"" + String(scalars) + "\""
    }

    /// Terminal columns a text takes: East Asian wide characters take two, combining marks none.
    static func displayWidth(_ text: String) -> Int {
        text.unicodeScalars.reduce(0) { width, scalar in
            switch scalar.value {
            case 0x0300...0x036F, 0x200B...0x200F, 0xFE00...0xFE0F: return width
            case 0x1100...0x115F, 0x2E80...0xA4CF, 0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE30...0xFE4F, 0xFF00...0xFF60,
                0xFFE0...0xFFE6, 0x1F300...0x1F64F, 0x1F900...0x1F9FF, 0x20000...0x3FFFD:
                return width + 2
            default: return width + 1
            }
        }
    }

    /// The terminal's width when stdout is one (`TIOCGWINSZ`), else nil.
    static func terminalWidth() -> Int? {
        guard isatty(1) == 1 else { return nil }
        var size = winsize()
        guard ioctl(1, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 20 else { return 80 }
        return Int(size.ws_col)
    }

    /// `2026-11-24T03:12:00.123Z`.
    static func isTimestamp(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.count == 24 && bytes[4] == UInt8(ascii: "-") && bytes[10] == UInt8(ascii: "T") && bytes[23] == UInt8(ascii: "Z")
    }

    /// Widest cell shown in a table; longer values are cut with an ellipsis (the other formats keep them whole).
    static let maximumCellWidth = 48

    private func renderTable() -> String {
        var rows = tableRows
        // ISO times take 24 columns each; when they all fall on one day, the day is said once.
        var preamble = ""
        let times = rows.flatMap { $0.filter(Self.isTimestamp) }
        if let first = times.first, times.allSatisfy({ $0.prefix(10) == first.prefix(10) }) {
            rows = rows.map { $0.map { Self.isTimestamp($0) ? String($0.dropFirst(11).dropLast()) : $0 } }
            preamble = "times are UTC on \(first.prefix(10))\n"
        }
        let cells = rows.map { row in
            row.map { Self.displayWidth($0) > Self.maximumCellWidth ? String($0.prefix(Self.maximumCellWidth - 1)) + "…" : $0 }
        }
        var widths = columns.map(Self.displayWidth)
        for row in cells {
            for (index, cell) in row.enumerated() where index < widths.count {
                widths[index] = max(widths[index], Self.displayWidth(cell))
            }
        }
        // On a terminal, narrow the widest columns until the table fits (csv and json keep every value whole).
        let screen = Self.terminalWidth()
        while let screen, widths.reduce(2 * (widths.count - 1), +) > screen,
            let widest = widths.indices.max(by: { widths[$0] < widths[$1] }), widths[widest] > 12
        {
            widths[widest] -= 1
        }
        let fitted = cells.map { row in
            row.enumerated().map { index, cell in
                index < widths.count && Self.displayWidth(cell) > widths[index]
                    ? String(cell.prefix(max(1, widths[index] - 1))) + "…" : cell
            }
        }
        let numeric = columns.indices.map { index in
            cells.contains { row in index < row.count && Double(row[index]) != nil }
                && cells.allSatisfy { row in index < row.count && (row[index] == "-" || Double(row[index]) != nil) }
        }
        func line(_ row: [String]) -> String {
            row.enumerated().map { index, cell in
                let padding = String(repeating: " ", count: max(0, widths[index] - Self.displayWidth(cell)))
                return numeric[index] ? padding + cell : (index == row.count - 1 ? cell : cell + padding)
            }.joined(separator: "  ")
        }
        var text =
            preamble
            + line(
                columns.enumerated().map { index, name in
                    Self.displayWidth(name) > widths[index] ? String(name.prefix(max(1, widths[index] - 1))) + "…" : name
                }) + "\n"
        text += line(widths.map { String(repeating: "-", count: $0) }) + "\n"
        for row in fitted { text += line(row) + "\n" }
        if cells.isEmpty { text += "(no rows)\n" }
        return text
    }
}

enum FileHandleStandardError {
    static func write(_ text: String) {
        var text = text
        text.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

extension String {
    init(format2 byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
    }

}

/// A JSON string literal (RFC 8259 escaping).
func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20:
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}
