/* seqclient: one HTTP request at a time, as cheap a client as can be.
 *
 * loadtest.py seq does the same in Python; its own time per request (about
 * 0.1 ms here) is part of every latency it reports. This client's is a few
 * microseconds, so what it measures is the server. In a loop: connect to
 * 127.0.0.1:PORT, send "METHOD PATH HTTP/1.1" with Content-Length, BODY and
 * Connection: close, read until the server closes, check the status (and,
 * with -e, that the body came back); requests/s and latency percentiles.
 *
 *   seqclient [-n COUNT] [-t SECONDS] [-w WARMUP] [-b BODY] [-m METHOD] [-s STATUS] [-e] PORT PATH
 *
 * -n most requests [1000000], -t most seconds [5], -w requests first, not
 * counted [20], -b the body [hello], -m [POST], -s the status every answer
 * must have [200], -e the answer's body must be the body sent. Prints one
 * JSON object; exits 1 if an answer was not as expected. C99 + POSIX.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_REQUESTS 1000000
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

static double pct(const double *v, long n, int p) {
    long k = (p * n + 99) / 100 - 1;
    return n ? v[k < 0 ? 0 : k] * 1000 : 0;
}

/* One exchange; 0 if the answer had `status` (and the body, if `echo`). */
static int exchange(const struct sockaddr_in *addr, const char *req, size_t req_len, const char *body,
                    int status, int echo, char *answer) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)addr, sizeof *addr)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    size_t sent = 0, got = 0;
    while (sent < req_len) {
        ssize_t w = send(fd, req + sent, req_len - sent, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        sent += w;
    }
    for (;;) {
        ssize_t r = read(fd, answer + got, MAX_ANSWER - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || (got += r) >= MAX_ANSWER - 1)
            break;
    }
    close(fd);
    answer[got] = 0;
    int code = 0;
    if (sscanf(answer, "HTTP/%*d.%*d %d", &code) != 1 || code != status)
        return -1;
    if (echo) {
        const char *b = strstr(answer, "\r\n\r\n");
        if (!b || strcmp(b + 4, body))
            return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    long count = MAX_REQUESTS, warmup = 20;
    double seconds = 5;
    const char *body = "hello", *method = "POST";
    int status = 200, echo = 0, opt;
    while ((opt = getopt(argc, argv, "n:t:w:b:m:s:e")) != -1) {
        switch (opt) {
        case 'n': count = atol(optarg); break;
        case 't': seconds = atof(optarg); break;
        case 'w': warmup = atol(optarg); break;
        case 'b': body = optarg; break;
        case 'm': method = optarg; break;
        case 's': status = atoi(optarg); break;
        case 'e': echo = 1; break;
        default: goto usage;
        }
    }
    if (argc - optind != 2 || count < 1 || count > MAX_REQUESTS || seconds <= 0 || warmup < 0 ||
        atoi(argv[optind]) <= 0 || atoi(argv[optind]) > 65535) {
    usage:
        fprintf(stderr, "usage: seqclient [-n COUNT] [-t SECONDS] [-w WARMUP] [-b BODY] [-m METHOD] "
                        "[-s STATUS] [-e] PORT PATH\n");
        return 2;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[optind]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char req[8192];
    int req_len = snprintf(req, sizeof req,
                           "%s %s HTTP/1.1\r\nHost: seqclient\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                           method, argv[optind + 1], strlen(body), body);
    if (req_len < 0 || req_len >= (int)sizeof req) {
        fprintf(stderr, "seqclient: request too long\n");
        return 2;
    }
    double *lat = malloc(sizeof(double) * count);
    char *answer = malloc(MAX_ANSWER);
    if (!lat || !answer) {
        perror("malloc");
        return 2;
    }
    for (long i = 0; i < warmup; i++)
        exchange(&addr, req, req_len, body, status, echo, answer);
    long done = 0, bad = 0;
    double t0 = now(), end = t0 + seconds;
    while (done + bad < count && now() < end) {
        double start = now();
        if (exchange(&addr, req, req_len, body, status, echo, answer))
            bad++;
        else
            lat[done++] = now() - start;
    }
    double wall = now() - t0;
    qsort(lat, done, sizeof(double), cmp);
    printf("{\"client\": \"seqclient\", \"request\": \"%s %s\", \"requests\": %ld, \"unexpected\": %ld, "
           "\"wall s\": %.3f, \"requests/s\": %.1f, \"p50 ms\": %.3f, \"p90 ms\": %.3f, \"p99 ms\": %.3f, "
           "\"max ms\": %.3f}\n",
           method, argv[optind + 1], done + bad, bad, wall, done / wall, pct(lat, done, 50), pct(lat, done, 90),
           pct(lat, done, 99), done ? lat[done - 1] * 1000 : 0);
    return bad ? 1 : 0;
}
