import ArgumentParser
import ConnLog

struct CollectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "collect",
        abstract: "Sample the TCP socket tables and record what changed.",
        discussion: """
            With --once, takes one sample, diffs it against the one stored by the previous run \
            and exits: the cron mode. --every (default 1m) is how often cron runs it; a longer \
            pause is recorded as a gap. Otherwise samples every --interval until SIGINT or \
            SIGTERM (which let the sample in hand finish, then exit 0) or until --duration has \
            passed.

            Only one collector records into a database at a time; a second one exits with \
            status 1.

            --source picks where the socket list is read. netlink asks the kernel over \
            sock_diag (what ss uses): faster than the tables, with each connection's bytes, \
            segments and RTT, and in the sampling loop the kernel tells connlog of every socket \
            it frees, so connections that live and die between two samples are recorded too. \
            It reads only connlog's own network namespace. proc reads <proc-root>/net/tcp and \
            tcp6. auto (the default) uses netlink when the kernel answers and --proc-root shows \
            connlog's own namespace, else proc.

            Examples:
              connlog collect --once                       # from cron, every minute
              connlog collect --interval 1s                # sidecar, until stopped
              connlog collect --interval 200ms --duration 1m --db /tmp/incident.db
              connlog collect --proc-root /host/proc --retain 30d
              connlog collect --source proc --interval 5s
            """
    )

    @OptionGroup var database: DatabaseOptions

    @Flag(help: "Take one sample, record it and exit (for cron).")
    var once = false

    @Option(help: ArgumentHelp("How often to sample, e.g. 200ms, 1s, 5s.", valueName: "duration"))
    var interval: DurationArgument?

    @Option(help: ArgumentHelp("With --once: how often cron runs it; a longer pause is a gap.", valueName: "duration"))
    var every: DurationArgument?

    @Option(help: ArgumentHelp("Stop after this long, e.g. 1m.", valueName: "duration"))
    var duration: DurationArgument?

    @Option(
        help: ArgumentHelp(
            "Read the proc filesystem here: /host/proc in a container, /proc/<pid> for another network namespace.", valueName: "dir"))
    var procRoot: String = "/proc"

    @Option(help: ArgumentHelp("Delete history older than this, e.g. 30d.", valueName: "duration"))
    var retain: DurationArgument?

    @Option(help: ArgumentHelp("Where to read the sockets: auto, netlink or proc.", valueName: "source"))
    var source: SocketSourceChoice = .auto

    @Option(
        help: ArgumentHelp(
            "Room for the kernel's socket destroy notifications between reads, e.g. 16m; default 4m (netlink; more than net.core.rmem_max needs CAP_NET_ADMIN).",
            valueName: "bytes"))
    var destroyBuffer: ByteCountArgument?

    @Flag(help: "Do not find which process owns each socket.")
    var noProcesses = false

    @Flag(help: "Print one line per sample to stderr.")
    var verbose = false

    func validate() throws {
        if once {
            if interval != nil { throw ValidationError("--interval applies to the sampling loop; with --once use --every") }
            if duration != nil { throw ValidationError("--duration applies to the sampling loop, not to --once") }
        } else if every != nil {
            throw ValidationError("--every applies to --once; the sampling loop uses --interval")
        }
        if destroyBuffer != nil && (once || source == .proc) {
            throw ValidationError("--destroy-buffer applies to the sampling loop with the netlink source")
        }
        if let interval, interval.milliseconds < 10 {
            throw ValidationError("--interval must be at least 10ms")
        }
    }

    func run() throws {
        let spacing = once ? (every?.milliseconds ?? 60_000) : (interval?.milliseconds ?? 1000)
        let recorder = try Recorder(
            databasePath: database.path,
            options: Recorder.Options(
                procRoot: procRoot, attributeProcesses: !noProcesses, interval: spacing, retain: retain?.milliseconds,
                source: source, destroyBuffer: destroyBuffer?.bytes ?? Recorder.Options.defaultDestroyBuffer))
        if verbose, let notice = recorder.sourceNotice { warn(notice) }
        if once {
            let summary = try recorder.recordSample()
            if verbose { warn(describe(summary)) }
            for problem in summary.problems { warn(problem) }
            // A cron run has the rest of its minute; a backlog is worked off over several runs.
            try recorder.pruneIfDue(now: summary.at, budget: 5000)
            return
        }
        if verbose {
            warn(
                "collecting into \(database.path) every \(TimeText.duration(spacing)) from \(recorder.socketSource); stop with Ctrl-C or SIGTERM"
            )
        }
        let outcome = recorder.run(duration: duration?.milliseconds, log: { warn($0) }) { summary in
            if verbose { warn(describe(summary)) }
        }
        if verbose { warn("stopped after \(outcome.samples) samples (\(outcome.failures) failed)") }
        if let error = outcome.stoppedBy { throw error }
        // A signal is the normal way to stop a sidecar; a run that ends on --duration with its
        // last sample failed did not do its job.
        if !outcome.stoppedBySignal && (outcome.lastFailed || outcome.samples == 0) {
            throw ConnLogError(
                "the last sample failed (\(outcome.failures) of \(outcome.samples + outcome.failures) failed); see the messages above")
        }
    }

    private func milliseconds(_ microseconds: Int64) -> String {
        let tenths = (microseconds + 50) / 100
        return "\(tenths / 10).\(tenths % 10) ms"
    }

    private func describe(_ summary: Recorder.SampleSummary) -> String {
        var text =
            "\(TimeText.iso8601(summary.at)): \(summary.sockets) sockets, \(summary.opened) opened, \(summary.closed) closed, "
            + "\(summary.events) events in \(milliseconds(summary.totalMicroseconds)) (read \(milliseconds(summary.readMicroseconds)))"
        if let destroys = summary.destroys { text += ", \(destroys) destroy notices" }
        if let lost = summary.destroysLost, lost > 0 { text += " (\(lost) drops)" }
        if let start = summary.windowStart { text += " (new window: \(start.rawValue))" }
        return text
    }
}
