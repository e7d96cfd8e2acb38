import Crypto
import Foundation

/// A Confidential Containers init-data document (Trustee `kbs/docs/initdata.md`) as a client
/// presents it: its digest is the document's own `algorithm` over the raw TOML bytes as sent
/// (not a canonical form), and the TEE binds it in SNP HOST_DATA (32 bytes) or TDX MRCONFIGID
/// (48 bytes), truncated or zero-padded to the field's length.
struct InitData: Equatable {
    let digest: [UInt8]

    /// Only the TOML format, as Trustee's built-in attestation service: the algorithm is read
    /// from the top-level `algorithm = "…"` line (before any table header).
    init(format: String, body: String) throws(KBSError) {
        guard format == "toml" else { throw .initDataRejected("init-data format '\(format)' is not supported (toml)") }
        var algorithm: String?
        for line in body.split(separator: "\n", omittingEmptySubsequences: true) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("[") { break }
            let parts = trimmed.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2, parts[0] == "algorithm" {
                algorithm = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
            }
        }
        let bytes = Array(body.utf8)
        switch algorithm?.lowercased() {
        case "sha256", "sha-256": digest = Array(SHA256.hash(data: bytes))
        case "sha384", "sha-384": digest = Array(SHA384.hash(data: bytes))
        case "sha512", "sha-512": digest = Array(SHA512.hash(data: bytes))
        case let other?: throw .initDataRejected("init-data algorithm '\(other)' is not sha256, sha384 or sha512")
        case nil: throw .initDataRejected("init-data has no top-level algorithm")
        }
    }

    /// The digest as a TEE field of `length` bytes holds it.
    func fitted(to length: Int) -> [UInt8] {
        digest.count >= length ? Array(digest.prefix(length)) : digest + [UInt8](repeating: 0, count: length - digest.count)
    }
}
