/// A problem a user can meet, said in one sentence: what happened and what to do.
public struct ConnLogError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What a caller may do differently for some problems.
    public enum Kind: Sendable, Equatable {
        case problem
        /// The database file is damaged: nothing more may be written into it.
        case damagedDatabase
    }

    public let message: String
    public let kind: Kind

    public init(_ message: String, kind: Kind = .problem) {
        self.message = message
        self.kind = kind
    }

    public var description: String { message }
}
