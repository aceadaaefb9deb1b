/// The open connections by key: a dense array, found through a compact open-addressing index.
///
/// Each index slot is 8 bytes (32 bits of the key's fingerprint, and the connection's position),
/// against about 250 bytes for a bucket of Swift's `Dictionary<SocketKey, TrackedConnection>`,
/// so at 100k sockets the index is 2 MiB and mostly stays in cache: a lookup reads one slot and
/// then the connection itself. Positions are dense, so "which connections did this sample not
/// see" is an array of flags rather than a second hash lookup per socket.
struct ConnectionTable: Sendable {
    /// The connections, in no particular order; removal moves the last one into the gap.
    private(set) var connections: [TrackedConnection] = []
    /// 0: empty; otherwise the fingerprint's low 32 bits << 32 | (position + 1).
    private var slots: [UInt64] = []

    init() {}

    init(_ connections: some Sequence<TrackedConnection>) {
        self.connections = Array(connections)
        rebuild(capacity: self.connections.count)
    }

    var count: Int { connections.count }
    var isEmpty: Bool { connections.isEmpty }

    /// The position of the connection with `key`, if open.
    func position(of key: SocketKey) -> Int? {
        guard !slots.isEmpty else { return nil }
        let tag = Self.tag(key)
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: tag) & mask
        while true {
            let entry = slots[slot]
            if entry == 0 { return nil }
            if entry >> 32 == tag {
                let position = Int(truncatingIfNeeded: entry & 0xFFFF_FFFF) - 1
                if connections[position].key == key { return position }
            }
            slot = (slot + 1) & mask
        }
    }

    /// The position of the connection with `key`, if open, trying `likely` before the index.
    func position(of key: SocketKey, likely: Int) -> Int? {
        if likely < connections.count && connections[likely].key == key { return likely }
        return position(of: key)
    }

    /// The connection at `position`. Callers may change anything but its key.
    subscript(position: Int) -> TrackedConnection {
        get { connections[position] }
        _modify { yield &connections[position] }
    }

    /// Adds a connection whose key is not open.
    mutating func insert(_ connection: TrackedConnection) {
        if (connections.count + 1) * 2 > slots.count { rebuild(capacity: connections.count + 1) }
        connections.append(connection)
        place(tag: Self.tag(connection.key), position: connections.count - 1)
    }

    /// Makes room for `count` connections without growing step by step.
    mutating func reserveCapacity(_ count: Int) {
        connections.reserveCapacity(count)
        if count * 2 > slots.count { rebuild(capacity: count) }
    }

    /// Removes the connections at `positions` (each at most once).
    mutating func remove(at positions: [Int]) {
        // Highest first: the connection moved into each gap comes from the end, past every
        // position still to be removed.
        for position in positions.sorted(by: >) { remove(at: position) }
    }

    mutating func removeAll() {
        connections.removeAll()
        slots = []
    }

    private mutating func remove(at position: Int) {
        let key = connections[position].key
        unplace(slot: slot(of: key, position: position))
        let last = connections.count - 1
        if position != last {
            let moved = connections[last].key
            let movedSlot = slot(of: moved, position: last)
            slots[movedSlot] = Self.tag(moved) << 32 | UInt64(position + 1)
            connections[position] = connections[last]
        }
        connections.removeLast()
    }

    /// The slot that holds `position`, found by probing from the key's home slot.
    private func slot(of key: SocketKey, position: Int) -> Int {
        let mask = slots.count - 1
        let entry = Self.tag(key) << 32 | UInt64(position + 1)
        var slot = Int(truncatingIfNeeded: Self.tag(key)) & mask
        while slots[slot] != entry { slot = (slot + 1) & mask }
        return slot
    }

    private mutating func place(tag: UInt64, position: Int) {
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: tag) & mask
        while slots[slot] != 0 { slot = (slot + 1) & mask }
        slots[slot] = tag << 32 | UInt64(position + 1)
    }

    /// Empties `slot` and shifts back the entries after it that probed past it (no tombstones).
    private mutating func unplace(slot: Int) {
        let mask = slots.count - 1
        var hole = slot
        var next = slot
        while true {
            next = (next + 1) & mask
            let entry = slots[next]
            if entry == 0 { break }
            let home = Int(truncatingIfNeeded: entry >> 32) & mask
            // The entry may move into the hole if its home is not cyclically in (hole, next].
            let homeIsBetween = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next)
            if !homeIsBetween {
                slots[hole] = entry
                hole = next
            }
        }
        slots[hole] = 0
    }

    /// Sizes the index for `capacity` connections at most half full, and refills it.
    private mutating func rebuild(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [UInt64](repeating: 0, count: size)
        for (position, connection) in connections.enumerated() { place(tag: Self.tag(connection.key), position: position) }
    }

    /// 32 bits of the key's fingerprint: the home slot and the quick check before comparing keys.
    @inline(__always) static func tag(_ key: SocketKey) -> UInt64 {
        Tracker.fingerprint(key) >> 32
    }
}
