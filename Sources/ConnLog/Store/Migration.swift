/// One schema change from `Migrations/NNNN_name.sql`, compiled into the binary.
///
/// Migrations are append-only: a released one is never edited, a change is a new file.
/// `Migration.all` (generated at build time from `Migrations/`) lists them in order.
public struct Migration: Sendable, Equatable {
    /// NNNN from the file name; the database's `PRAGMA user_version` after it ran.
    public let version: Int
    public let name: String
    public let sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// The schema version this build writes.
    public static var latestVersion: Int { all.last?.version ?? 0 }
}

extension Database {
    /// `PRAGMA user_version`: the last migration applied, 0 for a new file.
    public func userVersion() throws(SQLiteError) -> Int {
        Int(try scalarInt("PRAGMA user_version") ?? 0)
    }

    /// Applies every migration newer than the file's version, in order, each in its own
    /// transaction together with its `user_version` bump.
    func migrate(_ migrations: [Migration] = Migration.all) throws {
        let current = try userVersion()
        for migration in migrations where migration.version > current {
            try transaction(.immediate) {
                try execute(migration.sql)
                try execute("PRAGMA user_version = \(migration.version)")
            }
        }
    }
}
