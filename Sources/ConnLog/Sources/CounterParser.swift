/// Parses the name/value line pairs of `/proc/net/snmp` and `/proc/net/netstat`.
///
/// Each protocol prints a header line (`Tcp: RtoAlgorithm RtoMin ...`) followed by a value
/// line with the same prefix (`Tcp: 1 200 ...`); see `snmp_seq_show` in net/ipv4/proc.c.
public enum CounterParser {
    /// The counters of the given prefixes (`"Tcp"`, `"TcpExt"`) as `Prefix.Name`, e.g. `Tcp.EstabResets`.
    public static func parse(_ text: String, prefixes: Set<String>) -> [String: Int64] {
        var result: [String: Int64] = [:]
        var pendingNames: (prefix: String, names: [Substring])?
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let prefix = String(line[..<colon])
            guard prefixes.contains(prefix) else { continue }
            let fields = line[line.index(after: colon)...].split(separator: " ", omittingEmptySubsequences: true)
            if let pending = pendingNames, pending.prefix == prefix {
                for (name, value) in zip(pending.names, fields) {
                    if let number = Int64(value) { result["\(prefix).\(name)"] = number }
                }
                pendingNames = nil
            } else {
                pendingNames = (prefix, fields)
            }
        }
        return result
    }
}
