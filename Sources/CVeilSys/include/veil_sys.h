#ifndef VEIL_SYS_H
#define VEIL_SYS_H

#include <sys/vfs.h>

/// The filesystem type (statfs f_type) of the file open at `fd`, or -1 with errno set.
/// Swift's Glibc module does not export <sys/vfs.h>.
static inline long veil_filesystem_type(int fd) {
    struct statfs info;
    if (fstatfs(fd, &info) != 0) return -1;
    return (long)info.f_type;
}

#endif
