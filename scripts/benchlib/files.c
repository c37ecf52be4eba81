/* C-speed file-metadata loops for scripts/bench local: Python's own loop costs ~1-2 us a
 * call, a noticeable share of native tmpfs's ~8 us per create, so the loops are here.
 *
 *   files create DIR N   open(O_CREAT|O_EXCL)+close of DIR/f0 .. DIR/f<N-1>
 *   files unlink DIR N   unlink of the same names
 *   files lsstat DIR     readdir of DIR and an lstat (fstatat) of every entry
 *
 * Prints "<seconds> <operations>" for the loop alone (no exec, no page-in); exits 1
 * with the failing call's error on stderr.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int fail(const char *what, const char *name) {
    fprintf(stderr, "files: %s %s: %s\n", what, name, strerror(errno));
    return 1;
}

static int create_or_unlink(int dir, long n, int create) {
    char name[32];
    for (long i = 0; i < n; i++) {
        snprintf(name, sizeof name, "f%ld", i);
        if (create) {
            int fd = openat(dir, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
            if (fd < 0 || close(fd) != 0) return fail("create", name);
        } else if (unlinkat(dir, name, 0) != 0) {
            return fail("unlink", name);
        }
    }
    return 0;
}

static long lsstat(int dirfd, const char *path) {
    DIR *dir = fdopendir(dup(dirfd));
    struct dirent *entry;
    struct stat st;
    long count = 0;
    if (dir == NULL) return -fail("opendir", path);
    while ((entry = readdir(dir)) != NULL) {
        if (fstatat(dirfd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            return -fail("stat", entry->d_name);
        count++;
    }
    closedir(dir);
    return count;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: files create|unlink DIR N | files lsstat DIR\n");
        return 2;
    }
    int dir = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) return fail("open", argv[2]);
    long n = argc > 3 ? atol(argv[3]) : 0;
    double started = now();
    if (strcmp(argv[1], "lsstat") == 0) {
        n = lsstat(dir, argv[2]);
        if (n < 0) return 1;
    } else if (strcmp(argv[1], "create") == 0 || strcmp(argv[1], "unlink") == 0) {
        if (create_or_unlink(dir, n, argv[1][0] == 'c')) return 1;
    } else {
        fprintf(stderr, "files: unknown mode %s\n", argv[1]);
        return 2;
    }
    printf("%.9f %ld\n", now() - started, n);
    return 0;
}
