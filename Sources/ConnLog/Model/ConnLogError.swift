/// A problem a user can meet, said in one sentence: what happened and what to do.
public struct ConnLogError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}
