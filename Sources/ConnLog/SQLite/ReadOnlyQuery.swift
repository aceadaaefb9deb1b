import CSQLite

#if canImport(Glibc)
    import Glibc
#endif

/// Why the authorizer refused a statement, filled in by the C callback.
private final class Refusal {
    var reason: String?
    var deadline: Int64 = .max
    var timedOut = false
}

/// Pragmas that only read when given no value.
private let readablePragmas: Set<String> = [
    "database_list", "collation_list", "function_list", "pragma_list", "table_list", "user_version", "schema_version",
    "page_count", "page_size", "freelist_count", "journal_mode", "encoding", "compile_options", "integrity_check",
    "quick_check",
]

/// Pragmas whose argument names what to read (`PRAGMA table_info(samples)`).
private let describingPragmas: Set<String> = [
    "table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list", "integrity_check",
    "quick_check",
]

/// The authorizer (`sqlite3_set_authorizer`): reading tables, views, functions and recursive CTEs
/// is allowed; everything that writes, attaches, changes settings or loads code is refused.
private let authorize:
    @convention(c) (
        UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafePointer<CChar>?
    ) -> Int32 = { context, action, first, second, _, _ in
        let refusal = Unmanaged<Refusal>.fromOpaque(context!).takeUnretainedValue()
        let one = first.map { String(cString: $0) }
        let two = second.map { String(cString: $0) }
        func deny(_ reason: String) -> Int32 {
            if refusal.reason == nil { refusal.reason = reason }
            return SQLITE_DENY
        }
        switch action {
        case SQLITE_SELECT, SQLITE_READ, SQLITE_RECURSIVE:
            return SQLITE_OK
        case SQLITE_FUNCTION:
            if let name = two?.lowercased(), name == "load_extension" || name == "readfile" || name == "writefile" || name == "edit" {
                return deny("the function \(name)() is refused: connlog sql does not load or touch files")
            }
            return SQLITE_OK
        case SQLITE_PRAGMA:
            let name = (one ?? "").lowercased()
            if two == nil && readablePragmas.contains(name) || describingPragmas.contains(name) { return SQLITE_OK }
            return deny("PRAGMA \(name)\(two.map { " = \($0)" } ?? "") is refused: connlog sql only reads, and changes no setting")
        case SQLITE_ATTACH, SQLITE_DETACH:
            return deny("ATTACH and DETACH are refused: connlog sql reads only this database")
        case SQLITE_INSERT, SQLITE_UPDATE, SQLITE_DELETE:
            if one == "sqlite_master" || one == "sqlite_schema" || one == "sqlite_temp_master" {
                return deny("changing the schema (CREATE, DROP, ALTER) is refused: connlog sql only reads")
            }
            let verb = action == SQLITE_INSERT ? "INSERT" : action == SQLITE_UPDATE ? "UPDATE" : "DELETE"
            return deny("\(verb) is refused: connlog sql only reads")
        case SQLITE_TRANSACTION, SQLITE_SAVEPOINT: return deny("transactions are refused: connlog sql runs one read")
        default:
            return deny("that statement is refused: connlog sql only reads (SELECT, WITH, read-only PRAGMAs)")
        }
    }

/// The progress handler (`sqlite3_progress_handler`): non-zero stops the statement.
private let checkDeadline: @convention(c) (UnsafeMutableRawPointer?) -> Int32 = { context in
    let refusal = Unmanaged<Refusal>.fromOpaque(context!).takeUnretainedValue()
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    if Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec) > refusal.deadline {
        refusal.timedOut = true
        return 1
    }
    return 0
}

extension Database {
    /// Runs one read-only statement, refusing anything that writes or escapes (see the authorizer),
    /// stopping it after `timeoutMilliseconds`, calling `columns` once with the result's column
    /// names and then `row` for each row until it returns false.
    public func readOnlyQuery(
        _ sql: String, timeoutMilliseconds: Int64?, columns: ([String]) throws -> Void, row: ([SQLValue]) throws -> Bool
    ) throws {
        let refusal = Refusal()
        let context = Unmanaged.passRetained(refusal)
        defer {
            sqlite3_set_authorizer(handle, nil, nil)
            sqlite3_progress_handler(handle, 0, nil, nil)
            context.release()
        }
        sqlite3_set_authorizer(handle, authorize, context.toOpaque())
        if let timeoutMilliseconds {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            refusal.deadline = Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec) + timeoutMilliseconds * 1_000_000
            sqlite3_progress_handler(handle, 1000, checkDeadline, context.toOpaque())
        }

        var statement: OpaquePointer?
        var tail: UnsafePointer<CChar>?
        let code = sql.withCString { text in
            let result = sqlite3_prepare_v2(handle, text, -1, &statement, &tail)
            if result == SQLITE_OK, let tail, !String(cString: tail).allSatisfy({ $0.isWhitespace || $0 == ";" }) {
                sqlite3_finalize(statement)
                statement = nil
                return SQLITE_MISUSE
            }
            return result
        }
        if code == SQLITE_MISUSE {
            throw ConnLogError("connlog sql runs one statement at a time; remove what follows the first ';'")
        }
        guard code == SQLITE_OK else {
            if let reason = refusal.reason { throw ConnLogError(reason) }
            throw ConnLogError("the SQL did not prepare: \(String(cString: sqlite3_errmsg(handle)))")
        }
        guard let statement else { throw ConnLogError("the SQL holds no statement") }
        defer { sqlite3_finalize(statement) }
        guard sqlite3_stmt_readonly(statement) != 0 else {
            throw ConnLogError("that statement would write, and is refused: connlog sql only reads")
        }
        let count = sqlite3_column_count(statement)
        try columns((0..<count).map { String(cString: sqlite3_column_name(statement, $0)) })
        let reader = Statement(borrowing: statement, connection: handle, sql: sql)
        while true {
            let result = sqlite3_step(statement)
            if result == SQLITE_DONE { break }
            guard result == SQLITE_ROW else {
                if refusal.timedOut {
                    throw ConnLogError("the query ran longer than --timeout and was stopped; narrow it, or give it more time")
                }
                throw ConnLogError("the SQL failed: \(String(cString: sqlite3_errmsg(handle)))")
            }
            if try !row((0..<count).map { reader.value($0) }) { break }
        }
    }
}
