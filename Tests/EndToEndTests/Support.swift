import ConnLog
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The built `connlog` binary, next to the test bundle in the build folder.
let connlogBinary: URL = {
    var folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = folder.appendingPathComponent("connlog")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        folder.deleteLastPathComponent()
    }
    let fromPackage = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(".build/debug/connlog")
    return fromPackage
}()

struct Outcome {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs connlog (or `executable`) with `arguments` to completion.
@discardableResult
func run(
    _ arguments: [String], executable: URL = connlogBinary, directory: URL? = nil, environment: [String: String]? = nil
) throws -> Outcome {
    let process = try start(arguments, executable: executable, directory: directory, environment: environment)
    return process.finish()
}

/// A running child process with captured output.
final class Child {
    let process = Process()
    let stdout = Pipe()
    let stderr = Pipe()

    func finish() -> Outcome {
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        let err = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(
            status: process.terminationStatus, stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
    }

    func signal(_ number: Int32) { kill(process.processIdentifier, number) }
}

func start(_ arguments: [String], executable: URL = connlogBinary, directory: URL? = nil, environment: [String: String]? = nil) throws
    -> Child
{
    let child = Child()
    child.process.executableURL = executable
    child.process.arguments = arguments
    if let directory { child.process.currentDirectoryURL = directory }
    if let environment { child.process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    child.process.standardOutput = child.stdout
    child.process.standardError = child.stderr
    try child.process.run()
    return child
}

/// Polls `condition` every 50 ms for up to `seconds`.
func waitUntil(seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(50_000)
    }
    return try condition()
}

func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("connlog-e2e-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Reads the database the way a user's `sqlite3` would, through the library's read-only store.
func query(_ path: String, _ sql: String, _ values: [SQLValue] = []) throws -> [[String]] {
    let store = try Store(path: path, access: .read)
    var rows: [[String]] = []
    try store.database.forEach(sql, values) { row in
        rows.append((0..<row.columnCount).map { row.optionalText($0) ?? "NULL" })
    }
    return rows
}

/// What must hold in the database at `db` at any moment a reader can see it; empty when all holds.
///
/// - Parameter pruned: retention ran, so a connection's early events may be gone by design.
func consistencyProblems(_ db: String, pruned: Bool = false) throws -> [String] {
    guard FileManager.default.fileExists(atPath: db) else { return [] }
    var problems: [String] = []
    let checks: [(String, String)] = [
        ("PRAGMA integrity_check", "ok"),
        // Every window's sample count matches its samples: no sample is half-written.
        ("SELECT count(*) FROM windows w WHERE w.samples <> (SELECT count(*) FROM samples s WHERE s.window_id = w.id)", "0"),
        // No key is open twice in one namespace.
        (
            """
            SELECT count(*) FROM (SELECT 1 FROM connections WHERE closed_at IS NULL
            GROUP BY namespace_id, family, local_address, local_port, remote_address, remote_port HAVING count(*) > 1)
            """, "0"
        ),
        // No connection is closed twice, and closed rows have exactly one close event.
        ("SELECT count(*) FROM (SELECT connection_id FROM events WHERE kind = 3 GROUP BY connection_id HAVING count(*) > 1)", "0"),
        (
            "SELECT count(*) FROM connections c WHERE (c.closed_at IS NULL) <> (NOT EXISTS (SELECT 1 FROM events e WHERE e.connection_id = c.id AND e.kind = 3))",
            "0"
        ),
        // Every connection has its open event, and every event its connection and sample.
        (
            "SELECT count(*) FROM connections c WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.connection_id = c.id AND e.kind = 1)",
            "0"
        ),
        ("SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM connections c WHERE c.id = e.connection_id)", "0"),
        ("SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM samples s WHERE s.id = e.sample_id)", "0"),
        // Closed connections carry a reason; open ones none.
        ("SELECT count(*) FROM connections WHERE (closed_at IS NULL) <> (end_reason IS NULL)", "0"),
    ]
    for (sql, expected) in checks where !(pruned && sql.contains("e.kind = 1")) {
        let got = try query(db, sql).first?.first ?? "nothing"
        if got != expected { problems.append("\(sql.prefix(90))... gave \(got)") }
    }
    return problems
}

// MARK: Real sockets on loopback

struct SocketError: Error, CustomStringConvertible {
    let description: String
    init(_ call: String) { description = "\(call): \(String(cString: strerror(errno)))" }
}

/// Calls `call` (bind or connect) with `address` passed as a `sockaddr` and its length.
func withSocketAddress<Address>(_ address: Address, _ call: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
    var address = address
    return withUnsafePointer(to: &address) {
        call(UnsafeRawPointer($0).assumingMemoryBound(to: sockaddr.self), socklen_t(MemoryLayout<Address>.size))
    }
}

/// A listening-to-be TCP socket of `family` bound to `address` (port 0: an ephemeral one), with SO_REUSEADDR.
func boundSocket<Address>(_ family: Int32, _ address: Address) throws -> Int32 {
    let fd = Glibc.socket(family, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw SocketError("socket") }
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    guard withSocketAddress(address, { bind(fd, $0, $1) }) == 0 else {
        close(fd)
        throw SocketError("bind")
    }
    return fd
}

/// A listening TCP socket on an IPv4 loopback address and an ephemeral port.
func listenIPv4(_ address: String = "127.0.0.1") throws -> (fd: Int32, port: UInt16) {
    let fd = try boundSocket(AF_INET, sockaddr_in(address, port: 0))
    guard Glibc.listen(fd, 128) == 0 else {
        close(fd)
        throw SocketError("listen")
    }
    return (fd, localPort(fd))
}

/// A listening TCP socket on 127.0.0.1 whose port no other socket uses at either end: earlier
/// tests leave TIME_WAIT sockets behind, and a listener with SO_REUSEADDR may get one's port,
/// which questions asked by port would then count.
func quietListenerIPv4() throws -> (fd: Int32, port: UInt16) {
    var busy: [Int32] = []
    defer { for fd in busy { close(fd) } }
    let diag = try SockDiag()
    for _ in 0..<50 {
        let listener = try listenIPv4()
        var sightings: [Sighting] = []
        try diag.dump(into: &sightings)
        let others = sightings.filter {
            ($0.key.local.port == listener.port || $0.key.remote.port == listener.port) && $0.state != .listen
        }
        if others.isEmpty { return listener }
        busy.append(listener.fd)  // kept open until one is found, so the next listen gets another port
    }
    throw SocketError("no quiet port in 50 tries")
}

/// A listening TCP socket on ::1.
func listenIPv6() throws -> (fd: Int32, port: UInt16) {
    let fd = try boundSocket(AF_INET6, sockaddr_in6(loopbackPort: 0))
    guard Glibc.listen(fd, 128) == 0 else {
        close(fd)
        throw SocketError("listen")
    }
    return (fd, localPort(fd))
}

func connectIPv4(to port: UInt16, address: String = "127.0.0.1", from source: String? = nil) throws -> Int32 {
    let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw SocketError("socket") }
    if let source {
        guard withSocketAddress(sockaddr_in(source, port: 0), { bind(fd, $0, $1) }) == 0 else {
            close(fd)
            throw SocketError("bind")
        }
    }
    guard withSocketAddress(sockaddr_in(address, port: port), { Glibc.connect(fd, $0, $1) }) == 0 else {
        close(fd)
        throw SocketError("connect")
    }
    return fd
}

func connectIPv6(to port: UInt16) throws -> Int32 {
    let fd = Glibc.socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw SocketError("socket") }
    guard withSocketAddress(sockaddr_in6(loopbackPort: port), { Glibc.connect(fd, $0, $1) }) == 0 else {
        close(fd)
        throw SocketError("connect")
    }
    return fd
}

func acceptOne(_ listener: Int32) throws -> Int32 {
    let fd = Glibc.accept(listener, nil, nil)
    guard fd >= 0 else { throw SocketError("accept") }
    return fd
}

/// Makes `close` send a RST instead of a FIN (SO_LINGER with a zero timeout).
func setLingerZero(_ fd: Int32) {
    var option = linger(l_onoff: 1, l_linger: 0)
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
}

func localPort(_ fd: Int32) -> UInt16 {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    _ = withUnsafeMutablePointer(to: &storage) {
        getsockname(fd, UnsafeMutableRawPointer($0).assumingMemoryBound(to: sockaddr.self), &length)
    }
    return withUnsafePointer(to: &storage) { pointer in
        UnsafeRawPointer(pointer).assumingMemoryBound(to: sockaddr_in.self).pointee.sin_port.bigEndian
    }
}

extension sockaddr_in {
    init(_ address: String, port: UInt16) {
        self.init()
        sin_family = sa_family_t(AF_INET)
        sin_port = port.bigEndian
        inet_pton(AF_INET, address, &sin_addr)
    }
}

extension sockaddr_in6 {
    /// ::1 and `port`.
    init(loopbackPort port: UInt16) {
        self.init()
        sin6_family = sa_family_t(AF_INET6)
        sin6_addr = in6addr_loopback
        sin6_port = port.bigEndian
    }
}

/// Whether `/proc/net/tcp` still lists a socket with this local port.
func procListsLocalPort(_ port: UInt16) -> Bool {
    // Read to the end in a loop: proc files report size 0, and a large table spans many reads.
    let fd = open("/proc/net/tcp", O_RDONLY)
    guard fd >= 0 else { return true }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = read(fd, &chunk, chunk.count)
        if count <= 0 { break }
        bytes += chunk[..<count]
    }
    let needle = ":" + String(format: "%04X", port)
    return String(decoding: bytes, as: UTF8.self).split(separator: "\n").contains { line in
        let fields = line.split(separator: " ")
        return fields.count > 1 && fields[1].hasSuffix(needle)
    }
}

/// "local remote" of every ESTABLISHED socket to or from `127.0.0.1:port`, as `ss -tn` prints them.
func establishedBySS(port: UInt16) throws -> Set<String> {
    let ss = try run(
        ["-tnH", "state", "established", "( src 127.0.0.1:\(port) or dst 127.0.0.1:\(port) )"],
        executable: URL(fileURLWithPath: "/usr/bin/ss"))
    return Set(
        ss.stdout.split(separator: "\n").map { line -> String in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            return "\(fields[fields.count - 2]) \(fields[fields.count - 1])"
        })
}
