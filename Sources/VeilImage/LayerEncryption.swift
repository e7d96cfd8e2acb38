import FoundationEssentials
import Glibc
import VeilImageFormat
import VeilJOSE

/// Encrypts an image's layers in an OCI layout as ocicrypt does (``OCICrypt``), so skopeo,
/// buildah, containerd's imgcrypt and CoCo's image-rs decrypt them: each layer becomes
/// `…+encrypted` with its key wrapped for every recipient; the config — and so the diff_ids,
/// the plaintext's digests — stays as it was.
public enum LayerEncryption {
    /// Replaces image `tag`'s layers in `layout` with encrypted ones and re-points `tag` at the
    /// new manifest. The plaintext layer blobs are deleted unless another image in the layout
    /// uses them: an encrypted image next to its own plaintext would protect nothing.
    /// - Returns: the encrypted image's manifest.
    /// - Parameter packet: also wrap each layer key in a CoCo key packet (``CoCoKeyPacket``).
    public static func encryptLayers(in layout: String, tag: String, to recipients: [JWEPublicKey], packet: (keyID: String, kek: [UInt8])? = nil) throws -> Descriptor {
        let directory = OCILayout(directory: layout)
        let image = try directory.image(tag: tag)
        let writer = try LayoutWriter(directory: layout)
        var manifest = image.manifest
        var replaced: [BlobDigest] = []
        for (index, layer) in image.manifest.layers.enumerated() {
            guard !layer.mediaType.hasSuffix(OCICrypt.encryptedMediaTypeSuffix) else { continue }
            let stream = try image.openBlob(layer)
            let plain = try stream.readAll(limit: Int(layer.size))
            try stream.verify(layer)
            let (blob, annotations) = try OCICrypt.encrypt(layer: plain, to: recipients, packet: packet)
            var encrypted = try writer.put(blob, mediaType: try MediaType.layerKind(layer.mediaType).oci + OCICrypt.encryptedMediaTypeSuffix)
            encrypted.annotations = (layer.annotations ?? [:]).merging(annotations) { _, new in new }
            manifest.layers[index] = encrypted
            replaced.append(layer.digest)
        }
        manifest.mediaType = MediaType.manifest
        let descriptor = try writer.put(canonicalJSON(manifest), mediaType: MediaType.manifest)
        try writer.tag(descriptor, as: tag)
        try removeUnreferenced(replaced + [image.manifestDigest], in: directory)
        return descriptor
    }

    /// Deletes the blobs among `candidates` that no image in the layout's index still uses.
    static func removeUnreferenced(_ candidates: [BlobDigest], in layout: OCILayout) throws {
        var used = Set<BlobDigest>()
        for entry in try layout.index().manifests {
            used.insert(entry.digest)
            guard MediaType.isManifest(entry.mediaType), let bytes = try? layout.readBlob(entry),
                let manifest = try? JSONDecoder().decode(ImageManifest.self, from: Data(bytes))
            else { continue }
            used.insert(manifest.config.digest)
            for layer in manifest.layers { used.insert(layer.digest) }
        }
        for digest in Set(candidates).subtracting(used) {
            unlink("\(layout.directory)/\(OCILayout.blobPath(digest))")
        }
    }
}
