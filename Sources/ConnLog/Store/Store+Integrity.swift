import CSQLite

#if canImport(Glibc)
    import Glibc
#endif

extension Store {
    /// What SQLite finds wrong with the file, at most `limit` findings; empty when it is whole.
    ///
    /// `thorough` runs `PRAGMA integrity_check` (also matches every index against its table);
    /// otherwise `PRAGMA quick_check`, which reads every page once.
    public func integrityProblems(thorough: Bool, limit: Int = 20) throws(ConnLogError) -> [String] {
        var findings: [String] = []
        do {
            try database.forEach("PRAGMA \(thorough ? "integrity_check" : "quick_check")(\(max(1, limit)))") { row in
                findings.append(row.optionalText(0) ?? "")
            }
        } catch let error as SQLiteError {
            // Damage bad enough to stop the check itself is a finding too.
            if error.primaryCode == SQLITE_CORRUPT || error.primaryCode == SQLITE_NOTADB { return [error.message] }
            throw Self.explain(error, path: path)
        } catch {
            throw ConnLogError("cannot check \(path): \(error)")
        }
        return findings == ["ok"] ? [] : findings
    }

    /// Throws a damaged-database error when `PRAGMA quick_check` finds anything wrong.
    public func checkWhole() throws(ConnLogError) {
        let problems = try integrityProblems(thorough: false, limit: 3)
        guard let first = problems.first else { return }
        throw ConnLogError(
            "\(path) is damaged (\(first)\(problems.count > 1 ? "; and more" : "")); connlog will not write into it: check it with `connlog status --check`, move it aside and start a new one (`.recover` in sqlite3 may save what is readable)",
            kind: .damagedDatabase)
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
}
