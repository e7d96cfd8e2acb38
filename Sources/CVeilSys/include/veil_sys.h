#ifndef VEIL_SYS_H
#define VEIL_SYS_H

#include <sys/vfs.h>
#include <sys/prctl.h>
#include <signal.h>
#include <fcntl.h>
#include <unistd.h>
#include <spawn.h>

/* GNU extensions that Swift's Glibc module hides (it is built without _GNU_SOURCE). */
extern int pipe2(int pipefd[2], int flags);
extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *actions, int from);

/// The filesystem type (statfs f_type) of the file open at `fd`, or -1 with errno set.
/// Swift's Glibc module does not export <sys/vfs.h>.
static inline long veil_filesystem_type(int fd) {
    struct statfs info;
    if (fstatfs(fd, &info) != 0) return -1;
    return (long)info.f_type;
}

/// Asks the kernel to SIGKILL this process when its parent dies (prctl is variadic, which
/// Swift cannot call).
static inline int veil_die_with_parent(void) {
    return prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
}

/// A pipe whose ends close on exec.
static inline int veil_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

/// Closes every descriptor from `from` up in a spawned child (glibc 2.34+).
static inline int veil_spawn_close_from(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

/// Makes a spawned child start with no blocked signals and default dispositions, whatever
/// the spawning thread blocks or the process ignores.
static inline int veil_spawnattr_default_signals(posix_spawnattr_t *attributes) {
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    if (posix_spawnattr_setsigmask(attributes, &none) != 0 || posix_spawnattr_setsigdefault(attributes, &all) != 0) return -1;
    return posix_spawnattr_setflags(attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

#endif
