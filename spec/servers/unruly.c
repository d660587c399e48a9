/* Servers that try to escape a lab (spec/lab_contain_spec.lua builds this):
 *   unruly daemon-before PORT   fork, setsid, fork, then listen (the first process exits)
 *   unruly daemon-after PORT    listen, then fork, setsid, fork (the listener goes with the daemon)
 *   unruly thread-child PORT    listen; a second thread forks a child that sleeps
 *   unruly fork-loop PORT N     listen; fork N short-lived children, every 500th one
 *                               setsid and sleeps; prints "forked N"
 *   unruly forkbomb PORT        listen; become nobody (RLIMIT_NPROC 400 as a safety
 *                               net); every process forks every 20 ms, for ever
 *   unruly noisy PORT MB        listen; write MB MiB to stdout and MB MiB to stderr,
 *                               then "done" on stderr
 * Every mode then echoes what clients send, one client at a time. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static int listen_on(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 16) != 0) {
        perror("listen");
        exit(1);
    }
    printf("listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    return s;
}

static void serve(int s)
{
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            exit(1);
        }
        char buf[4096];
        ssize_t n;
        while ((n = read(c, buf, sizeof buf)) > 0)
            if (write(c, buf, (size_t)n) != n)
                break;
        close(c);
    }
}

static void daemonize(void)
{
    pid_t p = fork();
    if (p < 0)
        exit(1);
    if (p > 0)
        _exit(0);
    setsid();
    p = fork();
    if (p < 0)
        exit(1);
    if (p > 0)
        _exit(0);
}

static void *thread_forks(void *arg)
{
    (void)arg;
    pid_t p = fork();
    if (p == 0) {
        for (;;)
            pause();
    }
    printf("thread child %d\n", (int)p);
    fflush(stdout);
    return NULL;
}

static void fill(FILE *f, long mib, char c)
{
    static char line[1024];
    memset(line, c, sizeof line - 1);
    line[sizeof line - 1] = '\n';
    for (long i = 0; i < mib * 1024; i++)
        fwrite(line, 1, sizeof line, f);
    fflush(f);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: unruly MODE PORT [N]\n");
        return 2;
    }
    const char *mode = argv[1];
    int port = atoi(argv[2]);
    long n = argc > 3 ? atol(argv[3]) : 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(mode, "daemon-before") == 0) {
        daemonize();
        serve(listen_on(port));
    } else if (strcmp(mode, "daemon-after") == 0) {
        int s = listen_on(port);
        daemonize();
        serve(s);
    } else if (strcmp(mode, "thread-child") == 0) {
        int s = listen_on(port);
        pthread_t t;
        pthread_create(&t, NULL, thread_forks, NULL);
        pthread_join(t, NULL);
        serve(s);
    } else if (strcmp(mode, "fork-loop") == 0) {
        int s = listen_on(port);
        signal(SIGCHLD, SIG_IGN);   /* the short-lived ones reap themselves */
        for (long i = 1; i <= n; i++) {
            pid_t p = fork();
            if (p == 0) {
                if (i % 500 == 0) {
                    setsid();
                    for (;;)
                        pause();
                }
                _exit(0);
            }
            if (p < 0) {
                perror("fork");
                return 1;
            }
        }
        printf("forked %ld\n", n);
        serve(s);
    } else if (strcmp(mode, "forkbomb") == 0) {
        listen_on(port);
        struct rlimit r = {400, 400};
        if (setrlimit(RLIMIT_NPROC, &r) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
            perror("drop to nobody");
            return 1;
        }
        printf("bombing as uid %d\n", (int)getuid());
        for (;;) {
            fork();
            usleep(20000);
        }
    } else if (strcmp(mode, "noisy") == 0) {
        int s = listen_on(port);
        fill(stdout, n, 'o');
        fill(stderr, n, 'e');
        fprintf(stderr, "done\n");
        serve(s);
    }
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
