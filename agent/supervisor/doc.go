// Package supervisor runs and watches one engine process: launch, readiness,
// restart with backoff, drain and graceful stop. The agent creates one
// Supervisor per worker. Linux only.
//
// # Process group
//
// The engine starts as the leader of its own process group (Setpgid), and
// every signal goes to the whole group: vLLM and SGLang fork workers that
// hold GPU memory, and a restart must not find them still alive. When the
// leader exits, on its own or after SIGTERM, whatever is left of its group
// is SIGKILLed at once: an engine is the whole group. For a child of this
// process the leader is observed with waitid(WNOWAIT) and the group killed
// before the leader is reaped, so the pid cannot have been reused yet.
//
// No parent-death signal is set, so an engine outlives an agent that is
// SIGKILLed or crashes (the systemd unit of the agent must use
// KillMode=process, or systemd kills the engines itself). Stop and Drain
// stop the engine; the end of Run's context does not: an agent that stops
// or restarts (an upgrade) must not make every engine reload its model, so
// it detaches, and the next agent adopts.
//
// # Pid file and adoption
//
// Dir/engine.pid (JSON, written with rename) records the pid, the boot id,
// the process start time (field 22 of /proc/<pid>/stat) and a hash of the
// launch (path, args and Config.Env — not the agent's own environment,
// which changes across restarts under systemd). Boot id and start time tell
// our process from a reused pid. On entry, Run reads it: the same launch
// still alive is adopted (watched by polling /proc, since it is not our
// child, and its exit status is unknown); a different launch is stopped
// (SIGTERM to the group, grace, SIGKILL) before the new one starts; a dead
// or reused pid is ignored. StopStale does the stopping half for a worker
// that is no longer assigned. An flock on Dir/engine.lock keeps two
// supervisors (or a supervisor and StopStale) off one directory: never two
// engines on one GPU. An unreadable pid file is an error, not a guess. The
// one gap: an agent killed between fork and writing the pid file leaves an
// engine that no pid file names.
//
// # Logs
//
// The engine's stdout and stderr are the write end of a named pipe,
// Dir/engine.fifo, that the agent copies into Dir/logs/engine.log through
// lumberjack, which rotates it (LogMaxMB, LogMaxFiles). The options were a
// plain pipe (rotates, but an adopted engine's pipe has no reader: writes
// fail with EPIPE, and a Go engine such as strata sim dies of SIGPIPE) or a
// file handle given to the engine (survives the agent, but only the writer
// can rotate it, and copy-and-truncate loses lines). The named pipe keeps
// rotation and survives the agent: the engine opens it read-write, so it
// always has a reader and never sees EPIPE, and a restarted agent that
// adopts the engine opens the same path and goes on copying, including what
// was written meanwhile. The pipe is enlarged to 1 MiB where the kernel
// allows, and the copier never stops reading when the disk fails (it drops
// the output and logs once), so the engine never waits on the agent's disk.
// The cost: while no agent runs, an engine that writes more than the pipe
// holds blocks on its next write until an agent reads again.
//
// # Restarts
//
// A launch that exits, or is not ready within ReadyTimeout, is a failed
// start and is relaunched after an exponential backoff (Backoff.Initial,
// doubled per consecutive failure, capped at Backoff.Max). After
// CrashLoopAfter consecutive failures the state is CrashLoop, and it is
// still retried. A process that stayed ready for twice Backoff.Max (10m by
// default) was not crash looping: the count starts again. Restart (the ops
// API) relaunches at once and is not a failure.
package supervisor
