import ArgumentParser
import ConnLog

#if canImport(Glibc)
    import Glibc
#endif

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Describe the database: size, schema, samples, connections, gaps, who is collecting.",
        discussion: """
            Examples:
              connlog status
              connlog status --db /var/lib/connlog/connlog.db --format json
              connlog status --check      # also read every page (PRAGMA integrity_check)
            """
    )

    @OptionGroup var database: DatabaseOptions

    @Option(help: "Output format: table or json.")
    var format: OutputFormat = .table

    @Flag(help: "Also check the whole file for damage (PRAGMA integrity_check; reads every page). Exits 1 when damaged.")
    var check = false

    func run() throws {
        let store = try Store(path: database.path, access: .read)
        if check {
            // Before anything else: damage can stop the status queries themselves.
            let problems = try store.integrityProblems(thorough: true)
            if !problems.isEmpty {
                for problem in problems { print(problem) }
                throw ConnLogError.damaged(database.path, "PRAGMA integrity_check found the problems listed above")
            }
        }
        let nowMilliseconds = TimeText.nowMilliseconds()
        let status = try store.status(now: nowMilliseconds)
        let every = status.interval.map { "every \(TimeText.duration($0))" } ?? ""
        let collecting: String
        switch status.collecting {
        case .collector(let pid): collecting = "collector pid \(pid), \(every)"
        case .cron: collecting = "collect --once from cron or a timer, \(every)"
        case .nothing: collecting = "nothing"
        }
        let sources = status.sources.map { span in
            "\(span.source): \(span.windows) window\(span.windows == 1 ? "" : "s"), \(span.samples) samples, "
                + "\(TimeText.iso8601(span.first)) to \(TimeText.iso8601(span.last))"
        }
        var notices: String?
        if let destroys = status.destroys {
            notices = "\(destroys) heard, \(status.betweenSamples) connections lived between samples"
            if status.unnamedEnds > 0 {
                notices! += ", \(status.unnamedEnds) sockets aborted or failed to connect between samples without their ports"
            }
            if status.destroysLost > 0, let last = status.lastDrop {
                notices! +=
                    "; destroy notices dropped \(status.destroysLost) times in \(status.samplesWithDrops) samples (last \(TimeText.iso8601(last))): closes there are dated by the samples alone and short-lived connections may be missing"
            }
        }
        /// Whole seconds, so the line reads "3s ago", not "3.127s ago".
        func ago(_ at: Int64) -> String { TimeText.duration(max(1000, (nowMilliseconds - at) / 1000 * 1000)) + " ago" }
        switch format {
        case .table:
            var rows: [(String, String)] = [
                ("path", status.path),
                ("size", byteText(status.sizeBytes)),
                ("schema version", "\(status.schemaVersion)"),
                ("first sample", status.firstSample.map(TimeText.iso8601) ?? "-"),
                ("last sample", status.lastSample.map { TimeText.iso8601($0) + " (\(ago($0)))" } ?? "-"),
                ("samples", "\(status.samples)"),
                ("connections", "\(status.connections) (\(status.openConnections) open)"),
                ("events", "\(status.events)"),
                ("windows", "\(status.windows)"),
                ("gaps", "\(status.gaps)"),
                ("namespaces", "\(status.namespaces)"),
                ("source", status.source ?? "-"),
            ]
            if sources.count > 1 { rows.append(("sources", sources.joined(separator: "; "))) }
            if let notices { rows.append(("destroy notices", notices)) }
            rows.append(("collecting", collecting))
            if check { rows.append(("integrity", "ok (PRAGMA integrity_check)")) }
            let width = rows.map(\.0.count).max() ?? 0
            for (name, value) in rows {
                print(name + String(repeating: " ", count: width - name.count + 2) + value)
            }
        case .json:
            func string(_ text: String?) -> String { text.map(jsonString) ?? "null" }
            func number(_ value: Int64?) -> String { value.map(String.init) ?? "null" }
            var fields: [(String, String)] = [
                ("path", string(status.path)),
                ("size_bytes", "\(status.sizeBytes)"),
                ("schema_version", "\(status.schemaVersion)"),
                ("first_sample", string(status.firstSample.map(TimeText.iso8601))),
                ("last_sample", string(status.lastSample.map(TimeText.iso8601))),
                ("samples", "\(status.samples)"),
                ("connections", "\(status.connections)"),
                ("open_connections", "\(status.openConnections)"),
                ("events", "\(status.events)"),
                ("windows", "\(status.windows)"),
                ("gaps", "\(status.gaps)"),
                ("namespaces", "\(status.namespaces)"),
                ("interval_ms", number(status.interval)),
                ("source", string(status.source)),
                ("sources", "[" + sources.map(jsonString).joined(separator: ", ") + "]"),
                ("destroy_notices", number(status.destroys)),
                ("destroy_notices_dropped", "\(status.destroysLost)"),
                ("samples_with_dropped_notices", "\(status.samplesWithDrops)"),
                ("between_samples", "\(status.betweenSamples)"),
                ("unnamed_ends", "\(status.unnamedEnds)"),
                ("collector_pid", number(status.collectorPID.map(Int64.init))),
                ("collecting", string(collecting)),
            ]
            if check { fields.append(("integrity", string("ok"))) }
            print("{" + fields.map { "\(jsonString($0.0)): \($0.1)" }.joined(separator: ", ") + "}")
        }
    }
}

func byteText(_ bytes: Int64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    guard unit > 0 else { return "\(bytes) bytes" }
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(tenths % 10) \(units[unit])"
}
