/*
 * testlib: see testlib.h.
 *
 * State: two small registries, both owned by the test's main thread.
 *   - children[]: every PID tl_spawn() forked, with whether it was reaped and
 *     its status; entries stay after reaping so a tl_proc can still be asked.
 *     tl_run_capture() children use a slot only while they run (pid 0: free).
 *     Only PIDs in it are ever signalled, and only one at a time (never a
 *     process group), so a test can only stop what it started.
 *   - tmpdirs[]: every directory tl_tmpdir_create() made. tl_rmtree() only
 *     removes paths inside one of them.
 * tl_cleanup() empties both; it runs from atexit() and may also be called as a
 * cmocka teardown.
 *
 * Fork safety: the environment and argv of a child are prepared before fork();
 * between fork() and exec the child only calls async-signal-safe functions, so
 * spawning stays correct if a test has other threads. A pipe with O_CLOEXEC
 * carries exec's errno back to the parent: it closes unread when exec succeeds.
 *
 * Time: every wait is a loop with a deadline on the monotonic clock and an
 * iteration cap derived from it, polling every TL_POLL_MS.
 */
#define _GNU_SOURCE /* execvpe, pipe2, nftw flags */

#include "lib/testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "evbus/errors.h"

extern char **environ;

#define TL_POLL_MS 10u
#define TL_MAX_CHILDREN 1024
#define TL_MAX_TMPDIRS 64
#define TL_MAX_PORTS 1024
#define TL_MAX_ARGS 64
#define TL_EXEC_REPORT_MS 10000u /* a child that neither execs nor fails within this is broken */
#define TL_CLEANUP_STOP_MS 5000u

struct child {
    pid_t pid;
    int reaped;
    int status; /* exit code or 128 + signal, once reaped */
};

static struct child children[TL_MAX_CHILDREN];
static int n_children;
static char tmpdirs[TL_MAX_TMPDIRS][TL_PATH_MAX];
static int n_tmpdirs;
static char default_tmpdir[TL_PATH_MAX];
static uint16_t ports_given[TL_MAX_PORTS];
static int n_ports_given;
static int log_seq;
static int atexit_done;

static void register_cleanup(void)
{
    if (!atexit_done && atexit(tl_cleanup) == 0)
        atexit_done = 1;
}

uint64_t tl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void tl_sleep_ms(uint32_t ms)
{
    struct timespec req = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};
    struct timespec rem;
    /* Each interruption shortens the remainder; the cap only guards against a signal storm. */
    for (int i = 0; i < 1000 && nanosleep(&req, &rem) != 0 && errno == EINTR; i++)
        req = rem;
}

/* Iterations a wait of timeout_ms may take when each sleeps TL_POLL_MS, plus slack for the work. */
static uint64_t max_polls(uint32_t timeout_ms)
{
    return timeout_ms / TL_POLL_MS + 100u;
}

static int status_code(int wstatus)
{
    if (WIFEXITED(wstatus))
        return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus))
        return 128 + WTERMSIG(wstatus);
    return 255;
}

/* ------------------------------------------------------------------ temp dirs */

static const char *tmp_base(void)
{
    const char *t = getenv("TMPDIR");
    return (t != NULL && t[0] == '/') ? t : "/tmp";
}

int tl_tmpdir_create(const char *prefix, char *path, size_t path_len)
{
    if (n_tmpdirs >= TL_MAX_TMPDIRS) {
        fprintf(stderr, "testlib: too many temp dirs (max %d)\n", TL_MAX_TMPDIRS);
        return EVBUS_EINVAL;
    }
    char tmpl[TL_PATH_MAX];
    int n = snprintf(tmpl, sizeof(tmpl), "%s/evbus-%s-XXXXXX", tmp_base(),
                     prefix != NULL ? prefix : "test");
    if (n < 0 || (size_t)n >= sizeof(tmpl) || (size_t)n >= path_len) {
        fprintf(stderr, "testlib: temp dir path too long\n");
        return EVBUS_EINVAL;
    }
    if (mkdtemp(tmpl) == NULL) {
        fprintf(stderr, "testlib: mkdtemp %s: %s\n", tmpl, strerror(errno));
        return EVBUS_EIO;
    }
    register_cleanup();
    memcpy(tmpdirs[n_tmpdirs++], tmpl, (size_t)n + 1);
    memcpy(path, tmpl, (size_t)n + 1);
    return 0;
}

const char *tl_tmpdir(void)
{
    if (default_tmpdir[0] == '\0' &&
        tl_tmpdir_create("test", default_tmpdir, sizeof(default_tmpdir)) != 0) {
        default_tmpdir[0] = '\0';
        return NULL;
    }
    return default_tmpdir;
}

int tl_subdir(const char *name, char *path, size_t path_len)
{
    const char *base = tl_tmpdir();
    if (base == NULL)
        return EVBUS_EIO;
    int n = snprintf(path, path_len, "%s/%s", base, name);
    if (n < 0 || (size_t)n >= path_len) {
        fprintf(stderr, "testlib: path %s/%s too long\n", base, name);
        return EVBUS_EINVAL;
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "testlib: mkdir %s: %s\n", path, strerror(errno));
        return EVBUS_EIO;
    }
    return 0;
}

/* 1 when `path` is one of our temp dirs or below one. */
static int is_ours(const char *path)
{
    if (strstr(path, "/../") != NULL || strstr(path, "/./") != NULL)
        return 0;
    size_t plen = strlen(path);
    if (plen >= 3 && strcmp(path + plen - 3, "/..") == 0)
        return 0;
    for (int i = 0; i < n_tmpdirs; i++) {
        size_t n = strlen(tmpdirs[i]);
        if (n > 0 && strncmp(path, tmpdirs[i], n) == 0 && (path[n] == '\0' || path[n] == '/'))
            return 1;
    }
    return 0;
}

static int rm_entry(const char *fpath, const struct stat *sb, int typeflag, struct FTW *ftwbuf)
{
    (void)sb;
    (void)ftwbuf;
    int rv = (typeflag == FTW_DP) ? rmdir(fpath) : unlink(fpath);
    if (rv != 0 && errno != ENOENT) {
        fprintf(stderr, "testlib: remove %s: %s\n", fpath, strerror(errno));
        return -1;
    }
    return 0;
}

int tl_rmtree(const char *path)
{
    if (path == NULL || !is_ours(path)) {
        fprintf(stderr, "testlib: refusing to remove %s: not a testlib temp dir\n",
                path != NULL ? path : "(null)");
        return EVBUS_EINVAL;
    }
    /* FTW_DEPTH: children before their directory; FTW_PHYS: a symlink is removed, not followed. */
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        return EVBUS_EIO;
    return 0;
}

/* ---------------------------------------------------------------------- ports */

static int port_given(uint16_t port)
{
    for (int i = 0; i < n_ports_given; i++)
        if (ports_given[i] == port)
            return 1;
    return 0;
}

int tl_free_port(void)
{
    if (n_ports_given >= TL_MAX_PORTS) {
        fprintf(stderr, "testlib: too many ports handed out (max %d)\n", TL_MAX_PORTS);
        return EVBUS_EINVAL;
    }
    /* The kernel rarely hands out the same ephemeral port twice in a row; 100 tries is plenty. */
    for (int attempt = 0; attempt < 100; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            fprintf(stderr, "testlib: socket: %s\n", strerror(errno));
            return EVBUS_EIO;
        }
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof(sa);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
            getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
            fprintf(stderr, "testlib: bind 127.0.0.1:0: %s\n", strerror(errno));
            close(fd);
            return EVBUS_EIO;
        }
        close(fd);
        uint16_t port = ntohs(sa.sin_port);
        if (port != 0 && !port_given(port)) {
            ports_given[n_ports_given++] = port;
            return port;
        }
    }
    fprintf(stderr, "testlib: no new free port after 100 tries\n");
    return EVBUS_EIO;
}

/* One connection attempt bounded by wait_ms. 0 when accepted. */
static int try_connect(uint16_t port, uint32_t wait_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return EVBUS_EIO;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rv = EVBUS_ECONN;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        rv = 0;
    } else if (errno == EINPROGRESS) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t elen = sizeof(err);
        if (poll(&pfd, 1, (int)wait_ms) == 1 &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0)
            rv = 0;
    }
    close(fd);
    return rv;
}

int tl_wait_port(uint16_t port, tl_proc *watch, uint32_t timeout_ms)
{
    uint64_t deadline = tl_now_ms() + timeout_ms;
    uint64_t polls = max_polls(timeout_ms);
    for (uint64_t i = 0; i < polls; i++) {
        if (try_connect(port, 200) == 0)
            return 0;
        if (watch != NULL && tl_proc_poll(watch) == 1) {
            fprintf(stderr, "testlib: pid %d exited with status %d before port %u accepted\n",
                    (int)watch->pid, watch->exit_status, port);
            return EVBUS_ECLOSED;
        }
        if (tl_now_ms() >= deadline)
            break;
        tl_sleep_ms(TL_POLL_MS);
    }
    fprintf(stderr, "testlib: port %u not accepting after %u ms\n", port, timeout_ms);
    return EVBUS_ETIMEDOUT;
}

/* ------------------------------------------------------------------ processes */

static struct child *find_child(pid_t pid)
{
    for (int i = 0; i < n_children; i++)
        if (children[i].pid == pid && pid > 0)
            return &children[i];
    return NULL;
}

static struct child *new_child(void)
{
    for (int i = 0; i < n_children; i++)
        if (children[i].pid == 0)
            return &children[i];
    if (n_children >= TL_MAX_CHILDREN)
        return NULL;
    return &children[n_children++];
}

/* Reaps without blocking. 1 when the child has exited (status in ch), 0 when running. */
static int child_poll(struct child *ch)
{
    if (ch->reaped)
        return 1;
    int wstatus;
    pid_t r = waitpid(ch->pid, &wstatus, WNOHANG);
    if (r == ch->pid) {
        ch->reaped = 1;
        ch->status = status_code(wstatus);
        return 1;
    }
    if (r < 0 && errno == ECHILD) {
        /* Someone else reaped it; the status is lost but the process is gone. */
        ch->reaped = 1;
        ch->status = 255;
        return 1;
    }
    return 0;
}

/* Waits for the child at most timeout_ms. 1 when exited, 0 on timeout. */
static int child_wait(struct child *ch, uint32_t timeout_ms)
{
    uint64_t deadline = tl_now_ms() + timeout_ms;
    uint64_t polls = max_polls(timeout_ms);
    for (uint64_t i = 0; i < polls; i++) {
        if (child_poll(ch))
            return 1;
        if (tl_now_ms() >= deadline)
            break;
        tl_sleep_ms(TL_POLL_MS);
    }
    return child_poll(ch);
}

/* Signal, wait, SIGKILL, wait. The status, or EVBUS_ETIMEDOUT when even SIGKILL did not work. */
static int child_stop(struct child *ch, int sig, uint32_t timeout_ms)
{
    if (child_poll(ch))
        return ch->status;
    if (kill(ch->pid, sig) != 0 && errno != ESRCH) {
        fprintf(stderr, "testlib: kill %d: %s\n", (int)ch->pid, strerror(errno));
        return EVBUS_EIO;
    }
    if (child_wait(ch, timeout_ms))
        return ch->status;
    fprintf(stderr, "testlib: pid %d still running %u ms after signal %d: SIGKILL\n", (int)ch->pid,
            timeout_ms, sig);
    kill(ch->pid, SIGKILL);
    /* SIGKILL cannot be caught; only a process stuck in the kernel survives 10 s of it. */
    if (child_wait(ch, 10000))
        return ch->status;
    fprintf(stderr, "testlib: pid %d survived SIGKILL\n", (int)ch->pid);
    return EVBUS_ETIMEDOUT;
}

static void sync_proc(tl_proc *p, const struct child *ch)
{
    if (ch->reaped) {
        p->exited = 1;
        p->exit_status = ch->status;
    }
}

/*
 * Builds the child's environment: ours with keys of env_add replaced, then
 * env_add. The array is malloc()ed; its strings are borrowed.
 */
static char **build_env(const char *const *env_add)
{
    size_t n_env = 0, n_add = 0;
    while (environ != NULL && environ[n_env] != NULL)
        n_env++;
    while (env_add != NULL && env_add[n_add] != NULL)
        n_add++;
    char **envp = calloc(n_env + n_add + 1, sizeof(*envp));
    if (envp == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t klen = eq != NULL ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int overridden = 0;
        for (size_t j = 0; j < n_add && !overridden; j++)
            overridden = strncmp(env_add[j], environ[i], klen) == 0 && env_add[j][klen] == '=';
        if (!overridden)
            envp[k++] = environ[i];
    }
    for (size_t j = 0; j < n_add; j++)
        envp[k++] = (char *)env_add[j];
    envp[k] = NULL;
    return envp;
}

/* In the child: point fd `target` at `fd`. Async-signal-safe. */
static void child_dup(int fd, int target, int err_fd)
{
    if (fd != target && dup2(fd, target) < 0) {
        int e = errno;
        ssize_t w = write(err_fd, &e, sizeof(e));
        (void)w;
        _exit(127);
    }
}

/*
 * fork + exec with stdout to out_fd and stderr to err_fd (-1: inherit), stdin
 * from /dev/null. Returns the PID (registered) or a negative code; exec
 * failures are detected here through the errno pipe.
 */
static int spawn(const char *const *argv, const char *const *env_add, int out_fd, int err_fd,
                 pid_t *pid_out)
{
    if (argv == NULL || argv[0] == NULL) {
        fprintf(stderr, "testlib: spawn without argv\n");
        return EVBUS_EINVAL;
    }
    struct child *ch = new_child();
    if (ch == NULL) {
        fprintf(stderr, "testlib: too many child processes (max %d)\n", TL_MAX_CHILDREN);
        return EVBUS_EINVAL;
    }
    int rv = EVBUS_EIO;
    char **envp = build_env(env_add);
    if (envp == NULL)
        return EVBUS_ENOMEM;
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) {
        fprintf(stderr, "testlib: open /dev/null: %s\n", strerror(errno));
        goto err_env;
    }
    int errpipe[2];
    if (pipe2(errpipe, O_CLOEXEC) != 0) {
        fprintf(stderr, "testlib: pipe: %s\n", strerror(errno));
        goto err_null;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "testlib: fork: %s\n", strerror(errno));
        goto err_pipe;
    }
    if (pid == 0) {
        /* Die with the test, even when it is SIGKILLed by a ctest timeout. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        close(errpipe[0]);
        child_dup(null_fd, STDIN_FILENO, errpipe[1]);
        if (out_fd >= 0)
            child_dup(out_fd, STDOUT_FILENO, errpipe[1]);
        if (err_fd >= 0)
            child_dup(err_fd, STDERR_FILENO, errpipe[1]);
        execvpe(argv[0], (char *const *)argv, envp);
        int e = errno;
        ssize_t w = write(errpipe[1], &e, sizeof(e));
        (void)w;
        _exit(127);
    }
    register_cleanup();
    ch->pid = pid;
    ch->reaped = 0;
    ch->status = 0;
    close(errpipe[1]);
    errpipe[1] = -1;

    /* EOF: exec succeeded (the CLOEXEC write end closed). An int: exec's errno. */
    int child_errno = 0;
    struct pollfd pfd = {.fd = errpipe[0], .events = POLLIN};
    int pr;
    for (int i = 0; i < 100; i++) {
        pr = poll(&pfd, 1, (int)TL_EXEC_REPORT_MS);
        if (pr >= 0 || errno != EINTR)
            break;
    }
    if (pr == 1) {
        ssize_t got;
        for (int i = 0; i < 100; i++) {
            got = read(errpipe[0], &child_errno, sizeof(child_errno));
            if (got >= 0 || errno != EINTR)
                break;
        }
        if (got != (ssize_t)sizeof(child_errno))
            child_errno = 0;
    } else {
        fprintf(stderr, "testlib: %s: no exec report after %u ms\n", argv[0], TL_EXEC_REPORT_MS);
        if (child_stop(ch, SIGKILL, 1000) >= 0)
            ch->pid = 0;
        goto err_pipe;
    }
    if (child_errno != 0) {
        fprintf(stderr, "testlib: exec %s: %s\n", argv[0], strerror(child_errno));
        if (child_wait(ch, 5000))
            ch->pid = 0; /* nothing ran: the slot is free again */
        rv = child_errno == ENOENT ? EVBUS_ENOTFOUND : EVBUS_EIO;
        goto err_pipe;
    }
    close(errpipe[0]);
    close(null_fd);
    free(envp);
    *pid_out = pid;
    return 0;

err_pipe:
    close(errpipe[0]);
    if (errpipe[1] >= 0)
        close(errpipe[1]);
err_null:
    close(null_fd);
err_env:
    free(envp);
    return rv;
}

int tl_spawn(tl_proc *p, const char *const *argv, const char *const *env_add, const char *log_path)
{
    memset(p, 0, sizeof(*p));
    if (argv == NULL || argv[0] == NULL)
        return EVBUS_EINVAL;
    if (log_path != NULL) {
        if (strlen(log_path) >= sizeof(p->log_path))
            return EVBUS_EINVAL;
        strcpy(p->log_path, log_path);
    } else {
        const char *dir = tl_tmpdir();
        if (dir == NULL)
            return EVBUS_EIO;
        const char *base = strrchr(argv[0], '/');
        base = base != NULL ? base + 1 : argv[0];
        int n = snprintf(p->log_path, sizeof(p->log_path), "%s/%s-%d.log", dir, base, ++log_seq);
        if (n < 0 || (size_t)n >= sizeof(p->log_path))
            return EVBUS_EINVAL;
    }
    int log_fd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd < 0) {
        fprintf(stderr, "testlib: open %s: %s\n", p->log_path, strerror(errno));
        return EVBUS_EIO;
    }
    pid_t pid;
    int rv = spawn(argv, env_add, log_fd, log_fd, &pid);
    close(log_fd);
    if (rv != 0)
        return rv;
    p->pid = pid;
    return 0;
}

/* The registry entry of a tl_proc that was started, or NULL with a message. */
static struct child *proc_child(const tl_proc *p)
{
    struct child *ch = p->pid > 0 ? find_child(p->pid) : NULL;
    if (ch == NULL)
        fprintf(stderr, "testlib: pid %d was not started by tl_spawn()\n", (int)p->pid);
    return ch;
}

int tl_proc_poll(tl_proc *p)
{
    struct child *ch = proc_child(p);
    if (ch == NULL)
        return EVBUS_EINVAL;
    int r = child_poll(ch);
    sync_proc(p, ch);
    return r;
}

int tl_proc_wait(tl_proc *p, uint32_t timeout_ms)
{
    struct child *ch = proc_child(p);
    if (ch == NULL)
        return EVBUS_EINVAL;
    int r = child_wait(ch, timeout_ms);
    sync_proc(p, ch);
    return r ? ch->status : EVBUS_ETIMEDOUT;
}

int tl_proc_stop(tl_proc *p, int sig, uint32_t timeout_ms)
{
    struct child *ch = proc_child(p);
    if (ch == NULL)
        return EVBUS_EINVAL;
    int rv = child_stop(ch, sig, timeout_ms);
    sync_proc(p, ch);
    return rv;
}

int tl_kill_wait(pid_t pid, int sig, uint32_t timeout_ms)
{
    struct child *ch = pid > 0 ? find_child(pid) : NULL;
    if (ch == NULL) {
        fprintf(stderr, "testlib: pid %d was not started by this test\n", (int)pid);
        return EVBUS_ENOTFOUND;
    }
    return child_stop(ch, sig, timeout_ms);
}

void tl_print_log_tail(const char *log_path, int max_lines)
{
    /* The last 64 KiB hold the lines that matter; a log of a long test can be large. */
    enum { TAIL_BYTES = 64 * 1024 };
    FILE *f = fopen(log_path, "r");
    if (f == NULL) {
        fprintf(stderr, "testlib: no log %s: %s\n", log_path, strerror(errno));
        return;
    }
    char *buf = malloc(TAIL_BYTES + 1);
    if (buf == NULL) {
        fclose(f);
        return;
    }
    long size = 0;
    if (fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    long from = size > TAIL_BYTES ? size - TAIL_BYTES : 0;
    size_t n = 0;
    if (fseek(f, from, SEEK_SET) == 0)
        n = fread(buf, 1, TAIL_BYTES, f);
    buf[n] = '\0';
    fclose(f);
    size_t start = n;
    int lines = 0;
    /* Walk back over max_lines newlines (a trailing one ends the last line, not a new one). */
    while (start > 0) {
        if (buf[start - 1] == '\n' && start != n && ++lines >= max_lines)
            break;
        start--;
    }
    fprintf(stderr, "----- last %d lines of %s -----\n%s%s----- end of %s -----\n", max_lines,
            log_path, buf + start, (n > 0 && buf[n - 1] != '\n') ? "\n" : "", log_path);
    free(buf);
}

int tl_run_capture_env(const char *const *argv, const char *const *env_add, uint32_t timeout_ms,
                       char **out, int *exit_code)
{
    *out = NULL;
    *exit_code = -1;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        fprintf(stderr, "testlib: pipe: %s\n", strerror(errno));
        return EVBUS_EIO;
    }
    pid_t pid;
    int rv = spawn(argv, env_add, pipefd[1], -1, &pid);
    close(pipefd[1]);
    if (rv != 0) {
        close(pipefd[0]);
        return rv;
    }
    struct child *ch = find_child(pid);
    uint64_t deadline = tl_now_ms() + timeout_ms;

    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        rv = EVBUS_ENOMEM;
        goto stop;
    }
    /* Each round reads at least one byte, sees EOF, or waits out the time left. */
    for (uint64_t i = 0;; i++) {
        uint64_t now = tl_now_ms();
        if (now >= deadline || i > max_polls(timeout_ms) + TL_CAPTURE_MAX) {
            fprintf(stderr, "testlib: %s still running after %u ms: killed\n", argv[0], timeout_ms);
            rv = EVBUS_ETIMEDOUT;
            break;
        }
        struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
        int pr = poll(&pfd, 1, (int)(deadline - now));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        if (len + 4096 + 1 > cap) {
            if (cap >= TL_CAPTURE_MAX) {
                fprintf(stderr, "testlib: %s printed more than %u bytes: killed\n", argv[0],
                        TL_CAPTURE_MAX);
                rv = EVBUS_ETOOBIG;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                rv = EVBUS_ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t got = read(pipefd[0], buf + len, cap - len - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break; /* EOF (or a broken pipe): the program closed its stdout */
        len += (size_t)got;
    }
    if (buf != NULL) {
        buf[len] = '\0';
        *out = buf;
    }
stop:
    close(pipefd[0]);
    if (rv == 0) {
        /* stdout closed; the exit follows, unless the program closed stdout and kept running. */
        uint64_t now = tl_now_ms();
        uint32_t left = now < deadline ? (uint32_t)(deadline - now) : 0;
        if (!child_wait(ch, left)) {
            fprintf(stderr, "testlib: %s closed stdout but did not exit: killed\n", argv[0]);
            rv = EVBUS_ETIMEDOUT;
        }
    }
    int status = child_stop(ch, SIGKILL, 5000);
    if (status >= 0) {
        *exit_code = status;
        ch->pid = 0; /* reaped: free the slot for the next command */
    }
    return rv;
}

int tl_run_capture(const char *const *argv, char **out, int *exit_code)
{
    return tl_run_capture_env(argv, NULL, TL_RUN_TIMEOUT_MS, out, exit_code);
}

const char *tl_program(const char *var)
{
    const char *p = getenv(var);
    if (p == NULL || p[0] == '\0') {
        fprintf(stderr, "testlib: %s is not set (ctest sets it; see tests/CMakeLists.txt)\n", var);
        return NULL;
    }
    return p;
}

/* ---------------------------------------------------------------------- evbusd */

int tl_node_init(tl_node *n, uint32_t node_id)
{
    memset(n, 0, sizeof(*n));
    if (node_id == 0)
        return EVBUS_EINVAL;
    int cport = tl_free_port();
    if (cport < 0)
        return cport;
    int rport = tl_free_port();
    if (rport < 0)
        return rport;
    n->node_id = node_id;
    n->client_port = (uint16_t)cport;
    n->raft_port = (uint16_t)rport;
    snprintf(n->client_addr, sizeof(n->client_addr), "127.0.0.1:%d", cport);
    snprintf(n->raft_addr, sizeof(n->raft_addr), "127.0.0.1:%d", rport);
    char name[32];
    snprintf(name, sizeof(name), "node%u", node_id);
    int rv = tl_subdir(name, n->data_dir, sizeof(n->data_dir));
    if (rv != 0)
        return rv;
    /* The log sits beside the data dir so a node's restarts append to one file. */
    if (snprintf(n->proc.log_path, sizeof(n->proc.log_path), "%s.log", n->data_dir) >=
        (int)sizeof(n->proc.log_path))
        return EVBUS_EINVAL;
    return 0;
}

int tl_evbusd_start(tl_node *n, const char *const *extra_args, uint32_t timeout_ms)
{
    const char *evbusd = tl_program("EVBUSD");
    if (evbusd == NULL)
        return EVBUS_EINVAL;
    if (n->node_id == 0 || n->data_dir[0] == '\0') {
        fprintf(stderr, "testlib: tl_evbusd_start before tl_node_init\n");
        return EVBUS_EINVAL;
    }
    if (n->proc.pid > 0 && !n->proc.exited) {
        fprintf(stderr, "testlib: node %u is still running (pid %d)\n", n->node_id,
                (int)n->proc.pid);
        return EVBUS_EINVAL;
    }
    if (timeout_ms == 0)
        timeout_ms = TL_START_TIMEOUT_MS;
    char id[16];
    snprintf(id, sizeof(id), "%u", n->node_id);
    const char *argv[TL_MAX_ARGS + 1] = {
        evbusd,       "--node-id",  id,          "--listen",    n->client_addr, "--raft-listen",
        n->raft_addr, "--data-dir", n->data_dir, "--log-level", "info"};
    size_t argc = 11;
    for (size_t i = 0; extra_args != NULL && extra_args[i] != NULL; i++) {
        if (argc >= TL_MAX_ARGS) {
            fprintf(stderr, "testlib: too many evbusd arguments (max %d)\n", TL_MAX_ARGS);
            return EVBUS_EINVAL;
        }
        argv[argc++] = extra_args[i];
    }
    argv[argc] = NULL;

    char log_path[TL_PATH_MAX];
    memcpy(log_path, n->proc.log_path, sizeof(log_path));
    /* A marker line tells the runs of a restarted node apart in its one log file. */
    FILE *f = fopen(log_path, "a");
    if (f != NULL) {
        fprintf(f, "----- testlib: starting node %u: %s %s -----\n", n->node_id, n->client_addr,
                n->raft_addr);
        fclose(f);
    }
    int rv = tl_spawn(&n->proc, argv, NULL, log_path);
    if (rv != 0)
        return rv;
    rv = tl_wait_port(n->client_port, &n->proc, timeout_ms);
    if (rv != 0) {
        fprintf(stderr, "testlib: node %u did not come up\n", n->node_id);
        tl_proc_stop(&n->proc, SIGTERM, 2000);
        tl_print_log_tail(n->proc.log_path, 40);
        return rv;
    }
    return 0;
}

int tl_evbusd_stop(tl_node *n, int sig, uint32_t timeout_ms)
{
    return tl_proc_stop(&n->proc, sig, timeout_ms ? timeout_ms : TL_STOP_TIMEOUT_MS);
}

/* -------------------------------------------------------------------- cleanup */

void tl_cleanup(void)
{
    for (int i = 0; i < n_children; i++) {
        if (children[i].pid > 0 && !child_poll(&children[i])) {
            fprintf(stderr, "testlib: stopping leftover pid %d\n", (int)children[i].pid);
            child_stop(&children[i], SIGTERM, TL_CLEANUP_STOP_MS);
        }
    }
    const char *keep = getenv("EVBUS_KEEP_TMP");
    for (int i = 0; i < n_tmpdirs; i++) {
        if (keep != NULL && keep[0] != '\0')
            fprintf(stderr, "testlib: EVBUS_KEEP_TMP set: keeping %s\n", tmpdirs[i]);
        else
            tl_rmtree(tmpdirs[i]);
    }
    n_tmpdirs = 0;
    default_tmpdir[0] = '\0';
    /* Ports stay remembered: a later test in this process must not reuse one still in TIME_WAIT. */
}
