#!/usr/bin/env python3
"""Writes a tampered copy of an OCI layout's image under a new tag, keeping every digest
consistent (so only the tampering itself can be what a reader refuses).

  tamper_layout.py LAYOUT TAG NEWTAG flip-layer        flip one byte in the middle of the first encrypted layer
  tamper_layout.py LAYOUT TAG NEWTAG diff-id           change the config's first diff_id
  tamper_layout.py LAYOUT TAG NEWTAG label NAME VALUE  set a config label
  tamper_layout.py LAYOUT TAG NEWTAG add-layer         append a plain layer adding /etc/added.txt
"""
import hashlib
import io
import json
import sys
import tarfile


def main():
    layout, tag, new_tag, mode, *rest = sys.argv[1:]

    def read(digest):
        with open(f"{layout}/blobs/sha256/{digest[7:]}", "rb") as blob:
            return blob.read()

    def write(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(f"{layout}/blobs/sha256/{digest[7:]}", "wb") as blob:
            blob.write(data)
        return digest, len(data)

    with open(f"{layout}/index.json") as handle:
        index = json.load(handle)
    entry = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    manifest = json.loads(read(entry["digest"]))
    if mode == "flip-layer":
        layer = next(layer for layer in manifest["layers"] if layer["mediaType"].endswith("+encrypted"))
        data = bytearray(read(layer["digest"]))
        data[len(data) // 2] ^= 0x01
        layer["digest"], layer["size"] = write(bytes(data))
    else:
        config = json.loads(read(manifest["config"]["digest"]))
        if mode == "diff-id":
            first = config["rootfs"]["diff_ids"][0]
            config["rootfs"]["diff_ids"][0] = first[:-1] + ("0" if first[-1] != "0" else "1")
        elif mode == "add-layer":
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
                data = b"a layer the measurement does not cover\n"
                info = tarfile.TarInfo("etc/added.txt")
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
            layer = buffer.getvalue()
            digest, size = write(layer)
            manifest["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size})
            config["rootfs"]["diff_ids"].append(digest)
        elif mode == "label":
            config.setdefault("config", {}).setdefault("Labels", {})[rest[0]] = rest[1]
        else:
            sys.exit(f"unknown mode {mode}")
        manifest["config"]["digest"], manifest["config"]["size"] = write(json.dumps(config).encode())
    digest, size = write(json.dumps(manifest).encode())
    tampered = dict(entry, digest=digest, size=size, annotations={"org.opencontainers.image.ref.name": new_tag})
    index["manifests"].append(tampered)
    with open(f"{layout}/index.json", "w") as handle:
        json.dump(index, handle)


if __name__ == "__main__":
    main()
