/// Why an image could not be read, converted, unpacked or measured. Each case names the
/// object at fault so the message alone tells the user what to fix.
public enum ImageError: Error, Equatable, Sendable, CustomStringConvertible {
    case io(path: String, reason: String)
    case notAnImageLayout(path: String, reason: String)
    case malformedJSON(what: String, reason: String)
    case unsupportedMediaType(String)
    case referenceNotFound(String, available: [String])
    case ambiguousReference(available: [String])
    case missingBlob(String)
    case digestMismatch(what: String, expected: String, actual: String)
    case sizeMismatch(digest: String, expected: UInt64, actual: UInt64)
    case diffIDMismatch(layer: Int, expected: String, actual: String)
    case badDigest(String)
    case compression(String)
    case malformedTar(String)
    case unsafeEntry(path: String, reason: String)
    case unsupportedEntry(path: String, reason: String)
    case encryptPathNotFound(String)
    case launcher(String)
    case protectedFile(path: String, reason: String)
    /// An input path that would leave its directory (a symlink out, an absolute target, `..` above it).
    case unsafePath(path: String, reason: String)
    /// An image exceeds a limit on unpacking (bytes, entries, path length).
    case limitExceeded(what: String, limit: String)
    /// An ocicrypt-encrypted layer that could not be opened (no key, a changed byte, …).
    case encryptedLayer(layer: Int, reason: String)

    public var description: String {
        switch self {
        case .io(let path, let reason): return "\(path): \(reason)"
        case .notAnImageLayout(let path, let reason): return "\(path) is not an OCI image layout: \(reason)"
        case .malformedJSON(let what, let reason): return "\(what) is not valid: \(reason)"
        case .unsupportedMediaType(let type): return "unsupported media type \(type)"
        case .referenceNotFound(let tag, let available):
            return "no image tagged '\(tag)' in the layout (tags: \(available.isEmpty ? "none" : available.joined(separator: ", ")))"
        case .ambiguousReference(let available):
            return "the layout holds several images; name one with oci:DIR:TAG (tags: \(available.joined(separator: ", ")))"
        case .missingBlob(let digest): return "blob \(digest) is referenced but missing"
        case .digestMismatch(let what, let expected, let actual): return "\(what) blob has digest \(actual), expected \(expected) (corrupt or altered)"
        case .sizeMismatch(let digest, let expected, let actual): return "blob \(digest) is \(actual) bytes, its descriptor says \(expected)"
        case .diffIDMismatch(let layer, let expected, let actual):
            return "layer \(layer) uncompressed digest is \(actual), the image config says \(expected)"
        case .badDigest(let text): return "'\(text)' is not a sha256 digest (sha256:<64 hex>)"
        case .compression(let why): return why
        case .malformedTar(let why): return "malformed layer tar: \(why)"
        case .unsafeEntry(let path, let reason): return "unsafe layer entry '\(path)': \(reason)"
        case .unsupportedEntry(let path, let reason): return "unsupported layer entry '\(path)': \(reason)"
        case .encryptPathNotFound(let path):
            return "--encrypt \(path): no such file or directory in the image (paths through symlinks are not followed; name the real path)"
        case .launcher(let why): return "cannot inject the launcher: \(why)"
        case .protectedFile(let path, let reason): return "protected file \(path): \(reason)"
        case .unsafePath(let path, let reason): return "refusing to read \(path): \(reason)"
        case .limitExceeded(let what, let limit): return "\(what) exceeds the limit of \(limit)"
        case .encryptedLayer(let layer, let reason): return "encrypted layer \(layer): \(reason)"
        }
    }
}
