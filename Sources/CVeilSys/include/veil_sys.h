#ifndef VEIL_SYS_H
#define VEIL_SYS_H

#include <sys/vfs.h>
#include <sys/prctl.h>
#include <signal.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <spawn.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <linux/capability.h>

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

/* The SEV-SNP guest driver's request (linux/sev-guest.h), declared here so the build needs no
 * kernel headers of a particular version. */
struct veil_snp_guest_request_ioctl {
    uint8_t msg_version;
    uint64_t req_data;
    uint64_t resp_data;
    uint64_t exitinfo2;
};
#define VEIL_SNP_GET_DERIVED_KEY _IOWR('S', 0x1, struct veil_snp_guest_request_ioctl)

/// SNP_GET_DERIVED_KEY on an open /dev/sev-guest: `request` is the 32-byte MSG_KEY_REQ, the
/// 64-byte MSG_KEY_RSP lands in `response`. Returns the ioctl result (errno set) and the
/// firmware/VMM error word in `exitinfo2`.
static inline int veil_snp_derived_key(int fd, const uint8_t request[32], uint8_t response[64], uint64_t *exitinfo2) {
    uint8_t req[32], resp[64];
    memcpy(req, request, sizeof req);
    memset(resp, 0, sizeof resp);
    struct veil_snp_guest_request_ioctl call = {
        .msg_version = 1, .req_data = (uint64_t)(uintptr_t)req, .resp_data = (uint64_t)(uintptr_t)resp, .exitinfo2 = 0,
    };
    int result = ioctl(fd, VEIL_SNP_GET_DERIVED_KEY, &call);
    *exitinfo2 = call.exitinfo2;
    memcpy(response, resp, sizeof resp);
    memset(resp, 0, sizeof resp);
    return result;
}

/// Removes capability `cap` from this process for good: from the bounding set (so no later
/// exec regains it), the ambient set, and the effective, permitted and inheritable sets.
/// Needs CAP_SETPCAP for the bounding set. Returns 0, or -1 with errno set.
static inline int veil_drop_capability(int cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return -1;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, cap, 0, 0) != 0 && errno != EINVAL) return -1;
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &header, data) != 0) return -1;
    int word = cap / 32;
    uint32_t mask = ~(1u << (cap % 32));
    data[word].effective &= mask;
    data[word].permitted &= mask;
    data[word].inheritable &= mask;
    return (int)syscall(SYS_capset, &header, data);
}

/// Whether capability `cap` is in this process's bounding set (1), not (0), or -1 on error.
static inline int veil_capability_bounded(int cap) {
    return prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
}

#endif
