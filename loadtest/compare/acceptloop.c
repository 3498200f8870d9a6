/* acceptloop: the least a server can spend on a connection it will not serve.
 *
 * Listens on 127.0.0.1:PORT and, forever, accepts a connection and closes it:
 * no read, no write, no allocation, no other thread. Its CPU per connection
 * (from /proc/PID/stat, as loadtest.py dropcost measures any server) is the
 * floor for what fiddler_crab spends on an excess connection with its queue
 * full.
 *
 *   acceptloop PORT [BACKLOG]      (BACKLOG default 1024)
 *
 * Prints "listening on 127.0.0.1:PORT" to stderr once ready. C99 + POSIX.
 * Stops on SIGTERM/SIGINT (default action).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2 || atoi(argv[1]) <= 0 || atoi(argv[1]) > 65535) {
        fprintf(stderr, "usage: acceptloop PORT [BACKLOG]\n");
        return 2;
    }
    int backlog = argc > 2 ? atoi(argv[2]) : 1024;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, (struct sockaddr *)&addr, sizeof addr) || listen(fd, backlog)) {
        perror("acceptloop");
        return 1;
    }
    fprintf(stderr, "acceptloop: listening on 127.0.0.1:%s\n", argv[1]);
    for (;;) {
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c >= 0)
            close(c);
        else if (errno != EINTR && errno != ECONNABORTED)
            usleep(10000); /* EMFILE and the like: do not spin */
    }
}
