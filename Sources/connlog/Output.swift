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

/// Bytes on their way to stdout or to a file that appears, whole, only when committed.
final class OutputSink {
    private var buffer: [UInt8] = []
    private let fd: Int32
    private let temporaryPath: String?
    private let finalPath: String?

    init(path: String?) throws {
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
    }

    func write(_ text: String) {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 1 << 16 { try? flush() }
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
        try flush()
        guard let temporaryPath, let finalPath else { return }
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
        self.columns = columns
        self.sink = sink
        switch format {
        case .csv: sink.write(columns.map(Self.csvField).joined(separator: ",") + "\r\n")
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
        // One line per row: a newline or tab inside a value would break the columns.
        return plainText(value).map { $0 == "\n" || $0 == "\r" || $0 == "\t" ? " " : $0 }.reduce(into: "") { $0.append($1) }
    }

    /// RFC 4180: quote a field holding a comma, a quote or a line break; double the quotes.
    static func csvField(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingAll("\"", with: "\"\"") + "\""
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
            row.map { $0.count > Self.maximumCellWidth ? String($0.prefix(Self.maximumCellWidth - 1)) + "…" : $0 }
        }
        var widths = columns.map(\.count)
        for row in cells {
            for (index, cell) in row.enumerated() where index < widths.count { widths[index] = max(widths[index], cell.count) }
        }
        let numeric = columns.indices.map { index in
            cells.contains { row in index < row.count && Double(row[index]) != nil }
                && cells.allSatisfy { row in index < row.count && (row[index] == "-" || Double(row[index]) != nil) }
        }
        func line(_ row: [String]) -> String {
            row.enumerated().map { index, cell in
                let padding = String(repeating: " ", count: widths[index] - cell.count)
                return numeric[index] ? padding + cell : (index == row.count - 1 ? cell : cell + padding)
            }.joined(separator: "  ")
        }
        var text = preamble + line(columns) + "\n"
        text += line(widths.map { String(repeating: "-", count: $0) }) + "\n"
        for row in cells { text += line(row) + "\n" }
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

    func replacingAll(_ target: Character, with replacement: String) -> String {
        var result = ""
        for character in self { if character == target { result += replacement } else { result.append(character) } }
        return result
    }
}
