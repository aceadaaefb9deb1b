import ConnLog

#if canImport(Glibc)
    import Glibc
#endif

/// Socket tables in the kernel's exact text format (`tcp4_seq_show` in net/ipv4/tcp_ipv4.c),
/// for sizes live sockets cannot reach. Every address is in 127.0.0.0/8.
enum SyntheticTable {
    static let header =
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     \n"

    /// `/proc/net/tcp` with `count` sockets: a few listeners, then established connections from
    /// 127.1.x.y peers, and every tenth one in TIME_WAIT (the short line form).
    static func ipv4(count: Int, firstInode: Int = 100_000) -> String {
        var text = header
        text.reserveCapacity(count * 160)
        for index in 0..<count {
            let slot = pad(String(index), 4) + ": "
            let peer = 0x7F01_0000 | UInt32(index / 50_000 % 256) << 8 | UInt32(index % 250 + 1)
            let peerHex = hex(peer.byteSwapped, 8)
            let port = hex(UInt32(10_000 + index % 50_000), 4)
            if index < 4 {
                text +=
                    slot + "0100007F:" + hex(UInt32([443, 5432, 6379, 8080][index]), 4)
                    + " 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 \(firstInode + index) 1 0000000000000000 100 0 0 10 0\n"
            } else if index % 10 == 0 {
                text +=
                    slot + "0100007F:01BB " + peerHex + ":" + port
                    + " 06 00000000:00000000 03:00000FA0 00000000     0        0 0 3 0000000000000000\n"
            } else {
                text +=
                    slot + "0100007F:01BB " + peerHex + ":" + port
                    + " 01 00000000:00000000 02:000AFC80 00000000  1000        0 \(firstInode + index) 1 0000000000000000 20 4 30 10 -1\n"
            }
        }
        return text
    }

    static func hex(_ value: UInt32, _ width: Int) -> String {
        pad(String(value, radix: 16, uppercase: true), width, with: "0")
    }

    static func pad(_ text: String, _ width: Int, with filler: Character = " ") -> String {
        String(repeating: filler, count: max(0, width - text.count)) + text
    }

    /// A proc-root directory holding `tcp` with `count` sockets, an empty `tcp6`, counters, a boot
    /// id and a namespace link, as `--proc-root` reads it.
    static func procRoot(at root: String, count: Int, firstInode: Int = 100_000) throws {
        for folder in ["", "/net", "/sys", "/sys/kernel", "/sys/kernel/random", "/self", "/self/ns"] {
            mkdir(root + folder, 0o755)
        }
        try write(root + "/net/tcp", ipv4(count: count, firstInode: firstInode))
        try write(root + "/net/tcp6", header)
        try write(root + "/net/snmp", "Tcp: RtoAlgorithm EstabResets CurrEstab\nTcp: 1 0 \(count)\n")
        try write(root + "/net/netstat", "TcpExt: ListenOverflows TW\nTcpExt: 0 0\n")
        try write(root + "/sys/kernel/random/boot_id", "11111111-2222-3333-4444-555555555555\n")
        unlink(root + "/self/ns/net")
        symlink("net:[4026532999]", root + "/self/ns/net")
    }

    static func write(_ path: String, _ text: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { fail("cannot create \(path)") }
        defer { close(fd) }
        var text = text
        let written = text.withUTF8 { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == text.utf8.count else { fail("cannot write \(path)") }
    }
}
