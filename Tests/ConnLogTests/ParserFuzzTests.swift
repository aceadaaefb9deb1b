import Foundation
import Testing

@testable import ConnLog

/// A small, fast, seedable generator, so a failing input can be made again from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Hostile input for the /proc parsers: mutated kernel tables (flipped, inserted, deleted and
/// duplicated bytes, truncations, NULs, huge lines, garbage). The parser must never crash, and
/// every line must come out either as a sighting or as a counted malformed line. Inputs: 20,000
/// here; `CONNLOG_FUZZ_INPUTS=2000000 swift test --filter hostileTables` for the long run.
@Suite("Parsing hostile input")
struct ParserFuzzTests {
    static let inputs = Int(ProcessInfo.processInfo.environment["CONNLOG_FUZZ_INPUTS"] ?? "") ?? 20_000

    func mutate(_ base: [UInt8], _ random: inout SplitMix64) -> [UInt8] {
        var bytes = base
        for _ in 0..<Int.random(in: 1...8, using: &random) {
            let position = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &random)
            switch Int.random(in: 0..<8, using: &random) {
            case 0 where !bytes.isEmpty: bytes[position] = UInt8.random(in: 0...255, using: &random)
            case 1: bytes.insert(UInt8.random(in: 0...255, using: &random), at: position)
            case 2 where !bytes.isEmpty: bytes.remove(at: position)
            case 3: bytes = Array(bytes.prefix(position))
            case 4:
                bytes.insert(contentsOf: repeatElement(UInt8(ascii: "F"), count: Int.random(in: 1...5000, using: &random)), at: position)
            case 5:
                let end = min(bytes.count, position + Int.random(in: 1...200, using: &random))
                bytes.insert(contentsOf: bytes[position..<end], at: position)
            case 6: bytes.insert(0, at: position)
            default: bytes.insert(contentsOf: Array(":  \n0A 0100007F".utf8).shuffled(using: &random), at: position)
            }
        }
        return bytes
    }

    /// Lines that are neither the header (first line) nor blank.
    func countedLines(_ bytes: [UInt8]) -> Int {
        let lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        var count = 0
        for (index, line) in lines.enumerated() {
            let trimmed = line.drop { $0 == 32 || $0 == 9 || $0 == 13 }.reversed().drop { $0 == 32 || $0 == 9 || $0 == 13 }
            if trimmed.isEmpty { continue }
            if index == 0 && line.drop(while: { $0 == 32 }).starts(with: Array("sl".utf8)) { continue }
            count += 1
        }
        return count
    }

    @Test func hostileTablesNeverCrashAndEveryLineIsAccountedFor() throws {
        let bases = [try fixture("tcp_ipv4.txt"), try fixture("tcp_every_state.txt"), try fixture("tcp6_addresses.txt")]
        var random = SplitMix64(state: 20_261_124)
        for input in 0..<Self.inputs {
            let seed = random.next()
            var local = SplitMix64(state: seed)
            let base = bases[Int(seed % UInt64(bases.count))]
            let bytes = mutate(base, &local)
            for family: UInt8 in [4, 6] {
                let (sightings, malformed) = SocketTableParser.parse(bytes, family: family)
                let expected = countedLines(bytes)
                if sightings.count + malformed != expected {
                    Issue.record(
                        "input \(input) (seed \(seed)), family \(family): \(sightings.count) sightings + \(malformed) malformed != \(expected) lines"
                    )
                    return
                }
                for sighting in sightings where sighting.key.family != family {
                    Issue.record("input \(input) (seed \(seed)): a family-\(family) table gave a family-\(sighting.key.family) socket")
                    return
                }
            }
            _ = CounterParser.parse(String(decoding: bytes, as: UTF8.self), prefixes: ["Tcp", "TcpExt"])
        }
    }

    @Test func pureGarbageAndHugeLinesAreAllMalformed() {
        var random = SplitMix64(state: 7)
        for _ in 0..<200 {
            let garbage = (0..<Int.random(in: 0...20_000, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            let (sightings, malformed) = SocketTableParser.parse(garbage, family: 4)
            #expect(sightings.count + malformed == countedLines(garbage))
        }
        let huge = Array("   0: 0100007F:0050 0100007F:C350 01 ".utf8) + Array(repeating: UInt8(ascii: "0"), count: 4 << 20)
        #expect(SocketTableParser.parse(huge, family: 4).malformed == 1)
    }
}
