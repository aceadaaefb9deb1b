#if canImport(Glibc)
    import Glibc
#endif

/// The few system calls the readers need, in one place.
enum FileReading {
    /// Files past this size are refused: no real kernel table is this large, and a huge file
    /// given as `--proc-root` must not stall the collector.
    static let maximumSize = 1 << 30

    /// Reads the whole regular file at `path` into `buffer` (grown as needed, reused across calls).
    ///
    /// - Returns: the number of bytes read.
    static func read(_ path: String, into buffer: inout [UInt8]) throws(ConnLogError) -> Int {
        // O_NONBLOCK keeps a FIFO planted at the path from blocking the open.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw ConnLogError("cannot read \(path): \(errorText(errno))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw ConnLogError("cannot read \(path): not a regular file; point --proc-root at a proc filesystem")
        }
        if buffer.count < 64 * 1024 { buffer = [UInt8](repeating: 0, count: 64 * 1024) }
        var filled = 0
        while true {
            if filled == buffer.count {
                guard buffer.count < maximumSize else {
                    throw ConnLogError("cannot read \(path): larger than \(maximumSize >> 20) MiB; is --proc-root right?")
                }
                buffer.append(contentsOf: repeatElement(0, count: buffer.count))
            }
            let count = buffer.withUnsafeMutableBytes { raw in
                Glibc.read(fd, raw.baseAddress! + filled, raw.count - filled)
            }
            if count > 0 {
                filled += count
            } else if count == 0 {
                return filled
            } else if errno != EINTR {
                throw ConnLogError("cannot read \(path): \(errorText(errno))")
            }
        }
    }

    /// The whole file as text, or nil when it cannot be read.
    static func text(_ path: String) -> String? {
        var buffer: [UInt8] = []
        guard let count = try? read(path, into: &buffer) else { return nil }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }

    /// The target of the symbolic link at `path`, or nil.
    static func link(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 256)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count >= 0 else { return nil }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    static func errorText(_ code: Int32) -> String {
        String(cString: strerror(code))
    }

    /// Monotonic nanoseconds, for measuring and pacing.
    static func monotonicNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }
}
