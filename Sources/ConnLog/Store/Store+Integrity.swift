import CSQLite

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
        throw .damaged(path, first + (problems.count > 1 ? "; and more" : ""))
    }
}
