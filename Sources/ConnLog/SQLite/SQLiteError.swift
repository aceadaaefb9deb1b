import CSQLite

/// An error reported by SQLite, with the extended result code, SQLite's message and the SQL that failed.
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    /// The extended result code (`sqlite3_extended_errcode`).
    public let code: Int32
    /// SQLite's own message (`sqlite3_errmsg`).
    public let message: String
    /// The statement that failed, when there was one.
    public let sql: String?
    /// The database file the connection had open, when known.
    public let path: String?

    /// The primary result code (`code & 0xff`), e.g. `SQLITE_BUSY`.
    public var primaryCode: Int32 { code & 0xFF }

    public var description: String {
        var text = "SQLite error \(code) (\(String(cString: sqlite3_errstr(code)))): \(message)"
        if let sql { text += " [\(sql.count > 200 ? sql.prefix(200) + "..." : sql)]" }
        return text
    }

    init(code: Int32, message: String, sql: String? = nil, path: String? = nil) {
        self.code = code
        self.message = message
        self.sql = sql
        self.path = path
    }

    init(connection: OpaquePointer?, code: Int32, sql: String? = nil) {
        if let connection {
            self.init(
                code: sqlite3_extended_errcode(connection),
                message: String(cString: sqlite3_errmsg(connection)), sql: sql,
                path: sqlite3_db_filename(connection, "main").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 })
        } else {
            self.init(code: code, message: String(cString: sqlite3_errstr(code)), sql: sql)
        }
    }
}
