#if canImport(Glibc)
    import Glibc
#endif

/// The few system calls the readers need, in one place.
enum FileReading {
    /// Files past this size are refused: no real kernel table is this large, and a huge file
    /// given as `--proc-root` must not stall the collector.
    static let maximumSize = 1 << 30

    /// Opens the regular file at `path` for reading; anything else (a FIFO, a directory) is refused.
    private static func openRegularFile(_ path: String) throws(ConnLogError) -> Int32 {
        // O_NONBLOCK keeps a FIFO planted at the path from blocking the open.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw ConnLogError("cannot read \(path): \(errorText(errno))") }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw ConnLogError("cannot read \(path): not a regular file; point --proc-root at a proc filesystem")
        }
        return fd
    }

    /// Reads the whole regular file at `path` into `buffer` (grown as needed, reused across calls).
    ///
    /// - Returns: the number of bytes read.
    static func read(_ path: String, into buffer: inout [UInt8]) throws(ConnLogError) -> Int {
        try read(path, buffer: &buffer, whole: true) { _ in }
    }

    /// Reads the regular file at `path` in pieces that each end at a line break (the last one
    /// may not), handing each to `body` as it arrives: a large table is parsed through a small
    /// buffer instead of being held whole. `buffer` is reused across calls, and grows only for a
    /// line longer than itself.
    static func readLines(_ path: String, buffer: inout [UInt8], _ body: (UnsafeRawBufferPointer) -> Void) throws(ConnLogError) {
        _ = try read(path, buffer: &buffer, whole: false, body)
    }

    /// The reading loop of both: keeps everything when `whole`, else hands over whole lines.
    private static func read(
        _ path: String, buffer: inout [UInt8], whole: Bool, _ body: (UnsafeRawBufferPointer) -> Void
    ) throws(ConnLogError) -> Int {
        let fd = try openRegularFile(path)
        defer { close(fd) }
        // Pieces of a large table want a roomy buffer; a whole small file (comm, boot_id, snmp) a small one.
        let initial = whole ? 4096 : 256 * 1024
        if buffer.count < initial { buffer = [UInt8](repeating: 0, count: initial) }
        var filled = 0
        var total = 0
        while true {
            if filled == buffer.count {
                // Refused before growing: a huge file must not make the buffer huge.
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
                total += count
                guard total <= maximumSize else {
                    throw ConnLogError("cannot read \(path): larger than \(maximumSize >> 20) MiB; is --proc-root right?")
                }
                if whole { continue }
                // Hand over everything up to the last line break; only the new bytes can hold it.
                var end = filled
                while end > filled - count && buffer[end - 1] != newline { end -= 1 }
                guard end > filled - count else { continue }
                buffer.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[..<end])) }
                buffer.withUnsafeMutableBytes { raw in
                    _ = memmove(raw.baseAddress!, raw.baseAddress! + end, filled - end)
                }
                filled -= end
            } else if count == 0 {
                if !whole && filled > 0 { buffer.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[..<filled])) } }
                return filled
            } else if errno != EINTR {
                throw ConnLogError("cannot read \(path): \(errorText(errno))")
            }
        }
    }

    private static let newline = UInt8(ascii: "\n")

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

    /// `path` with every symbolic link resolved, or nil when it does not exist.
    static func realPath(_ path: String) -> String? {
        guard let pointer = realpath(path, nil) else { return nil }
        defer { free(pointer) }
        return String(cString: pointer)
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
