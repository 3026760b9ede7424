/*
 * llamacpp-fnv1a: the 64-bit FNV-1a hash of whole files, as llama.cpp's RPC backend computes
 * it over a tensor's bytes (ggml-rpc.cpp, fnv_hash) to name the files of rpc-server's tensor
 * cache. Part of the llamacpp.cluster collection: its rpc_cache_seed module fills a worker's
 * cache from the worker's own copy of a model and verifies the files with this tool.
 *
 * Usage: llamacpp-fnv1a FILE...
 * Prints "<hash as %016x>  <FILE>" per file, like sha256sum. Exit status 1 if a file cannot
 * be read (the others are still hashed), 2 on usage errors.
 */
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL
#define CHUNK (4u << 20)

static int hash_file(const char *path, unsigned char *buf, uint64_t *out) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return -1;
    }
#ifdef POSIX_FADV_SEQUENTIAL
    (void) posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    uint64_t h = FNV_OFFSET;
    for (;;) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            int saved = errno;
            close(fd);
            errno = saved;
            return -1;
        }
        if (n == 0) {
            break;
        }
        for (ssize_t i = 0; i < n; i++) {
            h ^= buf[i];
            h *= FNV_PRIME;
        }
    }
    close(fd);
    *out = h;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fprintf(argc < 2 ? stderr : stdout, "usage: %s FILE...\n", argv[0]);
        return argc < 2 ? 2 : 0;
    }
    unsigned char *buf = malloc(CHUNK);
    if (buf == NULL) {
        fprintf(stderr, "%s: out of memory\n", argv[0]);
        return 1;
    }
    int status = 0;
    for (int i = 1; i < argc; i++) {
        uint64_t h;
        if (hash_file(argv[i], buf, &h) != 0) {
            fprintf(stderr, "%s: %s: %s\n", argv[0], argv[i], strerror(errno));
            status = 1;
            continue;
        }
        printf("%016" PRIx64 "  %s\n", h, argv[i]);
    }
    free(buf);
    return status;
}
