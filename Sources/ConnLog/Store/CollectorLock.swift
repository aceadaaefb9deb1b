#if canImport(Glibc)
    import Glibc
#endif

/// The right to record into one database, held by at most one collector at a time.
///
/// An open-file-description lock (`F_OFD_SETLK`) on `<db>.lock`, which holds the holder's pid.
/// The kernel drops it when the holder exits, however it exits, so a killed collector never
/// blocks the next one; unlike a POSIX lock it is not lost when another descriptor on the file
/// is closed, and unlike `flock` it can be tested without being taken.
public final class CollectorLock {
    private let fd: Int32
    /// The lock file's path.
    public let path: String

    // From <fcntl.h> with _GNU_SOURCE, which the Glibc module does not define.
    private static let ofdGetLock: Int32 = 36
    private static let ofdSetLock: Int32 = 37

    /// Takes the lock for the database at `databasePath`, or throws when another collector holds it.
    public init(databasePath: String) throws(ConnLogError) {
        path = Self.lockPath(for: databasePath)
        // Everything that can fail happens before `fd` is stored, so `deinit` only ever sees a held lock.
        fd = try Self.acquire(path, databasePath: databasePath)
        let text = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, text, text.count, 0)
    }

    private static func acquire(_ path: String, databasePath: String) throws(ConnLogError) -> Int32 {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw ConnLogError(
                "cannot create \(path): \(FileReading.errorText(errno)); make the database's directory writable, or pass another --db")
        }
        var request = Self.request(type: Int16(F_WRLCK))
        guard fcntl(fd, Self.ofdSetLock, &request) == 0 else {
            let code = errno
            close(fd)
            if code == EAGAIN || code == EACCES {
                let holder = Self.holder(databasePath: databasePath).map { " (pid \($0))" } ?? ""
                throw ConnLogError(
                    "another connlog collector\(holder) is already recording into \(databasePath); stop it first, or pass another --db")
            }
            throw ConnLogError("cannot lock \(path): \(FileReading.errorText(code))")
        }
        return fd
    }

    deinit {
        _ = ftruncate(fd, 0)
        close(fd)
    }

    /// The pid of the collector recording into `databasePath`, or nil when none is.
    public static func holder(databasePath: String) -> Int32? {
        let path = lockPath(for: databasePath)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var probe = request(type: Int16(F_WRLCK))
        guard fcntl(fd, ofdGetLock, &probe) == 0, probe.l_type != Int16(F_UNLCK) else { return nil }
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = pread(fd, &buffer, buffer.count, 0)
        let text = count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : ""
        return Int32(text.filter(\.isNumber)) ?? -1
    }

    /// `<db>.lock` beside the database's real path, so that a symbolic link (or `./x.db` and
    /// `/abs/x.db`) names the same lock. (A hard link to the database would not; do not make one.)
    static func lockPath(for databasePath: String) -> String {
        if let real = FileReading.realPath(databasePath) { return real + ".lock" }
        // Not created yet: resolve its directory.
        let name = databasePath.split(separator: "/").last.map(String.init) ?? databasePath
        if let real = FileReading.realPath(Store.directory(of: databasePath)) { return real + "/" + name + ".lock" }
        return databasePath + ".lock"
    }

    private static func request(type: Int16) -> flock {
        var request = flock()
        request.l_type = type
        request.l_whence = Int16(SEEK_SET)
        request.l_start = 0
        request.l_len = 0
        request.l_pid = 0
        return request
    }
}

@available(*, unavailable)
extension CollectorLock: Sendable {}
