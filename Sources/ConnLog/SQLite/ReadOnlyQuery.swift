import CSQLite
import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Why the authorizer refused a statement, filled in by the C callback.
private final class Refusal {
    var reason: String?
}

/// Time spent inside SQLite, against a budget: waiting for a slow reader of the output does not count.
private final class QueryClock: Sendable {
    private struct State {
        var used: Int64 = 0
        var steppingSince: Int64?
        var done = false
        var timedOut = false
    }
    private let state = Mutex(State())
    let budget: Int64

    init(budgetNanoseconds: Int64) { budget = budgetNanoseconds }

    static func now() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }

    func startStep() { state.withLock { $0.steppingSince = Self.now() } }

    func endStep() {
        state.withLock { state in
            if let since = state.steppingSince { state.used += Self.now() - since }
            state.steppingSince = nil
        }
    }

    /// Whether the budget is spent; marks the query as timed out when it is.
    func isOverBudget() -> Bool {
        state.withLock { state in
            let running = state.steppingSince.map { Self.now() - $0 } ?? 0
            if state.used + running > budget { state.timedOut = true }
            return state.timedOut
        }
    }

    var timedOut: Bool { state.withLock { $0.timedOut } }
    var isDone: Bool { state.withLock { $0.done } }
    func finish() { state.withLock { $0.done = true } }
}

/// The connection to interrupt from the watchdog; `sqlite3_interrupt` is safe from any thread.
private struct InterruptTarget: @unchecked Sendable {
    let handle: OpaquePointer
}

/// Pragmas that only read when given no value.
private let readablePragmas: Set<String> = [
    "database_list", "collation_list", "function_list", "pragma_list", "table_list", "user_version", "schema_version",
    "page_count", "page_size", "freelist_count", "encoding", "compile_options", "integrity_check", "quick_check",
]

/// Functions that load code, touch files or hand out pointers.
private let refusedFunctions: Set<String> = ["load_extension", "fts3_tokenizer", "readfile", "writefile", "edit", "fts5"]

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
            if let name = two?.lowercased(), refusedFunctions.contains(name) {
                return deny("the function \(name)() is refused: connlog sql does not load code, touch files or hand out pointers")
            }
            return SQLITE_OK
        case SQLITE_PRAGMA:
            let name = (one ?? "").lowercased()
            if two == nil && readablePragmas.contains(name) || describingPragmas.contains(name) { return SQLITE_OK }
            return deny("PRAGMA \(name)\(two.map { " = \($0)" } ?? "") is refused: connlog sql only reads, and changes no setting")
        case SQLITE_ATTACH, SQLITE_DETACH:
            return deny("ATTACH and DETACH are refused: connlog sql reads only this database")
        case SQLITE_UPDATE where one == "sqlite_master":
            // SQLite asks this while it sets up a table-valued function (json_each, pragma_table_info);
            // the connection is read-only and defensive, so no statement can really change the schema.
            return SQLITE_OK
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
    Unmanaged<QueryClock>.fromOpaque(context!).takeUnretainedValue().isOverBudget() ? 1 : 0
}

/// Whether what follows the first statement is only blanks, semicolons and comments.
private func isOnlyTrivia(_ text: String) -> Bool {
    var scalars = Substring(text).unicodeScalars[...]
    while let first = scalars.first {
        if first == " " || first == "\n" || first == "\t" || first == "\r" || first == ";" {
            scalars = scalars.dropFirst()
        } else if scalars.starts(with: "--".unicodeScalars) {
            scalars = scalars.drop { $0 != "\n" }
        } else if scalars.starts(with: "/*".unicodeScalars) {
            scalars = scalars.dropFirst(2)
            while !scalars.isEmpty && !scalars.starts(with: "*/".unicodeScalars) { scalars = scalars.dropFirst() }
            guard !scalars.isEmpty else { return false }
            scalars = scalars.dropFirst(2)
        } else {
            return false
        }
    }
    return true
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
        let clock = QueryClock(budgetNanoseconds: (timeoutMilliseconds ?? Int64.max / 1_000_000) * 1_000_000)
        let clockContext = Unmanaged.passRetained(clock)
        // A string or blob past 16 MiB is refused, so no single step can run for long.
        let previousLength = sqlite3_limit(handle, SQLITE_LIMIT_LENGTH, 16 << 20)
        defer {
            clock.finish()
            sqlite3_set_authorizer(handle, nil, nil)
            sqlite3_progress_handler(handle, 0, nil, nil)
            sqlite3_limit(handle, SQLITE_LIMIT_LENGTH, previousLength)
            context.release()
            clockContext.release()
        }
        _ = connlog_sqlite_db_config_int(handle, SQLITE_DBCONFIG_DEFENSIVE, 1, nil)
        sqlite3_set_authorizer(handle, authorize, context.toOpaque())
        if timeoutMilliseconds != nil {
            sqlite3_progress_handler(handle, 100, checkDeadline, clockContext.toOpaque())
            // The progress handler runs between VM instructions; one slow instruction needs a watchdog.
            let target = InterruptTarget(handle: handle)
            DispatchQueue.global().async {
                while !clock.isDone {
                    if clock.isOverBudget() {
                        sqlite3_interrupt(target.handle)
                        return
                    }
                    usleep(20_000)
                }
            }
        }

        var statement: OpaquePointer?
        var tail: UnsafePointer<CChar>?
        let code = sql.withCString { text in
            let result = sqlite3_prepare_v2(handle, text, -1, &statement, &tail)
            if result == SQLITE_OK, let tail, !isOnlyTrivia(String(cString: tail)) {
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
            throw ConnLogError(
                "the SQL did not prepare: \(String(cString: sqlite3_errmsg(handle))); docs/SCHEMA.md lists the tables, views and columns")
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
            clock.startStep()
            let result = sqlite3_step(statement)
            clock.endStep()
            if result == SQLITE_DONE { break }
            guard result == SQLITE_ROW else {
                if clock.timedOut {
                    throw ConnLogError("the query ran longer than --timeout and was stopped; narrow it, or give it more time")
                }
                if result == SQLITE_TOOBIG {
                    throw ConnLogError("the query built a value larger than 16 MiB, which connlog sql refuses; narrow it")
                }
                throw ConnLogError(
                    "the SQL failed while running: \(String(cString: sqlite3_errmsg(handle))); check the statement and try again")
            }
            if try !row((0..<count).map { reader.value($0) }) { break }
        }
    }
}
