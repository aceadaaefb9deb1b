import CSQLite

#if canImport(Glibc)
    import Glibc
#endif

/// A connection to one SQLite database file (`sqlite3 *`), closed when released.
///
/// Not thread-safe and not `Sendable`: one connection belongs to one task at a time.
public final class Database {
    /// How to open the file.
    public enum Mode: Sendable {
        /// Read and write; create the file (mode 0600) when `create` and it does not exist.
        case readWrite(create: Bool)
        /// Read only; writes fail with `SQLITE_READONLY`.
        case readOnly
        /// Read only, from a file nothing can change (read-only media): no locks, no `-shm` file.
        /// The corresponding URI parameter is `immutable=1`.
        case immutable
    }

    let handle: OpaquePointer
    /// The file this connection opened.
    public let path: String
    private var statements: [String: Statement] = [:]

    /// Opens the database at `path`. The corresponding C function is `sqlite3_open_v2`.
    ///
    /// The connection waits up to `busyTimeoutMilliseconds` for locks. Nothing is written: call
    /// ``enableWriteAheadLog()`` once the file is known to be the right one.
    public init(path: String, mode: Mode, busyTimeoutMilliseconds: Int32 = 5000) throws(SQLiteError) {
        var flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        switch mode {
        case .readWrite(let create):
            flags |= SQLITE_OPEN_READWRITE
            if create {
                flags |= SQLITE_OPEN_CREATE
                // SQLite would create the file with the umask's permissions; history is private.
                let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                if fd >= 0 { close(fd) }
            }
        case .readOnly:
            flags |= SQLITE_OPEN_READONLY
        case .immutable:
            flags |= SQLITE_OPEN_READONLY | SQLITE_OPEN_URI
        }
        var name = path
        if case .immutable = mode {
            let escaped = path.unicodeScalars.map { $0 == "%" ? "%25" : $0 == "?" ? "%3f" : $0 == "#" ? "%23" : String($0) }.joined()
            name = "file:\(escaped)?immutable=1"
        }
        var connection: OpaquePointer?
        let code = sqlite3_open_v2(name, &connection, flags, nil)
        guard code == SQLITE_OK, let connection else {
            let error = SQLiteError(connection: connection, code: code)
            sqlite3_close_v2(connection)
            throw error
        }
        self.handle = connection
        self.path = path
        sqlite3_extended_result_codes(connection, 1)
        sqlite3_busy_timeout(connection, busyTimeoutMilliseconds)
        // Reads the header, so a damaged or foreign file is reported here, before anything is written.
        _ = try scalarInt("PRAGMA schema_version")
    }

    /// Switches to WAL and verifies the switch, with `synchronous=NORMAL`: a commit is atomic and
    /// readers never wait for the writer; a power loss may lose the last commits, never corrupt.
    public func enableWriteAheadLog() throws(SQLiteError) {
        let journal = try scalarText("PRAGMA journal_mode = WAL")
        guard journal?.lowercased() == "wal" else {
            throw SQLiteError(
                code: SQLITE_ERROR,
                message: "could not switch \(path) to WAL mode (journal_mode is \(journal ?? "unknown"))",
                sql: "PRAGMA journal_mode = WAL")
        }
        try execute("PRAGMA synchronous = NORMAL")
    }

    deinit {
        statements.removeAll()
        sqlite3_close_v2(handle)
    }

    // MARK: Running SQL

    /// Runs one or more statements that return no rows. The corresponding C function is `sqlite3_exec`.
    public func execute(_ sql: String) throws(SQLiteError) {
        let code = sqlite3_exec(handle, sql, nil, nil, nil)
        guard code == SQLITE_OK else { throw SQLiteError(connection: handle, code: code, sql: sql) }
    }

    /// Prepares `sql` once; later calls with the same text reuse the statement.
    public func cached(_ sql: String) throws(SQLiteError) -> Statement {
        if let statement = statements[sql] { return statement }
        let statement = try Statement(connection: handle, sql: sql)
        statements[sql] = statement
        return statement
    }

    /// Prepares `sql` for use by the caller only.
    public func prepare(_ sql: String) throws(SQLiteError) -> Statement {
        try Statement(connection: handle, sql: sql)
    }

    /// The first column of the first row, or nil when there is no row or it is NULL.
    public func scalarInt(_ sql: String, _ values: [SQLValue] = []) throws(SQLiteError) -> Int64? {
        let statement = try cached(sql)
        defer { statement.reset() }
        try statement.bind(values)
        guard try statement.step() else { return nil }
        return statement.optionalInt64(0)
    }

    /// The first column of the first row as text, or nil when there is no row or it is NULL.
    public func scalarText(_ sql: String, _ values: [SQLValue] = []) throws(SQLiteError) -> String? {
        let statement = try cached(sql)
        defer { statement.reset() }
        try statement.bind(values)
        guard try statement.step() else { return nil }
        return statement.optionalText(0)
    }

    /// Runs `sql` and calls `row` for each result row.
    public func forEach(_ sql: String, _ values: [SQLValue] = [], _ row: (Statement) throws -> Void) throws {
        let statement = try cached(sql)
        defer { statement.reset() }
        try statement.bind(values)
        while try statement.step() { try row(statement) }
    }

    /// The rowid of the last successful INSERT. The corresponding C function is `sqlite3_last_insert_rowid`.
    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    /// Rows changed by the last statement. The corresponding C function is `sqlite3_changes64`.
    public var changes: Int64 { sqlite3_changes64(handle) }

    /// Whether a transaction is open (`sqlite3_get_autocommit` is false).
    public var isInTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    // MARK: Transactions

    /// How a transaction takes its locks.
    public enum TransactionKind: String, Sendable {
        case deferred = "DEFERRED"
        /// Takes the write lock at BEGIN, so a busy database is noticed before any work.
        case immediate = "IMMEDIATE"
    }

    /// Runs `body` in a transaction: commits when it returns, rolls back and rethrows when it throws.
    public func transaction<T>(_ kind: TransactionKind = .immediate, _ body: () throws -> T) throws -> T {
        try execute("BEGIN \(kind.rawValue)")
        let result: T
        do {
            result = try body()
        } catch {
            // The first error is the one worth reporting; a failed rollback changes nothing for the caller.
            if isInTransaction { try? execute("ROLLBACK") }
            throw error
        }
        do {
            try execute("COMMIT")
        } catch {
            if isInTransaction { try? execute("ROLLBACK") }
            throw error
        }
        return result
    }
}

@available(*, unavailable)
extension Database: Sendable {}
