/*
 * testlib: helpers for tests that start real processes (evbusd, evbusctl) on
 * 127.0.0.1: temp dirs, free ports, a process spawner with log files, bounded
 * waits for ports and exits, command output capture.
 *
 * Every wait is bounded in time and in iterations; nothing here blocks forever.
 * Functions return 0 (or a documented non-negative value) or a negative code of
 * include/evbus/errors.h, and print one "testlib: ..." line to stderr saying
 * what failed, so a test only needs to assert on the return value.
 *
 * Cleanup: the first call that creates something registers tl_cleanup() with
 * atexit(). It stops every process this test spawned and has not reaped yet
 * (SIGTERM, then SIGKILL), by PID, and removes every temp dir it created unless
 * EVBUS_KEEP_TMP is set in the environment. Spawned children also get SIGKILL
 * from the kernel when the test process dies (PR_SET_PDEATHSIG), so a test
 * killed by the ctest timeout leaves no evbusd behind. A cmocka assertion that
 * fails inside a test skips that test's own stop calls; tl_cleanup() catches it.
 *
 * Not thread-safe: call from the test's main thread only.
 */
#ifndef EVBUS_TESTS_TESTLIB_H
#define EVBUS_TESTS_TESTLIB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TL_PATH_MAX 512
#define TL_ADDR_MAX 32             /* "127.0.0.1:65535" and room to spare */
#define TL_STOP_TIMEOUT_MS 10000u  /* default bound for a graceful stop */
#define TL_START_TIMEOUT_MS 15000u /* default bound for a node to accept connections */
#define TL_RUN_TIMEOUT_MS 30000u   /* bound of tl_run_capture() */
#define TL_CAPTURE_MAX (16u << 20) /* largest stdout tl_run_capture() keeps */

/* A process started by tl_spawn(). The struct is the caller's; testlib also tracks the PID. */
typedef struct tl_proc {
    pid_t pid;       /* > 0 while started and not yet reaped */
    int exited;      /* 1 once reaped */
    int exit_status; /* once exited: exit code, or 128 + signal number */
    char log_path[TL_PATH_MAX];
} tl_proc;

/* ----------------------------------------------------------------- temp dirs */

/*
 * Creates a new directory "<$TMPDIR or /tmp>/evbus-<prefix>-XXXXXX" and copies its
 * path into `path` (path_len bytes). The directory is removed by tl_cleanup().
 * Errors: EVBUS_EINVAL (path too long), EVBUS_EIO.
 */
int tl_tmpdir_create(const char *prefix, char *path, size_t path_len);

/* This test process's default temp dir, created on first use; NULL when that failed. */
const char *tl_tmpdir(void);

/* Creates "<tl_tmpdir()>/<name>" (existing is fine) and copies its path into `path`. */
int tl_subdir(const char *name, char *path, size_t path_len);

/*
 * Removes `path` and everything below it, without following symlinks. Refuses
 * paths that tl_tmpdir_create() did not make (or that are not below one), so a
 * bad argument cannot delete anything else. Errors: EVBUS_EINVAL, EVBUS_EIO.
 */
int tl_rmtree(const char *path);

/* ---------------------------------------------------------------------- ports */

/*
 * A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read
 * back, closed). Never returns the same port twice in one test process. Returns
 * the port (> 0) or a negative code.
 */
int tl_free_port(void);

/*
 * Waits until 127.0.0.1:port accepts a TCP connection, at most timeout_ms. When
 * `watch` is not NULL and that process exits meanwhile, gives up at once
 * (EVBUS_ECLOSED) instead of waiting for the timeout. Errors: EVBUS_ETIMEDOUT.
 */
int tl_wait_port(uint16_t port, tl_proc *watch, uint32_t timeout_ms);

/* ------------------------------------------------------------------ processes */

/*
 * Starts argv[0] (looked up in PATH like execvp) with argv, the test's own
 * environment plus `env_add` ("KEY=VALUE" strings, NULL-terminated, may be NULL;
 * they override existing keys), stdin from /dev/null and stdout+stderr appended
 * to `log_path` (NULL: "<tl_tmpdir()>/<basename>-<pid of test>-<n>.log").
 * Returns 0 once the program was executed; an exec failure is reported here
 * (EVBUS_ENOTFOUND when the file does not exist) rather than as an exit code.
 */
int tl_spawn(tl_proc *p, const char *const *argv, const char *const *env_add, const char *log_path);

/*
 * Reaps `p` if it has exited, without waiting. Returns 1 when exited (then
 * p->exit_status is set), 0 when still running.
 */
int tl_proc_poll(tl_proc *p);

/*
 * Waits at most timeout_ms for `p` to exit by itself. Returns its exit status
 * (exit code, or 128 + signal) or EVBUS_ETIMEDOUT (the process keeps running).
 */
int tl_proc_wait(tl_proc *p, uint32_t timeout_ms);

/*
 * Sends `sig` to p->pid (only that PID) and waits at most timeout_ms for it to
 * exit; then sends SIGKILL and waits again. Returns the exit status (exit code,
 * or 128 + signal: a process that needed SIGKILL returns 128 + 9) or a negative
 * code when it could not be reaped. A process that already exited just returns
 * its status.
 */
int tl_proc_stop(tl_proc *p, int sig, uint32_t timeout_ms);

/* Same for a bare PID this test spawned with tl_spawn(). Errors: EVBUS_ENOTFOUND (not ours). */
int tl_kill_wait(pid_t pid, int sig, uint32_t timeout_ms);

/* Prints the last max_lines lines of a log file to stderr, framed, for failure reports. */
void tl_print_log_tail(const char *log_path, int max_lines);

/*
 * Runs argv (PATH lookup) with env_add as in tl_spawn(), stdin from /dev/null,
 * stderr inherited, and collects its stdout into *out (malloc()ed, NUL-terminated,
 * transferred to the caller; also on a non-zero exit). *exit_code gets the exit
 * status (exit code or 128 + signal). Returns 0 when the program ran to its end,
 * EVBUS_ETIMEDOUT (killed after timeout_ms; *out holds what it printed),
 * EVBUS_ETOOBIG (more than TL_CAPTURE_MAX bytes; killed), EVBUS_ENOTFOUND.
 */
int tl_run_capture_env(const char *const *argv, const char *const *env_add, uint32_t timeout_ms,
                       char **out, int *exit_code);

/* tl_run_capture_env() without env additions and with TL_RUN_TIMEOUT_MS. */
int tl_run_capture(const char *const *argv, char **out, int *exit_code);

/*
 * The program named by environment variable `var` (EVBUSD, EVBUSCTL; ctest sets
 * them). NULL and a message when unset.
 */
const char *tl_program(const char *var);

/* ---------------------------------------------------------------------- evbusd */

typedef struct tl_node {
    uint32_t node_id;
    uint16_t client_port;
    uint16_t raft_port;
    char client_addr[TL_ADDR_MAX]; /* "127.0.0.1:<client_port>" */
    char raft_addr[TL_ADDR_MAX];   /* "127.0.0.1:<raft_port>" */
    char data_dir[TL_PATH_MAX];    /* "<tl_tmpdir()>/node<id>" */
    tl_proc proc;                  /* log: "<tl_tmpdir()>/node<id>.log", appended across restarts */
} tl_node;

/*
 * Prepares node `node_id`: two free ports and its data dir (created). Separate
 * from starting so a test can give every node the addresses of all others, and
 * can restart a node on the same ports and data.
 */
int tl_node_init(tl_node *n, uint32_t node_id);

/*
 * Starts $EVBUSD --node-id N --listen <client_addr> --raft-listen <raft_addr>
 * --data-dir <data_dir> --log-level info, followed by extra_args (NULL-terminated,
 * may be NULL), for a node prepared by tl_node_init() (again after a stop, to
 * restart it on the same ports and data), and waits at most timeout_ms (0:
 * TL_START_TIMEOUT_MS) until its client port accepts. On failure the node is
 * stopped and the tail of its log is printed. Being reachable does not mean a
 * leader is elected: see tl_wait_leader() in testsdk.h.
 * Errors: EVBUS_EINVAL (EVBUSD unset, node not prepared or still running),
 * EVBUS_ECLOSED (evbusd exited during start), EVBUS_ETIMEDOUT.
 */
int tl_evbusd_start(tl_node *n, const char *const *extra_args, uint32_t timeout_ms);

/* tl_proc_stop() on the node's process (0 timeout: TL_STOP_TIMEOUT_MS). */
int tl_evbusd_stop(tl_node *n, int sig, uint32_t timeout_ms);

/* Stops what is still running and removes temp dirs (see the top of this file). Idempotent. */
void tl_cleanup(void);

/* Milliseconds on the monotonic clock, for deadlines. */
uint64_t tl_now_ms(void);

/* Sleeps ms milliseconds (restarted after signals). */
void tl_sleep_ms(uint32_t ms);

#endif /* EVBUS_TESTS_TESTLIB_H */
