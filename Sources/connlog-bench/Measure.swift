import ConnLog

#if canImport(Glibc)
    import Glibc
#endif

/// Monotonic nanoseconds.
func now() -> Int64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
}

/// Runs `body` `runs` times and returns each run's duration in milliseconds.
func timings(runs: Int, _ body: () throws -> Void) rethrows -> [Double] {
    var results: [Double] = []
    for _ in 0..<runs {
        let started = now()
        try body()
        results.append(Double(now() - started) / 1_000_000)
    }
    return results
}

/// Median, minimum and maximum of a set of measurements.
struct Spread: CustomStringConvertible {
    let median: Double
    let min: Double
    let max: Double

    init(_ values: [Double]) {
        let sorted = values.sorted()
        median = sorted.isEmpty ? 0 : (sorted[(sorted.count - 1) / 2] + sorted[sorted.count / 2]) / 2
        min = sorted.first ?? 0
        max = sorted.last ?? 0
    }

    var description: String { "\(format(median)) (\(format(min))-\(format(max)))" }
}

/// A number with three significant digits, at most.
func format(_ value: Double) -> String {
    let magnitude = abs(value)
    let decimals = magnitude >= 100 ? 0 : magnitude >= 10 ? 1 : magnitude >= 1 ? 2 : 3
    var text = String(Int((value * pow(10, Double(decimals))).rounded()))
    guard decimals > 0 else { return text }
    let negative = text.hasPrefix("-")
    if negative { text.removeFirst() }
    while text.count <= decimals { text = "0" + text }
    text.insert(".", at: text.index(text.endIndex, offsetBy: -decimals))
    return (negative ? "-" : "") + text
}

/// The process's peak resident set, in MiB.
func peakResidentMiB() -> Double {
    var usage = rusage()
    getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_maxrss) / 1024
}

/// One line of results, `name: value` pairs, for scripts/bench to put into tables.
func report(_ task: String, _ fields: [(String, String)]) {
    print(([("task", task)] + fields).map { "\($0.0)=\($0.1)" }.joined(separator: " "))
}

func printError(_ text: String) {
    var text = text
    _ = text.withUTF8 { write(2, $0.baseAddress, $0.count) }
}

func fail(_ message: String) -> Never {
    printError("connlog-bench: \(message)\n")
    exit(1)
}

/// A scratch database path, removed with its WAL when the process ends normally.
func scratchDatabase(_ name: String) -> String {
    let directory = String(cString: getenv("TMPDIR") ?? strdup("/tmp"))
    let path = "\(directory)/connlog-bench-\(getpid())-\(name).db"
    for suffix in ["", "-wal", "-shm", ".lock"] { unlink(path + suffix) }
    return path
}

func removeDatabase(_ path: String) {
    for suffix in ["", "-wal", "-shm", ".lock"] { unlink(path + suffix) }
}

/// Bytes SQLite uses for each table and index, from the `dbstat` virtual table.
func bytesByObject(_ database: Database) throws -> [String: Int64] {
    var sizes: [String: Int64] = [:]
    try database.forEach("SELECT name, sum(pgsize) FROM dbstat GROUP BY name") { row in
        sizes[row.optionalText(0) ?? ""] = row.optionalInt64(1) ?? 0
    }
    return sizes
}
