/* spawnloop: the physical limit of "one program per request, one at a time".
 *
 * No sockets, no HTTP: in a loop, start PROGRAM with a pipe on its stdin and
 * one on its stdout, write BODY, close stdin, read stdout to the end, wait for
 * it; requests/s and latency percentiles of those loops. What fiddler_crab
 * adds to this for one sequential request is its own cost.
 *
 *   spawnloop [-n COUNT] [-t SECONDS] [-b BODY] [-m fork|spawn] PROGRAM [ARG...]
 *
 * -n most loops [1000000], -t most seconds [5], whichever ends first;
 * -b the body [hello]; -m fork: fork() then execv() in the child [default];
 * spawn: posix_spawn() (glibc: clone(CLONE_VM|CLONE_VFORK), what Rust's
 * std::process::Command uses). PROGRAM is looked up in PATH once, before the
 * loop. Prints one JSON object: requests/s, latency percentiles, CPU ms per
 * loop of this process ("own") and of the programs ("children"); "mismatched"
 * counts answers that are not the body (all of them for a CGI script, whose
 * answer begins with headers).
 * C99 + POSIX; exits 1 if a program fails to start or exits non-zero.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_LOOPS 1000000
#define MAX_ANSWER (1 << 20)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n), in ms. */
static double pct(const double *v, long n, int p) {
    long k = (p * n + 99) / 100 - 1;
    return n ? v[k < 0 ? 0 : k] * 1000 : 0;
}

/* PROGRAM resolved through PATH, as execvp() would, once. */
static const char *resolve(const char *name) {
    static char buf[4096];
    if (strchr(name, '/'))
        return name;
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        snprintf(buf, sizeof buf, "%.*s/%s", (int)len, path, name);
        if (access(buf, X_OK) == 0)
            return buf;
        path += len + (path[len] == ':');
    }
    return name;
}

/* CPU seconds (user + system) of `who`, RUSAGE_SELF or RUSAGE_CHILDREN. */
static double cpu(int who) {
    struct rusage ru;
    getrusage(who, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

int main(int argc, char **argv) {
    long count = MAX_LOOPS;
    double seconds = 5;
    const char *body = "hello", *mode = "fork";
    int opt;
    while ((opt = getopt(argc, argv, "+n:t:b:m:")) != -1) {
        switch (opt) {
        case 'n': count = atol(optarg); break;
        case 't': seconds = atof(optarg); break;
        case 'b': body = optarg; break;
        case 'm': mode = optarg; break;
        default: goto usage;
        }
    }
    if (optind >= argc || count < 1 || count > MAX_LOOPS || seconds <= 0 ||
        (strcmp(mode, "fork") && strcmp(mode, "spawn"))) {
    usage:
        fprintf(stderr, "usage: spawnloop [-n COUNT] [-t SECONDS] [-b BODY] [-m fork|spawn] PROGRAM [ARG...]\n");
        return 2;
    }
    char **args = argv + optind;
    const char *program = resolve(args[0]);
    size_t body_len = strlen(body);
    double *lat = malloc(sizeof(double) * count);
    char *answer = malloc(MAX_ANSWER);
    if (!lat || !answer)
        die("malloc");
    long done = 0, mismatched = 0;
    double t0 = now(), end = t0 + seconds, own0 = cpu(RUSAGE_SELF), kids0 = cpu(RUSAGE_CHILDREN);
    while (done < count && now() < end) {
        double start = now();
        int in[2], out[2];
        pid_t pid;
        if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
            die("pipe2");
        if (mode[0] == 'f') {
            pid = fork();
            if (pid < 0)
                die("fork");
            if (pid == 0) {
                dup2(in[0], 0);
                dup2(out[1], 1);
                execv(program, args);
                _exit(127);
            }
        } else {
            posix_spawn_file_actions_t fa;
            posix_spawn_file_actions_init(&fa);
            posix_spawn_file_actions_adddup2(&fa, in[0], 0);
            posix_spawn_file_actions_adddup2(&fa, out[1], 1);
            int err = posix_spawn(&pid, program, &fa, NULL, args, environ);
            posix_spawn_file_actions_destroy(&fa);
            if (err) {
                errno = err;
                die("posix_spawn");
            }
        }
        close(in[0]);
        close(out[1]);
        size_t sent = 0;
        while (sent < body_len) {
            ssize_t w = write(in[1], body + sent, body_len - sent);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                break; /* EPIPE: the program did not read it all */
            }
            sent += w;
        }
        close(in[1]);
        size_t got = 0;
        for (;;) {
            ssize_t r = read(out[0], answer + got, got < MAX_ANSWER ? MAX_ANSWER - got : 1);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got = got + r < MAX_ANSWER ? got + r : MAX_ANSWER;
        }
        close(out[0]);
        int status;
        while (waitpid(pid, &status, 0) < 0)
            if (errno != EINTR)
                die("waitpid");
        if (!WIFEXITED(status) || WEXITSTATUS(status)) {
            fprintf(stderr, "spawnloop: %s exited with status %d\n", program, status);
            return 1;
        }
        if (got != body_len || memcmp(answer, body, body_len))
            mismatched++;
        lat[done++] = now() - start;
    }
    double wall = now() - t0, own = cpu(RUSAGE_SELF) - own0, kids = cpu(RUSAGE_CHILDREN) - kids0;
    qsort(lat, done, sizeof(double), cmp);
    printf("{\"reference\": \"spawnloop\", \"mode\": \"%s\", \"program\": \"%s\", \"requests\": %ld, "
           "\"wall s\": %.3f, \"requests/s\": %.1f, \"p50 ms\": %.3f, \"p90 ms\": %.3f, \"p99 ms\": %.3f, "
           "\"max ms\": %.3f, \"own cpu ms\": %.3f, \"children cpu ms\": %.3f, \"mismatched\": %ld}\n",
           mode, program, done, wall, done / wall, pct(lat, done, 50), pct(lat, done, 90), pct(lat, done, 99),
           done ? lat[done - 1] * 1000 : 0, own * 1000 / done, kids * 1000 / done, mismatched);
    return 0;
}
