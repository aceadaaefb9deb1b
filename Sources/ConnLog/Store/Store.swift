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
        } catch let error
            where access == .read && (error.primaryCode == SQLITE_CANTOPEN || error.primaryCode == SQLITE_READONLY)
            && !Self.directoryIsWritable(path)
        {
            // In a directory this user cannot write (or on read-only media) SQLite cannot create the
            // WAL index. With no write-ahead log pending, the file alone holds everything, so it is
            // read as immutable; immutable would ignore a pending log, so that case is refused.
            guard !Self.hasPendingWriteAheadLog(path) else {
                throw ConnLogError(
                    "cannot read \(path) now: its write-ahead log holds recent samples, and reading them needs SQLite's \(path)-shm, which this user cannot create in \(Self.directory(of: path)); run as the collector's user, or make the directory writable"
                )
            }
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
        // An upgrade writes (new indexes): a damaged file is refused before, not after.
        if let version = try? database.userVersion(), version > 0 && version < Migration.latestVersion {
            try checkWhole()
        }
        do {
            try database.enableWriteAheadLog()
            try database.migrate()
            // Statement journals (a statement with triggers, such as retention's deletes and a close
            // taken back) and the sorts of the grouped totals stay in memory: in files they cost a
            // large sample or pruning pass many writes. After the migrations, whose index builds may
            // sort more than memory should hold.
            try database.execute("PRAGMA temp_store = MEMORY")
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
        ConnLogError(aboutFile: error, path: path) ?? ConnLogError("database error on \(path): \(error)")
    }

    /// Refuses, before anything is created, a database file or directory this user cannot write:
    /// SQLite keeps its write-ahead log, and connlog its lock file, beside the database.
    public static func checkWritable(_ given: String) throws(ConnLogError) {
        // Through a symbolic link, what matters is the real file and its real directory.
        let path = FileReading.realPath(given) ?? given
        if FileReading.exists(path), access(path, W_OK) != 0 {
            throw ConnLogError(
                "\(path) is not writable by this user (\(FileReading.errorText(errno))); collecting writes to it: run as its owner, make it writable (chmod u+w), or pass another --db"
            )
        }
        let directory = directory(of: path)
        if FileReading.exists(directory), access(directory, W_OK) != 0 {
            throw ConnLogError(
                "cannot write in \(directory) (\(FileReading.errorText(errno))); SQLite keeps its write-ahead log and connlog its lock file beside the database: make the directory writable, or pass another --db"
            )
        }
    }

    /// Whether this user may create files beside the database (SQLite's -wal and -shm go beside
    /// its real path, through any symbolic link).
    static func directoryIsWritable(_ path: String) -> Bool {
        access(directory(of: FileReading.realPath(path) ?? path), W_OK) == 0
    }

    /// Whether `<path>-wal` holds commits not yet copied into the database file.
    static func hasPendingWriteAheadLog(_ path: String) -> Bool {
        var info = stat()
        return stat((FileReading.realPath(path) ?? path) + "-wal", &info) == 0 && info.st_size > 0
    }

    /// The directory holding `path` ("." for a bare name).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
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

extension ConnLogError {
    /// The database at `path` is damaged (`detail` says how): it is refused, never written into
    /// or repaired, and the operator is told how to look and what to do.
    public static func damaged(_ path: String, _ detail: String) -> ConnLogError {
        ConnLogError(
            "\(path) is damaged (\(detail)); connlog leaves it untouched and will not write into it: see what is wrong with `connlog status --check` (SQLite's PRAGMA integrity_check), then move it aside and start a new one (`.recover` in sqlite3 may save what is readable)",
            kind: .damagedDatabase)
    }

    /// A sentence for an operator when `error` is about the database file itself (damaged,
    /// foreign, full, read-only, locked, unreadable); nil for other errors, such as a bad statement.
    public init?(aboutFile error: SQLiteError, path: String) {
        switch error.primaryCode {
        case SQLITE_NOTADB:
            self.init(
                "\(path) is not a SQLite database, or its header is damaged; connlog leaves it untouched: move it aside to start a new one",
                kind: .damagedDatabase)
        case SQLITE_CORRUPT:
            self = .damaged(path, error.message)
        case SQLITE_FULL:
            self.init("the disk holding \(path) is full; nothing was half-written: free some space and run again")
        case SQLITE_READONLY:
            self.init("\(path) is read-only (\(error.message)); make it and its directory writable, or pass another --db")
        case SQLITE_CANTOPEN:
            self.init("cannot open \(path) (\(error.message)); check that the directory exists and is writable")
        case SQLITE_BUSY:
            self.init("\(path) stayed locked by another process past the busy timeout; try again")
        case SQLITE_IOERR:
            self.init("I/O error on \(path) (\(error.message)); check the disk, then run again")
        default:
            return nil
        }
    }
}
