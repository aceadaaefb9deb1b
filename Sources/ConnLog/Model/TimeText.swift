#if canImport(Glibc)
    import Glibc
#endif

/// Durations and times as people type and read them: `200ms`, `90s`, `15m`, `2h`, `7d`, and ISO-8601 UTC.
public enum TimeText {
    /// Milliseconds in `text`, a number followed by `ms`, `s`, `m`, `h` or `d` (`1.5s` works too);
    /// nil when it is not a positive duration.
    public static func milliseconds(_ text: String) -> Int64? {
        let units: [(String, Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        let trimmed = text.lowercased().filter { !$0.isWhitespace }
        for (suffix, scale) in units where trimmed.hasSuffix(suffix) {
            let number = trimmed.dropLast(suffix.count)
            // "ms" also ends in "s"; only a number may precede the unit.
            guard !number.isEmpty, number.allSatisfy({ $0.isNumber || $0 == "." }), let value = Double(number) else { continue }
            let result = value * scale
            guard result >= 1, result < Double(Int64.max / 2) else { return nil }
            return Int64(result.rounded())
        }
        return nil
    }

    /// A duration the way `milliseconds` reads it back: `200ms`, `1s`, `1m30s`, `2h`, `7d`.
    public static func duration(_ milliseconds: Int64) -> String {
        if milliseconds < 1000 { return "\(milliseconds)ms" }
        if milliseconds % 1000 != 0 && milliseconds < 60_000 {
            return "\(Double(milliseconds) / 1000)s"
        }
        var seconds = milliseconds / 1000
        var parts: [String] = []
        for (unit, size) in [("d", Int64(86_400)), ("h", 3600), ("m", 60), ("s", 1)] where seconds >= size {
            parts.append("\(seconds / size)\(unit)")
            seconds %= size
        }
        return parts.joined()
    }

    /// `2026-11-24T03:12:00.123Z` for milliseconds since the Unix epoch.
    public static func iso8601(_ milliseconds: Int64) -> String {
        var seconds = time_t(milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000)
        let fraction = milliseconds - Int64(seconds) * 1000
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(fraction), 3))Z"
    }
}
