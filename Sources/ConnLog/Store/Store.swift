import CSQLite

#if canImport(Glibc)
    import Glibc
#endif

/// The connlog database: one SQLite file holding samples, connections, events, counters and
/// observation windows in the schema of `Migrations/` (documented in docs/SCHEMA.md).
///
/// A store opened for writing upgrades an older schema in place; any store refuses a file
/// written by a newer connlog, or one that is not a connlog database, and leaves it untouched.
public final class Store {
    /// How a store is used.
    public enum Access: Sendable {
        /// Recording: creates the file (0600) when missing, upgrades its schema.
        case write
        /// Questions and status: never writes.
        case read
    }

    public let database: Database
    public let path: String

    // Row ids already looked up, valid while no transaction has been rolled back.
    var namespaceIDs: [UInt64: Int64] = [:]
    var bootIDs: [String: Int64] = [:]
    var addressIDs: [IPAddress: Int64] = [:]
    var programIDs: [String: Int64] = [:]
    var counterIDs: [String: Int64] = [:]

    /// Opens (for `.write`, creates) the database at `path`.
    public init(path: String, access: Access) throws(ConnLogError) {
        self.path = path
        let exists = FileReading.exists(path)
        if FileReading.isDirectory(path) {
            throw ConnLogError("\(path) is a directory; --db takes a database file (e.g. \(path)/connlog.db)")
        }
        if access == .read && !exists {
            throw ConnLogError("no connlog database at \(path): run `connlog collect` first, or pass --db")
        }
        do {
            database = try Database(path: path, mode: access == .write ? .readWrite(create: true) : .readOnly)
        } catch let error where access == .read && error.primaryCode == SQLITE_CANTOPEN && !Self.directoryIsWritable(path) {
            // On read-only media SQLite cannot create the WAL index; nothing can change the file there,
            // so it is read as immutable.
            do {
                database = try Database(path: path, mode: .immutable)
            } catch {
                throw Self.explain(error, path: path)
            }
        } catch {
            throw Self.explain(error, path: path)
        }
        try checkIdentity()
        guard access == .write else { return }
        do {
            try database.enableWriteAheadLog()
            try database.migrate()
        } catch let error as SQLiteError {
            throw Self.explain(error, path: path)
        } catch {
            throw ConnLogError("cannot prepare \(path): \(error)")
        }
    }

    /// Refuses a newer schema, and a SQLite file that is not connlog's.
    private func checkIdentity() throws(ConnLogError) {
        do {
            let version = try database.userVersion()
            if version > Migration.latestVersion {
                throw ConnLogError(
                    "\(path) has schema version \(version), newer than this connlog knows (\(Migration.latestVersion)); use a newer connlog. The file was left untouched"
                )
            }
            if version == 0 {
                let tables = try database.scalarInt("SELECT count(*) FROM sqlite_master") ?? 0
                if tables > 0 {
                    throw ConnLogError(
                        "\(path) is a SQLite database but not a connlog one; pass --db with another path. The file was left untouched")
                }
            }
        } catch let error as SQLiteError {
            throw Self.explain(error, path: path)
        } catch let error as ConnLogError {
            throw error
        } catch {
            throw ConnLogError("\(error)")
        }
    }

    /// Turns SQLite's codes for a damaged, foreign, full or read-only file into a sentence for an operator.
    static func explain(_ error: SQLiteError, path: String) -> ConnLogError {
        switch error.primaryCode {
        case SQLITE_NOTADB:
            return ConnLogError(
                "\(path) is not a SQLite database, or its header is damaged; connlog leaves it untouched: move it aside to start a new one")
        case SQLITE_CORRUPT:
            return ConnLogError(
                "\(path) is damaged (\(error.message)); connlog leaves it untouched: check it with `sqlite3 \(path) 'PRAGMA integrity_check'` and move it aside"
            )
        case SQLITE_FULL:
            return ConnLogError("the disk holding \(path) is full; nothing was half-written: free some space and run again")
        case SQLITE_READONLY:
            return ConnLogError("\(path) is read-only (\(error.message)); make it and its directory writable, or pass another --db")
        case SQLITE_CANTOPEN:
            return ConnLogError("cannot open \(path) (\(error.message)); check that the directory exists and is writable")
        case SQLITE_BUSY:
            return ConnLogError("\(path) stayed locked by another process past the busy timeout; try again")
        case SQLITE_IOERR:
            return ConnLogError("I/O error on \(path) (\(error.message)); check the disk, then run again")
        default:
            return ConnLogError("database error on \(path): \(error)")
        }
    }

    static func directoryIsWritable(_ path: String) -> Bool {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[..<$0]) } ?? "."
        return access(directory.isEmpty ? "/" : directory, W_OK) == 0
    }

    /// Forgets cached row ids; after a rollback some of them may name rows that no longer exist.
    func forgetCachedIDs() {
        namespaceIDs.removeAll()
        bootIDs.removeAll()
        addressIDs.removeAll()
        programIDs.removeAll()
        counterIDs.removeAll()
    }
}

@available(*, unavailable)
extension Store: Sendable {}
