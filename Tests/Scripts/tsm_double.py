#!/usr/bin/env python3
"""A configfs-tsm double that behaves like the kernel's (drivers/virt/coco/tsm.c and
Documentation/ABI/testing/configfs-tsm-report), mounted with FUSE at MOUNTPOINT.

usage: tsm_double.py MOUNTPOINT --provider sev_guest|tdx_guest --outblob FILE [options]

Like the kernel: `mkdir` of an entry creates its attributes (provider, generation, inblob,
outblob, auxblob for sev_guest, privlevel and privlevel_floor when a floor is given); an
entry is removed with `rmdir`; `generation` counts writes to inblob and to options; outblob is
produced when read, from the entry's current inblob and privlevel; a privlevel below the floor
is refused with EINVAL at write, and a report below the floor (privlevel never written on a
guest running above VMPL 0) fails with EIO at read. The report is FILE, a recorded one; with
--bind-report-data the entry's inblob is copied into it (its signature then no longer holds:
for tests that check which report data a caller got back, not for verification).

Faults: --read-delay-ms makes every outblob read slow (so concurrent callers overlap);
--foreign-write makes another writer write the entry's inblob during the first outblob read
(what the generation check exists for); --fail-after N makes outblob reads after the Nth fail
with EIO once, then ENOTTY forever (the sev-guest driver wipes the VMPCK after a firmware error).
Every operation is appended to --log as a JSON line.
"""
import argparse, errno, json, stat, sys, threading, time

sys.path.insert(0, "/usr/lib/python3/dist-packages")  # Debian's python3-fusepy
from fusepy import FUSE, FuseOSError, Operations  # noqa: E402

SNP_REPORT_DATA, TDX_QUOTE_REPORT_DATA = 0x50, 48 + 520


class Entry:
    def __init__(self):
        self.inblob = b""
        self.privlevel = 0
        self.generation = 0


class ConfigfsTSM(Operations):
    def __init__(self, options):
        self.options = options
        self.outblob = open(options.outblob, "rb").read()
        self.auxblob = open(options.auxblob, "rb").read() if options.auxblob else b""
        self.entries = {}
        self.lock = threading.Lock()
        self.handles = {}
        self.next_handle = 1
        self.reads = 0
        self.foreign_written = False
        self.wiped = False

    # -- layout

    def attributes(self):
        names = ["provider", "generation", "inblob", "outblob"]
        if self.options.provider == "sev_guest":
            names.append("auxblob")
        if self.options.privlevel_floor is not None:
            names += ["privlevel", "privlevel_floor"]
        return names

    def split(self, path):
        parts = [part for part in path.split("/") if part]
        if not parts:
            return None, None
        if parts[0] not in self.entries or len(parts) > 2 or (len(parts) == 2 and parts[1] not in self.attributes()):
            raise FuseOSError(errno.ENOENT)
        return parts[0], parts[1] if len(parts) == 2 else None

    def log(self, **event):
        if self.options.log:
            with open(self.options.log, "a") as log:
                log.write(json.dumps(event) + "\n")

    def getattr(self, path, fh=None):
        with self.lock:
            entry, attribute = self.split(path)
        if attribute is None:
            return dict(st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
        writable = attribute in ("inblob", "privlevel")
        readable = attribute not in ("inblob", "privlevel")
        mode = (0o444 if readable else 0) | (0o200 if writable else 0)
        return dict(st_mode=stat.S_IFREG | mode, st_nlink=1, st_size=4096)

    def readdir(self, path, fh):
        with self.lock:
            entry, _ = self.split(path)
            return [".", ".."] + (self.attributes() if entry else list(self.entries))

    def mkdir(self, path, mode):
        parts = [part for part in path.split("/") if part]
        with self.lock:
            if len(parts) != 1:
                raise FuseOSError(errno.EPERM)
            if parts[0] in self.entries:
                raise FuseOSError(errno.EEXIST)
            self.entries[parts[0]] = Entry()
        self.log(op="mkdir", entry=parts[0])

    def rmdir(self, path):
        with self.lock:
            entry, attribute = self.split(path)
            if entry is None or attribute is not None:
                raise FuseOSError(errno.EPERM)
            del self.entries[entry]
        self.log(op="rmdir", entry=entry)

    # -- attributes

    def open(self, path, flags):
        with self.lock:
            entry, attribute = self.split(path)
            if attribute is None:
                raise FuseOSError(errno.EISDIR)
            handle = self.next_handle
            self.next_handle += 1
            self.handles[handle] = {"entry": entry, "attribute": attribute, "written": b"", "content": None}
            return handle

    def truncate(self, path, length, fh=None):
        return 0

    def write(self, path, data, offset, fh):
        handle = self.handles[fh]
        if handle["attribute"] == "privlevel":
            # A text attribute: stored at write, so a refusal reaches the writer.
            self.store(handle["entry"], "privlevel", bytes(data))
            return len(data)
        handle["written"] = handle["written"][:offset] + bytes(data)
        return len(data)

    def flush(self, path, fh):
        # A binary attribute (inblob): buffered until close, as configfs does.
        handle = self.handles.get(fh)
        if handle and handle["attribute"] == "inblob" and handle["written"]:
            written, handle["written"] = handle["written"], b""
            self.store(handle["entry"], "inblob", written)
        return 0

    def release(self, path, fh):
        self.handles.pop(fh, None)
        return 0

    def store(self, name, attribute, value):
        with self.lock:
            entry = self.entries.get(name)
            if entry is None:
                raise FuseOSError(errno.ENOENT)
            if attribute == "privlevel":
                try:
                    level = int(value.decode().strip())
                except ValueError:
                    raise FuseOSError(errno.EINVAL)
                if level > 3 or level < (self.options.privlevel_floor or 0):
                    self.log(op="refused", entry=name, attribute=attribute, value=level)
                    raise FuseOSError(errno.EINVAL)
                entry.privlevel = level
            else:
                if len(value) > 64:
                    raise FuseOSError(errno.EINVAL)
                entry.inblob = value
            entry.generation += 1
        self.log(op="write", entry=name, attribute=attribute, data=value.hex())

    def read(self, path, size, offset, fh):
        handle = self.handles[fh]
        if handle["content"] is None:
            handle["content"] = self.produce(handle["entry"], handle["attribute"])
        return handle["content"][offset:offset + size]

    def produce(self, name, attribute):
        with self.lock:
            entry = self.entries.get(name)
            if entry is None:
                raise FuseOSError(errno.ENOENT)
            if attribute == "provider":
                return (self.options.provider + "\n").encode()
            if attribute == "generation":
                return f"{entry.generation}\n".encode()
            if attribute == "privlevel_floor":
                return f"{self.options.privlevel_floor}\n".encode()
            if attribute == "auxblob":
                return self.auxblob
            if attribute != "outblob":
                raise FuseOSError(errno.EACCES)
        return self.report(name, entry)

    def report(self, name, entry):
        options = self.options
        if options.read_delay_ms:
            time.sleep(options.read_delay_ms / 1000)
        with self.lock:
            if options.foreign_write and not self.foreign_written:
                self.foreign_written = True
                entry.inblob, entry.generation = b"\xee" * 64, entry.generation + 1
                self.log(op="write", entry=name, attribute="inblob", data=entry.inblob.hex(), foreign=True)
            if self.wiped:
                self.log(op="refused", entry=name, attribute="outblob", errno="ENOTTY")
                raise FuseOSError(errno.ENOTTY)
            self.reads += 1
            if options.fail_after is not None and self.reads > options.fail_after:
                self.wiped = True
                self.log(op="refused", entry=name, attribute="outblob", errno="EIO")
                raise FuseOSError(errno.EIO)
            if entry.privlevel < (options.privlevel_floor or 0):
                self.log(op="refused", entry=name, attribute="outblob", errno="EIO", privlevel=entry.privlevel)
                raise FuseOSError(errno.EIO)
            report = bytearray(self.outblob)
            if options.bind_report_data:
                at = SNP_REPORT_DATA if options.provider == "sev_guest" else TDX_QUOTE_REPORT_DATA
                report[at:at + 64] = entry.inblob.ljust(64, b"\0")
            self.log(op="read", entry=name, attribute="outblob", privlevel=entry.privlevel, inblob=entry.inblob.hex())
            return bytes(report)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mountpoint")
    parser.add_argument("--provider", required=True)
    parser.add_argument("--outblob", required=True)
    parser.add_argument("--auxblob")
    parser.add_argument("--privlevel-floor", type=int)
    parser.add_argument("--bind-report-data", action="store_true")
    parser.add_argument("--read-delay-ms", type=int, default=0)
    parser.add_argument("--foreign-write", action="store_true")
    parser.add_argument("--fail-after", type=int)
    parser.add_argument("--log")
    options = parser.parse_args()
    FUSE(ConfigfsTSM(options), options.mountpoint, foreground=True, direct_io=True, nothreads=False)


if __name__ == "__main__":
    main()
