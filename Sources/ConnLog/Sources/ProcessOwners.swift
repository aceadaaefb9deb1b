#if canImport(Glibc)
    import Glibc
#endif

/// Finds which process holds each socket inode, like `netstat -p`, walking `/proc/<pid>/fd` only
/// for inodes it has not looked up before.
///
/// Walking every descriptor of every process is what makes `netstat -tanp` take seconds on a
/// busy host; here a found owner is remembered for as long as its inode is in the table, an
/// inode that could not be attributed (another user's process, or already gone) is not looked
/// up again, and processes already known to hold sockets are searched first.
final class ProcessOwners {
    private let processRoot: String
    private var known: [UInt64: ProcessOwner] = [:]
    private var unattributable: Set<UInt64> = []
    private var socketHolders: Set<Int32> = []
    private var linkBuffer = [CChar](repeating: 0, count: 64)

    /// - Parameter processRoot: the directory holding the `<pid>` directories, usually `/proc`.
    init(processRoot: String) {
        self.processRoot = processRoot
    }

    /// Remembers owners found by an earlier run (`collect --once` from cron starts with an
    /// empty cache otherwise, and would walk every process's descriptors every minute).
    /// Without them, one socket no visible process holds would make every cron run walk every
    /// descriptor of every process again.
    func seed(owners: [UInt64: ProcessOwner], unattributable inodes: Set<UInt64>) {
        known.merge(owners) { current, _ in current }
        unattributable.formUnion(inodes.subtracting(known.keys))
        socketHolders.formUnion(owners.values.map(\.pid))
    }

    /// Owners of the given inodes (those that could be found), looking up only new ones.
    ///
    /// A sample costs a cache probe per socket. The caches are trimmed to the table's inodes only
    /// once they have grown to twice its size: socket inode numbers only rise (`get_next_ino`),
    /// so an entry for a socket that has gone is never mistaken for a new one meanwhile.
    func owners(of inodes: some Collection<UInt64>) -> [UInt64: ProcessOwner] {
        var wanted: Set<UInt64> = []
        for inode in inodes where inode != 0 && known[inode] == nil && !unattributable.contains(inode) {
            wanted.insert(inode)
        }
        if !wanted.isEmpty { search(for: &wanted) }
        unattributable.formUnion(wanted)
        if known.count + unattributable.count > 2 * inodes.count + 64 {
            let current = Set(inodes)
            known = known.filter { current.contains($0.key) }
            unattributable.formIntersection(current)
        }
        return known
    }

    private func search(for wanted: inout Set<UInt64>) {
        let pids = processIDs()
        let holders = pids.filter { socketHolders.contains($0) }
        let others = pids.filter { !socketHolders.contains($0) }
        socketHolders.formIntersection(pids)
        for pid in holders + others {
            scan(pid: pid, for: &wanted)
            if wanted.isEmpty { return }
        }
    }

    private func scan(pid: Int32, for wanted: inout Set<UInt64>) {
        let fdDirectory = "\(processRoot)/\(pid)/fd"
        guard let directory = opendir(fdDirectory) else { return }
        defer { closedir(directory) }
        var program: String?
        while let entry = readdir(directory) {
            let name = Self.name(of: entry)
            guard name.first != "." else { continue }
            guard let inode = socketInode(atPath: "\(fdDirectory)/\(name)") else { continue }
            socketHolders.insert(pid)
            guard wanted.contains(inode) else { continue }
            if program == nil {
                program =
                    FileReading.text("\(processRoot)/\(pid)/comm").map {
                        $0.hasSuffix("\n") ? String($0.dropLast()) : $0
                    } ?? "?"
            }
            known[inode] = ProcessOwner(pid: pid, program: program!)
            wanted.remove(inode)
            if wanted.isEmpty { return }
        }
    }

    /// The inode of a descriptor that is a socket (`socket:[12345]`), or nil.
    private func socketInode(atPath path: String) -> UInt64? {
        let count = readlink(path, &linkBuffer, linkBuffer.count)
        guard count > 9 else { return nil }
        return linkBuffer.withUnsafeBufferPointer { buffer -> UInt64? in
            let prefix = "socket:["
            for (index, byte) in prefix.utf8.enumerated() where UInt8(bitPattern: buffer[index]) != byte {
                return nil
            }
            var value: UInt64 = 0
            // An inode is at most 20 digits; a longer "number" in a crafted proc-root is not one.
            guard count - 1 - prefix.utf8.count <= 20 else { return nil }
            for index in prefix.utf8.count..<(count - 1) {
                let byte = UInt8(bitPattern: buffer[index])
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
                guard !overflow1 && !overflow2 else { return nil }
                value = sum
            }
            return UInt8(bitPattern: buffer[count - 1]) == UInt8(ascii: "]") ? value : nil
        }
    }

    private func processIDs() -> [Int32] {
        guard let directory = opendir(processRoot) else { return [] }
        defer { closedir(directory) }
        var pids: [Int32] = []
        while let entry = readdir(directory) {
            if let pid = Int32(Self.name(of: entry)) { pids.append(pid) }
        }
        return pids
    }

    private static func name(of entry: UnsafeMutablePointer<dirent>) -> String {
        withUnsafePointer(to: &entry.pointee.d_name) { pointer in
            String(cString: UnsafeRawPointer(pointer).assumingMemoryBound(to: CChar.self))
        }
    }
}
