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

    /// Now, in milliseconds since the Unix epoch (`CLOCK_REALTIME`).
    public static func nowMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
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

    /// A moment given as ISO-8601 (`2026-11-24T03:00:00Z`, `2026-11-24T03:00:00.5+01:00`,
    /// `2026-11-24 03:00`, `2026-11-24`; no zone means UTC) or as a duration ago (`90s`, `15m`,
    /// `2h`, `7d`), in milliseconds since the epoch; nil when it is neither.
    public static func instant(_ text: String, now: Int64) -> Int64? {
        let trimmed = text.trimmingSpaces
        if let ago = milliseconds(trimmed) { return now - ago }
        let bytes = Array(trimmed.utf8)
        var index = 0
        func number(_ digits: Int) -> Int32? {
            guard index + digits <= bytes.count else { return nil }
            var value: Int32 = 0
            for byte in bytes[index..<(index + digits)] {
                guard byte >= 48 && byte <= 57 else { return nil }
                value = value * 10 + Int32(byte - 48)
            }
            index += digits
            return value
        }
        func expect(_ characters: String) -> Bool {
            guard index < bytes.count, characters.utf8.contains(bytes[index]) else { return false }
            index += 1
            return true
        }
        guard let year = number(4), expect("-"), let month = number(2), expect("-"), let day = number(2) else { return nil }
        var hour: Int32 = 0
        var minute: Int32 = 0
        var second: Int32 = 0
        var millisecond: Int64 = 0
        var offset: Int64 = 0
        if index < bytes.count {
            guard expect("Tt "), let h = number(2), expect(":"), let m = number(2) else { return nil }
            hour = h
            minute = m
            if index < bytes.count && bytes[index] == UInt8(ascii: ":") {
                index += 1
                guard let s = number(2) else { return nil }
                second = s
                if index < bytes.count && bytes[index] == UInt8(ascii: ".") {
                    index += 1
                    var scale: Int64 = 100
                    var digits = 0
                    while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 {
                        millisecond += Int64(bytes[index] - 48) * scale
                        scale /= 10
                        index += 1
                        digits += 1
                    }
                    guard digits > 0 else { return nil }
                }
            }
            if index < bytes.count {
                if expect("Zz") {
                } else if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                    let sign: Int64 = bytes[index] == UInt8(ascii: "+") ? 1 : -1
                    index += 1
                    guard let oh = number(2) else { return nil }
                    _ = expect(":")  // +01:00 and +0100 are both ISO-8601
                    guard let om = number(2), oh < 24, om < 60 else { return nil }
                    offset = sign * (Int64(oh) * 3600 + Int64(om) * 60) * 1000
                } else {
                    return nil
                }
            }
        }
        guard index == bytes.count, (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else {
            return nil
        }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = month - 1
        parts.tm_mday = day
        parts.tm_hour = hour
        parts.tm_min = minute
        parts.tm_sec = second
        let seconds = timegm(&parts)
        // timegm normalises 31 February into March; a date that changed was not a date.
        guard parts.tm_mday == day, parts.tm_mon == month - 1 else { return nil }
        return Int64(seconds) * 1000 + millisecond - offset
    }
}

extension String {
    var trimmingSpaces: String {
        String(self.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
